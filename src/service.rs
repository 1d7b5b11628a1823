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

use futures::StreamExt as _;
use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, ReplaceOperation};
use tracing::Instrument;

use crate::admission::{self, Answer, ReviewError};
use crate::audit::{now_rfc3339, AuditRecord, AuditSink, RequestContext};
use crate::decision::{decide, DecisionSettings, Finding, ServerMode, Verdict};
use crate::gate::ReviewGate;
use crate::image::ImageRef;
use crate::metrics::{self, Decision};
use crate::policy::{LoadedPolicy, PolicyMode, PolicyStore};
use crate::registry::Credentials;
use crate::verify::{Failure, ImageReport, PolicyOutcome, RequestCredentials, Verifier};
use crate::workload::{ImageUse, WorkloadError};

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
pub const DEFAULT_MAX_REGISTRIES_PER_REVIEW: usize = 8;

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
type Matched = Result<(Arc<ImageRef>, Vec<LoadedPolicy>), String>;

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
        let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
        self.evaluate_until(ctx, images, decision, require_digest, deadline)
            .await
    }

    /// [`Evaluator::evaluate_with`] under a deadline set by the caller
    /// (a review's starts when its body is decoded). Audit records of
    /// requests that change something wait for room in the audit queue
    /// until the deadline; dry-run records are the first to go.
    pub async fn evaluate_until(
        &self,
        ctx: &RequestContext,
        images: Vec<ImageUse>,
        decision: &DecisionSettings,
        require_digest: bool,
        deadline: tokio::time::Instant,
    ) -> Evaluation {
        let eval = self
            .evaluate_quietly_until(ctx, images, decision, require_digest, deadline)
            .await;
        record_policy_results(&eval.reports);
        let verdict = &eval.verdict;
        if !verdict.findings.is_empty() {
            let time = now_rfc3339();
            for f in &verdict.findings {
                self.audit
                    .record_by(&AuditRecord::new(ctx, f, time.clone()), deadline)
                    .await;
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
        let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
        self.evaluate_quietly_until(ctx, images, decision, require_digest, deadline)
            .await
    }

    async fn evaluate_quietly_until(
        &self,
        ctx: &RequestContext,
        images: Vec<ImageUse>,
        decision: &DecisionSettings,
        require_digest: bool,
        deadline: tokio::time::Instant,
    ) -> Evaluation {
        let policies = self.store.current();
        let budget = self.settings.verify_timeout;
        // The same reference written more than once (an init container
        // and an app container running one image) is parsed, matched and
        // verified once; each use gets its own report below.
        let (images, slots) = distinct_references(images);
        let matched: Vec<(ImageUse, Matched)> = images
            .into_iter()
            .map(|image| {
                let m = ImageRef::parse_shared(&image.reference)
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
            .await
            .map(|read| RequestCredentials {
                resolve: self.resolution_credentials(&read),
                read,
            });
        // Registries this review may reach: the first hosts, in the
        // workload's order, up to the limit.
        let mut hosts: Vec<&str> = Vec::new();
        let over_fan_out: Vec<bool> = matched
            .iter()
            .map(|(_, m)| match m {
                Ok((parsed, matches)) if !matches.is_empty() => {
                    if hosts.contains(&parsed.registry.as_str()) {
                        false
                    } else if hosts.len() < self.settings.max_registries_per_review {
                        hosts.push(parsed.registry.as_str());
                        false
                    } else {
                        true
                    }
                }
                _ => false,
            })
            .collect();
        let distinct_hosts = {
            let mut all: Vec<&str> = matched
                .iter()
                .filter_map(|(_, m)| m.as_ref().ok())
                .filter(|(_, ms)| !ms.is_empty())
                .map(|(p, _)| p.registry.as_str())
                .collect();
            all.sort_unstable();
            all.dedup();
            all.len()
        };
        let limit = self.settings.max_registries_per_review;
        let one_image = matched.len() == 1;
        let mut checks = matched.into_iter().zip(over_fan_out).map(
            |((image, m), over)| {
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
                            if require_digest
                                && parsed.digest.is_none()
                                && !matches.is_empty() =>
                        {
                            let reason = unpinned_reason(&image.reference);
                            failing_report(image, &matches, &reason)
                        }
                        Ok((_, matches)) if over => {
                            let reason = format!(
                                "{}: this workload names {distinct_hosts} registries, over sigil's limit of {limit} per review (--max-registries-per-review); not contacted",
                                image.field
                            );
                            failing_report(image, &matches, &reason)
                        }
                        Ok((_, matches)) if !matches.is_empty() && creds.is_err() => {
                            let reason = creds.as_ref().err().cloned().unwrap_or_default();
                            failing_report(image, &matches, &reason)
                        }
                        Ok((parsed, matches)) => {
                            let none = RequestCredentials::default();
                            let creds = creds.as_ref().unwrap_or(&none);
                            self.verifier
                                .verify_image(image, parsed, matches, deadline, budget, creds)
                                .await
                        }
                    }
                }
            },
        );
        // One distinct image (most Pods) is awaited as it is: a buffered
        // stream would allocate its task queue and move the check's future
        // into a task of its own.
        let reports: Vec<ImageReport> = if one_image {
            match checks.next() {
                Some(check) => vec![crate::registry::as_tenant(&ctx.namespace, check).await],
                None => Vec::new(),
            }
        } else {
            crate::registry::as_tenant(
                &ctx.namespace,
                futures::stream::iter(checks)
                    .buffered(IMAGES_IN_PARALLEL)
                    .collect(),
            )
            .await
        };
        let reports = reports_per_use(reports, slots);
        let verdict = decide(&reports, decision);
        Evaluation { reports, verdict }
    }

    /// The credentials a tag is resolved with: the request's, and, unless
    /// `--resolve-with-workload-credentials`, sigil's own too.
    fn resolution_credentials(&self, creds: &Credentials) -> Credentials {
        if self.settings.resolve_with_workload_credentials {
            creds.exclusive()
        } else {
            creds.clone()
        }
    }

    /// The registry credentials of a request: the workload's and its service
    /// account's pull secrets plus the matched authorities'
    /// `signaturePullSecrets`, all from the request's namespace. `Err` when
    /// they name more pull secrets than sigil reads (the reason names the
    /// field).
    async fn request_credentials<'a>(
        &self,
        ctx: &RequestContext,
        matches: impl Iterator<Item = &'a LoadedPolicy>,
        deadline: tokio::time::Instant,
    ) -> Result<Credentials, String> {
        let Some(source) = &self.credentials else {
            return Ok(Credentials::none());
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
        .unwrap_or_else(|_| Ok(Credentials::none()))
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

    /// Answers one AdmissionReview body. `Err` is a review not answered:
    /// a body that is not an AdmissionReview (HTTP 400), or one refused by
    /// the fair shares of the reviews in flight (HTTP 503); every decision,
    /// allow or deny, is `Ok`. The body is dropped once decoded, before
    /// anything is verified.
    pub async fn review(&self, body: impl AsRef<[u8]>) -> Result<Vec<u8>, Unanswered> {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
        let metrics = metrics::global();
        let decoded = admission::decode(body.as_ref());
        drop(body);
        let req = match decoded {
            Ok(req) => req,
            Err(e) => {
                metrics.review("", "", Decision::invalid, started.elapsed());
                return Err(e.into());
            }
        };
        let (ctx, images) = admission::split(req);
        let span = tracing::info_span!("review", uid = %ctx.uid, kind = %ctx.kind, namespace = %ctx.namespace, name = %ctx.name);
        let answered = self
            .answer_review(images, &ctx, deadline)
            .instrument(span)
            .await;
        let decision = match &answered {
            Ok((_, d)) => *d,
            Err(_) => Decision::refused,
        };
        metrics.review(&ctx.kind, &ctx.operation, decision, started.elapsed());
        answered.map(|(answer, _)| answer.encode(&ctx.uid))
    }

    async fn answer_review(
        &self,
        images: Result<Option<Vec<ImageUse>>, WorkloadError>,
        ctx: &RequestContext,
        deadline: tokio::time::Instant,
    ) -> Result<(Answer, Decision), Unanswered> {
        let mut decision = self.settings.decision;
        if let Some(cluster) = &self.cluster {
            match cluster.mode(&ctx.namespace) {
                Ok(NamespaceMode::Enforce) => {}
                Ok(NamespaceMode::Audit) => decision.server_mode = ServerMode::Audit,
                Ok(NamespaceMode::Skip) => {
                    tracing::debug!("namespace not labelled for enforcement; admitted");
                    return Ok((Answer::allow(), Decision::allowed));
                }
                Err(reason) => {
                    let unchecked = match &images {
                        Ok(Some(i)) if !i.is_empty() => i.clone(),
                        _ => return Ok((Answer::allow(), Decision::allowed)),
                    };
                    if decision.server_mode == ServerMode::Audit {
                        tracing::warn!(%reason, "admitted unchecked (audit mode)");
                        self.record_unchecked(ctx, &unchecked, &reason, deadline)
                            .await;
                        return Ok((Answer::allow(), Decision::warned));
                    }
                    tracing::warn!(%reason, "denying");
                    return Ok((Answer::deny(reason), Decision::denied));
                }
            }
        }
        let images = match images {
            Ok(Some(images)) if !images.is_empty() => images,
            Ok(_) => return Ok((Answer::allow(), Decision::allowed)),
            Err(e) if decision.server_mode == ServerMode::Audit => {
                tracing::warn!(error = %e, "unreadable workload; admitted (audit mode)");
                let whole = [ImageUse {
                    field: e.field(),
                    reference: String::new(),
                    pointer: String::new(),
                }];
                self.record_unchecked(ctx, &whole, &e.to_string(), deadline)
                    .await;
                return Ok((Answer::allow(), Decision::warned));
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable workload; denying");
                return Ok((Answer::deny(e.to_string()), Decision::denied));
            }
        };
        let _ticket = self.gate.enter(&ctx.namespace, deadline).await?;
        let eval = self
            .evaluate_until(
                ctx,
                images,
                &decision,
                self.settings.require_digest,
                deadline,
            )
            .await;
        // Debug, not info: a line per review at the default level is a
        // write per request on the warm path (a third of its system calls),
        // and the audit log and metrics already carry every decision.
        tracing::debug!(
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
        Ok((Answer::of(&eval.verdict), answered))
    }

    /// Audit records for images admitted without a check (audit mode: the
    /// workload could not be read, or the cluster view is not synced).
    async fn record_unchecked(
        &self,
        ctx: &RequestContext,
        images: &[ImageUse],
        reason: &str,
        deadline: tokio::time::Instant,
    ) {
        let time = now_rfc3339();
        for image in images {
            let finding = Finding {
                image: image.reference.clone(),
                field: image.field.clone(),
                digest: None,
                policy: None,
                mode: "unchecked".into(),
                decision: crate::decision::FindingDecision::Audited,
                reasons: vec![format!("not checked: {reason}")],
                authorities: Vec::new(),
                passed: false,
            };
            self.audit
                .record_by(&AuditRecord::new(ctx, &finding, time.clone()), deadline)
                .await;
        }
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
}

impl Evaluator {
    /// Answers a mutating AdmissionReview: every image that some policy
    /// matches and that is written by tag is pinned to the digest it
    /// resolves to now (`name:tag@sha256:…`), so the kubelet pulls exactly
    /// what `/validate` verifies. Resolution shares the verifier's cache, so
    /// the validating call that follows is warm. This never denies: an image
    /// that cannot be resolved is left alone and `/validate` denies it.
    pub async fn mutate(&self, body: impl AsRef<[u8]>) -> Result<Vec<u8>, Unanswered> {
        let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
        let decoded = admission::decode(body.as_ref());
        drop(body);
        let (ctx, images) = admission::split(decoded?);
        let span = tracing::info_span!("mutate", uid = %ctx.uid, kind = %ctx.kind, namespace = %ctx.namespace, name = %ctx.name);
        let answer = self
            .pin_images(images, &ctx, deadline)
            .instrument(span)
            .await?;
        Ok(answer.encode(&ctx.uid))
    }

    async fn pin_images(
        &self,
        images: Result<Option<Vec<ImageUse>>, WorkloadError>,
        ctx: &RequestContext,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, Unanswered> {
        if let Some(cluster) = &self.cluster {
            if !matches!(
                cluster.mode(&ctx.namespace),
                Ok(NamespaceMode::Enforce | NamespaceMode::Audit)
            ) {
                return Ok(Answer::allow());
            }
        }
        let Ok(Some(images)) = images else {
            return Ok(Answer::allow());
        };
        let policies = self.store.current();
        let resource = &ctx.resource;
        // Only images some policy matches, written by tag, are pinned.
        let to_pin: Vec<(ImageUse, ImageRef)> = images
            .into_iter()
            .filter_map(|image| {
                let parsed = ImageRef::parse(&image.reference).ok()?;
                (parsed.digest.is_none()
                    && policies
                        .matching(&parsed)
                        .iter()
                        .any(|p| p.applies_to(resource)))
                .then_some((image, parsed))
            })
            .collect();
        if to_pin.is_empty() {
            return Ok(Answer::allow());
        }
        let _ticket = self.gate.enter(&ctx.namespace, deadline).await?;
        let creds = self
            .request_credentials(ctx, std::iter::empty(), deadline)
            .await;
        let creds = match &creds {
            Ok(c) => self.resolution_credentials(c),
            Err(e) => {
                // /validate will deny them with this reason.
                return Ok(Answer {
                    warnings: vec![format!("images not pinned to digests: {e}")],
                    ..Answer::allow()
                });
            }
        };
        let creds = &creds;
        // Each image: a pinning patch, or a warning (it could not be
        // pinned; /validate will deny it).
        let results: Vec<Result<PatchOperation, String>> =
            futures::stream::iter(to_pin.into_iter().map(|(image, parsed)| async move {
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
                let path = PointerBuf::parse(image.pointer.as_str()).map_err(|e| {
                    format!("{}: not pinned to a digest ({e})", image.field)
                })?;
                Ok(PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: serde_json::Value::String(format!(
                        "{}@{}",
                        image.reference, resolved
                    )),
                }))
            }))
            .buffered(IMAGES_IN_PARALLEL)
            .collect()
            .await;
        let mut ops = Vec::new();
        let mut warnings = Vec::new();
        for r in results {
            match r {
                Ok(op) => ops.push(op),
                Err(w) => warnings.push(w),
            }
        }
        for w in &warnings {
            tracing::warn!(warning = %w, "cannot pin image");
        }
        let patch = if ops.is_empty() {
            None
        } else {
            tracing::info!(pinned = ops.len(), "pinning images to digests");
            Some(
                serde_json::to_vec(&json_patch::Patch(ops))
                    .map_err(|e| ReviewError::Malformed(e.to_string()))?,
            )
        };
        Ok(Answer {
            denied: None,
            warnings,
            patch,
        })
    }
}

/// Counts each policy's result for each image.
fn record_policy_results(reports: &[ImageReport]) {
    let metrics = metrics::global();
    for (policy, mode, result, images) in policy_result_runs(reports) {
        metrics.policy_results(policy, mode, result, images);
    }
}

/// Each policy's results in the reports' order, a run of one result (the
/// uses of one image share their outcomes) as one entry with its length:
/// the metric's label set is then built and looked up per run, not per use.
fn policy_result_runs(
    reports: &[ImageReport],
) -> Vec<(&str, &'static str, metrics::PolicyResult, u64)> {
    let mut runs: Vec<(&str, &'static str, metrics::PolicyResult, u64)> = Vec::new();
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
        match runs.last_mut() {
            Some((policy, m, r, n)) if *policy == outcome.policy && *m == mode && *r == result => {
                *n += 1
            }
            _ => runs.push((&outcome.policy, mode, result, 1)),
        }
    }
    runs
}

/// One use of an image in a workload, in the workload's order: the first
/// use of its reference, or a repeat of the `n`th distinct reference.
enum ImageSlot {
    First,
    Repeat(ImageUse, usize),
}

/// The first use of each distinct reference, in the workload's order, and
/// where every use stands.
fn distinct_references(images: Vec<ImageUse>) -> (Vec<ImageUse>, Vec<ImageSlot>) {
    // Which distinct reference each use repeats, by hash: a scan would be
    // quadratic in a hostile review (256 references of 4 KiB sharing a
    // prefix).
    let repeats: Vec<Option<usize>> = {
        let mut nth: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(images.len());
        images
            .iter()
            .map(|image| {
                let next = nth.len();
                match nth.entry(image.reference.as_str()) {
                    std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(next);
                        None
                    }
                }
            })
            .collect()
    };
    let mut firsts: Vec<ImageUse> = Vec::with_capacity(images.len());
    let mut slots = Vec::with_capacity(images.len());
    for (image, repeat) in images.into_iter().zip(repeats) {
        match repeat {
            Some(n) => slots.push(ImageSlot::Repeat(image, n)),
            None => {
                firsts.push(image);
                slots.push(ImageSlot::First);
            }
        }
    }
    (firsts, slots)
}

/// One report per image use, in the workload's order: each distinct
/// reference's report where it was first used, and a copy of its results
/// for every repeat.
fn reports_per_use(reports: Vec<ImageReport>, slots: Vec<ImageSlot>) -> Vec<ImageReport> {
    let mut out: Vec<ImageReport> = Vec::with_capacity(slots.len());
    // Where the nth distinct reference's report landed in `out`.
    let mut placed = Vec::with_capacity(reports.len());
    let mut reports = reports.into_iter();
    for slot in slots {
        match slot {
            ImageSlot::First => {
                if let Some(r) = reports.next() {
                    placed.push(out.len());
                    out.push(r);
                }
            }
            ImageSlot::Repeat(image, n) => {
                if let Some(r) = placed.get(n).and_then(|&at| out.get(at)) {
                    let repeated = ImageReport {
                        image,
                        digest: r.digest.clone(),
                        policies: r.policies.clone(),
                        invalid_reference: r.invalid_reference.clone(),
                    };
                    out.push(repeated);
                }
            }
        }
    }
    out
}

/// The report of an image that fails every policy matching it for
/// `reason`, without any registry traffic (an invalid policy still reports
/// its own error).
fn failing_report(image: ImageUse, matches: &[LoadedPolicy], reason: &str) -> ImageReport {
    let policies = matches
        .iter()
        .map(|m| match m {
            LoadedPolicy::Valid(p) => {
                PolicyOutcome::failed(&p.name, p.mode, Failure::Verdict(reason.to_string()))
            }
            LoadedPolicy::Invalid(p) => PolicyOutcome::failed(
                &p.name,
                crate::policy::PolicyMode::Enforce,
                Failure::Verdict(format!("policy is invalid: {}", p.error)),
            ),
        })
        .map(Arc::new)
        .collect();
    ImageReport {
        image,
        digest: None,
        policies,
        invalid_reference: None,
    }
}

/// Answers an AdmissionReview of a ClusterImagePolicy or TrustRoot
/// (`/validate-policy`): refuses one that breaks policy-controller's rules,
/// naming every wrong field, and passes on warnings (e.g. CUE policies).
/// The spec is decoded straight into its typed form, never into a JSON tree.
pub fn validate_policy(body: &[u8]) -> Result<Vec<u8>, ReviewError> {
    let req = admission::decode_envelope(body)?;
    let name = req.name.clone().unwrap_or_default();
    let span = tracing::info_span!("validate-policy", uid = %req.uid, name = %name);
    let _guard = span.enter();
    let writes = matches!(
        req.operation,
        admission::Operation::Create | admission::Operation::Update
    );
    let spec = match (writes, req.object) {
        (true, Some(object)) => Some(crate::policy::files::spec_json(object.get())),
        _ => None,
    };
    let answer = match (req.kind.kind.as_str(), spec) {
        ("ClusterImagePolicy", Some(spec)) => {
            let validation = match crate::policy::files::spec_from_json(spec) {
                Ok(spec) => crate::policy::validate::validate(&spec),
                Err((error, _)) => crate::policy::validate::Validation {
                    errors: vec![error],
                    warnings: Vec::new(),
                },
            };
            if validation.errors.is_empty() {
                Answer {
                    warnings: validation.warnings,
                    ..Answer::allow()
                }
            } else {
                tracing::info!(
                    errors = validation.errors.len(),
                    "refusing invalid ClusterImagePolicy"
                );
                Answer::deny(format!(
                    "invalid ClusterImagePolicy {name:?}: {}",
                    validation.message().replace('\n', "; ")
                ))
            }
        }
        ("TrustRoot", Some(spec)) => {
            match crate::trust::material_from_spec_json(&name, spec) {
                // A remote mirror is read by the watcher, not at admission.
                Ok(_) | Err(crate::trust::TrustError::Pending(_)) => Answer::allow(),
                Err(e) => {
                    tracing::info!(error = %e, "refusing invalid TrustRoot");
                    Answer::deny(format!("invalid TrustRoot {name:?}: {e}"))
                }
            }
        }
        _ => Answer::allow(),
    };
    Ok(answer.encode(&req.uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn use_of(field: &str, reference: &str) -> ImageUse {
        ImageUse {
            field: field.into(),
            reference: reference.into(),
            pointer: String::new(),
        }
    }

    fn report_of(image: ImageUse, digest: &str) -> ImageReport {
        ImageReport {
            image,
            digest: Some(digest.into()),
            policies: vec![Arc::new(PolicyOutcome::failed(
                "p",
                crate::policy::PolicyMode::Enforce,
                Failure::Verdict(format!("about {digest}")),
            ))],
            invalid_reference: None,
        }
    }

    /// Uses of one image sharing their outcomes count as one run of their
    /// length; another result or policy starts a new run, and nothing is
    /// lost or merged across it.
    #[test]
    fn policy_results_are_counted_per_run() {
        let a = report_of(use_of("spec.initContainers[0].image", "a"), "sha256:a");
        let shared = a.policies.clone();
        let again = |field: &str| ImageReport {
            image: use_of(field, "a"),
            digest: Some("sha256:a".into()),
            policies: shared.clone(),
            invalid_reference: None,
        };
        let passed = ImageReport {
            image: use_of("spec.containers[2].image", "b"),
            digest: Some("sha256:b".into()),
            policies: vec![Arc::new(PolicyOutcome {
                policy: "p".into(),
                mode: crate::policy::PolicyMode::Enforce,
                passed: true,
                failure: None,
                authorities: Vec::new(),
            })],
            invalid_reference: None,
        };
        let reports = vec![
            a.clone(),
            again("spec.containers[0].image"),
            again("spec.containers[1].image"),
            passed,
            again("spec.containers[3].image"),
        ];
        let runs: Vec<_> = policy_result_runs(&reports)
            .into_iter()
            .map(|(p, m, r, n)| (p.to_string(), m, format!("{r:?}"), n))
            .collect();
        assert_eq!(
            runs,
            vec![
                ("p".to_string(), "enforce", "fail".to_string(), 3),
                ("p".to_string(), "enforce", "pass".to_string(), 1),
                ("p".to_string(), "enforce", "fail".to_string(), 1),
            ]
        );
        assert!(policy_result_runs(&[]).is_empty());
    }

    /// A reference used three times is checked once and reported three
    /// times, each use under its own field, in the workload's order.
    #[test]
    fn repeated_references_are_checked_once_and_reported_per_use() {
        let images = vec![
            use_of("spec.initContainers[0].image", "r/a@sha256:1"),
            use_of("spec.containers[0].image", "r/b@sha256:2"),
            use_of("spec.containers[1].image", "r/a@sha256:1"),
            use_of("spec.containers[2].image", "r/a@sha256:1"),
        ];
        let (distinct, slots) = distinct_references(images);
        let refs: Vec<&str> = distinct.iter().map(|i| i.reference.as_str()).collect();
        assert_eq!(refs, ["r/a@sha256:1", "r/b@sha256:2"]);
        let reports: Vec<ImageReport> = distinct
            .into_iter()
            .zip(["a", "b"])
            .map(|(i, d)| report_of(i, d))
            .collect();
        let out = reports_per_use(reports, slots);
        let seen: Vec<(&str, &str, &str)> = out
            .iter()
            .map(|r| {
                (
                    r.image.field.as_str(),
                    r.digest.as_deref().unwrap_or_default(),
                    r.policies[0].reason().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("spec.initContainers[0].image", "a", "about a"),
                ("spec.containers[0].image", "b", "about b"),
                ("spec.containers[1].image", "a", "about a"),
                ("spec.containers[2].image", "a", "about a"),
            ]
        );
    }

    /// Distinct references are never merged, even when they name the same
    /// image in two spellings: each is matched as written.
    #[test]
    fn spellings_of_one_image_stay_apart() {
        let (distinct, slots) = distinct_references(vec![
            use_of("spec.containers[0].image", "nginx@sha256:1"),
            use_of(
                "spec.containers[1].image",
                "docker.io/library/nginx@sha256:1",
            ),
        ]);
        assert_eq!(distinct.len(), 2);
        assert!(slots.iter().all(|s| matches!(s, ImageSlot::First)));
    }
}
