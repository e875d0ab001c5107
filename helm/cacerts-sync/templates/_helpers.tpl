{{/*
Names, labels and the container command line shared by the CronJob and the Deployment.
Every tool setting in values.yaml becomes exactly one flag in "cacerts-sync.args".
*/}}

{{- define "cacerts-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, or just the release name when it already contains the chart name.
CronJob names are limited to 52 characters (the controller appends an 11-character suffix to Job names).
*/}}
{{- define "cacerts-sync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cacerts-sync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cacerts-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cacerts-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cacerts-sync.labels" -}}
helm.sh/chart: {{ include "cacerts-sync.chart" . }}
{{ include "cacerts-sync.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cacerts-sync
app.kubernetes.io/component: {{ include "cacerts-sync.component" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The component label names what the workload does. */}}
{{- define "cacerts-sync.component" -}}
{{- if eq .Values.mode "watch" }}watch{{ else if .Values.checkRootOnly }}check-root{{ else }}sync{{ end }}
{{- end }}

{{- define "cacerts-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cacerts-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace holding cacerts and istiod: where the Role lives and what --namespace names. */}}
{{- define "cacerts-sync.targetNamespace" -}}
{{- default .Release.Namespace .Values.targetNamespace }}
{{- end }}

{{- define "cacerts-sync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when watch mode runs with --leader-election, empty otherwise. */}}
{{- define "cacerts-sync.leaderElection" -}}
{{- $le := toString .Values.watch.leaderElection }}
{{- if and (eq .Values.mode "watch") (or (eq $le "true") (and (eq $le "auto") (gt (int .Values.watch.replicas) 1))) }}true{{ end }}
{{- end }}

{{/* The subcommand this release runs. */}}
{{- define "cacerts-sync.subcommand" -}}
{{- if eq .Values.mode "watch" }}watch{{ else if .Values.checkRootOnly }}check-root{{ else }}sync{{ end }}
{{- end }}

{{/*
Reject combinations the schema cannot express, with a message that says what to change.
Rendering fails fast instead of installing a workload that would exit 2 on every run.
*/}}
{{- define "cacerts-sync.validate" -}}
{{- $v := .Values }}
{{- $cmd := include "cacerts-sync.subcommand" . }}
{{- if and (eq $v.mode "watch") $v.checkRootOnly }}
{{- fail "checkRootOnly is a cron-mode option: set mode=cron, or checkRootOnly=false for watch mode" }}
{{- end }}
{{- if and (eq $v.mode "watch") $v.dryRun }}
{{- fail "dryRun applies to `sync` only: set mode=cron to dry-run, or dryRun=false" }}
{{- end }}
{{- if ne $cmd "check-root" }}
{{- if and (not $v.vaultUrl) (not $v.sourceDir) }}
{{- fail "set vaultUrl (e.g. --set vaultUrl=https://my-vault.vault.azure.net) or sourceDir: cacerts-sync needs a source" }}
{{- end }}
{{- if and $v.vaultUrl $v.sourceDir }}
{{- fail "set either vaultUrl or sourceDir, not both" }}
{{- end }}
{{- end }}
{{- if not $v.clusterName }}
{{- range $key := list "rootCertName" "caCertName" "caKeyName" "certChainName" }}
{{- if contains "{cluster}" (toString (get $v $key)) }}
{{- fail (printf "%s %q uses {cluster}: set clusterName to this cluster's name (e.g. --set clusterName=eastus)" $key (get $v $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.istiodSelector $v.istiodDeployments }}
{{- fail "set either istiodSelector or istiodDeployments, not both" }}
{{- end }}
{{- if and $v.watch.interval $v.watch.schedule }}
{{- fail "set either watch.interval or watch.schedule, not both" }}
{{- end }}
{{- if and (eq $v.mode "watch") (gt (int $v.watch.replicas) 1) (eq (toString $v.watch.leaderElection) "false") }}
{{- fail "watch.replicas > 1 needs leader election: set watch.leaderElection to auto or true" }}
{{- end }}
{{- if and $v.watch.podDisruptionBudget.enabled (toString $v.watch.podDisruptionBudget.minAvailable) (toString $v.watch.podDisruptionBudget.maxUnavailable) }}
{{- fail "set either watch.podDisruptionBudget.minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if and $v.watch.serviceMonitor.enabled (not $v.watch.service.enabled) }}
{{- fail "watch.serviceMonitor.enabled needs watch.service.enabled" }}
{{- end }}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) }}
{{- fail "serviceAccount.create=false needs serviceAccount.name (an existing ServiceAccount)" }}
{{- end }}
{{- end }}

{{/*
The container arguments. The image's entrypoint is the binary; flags use the --flag=value form so that
`kubectl describe` shows one setting per line. Flags that only one subcommand accepts are only passed
to that subcommand (see the CLI contract).
*/}}
{{- define "cacerts-sync.args" -}}
{{- $v := .Values }}
{{- $cmd := include "cacerts-sync.subcommand" . }}
- {{ printf "--log-format=%s" $v.logFormat | quote }}
- {{ $cmd }}
{{- if ne $cmd "check-root" }}
{{- if $v.vaultUrl }}
- {{ printf "--vault-url=%s" $v.vaultUrl | quote }}
{{- else }}
- {{ printf "--source=dir:%s" $v.sourceDir | quote }}
{{- end }}
{{- with $v.clusterName }}
- {{ printf "--cluster-name=%s" . | quote }}
{{- end }}
- {{ printf "--root-cert-name=%s" $v.rootCertName | quote }}
- {{ printf "--ca-cert-name=%s" $v.caCertName | quote }}
- {{ printf "--ca-key-name=%s" $v.caKeyName | quote }}
- {{ printf "--cert-chain-name=%s" $v.certChainName | quote }}
- {{ printf "--auth=%s" $v.auth | quote }}
{{- with $v.managedIdentityClientId }}
- {{ printf "--managed-identity-client-id=%s" . | quote }}
{{- end }}
{{- if $v.disableChallengeResourceVerification }}
- "--disable-challenge-resource-verification"
{{- end }}
{{- with $v.consistencyTimeout }}
- {{ printf "--consistency-timeout=%s" . | quote }}
{{- end }}
{{- with $v.expiryWarning }}
- {{ printf "--expiry-warning=%s" . | quote }}
{{- end }}
{{- with $v.trustPropagation }}
- {{ printf "--trust-propagation=%s" . | quote }}
{{- end }}
{{- if $v.allowUnsafeRotation }}
- "--allow-unsafe-rotation"
{{- end }}
{{- end }}
{{- with $v.timeout }}
- {{ printf "--timeout=%s" . | quote }}
{{- end }}
- {{ printf "--namespace=%s" (include "cacerts-sync.targetNamespace" .) | quote }}
- {{ printf "--secret=%s" $v.secretName | quote }}
{{- if and (ne $cmd "check-root") (not $v.adopt) }}
- "--no-adopt"
{{- end }}
{{- if and (eq $cmd "sync") $v.dryRun }}
- "--dry-run"
{{- end }}
{{- if $v.istiodDeployments }}
{{- range $v.istiodDeployments }}
- {{ printf "--istiod-deployment=%s" . | quote }}
{{- end }}
{{- else if $v.istiodSelector }}
- {{ printf "--istiod-selector=%s" $v.istiodSelector | quote }}
{{- end }}
{{- if $v.restartOnFirstRun }}
- "--restart-on-first-run"
{{- end }}
{{- if and (ne $cmd "check-root") (not $v.restart) }}
- "--no-restart"
{{- end }}
{{- if $v.wait }}
- "--wait"
{{- end }}
{{- with $v.waitTimeout }}
- {{ printf "--wait-timeout=%s" . | quote }}
{{- end }}
{{- if eq $cmd "sync" }}
{{- with $v.cron.jitter }}
- {{ printf "--jitter=%s" . | quote }}
{{- end }}
{{- end }}
{{- if eq $cmd "watch" }}
{{- with $v.watch.schedule }}
- {{ printf "--schedule=%s" . | quote }}
{{- end }}
{{- with $v.watch.interval }}
- {{ printf "--interval=%s" . | quote }}
{{- end }}
{{- with $v.watch.jitter }}
- {{ printf "--jitter=%s" . | quote }}
{{- end }}
- {{ printf "--admin-addr=0.0.0.0:%d" (int $v.watch.adminPort) | quote }}
{{- if include "cacerts-sync.leaderElection" . }}
- "--leader-election"
- {{ printf "--lease-name=%s" $v.watch.leaseName | quote }}
{{- with $v.watch.leaseDuration }}
- {{ printf "--lease-duration=%s" . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod labels: selector labels plus the workload identity opt-in the AKS webhook looks for. */}}
{{- define "cacerts-sync.podLabels" -}}
{{ include "cacerts-sync.labels" . }}
{{- if .Values.azure.workloadIdentity.enabled }}
azure.workload.identity/use: "true"
{{- end }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by both modes. Call with (dict "ctx" $ "restartPolicy" "Never").
*/}}
{{- define "cacerts-sync.podSpec" -}}
{{- $ := .ctx }}
{{- $v := $.Values }}
serviceAccountName: {{ include "cacerts-sync.serviceAccountName" $ }}
# The tool reads and writes Kubernetes objects, so it needs its token.
automountServiceAccountToken: {{ $v.automountServiceAccountToken }}
restartPolicy: {{ .restartPolicy }}
{{- if eq $v.mode "watch" }}
terminationGracePeriodSeconds: {{ include "cacerts-sync.terminationGracePeriodSeconds" $ }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: cacerts-sync
    image: {{ include "cacerts-sync.image" $ | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      {{- include "cacerts-sync.args" $ | nindent 6 }}
    env:
      - name: RUST_LOG
        value: {{ $v.logLevel | quote }}
      {{- if eq $v.mode "watch" }}
      # Identity of this replica in the leader Lease.
      - name: POD_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      {{- end }}
      {{- with $v.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if eq $v.mode "watch" }}
    ports:
      - name: admin
        containerPort: {{ $v.watch.adminPort }}
        protocol: TCP
    livenessProbe:
      httpGet:
        path: /healthz
        port: admin
      {{- toYaml $v.watch.livenessProbe | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      {{- toYaml $v.watch.readinessProbe | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      # The root filesystem is read-only; /tmp is the only writable path.
      - name: tmp
        mountPath: /tmp
      {{- with $v.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
  {{- with $v.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq $v.mode "watch" }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Seconds in a humantime duration as the tool reads it ("2m", "90s", "1h30m", "5min"). Fails on units it
does not know, so a typo cannot silently shorten the grace period. Call with (dict "name" "timeout" "value" "2m").
*/}}
{{- define "cacerts-sync.durationSeconds" -}}
{{- $in := .value }}
{{- $total := 0 }}
{{- $parts := regexFindAll "[0-9]+ *[a-zA-Z]*" $in -1 }}
{{- if or (not $parts) (ne (regexReplaceAll "[0-9]+ *[a-zA-Z]*| " $in "") "") }}
{{- fail (printf "%s=%q is not a duration cacerts-sync reads (e.g. 2m, 90s, 1h30m)" .name $in) }}
{{- end }}
{{- range $parts }}
{{- $n := regexFind "^[0-9]+" . | atoi }}
{{- $u := regexReplaceAll "^[0-9]+ *" . "" }}
{{- if has $u (list "s" "sec" "secs" "second" "seconds") }}{{ $total = add $total $n }}
{{- else if has $u (list "m" "min" "mins" "minute" "minutes") }}{{ $total = add $total (mul $n 60) }}
{{- else if has $u (list "h" "hr" "hrs" "hour" "hours") }}{{ $total = add $total (mul $n 3600) }}
{{- else if has $u (list "d" "day" "days") }}{{ $total = add $total (mul $n 86400) }}
{{- else if has $u (list "ms" "msec") }}{{ $total = add $total (div (add $n 999) 1000) }}
{{- else }}{{ fail (printf "%s=%q: unknown unit %q (use ms, s, m, h or d)" $.name $in $u) }}
{{- end }}
{{- end }}
{{- $total -}}
{{- end }}

{{/*
Watch mode's terminationGracePeriodSeconds. On SIGTERM the pod finishes the pass in flight, which may run
for --timeout and then --wait for up to --wait-timeout, and then releases the Lease (up to 5 s): the grace
period must cover all of it, or the kubelet kills istiod's restart half-way. Empty value: that sum plus 15 s.
A value set by hand below the sum fails the render.
*/}}
{{- define "cacerts-sync.terminationGracePeriodSeconds" -}}
{{- $v := .Values }}
{{- $timeout := include "cacerts-sync.durationSeconds" (dict "name" "timeout" "value" (default "2m" $v.timeout)) | atoi }}
{{- $wait := 0 }}
{{- if and $v.wait $v.restart }}
{{- $wait = include "cacerts-sync.durationSeconds" (dict "name" "waitTimeout" "value" (default "5m" $v.waitTimeout)) | atoi }}
{{- end }}
{{- $needed := add $timeout $wait 5 }}
{{- $set := $v.watch.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}
{{- add $needed 10 }}
{{- else if lt (int $set) $needed }}
{{- fail (printf "watch.terminationGracePeriodSeconds=%d is shorter than a pass: timeout (%ds) + waitTimeout (%ds, when wait is on) + 5s to release the Lease = %ds; raise it or leave it empty to have it computed" (int $set) $timeout $wait $needed) }}
{{- else }}
{{- int $set }}
{{- end }}
{{- end }}

{{/*
Cron mode's Job activeDeadlineSeconds. A `sync` run sleeps up to cron.jitter, then the pass runs for up to
--timeout, then --wait follows the rollouts for up to --wait-timeout: the deadline must cover all of it, or the
Job controller kills a run that the tool would still have finished (or reported) on its own. A value below the
sum fails the render. The deadline counts from the Job's start, so pod scheduling and the image pull come on
top. check-root is checked the same way, without jitter (it takes none).
*/}}
{{- define "cacerts-sync.activeDeadlineSeconds" -}}
{{- $v := .Values }}
{{- $set := int $v.cron.activeDeadlineSeconds }}
{{- if eq $v.mode "cron" }}
{{- $jitter := 0 }}
{{- if eq (include "cacerts-sync.subcommand" .) "sync" }}
{{- with $v.cron.jitter }}
{{- $jitter = include "cacerts-sync.durationSeconds" (dict "name" "cron.jitter" "value" .) | atoi }}
{{- end }}
{{- end }}
{{- $timeout := include "cacerts-sync.durationSeconds" (dict "name" "timeout" "value" (default "2m" $v.timeout)) | atoi }}
{{- $wait := 0 }}
{{- if and $v.wait $v.restart (not $v.dryRun) }}
{{- $wait = include "cacerts-sync.durationSeconds" (dict "name" "waitTimeout" "value" (default "5m" $v.waitTimeout)) | atoi }}
{{- end }}
{{- $needed := add $jitter $timeout $wait }}
{{- if lt $set $needed }}
{{- fail (printf "cron.activeDeadlineSeconds=%d is shorter than a run: cron.jitter (%ds) + timeout (%ds) + waitTimeout (%ds, when wait is on) = %ds; raise it (but keep it below the schedule's period), or shorten cron.jitter, timeout or waitTimeout" $set $jitter $timeout $wait $needed) }}
{{- end }}
{{- end }}
{{- $set }}
{{- end }}
