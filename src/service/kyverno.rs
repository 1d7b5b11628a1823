//! The `ImageValidatingPolicy`s of one review: which apply and which
//! images they claim (pure, on the program pool under the policy time
//! limit), the facts those images need from sigil's verifier (under the
//! review's deadline, its namespace's registry share and the request's
//! pull secrets), then their validations (pure again), as findings the
//! decision takes beside the ClusterImagePolicies'.

use std::sync::Arc;

use serde_json::Value;

use super::Evaluator;
use crate::audit::RequestContext;
use crate::decision::{Finding, FindingDecision, KYVERNO_MODE};
use crate::image::ImageRef;
use crate::kyverno::{
    judge, Applies, AttestationKind, Check, CompiledIvp, Facts, ImageFacts, Input, LoadedIvp,
};
use crate::policy::program_pool::{PoolError, ProgramPool};
use crate::registry::Credentials;
use crate::verify::{Failure, PolicyOutcome};

/// Most images one policy verifies in one review (as many as a workload holds).
const MAX_IVP_IMAGES: usize = crate::limits::MAX_IMAGES;

/// What the `ImageValidatingPolicy`s decided for one review.
#[derive(Debug, Default)]
pub(super) struct KyvernoDecided {
    /// Images some applying policy verifies (never "no policy matches").
    pub claimed: Vec<String>,
    /// Their failures.
    pub findings: Vec<Finding>,
}

fn finding(policy: &str, image: &str, decision: FindingDecision, reason: String) -> Finding {
    Finding {
        image: image.to_string(),
        field: String::new(),
        digest: None,
        policy: Some(policy.to_string()),
        mode: KYVERNO_MODE.to_string(),
        decision,
        reasons: vec![reason],
        authorities: Vec::new(),
        passed: false,
    }
}

/// The check of an attestor over its layouts: verified when any layout
/// verified; else undecided when any could not be decided; else failed,
/// with every layout's reasons.
fn check_of(outcomes: &[Arc<PolicyOutcome>]) -> Check {
    if outcomes.iter().any(|o| o.passed) {
        return Check::Verified;
    }
    let reasons = outcomes
        .iter()
        .flat_map(|o| o.reasons())
        .collect::<Vec<_>>()
        .join("; ");
    if outcomes.iter().any(|o| o.is_transient()) {
        Check::Error(reasons)
    } else {
        Check::Failed(reasons)
    }
}

/// An image every check of which came out as `check` (it could not be
/// read, resolved or reached).
fn failing(ivp: &CompiledIvp, check: Check) -> ImageFacts {
    let mut out = ImageFacts::default();
    for a in &ivp.attestors {
        out.signatures.insert(a.name.clone(), check.clone());
        for att in ivp.attestations.keys() {
            out.attestations
                .insert((att.clone(), a.name.clone()), (check.clone(), Vec::new()));
        }
    }
    out
}

async fn on_pool<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
    limit: std::time::Duration,
) -> Result<T, String> {
    match ProgramPool::shared().run_async(job, limit).await {
        Ok(t) => Ok(t),
        Err(PoolError::TimedOut) => Err(format!(
            "policy did not finish within {}",
            crate::duration::human(limit)
        )),
        Err(PoolError::Busy) => {
            crate::metrics::global().program_overload();
            Err("policy programs are overloaded: too many evaluations at once".into())
        }
        Err(PoolError::Crashed) => Err("policy evaluation crashed".into()),
    }
}

impl Evaluator {
    /// [`Evaluator::evaluate_with`] with the `ImageValidatingPolicy`s
    /// too, over `input` (the request as the webhook would receive it):
    /// `sigil check`'s way in.
    pub async fn evaluate_with_kyverno_input(
        &self,
        ctx: &RequestContext,
        images: Vec<crate::workload::ImageUse>,
        decision: &crate::decision::DecisionSettings,
        require_digest: bool,
        input: Option<Arc<Input>>,
    ) -> super::Evaluation {
        let deadline = tokio::time::Instant::now() + self.settings.verify_timeout;
        let kyverno = match input {
            Some(input) => self.kyverno(ctx, input, deadline).await,
            None => KyvernoDecided::default(),
        };
        self.evaluate_with_kyverno(
            ctx,
            images,
            decision,
            require_digest,
            deadline,
            &kyverno.claimed,
            kyverno.findings,
        )
        .await
    }

    /// Decides every `ImageValidatingPolicy` for one review.
    pub(super) async fn kyverno(
        &self,
        ctx: &RequestContext,
        input: Arc<Input>,
        deadline: tokio::time::Instant,
    ) -> KyvernoDecided {
        let mut decided = KyvernoDecided::default();
        let policies = self.kyverno.current();
        if policies.is_empty() {
            return decided;
        }
        // A review too large to read whole still says its namespace (its
        // namespaced policies fail too, never pass unread).
        let input = match input.too_large {
            Some(bytes) if input.request.is_null() => {
                let mut whole = Input::too_large(bytes);
                whole.request = serde_json::json!({"namespace": ctx.namespace});
                Arc::new(whole)
            }
            _ => input,
        };
        let creds = self
            .request_credentials(ctx, std::iter::empty(), deadline)
            .await;
        for loaded in policies.iter() {
            match loaded {
                LoadedIvp::Invalid {
                    name,
                    namespace,
                    error,
                    scope,
                } => {
                    // Fails closed for what it selects; unreadable
                    // constraints select its whole namespace scope.
                    let selected = match scope {
                        Some(scope) => {
                            let (s, i) = (scope.clone(), input.clone());
                            on_pool(
                                move || !matches!(judge::applies(&s, &i), Applies::No),
                                self.verifier.policy_timeout(),
                            )
                            .await
                            .unwrap_or(true)
                        }
                        None => namespace.as_deref().is_none_or(|n| n == ctx.namespace),
                    };
                    if selected {
                        decided.findings.push(finding(
                            name,
                            "",
                            FindingDecision::Denied,
                            format!("policy is invalid: {error}"),
                        ));
                    }
                }
                LoadedIvp::Valid(ivp) => {
                    self.one_policy(ivp, &input, &creds, deadline, &mut decided)
                        .await
                }
            }
        }
        decided
    }

    /// The images `/mutate` pins for the `ImageValidatingPolicy`s that
    /// apply with `validationConfigurations.mutateDigest` (the default):
    /// those they claim. A policy whose expressions fail claims nothing
    /// here; `/validate` reports it.
    pub(super) async fn kyverno_pins(&self, input: Arc<Input>) -> Vec<String> {
        let mut pins = Vec::new();
        for loaded in self.kyverno.current().iter() {
            let LoadedIvp::Valid(ivp) = loaded else {
                continue;
            };
            if !ivp.mutate_digest {
                continue;
            }
            let (p, i) = (ivp.clone(), input.clone());
            let claimed = on_pool(
                move || match judge::applies(&p, &i) {
                    Applies::Yes { bound } => judge::images(&p, &bound)
                        .map(|(_, matched)| matched)
                        .unwrap_or_default(),
                    _ => Vec::new(),
                },
                self.verifier.policy_timeout(),
            )
            .await
            .unwrap_or_default();
            pins.extend(claimed);
        }
        pins
    }

    async fn one_policy(
        &self,
        ivp: &Arc<CompiledIvp>,
        input: &Arc<Input>,
        creds: &Result<Credentials, String>,
        deadline: tokio::time::Instant,
        decided: &mut KyvernoDecided,
    ) {
        let limit = self.verifier.policy_timeout();
        let error_finding = |image: &str, e: String| {
            (!ivp.ignore_failures).then(|| finding(&ivp.name, image, FindingDecision::Denied, e))
        };
        let (p, i) = (ivp.clone(), input.clone());
        let match_request = move || match judge::applies(&p, &i) {
            Applies::No => Ok(None),
            Applies::Error(e) => Err(e),
            Applies::Yes { bound } => {
                judge::images(&p, &bound).map(|(images, matched)| Some((bound, images, matched)))
            }
        };
        // Matching that runs no CEL (rules, selectors, globs over the pod
        // spec's images) is bounded work done here; CEL goes to the pool.
        let prepared = if ivp.matches_without_cel() {
            match_request()
        } else {
            on_pool(match_request, limit).await.and_then(|r| r)
        };
        let (bound, images, mut matched) = match prepared {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                decided.findings.extend(error_finding("", e));
                return;
            }
        };
        if matched.is_empty() {
            return;
        }
        matched.truncate(MAX_IVP_IMAGES);
        decided.claimed.extend(matched.iter().cloned());
        let first = matched[0].clone();
        let creds = match creds {
            Ok(c) => c.clone(),
            Err(e) => {
                decided.findings.extend(error_finding(&first, e.clone()));
                return;
            }
        };
        let facts = match tokio::time::timeout_at(deadline, self.facts(ivp, &matched, &creds)).await
        {
            Ok(f) => Arc::new(f),
            Err(_) => {
                let e = format!(
                    "timed out after {}",
                    crate::duration::human(self.settings.verify_timeout)
                );
                decided.findings.extend(error_finding(&first, e));
                return;
            }
        };
        let p = ivp.clone();
        let outcome = on_pool(
            move || judge::evaluate(&p, &bound, &images, &matched, facts),
            limit,
        )
        .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => judge::Outcome {
                failure: None,
                error: Some(e),
            },
        };
        if let Some(e) = outcome.error {
            decided.findings.extend(error_finding(&first, e));
            return;
        }
        if let Some(message) = outcome.failure {
            let a = ivp.actions;
            for (on, decision) in [
                (a.deny, FindingDecision::Denied),
                (a.warn, FindingDecision::Warned),
                // Every finding is in the audit log: Audit adds one only
                // when nothing else was done.
                (a.audit && !a.deny && !a.warn, FindingDecision::Audited),
            ] {
                if on {
                    decided
                        .findings
                        .push(finding(&ivp.name, &first, decision, message.clone()));
                }
            }
        }
    }

    /// What the verifier concludes for each matched image and attestor.
    /// The same registries-per-review limit as a ClusterImagePolicy's
    /// images: past it, an image's registry is not contacted and every
    /// check of it fails with that reason.
    async fn facts(&self, ivp: &CompiledIvp, matched: &[String], creds: &Credentials) -> Facts {
        let limit = self.settings.max_registries_per_review;
        let hosts: Vec<Option<String>> = matched
            .iter()
            .map(|i| ImageRef::parse_shared(i).ok().map(|r| r.registry.clone()))
            .collect();
        let (over, distinct) =
            super::evaluate::registries_reached(hosts.iter().map(|h| h.as_deref()), limit);
        let mut facts = Facts::default();
        for (image, over) in matched.iter().zip(over) {
            let found = if over {
                let why = format!(
                    "{image}: this workload names {distinct} registries, over sigil's limit of {limit} per review (--max-registries-per-review); not contacted"
                );
                failing(ivp, Check::Failed(why))
            } else {
                self.image_facts(ivp, image, creds).await
            };
            facts.images.insert(image.clone(), found);
        }
        facts
    }

    async fn image_facts(&self, ivp: &CompiledIvp, image: &str, creds: &Credentials) -> ImageFacts {
        let mut out = ImageFacts::default();
        let parsed = match ImageRef::parse_shared(image) {
            Ok(p) => p,
            Err(e) => return failing(ivp, Check::Failed(e.to_string())),
        };
        let digest = match &parsed.digest {
            Some(d) => d.clone(),
            None => match self
                .verifier
                .resolve(&parsed, &self.resolution_credentials(creds))
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    let failure = Failure::registry(format!("cannot resolve digest: {e}"), &e);
                    let why = failure.reason().to_string();
                    return failing(
                        ivp,
                        if failure.is_transient() {
                            Check::Error(why)
                        } else {
                            Check::Failed(why)
                        },
                    );
                }
            },
        };
        let in_layouts = |policies: &'_ [Arc<crate::policy::CompiledPolicy>]| {
            let (parsed, digest) = (parsed.clone(), digest.clone());
            let policies = policies.to_vec();
            async move {
                let mut outcomes = Vec::with_capacity(policies.len());
                for p in &policies {
                    let o = self
                        .verifier
                        .evaluate_policy(&parsed, &digest, p, creds)
                        .await;
                    let passed = o.passed;
                    outcomes.push(o);
                    if passed {
                        break;
                    }
                }
                outcomes
            }
        };
        for a in &ivp.attestors {
            let signature = in_layouts(&a.signature).await;
            out.signatures.insert(a.name.clone(), check_of(&signature));
            for (att, kind) in &ivp.attestations {
                let key = (att.clone(), a.name.clone());
                match (kind, a.notary) {
                    (AttestationKind::Intoto(_), false) => {
                        let Some(policies) = a.intoto.get(att) else {
                            continue;
                        };
                        let outcomes = in_layouts(policies).await;
                        let statements: Vec<Value> = outcomes
                            .iter()
                            .flat_map(|o| o.authorities.iter())
                            .filter_map(|a| a.result.as_ref().ok())
                            .flat_map(|v| v.statements.get(att).cloned().unwrap_or_default())
                            .collect();
                        out.attestations
                            .insert(key, (check_of(&outcomes), statements));
                    }
                    (AttestationKind::Referrer(kind), true) => {
                        // A notary attestor is one policy (one layout).
                        let Some(signature) = a.signature.first() else {
                            continue;
                        };
                        let got = self
                            .verifier
                            .signed_referrer_payloads(&parsed, &digest, kind, signature, creds)
                            .await;
                        let entry = match got {
                            Ok(payloads) => (Check::Verified, payloads),
                            Err(f) if f.is_transient() => {
                                (Check::Error(f.reason().to_string()), Vec::new())
                            }
                            Err(f) => (Check::Failed(f.reason().to_string()), Vec::new()),
                        };
                        out.attestations.insert(key, entry);
                    }
                    _ => {}
                }
            }
        }
        out
    }
}
