//! The admission pipeline, shared by the webhook and `sigil check`:
//! images → matching policies → verification (concurrent, one deadline) →
//! decision → audit records; and the three answers built on it.
//!
//! Split by what each part owns, each step it calls living below it
//! (`admission`, `workload`, `policy`, `verify`, `decision`, `audit`):
//! - this file: the [`Evaluator`], its settings, and the small traits it
//!   asks of a cluster ([`NamespaceLookup`], [`CredentialSource`],
//!   [`ViolationSink`]);
//! - `evaluate`: one request's images checked and decided, its audit
//!   records and Events;
//! - `review`: the `/validate` answer, and the budget of one review: its
//!   slot in the gate (held until its answer is written), its deadline,
//!   its answer's and records' caps ([`crate::limits`]);
//! - `mutate`: the `/mutate` answer (pinning tags), under the same shares;
//! - `credentials`: a request's registry credentials;
//! - `policy_review`: the `/validate-policy` answer.

mod credentials;
mod evaluate;
mod kyverno;
mod mutate;
mod policy_review;
mod review;

use std::sync::Arc;
use std::time::Duration;

use crate::admission::ReviewError;
use crate::audit::{AuditRefused, AuditSink, RequestContext};
use crate::decision::{DecisionSettings, Finding, ServerMode, Verdict};
use crate::gate::ReviewGate;
use crate::metrics;
use crate::policy::{LoadedPolicy, PolicyStore};
use crate::registry::Credentials;
use crate::verify::{ImageReport, Verifier};

pub use evaluate::unpinned_reason;
pub use policy_review::validate_policy;
pub use review::Answered;

/// Request-independent settings of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct EvaluatorSettings {
    /// Modes and the no-match rule.
    pub decision: DecisionSettings,
    /// Deadline for verifying all images of one request.
    pub verify_timeout: Duration,
    /// Images some policy matches must be pinned to a digest in the
    /// workload itself (`--require-digest`, default on): a tag can move
    /// between verification and the kubelet's pull.
    pub require_digest: bool,
    /// Distinct registry hosts one review may reach
    /// (`--max-registries-per-review`); images on further hosts fail
    /// without a request.
    pub max_registries_per_review: usize,
    /// Tags are resolved with the workload's own pull secrets only, never
    /// with sigil's `--registry-config` (`--resolve-with-workload-credentials`).
    pub resolve_with_workload_credentials: bool,
}

/// Default of `--max-registries-per-review`.
pub use crate::limits::DEFAULT_MAX_REGISTRIES_PER_REVIEW;

impl Default for EvaluatorSettings {
    fn default() -> Self {
        EvaluatorSettings {
            decision: DecisionSettings {
                server_mode: ServerMode::Enforce,
                no_match: crate::decision::NoMatchAction::Deny,
            },
            verify_timeout: Duration::from_secs(8),
            require_digest: true,
            max_registries_per_review: DEFAULT_MAX_REGISTRIES_PER_REVIEW,
            resolve_with_workload_credentials: false,
        }
    }
}

/// Images of one request verified at once; the rest wait their turn (under
/// the same deadline), so one huge pod cannot flood the registries.
pub use crate::limits::IMAGES_IN_PARALLEL;

/// The result of evaluating one request.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per-image details.
    pub reports: Vec<ImageReport>,
    /// The decision.
    pub verdict: Verdict,
    /// The audit records could not be queued by the deadline: a review
    /// is then not answered ([`Unanswered::Unrecorded`]).
    pub unrecorded: Option<AuditRefused>,
}

/// Where a request's registry credentials come from (the cluster's pull
/// secrets). Only Secrets of the request's own namespace are ever read.
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync {
    /// Credentials from `secret_names` and `service_account`'s pull
    /// secrets in `namespace`. A name that does not exist is skipped (the
    /// kubelet skips it too); `Err` names a list longer than sigil reads.
    async fn credentials(
        &self,
        namespace: &str,
        secret_names: &[String],
        service_account: Option<&str>,
    ) -> Result<Credentials, String>;

    /// What the source keeps in memory, weighed in bytes, if it keeps
    /// anything (the pull-secret cache).
    fn cache_bytes(&self) -> Option<u64> {
        None
    }
}

/// What a namespace's label asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceMode {
    /// `include=true`: enforce.
    Enforce,
    /// `include=audit`: admit and log violations.
    Audit,
    /// No label (or another value): admit untouched.
    Skip,
}

/// The cluster as the webhook sees it.
pub trait NamespaceLookup: Send + Sync {
    /// The mode of `namespace`, or `Err(reason)` while not synced.
    fn mode(&self, namespace: &str) -> Result<NamespaceMode, String>;

    /// The labels of `namespace`, when known (an ImageValidatingPolicy's
    /// `namespaceObject` and `namespaceSelector` read them).
    fn labels(&self, _namespace: &str) -> Option<Arc<std::collections::BTreeMap<String, String>>> {
        None
    }
}

/// Runs the pipeline.
pub struct Evaluator {
    /// Policies in force.
    pub store: Arc<PolicyStore>,
    /// Verification with caches.
    pub verifier: Arc<Verifier>,
    /// Settings.
    pub settings: EvaluatorSettings,
    /// Audit log.
    pub audit: Arc<dyn AuditSink>,
    /// Namespace labels and sync state when running against a cluster;
    /// `None` enforces every namespace (policy directory only).
    pub cluster: Option<Arc<dyn NamespaceLookup>>,
    /// Pull-secret credentials per request; `None` uses only the server's own.
    pub credentials: Option<Arc<dyn CredentialSource>>,
    /// Told of every finding (Kubernetes Events); `None` tells no one.
    pub violations: Option<Arc<dyn ViolationSink>>,
    /// Fair shares of the reviews in flight.
    pub gate: Arc<ReviewGate>,
    /// Kyverno `ImageValidatingPolicy`s in force.
    pub kyverno: Arc<crate::kyverno::IvpStore>,
}

/// Told of every denied, warned and would-be denied image of a review
/// (not of dry-run requests). Must return at once: it may queue, never
/// wait, so that it cannot delay or change an answer.
pub trait ViolationSink: Send + Sync {
    /// One failing image under one policy.
    fn violation(&self, ctx: &RequestContext, finding: &Finding);
}

impl Evaluator {
    /// A pipeline that enforces every namespace.
    pub fn new(
        store: Arc<PolicyStore>,
        verifier: Arc<Verifier>,
        settings: EvaluatorSettings,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Evaluator {
            store,
            verifier,
            settings,
            audit,
            cluster: None,
            credentials: None,
            violations: None,
            gate: Arc::new(ReviewGate::default()),
            kyverno: Arc::new(crate::kyverno::IvpStore::new()),
        }
    }

    /// Sets the metrics sampled rather than counted: what each cache
    /// holds, and policies and trust roots by readiness.
    pub async fn sample_metrics(&self) {
        let metrics = metrics::global();
        for (cache, bytes) in self.verifier.cache_bytes().await {
            metrics.set_cache_bytes(cache, bytes);
        }
        metrics.set_cache_bytes(
            metrics::CacheName::references,
            crate::image::parse_cache_bytes(),
        );
        metrics.set_cache_bytes(
            metrics::CacheName::tokens,
            self.verifier.registry().token_cache_bytes(),
        );
        if let Some(bytes) = self.credentials.as_ref().and_then(|c| c.cache_bytes()) {
            metrics.set_cache_bytes(metrics::CacheName::pull_secrets, bytes);
        }
        // ClusterImagePolicies and ImageValidatingPolicies (both kinds).
        let policies = self.store.current();
        let kyverno = self.kyverno.current();
        let ready = policies
            .policies()
            .iter()
            .filter(|p| matches!(p, LoadedPolicy::Valid(_)))
            .count()
            + kyverno
                .iter()
                .filter(|p| matches!(p, crate::kyverno::LoadedIvp::Valid(_)))
                .count();
        metrics.set_policies(ready, policies.policies().len() + kyverno.len() - ready);
        let (ready, not_ready) = self.verifier.trust().readiness();
        metrics.set_trust_roots(ready, not_ready);
    }
}

/// A review sigil did not answer with a decision.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    /// The body is not a usable AdmissionReview (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] ReviewError),
    /// Refused by the fair shares of the reviews in flight (HTTP 503).
    #[error(transparent)]
    Refused(#[from] crate::gate::Refused),
    /// Decided, but its audit records could not be queued by its deadline
    /// (HTTP 503): never answered without them.
    #[error(transparent)]
    Unrecorded(#[from] AuditRefused),
}
