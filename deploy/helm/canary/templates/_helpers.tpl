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

{{/*
The seconds a SIGTERM may take beyond the longest helm rollback (docs/design.md §7, docs/running.md §8,
canary/shell/daemon.py shutdown): a tick in flight gets 6 s (TICK_DRAIN) and may start a helm
rollback at its end; helm is waited for up to its --timeout + 60 s (DEFAULT_ROLLBACK_GRACE in
canary/adapters/helm.py); then the lease release gets up to 10 s (SHUTDOWN_BUDGET) and the
notifier and the Kubernetes Events 2 s each (NOTIFY_FLUSH). 6 + 60 + 10 + 2 + 2 = 80.
*/}}
{{- define "canary.shutdownMarginSeconds" -}}80{{- end -}}

{{/*
Fails the render when the pod could be SIGKILLed while its helm rollback runs (docs/design.md §7):
terminationGracePeriodSeconds must exceed maxRollbackTimeoutSeconds + 80, and every plan given
in plans.files must have a spec.rollback.timeout (default 5m) of at most
maxRollbackTimeoutSeconds. Plans of plans.existingConfigMap are not seen at render time.
*/}}
{{- define "canary.checkGracePeriod" -}}
{{- $margin := int (include "canary.shutdownMarginSeconds" .) -}}
{{- $max := int .Values.maxRollbackTimeoutSeconds -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- $needed := add $max $margin -}}
{{- if le $grace (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds: %d must exceed maxRollbackTimeoutSeconds (%d) + %d s = %d (helm's grace of 60 s past its --timeout, 6 s for the tick in flight, up to 10 s for the lease release, 2 s + 2 s for the notification and Event flushes): the kubelet would SIGKILL a running helm rollback" $grace $max $margin $needed) -}}
{{- end -}}
{{- if not .Values.plans.existingConfigMap -}}
{{- range $file, $content := .Values.plans.files -}}
{{- $docs := list -}}
{{- if kindIs "map" $content -}}
{{- $docs = append $docs $content -}}
{{- else if kindIs "string" $content -}}
{{- /* One file may hold several plans separated by `---` (canary/plans/documents.py counts
every document, an empty one too, and skips the empty ones); text before the first `---`
is a document only when it holds something. */ -}}
{{- range $i, $text := regexSplit "(?m)^---(?:[ \t]|$)" $content -1 -}}
{{- $doc := fromYaml $text -}}
{{- if and (eq (len $doc) 1) (hasKey $doc "Error") -}}
{{- fail (printf "plans.files: %s: not YAML the chart can read, so its spec.rollback.timeout cannot be checked against terminationGracePeriodSeconds (%s); `canary validate` shows the problem" $file $doc.Error) -}}
{{- end -}}
{{- if or $i $doc -}}
{{- $docs = append $docs $doc -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $i, $doc := $docs -}}
{{- if $doc -}}
{{- $where := printf "plans.files: %s" $file -}}
{{- if gt (len $docs) 1 -}}
{{- $where = printf "%s, document %d" $where (add1 $i) -}}
{{- end -}}
{{- $meta := get $doc "metadata" -}}
{{- if and (kindIs "map" $meta) (kindIs "string" (get $meta "namespace")) (kindIs "string" (get $meta "name")) (get $meta "name") -}}
{{- $where = printf "%s (plan %s/%s)" $where (get $meta "namespace") (get $meta "name") -}}
{{- end -}}
{{- $timeout := "5m" -}}
{{- $default := "the default, " -}}
{{- $spec := get $doc "spec" -}}
{{- if kindIs "map" $spec -}}
{{- $rollback := get $spec "rollback" -}}
{{- if and (kindIs "map" $rollback) (hasKey $rollback "timeout") -}}
{{- $timeout = get $rollback "timeout" -}}
{{- $default = "" -}}
{{- end -}}
{{- end -}}
{{- $seconds := int (include "canary.durationSeconds" (dict "value" $timeout "where" (printf "%s: spec.rollback.timeout" $where))) -}}
{{- if gt $seconds $max -}}
{{- $waits := add $seconds $margin -}}
{{- $why := printf "maxRollbackTimeoutSeconds must be the longest rollback.timeout of the plans served" -}}
{{- $fix := printf "raise maxRollbackTimeoutSeconds to at least %d (terminationGracePeriodSeconds %d already exceeds %d + %d)" $seconds $grace $seconds $margin -}}
{{- if le $grace (int $waits) -}}
{{- $why = printf "on SIGTERM the controller waits up to %d + %d = %d s for that helm rollback, but the kubelet SIGKILLs it after terminationGracePeriodSeconds (%d)" $seconds $margin $waits $grace -}}
{{- $fix = printf "raise maxRollbackTimeoutSeconds to at least %d and terminationGracePeriodSeconds above %d" $seconds $waits -}}
{{- end -}}
{{- fail (printf "%s: spec.rollback.timeout %v (%s%d s) exceeds maxRollbackTimeoutSeconds (%d): %s. Fix: %s, or shorten the plan's rollback.timeout to at most %ds" $where $timeout $default $seconds $max $why $fix $max) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
