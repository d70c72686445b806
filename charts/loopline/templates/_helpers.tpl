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

{{/* A component's image reference, honouring image.overrides (skaffold sets them). */}}
{{- define "loopline.imageRef" -}}
{{- $override := index (.root.Values.image.overrides | default dict) .component -}}
{{- if $override -}}{{ $override }}{{- else -}}{{ include "loopline.image" . }}{{- end -}}
{{- end -}}

{{/* Kafka bootstrap servers. */}}
{{- define "loopline.kafka" -}}{{ required "kafka.bootstrap is required" .Values.kafka.bootstrap }}{{- end -}}

{{/* In-cluster gRPC address of a component: <release>-<component>:<port>. */}}
{{- define "loopline.grpcTarget" -}}
{{- printf "%s:%v" (include "loopline.fullname" .) .port -}}
{{- end -}}

{{/* MLflow's URL: the chart's server or the external one. */}}
{{- define "loopline.mlflowUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s:5000" (include "loopline.fullname" (dict "root" . "component" "mlflow")) -}}
{{- else -}}
{{- required "mlflow.externalUri is required when mlflow.enabled is false" .Values.mlflow.externalUri -}}
{{- end -}}
{{- end -}}

{{/* An env entry read from a Secret key. */}}
{{- define "loopline.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{/* Selector of one Loopline component's pods, as a NetworkPolicy peer. */}}
{{- define "loopline.peer" -}}
{{- if eq .component "training-job" }}
{{- /* Training Jobs are made by the training service with these labels (runners/manifest.py). */}}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: loopline-training
      app.kubernetes.io/component: training-job
      app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- else }}
- podSelector:
    matchLabels:
      {{- include "loopline.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* An egress rule to infrastructure: {peers, ports}. */}}
{{- define "loopline.egressRule" -}}
- ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with .peers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Topology spread over zones and nodes for a component's pods. */}}
{{- define "loopline.topologySpread" -}}
{{- $root := .root -}}
{{- if $root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $root.Values.topologySpread.topologyKeys }}
  - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "loopline.selectorLabels" $ | nindent 8 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The pod-level security context (restricted profile). */}}
{{- define "loopline.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end -}}

{{/* The container-level security context (restricted profile). */}}
{{- define "loopline.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* HorizontalPodAutoscaler (autoscaling/v2) for a scale target: CPU utilization plus optional metrics. */}}
{{- define "loopline.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  labels:
    {{- include "loopline.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .target }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
    {{- with .autoscaling.metrics }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* PodDisruptionBudget for a set of pods. */}}
{{- define "loopline.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "loopline.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .pdb.minAvailable) }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- toYaml .selector | nindent 6 }}
{{- end -}}
