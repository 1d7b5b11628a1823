{{/*
sigil's alerts as Prometheus rule groups, derived from the values: the
namespace sigil runs in (every selector names it, so two installations never
see each other's series), the metrics Service's scrape job, and the
background audit's interval (the staleness alert waits two intervals, and is
left out with `sigil.auditInterval: 0s`). The PrometheusRule renders these;
deploy/sigil-alerts.yaml is the defaults as a plain rule file
(scripts/gen-deploy.sh), for Prometheus without the operator.
*/}}

{{/* Seconds in a duration such as 1h, 90m, 1h30m or 0s. */}}
{{- define "sigil.seconds" -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+[smhd]" . -1 -}}
{{- $n := regexFind "[0-9]+" . | int -}}
{{- $unit := regexFind "[smhd]" . -}}
{{- $scale := get (dict "s" 1 "m" 60 "h" 3600 "d" 86400) $unit -}}
{{- $total = add $total (mul $n $scale) -}}
{{- end -}}
{{- $total -}}
{{- end }}

{{- define "sigil.alertGroups" -}}
{{- $sel := printf "job=\"sigil-metrics\", namespace=\"%s\"" .Release.Namespace -}}
{{- $auditSeconds := include "sigil.seconds" .Values.sigil.auditInterval | int -}}
groups:
  - name: sigil
    rules:
      - alert: SigilWebhookDown
        expr: absent(up{ {{- $sel -}} } == 1)
        for: 5m
        labels: {severity: critical}
        annotations:
          summary: No sigil replica is being scraped as up.
          description: With failurePolicy Fail, no pod can be created in enforced namespaces while every replica is down. See docs/operations.md, "When every replica is down".
      - alert: SigilReplicaNotReady
        expr: kube_deployment_status_replicas_available{namespace="{{ .Release.Namespace }}", deployment="sigil"} < kube_deployment_spec_replicas{namespace="{{ .Release.Namespace }}", deployment="sigil"}
        for: 10m
        labels: {severity: warning}
        annotations:
          summary: A sigil replica has not been Ready for 10 minutes (kube-state-metrics).
      - alert: SigilDenyRateJump
        expr: |
          sum(rate(sigil_admission_reviews_total{ {{- $sel -}}, decision="denied"}[5m])) > 0.05
          and
          sum(rate(sigil_admission_reviews_total{ {{- $sel -}}, decision="denied"}[5m]))
            > 3 * sum(rate(sigil_admission_reviews_total{ {{- $sel -}}, decision="denied"}[1h] offset 5m))
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: sigil denies three times as often as in the hour before.
          description: A policy change, an expired key or a registry problem; `sigil report` names the reasons.
      - alert: SigilVerificationErrors
        expr: sum by (policy) (rate(sigil_policy_results_total{ {{- $sel -}}, result="error"}[5m])) > 0.02
        for: 10m
        labels: {severity: warning}
        annotations:
          summary: "Policy {{ "{{" }} $labels.policy {{ "}}" }} cannot be decided (registry, timeout, trust root)."
      - alert: SigilRegistryBreakerOpen
        expr: sum by (registry) (rate(sigil_registry_requests_total{ {{- $sel -}}, status="circuit_open"}[5m])) > 0
        for: 2m
        labels: {severity: warning}
        annotations:
          summary: "sigil's circuit breaker for registry {{ "{{" }} $labels.registry {{ "}}" }} is open: its images are denied without a request."
      - alert: SigilCertificateExpiringSoon
        # 0: no certificate served yet (a placeholder while the Secret is
        # awaited); /readyz and SigilReplicaNotReady cover that.
        expr: sigil_serving_certificate_expiry_timestamp_seconds{ {{- $sel -}} } > 0 and sigil_serving_certificate_expiry_timestamp_seconds{ {{- $sel -}} } - time() < 7 * 86400
        for: 15m
        labels: {severity: critical}
        annotations:
          summary: sigil's serving certificate expires within 7 days.
      - alert: SigilAuditRecordsDropped
        expr: increase(sigil_audit_write_failures_total{ {{- $sel -}} }[10m]) > 0
        labels: {severity: critical}
        annotations:
          summary: sigil could not write audit records; the audit trail has a gap (`sigil report --verify` names it).
      - alert: SigilGithubApiQuotaLow
        expr: min by (registry) (sigil_github_api_rate_limit_remaining{ {{- $sel -}} }) < 500
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: "The GitHub token has fewer than 500 API calls left this hour on {{ "{{" }} $labels.registry {{ "}}" }}; when they run out, images under githubAttestations policies are denied."
      - alert: SigilPolicyNotReady
        expr: sigil_policies{ {{- $sel -}}, ready="false"} > 0 or sigil_trust_roots{ {{- $sel -}}, ready="false"} > 0
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: A ClusterImagePolicy or TrustRoot is not Ready; the images it matches are denied. `kubectl get cip,trustroot` names the field.
      {{- if gt $auditSeconds 0 }}
      - alert: SigilBackgroundAuditStale
        expr: time() - max(sigil_background_audit_last_run_timestamp_seconds{ {{- $sel -}} }) > {{ mul 2 $auditSeconds }}
        for: 10m
        labels: {severity: warning}
        annotations:
          summary: The background audit ({{ .Values.sigil.auditInterval }}) has not run for two intervals; PolicyReports are getting old.
      {{- end }}
{{- end }}
