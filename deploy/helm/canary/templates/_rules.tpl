{{/*
The controller's rights in a namespace it serves (or cluster-wide). Least privilege: exactly the
calls of canary/adapters/*.py (docs/running.md §10) plus what `helm rollback REL REV --wait`
needs; tests/test_deploy.py checks both directions against the requests a real `canary run`
makes. The Lease is in role-lease.yaml.
*/}}
{{- define "canary.rules" -}}
# --- canary's own calls ----------------------------------------------------------------
# istio.py: read the managed route's weights and canary.dev/state (get: before the first list,
# after a write conflict); write weights, state and a consumed command in one JSON Patch with a
# resourceVersion test (patch). watch.py: one list + watch per namespace, which feeds the cache
# the ticks read (list, watch).
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch, patch]
# kube.py: availability and pod-template hash of the stable and canary Deployments (get, until
# the cache has listed them); watch.py: the cache and change notifications (list, watch).
# canary never writes a Deployment itself.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch]
# helmstore.py: the release history, one list with labelSelector=owner=helm,name=<release>
# until the cache has listed them; watch.py: one list + watch with labelSelector=owner=helm per
# namespace feeding the cache (RBAC cannot narrow a list or watch by label: this exposes every
# Secret of the namespace, which helm rollback needs anyway).
# helm rollback (its `secret` storage driver): the target revision (get), the release's
# revisions (list), the new revision (create), the old one marked superseded (update), and
# revisions beyond --history-max pruned (delete).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
# kube.py KubeEventSink: one Event per rollout event (create); a repeat within 10 min bumps
# its count (patch).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# --- helm rollback: the release's own objects ----------------------------------------------
# helm's update from the current revision to the target: read each live object (get), patch
# it (three-way strategic merge for built-in kinds, merge patch for CRDs), create the objects
# only the target revision has and delete those it lacks (create, delete). No update: canary
# never passes --force (the only path on which helm replaces objects).
{{- range .Values.rbac.releaseKinds }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: {{ toJson .resources }}
  verbs: [get, create, patch, delete]
{{- end }}
# helm 3's --wait on a Deployment lists its ReplicaSets to find the new one.
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list]
{{- if .Values.rbac.helm4Wait }}
# helm 4's --wait (kstatus watcher) lists and watches every kind of the release and the
# ReplicaSets and Pods behind its Deployments.
{{- range .Values.rbac.releaseKinds }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: {{ toJson .resources }}
  verbs: [list, watch]
{{- end }}
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [watch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- end }}
{{- end -}}
