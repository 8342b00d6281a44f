{{/* Names and labels shared by every object of the chart. */}}

{{- define "canary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "canary.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "canary.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "canary.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "canary.serviceAccountName" -}}
{{- default (include "canary.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "canary.plansConfigMap" -}}
{{- default (printf "%s-plans" (include "canary.fullname" .)) .Values.plans.existingConfigMap -}}
{{- end -}}

{{- define "canary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "canary.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "canary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: canary
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The namespaces the controller watches and holds a Role in (namespaced RBAC). */}}
{{- define "canary.watchedNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaced" -}}
{{- if not .Values.rbac.namespaces -}}
{{- fail "rbac.namespaces: list every namespace holding a plan, its VirtualService, Deployments and helm release (or set rbac.scope=cluster)" -}}
{{- end -}}
{{- toJson (uniq .Values.rbac.namespaces) -}}
{{- else if eq .Values.rbac.scope "cluster" -}}
{{- toJson (default (list) .Values.config.namespaces) -}}
{{- else -}}
{{- fail (printf "rbac.scope: %q is neither \"namespaced\" nor \"cluster\"" .Values.rbac.scope) -}}
{{- end -}}
{{- end -}}

{{/*
The controller config file (docs/running.md §2): the values' `config` plus the keys the chart
owns. Rendered here so that the Deployment can carry its checksum.
*/}}
{{- define "canary.configFile" -}}
{{- $c := deepCopy .Values.config -}}
{{- $_ := set $c "plans" "/etc/canary/plans" -}}
{{- $_ = set $c "helmBinary" "/usr/local/bin/helm" -}}
{{- $_ = set $c "namespaces" (include "canary.watchedNamespaces" . | fromJsonArray) -}}
{{- $lease := deepCopy (default (dict) $c.lease) -}}
{{- $_ = set $lease "namespace" .Release.Namespace -}}
{{- $_ = set $c "lease" $lease -}}
# canary controller configuration (docs/running.md §2), rendered by the canary chart.
{{ toYaml $c }}
{{- end -}}

{{/* Fails the render when the pod could be killed while its helm rollback runs (DESIGN §7). */}}
{{- define "canary.checkGracePeriod" -}}
{{- $needed := add (int .Values.maxRollbackTimeoutSeconds) 80 -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds: %d must exceed maxRollbackTimeoutSeconds (%d) + 60 s helm grace + 20 s for the tick drain, lease release and flushes = %d: the kubelet would kill a running helm rollback" (int .Values.terminationGracePeriodSeconds) (int .Values.maxRollbackTimeoutSeconds) $needed) -}}
{{- end -}}
{{- end -}}
