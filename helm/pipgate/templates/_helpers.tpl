{{/* The chart name, or nameOverride. */}}
{{- define "pipgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, or release-chart (just the release when it already holds the chart name). */}}
{{- define "pipgate.fullname" -}}
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

{{- define "pipgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The standard labels, on every object. */}}
{{- define "pipgate.labels" -}}
helm.sh/chart: {{ include "pipgate.chart" . }}
{{ include "pipgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: index
app.kubernetes.io/part-of: pipgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* What the Service, PDB, HPA and NetworkPolicy select pods by. */}}
{{- define "pipgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pipgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pipgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where a Secret of the chart's is mounted: /var/run/secrets/pipgate/<purpose>. */}}
{{- define "pipgate.secretDir" -}}
/var/run/secrets/pipgate/{{ . }}
{{- end }}

{{/* A list of strings as a TOML array. */}}
{{- define "pipgate.tomlList" -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ $v | toJson }}{{ end }}]
{{- end }}
