{{/* One Deployment per track; only the track's name, label and image tag differ. */}}
{{- define "podinfo.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $root.Chart.Name }}-{{ .track }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    app: {{ $root.Chart.Name }}
    track: {{ .track }}
spec:
  replicas: {{ .values.replicas }}
  selector:
    matchLabels:
      app: {{ $root.Chart.Name }}
      track: {{ .track }}
  template:
    metadata:
      labels:
        app: {{ $root.Chart.Name }}
        track: {{ .track }}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: {{ $root.Chart.Name }}
          image: "{{ $root.Values.image.repository }}:{{ .values.image.tag }}"
          command:
            - ./podinfo
            - --port={{ $root.Values.port }}
            {{- range .values.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ $root.Values.port }}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
          livenessProbe:
            httpGet: {path: /healthz, port: http}
          resources:
            {{- toYaml $root.Values.resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
{{- end -}}
