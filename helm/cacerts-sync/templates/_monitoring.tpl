{{/*
Helpers of the alert rules and the dashboard.
*/}}

{{/*
Seconds in a humantime or Prometheus duration ("2m", "90s", "1h 30m", "1h30m", "30days"); fails on units it
cannot convert, so a rule threshold is never silently wrong.
*/}}
{{- define "cacerts-sync.seconds" -}}
{{- $units := dict "s" 1 "sec" 1 "secs" 1 "second" 1 "seconds" 1 "m" 60 "min" 60 "mins" 60 "minute" 60 "minutes" 60 "h" 3600 "hr" 3600 "hrs" 3600 "hour" 3600 "hours" 3600 "d" 86400 "day" 86400 "days" 86400 "w" 604800 "week" 604800 "weeks" 604800 }}
{{- $total := 0 }}
{{- $parts := regexFindAll "[0-9]+ *[a-zA-Z]+" . -1 }}
{{- if or (not $parts) (ne (regexReplaceAll "[0-9]+ *[a-zA-Z]+| " . "") "") }}
{{- fail (printf "cannot read %q as a duration (use e.g. 90s, 2m, 1h 30m)" .) }}
{{- end }}
{{- range $parts }}
{{- $n := regexFind "^[0-9]+" . | int }}
{{- $unit := regexReplaceAll "^[0-9]+ *" . "" }}
{{- if not (hasKey $units $unit) }}
{{- fail (printf "cannot convert the unit %q of a duration to seconds (use s, m, h, d or w)" $unit) }}
{{- end }}
{{- $total = add $total (mul $n (get $units $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/* PromQL label matchers that pick this release's watch-mode series. */}}
{{- define "cacerts-sync.metricsSelector" -}}
{{- default (printf "job=%q, namespace=%q" (include "cacerts-sync.fullname" .) .Release.Namespace) .Values.watch.prometheusRule.selector }}
{{- end }}

{{/* Labels that tell replicas apart and are dropped when aggregating across them (leader election). */}}
{{- define "cacerts-sync.replicaLabels" -}}
instance, pod, container, endpoint
{{- end }}

{{/* Seconds between passes the "no successful pass" alert counts in. */}}
{{- define "cacerts-sync.passIntervalSeconds" -}}
{{- $r := .Values.watch.prometheusRule }}
{{- if $r.passInterval }}
{{- include "cacerts-sync.seconds" $r.passInterval }}
{{- else if .Values.watch.schedule }}
{{- fail "watch.prometheusRule.passInterval: set it to the time between passes of watch.schedule (the alert on missing passes counts in it)" }}
{{- else }}
{{- include "cacerts-sync.seconds" (default "2m" .Values.watch.interval) }}
{{- end }}
{{- end }}
