//! The judge: given a compiled policy and the evidence its authorities'
//! collectors returned, decide. Pure: no I/O, no clock, no async; policy
//! programs (`spec.policy`, attestation policies) run here, bounded by
//! their time limit, so a caller on an async runtime runs [`judge`] on a
//! blocking thread when [`runs_programs`] says so.
//!
//! The rules (README, "How a policy decides"):
//! - a policy using an unsupported spec field fails, naming it;
//! - without `spec.policy`, any authority vouching passes the policy;
//! - with `spec.policy`, the program decides over the vouching
//!   authorities' `authorityMatches`;
//! - a static authority vouches or not by its `action`; an unsupported one
//!   never does;
//! - a signature authority vouches with its first verified signature (a
//!   Notation authority too; at level `skip` it vouches without one);
//! - an attestation authority vouches when every required attestation has
//!   a verified Statement of its predicate type and each such Statement
//!   passes the attestation's policy.
//!
//! Evidence bound to any digest but the admitted one is ignored.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::evidence::{Evidence, Source, VerifiedAttestation};
use super::outcome::{AuthorityOutcome, Failure, PolicyOutcome, Vouch};
use crate::model::notation::Level;
use crate::policy::program::{Language, Program, ProgramError};
use crate::policy::{AuthorityCheck, CompiledAuthority, CompiledPolicy, KeyEvidence};

/// What one authority's collector returned.
pub type Collected = Result<Evidence, Failure>;

/// Whether the policy's authorities need evidence at all (a policy with
/// unsupported fields fails before any is collected).
pub fn needs_evidence(policy: &CompiledPolicy) -> bool {
    policy.unsupported.is_empty()
}

/// Whether judging the policy may run a program (and so may take up to the
/// program time limit).
pub fn runs_programs(policy: &CompiledPolicy) -> bool {
    policy.program.is_some()
        || policy
            .authorities
            .iter()
            .any(|a| a.attestations.iter().any(|w| w.policy.is_some()))
}

/// Decides `policy` for `digest` from `evidence`, one entry per authority
/// in order. A missing entry fails its authority. `limit` bounds each
/// program evaluation.
pub fn judge(
    policy: &CompiledPolicy,
    digest: &str,
    evidence: &[Collected],
    limit: Duration,
) -> PolicyOutcome {
    if !policy.unsupported.is_empty() {
        return PolicyOutcome::failed(
            &policy.name,
            policy.mode,
            Failure::Verdict(format!(
                "uses {}, which this version of sigil does not verify",
                policy.unsupported.join(", ")
            )),
        );
    }
    let authorities: Vec<AuthorityOutcome> = policy
        .authorities
        .iter()
        .enumerate()
        .map(|(i, a)| judge_authority(a, digest, evidence.get(i), limit))
        .collect();
    match &policy.program {
        Some(program) => judge_spec_policy(policy, program, authorities, limit),
        None => PolicyOutcome {
            policy: policy.name.clone(),
            mode: policy.mode,
            passed: authorities.iter().any(AuthorityOutcome::passed),
            failure: None,
            authorities,
        },
    }
}

/// `spec.policy`: the program sees policy-controller's input,
/// `{authorityMatches: {<name>: {signatures, attestations, static}}}`,
/// holding only the authorities that vouched, and decides.
fn judge_spec_policy(
    policy: &CompiledPolicy,
    program: &Program,
    authorities: Vec<AuthorityOutcome>,
    limit: Duration,
) -> PolicyOutcome {
    let matches: Map<String, Value> = authorities
        .iter()
        .filter_map(|a| Some((a.name.clone(), a.result.as_ref().ok()?.matches.clone())))
        .collect();
    let result = program.evaluate(&json!({ "authorityMatches": matches }), limit);
    PolicyOutcome {
        policy: policy.name.clone(),
        mode: policy.mode,
        passed: result.is_ok(),
        failure: result
            .err()
            .map(|e| program_failure(format!("spec.policy failed: {e}"), &e)),
        authorities,
    }
}

fn judge_authority(
    a: &CompiledAuthority,
    digest: &str,
    collected: Option<&Collected>,
    limit: Duration,
) -> AuthorityOutcome {
    let verdict = |reason: String| AuthorityOutcome::failed(&a.name, Failure::Verdict(reason));
    match &a.check {
        AuthorityCheck::Static { pass: true, .. } => AuthorityOutcome {
            name: a.name.clone(),
            result: Ok(Vouch {
                reason: "static pass".into(),
                signer: None,
                matches: json!({ "static": true, "signatures": [], "attestations": {} }),
                notation: None,
                statements: Default::default(),
            }),
        },
        AuthorityCheck::Static {
            pass: false,
            message,
        } => verdict(
            message
                .clone()
                .unwrap_or_else(|| "disallowed by static policy".into()),
        ),
        AuthorityCheck::Unsupported { field } => verdict(format!(
            "{field} is not supported yet by sigil; failing closed"
        )),
        AuthorityCheck::Notation(p) if p.level == Level::Skip => AuthorityOutcome {
            name: a.name.clone(),
            result: Ok(Vouch {
                reason: "Notation verification skipped (verificationLevel skip)".into(),
                signer: None,
                matches: json!({ "signatures": [], "attestations": {} }),
                notation: None,
                statements: Default::default(),
            }),
        },
        AuthorityCheck::Key { .. } | AuthorityCheck::Keyless(_) | AuthorityCheck::Notation(_) => {
            match collected {
                None => verdict("no evidence was collected".into()),
                Some(Err(failure)) => AuthorityOutcome::failed(&a.name, failure.clone()),
                Some(Ok(evidence)) if a.attestations.is_empty() => {
                    judge_signatures(a, digest, evidence)
                }
                Some(Ok(evidence)) => judge_attestations(a, digest, evidence, limit),
            }
        }
    }
}

/// A signature authority vouches with its first verified signature.
fn judge_signatures(a: &CompiledAuthority, digest: &str, evidence: &Evidence) -> AuthorityOutcome {
    let signatures: Vec<_> = evidence
        .signatures
        .iter()
        .filter(|s| s.digest == digest)
        .collect();
    let Some(first) = signatures.first() else {
        let reason = match evidence.source {
            Source::Referrers => format!(
                "no verified signature among {} referrer{}{}",
                evidence.candidates,
                plural(evidence.candidates),
                if evidence.rejected.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", evidence.rejected.join("; "))
                }
            ),
            Source::NotationSignatures => format!(
                "no Notation signature verified among {} ({})",
                evidence.candidates,
                evidence.rejected.join("; ")
            ),
            _ => evidence
                .rejected
                .first()
                .cloned()
                .unwrap_or_else(|| "no signature verified".into()),
        };
        return AuthorityOutcome::failed(&a.name, Failure::Verdict(reason));
    };
    let reason = match (&a.check, evidence.source, &first.signer) {
        (_, Source::NotationSignatures, _) => match &first.notation {
            Some(n) => format!(
                "Notation {} signature by \"{}\" verified ({}{})",
                n.envelope.name(),
                n.subject,
                n.level.name(),
                n.timestamp
                    .as_ref()
                    .map(|t| format!(", timestamped {t}"))
                    .unwrap_or_default()
            ),
            None => format!("Notation signature verified for {}", a.name),
        },
        (_, Source::Referrers, _) => format!("signature bundle verified for {}", a.name),
        (_, _, Some(s)) if s.claims.is_empty() => format!(
            "keyless signature by {} issued by {} verified",
            s.subject, s.issuer
        ),
        (_, _, Some(s)) => format!(
            "keyless signature by {} issued by {} verified, with {}",
            s.subject,
            s.issuer,
            s.claims
                .iter()
                .map(|(c, v)| format!("{c} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (AuthorityCheck::Key { evidence, .. }, _, None) => key_reason(&a.name, evidence.as_ref()),
        (_, _, None) => format!("signature verified for {}", a.name),
    };
    AuthorityOutcome {
        name: a.name.clone(),
        result: Ok(Vouch {
            reason,
            signer: first.signer.clone(),
            matches: json!({
                "signatures": signatures.iter().map(|s| s.policy_input()).collect::<Vec<_>>(),
                "attestations": {},
            }),
            notation: first.notation.clone(),
            statements: Default::default(),
        }),
    }
}

fn key_reason(name: &str, evidence: Option<&KeyEvidence>) -> String {
    match evidence {
        Some(KeyEvidence {
            tlog: true,
            timestamp: true,
            ..
        }) => format!(
            "signature verified with key {name}, its Rekor entry and its RFC 3161 timestamp"
        ),
        Some(KeyEvidence { tlog: true, .. }) => {
            format!("signature verified with key {name} and its Rekor entry")
        }
        Some(_) => format!("signature verified with key {name} and its RFC 3161 timestamp"),
        None => format!("signature verified with key {name}"),
    }
}

/// Every required attestation must have a verified Statement of its
/// predicate type, and every such Statement must pass its policy. The
/// Statements are the ones bound to the admitted digest (`.att`, referrer
/// attestations) or, when there are none of that type and the authority's
/// signature over the admitted image index verified, the ones BuildKit
/// filed in the index's attestation manifests: one at least for every
/// platform manifest of the index.
fn judge_attestations(
    a: &CompiledAuthority,
    digest: &str,
    evidence: &Evidence,
    limit: Duration,
) -> AuthorityOutcome {
    let fail = |reason: String| AuthorityOutcome::failed(&a.name, Failure::Verdict(reason));
    let verified: Vec<&VerifiedAttestation> = evidence
        .attestations
        .iter()
        .filter(|v| v.digest == digest)
        .collect();
    let unverified = &evidence.rejected;
    let why_not = || match unverified.first() {
        None => String::new(),
        Some(r) => format!(
            " ({} attestation{} did not verify: {r})",
            unverified.len(),
            plural(unverified.len())
        ),
    };
    let mut found: Vec<(&str, Vec<&VerifiedAttestation>)> = Vec::new();
    let mut from_index: Vec<&str> = Vec::new();
    for want in &a.attestations {
        let direct: Vec<&VerifiedAttestation> = verified
            .iter()
            .copied()
            .filter(|v| v.predicate_type == want.predicate_type)
            .collect();
        let matching = if !direct.is_empty() {
            direct
        } else if let Some(index) = &evidence.index {
            let index_why = || match index.rejected.first() {
                None => String::new(),
                Some(r) => format!(" ({} did not count: {r})", index.rejected.len()),
            };
            if index.platforms.is_empty() {
                return fail(format!(
                    "attestation {}: the image index lists no platform manifest",
                    want.name
                ));
            }
            let mut all = Vec::new();
            for platform in &index.platforms {
                let here: Vec<&VerifiedAttestation> = index
                    .statements
                    .iter()
                    .filter(|s| s.digest == *platform && s.predicate_type == want.predicate_type)
                    .collect();
                if here.is_empty() {
                    return fail(format!(
                        "attestation {}: no matching attestations for predicate type {}: the signed image index holds none for its platform manifest {platform}{}",
                        want.name,
                        want.predicate_type,
                        index_why()
                    ));
                }
                all.extend(here);
            }
            from_index.push(want.name.as_str());
            all
        } else {
            return fail(format!(
                "attestation {}: no matching attestations for predicate type {}{}",
                want.name,
                want.predicate_type,
                why_not()
            ));
        };
        if let Some(program) = &want.policy {
            for m in &matching {
                let input = match program.language() {
                    Language::Rego => m.statement.clone(),
                    Language::Cel => json!({
                        "statement": m.statement,
                        "predicate": m.statement.get("predicate").cloned().unwrap_or_default(),
                    }),
                };
                if let Err(e) = program.evaluate(&input, limit) {
                    let message = if m.digest == digest {
                        format!("attestation {}: policy failed: {e}", want.name)
                    } else {
                        format!(
                            "attestation {}: policy failed for platform manifest {}: {e}",
                            want.name, m.digest
                        )
                    };
                    return AuthorityOutcome::failed(&a.name, program_failure(message, &e));
                }
            }
        }
        found.push((want.name.as_str(), matching));
    }
    let names: Vec<&str> = a.attestations.iter().map(|w| w.name.as_str()).collect();
    let in_index = match (from_index.is_empty(), &evidence.index) {
        (false, Some(index)) => format!(
            " ({} from the signed image index, for each of its {} platform manifest{})",
            from_index.join(", "),
            index.platforms.len(),
            plural(index.platforms.len())
        ),
        _ => String::new(),
    };
    AuthorityOutcome {
        name: a.name.clone(),
        result: Ok(Vouch {
            reason: format!("attestations {} verified{in_index}", names.join(", ")),
            signer: found
                .iter()
                .flat_map(|(_, m)| m.iter())
                .find_map(|v| v.signer.clone()),
            matches: json!({
                "signatures": [],
                "attestations": found.iter().map(|(name, matching)| {
                    let inputs: Vec<Value> = matching.iter().map(|v| v.policy_input()).collect();
                    (name.to_string(), Value::Array(inputs))
                }).collect::<Map<_, _>>(),
            }),
            notation: None,
            statements: found
                .iter()
                .map(|(name, matching)| {
                    let statements = matching.iter().map(|v| v.statement.clone()).collect();
                    (name.to_string(), statements)
                })
                .collect(),
        }),
    }
}

/// A program's failure: transient when it says more about the load than
/// the evidence (over its time limit, or the workers busy), so that it is
/// denied now but not remembered.
fn program_failure(message: String, error: &ProgramError) -> Failure {
    if error.is_transient() {
        Failure::Transient(message)
    } else {
        Failure::Verdict(message)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests;
