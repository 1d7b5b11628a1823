//! The admission pipeline, shared by the webhook and `sigil check`:
//! images → matching policies → verification (concurrent, one deadline) →
//! decision → audit records.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tracing::Instrument;

use crate::admission::{self, ReviewError};
use crate::audit::{now_rfc3339, AuditRecord, AuditSink, RequestContext};
use crate::decision::{decide, DecisionSettings, ServerMode, Verdict};
use crate::image::ImageRef;
use crate::policy::PolicyStore;
use crate::verify::{ImageReport, Verifier};
use crate::workload::ImageUse;

/// Request-independent settings of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct EvaluatorSettings {
    /// Modes and the no-match rule.
    pub decision: DecisionSettings,
    /// Deadline for verifying all images of one request.
    pub verify_timeout: Duration,
}

/// The result of evaluating one request.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per-image details.
    pub reports: Vec<ImageReport>,
    /// The decision.
    pub verdict: Verdict,
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
}

impl Evaluator {
    /// Verifies `images` and decides; writes an audit record per finding.
    pub async fn evaluate(&self, ctx: &RequestContext, images: Vec<ImageUse>) -> Evaluation {
        let policies = self.store.current();
        let budget = self.settings.verify_timeout;
        let deadline = tokio::time::Instant::now() + budget;
        let reports = join_all(images.into_iter().map(|image| {
            let policies = policies.clone();
            async move {
                match ImageRef::parse(&image.reference) {
                    Err(e) => ImageReport {
                        image,
                        digest: None,
                        policies: Vec::new(),
                        invalid_reference: Some(e.to_string()),
                    },
                    Ok(parsed) => {
                        let matches = policies.matching(&parsed);
                        self.verifier
                            .verify_image(image, parsed, matches, deadline, budget)
                            .await
                    }
                }
            }
        }))
        .await;
        let verdict = decide(&reports, &self.settings.decision);
        if !verdict.findings.is_empty() {
            let time = now_rfc3339();
            for f in &verdict.findings {
                self.audit.record(&AuditRecord::new(ctx, f, time.clone()));
            }
        }
        Evaluation { reports, verdict }
    }

    /// Answers one AdmissionReview body. `Err` means the body was unusable
    /// (HTTP 400); every decision, allow or deny, is `Ok`.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let req = admission::decode(body)?;
        let ctx = admission::context(&req);
        let span = tracing::info_span!("review", uid = %ctx.uid, kind = %ctx.kind, namespace = %ctx.namespace, name = %ctx.name);
        async {
            let review = match admission::images_to_check(&req) {
                Ok(None) => admission::allow(&req),
                Ok(Some(images)) if images.is_empty() => admission::allow(&req),
                Ok(Some(images)) => {
                    let eval = self.evaluate(&ctx, images).await;
                    tracing::info!(
                        allowed = eval.verdict.allowed,
                        warnings = eval.verdict.warnings.len(),
                        "decided"
                    );
                    admission::respond(&req, &eval.verdict)
                }
                Err(e) if self.settings.decision.server_mode == ServerMode::Audit => {
                    tracing::warn!(error = %e, "unreadable workload; admitted (audit mode)");
                    admission::allow(&req)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable workload; denying");
                    admission::deny(&req, &e.to_string())
                }
            };
            serde_json::to_vec(&review).map_err(|e| ReviewError::Malformed(e.to_string()))
        }
        .instrument(span)
        .await
    }
}
