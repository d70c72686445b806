{{/*
"loopline.service" renders everything one Loopline API service needs, so that each service's file only
says what is particular to it. Argument (a dict):
  root        the chart's root context
  component   the service's slug (registry, features, ...)
  httpPort    HTTP/JSON port (also /healthz, /readyz, /metrics)
  grpcPort    gRPC port (native gRPC probes: `liveness` for liveness, the default service for readiness)
  env         YAML list of the service's own env entries (a string)
  volumes     YAML list of extra volumes (a string, may be empty)
  mounts      YAML list of extra volume mounts (a string, may be empty)
  callers     components whose pods may call this service
  calls       components this service calls: list of dicts {component, port}
  infra       keys of .Values.networkPolicy this service reaches (kafka, postgres, objectStore, ...)
  strategy    optional Deployment strategy type (Recreate for a single writer of a volume)
Objects: ServiceAccount, Service, Deployment, HPA (autoscaling on and KEDA off; replicas then left out),
PodDisruptionBudget, NetworkPolicy and ServiceMonitor.
*/}}
{{- define "loopline.service" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
{{- $name := include "loopline.fullname" . -}}
{{- $ctx := dict "root" $root "component" .component -}}
{{- $scaled := or $v.autoscaling.enabled $v.keda.enabled -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  labels:
    {{- include "loopline.labels" $ctx | nindent 4 }}
automountServiceAccountToken: {{ .automountToken | default false }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "loopline.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "loopline.selectorLabels" $ctx | nindent 4 }}
  ports:
    - {name: http, port: {{ .httpPort }}, targetPort: http, protocol: TCP, appProtocol: http}
    - {name: grpc, port: {{ .grpcPort }}, targetPort: grpc, protocol: TCP, appProtocol: kubernetes.io/h2c}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "loopline.labels" $ctx | nindent 4 }}
spec:
  {{- if not $scaled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with .strategy }}
  strategy:
    type: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "loopline.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "loopline.labels" $ctx | nindent 8 }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: {{ .automountToken | default false }}
      securityContext:
        {{- include "loopline.podSecurityContext" $root | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: 30
      {{- include "loopline.topologySpread" $ctx | indent 6 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "loopline.imageRef" $ctx }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          securityContext:
            {{- include "loopline.containerSecurityContext" $root | nindent 12 }}
          ports:
            - {name: http, containerPort: {{ .httpPort }}, protocol: TCP}
            - {name: grpc, containerPort: {{ .grpcPort }}, protocol: TCP}
          env:
            {{- $prefix := printf "LOOPLINE_%s_" (upper .component) }}
            - {name: {{ $prefix }}HOST, value: "0.0.0.0"}
            - {name: {{ $prefix }}HTTP_PORT, value: {{ .httpPort | quote }}}
            - {name: {{ $prefix }}GRPC_PORT, value: {{ .grpcPort | quote }}}
            - name: {{ $prefix }}INSTANCE_ID
              valueFrom:
                fieldRef: {fieldPath: metadata.name}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- range $key, $value := $v.env }}
            - {name: {{ $prefix }}{{ $key }}, value: {{ $value | toString | quote }}}
            {{- end }}
          startupProbe:
            grpc: {port: {{ .grpcPort }}, service: liveness}
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            grpc: {port: {{ .grpcPort }}, service: liveness}
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            grpc: {port: {{ .grpcPort }}}
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {sizeLimit: 256Mi}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- if and $v.autoscaling.enabled (not $v.keda.enabled) }}
---
{{ include "loopline.hpa" (dict "root" $root "component" .component "name" $name "target" $name "autoscaling" $v.autoscaling) }}
{{- end }}
---
{{ include "loopline.pdb" (dict "root" $root "component" .component "name" $name "pdb" $v.pdb "selector" (include "loopline.selectorLabels" $ctx | fromYaml)) }}
{{- if $root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "loopline.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "loopline.selectorLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    # Loopline's callers of this API (and the helm test pod).
    - ports:
        - {protocol: TCP, port: {{ .httpPort }}}
        - {protocol: TCP, port: {{ .grpcPort }}}
      from:
        {{- range .callers }}
        {{- include "loopline.peer" (dict "root" $root "component" .) | nindent 8 }}
        {{- end }}
        {{- include "loopline.peer" (dict "root" $root "component" "helm-test") | nindent 8 }}
        {{- with $root.Values.networkPolicy.apiClients }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    # Prometheus scrapes /metrics on the HTTP port.
    - ports:
        - {protocol: TCP, port: {{ .httpPort }}}
      from:
        {{- toYaml $root.Values.networkPolicy.prometheus | nindent 8 }}
  egress:
    - ports:
        - {protocol: UDP, port: 53}
        - {protocol: TCP, port: 53}
      to:
        {{- toYaml $root.Values.networkPolicy.dns | nindent 8 }}
    {{- range .calls }}
    - ports:
        - {protocol: TCP, port: {{ .port }}}
      to:
        {{- include "loopline.peer" (dict "root" $root "component" .component) | nindent 8 }}
    {{- end }}
    {{- range .infra }}
    {{- include "loopline.egressRule" (index $root.Values.networkPolicy .) | nindent 4 }}
    {{- end }}
{{- end }}
{{- if $root.Values.observability.serviceMonitors.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $name }}
  labels:
    {{- include "loopline.labels" $ctx | nindent 4 }}
    {{- with $root.Values.observability.serviceMonitors.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "loopline.selectorLabels" $ctx | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ $root.Values.observability.serviceMonitors.interval }}
{{- end }}
{{- end -}}
