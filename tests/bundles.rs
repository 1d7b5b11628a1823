//! `signatureFormat: bundle`: Sigstore bundles and cosign OCI 1.1 signature
//! artifacts attached as referrers, found through the `sha256-<hex>`
//! referrers tag index (Debian's docker-registry 2.8 has no referrers API,
//! so that fallback is what runs here). Every referrer is verified before it
//! counts; the policy-controller #1971 case (an attestation behind a referrer
//! with a forged inclusion proof) and #1958 (key-signed v0.3 bundles) are
//! covered. Also through `sigil check`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use serde_json::json;
use sigil::trust::{TrustMaterial, TrustStore};
use sigil_testkit::sigstore::{
    push_referrer, push_referrer_indexed_as, BundleSigner, CertRequest, OfflineSigstore, ProofMode,
    San,
};
use sigil_testkit::{in_toto_statement, SignatureToAttach, TestKey, TestKeyKind};

const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const SLSA1: &str = "https://slsa.dev/provenance/v1";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";

struct Case {
    env: Env,
    sigstore: OfflineSigstore,
    opts: Opts,
    glob: String,
}

impl Case {
    fn new() -> Case {
        let env = Env::start();
        let sigstore = OfflineSigstore::new().unwrap();
        let mut opts = Opts::for_registry(env.addr());
        opts.trust = Some(Arc::new(TrustStore::new(
            TrustMaterial::from_json("default", &sigstore.trusted_root_json(None)).unwrap(),
        )));
        let glob = format!("{}/acme/**", env.addr());
        Case {
            env,
            sigstore,
            opts,
            glob,
        }
    }

    /// Pushes `repo:v1` and attaches the bundles `make(repo, digest)` returns as referrers.
    async fn image(
        &self,
        repo: &str,
        make: impl FnOnce(&str, &str) -> Vec<Vec<u8>>,
    ) -> (String, String) {
        self.image_indexed_as(repo, BUNDLE_V03, make).await
    }

    /// [`Case::image`], with `index_type` as the artifactType of the
    /// referrers tag index entries.
    async fn image_indexed_as(
        &self,
        repo: &str,
        index_type: &str,
        make: impl FnOnce(&str, &str) -> Vec<Vec<u8>>,
    ) -> (String, String) {
        let digest = self.env.push(repo, "v1").await;
        for bundle in make(&format!("{}/{repo}", self.env.addr()), &digest) {
            push_referrer_indexed_as(
                &self.env.client,
                self.env.addr(),
                repo,
                &digest,
                BUNDLE_V03,
                BUNDLE_V03,
                &bundle,
                BTreeMap::new(),
                index_type,
            )
            .await
            .unwrap();
        }
        (format!("{}/{repo}:v1", self.env.addr()), digest)
    }

    /// Pushes `repo:v1` and attaches, as cosign's OCI 1.1 signature
    /// artifact (a simple-signing layer), a signature by `key`, with a TSA
    /// timestamp annotation when `stamp`; returns the image.
    async fn oci11_signed(&self, repo: &str, key: &TestKey, stamp: bool) -> String {
        let digest = self.env.push(repo, "v1").await;
        let mut sig = SignatureToAttach::new(key, &format!("{}/{repo}", self.env.addr()), &digest);
        if stamp {
            self.sigstore
                .timestamp_signature(
                    &mut sig,
                    std::time::SystemTime::now() - std::time::Duration::from_secs(5),
                )
                .unwrap();
        }
        let mut ann = sig.annotations.clone();
        ann.insert(
            sigil::verify::cosign::SIGNATURE_ANNOTATION.to_string(),
            sig.signature_b64.clone(),
        );
        push_referrer(
            &self.env.client,
            self.env.addr(),
            repo,
            &digest,
            sigil::verify::referrers::COSIGN_SIGNATURE_ARTIFACT,
            sigil::verify::cosign::SIMPLE_SIGNING_MEDIA_TYPE,
            &sig.payload,
            ann,
        )
        .await
        .unwrap();
        format!("{}/{repo}:v1", self.env.addr())
    }

    async fn verdict(&self, policy: &str, image: &str) -> (bool, String) {
        let (ev, _) = pipeline(policy, &self.opts);
        let resp = review_pod(&ev, image).await;
        (allowed(&resp), message(&resp))
    }
}

fn keyless_bundle_policy(glob: &str, extra: &str) -> String {
    format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: bundles\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n    - name: ci\n      signatureFormat: bundle\n      keyless:\n        identities:\n          - issuer: {ISSUER}\n            subject: {WORKFLOW}\n{extra}"
    )
}

fn key_bundle_policy(glob: &str, key: &TestKey) -> String {
    key_policy("bundles", glob, &[key], "").replace(
        "    - key:\n",
        "    - signatureFormat: bundle\n      key:\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_bundles_behind_referrers_are_verified_before_they_count() {
    let c = Case::new();
    let cert = c
        .sigstore
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), ISSUER))
        .unwrap();
    let policy = keyless_bundle_policy(&c.glob, "");

    let (signed, _) = c
        .image("acme/signed", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &signed).await;
    assert!(ok, "{msg}");

    // A forged inclusion proof: the referrer does not count.
    let (forged, _) = c
        .image("acme/forged-proof", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                    ProofMode::ForgedProof,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &forged).await;
    assert!(!ok);
    assert!(
        msg.contains("ci: no verified signature among 1 referrer (referrer sha256:"),
        "{msg}"
    );
    assert!(msg.contains("inclusion proof"), "{msg}");

    // A bad signature: the envelope's payload was changed after signing.
    let (tampered, _) = c
        .image("acme/tampered", |r, d| {
            let b = c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                    ProofMode::Valid,
                )
                .unwrap();
            let mut v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let other = in_toto_statement(r, d, SIGN_PREDICATE, json!({"x": 1}));
            v["dsseEnvelope"]["payload"] = json!(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                other
            ));
            vec![serde_json::to_vec(&v).unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &tampered).await;
    assert!(!ok);
    assert!(
        msg.contains("no verified signature among 1 referrer"),
        "{msg}"
    );

    // A signature bundle about another image.
    let (elsewhere, _) = c
        .image("acme/elsewhere", |r, _| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(
                        r,
                        &format!("sha256:{}", "cd".repeat(32)),
                        SIGN_PREDICATE,
                        json!({}),
                    ),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &elsewhere).await;
    assert!(!ok);
    assert!(
        msg.contains("no verified signature among 1 referrer"),
        "{msg}"
    );

    // Another identity.
    let fork = c
        .sigstore
        .issue(&CertRequest::new(
            San::Uri("https://github.com/fork/app/.github/workflows/x.yml@refs/heads/main".into()),
            ISSUER,
        ))
        .unwrap();
    let (forked, _) = c
        .image("acme/forked", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&fork),
                    &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &forked).await;
    assert!(!ok);
    assert!(
        msg.contains("certificate identity https://github.com/fork/app/"),
        "{msg}"
    );

    // No referrers at all.
    c.env.push("acme/bare", "v1").await;
    let (ok, msg) = c
        .verdict(&policy, &format!("{}/acme/bare:v1", c.env.addr()))
        .await;
    assert!(!ok);
    assert!(
        msg.contains("no signature or attestation referrers found for"),
        "{msg}"
    );

    // The legacy layout does not satisfy a bundle authority.
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let digest = c.env.push("acme/legacy", "v1").await;
    c.env.sign("acme/legacy", &digest, &k).await;
    let (ok, _) = c
        .verdict(
            &key_bundle_policy(&c.glob, &k),
            &format!("{}/acme/legacy:v1", c.env.addr()),
        )
        .await;
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_signed_bundles_and_cosign_oci11_signatures_verify_with_key_authorities() {
    let c = Case::new();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let other = TestKey::generate(TestKeyKind::P256).unwrap();
    let policy = key_bundle_policy(&c.glob, &k);

    // cosign v3 `sign --key`: a key-signed v0.3 bundle (policy-controller #1958).
    let (signed, _) = c
        .image("acme/key-bundle", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Key(&k),
                    &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &signed).await;
    assert!(ok, "{msg}");

    let (wrong_key, _) = c
        .image("acme/other-key-bundle", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Key(&other),
                    &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &wrong_key).await;
    assert!(!ok);
    assert!(
        msg.contains("no verified signature among 1 referrer"),
        "{msg}"
    );

    // cosign's OCI 1.1 signature artifact: a simple-signing layer.
    c.oci11_signed("acme/oci11", &k, false).await;
    let (ok, msg) = c
        .verdict(&policy, &format!("{}/acme/oci11:v1", c.env.addr()))
        .await;
    assert!(ok, "{msg}");
    let (ok, msg) = c
        .verdict(
            &key_bundle_policy(&c.glob, &other),
            &format!("{}/acme/oci11:v1", c.env.addr()),
        )
        .await;
    assert!(!ok);
    assert!(msg.contains("signature does not verify"), "{msg}");

    // Through `sigil check`, with the offline trust root: admitted and denied.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), &policy).unwrap();
    let root = dir.path().join("root.json");
    std::fs::write(&root, c.sigstore.trusted_root_json(None)).unwrap();
    for (image, code) in [(signed.as_str(), 0), (wrong_key.as_str(), 1)] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args([
                "check",
                "--insecure-registry",
                c.env.addr(),
                "--image",
                image,
                "--trust-root",
            ])
            .arg(&root)
            .arg("--policy-dir")
            .arg(dir.path())
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{image}: {text}");
        if code == 1 {
            assert!(
                text.contains("no verified signature among 1 referrer"),
                "{text}"
            );
        }
    }
}

/// Makes one key-signed v0.3 bundle (a cosign signing Statement) for
/// [`Case::image`].
fn signed_by_key<'a>(
    sigstore: &'a OfflineSigstore,
    k: &'a TestKey,
    mode: ProofMode,
) -> impl FnOnce(&str, &str) -> Vec<Vec<u8>> + 'a {
    move |r: &str, d: &str| {
        vec![sigstore
            .dsse_bundle(
                BundleSigner::Key(k),
                &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                mode,
            )
            .unwrap()]
    }
}

/// `rfc3161timestamp` on a key authority is kept in every layout it reads
/// with `signatureFormat: bundle`: a key-signed v0.3 bundle and a cosign
/// OCI 1.1 signature without a timestamp are denied naming the
/// requirement (both were admitted before); with a timestamp from the trust
/// root's TSA they are admitted; with one from another TSA, denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3161timestamp_is_required_of_key_signed_bundles_and_oci11_signatures() {
    let c = Case::new();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let policy = key_bundle_policy(&c.glob, &k).replace(
        "    - signatureFormat: bundle\n      key:\n",
        "    - signatureFormat: bundle\n      rfc3161timestamp: {}\n      key:\n",
    );
    assert!(policy.contains("rfc3161timestamp"), "{policy}");
    let (logged_only, _) = c
        .image(
            "acme/ts-logged",
            signed_by_key(&c.sigstore, &k, ProofMode::Valid),
        )
        .await;
    let (ok, msg) = c.verdict(&policy, &logged_only).await;
    assert!(!ok, "a bundle without a timestamp: {msg}");
    assert!(
        msg.contains("bundle has no RFC 3161 timestamp, which rfc3161timestamp requires"),
        "{msg}"
    );
    // Without the requirement the same bundle passes: the denial above is
    // the requirement's.
    let (ok, msg) = c
        .verdict(&key_bundle_policy(&c.glob, &k), &logged_only)
        .await;
    assert!(ok, "{msg}");
    let (stamped, _) = c
        .image(
            "acme/ts-stamped",
            signed_by_key(&c.sigstore, &k, ProofMode::Timestamped),
        )
        .await;
    let (ok, msg) = c.verdict(&policy, &stamped).await;
    assert!(ok, "{msg}");
    let rogue = OfflineSigstore::new().unwrap();
    let (rogue_stamped, _) = c
        .image(
            "acme/ts-rogue",
            signed_by_key(&rogue, &k, ProofMode::Timestamped),
        )
        .await;
    let (ok, msg) = c.verdict(&policy, &rogue_stamped).await;
    assert!(!ok, "a timestamp from a TSA outside the trust root: {msg}");

    // cosign's OCI 1.1 signature artifact: the timestamp annotation, as
    // on a legacy `.sig` layer.
    let plain = c.oci11_signed("acme/ts-oci11-plain", &k, false).await;
    let (ok, msg) = c.verdict(&policy, &plain).await;
    assert!(!ok, "an OCI 1.1 signature without a timestamp: {msg}");
    assert!(msg.contains("which rfc3161timestamp requires"), "{msg}");
    let stamped = c.oci11_signed("acme/ts-oci11-stamped", &k, true).await;
    let (ok, msg) = c.verdict(&policy, &stamped).await;
    assert!(ok, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_bundles_count_only_when_verified() {
    let c = Case::new();
    let cert = c
        .sigstore
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), ISSUER))
        .unwrap();
    let provenance = |builder: &str| json!({"runDetails": {"builder": {"id": builder}}});
    let policy = keyless_bundle_policy(
        &c.glob,
        "      attestations:\n        - name: provenance\n          predicateType: https://slsa.dev/provenance/v1\n          policy:\n            type: rego\n            data: |\n              package sigstore\n              default isCompliant = false\n              isCompliant {\n                input.predicate.runDetails.builder.id == \"https://ci.acme.test/builder\"\n              }\n",
    );
    let (good, _) = c
        .image("acme/attested", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &good).await;
    assert!(ok, "{msg}");

    // policy-controller #1971: a referrer attestation whose inclusion proof is
    // forged must not count, even though its content would pass.
    let (forged, _) = c
        .image("acme/attested-forged", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(r, d, SLSA1, provenance("https://ci.acme.test/builder")),
                    ProofMode::ForgedProof,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &forged).await;
    assert!(!ok);
    assert!(msg.contains(&format!("ci: attestation provenance: no matching attestations for predicate type {SLSA1} (1 attestation did not verify: referrer sha256:")), "{msg}");

    // Verified, but the content fails the policy.
    let (rogue, _) = c
        .image("acme/attested-rogue", |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(r, d, SLSA1, provenance("https://evil.test")),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let (ok, msg) = c.verdict(&policy, &rogue).await;
    assert!(!ok);
    assert!(
        msg.contains("ci: attestation provenance: policy failed: isCompliant is not true"),
        "{msg}"
    );
}

/// A message-signature bundle over the image manifest (its digest is the
/// image digest) counts as a signature; over another manifest it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_signature_bundles_sign_the_image_digest() {
    let c = Case::new();
    let cert = c
        .sigstore
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), ISSUER))
        .unwrap();
    let policy = keyless_bundle_policy(&c.glob, "");
    let manifest_of = |repo: &str, digest: &str| {
        let r = oci_client::Reference::with_digest(c.env.addr().into(), repo.into(), digest.into());
        let client = &c.env.client;
        async move {
            client
                .pull_manifest_raw(
                    &r,
                    &oci_client::secrets::RegistryAuth::Anonymous,
                    &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
                )
                .await
                .unwrap()
                .0
        }
    };
    let digest = c.env.push("acme/message", "v1").await;
    let manifest = manifest_of("acme/message", &digest).await;
    let bundle = c
        .sigstore
        .message_bundle(
            BundleSigner::Certificate(&cert),
            &manifest,
            ProofMode::Valid,
        )
        .unwrap();
    push_referrer(
        &c.env.client,
        c.env.addr(),
        "acme/message",
        &digest,
        BUNDLE_V03,
        BUNDLE_V03,
        &bundle,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let (ok, msg) = c
        .verdict(&policy, &format!("{}/acme/message:v1", c.env.addr()))
        .await;
    assert!(ok, "{msg}");

    // The same kind of bundle, but over another image's manifest.
    let other = c.env.push("acme/message-other", "v1").await;
    let other_manifest = manifest_of("acme/message-other", &other).await;
    let digest = c.env.push("acme/message-wrong", "v1").await;
    let bundle = c
        .sigstore
        .message_bundle(
            BundleSigner::Certificate(&cert),
            &other_manifest,
            ProofMode::Valid,
        )
        .unwrap();
    push_referrer(
        &c.env.client,
        c.env.addr(),
        "acme/message-wrong",
        &digest,
        BUNDLE_V03,
        BUNDLE_V03,
        &bundle,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let (ok, msg) = c
        .verdict(&policy, &format!("{}/acme/message-wrong:v1", c.env.addr()))
        .await;
    assert!(!ok);
    assert!(
        msg.contains("no verified signature among 1 referrer"),
        "{msg}"
    );
}

/// cosign signs in the bundle format on a registry without the referrers
/// API: go-containerregistry's fallback tag index records the referrer's
/// config media type (`application/vnd.oci.empty.v1+json`) as the entry's
/// artifactType. The referrer manifest itself says what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_indexed_the_way_go_containerregistry_writes_them_are_found() {
    const EMPTY: &str = "application/vnd.oci.empty.v1+json";
    let c = Case::new();
    let cert = c
        .sigstore
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), ISSUER))
        .unwrap();
    let policy = keyless_bundle_policy(&c.glob, "");
    let (_, digest) = c
        .image_indexed_as("acme/ggcr", EMPTY, |r, d| {
            vec![c
                .sigstore
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &in_toto_statement(r, d, SIGN_PREDICATE, json!({})),
                    ProofMode::Valid,
                )
                .unwrap()]
        })
        .await;
    let image = format!("{}/acme/ggcr:v1@{digest}", c.env.addr());
    let (ok, msg) = c.verdict(&policy, &image).await;
    assert!(ok, "{msg}");
    // And a referrer that is no signature at all is passed over, not read
    // as one: the image stays unsigned.
    let other = c.env.push("acme/sbom-only", "v1").await;
    push_referrer_indexed_as(
        &c.env.client,
        c.env.addr(),
        "acme/sbom-only",
        &other,
        "application/spdx+json",
        "application/spdx+json",
        b"{}",
        BTreeMap::new(),
        EMPTY,
    )
    .await
    .unwrap();
    let (ok, msg) = c
        .verdict(&policy, &format!("{}/acme/sbom-only@{other}", c.env.addr()))
        .await;
    assert!(!ok);
    assert!(
        msg.contains("ci: no verified signature among 0 referrers")
            || msg.contains("no signature or attestation referrers found"),
        "{msg}"
    );
}
