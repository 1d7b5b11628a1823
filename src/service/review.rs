//! The `/validate` answer, and the budget of one review: it holds a slot
//! of the gate from before its first registry request until its answer is
//! written ([`Answered`]), one deadline from its decoded body to its
//! records, and an answer and records capped by [`crate::limits`]
//! whatever the request says.

use tracing::Instrument;

use super::{Evaluator, NamespaceMode, Unanswered};
use crate::admission::{self, Answer};
use crate::audit::{now_rfc3339, AuditRecord, RequestContext};
use crate::decision::{Finding, ServerMode};
use crate::gate::Ticket;
use crate::metrics::{self, Decision};
use crate::workload::{ImageUse, WorkloadError};

/// An answer's bytes and the review's slot in the gate, held until the
/// answer is written (the server drops it once the body is sent).
#[derive(Debug)]
pub struct Answered {
    /// The AdmissionReview answer.
    pub bytes: Vec<u8>,
    /// The slot, when the review took one.
    pub ticket: Option<Ticket>,
}

impl Evaluator {
    /// Answers one AdmissionReview body. `Err` is a review not answered:
    /// a body that is not an AdmissionReview (HTTP 400), one refused by
    /// the fair shares of the reviews in flight, or one whose audit
    /// records could not be queued (HTTP 503); every decision, allow or
    /// deny, is `Ok`. The body is dropped once decoded, before anything is
    /// verified.
    pub async fn review(&self, body: impl AsRef<[u8]>) -> Result<Vec<u8>, Unanswered> {
        self.review_held(body).await.map(|a| a.bytes)
    }

    /// [`Evaluator::review`] with the review's slot in the gate handed
    /// back with its answer, to be held until the answer is written.
    pub async fn review_held(&self, body: impl AsRef<[u8]>) -> Result<Answered, Unanswered> {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
        let metrics = metrics::global();
        let decoded = admission::decode(body.as_ref());
        // ImageValidatingPolicies' CEL sees the whole request: kept only
        // when one is loaded (the body is within the request-body budget).
        let kyverno_input = (!self.kyverno.is_empty() && decoded.is_ok())
            .then(|| kyverno_input(body.as_ref()))
            .flatten();
        drop(body);
        let req = match decoded {
            Ok(req) => req,
            Err(e) => {
                metrics.review("", "", Decision::invalid, started.elapsed());
                return Err(e.into());
            }
        };
        let (ctx, images) = admission::split(req);
        let kyverno_input = self.kyverno_request(kyverno_input, &ctx.namespace);
        let span = tracing::info_span!("review", uid = %ctx.uid, kind = %ctx.kind, namespace = %ctx.namespace, name = %ctx.name);
        let answered = self
            .answer_review(images, &ctx, deadline, kyverno_input)
            .instrument(span)
            .await;
        let decision = match &answered {
            Ok((_, d, _)) => *d,
            Err(_) => Decision::refused,
        };
        metrics.review(&ctx.kind, &ctx.operation, decision, started.elapsed());
        answered.map(|(answer, _, ticket)| Answered {
            bytes: answer.encode(&ctx.uid),
            ticket,
        })
    }

    async fn answer_review(
        &self,
        images: Result<Option<Vec<ImageUse>>, WorkloadError>,
        ctx: &RequestContext,
        deadline: tokio::time::Instant,
        kyverno_input: Option<std::sync::Arc<crate::kyverno::Input>>,
    ) -> Result<(Answer, Decision, Option<Ticket>), Unanswered> {
        let mut decision = self.settings.decision;
        // An unlabelled namespace is no ClusterImagePolicy's business, but
        // an ImageValidatingPolicy selects its own namespaces.
        let mut cluster_image_policies = true;
        if let Some(cluster) = &self.cluster {
            match cluster.mode(&ctx.namespace) {
                Ok(NamespaceMode::Enforce) => {}
                Ok(NamespaceMode::Audit) => decision.server_mode = ServerMode::Audit,
                Ok(NamespaceMode::Skip) if kyverno_input.is_some() => {
                    cluster_image_policies = false;
                }
                Ok(NamespaceMode::Skip) => {
                    tracing::debug!("namespace not labelled for enforcement; admitted");
                    return Ok((Answer::allow(), Decision::allowed, None));
                }
                Err(reason) => {
                    let unchecked = match &images {
                        Ok(Some(i)) if !i.is_empty() => i.clone(),
                        _ => return Ok((Answer::allow(), Decision::allowed, None)),
                    };
                    if decision.server_mode == ServerMode::Audit {
                        tracing::warn!(%reason, "admitted unchecked (audit mode)");
                        self.record_unchecked(ctx, &unchecked, &reason, deadline)
                            .await?;
                        return Ok((Answer::allow(), Decision::warned, None));
                    }
                    tracing::warn!(%reason, "denying");
                    return Ok((Answer::deny(reason), Decision::denied, None));
                }
            }
        }
        let images = match images {
            Ok(Some(images)) if !images.is_empty() => images,
            Ok(_) => return Ok((Answer::allow(), Decision::allowed, None)),
            Err(e) if decision.server_mode == ServerMode::Audit => {
                tracing::warn!(error = %e, "unreadable workload; admitted (audit mode)");
                let whole = [ImageUse {
                    field: e.field(),
                    reference: String::new(),
                    pointer: String::new(),
                }];
                self.record_unchecked(ctx, &whole, &e.to_string(), deadline)
                    .await?;
                return Ok((Answer::allow(), Decision::warned, None));
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable workload; denying");
                let reason = crate::text::escape(&e.to_string()).into_owned();
                return Ok((Answer::deny(reason), Decision::denied, None));
            }
        };
        // Held from before the first registry request until the answer is
        // written (the caller drops it with the answer's body).
        let ticket = self.gate.enter(&ctx.namespace, deadline).await?;
        let kyverno = match kyverno_input {
            Some(input) => self.kyverno(ctx, input, deadline).await,
            None => Default::default(),
        };
        // Only the ImageValidatingPolicies' images are checked here: each
        // image they claim is reported once, by them.
        let images = if cluster_image_policies {
            images
        } else {
            Vec::new()
        };
        let eval = self
            .evaluate_with_kyverno(
                ctx,
                images,
                &decision,
                self.settings.require_digest,
                deadline,
                &kyverno.claimed,
                kyverno.findings,
            )
            .await;
        if let Some(refused) = eval.unrecorded {
            return Err(refused.into());
        }
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
        Ok((Answer::of(&eval.verdict), answered, Some(ticket)))
    }

    /// Audit records for images admitted without a check (audit mode: the
    /// workload could not be read, or the cluster view is not synced).
    async fn record_unchecked(
        &self,
        ctx: &RequestContext,
        images: &[ImageUse],
        reason: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), Unanswered> {
        let time = now_rfc3339();
        let records: Vec<AuditRecord> = images
            .iter()
            .map(|image| {
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
                AuditRecord::new(ctx, &finding, time.clone())
            })
            .collect();
        self.audit.record_review(&records, deadline).await?;
        Ok(())
    }
}

/// What an `ImageValidatingPolicy` sees of a review: its `request`, with
/// `object` and `oldObject` apart. `None` when the body does not parse as
/// JSON (it was decoded already, so it does).
pub(super) fn kyverno_input(body: &[u8]) -> Option<crate::kyverno::Input> {
    if body.len() > crate::limits::MAX_KYVERNO_REVIEW_BYTES {
        return Some(crate::kyverno::Input::too_large(body.len()));
    }
    let mut review: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut request = review.get_mut("request")?.take();
    let fields = request.as_object_mut()?;
    let object = fields.remove("object").unwrap_or_default();
    let old_object = fields.remove("oldObject").unwrap_or_default();
    Some(crate::kyverno::Input {
        request,
        object,
        old_object,
        namespace_object: serde_json::Value::Null,
        too_large: None,
    })
}

impl Evaluator {
    /// The request an ImageValidatingPolicy sees, with its Namespace
    /// (name and labels) when the cluster's view knows it.
    pub(super) fn kyverno_request(
        &self,
        input: Option<crate::kyverno::Input>,
        namespace: &str,
    ) -> Option<std::sync::Arc<crate::kyverno::Input>> {
        let mut input = input?;
        let labels = self.cluster.as_ref().and_then(|c| c.labels(namespace));
        if let Some(labels) = labels.filter(|_| !namespace.is_empty()) {
            input.namespace_object = serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "labels": *labels},
            });
        }
        Some(std::sync::Arc::new(input))
    }
}
