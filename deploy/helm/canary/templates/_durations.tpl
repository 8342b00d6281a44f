{{/*
Go-style durations (canary/core/durations.py: "500ms", "30s", "5m", "1m30s", "1.5h") for the
render-time checks. Sprig has no duration parser.

canary.durationSeconds: the whole seconds of a duration, rounded up (a wait of 1.2 s lasts into
the second second). Called with (dict "value" <the duration> "where" <what to name in a
message>); fails the render, naming `where`, when the value is not a duration the controller
accepts: a string of one or more <number><unit> components, unit ns, us, µs, ms, s, m or h.
*/}}

{{- define "canary.durationComponent" -}}
([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)
{{- end -}}

{{- define "canary.durationSeconds" -}}
{{- $value := .value -}}
{{- $fix := "write a number and a unit, one of ms, s, m, h: e.g. \"30s\", \"2m\" or \"1m30s\"" -}}
{{- if or (kindIs "float64" $value) (kindIs "int64" $value) (kindIs "int" $value) -}}
{{- fail (printf "%s: %v is a bare number, not a duration (write \"%vs\")" .where $value $value) -}}
{{- end -}}
{{- if not (kindIs "string" $value) -}}
{{- fail (printf "%s: expected a duration such as \"5m\", got %s (%s)" .where (toJson $value) $fix) -}}
{{- end -}}
{{- $component := include "canary.durationComponent" . -}}
{{- if not (regexMatch (printf "^(%s)+$" $component) $value) -}}
{{- fail (printf "%s: %q is not a duration (%s)" .where $value $fix) -}}
{{- end -}}
{{- /* microseconds per unit, as Go's time.ParseDuration */ -}}
{{- $perUnit := dict "ns" 0.001 "us" 1.0 "µs" 1.0 "μs" 1.0 "ms" 1000.0 "s" 1000000.0 "m" 60000000.0 "h" 3600000000.0 -}}
{{- $us := 0.0 -}}
{{- range regexFindAll $component $value -1 -}}
{{- $unit := regexFind "(ns|us|µs|μs|ms|s|m|h)$" . -}}
{{- $us = addf $us (mulf (float64 (trimSuffix $unit .)) (get $perUnit $unit)) -}}
{{- end -}}
{{- /* whole microseconds first, so that float error (1.1h) never adds a second */ -}}
{{- ceil (divf (round $us 0) 1000000) | int64 -}}
{{- end -}}
