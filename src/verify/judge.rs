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
//! - a signature authority vouches with its first verified signature;
//! - an attestation authority vouches when every required attestation has
//!   a verified Statement of its predicate type and each such Statement
//!   passes the attestation's policy.
//!
//! Evidence bound to any digest but the admitted one is ignored.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::evidence::{Evidence, Source, VerifiedAttestation};
use super::outcome::{AuthorityOutcome, Failure, PolicyOutcome, Vouch};
use crate::policy::program::{Language, Program};
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
            .map(|m| Failure::Verdict(format!("spec.policy failed: {m}"))),
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
        AuthorityCheck::Key { .. } | AuthorityCheck::Keyless(_) => match collected {
            None => verdict("no evidence was collected".into()),
            Some(Err(failure)) => AuthorityOutcome::failed(&a.name, failure.clone()),
            Some(Ok(evidence)) if a.attestations.is_empty() => {
                judge_signatures(a, digest, evidence)
            }
            Some(Ok(evidence)) => judge_attestations(a, digest, evidence, limit),
        },
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
            _ => evidence
                .rejected
                .first()
                .cloned()
                .unwrap_or_else(|| "no signature verified".into()),
        };
        return AuthorityOutcome::failed(&a.name, Failure::Verdict(reason));
    };
    let reason = match (&a.check, evidence.source, &first.signer) {
        (_, Source::Referrers, _) => format!("signature bundle verified for {}", a.name),
        (_, _, Some(s)) => format!(
            "keyless signature by {} issued by {} verified",
            s.subject, s.issuer
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
/// predicate type, and every such Statement must pass its policy.
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
    for want in &a.attestations {
        let matching: Vec<&&VerifiedAttestation> = verified
            .iter()
            .filter(|v| v.predicate_type == want.predicate_type)
            .collect();
        if matching.is_empty() {
            return fail(format!(
                "attestation {}: no matching attestations for predicate type {}{}",
                want.name,
                want.predicate_type,
                why_not()
            ));
        }
        if let Some(program) = &want.policy {
            for m in matching {
                let input = match program.language() {
                    Language::Rego => m.statement.clone(),
                    Language::Cel => json!({
                        "statement": m.statement,
                        "predicate": m.statement.get("predicate").cloned().unwrap_or_default(),
                    }),
                };
                if let Err(message) = program.evaluate(&input, limit) {
                    return fail(format!(
                        "attestation {}: policy failed: {message}",
                        want.name
                    ));
                }
            }
        }
    }
    let names: Vec<&str> = a.attestations.iter().map(|w| w.name.as_str()).collect();
    AuthorityOutcome {
        name: a.name.clone(),
        result: Ok(Vouch {
            reason: format!("attestations {} verified", names.join(", ")),
            signer: verified.iter().find_map(|v| v.signer.clone()),
            matches: json!({
                "signatures": [],
                "attestations": a.attestations.iter().map(|w| {
                    let found: Vec<Value> = verified
                        .iter()
                        .filter(|v| v.predicate_type == w.predicate_type)
                        .map(|v| v.policy_input())
                        .collect();
                    (w.name.clone(), Value::Array(found))
                }).collect::<Map<_, _>>(),
            }),
        }),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Every rule of the README's decision tables, without a registry or a
/// runtime: evidence is built by hand, as a collector would return it.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::compile;
    use crate::policy::types::ClusterImagePolicySpec;
    use crate::policy::PolicyMode;
    use crate::verify::evidence::VerifiedSignature;
    use crate::verify::keyless::SignerIdentity;

    const KEY: &str = include_str!("../../tests/fixtures/containers-image/cosign.pub");
    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const LIMIT: Duration = Duration::from_secs(5);

    fn indented_key() -> String {
        KEY.lines().map(|l| format!("          {l}\n")).collect()
    }

    /// A compiled policy from the YAML of its spec; `{key}` is replaced by
    /// a block holding a real public key.
    fn policy(yaml: &str) -> CompiledPolicy {
        let yaml = yaml.replace("{key}", &format!("|\n{}", indented_key()));
        let spec: ClusterImagePolicySpec = serde_saphyr::from_str(&yaml).unwrap();
        compile("p", &spec).unwrap()
    }

    fn two_keys() -> CompiledPolicy {
        policy(
            "images: [{glob: '**'}]\nauthorities:\n  - name: a\n    key:\n      data: {key}  - name: b\n    key:\n      data: {key}",
        )
    }

    fn signed(source: Source, signer: Option<SignerIdentity>, digest: &str) -> Collected {
        Ok(Evidence {
            source,
            signatures: vec![VerifiedSignature {
                digest: digest.into(),
                signer,
            }],
            candidates: 1,
            ..Evidence::default()
        })
    }

    fn unsigned(reasons: &[&str]) -> Collected {
        Ok(Evidence {
            source: Source::SignatureTag,
            rejected: reasons.iter().map(|r| r.to_string()).collect(),
            candidates: reasons.len(),
            ..Evidence::default()
        })
    }

    fn verdict(reason: &str) -> Collected {
        Err(Failure::Verdict(reason.into()))
    }

    fn alice() -> SignerIdentity {
        SignerIdentity {
            subject: "alice@example.com".into(),
            issuer: "https://accounts.example.com".into(),
            ..SignerIdentity::default()
        }
    }

    fn attested(predicate_type: &str, predicate: Value, digest: &str) -> VerifiedAttestation {
        VerifiedAttestation {
            digest: digest.into(),
            statement: json!({
                "_type": "https://in-toto.io/Statement/v1",
                "predicateType": predicate_type,
                "predicate": predicate,
            }),
            predicate_type: predicate_type.into(),
            signer: None,
        }
    }

    #[test]
    fn any_authority_vouching_passes_the_policy() {
        let p = two_keys();
        let o = judge(
            &p,
            DIGEST,
            &[
                verdict("no signatures found at r/app:sha256-1.sig"),
                signed(Source::SignatureTag, None, DIGEST),
            ],
            LIMIT,
        );
        assert!(o.passed);
        assert_eq!(o.authorities[1].reason(), "signature verified with key b");
        assert!(!o.authorities[0].passed());
        assert!(!o.is_transient());
    }

    #[test]
    fn a_policy_fails_when_no_authority_vouches_and_names_each_reason() {
        let p = two_keys();
        let o = judge(
            &p,
            DIGEST,
            &[
                unsigned(&[
                    "signature payload names sha256:aa, image is sha256:11",
                    "signature does not verify with key a",
                ]),
                verdict("no signatures found at r/app:sha256-1.sig"),
            ],
            LIMIT,
        );
        assert!(!o.passed);
        assert_eq!(
            o.reasons(),
            vec![
                "a: signature payload names sha256:aa, image is sha256:11".to_string(),
                "b: no signatures found at r/app:sha256-1.sig".to_string(),
            ]
        );
        // Both are facts about the image: the verdict may be cached.
        assert!(!o.is_transient());
    }

    #[test]
    fn a_transient_failure_makes_a_failed_policy_uncacheable_but_not_a_passed_one() {
        let p = two_keys();
        let down = Err(Failure::Transient("cannot fetch signatures: 503".into()));
        let failed = judge(&p, DIGEST, &[down.clone(), unsigned(&["bad"])], LIMIT);
        assert!(!failed.passed);
        assert!(failed.is_transient());
        let passed = judge(
            &p,
            DIGEST,
            &[down, signed(Source::SignatureTag, None, DIGEST)],
            LIMIT,
        );
        assert!(passed.passed);
        assert!(!passed.is_transient());
    }

    #[test]
    fn a_signature_over_another_digest_never_counts() {
        let p = two_keys();
        let o = judge(
            &p,
            DIGEST,
            &[
                signed(Source::SignatureTag, None, OTHER),
                signed(Source::Referrers, Some(alice()), OTHER),
            ],
            LIMIT,
        );
        assert!(!o.passed);
        assert_eq!(o.authorities[0].reason(), "no signature verified");
        assert_eq!(
            o.authorities[1].reason(),
            "no verified signature among 1 referrer"
        );
    }

    #[test]
    fn missing_evidence_fails_closed() {
        let o = judge(&two_keys(), DIGEST, &[], LIMIT);
        assert!(!o.passed);
        assert_eq!(o.authorities[0].reason(), "no evidence was collected");
    }

    #[test]
    fn unsupported_spec_fields_fail_the_policy_naming_them() {
        let mut p = two_keys();
        p.unsupported = vec!["spec.policy.includeSpec".into()];
        assert!(!needs_evidence(&p));
        let o = judge(&p, DIGEST, &[], LIMIT);
        assert!(!o.passed);
        assert_eq!(
            o.reason(),
            Some("uses spec.policy.includeSpec, which this version of sigil does not verify")
        );
        assert!(o.authorities.is_empty());
    }

    #[test]
    fn static_authorities_decide_by_their_action() {
        let pass = policy("images: [{glob: '**'}]\nauthorities: [{static: {action: pass}}]\n");
        let o = judge(&pass, DIGEST, &[], LIMIT);
        assert!(o.passed);
        assert_eq!(o.authorities[0].reason(), "static pass");
        let fail = policy(
            "images: [{glob: '**'}]\nauthorities: [{static: {action: fail, message: 'frozen for the release'}}]\n",
        );
        let o = judge(&fail, DIGEST, &[], LIMIT);
        assert!(!o.passed);
        assert_eq!(o.reasons(), vec!["authority-0: frozen for the release"]);
        let bare = policy("images: [{glob: '**'}]\nauthorities: [{static: {action: fail}}]\n");
        assert_eq!(
            judge(&bare, DIGEST, &[], LIMIT).authorities[0].reason(),
            "disallowed by static policy"
        );
    }

    #[test]
    fn an_unsupported_authority_fails_naming_its_field_and_another_can_pass() {
        let p = policy(
            "images: [{glob: '**'}]\nauthorities:\n  - key: {kms: 'awskms:///arn:aws:kms:us-east-1:123456789012:key/abc'}\n  - static: {action: pass}\n",
        );
        let o = judge(
            &p,
            DIGEST,
            &[Ok(Evidence::default()), Ok(Evidence::default())],
            LIMIT,
        );
        assert_eq!(
            o.authorities[0].reason(),
            "spec.authorities[0].key.kms is not supported yet by sigil; failing closed"
        );
        assert!(o.passed);
    }

    #[test]
    fn key_reasons_name_the_evidence_required() {
        let mut p = two_keys();
        let with = |tlog, timestamp| {
            Some(KeyEvidence {
                tlog,
                timestamp,
                trust_root_ref: None,
            })
        };
        let cases = [
            (
                with(true, true),
                "signature verified with key a, its Rekor entry and its RFC 3161 timestamp",
            ),
            (
                with(true, false),
                "signature verified with key a and its Rekor entry",
            ),
            (
                with(false, true),
                "signature verified with key a and its RFC 3161 timestamp",
            ),
            (None, "signature verified with key a"),
        ];
        for (ev, want) in cases {
            if let AuthorityCheck::Key { evidence, .. } = &mut p.authorities[0].check {
                *evidence = ev;
            }
            let o = judge(
                &p,
                DIGEST,
                &[signed(Source::SignatureTag, None, DIGEST)],
                LIMIT,
            );
            assert_eq!(o.authorities[0].reason(), want);
        }
    }

    #[test]
    fn keyless_and_bundle_signatures_report_who_signed() {
        let p = policy(
            "images: [{glob: '**'}]\nauthorities:\n  - keyless:\n      identities: [{issuer: 'https://accounts.example.com', subject: 'alice@example.com'}]\n",
        );
        let o = judge(
            &p,
            DIGEST,
            &[signed(Source::SignatureTag, Some(alice()), DIGEST)],
            LIMIT,
        );
        assert!(o.passed);
        assert_eq!(
            o.authorities[0].reason(),
            "keyless signature by alice@example.com issued by https://accounts.example.com verified"
        );
        assert_eq!(o.authorities[0].signer(), Some(&alice()));
        let o = judge(
            &p,
            DIGEST,
            &[signed(Source::Referrers, Some(alice()), DIGEST)],
            LIMIT,
        );
        assert_eq!(
            o.authorities[0].reason(),
            "signature bundle verified for authority-0"
        );
        assert_eq!(
            o.authorities[0].result.as_ref().unwrap().matches,
            json!({
                "signatures": [{"id": "https://accounts.example.com|alice@example.com", "subject": "alice@example.com", "issuer": "https://accounts.example.com"}],
                "attestations": {},
            })
        );
    }

    #[test]
    fn unverified_referrers_are_listed() {
        let p = two_keys();
        let none = Ok(Evidence {
            source: Source::Referrers,
            rejected: vec![
                "referrer sha256:aa: invalid inclusion proof".into(),
                "referrer sha256:bb: bundle is malformed: EOF".into(),
            ],
            candidates: 2,
            ..Evidence::default()
        });
        let o = judge(&p, DIGEST, &[none, verdict("x")], LIMIT);
        assert_eq!(
            o.authorities[0].reason(),
            "no verified signature among 2 referrers (referrer sha256:aa: invalid inclusion proof; referrer sha256:bb: bundle is malformed: EOF)"
        );
    }

    fn attestation_policy(program: &str) -> CompiledPolicy {
        policy(&format!(
            "images: [{{glob: '**'}}]\nauthorities:\n  - name: scans\n    key:\n      data: {{key}}    attestations:\n      - name: scan\n        predicateType: vuln\n{program}"
        ))
    }

    const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

    fn statements(list: Vec<VerifiedAttestation>, rejected: &[&str]) -> Collected {
        Ok(Evidence {
            source: Source::AttestationTag,
            candidates: list.len() + rejected.len(),
            attestations: list,
            rejected: rejected.iter().map(|r| r.to_string()).collect(),
            ..Evidence::default()
        })
    }

    #[test]
    fn a_required_attestation_must_be_present_and_verified() {
        let p = attestation_policy("");
        let o = judge(
            &p,
            DIGEST,
            &[statements(
                vec![attested(
                    "https://slsa.dev/provenance/v1",
                    json!({}),
                    DIGEST,
                )],
                &["attestation subject is sha256:ab, not the admitted digest sha256:11"],
            )],
            LIMIT,
        );
        assert!(!o.passed);
        assert_eq!(
            o.authorities[0].reason(),
            format!("attestation scan: no matching attestations for predicate type {VULN} (1 attestation did not verify: attestation subject is sha256:ab, not the admitted digest sha256:11)")
        );
        // Of the right type but about another digest: not there either.
        let o = judge(
            &p,
            DIGEST,
            &[statements(vec![attested(VULN, json!({}), OTHER)], &[])],
            LIMIT,
        );
        assert_eq!(
            o.authorities[0].reason(),
            format!("attestation scan: no matching attestations for predicate type {VULN}")
        );
        let o = judge(
            &p,
            DIGEST,
            &[statements(vec![attested(VULN, json!({}), DIGEST)], &[])],
            LIMIT,
        );
        assert!(o.passed);
        assert_eq!(o.authorities[0].reason(), "attestations scan verified");
        assert_eq!(
            o.authorities[0].result.as_ref().unwrap().matches,
            json!({"signatures": [], "attestations": {"scan": [{"id": "key", "subject": "", "issuer": ""}]}})
        );
    }

    #[test]
    fn every_matching_attestation_must_pass_its_policy() {
        let p = attestation_policy(
            "        policy:\n          type: cel\n          data: \"predicate.critical == 0\"\n",
        );
        assert!(runs_programs(&p));
        let clean = attested(VULN, json!({"critical": 0}), DIGEST);
        let dirty = attested(VULN, json!({"critical": 3}), DIGEST);
        let o = judge(&p, DIGEST, &[statements(vec![clean.clone()], &[])], LIMIT);
        assert!(o.passed, "{:?}", o.reasons());
        let o = judge(&p, DIGEST, &[statements(vec![clean, dirty], &[])], LIMIT);
        assert!(!o.passed);
        assert_eq!(
            o.authorities[0].reason(),
            "attestation scan: policy failed: CEL expression is false"
        );
    }

    #[test]
    fn rego_attestation_policies_see_the_statement() {
        let p = attestation_policy(
            "        policy:\n          type: rego\n          data: |\n            package sigstore\n            default isCompliant = false\n            isCompliant { input.predicate.critical == 0 }\n            errorMsg = \"critical vulnerabilities\" { not isCompliant }\n",
        );
        let o = judge(
            &p,
            DIGEST,
            &[statements(
                vec![attested(VULN, json!({"critical": 1}), DIGEST)],
                &[],
            )],
            LIMIT,
        );
        assert!(!o.passed);
        assert!(
            o.authorities[0]
                .reason()
                .starts_with("attestation scan: policy failed:")
                && o.authorities[0]
                    .reason()
                    .contains("critical vulnerabilities"),
            "{}",
            o.authorities[0].reason()
        );
    }

    #[test]
    fn spec_policy_decides_over_the_authorities_that_vouched() {
        let mut p = two_keys();
        p.program = Some(Program::compile(Language::Cel, "authorityMatches.size() >= 2").unwrap());
        assert!(runs_programs(&p));
        let both = [
            signed(Source::SignatureTag, None, DIGEST),
            signed(Source::SignatureTag, None, DIGEST),
        ];
        let o = judge(&p, DIGEST, &both, LIMIT);
        assert!(o.passed, "{:?}", o.reasons());
        // One vouching is enough without spec.policy, but not for this one:
        // a failed authority does not appear in authorityMatches.
        let one = [
            signed(Source::SignatureTag, None, DIGEST),
            verdict("unsigned"),
        ];
        let o = judge(&p, DIGEST, &one, LIMIT);
        assert!(!o.passed);
        assert_eq!(
            o.reason(),
            Some("spec.policy failed: CEL expression is false")
        );
        assert_eq!(o.mode, PolicyMode::Enforce);
        // The program can accept fewer than all authorities.
        p.program = Some(Program::compile(Language::Cel, "'a' in authorityMatches").unwrap());
        assert!(judge(&p, DIGEST, &one, LIMIT).passed);
    }

    #[test]
    fn spec_policy_input_is_policy_controllers_shape() {
        let mut p = policy(
            "images: [{glob: '**'}]\nauthorities:\n  - name: sig\n    key:\n      data: {key}  - name: gate\n    static: {action: pass}\n",
        );
        p.program = Some(
            Program::compile(
                Language::Cel,
                "authorityMatches.sig.signatures[0].id == 'key' && authorityMatches.gate.static == true",
            )
            .unwrap(),
        );
        let o = judge(
            &p,
            DIGEST,
            &[
                signed(Source::SignatureTag, None, DIGEST),
                Ok(Evidence::default()),
            ],
            LIMIT,
        );
        assert!(o.passed, "{:?}", o.reasons());
    }
}
