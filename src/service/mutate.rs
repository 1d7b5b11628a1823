//! The `/mutate` answer: tags that some policy matches are pinned to the
//! digest they resolve to now, under the same gate, registry share and
//! registries-per-review limit as `/validate`, in a patch of at most
//! [`crate::limits::MAX_PATCH_BYTES`].

use futures::StreamExt as _;
use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, ReplaceOperation};
use tracing::Instrument;

use super::evaluate::registries_reached;
use super::{Answered, Evaluator, NamespaceMode, Unanswered, IMAGES_IN_PARALLEL};
use crate::admission::{self, Answer, ReviewError};
use crate::audit::RequestContext;
use crate::gate::Ticket;
use crate::image::ImageRef;
use crate::limits::{MAX_IMAGE_IN_TEXT, MAX_PATCH_BYTES, MAX_WARNINGS, MAX_WARNING_BYTES};
use crate::text;
use crate::workload::{ImageUse, WorkloadError};

impl Evaluator {
    /// Answers a mutating AdmissionReview: every image that some policy
    /// matches and that is written by tag is pinned to the digest it
    /// resolves to now (`name:tag@sha256:…`), so the kubelet pulls exactly
    /// what `/validate` verifies. Resolution shares the verifier's cache, so
    /// the validating call that follows is warm. This never denies: an image
    /// that cannot be resolved is left alone and `/validate` denies it.
    pub async fn mutate(&self, body: impl AsRef<[u8]>) -> Result<Vec<u8>, Unanswered> {
        self.mutate_held(body).await.map(|a| a.bytes)
    }

    /// [`Evaluator::mutate`] with the review's slot in the gate handed back
    /// with its answer, to be held until the answer is written.
    pub async fn mutate_held(&self, body: impl AsRef<[u8]>) -> Result<Answered, Unanswered> {
        let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
        let decoded = admission::decode(body.as_ref());
        let kyverno_input = (!self.kyverno.is_empty() && decoded.is_ok())
            .then(|| super::review::kyverno_input(body.as_ref()))
            .flatten();
        drop(body);
        let (ctx, images) = admission::split(decoded?);
        let kyverno_input = self.kyverno_request(kyverno_input, &ctx.namespace);
        let span = tracing::info_span!("mutate", uid = %ctx.uid, kind = %ctx.kind, namespace = %ctx.namespace, name = %ctx.name);
        let (answer, ticket) = self
            .pin_images(images, &ctx, deadline, kyverno_input)
            .instrument(span)
            .await?;
        Ok(Answered {
            bytes: answer.encode(&ctx.uid),
            ticket,
        })
    }

    async fn pin_images(
        &self,
        images: Result<Option<Vec<ImageUse>>, WorkloadError>,
        ctx: &RequestContext,
        deadline: tokio::time::Instant,
        kyverno_input: Option<std::sync::Arc<crate::kyverno::Input>>,
    ) -> Result<(Answer, Option<Ticket>), Unanswered> {
        // ClusterImagePolicies pin in labelled namespaces only; an
        // ImageValidatingPolicy selects its own.
        let labelled = match &self.cluster {
            Some(cluster) => matches!(
                cluster.mode(&ctx.namespace),
                Ok(NamespaceMode::Enforce | NamespaceMode::Audit)
            ),
            None => true,
        };
        if !labelled && kyverno_input.is_none() {
            return Ok((Answer::allow(), None));
        }
        let Ok(Some(images)) = images else {
            return Ok((Answer::allow(), None));
        };
        let kyverno_pins = match kyverno_input {
            Some(input) => self.kyverno_pins(input).await,
            None => Vec::new(),
        };
        let policies = self.store.current();
        let resource = &ctx.resource;
        // Only images some policy matches, written by tag, are pinned.
        let to_pin: Vec<(ImageUse, ImageRef)> = images
            .into_iter()
            .filter_map(|image| {
                let parsed = ImageRef::parse(&image.reference).ok()?;
                let claimed = kyverno_pins.contains(&image.reference)
                    || labelled
                        && policies
                            .matching(&parsed)
                            .iter()
                            .any(|p| p.applies_to(resource));
                (parsed.digest.is_none() && claimed).then_some((image, parsed))
            })
            .collect();
        if to_pin.is_empty() {
            return Ok((Answer::allow(), None));
        }
        let ticket = self.gate.enter(&ctx.namespace, deadline).await?;
        let creds = self
            .request_credentials(ctx, std::iter::empty(), deadline)
            .await;
        let creds = match &creds {
            Ok(c) => self.resolution_credentials(c),
            Err(e) => {
                // /validate will deny them with this reason.
                let warning = format!("images not pinned to digests: {}", text::escape(e));
                return Ok((
                    Answer {
                        warnings: vec![text::cap(warning, MAX_WARNING_BYTES)],
                        ..Answer::allow()
                    },
                    Some(ticket),
                ));
            }
        };
        let creds = &creds;
        // The same registries-per-review limit as /validate: the first
        // hosts in the workload's order.
        let limit = self.settings.max_registries_per_review;
        let (over, distinct) =
            registries_reached(to_pin.iter().map(|(_, p)| Some(p.registry.as_str())), limit);
        // Each image: a pinning patch, or a warning (it could not be
        // pinned; /validate will deny it). Every registry request runs
        // under the namespace's registry share, as /validate's do.
        let pins = to_pin.into_iter().zip(over).map(|((image, parsed), over)| async move {
            let not_pinned = |why: &str| {
                format!(
                    "{} {}: not pinned to a digest ({why}); the validating webhook will deny it",
                    text::escape(&image.field),
                    text::excerpt(&image.reference, MAX_IMAGE_IN_TEXT)
                )
            };
            if over {
                return Err(not_pinned(&format!(
                    "this workload names {distinct} registries, over sigil's limit of {limit} per review (--max-registries-per-review); not contacted"
                )));
            }
            let resolved = match tokio::time::timeout_at(
                deadline,
                self.verifier.resolve(&parsed, creds),
            )
            .await
            {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Err(not_pinned(&e.to_string())),
                Err(_) => return Err(not_pinned("timed out")),
            };
            let path = PointerBuf::parse(image.pointer.as_str())
                .map_err(|e| not_pinned(&e.to_string()))?;
            Ok(PatchOperation::Replace(ReplaceOperation {
                path,
                value: serde_json::Value::String(format!("{}@{}", image.reference, resolved)),
            }))
        });
        let results: Vec<Result<PatchOperation, String>> = crate::registry::as_tenant(
            &ctx.namespace,
            futures::stream::iter(pins)
                .buffered(IMAGES_IN_PARALLEL)
                .collect(),
        )
        .await;
        let mut ops = Vec::new();
        let mut patch_bytes = 2;
        let mut warnings = Vec::new();
        for r in results {
            match r {
                Ok(op) => {
                    // The patch stays under its cap: a pin past it is
                    // left out (and /validate denies that image).
                    let size = serde_json::to_vec(&op).map_or(usize::MAX, |b| b.len() + 1);
                    if patch_bytes + size > MAX_PATCH_BYTES {
                        warnings.push(format!(
                            "an image not pinned to a digest: the patch would be over sigil's limit of {MAX_PATCH_BYTES} bytes; the validating webhook will deny it"
                        ));
                        continue;
                    }
                    patch_bytes += size;
                    ops.push(op);
                }
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
        Ok((
            Answer {
                denied: None,
                warnings: bounded_warnings(warnings),
                patch,
            },
            Some(ticket),
        ))
    }
}

/// `warnings` as an answer carries them: identical ones once with a
/// count, each at most [`MAX_WARNING_BYTES`], at most [`MAX_WARNINGS`].
fn bounded_warnings(warnings: Vec<String>) -> Vec<String> {
    let mut counted: Vec<(String, usize)> = Vec::new();
    for w in warnings {
        if let Some((_, n)) = counted.iter_mut().find(|(seen, _)| *seen == w) {
            *n += 1;
        } else if counted.len() < MAX_WARNINGS {
            counted.push((w, 1));
        } else {
            // Past the cap only the count of what is left out matters.
            counted.push((String::new(), 1));
        }
    }
    let shown = counted.len().min(MAX_WARNINGS - 1);
    let mut out: Vec<String> = counted[..shown]
        .iter()
        .map(|(w, n)| {
            let w = if *n > 1 {
                format!("{w} (and {} more the same)", n - 1)
            } else {
                w.clone()
            };
            text::cap(w, MAX_WARNING_BYTES)
        })
        .collect();
    let left: usize = counted[shown..].iter().map(|(_, n)| n).sum();
    if left > 0 {
        out.push(format!("… and {left} more images not pinned"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_counted_capped_and_cut() {
        let same = vec!["x not pinned".to_string(); 300];
        assert_eq!(
            bounded_warnings(same),
            ["x not pinned (and 299 more the same)"]
        );
        let distinct: Vec<String> = (0..300)
            .map(|i| format!("{i}: {}", "y".repeat(2_000)))
            .collect();
        let out = bounded_warnings(distinct);
        assert_eq!(out.len(), MAX_WARNINGS);
        assert!(out.iter().all(|w| w.len() <= MAX_WARNING_BYTES));
        assert_eq!(
            out.last().unwrap(),
            &format!("… and {} more images not pinned", 300 - (MAX_WARNINGS - 1))
        );
    }
}
