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
