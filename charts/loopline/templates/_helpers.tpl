{{/*
Shared named templates. Every service's templates use these, so names, labels, images and security
settings are defined once.
*/}}

{{/* Release-scoped name of a component: <release>-<component>, at most 63 characters. */}}
{{- define "loopline.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select a component's pods. */}}
{{- define "loopline.selectorLabels" -}}
app.kubernetes.io/name: loopline-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Every object's labels. */}}
{{- define "loopline.labels" -}}
{{ include "loopline.selectorLabels" . }}
app.kubernetes.io/part-of: loopline
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A component's image reference. */}}
{{- define "loopline.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- printf "%s/loopline-%s:%s" .root.Values.image.repository .component $tag -}}
{{- end -}}
