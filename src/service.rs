//! The admission pipeline, shared by the webhook and `sigil check`:
//! images → matching policies → verification (concurrent, one deadline) →
//! decision → audit records.
//!
//! It owns only orchestration and the three answers (`/validate`,
//! `/mutate`, `/validate-policy`), which is why it is ~520 lines: each step
//! it calls lives below it (`admission`, `workload`, `policy`, `verify`,
//! `decision`, `audit`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, ReplaceOperation};
use kube::core::admission::AdmissionResponse;
use tracing::Instrument;

use crate::admission::{self, ReviewError};
use crate::audit::{now_rfc3339, AuditRecord, AuditSink, RequestContext};
use crate::decision::{decide, DecisionSettings, Finding, ServerMode, Verdict};
use crate::image::ImageRef;
use crate::metrics::{self, Decision};
use crate::policy::{LoadedPolicy, PolicyMode, PolicyStore};
use crate::registry::Credentials;
use crate::verify::{Failure, ImageReport, PolicyOutcome, Verifier};
use crate::workload::ImageUse;

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
}

/// Images of one request verified at once; the rest wait their turn (under
/// the same deadline), so one huge pod cannot flood the registries.
pub const IMAGES_IN_PARALLEL: usize = 16;

/// The reason an unpinned image fails every policy that matches it.
pub fn unpinned_reason(reference: &str) -> String {
    format!(
        "{reference} must be an image digest (name@sha256:… or name:tag@sha256:…): a tag can move after it is verified; sigil's mutating webhook (/mutate) pins matched tags to the digest it verifies, so check that it is installed and ran"
    )
}

/// The result of evaluating one request.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per-image details.
    pub reports: Vec<ImageReport>,
    /// The decision.
    pub verdict: Verdict,
}

/// An image parsed and matched to its policies, or why it could not be parsed.
type Matched = Result<(ImageRef, Vec<LoadedPolicy>), String>;

/// Where a request's registry credentials come from (the cluster's pull
/// secrets). Only Secrets of the request's own namespace are ever read.
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync {
    /// Credentials from `secret_names` and `service_account`'s pull secrets in `namespace`.
    async fn credentials(
        &self,
        namespace: &str,
        secret_names: &[String],
        service_account: Option<&str>,
    ) -> Credentials;
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
        }
    }

    /// Verifies `images` and decides; writes an audit record per finding.
    pub async fn evaluate(&self, ctx: &RequestContext, images: Vec<ImageUse>) -> Evaluation {
        self.evaluate_with(
            ctx,
            images,
            &self.settings.decision,
            self.settings.require_digest,
        )
        .await
    }

    /// [`Evaluator::evaluate`] with per-request decision settings (a
    /// namespace in audit mode).
    pub async fn evaluate_with(
        &self,
        ctx: &RequestContext,
        images: Vec<ImageUse>,
        decision: &DecisionSettings,
        require_digest: bool,
    ) -> Evaluation {
        let eval = self
            .evaluate_quietly(ctx, images, decision, require_digest)
            .await;
        record_policy_results(&eval.reports);
        let verdict = &eval.verdict;
        if !verdict.findings.is_empty() {
            let time = now_rfc3339();
            for f in &verdict.findings {
                self.audit.record(&AuditRecord::new(ctx, f, time.clone()));
            }
            if let Some(sink) = self.violations.as_ref().filter(|_| !ctx.dry_run) {
                for f in &verdict.findings {
                    sink.violation(ctx, f);
                }
            }
        }
        eval
    }

    /// [`Evaluator::evaluate_with`] without telling anyone: no audit
    /// records, no Events, no policy-result metrics (the background audit,
    /// which re-checks what already runs).
    pub async fn evaluate_quietly(
        &self,
        ctx: &RequestContext,
        images: Vec<ImageUse>,
        decision: &DecisionSettings,
        require_digest: bool,
    ) -> Evaluation {
        let policies = self.store.current();
        let budget = self.settings.verify_timeout;
        let deadline = tokio::time::Instant::now() + budget;
        let matched: Vec<(ImageUse, Matched)> = images
            .into_iter()
            .map(|image| {
                let m = ImageRef::parse(&image.reference)
                    .map(|parsed| {
                        let matches = policies
                            .matching(&parsed)
                            .into_iter()
                            .filter(|p| p.applies_to(&ctx.resource))
                            .collect();
                        (parsed, matches)
                    })
                    .map_err(|e| e.to_string());
                (image, m)
            })
            .collect();
        let creds = self
            .request_credentials(
                ctx,
                matched
                    .iter()
                    .filter_map(|(_, m)| m.as_ref().ok())
                    .flat_map(|(_, ms)| ms.iter()),
                deadline,
            )
            .await;
        let reports: Vec<ImageReport> =
            futures::stream::iter(matched.into_iter().map(|(image, m)| {
                let creds = &creds;
                async move {
                    match m {
                        Err(e) => ImageReport {
                            image,
                            digest: None,
                            policies: Vec::new(),
                            invalid_reference: Some(e),
                        },
                        Ok((parsed, matches))
                            if require_digest && parsed.digest.is_none() && !matches.is_empty() =>
                        {
                            unpinned_report(image, &matches)
                        }
                        Ok((parsed, matches)) => {
                            self.verifier
                                .verify_image(image, parsed, matches, deadline, budget, creds)
                                .await
                        }
                    }
                }
            }))
            .buffered(IMAGES_IN_PARALLEL)
            .collect()
            .await;
        let verdict = decide(&reports, decision);
        Evaluation { reports, verdict }
    }

    /// The registry credentials of a request: the workload's and its service
    /// account's pull secrets plus the matched authorities'
    /// `signaturePullSecrets`, all from the request's namespace.
    async fn request_credentials<'a>(
        &self,
        ctx: &RequestContext,
        matches: impl Iterator<Item = &'a LoadedPolicy>,
        deadline: tokio::time::Instant,
    ) -> Credentials {
        let Some(source) = &self.credentials else {
            return Credentials::none();
        };
        let mut names = ctx.pull_secrets.clone();
        for m in matches {
            if let LoadedPolicy::Valid(p) = m {
                names.extend(
                    p.authorities
                        .iter()
                        .flat_map(|a| a.signature_pull_secrets.iter().cloned()),
                );
            }
        }
        names.sort();
        names.dedup();
        tokio::time::timeout_at(
            deadline,
            source.credentials(&ctx.namespace, &names, ctx.service_account.as_deref()),
        )
        .await
        .unwrap_or_else(|_| Credentials::none())
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
        let policies = self.store.current();
        let ready = policies
            .policies()
            .iter()
            .filter(|p| matches!(p, LoadedPolicy::Valid(_)))
            .count();
        metrics.set_policies(ready, policies.policies().len() - ready);
        let (ready, not_ready) = self.verifier.trust().readiness();
        metrics.set_trust_roots(ready, not_ready);
    }

    /// Answers one AdmissionReview body. `Err` means the body was unusable
    /// (HTTP 400); every decision, allow or deny, is `Ok`.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let started = std::time::Instant::now();
        let metrics = metrics::global();
        let req = match admission::decode(body) {
            Ok(req) => req,
            Err(e) => {
                metrics.review("", "", Decision::invalid, started.elapsed());
                return Err(e);
            }
        };
        let mut ctx = admission::context(&req);
        if self.credentials.is_some() {
            ctx = admission::with_pull_secrets(ctx, &req);
        }
        let span = tracing::info_span!("review", uid = %ctx.uid, kind = %ctx.kind, namespace = %ctx.namespace, name = %ctx.name);
        let (ctx_kind, ctx_operation) = (ctx.kind.clone(), ctx.operation.clone());
        let answered = async {
            let mut decision = self.settings.decision;
            if let Some(cluster) = &self.cluster {
                match cluster.mode(&ctx.namespace) {
                    Ok(NamespaceMode::Enforce) => {}
                    Ok(NamespaceMode::Audit) => decision.server_mode = ServerMode::Audit,
                    Ok(NamespaceMode::Skip) => {
                        tracing::debug!("namespace not labelled for enforcement; admitted");
                        return (encode(&admission::allow(&req)), Decision::allowed);
                    }
                    Err(reason) if decision.server_mode == ServerMode::Audit => {
                        tracing::warn!(%reason, "admitted (audit mode)");
                    }
                    Err(reason) => {
                        if matches!(admission::images_to_check(&req), Ok(Some(ref i)) if !i.is_empty()) {
                            tracing::warn!(%reason, "denying");
                            return (encode(&admission::deny(&req, &reason)), Decision::denied);
                        }
                    }
                }
            }
            let (review, decision) = match admission::images_to_check(&req) {
                Ok(None) => (admission::allow(&req), Decision::allowed),
                Ok(Some(images)) if images.is_empty() => (admission::allow(&req), Decision::allowed),
                Ok(Some(images)) => {
                    let eval = self
                        .evaluate_with(&ctx, images, &decision, self.settings.require_digest)
                        .await;
                    tracing::info!(
                        allowed = eval.verdict.allowed,
                        warnings = eval.verdict.warnings.len(),
                        "decided"
                    );
                    let answered = if !eval.verdict.allowed {
                        Decision::denied
                    } else if eval.verdict.warnings.is_empty() {
                        Decision::allowed
                    } else {
                        Decision::warned
                    };
                    (admission::respond(&req, &eval.verdict), answered)
                }
                Err(e) if decision.server_mode == ServerMode::Audit => {
                    tracing::warn!(error = %e, "unreadable workload; admitted (audit mode)");
                    (admission::allow(&req), Decision::warned)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable workload; denying");
                    (admission::deny(&req, &e.to_string()), Decision::denied)
                }
            };
            (encode(&review), decision)
        }
        .instrument(span)
        .await;
        let (answer, decision) = answered;
        metrics.review(&ctx_kind, &ctx_operation, decision, started.elapsed());
        answer
    }
}

impl Evaluator {
    /// Answers a mutating AdmissionReview: every image that some policy
    /// matches and that is written by tag is pinned to the digest it
    /// resolves to now (`name:tag@sha256:…`), so the kubelet pulls exactly
    /// what `/validate` verifies. Resolution shares the verifier's cache, so
    /// the validating call that follows is warm. This never denies: an image
    /// that cannot be resolved is left alone and `/validate` denies it.
    pub async fn mutate(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let req = admission::decode(body)?;
        let mut ctx = admission::context(&req);
        if self.credentials.is_some() {
            ctx = admission::with_pull_secrets(ctx, &req);
        }
        let span = tracing::info_span!("mutate", uid = %ctx.uid, kind = %ctx.kind, namespace = %ctx.namespace, name = %ctx.name);
        async {
            if let Some(cluster) = &self.cluster {
                if !matches!(
                    cluster.mode(&ctx.namespace),
                    Ok(NamespaceMode::Enforce | NamespaceMode::Audit)
                ) {
                    return encode(&admission::allow(&req));
                }
            }
            let Ok(Some(images)) = admission::images_to_check(&req) else {
                return encode(&admission::allow(&req));
            };
            let policies = self.store.current();
            let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
            let resource = &ctx.resource;
            let creds = self
                .request_credentials(&ctx, std::iter::empty(), deadline)
                .await;
            let creds = &creds;
            // Each image: a pinning patch, a warning (it could not be
            // pinned; /validate will deny it), or nothing to do.
            let results: Vec<Result<Option<PatchOperation>, String>> =
                futures::stream::iter(images.into_iter().map(|image| {
                    let policies = policies.clone();
                    async move {
                        let Ok(parsed) = ImageRef::parse(&image.reference) else {
                            return Ok(None);
                        };
                        if parsed.digest.is_some()
                            || !policies
                                .matching(&parsed)
                                .iter()
                                .any(|p| p.applies_to(resource))
                        {
                            return Ok(None);
                        }
                        let resolved = match tokio::time::timeout_at(
                            deadline,
                            self.verifier.resolve(&parsed, creds),
                        )
                        .await
                        {
                            Ok(Ok(d)) => d,
                            Ok(Err(e)) => {
                                return Err(format!(
                                    "{} {}: not pinned to a digest ({e}); the validating webhook will deny it",
                                    image.field, image.reference
                                ))
                            }
                            Err(_) => {
                                return Err(format!(
                                    "{} {}: not pinned to a digest (timed out); the validating webhook will deny it",
                                    image.field, image.reference
                                ))
                            }
                        };
                        let Ok(path) = PointerBuf::parse(image.pointer.as_str()) else {
                            return Ok(None);
                        };
                        Ok(Some(PatchOperation::Replace(ReplaceOperation {
                            path,
                            value: serde_json::Value::String(format!(
                                "{}@{}",
                                image.reference, resolved
                            )),
                        })))
                    }
                }))
                .buffered(IMAGES_IN_PARALLEL)
                .collect()
                .await;
            let mut ops = Vec::new();
            let mut warnings = Vec::new();
            for r in results {
                match r {
                    Ok(Some(op)) => ops.push(op),
                    Ok(None) => {}
                    Err(w) => warnings.push(w),
                }
            }
            for w in &warnings {
                tracing::warn!(warning = %w, "cannot pin image");
            }
            if ops.is_empty() {
                let mut resp = AdmissionResponse::from(&req);
                if !warnings.is_empty() {
                    resp.warnings = Some(warnings);
                }
                return encode(&resp.into_review());
            }
            tracing::info!(pinned = ops.len(), "pinning images to digests");
            let mut resp = AdmissionResponse::from(&req)
                .with_patch(json_patch::Patch(ops))
                .map_err(|e| ReviewError::Malformed(e.to_string()))?;
            if !warnings.is_empty() {
                resp.warnings = Some(warnings);
            }
            encode(&resp.into_review())
        }
        .instrument(span)
        .await
    }
}

/// The report of an image written by tag that policies match: every one of
/// them fails for that reason, without any registry traffic (an invalid
/// policy still reports its own error).
/// Counts each policy's result for each image.
fn record_policy_results(reports: &[ImageReport]) {
    let metrics = metrics::global();
    for outcome in reports.iter().flat_map(|r| r.policies.iter()) {
        let result = if outcome.passed {
            metrics::PolicyResult::pass
        } else if outcome.is_transient() {
            metrics::PolicyResult::error
        } else {
            metrics::PolicyResult::fail
        };
        let mode = match outcome.mode {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Warn => "warn",
            PolicyMode::Audit => "audit",
        };
        metrics.policy_result(&outcome.policy, mode, result);
    }
}

fn unpinned_report(image: ImageUse, matches: &[LoadedPolicy]) -> ImageReport {
    let reason = unpinned_reason(&image.reference);
    let policies = matches
        .iter()
        .map(|m| match m {
            LoadedPolicy::Valid(p) => {
                PolicyOutcome::failed(&p.name, p.mode, Failure::Verdict(reason.clone()))
            }
            LoadedPolicy::Invalid(p) => PolicyOutcome::failed(
                &p.name,
                crate::policy::PolicyMode::Enforce,
                Failure::Verdict(format!("policy is invalid: {}", p.error)),
            ),
        })
        .collect();
    ImageReport {
        image,
        digest: None,
        policies,
        invalid_reference: None,
    }
}

/// Answers an AdmissionReview of a ClusterImagePolicy (`/validate-policy`):
/// refuses one that breaks policy-controller's rules, naming every wrong
/// field, and passes on warnings (e.g. CUE policies).
pub fn validate_policy(body: &[u8]) -> Result<Vec<u8>, ReviewError> {
    let req = admission::decode(body)?;
    let span = tracing::info_span!("validate-policy", uid = %req.uid, name = %req.name);
    let _guard = span.enter();
    let spec = match (&req.operation, &req.object) {
        (
            kube::core::admission::Operation::Create | kube::core::admission::Operation::Update,
            Some(obj),
        ) if req.kind.kind == "ClusterImagePolicy" => {
            obj.data.get("spec").cloned().unwrap_or_default()
        }
        (
            kube::core::admission::Operation::Create | kube::core::admission::Operation::Update,
            Some(obj),
        ) if req.kind.kind == "TrustRoot" => {
            let spec = obj.data.get("spec").cloned().unwrap_or_default();
            let review = match crate::trust::material_from_spec_value(&req.name, spec) {
                // A remote mirror is read by the watcher, not at admission.
                Ok(_) | Err(crate::trust::TrustError::Pending(_)) => admission::allow(&req),
                Err(e) => {
                    tracing::info!(error = %e, "refusing invalid TrustRoot");
                    admission::deny(&req, &format!("invalid TrustRoot {:?}: {e}", req.name))
                }
            };
            return encode(&review);
        }
        _ => return encode(&admission::allow(&req)),
    };
    let validation = match crate::policy::files::spec_from_value(spec) {
        Ok(spec) => crate::policy::validate::validate(&spec),
        Err((error, _)) => crate::policy::validate::Validation {
            errors: vec![error],
            warnings: Vec::new(),
        },
    };
    let review = if validation.errors.is_empty() {
        let mut resp = AdmissionResponse::from(&req);
        if !validation.warnings.is_empty() {
            resp.warnings = Some(validation.warnings);
        }
        resp.into_review()
    } else {
        tracing::info!(
            errors = validation.errors.len(),
            "refusing invalid ClusterImagePolicy"
        );
        admission::deny(
            &req,
            &format!(
                "invalid ClusterImagePolicy {:?}: {}",
                req.name,
                validation.message().replace('\n', "; ")
            ),
        )
    };
    encode(&review)
}

fn encode(
    review: &kube::core::admission::AdmissionReview<kube::core::DynamicObject>,
) -> Result<Vec<u8>, ReviewError> {
    let bad = |e: serde_json::Error| ReviewError::Malformed(e.to_string());
    let Some(patch) = review.response.as_ref().and_then(|r| r.patch.as_ref()) else {
        return serde_json::to_vec(review).map_err(bad);
    };
    // kube-core serialises the patch bytes as a JSON array of numbers; the
    // API server decodes `patch` as Go `[]byte`, which is a base64 string.
    let mut value = serde_json::to_value(review).map_err(bad)?;
    value["response"]["patch"] =
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    serde_json::to_vec(&value).map_err(bad)
}
