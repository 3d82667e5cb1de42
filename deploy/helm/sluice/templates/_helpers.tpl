{{/*
Names. The objects are called "<release>-<chart>" (or the release's name
when it holds the chart's name), cut to 63 characters: Kubernetes names of
Services and labels allow no more.
*/}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of an object of a component: "<fullname>-<suffix>". */}}
{{- define "sluice.componentName" -}}
{{- printf "%s-%s" (include "sluice.fullname" .root) .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.serverName" -}}
{{- include "sluice.componentName" (dict "root" . "suffix" "server") }}
{{- end }}

{{- define "sluice.runnerName" -}}
{{- include "sluice.componentName" (dict "root" .root "suffix" (printf "runner-%s" .pool)) }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The image of the sluice containers: by digest when one is given. */}}
{{- define "sluice.image" -}}
{{- include "sluice.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/*
The image of a runner pool: the pool's image settings over the chart's
(runners.defaults.image pins the runners during an upgrade of the server).
A pool that sets a tag or a digest takes neither from image.
*/}}
{{- define "sluice.runnerImage" -}}
{{- $img := deepCopy .root.Values.image }}
{{- $over := default (dict) .pool.image }}
{{- if or $over.tag $over.digest }}
{{- $_ := set $img "tag" (default "" $over.tag) }}
{{- $_ := set $img "digest" (default "" $over.digest) }}
{{- end }}
{{- with $over.repository }}
{{- $_ := set $img "repository" . }}
{{- end }}
{{- include "sluice.imageRef" (dict "image" $img "appVersion" .root.Chart.AppVersion) }}
{{- end }}

{{- define "sluice.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The server's URL inside the cluster, through its Service. */}}
{{- define "sluice.serverInternalURL" -}}
{{- printf "http://%s.%s.svc:%d" (include "sluice.serverName" .) .Release.Namespace (int .Values.server.port) }}
{{- end }}

{{/* The URL GitHub and browsers reach the server at (--public-url). */}}
{{- define "sluice.publicURL" -}}
{{- if .Values.server.publicURL }}
{{- .Values.server.publicURL | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host }}
{{- else }}
{{- include "sluice.serverInternalURL" . }}
{{- end }}
{{- end }}

{{/*
The flags and environment that reach Temporal, shared by the server, the
runners and the setup Job. Called with a dict: root, tlsSecret (the Secret
of the certificates, or ""), apiKeySecret (the Secret of the API key, or "").
*/}}
{{- define "sluice.temporalArgs" -}}
{{- $t := .root.Values.temporal }}
- --temporal-address={{ $t.address }}
- --namespace={{ $t.namespace }}
{{- if $t.tls.enabled }}
{{- if .tlsSecret }}
{{- if $t.tls.caKey }}
- --tls-ca=/etc/sluice/temporal-tls/{{ $t.tls.caKey }}
{{- end }}
{{- if $t.tls.certKey }}
- --tls-cert=/etc/sluice/temporal-tls/{{ $t.tls.certKey }}
- --tls-key=/etc/sluice/temporal-tls/{{ $t.tls.keyKey }}
{{- end }}
{{- end }}
{{- if $t.tls.serverName }}
- --tls-server-name={{ $t.tls.serverName }}
{{- else if not (or (and .tlsSecret $t.tls.caKey) (and .tlsSecret $t.tls.certKey) .apiKeySecret) }}
{{- /* Nothing else would turn TLS on: name the address's host. */}}
- --tls-server-name={{ regexReplaceAll ":[0-9]+$" $t.address "" | trimPrefix "[" | trimSuffix "]" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sluice.temporalEnv" -}}
{{- if .apiKeySecret }}
- name: SLUICE_TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .apiKeySecret }}
      key: {{ .root.Values.temporal.apiKey.key }}
{{- end }}
{{- end }}

{{- define "sluice.temporalVolumeMount" -}}
{{- if and .root.Values.temporal.tls.enabled .tlsSecret }}
- name: temporal-tls
  mountPath: /etc/sluice/temporal-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "sluice.temporalVolume" -}}
{{- if and .root.Values.temporal.tls.enabled .tlsSecret }}
- name: temporal-tls
  secret:
    secretName: {{ .tlsSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/*
Go durations as the runner's --drain-timeout takes them, in whole seconds:
"1h30m" is 5400. values.schema.json allows only h, m and s.
*/}}
{{- define "sluice.durationSeconds" -}}
{{- $h := regexFind "[0-9]+h" . | trimSuffix "h" | default "0" | atoi }}
{{- $m := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | atoi }}
{{- $s := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | atoi }}
{{- add (mul $h 3600) (mul $m 60) $s }}
{{- end }}

{{/*
A runner pool's settings: runners.defaults with the pool's keys put over
them, key by key (a pool's false, 0 or "" wins too). Maps are merged the
same way, down to their leaves, except the volume sources (workVolume,
cacheVolume), which a pool replaces whole.
*/}}
{{- define "sluice.pool" -}}
{{- include "sluice.merge" (dict "base" .root.Values.runners.defaults "over" .pool) }}
{{- end }}

{{- define "sluice.merge" -}}
{{- $out := dict }}
{{- range $k, $v := .base }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- range $k, $v := .over }}
{{- $base := get $out $k }}
{{- if and (kindIs "map" $v) (kindIs "map" $base) (not (has $k (list "workVolume" "cacheVolume"))) }}
{{- $_ := set $out $k (include "sluice.merge" (dict "base" $base "over" $v) | fromJson) }}
{{- else }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}
