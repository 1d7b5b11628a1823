//! BuildKit's attestations inside a signed image index, against the real
//! registry: indexes pushed exactly as `docker buildx build --provenance
//! --sbom --platform linux/amd64,linux/arm64 --push` writes them (test kit
//! `buildkit`), the index signed with cosign's `.sig` layout or as a
//! Sigstore bundle referrer. A required attestation holds when every
//! platform manifest has its Statement; tampering with any link (a Statement
//! about another digest, an attestation manifest for a digest outside the
//! index, a missing platform, an unsigned index, a platform manifest
//! admitted on its own) is denied with the reason.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::json;
use sigil_testkit::buildkit::{
    provenance_v02, provenance_v1, push_buildkit_index, spdx, InIndexStatement, PlatformSpec,
    SLSA_V02, SLSA_V1, SPDX,
};
use sigil_testkit::sigstore::{push_referrer, BundleSigner, OfflineSigstore, ProofMode};
use sigil_testkit::{in_toto_statement, AttestationToAttach, TestKey, TestKeyKind};

const BUILDER: &str = "https://github.com/acme/app/actions/runs/1";

/// A key authority requiring BuildKit's provenance (built by `BUILDER`)
/// and an SPDX SBOM; `extra` at the authority's indentation.
fn provenance_policy(glob: &str, key: &TestKey, provenance: &str, extra: &str) -> String {
    key_policy("buildkit", glob, &[key], "").replace(
        "    - key:\n",
        &format!("    - name: ci\n{extra}      attestations:\n        - name: provenance\n          predicateType: {provenance}\n          policy:\n            type: cel\n            data: \"predicate.builder.id == '{BUILDER}' || predicate.runDetails.builder.id == '{BUILDER}'\"\n        - name: sbom\n          predicateType: spdx\n      key:\n"),
    )
}

struct Case {
    env: Env,
    key: TestKey,
    glob: String,
}

impl Case {
    fn new() -> Case {
        let env = Env::start();
        let glob = format!("{}/acme/**", env.addr());
        Case {
            env,
            key: TestKey::generate(TestKeyKind::P256).unwrap(),
            glob,
        }
    }

    async fn index(
        &self,
        repo: &str,
        platforms: &[PlatformSpec],
    ) -> sigil_testkit::buildkit::BuildkitIndex {
        push_buildkit_index(&self.env.client, &self.env.reference(repo, "v1"), platforms)
            .await
            .unwrap()
    }

    fn image(&self, repo: &str, digest: &str) -> String {
        format!("{}/{repo}@{digest}", self.env.addr())
    }

    async fn verdict(&self, policy: &str, image: &str) -> (bool, String) {
        let (ev, _) = pipeline(policy, &Opts::for_registry(self.env.addr()));
        let resp = review_pod(&ev, image).await;
        (allowed(&resp), message(&resp))
    }

    async fn admitted(&self, policy: &str, image: &str) {
        let (ok, msg) = self.verdict(policy, image).await;
        assert!(ok, "{image}: {msg}");
    }

    async fn denied(&self, policy: &str, image: &str, says: &str) {
        let (ok, msg) = self.verdict(policy, image).await;
        assert!(!ok, "{image} was admitted");
        assert!(msg.contains(says), "wanted {says:?} in: {msg}");
    }
}

fn two_platforms() -> Vec<PlatformSpec> {
    vec![
        PlatformSpec::with_provenance_and_sbom("amd64", BUILDER),
        PlatformSpec::with_provenance_and_sbom("arm64", BUILDER),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_index_vouches_for_the_attestations_it_holds() {
    let c = Case::new();
    let policy = provenance_policy(&c.glob, &c.key, "slsaprovenance", "");

    // Two platforms, provenance v0.2 and SPDX each, the index signed (.sig).
    let ix = c.index("acme/app", &two_platforms()).await;
    c.env.sign("acme/app", &ix.digest, &c.key).await;
    c.admitted(&policy, &c.image("acme/app", &ix.digest)).await;

    // Provenance v1.
    let v1 = vec![
        PlatformSpec {
            arch: "amd64".into(),
            statements: vec![
                InIndexStatement::new(SLSA_V1, provenance_v1(BUILDER)),
                InIndexStatement::new(SPDX, spdx("amd64")),
            ],
            refers_to: None,
        },
        PlatformSpec {
            arch: "arm64".into(),
            statements: vec![
                InIndexStatement::new(SLSA_V1, provenance_v1(BUILDER)),
                InIndexStatement::new(SPDX, spdx("arm64")),
            ],
            refers_to: None,
        },
    ];
    let ix1 = c.index("acme/v1", &v1).await;
    c.env.sign("acme/v1", &ix1.digest, &c.key).await;
    let policy_v1 = provenance_policy(&c.glob, &c.key, "slsaprovenance1", "");
    c.admitted(&policy_v1, &c.image("acme/v1", &ix1.digest))
        .await;
    // v0.2 required of a v1-only build: none of that type.
    c.denied(
        &policy,
        &c.image("acme/v1", &ix1.digest),
        &format!("attestation provenance: no matching attestations for predicate type {SLSA_V02}: the signed image index holds none for its platform manifest"),
    )
    .await;

    // Another builder: the policy runs on every platform's provenance.
    let other = vec![
        PlatformSpec::with_provenance_and_sbom("amd64", BUILDER),
        PlatformSpec::with_provenance_and_sbom("arm64", "https://laptop.example/buildx"),
    ];
    let ixo = c.index("acme/other-builder", &other).await;
    c.env.sign("acme/other-builder", &ixo.digest, &c.key).await;
    c.denied(
        &policy,
        &c.image("acme/other-builder", &ixo.digest),
        &format!(
            "attestation provenance: policy failed for platform manifest {}",
            ixo.platforms[1].1
        ),
    )
    .await;

    // Unsigned: nothing inside counts.
    let unsigned = c.index("acme/unsigned", &two_platforms()).await;
    c.denied(
        &policy,
        &c.image("acme/unsigned", &unsigned.digest),
        "the image index holds BuildKit attestations (2 attestation manifests), but no signature of ci over the index verified: no signatures found at",
    )
    .await;
    // Signed by another key: the same.
    let other_key = TestKey::generate(TestKeyKind::P256).unwrap();
    let by_other = c.index("acme/other-key", &two_platforms()).await;
    c.env
        .sign("acme/other-key", &by_other.digest, &other_key)
        .await;
    c.denied(
        &policy,
        &c.image("acme/other-key", &by_other.digest),
        "no signature of ci over the index verified: signature does not verify with key ci",
    )
    .await;

    // A platform manifest admitted on its own: the index's signature does
    // not cover it, and it has none of its own.
    c.denied(
        &policy,
        &c.image("acme/app", &ix.platforms[0].1),
        "no attestations found at",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_from_the_signature_to_the_statement_is_checked() {
    let c = Case::new();
    let policy = provenance_policy(&c.glob, &c.key, "slsaprovenance", "");

    // A Statement whose subject is another digest.
    let mut bent = two_platforms();
    bent[1].statements[0].subject = Some(format!("sha256:{}", "e".repeat(64)));
    let ix = c.index("acme/other-subject", &bent).await;
    c.env.sign("acme/other-subject", &ix.digest, &c.key).await;
    c.denied(
        &policy,
        &c.image("acme/other-subject", &ix.digest),
        &format!("the signed image index holds none for its platform manifest {} (1 did not count: Statement", ix.platforms[1].1),
    )
    .await;
    let (_, msg) = c
        .verdict(&policy, &c.image("acme/other-subject", &ix.digest))
        .await;
    assert!(
        msg.contains(&format!(
            "its subject is sha256:{}, not the platform manifest {}",
            "e".repeat(64),
            ix.platforms[1].1
        )),
        "{msg}"
    );

    // An attestation manifest for a digest that is not in the index.
    let mut outside = two_platforms();
    outside[0].refers_to = Some(format!("sha256:{}", "f".repeat(64)));
    let ix = c.index("acme/outside", &outside).await;
    c.env.sign("acme/outside", &ix.digest, &c.key).await;
    c.denied(
        &policy,
        &c.image("acme/outside", &ix.digest),
        &format!(
            "is for sha256:{}, which is not a platform manifest of this index",
            "f".repeat(64)
        ),
    )
    .await;

    // A platform without attestations.
    let mut missing = two_platforms();
    missing[1].statements.clear();
    let ix = c.index("acme/missing", &missing).await;
    c.env.sign("acme/missing", &ix.digest, &c.key).await;
    c.denied(
        &policy,
        &c.image("acme/missing", &ix.digest),
        &format!(
            "the signed image index holds none for its platform manifest {}",
            ix.platforms[1].1
        ),
    )
    .await;

    // A layer annotated as provenance holding an SBOM.
    let mut mislabelled = two_platforms();
    mislabelled[0].statements[0] = InIndexStatement {
        annotated_type: Some(SLSA_V02.into()),
        ..InIndexStatement::new(SPDX, spdx("amd64"))
    };
    let ix = c.index("acme/mislabelled", &mislabelled).await;
    c.env.sign("acme/mislabelled", &ix.digest, &c.key).await;
    c.denied(
        &policy,
        &c.image("acme/mislabelled", &ix.digest),
        &format!("its predicate type is {SPDX}, the layer says {SLSA_V02}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_layout_and_attestations_of_both_kinds_mix_in_one_authority() {
    let c = Case::new();
    let sigstore = OfflineSigstore::new().unwrap();

    // The index signed by a Sigstore bundle behind a referrer (cosign v3).
    let ix = c.index("acme/bundled", &two_platforms()).await;
    let repo = format!("{}/acme/bundled", c.env.addr());
    let bundle = sigstore
        .dsse_bundle(
            BundleSigner::Key(&c.key),
            &in_toto_statement(
                &repo,
                &ix.digest,
                "https://sigstore.dev/cosign/sign/v1",
                json!({}),
            ),
            ProofMode::Valid,
        )
        .unwrap();
    push_referrer(
        &c.env.client,
        c.env.addr(),
        "acme/bundled",
        &ix.digest,
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        &bundle,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let mut opts = Opts::for_registry(c.env.addr());
    opts.trust = Some(std::sync::Arc::new(sigil::trust::TrustStore::new(
        sigil::trust::TrustMaterial::from_json("default", &sigstore.trusted_root_json(None))
            .unwrap(),
    )));
    let bundle_policy = provenance_policy(
        &c.glob,
        &c.key,
        "slsaprovenance",
        "      signatureFormat: bundle\n",
    );
    let (ev, _) = pipeline(&bundle_policy, &opts);
    let resp = review_pod(&ev, &c.image("acme/bundled", &ix.digest)).await;
    assert!(allowed(&resp), "{}", message(&resp));

    // Provenance from the in-index Statements, the SBOM from `.att`: an
    // index holding only provenance, signed, with an SBOM attested about
    // the index itself (`cosign attest --type spdx`).
    let only_provenance: Vec<PlatformSpec> = ["amd64", "arm64"]
        .iter()
        .map(|arch| PlatformSpec {
            arch: arch.to_string(),
            statements: vec![InIndexStatement::new(SLSA_V02, provenance_v02(BUILDER))],
            refers_to: None,
        })
        .collect();
    let ix = c.index("acme/mixed", &only_provenance).await;
    c.env.sign("acme/mixed", &ix.digest, &c.key).await;
    let policy = provenance_policy(&c.glob, &c.key, "slsaprovenance", "");
    c.denied(
        &policy,
        &c.image("acme/mixed", &ix.digest),
        "attestation sbom: no matching attestations for predicate type https://spdx.dev/Document",
    )
    .await;
    let repo = format!("{}/acme/mixed", c.env.addr());
    let sbom = in_toto_statement(&repo, &ix.digest, SPDX, spdx("index"));
    sigil_testkit::attach_attestations(
        &c.env.client,
        c.env.addr(),
        "acme/mixed",
        &ix.digest,
        &[AttestationToAttach::new(&c.key, &sbom)],
    )
    .await
    .unwrap();
    c.admitted(&policy, &c.image("acme/mixed", &ix.digest))
        .await;
}

/// The cold cost of an index with two platforms and in-index provenance:
/// registry requests (from the registry's own log) and time, beside a
/// single-platform image with a `.att` attestation, each on a fresh
/// pipeline. Printed for docs/supply-chains.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cold_cost_of_in_index_attestations() {
    let c = Case::new();
    let policy = provenance_policy(&c.glob, &c.key, "slsaprovenance", "");
    let ix = c.index("acme/cost", &two_platforms()).await;
    c.env.sign("acme/cost", &ix.digest, &c.key).await;
    // The yardstick: one platform manifest with its provenance and SBOM
    // attested about it in `.att` (what `cosign attest` writes).
    let digest = c.env.push("acme/att", "v1").await;
    let repo = format!("{}/acme/att", c.env.addr());
    let atts: Vec<AttestationToAttach> = [
        in_toto_statement(&repo, &digest, SLSA_V02, provenance_v02(BUILDER)),
        in_toto_statement(&repo, &digest, SPDX, spdx("amd64")),
    ]
    .iter()
    .map(|s| AttestationToAttach::new(&c.key, s))
    .collect();
    sigil_testkit::attach_attestations(&c.env.client, c.env.addr(), "acme/att", &digest, &atts)
        .await
        .unwrap();
    // The keyless yardstick: one image with a keyless signature (Fulcio
    // chain, SCT, Rekor SET), verified cold.
    let sigstore = OfflineSigstore::new().unwrap();
    let keyless_digest = c.env.push("acme/keyless", "v1").await;
    let cert = sigstore
        .issue(&sigil_testkit::sigstore::CertRequest::new(
            sigil_testkit::sigstore::San::Email("release@acme.test".into()),
            "https://accounts.acme.test",
        ))
        .unwrap();
    let sig = sigstore
        .sign_keyless(
            &cert,
            &format!("{}/acme/keyless", c.env.addr()),
            &keyless_digest,
            std::time::SystemTime::now() - std::time::Duration::from_secs(5),
            sigil_testkit::sigstore::SetMode::Valid,
        )
        .unwrap();
    sigil_testkit::attach_signatures(
        &c.env.client,
        c.env.addr(),
        "acme/keyless",
        &keyless_digest,
        &[sig],
    )
    .await
    .unwrap();
    let keyless_policy = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: keyless\nspec:\n  images:\n    - glob: \"{}\"\n  authorities:\n    - keyless:\n        identities:\n          - issuer: https://accounts.acme.test\n            subject: release@acme.test\n",
        c.glob
    );
    let mut keyless_opts = Opts::for_registry(c.env.addr());
    keyless_opts.trust = Some(std::sync::Arc::new(sigil::trust::TrustStore::new(
        sigil::trust::TrustMaterial::from_json("default", &sigstore.trusted_root_json(None))
            .unwrap(),
    )));
    let plain = Opts::for_registry(c.env.addr());
    let mut figures = Vec::new();
    for (name, policy, opts, repo, digest) in [
        (
            "keyless signature (yardstick)",
            &keyless_policy,
            &keyless_opts,
            "acme/keyless",
            keyless_digest.clone(),
        ),
        (
            "one platform, .att",
            &policy,
            &plain,
            "acme/att",
            digest.clone(),
        ),
        (
            "index of two, in-index",
            &policy,
            &plain,
            "acme/cost",
            ix.digest.clone(),
        ),
    ] {
        let before = c.env.registry.count_requests(&format!("/v2/{repo}/"));
        let (ev, _) = pipeline(policy, opts);
        let started = std::time::Instant::now();
        let resp = review_pod(&ev, &c.image(repo, &digest)).await;
        let took = started.elapsed();
        let (ok, msg) = (allowed(&resp), message(&resp));
        assert!(ok, "{name}: {msg}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let requests = c.env.registry.count_requests(&format!("/v2/{repo}/")) - before;
        figures.push((name, requests, took));
    }
    for (name, requests, took) in &figures {
        println!(
            "{name}: {requests} registry requests, {took:?} cold ({:.2}× the keyless yardstick)",
            took.as_secs_f64() / figures[0].2.as_secs_f64()
        );
    }
    // The yardstick: the .att manifest and its two layers. The index: the
    // .att tag (none), the index manifest, the .sig manifest and layer, two
    // attestation manifests and the four Statements.
    assert_eq!(figures[1].1, 3, "{figures:?}");
    assert_eq!(figures[2].1, 10, "{figures:?}");
}
