{{/* Labels on every object. */}}
{{- define "sigil.labels" -}}
app.kubernetes.io/name: sigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Service and webhook name. */}}
{{- define "sigil.name" -}}sigil{{- end }}

{{/* The caBundle of the webhook configurations (empty with cert-manager, which injects it). */}}
{{- define "sigil.caBundle" -}}
{{- if eq .Values.certificates.mode "secret" }}
      caBundle: {{ required "certificates.secret.caBundle: the base64 PEM of the CA that signed the serving certificate" .Values.certificates.secret.caBundle }}
{{- end }}
{{- end }}

{{/* cainjector's annotation with cert-manager. */}}
{{- define "sigil.injectAnnotations" -}}
{{- if eq .Values.certificates.mode "certManager" }}
  annotations:
    cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/sigil-serving
{{- end }}
{{- end }}

{{/* Which namespaces the webhooks see: the opt-in selector, never sigil's own namespace or kube-system. */}}
{{- define "sigil.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
{{- range .Values.webhook.namespaceSelector.matchExpressions }}
    - {{ toJson . }}
{{- end }}
    - {key: kubernetes.io/metadata.name, operator: NotIn, values: [{{ .Release.Namespace | quote }}, "kube-system"]}
{{- with .Values.webhook.objectSelector }}
objectSelector: {{ toJson . }}
{{- end }}
{{- end }}

{{/* The workload kinds the webhooks check. */}}
{{- define "sigil.rules" -}}
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["pods", "pods/ephemeralcontainers", "replicationcontrollers"]
  - apiGroups: ["apps"]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
  - apiGroups: ["batch"]
    apiVersions: ["v1", "v1beta1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["jobs", "cronjobs"]
{{- end }}

{{/* The image: by digest when one is given, else the tag (the chart's appVersion by default). */}}
{{- define "sigil.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* MiB sigil's memory budgets and headroom add up to. */}}
{{- define "sigil.memoryFloorMiB" -}}
{{- $m := .Values.memory -}}
{{- add $m.cachesMiB $m.registryReadsMiB $m.requestBodiesMiB $m.pullSecretCacheMiB $m.auditQueueMiB $m.headroomMiB -}}
{{- end }}

{{/*
The container's resources: the memory limit is the budgets' sum plus
headroom unless given, and a given one below that sum fails the render.
*/}}
{{- define "sigil.resources" -}}
{{- $floor := include "sigil.memoryFloorMiB" . | int -}}
{{- $resources := deepCopy .Values.resources -}}
{{- $limits := $resources.limits | default dict -}}
{{- if $limits.memory -}}
{{- $given := toString $limits.memory -}}
{{- $mib := 0 -}}
{{- if hasSuffix "Gi" $given -}}
{{- $mib = mul (trimSuffix "Gi" $given | int) 1024 -}}
{{- else if hasSuffix "Mi" $given -}}
{{- $mib = trimSuffix "Mi" $given | int -}}
{{- else -}}
{{- fail (printf "resources.limits.memory %q: give it in Mi or Gi" $given) -}}
{{- end -}}
{{- if lt $mib $floor -}}
{{- fail (printf "resources.limits.memory %s is below what sigil's memory budgets and headroom add up to (%dMi: memory.*MiB); raise the limit or lower the budgets" $given $floor) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $limits "memory" (printf "%dMi" $floor) -}}
{{- end -}}
{{- $_ := set $resources "limits" $limits -}}
{{- toYaml $resources -}}
{{- end }}
