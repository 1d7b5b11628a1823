//! One request's images checked and decided: each distinct reference
//! parsed and matched once, its registries limited per review, verified
//! under one deadline with its namespace's registry share, decided; then
//! its audit records (all or none) and Events.

use std::sync::Arc;

use futures::StreamExt as _;

use super::{Evaluation, Evaluator, IMAGES_IN_PARALLEL};
use crate::audit::{now_rfc3339, AuditRecord, RequestContext};
use crate::decision::{decide_with, DecisionSettings};
use crate::image::ImageRef;
use crate::metrics;
use crate::policy::{LoadedPolicy, PolicyMode};
use crate::verify::{Failure, ImageReport, PolicyOutcome, RequestCredentials};
use crate::workload::ImageUse;

/// The reason an unpinned image fails every policy that matches it.
pub fn unpinned_reason(reference: &str) -> String {
    format!(
        "{reference} must be an image digest (name@sha256:… or name:tag@sha256:…): a tag can move after it is verified; sigil's mutating webhook (/mutate) pins matched tags to the digest it verifies, so check that it is installed and ran"
    )
}

/// An image parsed and matched to its policies, or why it could not be parsed.
type Matched = Result<(Arc<ImageRef>, Vec<LoadedPolicy>), String>;

impl Evaluator {
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
        self.evaluate_with_kyverno(
            ctx,
            images,
            decision,
            require_digest,
            deadline,
            &[],
            Vec::new(),
        )
        .await
    }

    /// [`Evaluator::evaluate_until`] with what the `ImageValidatingPolicy`s
    /// that apply decided: the images they claim (never "no policy
    /// matches") and their findings, recorded with the rest.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn evaluate_with_kyverno(
        &self,
        ctx: &RequestContext,
        images: Vec<ImageUse>,
        decision: &DecisionSettings,
        require_digest: bool,
        deadline: tokio::time::Instant,
        claimed: &[String],
        kyverno: Vec<crate::decision::Finding>,
    ) -> Evaluation {
        let eval = self
            .evaluate_quietly_until(
                ctx,
                images,
                decision,
                require_digest,
                deadline,
                claimed,
                kyverno,
            )
            .await;
        let mut eval = eval;
        record_policy_results(&eval.reports);
        let verdict = &eval.verdict;
        if !verdict.findings.is_empty() {
            let time = now_rfc3339();
            let records: Vec<AuditRecord> = verdict
                .findings
                .iter()
                .map(|f| AuditRecord::new(ctx, f, time.clone()))
                .collect();
            if let Err(refused) = self.audit.record_review(&records, deadline).await {
                eval.unrecorded = Some(refused);
                return eval;
            }
            drop(records);
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
        self.evaluate_quietly_until(
            ctx,
            images,
            decision,
            require_digest,
            deadline,
            &[],
            Vec::new(),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn evaluate_quietly_until(
        &self,
        ctx: &RequestContext,
        images: Vec<ImageUse>,
        decision: &DecisionSettings,
        require_digest: bool,
        deadline: tokio::time::Instant,
        claimed: &[String],
        kyverno: Vec<crate::decision::Finding>,
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
        let limit = self.settings.max_registries_per_review;
        let (over_fan_out, distinct_hosts) = registries_reached(
            matched.iter().map(|(_, m)| match m {
                Ok((parsed, matches)) if !matches.is_empty() => Some(parsed.registry.as_str()),
                _ => None,
            }),
            limit,
        );
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
        let verdict = decide_with(&reports, decision, claimed, kyverno);
        Evaluation {
            reports,
            verdict,
            unrecorded: None,
        }
    }
}

/// Which images a review may fetch for: the registries of the images that
/// need a registry (`Some(host)`), the first `limit` distinct hosts in the
/// workload's order. Returns, per image, whether it is over the limit (its
/// host is not contacted), and how many distinct hosts the review names.
/// `/validate` and `/mutate` apply the same rule.
pub(super) fn registries_reached<'a>(
    hosts: impl Iterator<Item = Option<&'a str>>,
    limit: usize,
) -> (Vec<bool>, usize) {
    let mut reached: Vec<&str> = Vec::new();
    let mut all: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let over = hosts
        .map(|host| match host {
            Some(host) => {
                all.insert(host);
                if reached.contains(&host) {
                    false
                } else if reached.len() < limit {
                    reached.push(host);
                    false
                } else {
                    true
                }
            }
            None => false,
        })
        .collect();
    (over, all.len())
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

    /// The first hosts in the workload's order are reached, up to the
    /// limit; images needing no registry count for nothing.
    #[test]
    fn registries_are_reached_in_the_workloads_order_up_to_the_limit() {
        let (over, distinct) = registries_reached(
            [Some("a"), None, Some("b"), Some("a"), Some("c"), Some("b")].into_iter(),
            2,
        );
        assert_eq!(over, [false, false, false, false, true, false]);
        assert_eq!(distinct, 3);
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
