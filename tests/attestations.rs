//! Attestations in cosign's legacy `.att` layout through the webhook, against
//! a real registry: SLSA provenance v1, SPDX, CycloneDX and a vulnerability
//! report, signed with test keys and with the offline keyless CA; policies in
//! Rego (policy-controller's v0 style) and CEL. Each case asserts the
//! decision and the message.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use sigil_testkit::sigstore::{CertRequest, OfflineSigstore, San, SetMode};
use sigil_testkit::{
    attach_attestations, in_toto_statement, AttestationToAttach, TestKey, TestKeyKind,
};

const SLSA1: &str = "https://slsa.dev/provenance/v1";
const SPDX: &str = "https://spdx.dev/Document";
const CYCLONEDX: &str = "https://cyclonedx.org/bom";
const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

fn provenance(builder: &str) -> serde_json::Value {
    json!({"buildDefinition": {"buildType": "https://ci.acme.test/build/v1"}, "runDetails": {"builder": {"id": builder}}})
}

fn vuln_report(critical: u64) -> serde_json::Value {
    json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": {"summary": {"critical": critical, "high": 0}}}})
}

/// A policy with one key authority whose `attestations` YAML is given.
fn attestation_policy(glob: &str, key: &TestKey, attestations: &str) -> String {
    key_policy("attested", glob, &[key], "").replace(
        "    - key:\n",
        &format!("    - name: release\n      attestations:\n{attestations}      key:\n"),
    )
}

const REGO_BUILDER: &str = r#"          policy:
            type: rego
            data: |
              package sigstore
              default isCompliant = false
              isCompliant {
                input.predicateType == "https://slsa.dev/provenance/v1"
                input.predicate.runDetails.builder.id == "https://ci.acme.test/builder"
              }
              errorMsg = sprintf("builder %v is not allowed", [input.predicate.runDetails.builder.id]) { not isCompliant }
"#;

struct Case {
    env: Env,
    glob: String,
}

impl Case {
    fn new() -> Case {
        let env = Env::start();
        let glob = format!("{}/acme/**", env.addr());
        Case { env, glob }
    }

    /// Pushes `repo:v1` with the attestations `make(repo, digest)` returns.
    async fn image(
        &self,
        repo: &str,
        make: impl FnOnce(&str, &str) -> Vec<AttestationToAttach>,
    ) -> String {
        let digest = self.env.push(repo, "v1").await;
        let atts = make(&format!("{}/{repo}", self.env.addr()), &digest);
        attach_attestations(&self.env.client, self.env.addr(), repo, &digest, &atts)
            .await
            .unwrap();
        format!("{}/{repo}:v1", self.env.addr())
    }

    async fn verdict(&self, policy: &str, image: &str) -> (bool, String) {
        let (ev, _) = pipeline(policy, &Opts::for_registry(self.env.addr()));
        let resp = review_pod(&ev, image).await;
        (allowed(&resp), message(&resp))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_predicates_must_be_present_signed_and_about_this_digest() {
    let c = Case::new();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let other = TestKey::generate(TestKeyKind::P256).unwrap();
    let needs_provenance = attestation_policy(
        &c.glob,
        &k,
        "        - name: provenance\n          predicateType: slsaprovenance1\n",
    );

    let good = c
        .image("acme/good", |r, d| {
            vec![
                AttestationToAttach::new(
                    &k,
                    &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
                ),
                AttestationToAttach::new(
                    &k,
                    &in_toto_statement(r, d, SPDX, json!({"spdxVersion": "SPDX-2.3"})),
                ),
            ]
        })
        .await;
    let (ok, msg) = c.verdict(&needs_provenance, &good).await;
    assert!(ok, "{msg}");

    // Only an SBOM: the provenance is missing.
    let sbom_only = c
        .image("acme/sbom-only", |r, d| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(r, d, CYCLONEDX, json!({"bomFormat": "CycloneDX"})),
            )]
        })
        .await;
    let (ok, msg) = c.verdict(&needs_provenance, &sbom_only).await;
    assert!(!ok);
    assert!(
        msg.contains(&format!(
            "release: attestation provenance: no matching attestations for predicate type {SLSA1}"
        )),
        "{msg}"
    );

    // Signed with another key: present but not counted, and the message says why.
    let wrong_key = c
        .image("acme/wrong-key", |r, d| {
            vec![AttestationToAttach::new(
                &other,
                &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
            )]
        })
        .await;
    let (ok, msg) = c.verdict(&needs_provenance, &wrong_key).await;
    assert!(!ok);
    assert!(msg.contains(&format!("no matching attestations for predicate type {SLSA1} (1 attestation did not verify: attestation signature does not verify with the authority's key)")), "{msg}");

    // Signed by the right key, but about another image.
    let elsewhere = format!("sha256:{}", "ab".repeat(32));
    let other_subject = c
        .image("acme/other-subject", |r, _| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(
                    r,
                    &elsewhere,
                    SLSA1,
                    provenance("https://ci.acme.test/builder"),
                ),
            )]
        })
        .await;
    let (ok, msg) = c.verdict(&needs_provenance, &other_subject).await;
    assert!(!ok);
    assert!(
        msg.contains(&format!(
            "attestation subject is {elsewhere}, not the admitted digest"
        )),
        "{msg}"
    );

    // Nothing attached at all.
    c.env.push("acme/bare", "v1").await;
    let (ok, msg) = c
        .verdict(&needs_provenance, &format!("{}/acme/bare:v1", c.env.addr()))
        .await;
    assert!(!ok);
    assert!(msg.contains("release: no attestations found at"), "{msg}");

    // Two required: SPDX and CycloneDX (URIs and short names both work).
    let both = attestation_policy(&c.glob, &k, "        - name: spdx\n          predicateType: spdxjson\n        - name: cdx\n          predicateType: https://cyclonedx.org/bom\n");
    let boms = c
        .image("acme/boms", |r, d| {
            vec![
                AttestationToAttach::new(
                    &k,
                    &in_toto_statement(r, d, SPDX, json!({"spdxVersion": "SPDX-2.3"})),
                ),
                AttestationToAttach::new(
                    &k,
                    &in_toto_statement(r, d, CYCLONEDX, json!({"bomFormat": "CycloneDX"})),
                ),
            ]
        })
        .await;
    let (ok, msg) = c.verdict(&both, &boms).await;
    assert!(ok, "{msg}");
    let (ok, msg) = c.verdict(&both, &good).await;
    assert!(!ok);
    assert!(
        msg.contains(&format!(
            "attestation cdx: no matching attestations for predicate type {CYCLONEDX}"
        )),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rego_and_cel_policies_judge_the_verified_content() {
    let c = Case::new();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let rego = attestation_policy(
        &c.glob,
        &k,
        &format!(
            "        - name: provenance\n          predicateType: slsaprovenance1\n{REGO_BUILDER}"
        ),
    );
    let allowed_builder = c
        .image("acme/ok", |r, d| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
            )]
        })
        .await;
    let rogue_builder = c
        .image("acme/rogue", |r, d| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(r, d, SLSA1, provenance("https://evil.test/builder")),
            )]
        })
        .await;
    let (ok, msg) = c.verdict(&rego, &allowed_builder).await;
    assert!(ok, "{msg}");
    let (ok, msg) = c.verdict(&rego, &rogue_builder).await;
    assert!(!ok);
    assert!(msg.contains("release: attestation provenance: policy failed: builder https://evil.test/builder is not allowed"), "{msg}");

    let cel = attestation_policy(&c.glob, &k, "        - name: scan\n          predicateType: vuln\n          policy:\n            type: cel\n            data: \"predicate.scanner.result.summary.critical == 0 && statement.predicateType == 'https://cosign.sigstore.dev/attestation/vuln/v1'\"\n");
    let clean = c
        .image("acme/clean", |r, d| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(r, d, VULN, vuln_report(0)),
            )]
        })
        .await;
    let vulnerable = c
        .image("acme/vulnerable", |r, d| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(r, d, VULN, vuln_report(3)),
            )]
        })
        .await;
    let (ok, msg) = c.verdict(&cel, &clean).await;
    assert!(ok, "{msg}");
    let (ok, msg) = c.verdict(&cel, &vulnerable).await;
    assert!(!ok);
    assert!(
        msg.contains("release: attestation scan: policy failed: CEL expression is false"),
        "{msg}"
    );

    // CUE is refused, naming the field; the policy fails closed.
    let cue = attestation_policy(&c.glob, &k, "        - name: scan\n          predicateType: vuln\n          policy:\n            type: cue\n            data: \"predicate: {}\"\n");
    let (ok, msg) = c.verdict(&cue, &clean).await;
    assert!(!ok);
    assert!(msg.contains("policy is invalid: spec.authorities[0].attestations[0].policy.type: CUE is not supported; use rego or cel"), "{msg}");

    // A Rego program that does not compile makes the policy invalid.
    let broken = attestation_policy(&c.glob, &k, "        - name: scan\n          predicateType: vuln\n          policy:\n            type: rego\n            data: \"package sigstore\\nisCompliant {\"\n");
    let (ok, msg) = c.verdict(&broken, &clean).await;
    assert!(!ok);
    assert!(
        msg.contains("spec.authorities[0].attestations[0].policy.data: does not compile"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_attestations_need_the_whole_keyless_chain_of_evidence() {
    let c = Case::new();
    let sigstore = OfflineSigstore::new().unwrap();
    let mut opts = Opts::for_registry(c.env.addr());
    opts.trust = Some(std::sync::Arc::new(sigil::trust::TrustStore::new(
        sigil::trust::TrustMaterial::from_json("default", &sigstore.trusted_root_json(None))
            .unwrap(),
    )));
    let workflow = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";
    let issuer = "https://token.actions.githubusercontent.com";
    let cert = sigstore
        .issue(&CertRequest::new(San::Uri(workflow.into()), issuer))
        .unwrap();
    let ago = SystemTime::now() - Duration::from_secs(5);
    let policy = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\nspec:\n  images:\n    - glob: \"{}\"\n  authorities:\n    - name: ci\n      keyless:\n        identities:\n          - issuer: {issuer}\n            subjectRegExp: \"https://github\\\\.com/acme/.*\"\n      attestations:\n        - name: provenance\n          predicateType: slsaprovenance1\n{REGO_BUILDER}",
        c.glob
    );
    let verdict = |image: String| {
        let policy = policy.clone();
        let opts = opts.clone();
        async move {
            let (ev, _) = pipeline(&policy, &opts);
            let resp = review_pod(&ev, &image).await;
            (allowed(&resp), message(&resp))
        }
    };
    let signed = c
        .image("acme/keyless", |r, d| {
            vec![sigstore
                .attest_keyless(
                    &cert,
                    &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
                    ago,
                    SetMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = verdict(signed).await;
    assert!(ok, "{msg}");

    for (repo, mode, expected) in [
        (
            "acme/keyless-unlogged",
            SetMode::Missing,
            "signature has no Rekor entry",
        ),
        (
            "acme/keyless-forged",
            SetMode::Forged,
            "Rekor SET does not verify",
        ),
        (
            "acme/keyless-swapped",
            SetMode::OtherSignature,
            "Rekor entry is not this signature",
        ),
    ] {
        let image = c
            .image(repo, |r, d| {
                vec![sigstore
                    .attest_keyless(
                        &cert,
                        &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
                        ago,
                        mode,
                    )
                    .unwrap()]
            })
            .await;
        let (ok, msg) = verdict(image).await;
        assert!(!ok, "{mode:?}");
        assert!(
            msg.contains("1 attestation did not verify") && msg.contains(expected),
            "{mode:?}: {msg}"
        );
    }

    // Another identity.
    let fork = sigstore
        .issue(&CertRequest::new(
            San::Uri("https://github.com/fork/app/.github/workflows/x.yml@refs/heads/main".into()),
            issuer,
        ))
        .unwrap();
    let forked = c
        .image("acme/forked", |r, d| {
            vec![sigstore
                .attest_keyless(
                    &fork,
                    &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
                    ago,
                    SetMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = verdict(forked).await;
    assert!(!ok);
    assert!(msg.contains("certificate identity https://github.com/fork/app/.github/workflows/x.yml@refs/heads/main issued by https://token.actions.githubusercontent.com matches none of"), "{msg}");
}

/// `spec.policy` sees policy-controller's `authorityMatches` and decides:
/// here it demands two signatures and two attestations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_policy_demands_two_signatures_and_two_attestations() {
    let c = Case::new();
    let a = TestKey::generate(TestKeyKind::P256).unwrap();
    let b = TestKey::generate(TestKeyKind::P256).unwrap();
    let indent =
        |pem: &str| -> String { pem.lines().map(|l| format!("          {l}\n")).collect() };
    let policy = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: two-and-two\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n    - name: sig-a\n      key:\n        data: |\n{ka}    - name: sig-b\n      key:\n        data: |\n{kb}    - name: provenance\n      key:\n        data: |\n{ka}      attestations:\n        - name: slsa\n          predicateType: slsaprovenance1\n    - name: sbom\n      key:\n        data: |\n{ka}      attestations:\n        - name: spdx\n          predicateType: spdx\n  policy:\n    type: rego\n    data: |\n      package sigstore\n      sigs := count({{name | input.authorityMatches[name].signatures[_]}})\n      atts := count({{name | some att; input.authorityMatches[name].attestations[att][_]}})\n      default isCompliant = false\n      isCompliant {{\n        sigs >= 2\n        atts >= 2\n      }}\n      errorMsg = sprintf(\"need 2 signatures and 2 attestations, got %d and %d\", [sigs, atts]) {{ not isCompliant }}\n",
        glob = c.glob,
        ka = indent(&a.public_pem),
        kb = indent(&b.public_pem),
    );
    let attest = |r: &str, d: &str| {
        vec![
            AttestationToAttach::new(
                &a,
                &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
            ),
            AttestationToAttach::new(
                &a,
                &in_toto_statement(r, d, SPDX, json!({"spdxVersion": "SPDX-2.3"})),
            ),
        ]
    };
    let digest = c.env.push("acme/full", "v1").await;
    let repo = format!("{}/acme/full", c.env.addr());
    attach_attestations(
        &c.env.client,
        c.env.addr(),
        "acme/full",
        &digest,
        &attest(&repo, &digest),
    )
    .await
    .unwrap();
    let full = format!("{repo}:v1");
    sigil_testkit::attach_signatures(
        &c.env.client,
        c.env.addr(),
        "acme/full",
        &digest,
        &[
            sigil_testkit::SignatureToAttach::new(&a, &repo, &digest),
            sigil_testkit::SignatureToAttach::new(&b, &repo, &digest),
        ],
    )
    .await
    .unwrap();
    let (ok, msg) = c.verdict(&policy, &full).await;
    assert!(ok, "{msg}");

    // One signature short.
    let digest = c.env.push("acme/half", "v1").await;
    let repo = format!("{}/acme/half", c.env.addr());
    attach_attestations(
        &c.env.client,
        c.env.addr(),
        "acme/half",
        &digest,
        &attest(&repo, &digest),
    )
    .await
    .unwrap();
    c.env.sign("acme/half", &digest, &a).await;
    let half = format!("{repo}:v1");
    let (ok, msg) = c.verdict(&policy, &half).await;
    assert!(!ok);
    assert!(
        msg.contains("spec.policy failed: need 2 signatures and 2 attestations, got 1 and 2"),
        "{msg}"
    );

    // The same rule in CEL.
    let cel = policy.replace(
        &policy[policy.find("  policy:\n").unwrap()..],
        "  policy:\n    type: cel\n    data: \"authorityMatches.size() >= 4\"\n",
    );
    let (ok, msg) = c.verdict(&cel, &full).await;
    assert!(ok, "{msg}");
    let (ok, msg) = c.verdict(&cel, &half).await;
    assert!(!ok);
    assert!(
        msg.contains("spec.policy failed: CEL expression is false"),
        "{msg}"
    );
}

/// `policy.remote`: fetched once with its sha256 enforced (through
/// `sigil check`, which loads a policy directory as `serve` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_policies_are_fetched_and_their_checksum_enforced() {
    use sha2::Digest;
    let c = Case::new();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let rego = "package sigstore\ndefault isCompliant = false\nisCompliant {\n  input.predicate.runDetails.builder.id == \"https://ci.acme.test/builder\"\n}\nerrorMsg = \"builder not allowed\" { not isCompliant }\n";
    let sha = hex::encode(sha2::Sha256::digest(rego.as_bytes()));
    let served = std::sync::Arc::new(rego.to_string());
    let app = axum::Router::new().route(
        "/policy.rego",
        axum::routing::get(move || {
            let body = served.clone();
            async move { (*body).clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/policy.rego", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let good = c
        .image("acme/remote-good", |r, d| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
            )]
        })
        .await;
    let bad = c
        .image("acme/remote-bad", |r, d| {
            vec![AttestationToAttach::new(
                &k,
                &in_toto_statement(r, d, SLSA1, provenance("https://evil.test")),
            )]
        })
        .await;
    let policy_with = |sum: &str| {
        attestation_policy(
            &c.glob,
            &k,
            &format!("        - name: provenance\n          predicateType: slsaprovenance1\n          policy:\n            type: rego\n            remote:\n              url: {url}\n              sha256sum: \"{sum}\"\n"),
        )
    };
    let check = |policy: String, image: String| {
        let addr = c.env.addr().to_string();
        async move {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("p.yaml"), policy).unwrap();
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
                .args([
                    "check",
                    "--insecure-registry",
                    &addr,
                    "--image",
                    &image,
                    "--policy-dir",
                ])
                .arg(dir.path())
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        }
    };
    let (code, out) = check(policy_with(&sha), good.clone()).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = check(policy_with(&sha), bad).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("attestation provenance: policy failed: builder not allowed"),
        "{out}"
    );
    let wrong = "0".repeat(64);
    let (code, out) = check(policy_with(&wrong), good).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("policy is invalid: spec.authorities[0].attestations[0].policy.remote.sha256sum: the body of {url} has sha256 {sha}, not {wrong}")),
        "{out}"
    );
}
