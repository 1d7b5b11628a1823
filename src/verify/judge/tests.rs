//! Every rule of the README's decision tables, without a registry or a
//! runtime: evidence is built by hand, as a collector would return it.

use super::*;
use crate::policy::compile::compile;
use crate::policy::types::ClusterImagePolicySpec;
use crate::policy::PolicyMode;
use crate::verify::evidence::VerifiedSignature;
use crate::verify::keyless::SignerIdentity;

const KEY: &str = include_str!("../../../tests/fixtures/containers-image/cosign.pub");
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
            notation: None,
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
        "images: [{glob: '**'}]\nauthorities:\n  - key: {kms: 'gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k'}\n  - static: {action: pass}\n",
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

fn notation_policy(level: &str, extra: &str) -> CompiledPolicy {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "notation test CA");
    let ca = params.self_signed(&key).unwrap().pem();
    let ca = ca
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect::<String>();
    policy(&format!(
        "images: [{{glob: '**'}}]\nauthorities:\n  - name: notary\n    notation:\n      trustStore:\n        certificates: |\n{ca}      trustedIdentities: ['*']\n      verificationLevel: {level}\n{extra}"
    ))
}

/// Evidence of one verified Notation signature over `digest`.
fn notation_signed(digest: &str, logged: &[&str]) -> Collected {
    use crate::model::notation::{Check, Level};
    use crate::verify::notation::{envelope::EnvelopeFormat, CheckResult, NotationSigner};
    Ok(Evidence {
        source: Source::NotationSignatures,
        signatures: vec![VerifiedSignature {
            digest: digest.into(),
            signer: None,
            notation: Some(NotationSigner {
                envelope: EnvelopeFormat::Cose,
                subject: "C=US, ST=WA, O=Notary, CN=release".into(),
                issuer: "C=US, ST=WA, O=Notary, CN=CA".into(),
                signing_time: Some("2026-11-30T10:00:00Z".into()),
                timestamp: None,
                level: Level::Permissive,
                checks: [(Check::Integrity, CheckResult::Passed)]
                    .into_iter()
                    .collect(),
                logged: logged.iter().map(|l| l.to_string()).collect(),
                signing_agent: None,
            }),
        }],
        candidates: 1,
        ..Evidence::default()
    })
}

#[test]
fn a_notation_authority_vouches_with_a_verified_signature_and_a_cosign_one_beside_it_can_pass() {
    let alone = notation_policy("permissive", "");
    let o = judge(
        &alone,
        DIGEST,
        &[notation_signed(
            DIGEST,
            &["expiry: the signature expired at …"],
        )],
        LIMIT,
    );
    assert!(o.passed);
    assert_eq!(
        o.authorities[0].reason(),
        "Notation COSE signature by \"C=US, ST=WA, O=Notary, CN=release\" verified (permissive)"
    );
    let vouch = o.authorities[0].result.as_ref().unwrap();
    assert_eq!(vouch.warnings(), ["expiry: the signature expired at …"]);
    assert_eq!(
        vouch.matches["signatures"][0]["subject"],
        "C=US, ST=WA, O=Notary, CN=release"
    );
    assert_eq!(
        vouch.matches["signatures"][0]["signingTime"],
        "2026-11-30T10:00:00Z"
    );
    // Another digest's signature, or none: no.
    let o = judge(
        &alone,
        DIGEST,
        &[notation_signed("sha256:other", &[])],
        LIMIT,
    );
    assert!(!o.passed);
    let o = judge(
        &alone,
        DIGEST,
        &[Err(Failure::Verdict(
            "no Notation signature found for r/app@sha256:…".into(),
        ))],
        LIMIT,
    );
    assert!(!o.passed);
    assert_eq!(
        o.reasons(),
        vec!["notary: no Notation signature found for r/app@sha256:…"]
    );
    // notation OR cosign: the cosign signature alone is enough.
    let either = notation_policy("strict", "  - name: cosign\n    key:\n      data: {key}");
    let o = judge(
        &either,
        DIGEST,
        &[
            Err(Failure::Verdict("no Notation signature found".into())),
            signed(Source::SignatureTag, None, DIGEST),
        ],
        LIMIT,
    );
    assert!(o.passed, "the cosign signature alone is enough");
}

#[test]
fn a_skip_level_notation_authority_vouches_without_evidence() {
    let p = notation_policy("skip", "");
    let o = judge(&p, DIGEST, &[Ok(Evidence::default())], LIMIT);
    assert!(o.passed);
    assert_eq!(
        o.authorities[0].reason(),
        "Notation verification skipped (verificationLevel skip)"
    );
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
fn a_program_over_its_time_limit_denies_but_is_not_remembered() {
    let p = attestation_policy(
        "        policy:\n          type: rego\n          data: |\n            package sigstore\n            isCompliant { count([x | a := numbers.range(1, 3000)[_]; b := numbers.range(1, 3000)[_]; x := a * b]) > 0 }\n",
    );
    let o = judge(
        &p,
        DIGEST,
        &[statements(
            vec![attested(VULN, json!({"critical": 0}), DIGEST)],
            &[],
        )],
        Duration::from_millis(30),
    );
    assert!(!o.passed);
    assert_eq!(
        o.authorities[0].reason(),
        "attestation scan: policy failed: policy did not finish within 30ms"
    );
    // Under load it may finish next time: denied now, judged again then.
    assert!(o.is_transient());
    // A program that says no is a fact about the evidence, remembered.
    let cel = attestation_policy(
        "        policy:\n          type: cel\n          data: \"predicate.critical == 0\"\n",
    );
    let o = judge(
        &cel,
        DIGEST,
        &[statements(
            vec![attested(VULN, json!({"critical": 2}), DIGEST)],
            &[],
        )],
        LIMIT,
    );
    assert!(!o.passed && !o.is_transient());
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

mod in_index {
    use super::*;
    use crate::verify::evidence::IndexEvidence;

    const AMD: &str = "sha256:aaaa111111111111111111111111111111111111111111111111111111111111";
    const ARM: &str = "sha256:bbbb111111111111111111111111111111111111111111111111111111111111";
    const SLSA: &str = "https://slsa.dev/provenance/v0.2";
    const SPDX: &str = "https://spdx.dev/Document";

    fn provenance_policy(extra: &str) -> CompiledPolicy {
        policy(&format!(
            "images: [{{glob: '**'}}]\nauthorities:\n  - name: ci\n    key:\n      data: {{key}}    attestations:\n      - name: provenance\n        predicateType: slsaprovenance\n{extra}      - name: sbom\n        predicateType: spdx\n"
        ))
    }

    fn builder(id: &str) -> Value {
        json!({"builder": {"id": id}})
    }

    /// What the collector returns once the index's signature verified.
    fn index(statements: Vec<VerifiedAttestation>, direct: Vec<VerifiedAttestation>) -> Collected {
        Ok(Evidence {
            source: Source::AttestationTag,
            attestations: direct,
            index: Some(IndexEvidence {
                platforms: vec![AMD.into(), ARM.into()],
                statements,
                rejected: vec![],
            }),
            ..Evidence::default()
        })
    }

    #[test]
    fn every_platform_needs_its_statement() {
        let p = provenance_policy("");
        let both = vec![
            attested(SLSA, builder("ci"), AMD),
            attested(SPDX, json!({}), AMD),
            attested(SLSA, builder("ci"), ARM),
            attested(SPDX, json!({}), ARM),
        ];
        let o = judge(&p, DIGEST, &[index(both.clone(), vec![])], LIMIT);
        assert!(o.passed, "{:?}", o.reasons());
        assert_eq!(
            o.authorities[0].reason(),
            "attestations provenance, sbom verified (provenance, sbom from the signed image index, for each of its 2 platform manifests)"
        );
        // arm64 has no SBOM: the requirement fails, naming the platform.
        let missing: Vec<_> = both.iter().take(3).cloned().collect();
        let o = judge(&p, DIGEST, &[index(missing, vec![])], LIMIT);
        assert!(!o.passed);
        assert_eq!(
            o.reasons(),
            vec![format!("ci: attestation sbom: no matching attestations for predicate type {SPDX}: the signed image index holds none for its platform manifest {ARM}")]
        );
    }

    #[test]
    fn the_policy_runs_on_every_platforms_statement_and_direct_ones_come_first() {
        let p = policy(
            "images: [{glob: '**'}]\nauthorities:\n  - name: ci\n    key:\n      data: {key}    attestations:\n      - name: provenance\n        predicateType: slsaprovenance\n        policy:\n          type: cel\n          data: predicate.builder.id == 'ci'\n",
        );
        let good = vec![
            attested(SLSA, builder("ci"), AMD),
            attested(SLSA, builder("ci"), ARM),
        ];
        assert!(judge(&p, DIGEST, &[index(good, vec![])], LIMIT).passed);
        let one_bad = vec![
            attested(SLSA, builder("ci"), AMD),
            attested(SLSA, builder("laptop"), ARM),
        ];
        let o = judge(&p, DIGEST, &[index(one_bad.clone(), vec![])], LIMIT);
        assert!(!o.passed);
        assert!(
            o.reasons()[0].starts_with(&format!(
                "ci: attestation provenance: policy failed for platform manifest {ARM}"
            )),
            "{:?}",
            o.reasons()
        );
        // A Statement about the index itself (`.att`) decides when there is one.
        let direct = vec![attested(SLSA, builder("ci"), DIGEST)];
        let o = judge(&p, DIGEST, &[index(one_bad, direct)], LIMIT);
        assert!(o.passed, "{:?}", o.reasons());
        assert_eq!(
            o.authorities[0].reason(),
            "attestations provenance verified"
        );
    }

    #[test]
    fn without_the_index_signature_nothing_inside_counts() {
        // The collector sets `index` only once the index's signature
        // verified; without it, its reason is all there is.
        let p = provenance_policy("");
        let o = judge(
            &p,
            DIGEST,
            &[Ok(Evidence {
                source: Source::AttestationTag,
                rejected: vec!["the image index holds BuildKit attestations (2 attestation manifests), but no signature of ci over the index verified: no signatures found at r/app:sha256-1.sig".into()],
                ..Evidence::default()
            })],
            LIMIT,
        );
        assert!(!o.passed);
        assert!(
            o.reasons()[0].contains("no signature of ci over the index verified"),
            "{:?}",
            o.reasons()
        );
    }
}
