//! Prometheus metrics: every series sigil exposes on `--metrics-listen`
//! (documented one by one in docs/metrics.md), recorded through the
//! functions here and encoded in the OpenMetrics text format by
//! `prometheus-client`.
//!
//! Owns the label vocabularies, and with them the cardinality: every label
//! value is one of a fixed set, a policy or trust root name (as many as the
//! cluster has), or one of at most [`MAX_REGISTRY_HOSTS`] registry hosts.
//! It must never take an image reference, digest, pod name or error text
//! as a label value: a tenant would then choose how many series there are.
//!
//! One process-wide set ([`global`]), as a process has one `/metrics`. It
//! imports nothing else of sigil: every layer may record into it.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Registry hosts with a label value of their own; the rest are `other`.
pub use crate::limits::MAX_METRIC_REGISTRY_HOSTS as MAX_REGISTRY_HOSTS;

/// Histogram buckets from 100 µs to 10 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// What the webhook answered.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Decision {
    /// Admitted without warnings.
    allowed,
    /// Admitted with warnings (warn-mode policies, audit mode's would-be denials).
    warned,
    /// Denied.
    denied,
    /// The body was not an AdmissionReview (HTTP 400).
    invalid,
    /// Refused unanswered by the fair shares of the reviews in flight
    /// (HTTP 503; the apiserver applies the webhook's failurePolicy).
    refused,
}

/// One admission review's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The workload kind: a pod-owning kind sigil reads, or `other`.
    pub kind: &'static str,
    /// CREATE, UPDATE, DELETE, CONNECT, or `other`.
    pub operation: &'static str,
    /// What was answered.
    pub decision: Decision,
}

/// A policy's result for one image.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PolicyResult {
    /// The policy passed.
    pass,
    /// It failed on the evidence: a verdict about the image.
    fail,
    /// It could not be decided (registry, timeout, overload).
    error,
}

/// Labels of a policy result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The ClusterImagePolicy's name.
    pub policy: String,
    /// `enforce` or `warn`.
    pub mode: &'static str,
    /// pass, fail or error.
    pub result: PolicyResult,
}

/// Labels of a verification by signature layout.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayoutLabels {
    /// `legacy_signatures`, `legacy_attestations`, `referrer_bundles` or
    /// `notation_signatures`.
    pub layout: &'static str,
}

/// Labels of one registry request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryRequestLabels {
    /// The registry host, or `other` past [`MAX_REGISTRY_HOSTS`].
    pub registry: String,
    /// `manifest`, `blob`, `referrers`, `tags`, `token` or `other`.
    pub operation: &'static str,
    /// `2xx`, `3xx`, `4xx`, `5xx`, `error` (no answer) or `circuit_open`.
    pub status: &'static str,
}

/// Labels of a registry request's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryOperationLabels {
    /// As in [`RegistryRequestLabels`].
    pub registry: String,
    /// As in [`RegistryRequestLabels`].
    pub operation: &'static str,
}

/// The caches sigil keeps.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CacheName {
    /// Policy outcomes per image digest.
    verdicts,
    /// Tag → digest.
    digests,
    /// Cosign signature and attestation layers per tag.
    signatures,
    /// OCI referrers per digest.
    referrers,
    /// Parsed image references.
    references,
    /// Registry bearer tokens.
    tokens,
    /// Pull-secret credentials of every namespace (cluster mode).
    pull_secrets,
}

/// Labels naming one registry host.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// As in [`RegistryRequestLabels`].
    pub registry: String,
}

/// A lookup's result.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Lookup {
    /// Answered from the cache (or by joining a lookup already under way).
    hit,
    /// Computed or fetched.
    miss,
}

/// Labels of a cache lookup.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLookupLabels {
    /// Which cache.
    pub cache: CacheName,
    /// hit or miss.
    pub result: Lookup,
}

/// Why an entry left a cache on its own.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum EvictionCause {
    /// Its lifetime ended.
    expired,
    /// The cache was full.
    size,
}

/// Labels of an eviction.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheEvictionLabels {
    /// Which cache.
    pub cache: CacheName,
    /// expired or size.
    pub cause: EvictionCause,
}

/// Labels of a cache's size.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// Which cache.
    pub cache: CacheName,
}

/// Labels of resources by readiness.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// `true` or `false`.
    pub ready: &'static str,
}

/// What became of a Kubernetes Event.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum EventOutcome {
    /// Created.
    sent,
    /// Counted into an Event already sent (its series).
    aggregated,
    /// Dropped: the queue was full.
    dropped,
    /// The apiserver refused it.
    failed,
    /// Not sent: over its object's or its namespace's rate.
    rate_limited,
}

/// Labels of an Event's fate.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// sent, aggregated, dropped or failed.
    pub result: EventOutcome,
}

/// Every series.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    review_seconds: Family<ReviewLabels, Histogram>,
    policy_results: Family<PolicyLabels, Counter>,
    verification_seconds: Family<LayoutLabels, Histogram>,
    registry_requests: Family<RegistryRequestLabels, Counter>,
    registry_seconds: Family<RegistryOperationLabels, Histogram>,
    cache_lookups: Family<CacheLookupLabels, Counter>,
    cache_evictions: Family<CacheEvictionLabels, Counter>,
    cache_bytes: Family<CacheLabels, Gauge>,
    policies: Family<ReadyLabels, Gauge>,
    trust_roots: Family<ReadyLabels, Gauge>,
    audit_records: Counter,
    audit_failures: Counter,
    audit_shed: Counter,
    registry_hangs: Family<RegistryLabels, Counter>,
    pull_secrets_refused: Counter,
    program_overloads: Counter,
    events: Family<EventLabels, Counter>,
    audit_last_run: Gauge<f64, std::sync::atomic::AtomicU64>,
    audit_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    audit_violations: Family<PolicyOnlyLabels, Gauge>,
    serving_certificate_expiry: Gauge<f64, std::sync::atomic::AtomicU64>,
    github_quota_remaining: Family<RegistryLabels, Gauge>,
    github_budget_refusals: Counter,
    hosts: Mutex<HashSet<String>>,
}

/// Labels naming one policy.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyOnlyLabels {
    /// The ClusterImagePolicy's name.
    pub policy: String,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sigil");
        let m = Metrics {
            registry: Registry::default(),
            reviews: Family::default(),
            review_seconds: Family::new_with_constructor(seconds_histogram),
            policy_results: Family::default(),
            verification_seconds: Family::new_with_constructor(seconds_histogram),
            registry_requests: Family::default(),
            registry_seconds: Family::new_with_constructor(seconds_histogram),
            cache_lookups: Family::default(),
            cache_evictions: Family::default(),
            cache_bytes: Family::default(),
            policies: Family::default(),
            trust_roots: Family::default(),
            audit_records: Counter::default(),
            audit_failures: Counter::default(),
            audit_shed: Counter::default(),
            registry_hangs: Family::default(),
            pull_secrets_refused: Counter::default(),
            program_overloads: Counter::default(),
            events: Family::default(),
            audit_last_run: Gauge::default(),
            audit_duration: Gauge::default(),
            audit_violations: Family::default(),
            serving_certificate_expiry: Gauge::default(),
            github_quota_remaining: Family::default(),
            github_budget_refusals: Counter::default(),
            hosts: Mutex::new(HashSet::new()),
        };
        registry.register(
            "admission_reviews",
            "AdmissionReviews answered, by workload kind, operation and decision",
            m.reviews.clone(),
        );
        registry.register(
            "admission_review_duration_seconds",
            "Time to answer an AdmissionReview, from its body to the response body",
            m.review_seconds.clone(),
        );
        registry.register(
            "policy_results",
            "Policy results per image: pass, fail (a verdict) or error (could not decide)",
            m.policy_results.clone(),
        );
        registry.register(
            "verification_duration_seconds",
            "Time to collect and verify the evidence of one signature layout for one image",
            m.verification_seconds.clone(),
        );
        registry.register(
            "registry_requests",
            "HTTP requests to registries and their token servers, by status class",
            m.registry_requests.clone(),
        );
        registry.register(
            "registry_request_duration_seconds",
            "Registry request latency, until the response headers",
            m.registry_seconds.clone(),
        );
        registry.register(
            "cache_lookups",
            "Cache lookups by cache and result (hit or miss)",
            m.cache_lookups.clone(),
        );
        registry.register(
            "cache_evictions",
            "Entries that left a cache because they expired or it was full",
            m.cache_evictions.clone(),
        );
        registry.register(
            "cache_bytes",
            "What each cache holds, weighed in bytes (sampled at scrape)",
            m.cache_bytes.clone(),
        );
        registry.register(
            "policies",
            "ClusterImagePolicies loaded, by readiness",
            m.policies.clone(),
        );
        registry.register(
            "trust_roots",
            "Trust roots loaded, by readiness",
            m.trust_roots.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records written",
            m.audit_records.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit records that could not be written",
            m.audit_failures.clone(),
        );
        registry.register(
            "audit_dry_run_records_shed",
            "Audit records of dry-run requests not written because the audit queue was half full",
            m.audit_shed.clone(),
        );
        registry.register(
            "registry_hangs",
            "Registry requests still unanswered at the hang threshold (the connect timeout), counted as a failure of the registry's breaker then",
            m.registry_hangs.clone(),
        );
        registry.register(
            "pull_secrets_refused",
            "Pull secrets not cached because their namespace's share or the cache's budget was used up, or they were too large",
            m.pull_secrets_refused.clone(),
        );
        registry.register(
            "policy_program_overloads",
            "Policy program evaluations refused because every worker was busy",
            m.program_overloads.clone(),
        );
        registry.register(
            "events",
            "Kubernetes Events: sent, aggregated into a series, dropped (queue full) or failed",
            m.events.clone(),
        );
        registry.register(
            "background_audit_last_run_timestamp_seconds",
            "When the background audit last finished (Unix time)",
            m.audit_last_run.clone(),
        );
        registry.register(
            "background_audit_duration_seconds",
            "How long the last background audit took",
            m.audit_duration.clone(),
        );
        registry.register(
            "background_audit_violations",
            "Running workloads failing each policy at the last background audit",
            m.audit_violations.clone(),
        );
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "When the serving certificate this replica loaded from its Secret expires (Unix time; 0 until one is loaded)",
            m.serving_certificate_expiry.clone(),
        );
        registry.register(
            "github_api_rate_limit_remaining",
            "Calls the token may still make to a GitHub API host this rate-limit window, as its last answer said (x-ratelimit-remaining)",
            m.github_quota_remaining.clone(),
        );
        registry.register(
            "github_budget_refusals",
            "GitHub API calls not made because the namespace asking had spent its budget",
            m.github_budget_refusals.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// This replica now serves a certificate ending at `not_after`.
    pub fn serving_certificate(&self, not_after: std::time::SystemTime) {
        let secs = not_after
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.serving_certificate_expiry.set(secs);
    }

    /// One review answered.
    pub fn review(&self, kind: &str, operation: &str, decision: Decision, took: Duration) {
        let labels = ReviewLabels {
            kind: kind_label(kind),
            operation: operation_label(operation),
            decision,
        };
        self.review_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.reviews.get_or_create(&labels).inc();
    }

    /// One policy's result for `images` images (uses of images: a
    /// workload's containers running one image count once each).
    pub fn policy_results(
        &self,
        policy: &str,
        mode: &'static str,
        result: PolicyResult,
        images: u64,
    ) {
        self.policy_results
            .get_or_create(&PolicyLabels {
                policy: policy.to_string(),
                mode,
                result,
            })
            .inc_by(images);
    }

    /// One layout's evidence collected for one image.
    pub fn verification(&self, layout: &'static str, took: Duration) {
        self.verification_seconds
            .get_or_create(&LayoutLabels { layout })
            .observe(took.as_secs_f64());
    }

    /// One request to `registry` at `path` (`status` as
    /// [`status_class`] says), which took `took`.
    pub fn registry_request(
        &self,
        registry: &str,
        operation: &'static str,
        status: &'static str,
        took: Option<Duration>,
    ) {
        let registry = self.host_label(registry);
        if let Some(took) = took {
            self.registry_seconds
                .get_or_create(&RegistryOperationLabels {
                    registry: registry.clone(),
                    operation,
                })
                .observe(took.as_secs_f64());
        }
        self.registry_requests
            .get_or_create(&RegistryRequestLabels {
                registry,
                operation,
                status,
            })
            .inc();
    }

    /// A lookup in `cache`.
    pub fn cache_lookup(&self, cache: CacheName, hit: bool) {
        let result = if hit { Lookup::hit } else { Lookup::miss };
        self.cache_lookups
            .get_or_create(&CacheLookupLabels { cache, result })
            .inc();
    }

    /// An entry left `cache` on its own (moka's removal cause); entries
    /// replaced or removed on purpose are not evictions.
    pub fn cache_removal(&self, cache: CacheName, cause: moka::notification::RemovalCause) {
        use moka::notification::RemovalCause;
        let cause = match cause {
            RemovalCause::Expired => EvictionCause::expired,
            RemovalCause::Size => EvictionCause::size,
            RemovalCause::Explicit | RemovalCause::Replaced => return,
        };
        self.cache_evictions
            .get_or_create(&CacheEvictionLabels { cache, cause })
            .inc();
    }

    /// What `cache` holds now, in bytes.
    pub fn set_cache_bytes(&self, cache: CacheName, bytes: u64) {
        self.cache_bytes
            .get_or_create(&CacheLabels { cache })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// How many policies are Ready and not.
    pub fn set_policies(&self, ready: usize, not_ready: usize) {
        set_ready(&self.policies, ready, not_ready);
    }

    /// How many trust roots are Ready and not.
    pub fn set_trust_roots(&self, ready: usize, not_ready: usize) {
        set_ready(&self.trust_roots, ready, not_ready);
    }

    /// An audit record written, or not.
    pub fn audit_record(&self, written: bool) {
        self.audit_records(written, 1);
    }

    /// `n` audit records were written (or failed to be), in one write.
    pub fn audit_records(&self, written: bool, n: u64) {
        if written {
            self.audit_records.inc_by(n);
        } else {
            self.audit_failures.inc_by(n);
        }
    }

    /// A dry-run request's audit record was shed (the queue was half full).
    pub fn audit_record_shed(&self) {
        self.audit_shed.inc();
    }

    /// A request to `registry` reached the hang threshold unanswered.
    pub fn registry_hang(&self, registry: &str) {
        let registry = self.host_label(registry);
        self.registry_hangs
            .get_or_create(&RegistryLabels { registry })
            .inc();
    }

    /// A pull secret was not cached (over a budget, or too large).
    pub fn pull_secret_refused(&self) {
        self.pull_secrets_refused.inc();
    }

    /// A background audit finished, taking `took`, with the failing
    /// workloads of each policy.
    pub fn background_audit<'a>(
        &self,
        took: Duration,
        violations: impl Iterator<Item = (&'a str, u64)>,
    ) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.audit_last_run.set(now);
        self.audit_duration.set(took.as_secs_f64());
        // Policies gone since the last run drop out.
        self.audit_violations.clear();
        for (policy, fail) in violations {
            self.audit_violations
                .get_or_create(&PolicyOnlyLabels {
                    policy: policy.to_string(),
                })
                .set(i64::try_from(fail).unwrap_or(i64::MAX));
        }
    }

    /// What became of one Kubernetes Event.
    pub fn event(&self, result: EventOutcome) {
        self.events.get_or_create(&EventLabels { result }).inc();
    }

    /// GitHub's answer from `host` said the token has `remaining` calls
    /// left in this window.
    pub fn github_quota(&self, host: &str, remaining: u64) {
        let registry = self.host_label(host);
        self.github_quota_remaining
            .get_or_create(&RegistryLabels { registry })
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
    }

    /// A GitHub API call not made: the namespace's budget was spent.
    pub fn github_budget_spent(&self) {
        self.github_budget_refusals.inc();
    }

    /// A policy program refused for want of a worker.
    pub fn program_overload(&self) {
        self.program_overloads.inc();
    }

    /// `registry`'s label value: itself while fewer than
    /// [`MAX_REGISTRY_HOSTS`] hosts have one, else `other`.
    fn host_label(&self, registry: &str) -> String {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if hosts.contains(registry) {
            return registry.to_string();
        }
        if hosts.len() < MAX_REGISTRY_HOSTS {
            hosts.insert(registry.to_string());
            return registry.to_string();
        }
        "other".to_string()
    }
}

fn set_ready(family: &Family<ReadyLabels, Gauge>, ready: usize, not_ready: usize) {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    family
        .get_or_create(&ReadyLabels { ready: "true" })
        .set(count(ready));
    family
        .get_or_create(&ReadyLabels { ready: "false" })
        .set(count(not_ready));
}

/// The workload kinds sigil reads, as label values; anything else is `other`.
fn kind_label(kind: &str) -> &'static str {
    const KINDS: [&str; 9] = [
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
        "PodTemplate",
    ];
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other")
}

fn operation_label(operation: &str) -> &'static str {
    const OPERATIONS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];
    OPERATIONS
        .iter()
        .find(|o| **o == operation)
        .copied()
        .unwrap_or("other")
}

/// The status class label of an HTTP status code.
pub fn status_class(code: u16) -> &'static str {
    match code {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// The operation label of a registry API path.
pub fn registry_operation(path: &str) -> &'static str {
    if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/referrers/") {
        "referrers"
    } else if path.ends_with("/tags/list") || path.contains("/tags/list?") {
        "tags"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_chosen_values_never_become_label_values() {
        assert_eq!(kind_label("Pod"), "Pod");
        assert_eq!(kind_label("EvilKind-123"), "other");
        assert_eq!(operation_label("CREATE"), "CREATE");
        assert_eq!(operation_label("PATCH; DROP"), "other");
        let m = Metrics::new();
        for i in 0..100 {
            m.registry_request(&format!("registry-{i}.example"), "manifest", "2xx", None);
        }
        let text = m.encode();
        let hosts: HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("sigil_registry_requests_total{"))
            .filter_map(|l| l.split("registry=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(hosts.len(), MAX_REGISTRY_HOSTS + 1, "{hosts:?}");
        assert!(hosts.contains("other"));
        assert!(text.contains("sigil_registry_requests_total{registry=\"other\",operation=\"manifest\",status=\"2xx\"} 68"), "{text}");
    }

    #[test]
    fn operations_and_status_classes() {
        assert_eq!(registry_operation("/v2/a/b/manifests/v1"), "manifest");
        assert_eq!(registry_operation("/v2/a/blobs/sha256:00"), "blob");
        assert_eq!(registry_operation("/v2/a/referrers/sha256:00"), "referrers");
        assert_eq!(registry_operation("/v2/"), "other");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
