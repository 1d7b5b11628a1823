//! Real cosign signatures from containers/image's test fixtures
//! (tests/fixtures/containers-image, copied from ../shared/fixtures), checked
//! at the verifier level: the image blobs are not included, so the admitted
//! digest is the sha256 of each folder's manifest.json.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sigil::trust::TrustMaterial;
use sigil::verify::cosign::{verify_any, Rejection, SignatureLayer};
use sigil::verify::keyless::{
    verify_keyless_layer, CertificateTrust, IdentityRule, KeylessPolicy, PrivateCa, TextMatcher,
    BUNDLE_ANNOTATION,
};
use sigil::verify::keys::{HashAlgorithm, VerificationKey};
use sigil::verify::legacy_evidence::verify_key_tlog;

const PREFIX: &[u8] = b"\x00sigstore-json\n";

#[derive(Deserialize)]
struct StoredSignature {
    payload: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containers-image")
}

/// A fixture file's bytes. Upstream symlinks are stored as files holding the
/// relative target path: `Link(target)` when that target was not shipped.
enum Fixture {
    Bytes(Vec<u8>),
    Missing,
    Link(Vec<u8>),
}

fn read_fixture(path: &Path) -> Fixture {
    let Ok(bytes) = std::fs::read(path) else {
        return Fixture::Missing;
    };
    if bytes.starts_with(b"../") && bytes.len() < 256 {
        let target = path
            .parent()
            .unwrap()
            .join(String::from_utf8_lossy(&bytes).trim());
        return match read_fixture(&target) {
            Fixture::Missing => Fixture::Link(bytes),
            found => found,
        };
    }
    Fixture::Bytes(bytes)
}

/// The admitted digest and the signature layers of a case; `Err` names a
/// signature that cannot be read (which rejects the set, as an unfetchable
/// layer does on the registry path).
fn load(case: &str) -> Result<(String, Vec<SignatureLayer>), String> {
    let folder = dir().join(case);
    // A manifest whose link target was not shipped: its bytes are the link
    // text, as in a checkout without symlinks.
    let manifest = match read_fixture(&folder.join("manifest.json")) {
        Fixture::Bytes(b) | Fixture::Link(b) => b,
        Fixture::Missing => panic!("{case}: no manifest"),
    };
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    let mut layers = Vec::new();
    for i in 1..10 {
        let raw = match read_fixture(&folder.join(format!("signature-{i}"))) {
            Fixture::Missing => break,
            Fixture::Link(target) => {
                return Err(format!(
                    "signature-{i} unreadable: {}",
                    String::from_utf8_lossy(&target)
                ))
            }
            Fixture::Bytes(b) => b,
        };
        let json = raw.strip_prefix(PREFIX).expect("sigstore-json prefix");
        let stored: StoredSignature = serde_json::from_slice(json).expect("signature json");
        layers.push(SignatureLayer {
            payload: base64::engine::general_purpose::STANDARD
                .decode(stored.payload)
                .unwrap(),
            annotations: stored.annotations,
        });
    }
    Ok((digest, layers))
}

fn key(name: &str) -> VerificationKey {
    let pem = std::fs::read_to_string(dir().join(name)).unwrap();
    VerificationKey::from_pem(&pem, HashAlgorithm::Sha256).unwrap()
}

#[test]
fn real_cosign_signatures_verify() {
    for (case, key_file) in [
        ("dir-img-cosign-valid", "cosign.pub"),
        ("dir-img-cosign-valid-2", "cosign.pub"),
        ("dir-img-cosign-valid-with-tag", "cosign.pub"),
        ("dir-img-cosign-key-rekor-valid", "cosign2.pub"),
    ] {
        let (digest, layers) = load(case).unwrap();
        assert!(!layers.is_empty(), "{case}");
        assert_eq!(
            verify_any(&layers, &digest, &key(key_file), "authority-0"),
            Ok(()),
            "{case}"
        );
    }
}

#[test]
fn modified_manifest_and_digest_errors_are_rejected() {
    for case in [
        "dir-img-cosign-modified-manifest",
        "dir-img-cosign-manifest-digest-error",
    ] {
        let (digest, layers) = load(case).unwrap();
        let err = verify_any(&layers, &digest, &key("cosign.pub"), "authority-0").unwrap_err();
        match &err {
            Rejection::DigestMismatch { signed, admitted } => {
                assert_eq!(admitted, &digest, "{case}");
                assert_ne!(signed, &digest, "{case}");
            }
            other => panic!("{case}: expected a digest mismatch, got {other}"),
        }
    }
}

/// `mixed` pairs a valid signature with one by an unknown key; the latter's
/// file (`unknown-cosign-key.signature`) is not part of the shipped fixtures,
/// so the set has a signature that cannot be read, and is rejected.
#[test]
fn mixed_set_with_an_unreadable_signature_is_rejected() {
    let err = load("dir-img-cosign-mixed").unwrap_err();
    assert_eq!(
        err,
        "signature-1 unreadable: ../unknown-cosign-key.signature"
    );
}

#[test]
fn valid_signature_is_rejected_with_another_key() {
    let (digest, layers) = load("dir-img-cosign-valid").unwrap();
    let err = verify_any(&layers, &digest, &key("cosign2.pub"), "other").unwrap_err();
    assert_eq!(err.to_string(), "signature does not verify with key other");
}

fn identity(issuer: &str, subject: &str) -> IdentityRule {
    IdentityRule::new(
        TextMatcher::new(Some(issuer), None).unwrap(),
        TextMatcher::new(Some(subject), None).unwrap(),
    )
}

fn public_good_keyless(identities: Vec<IdentityRule>) -> KeylessPolicy {
    KeylessPolicy {
        identities,
        trust: CertificateTrust::TrustRoot,
        trust_root_ref: None,
        verify_sct: true,
        require_tlog: true,
        timestamp_without_log: false,
        require_timestamp: false,
    }
}

/// The public-good Fulcio + Rekor signature verifies offline against the
/// embedded public-good root: chain at the integrated time (the certificate
/// expired long ago), SET, SCT and identity.
#[test]
fn public_good_keyless_signature_verifies_offline() {
    let (digest, layers) = load("dir-img-cosign-fulcio-rekor-valid").unwrap();
    let trust = TrustMaterial::public_good();
    let policy = public_good_keyless(vec![identity(
        "https://github.com/login/oauth",
        "mitr@redhat.com",
    )]);
    let signer = verify_keyless_layer(&layers[0], &digest, &policy, &trust).unwrap();
    assert_eq!(signer.subject, "mitr@redhat.com");
    assert_eq!(signer.issuer, "https://github.com/login/oauth");
    assert_eq!(
        signer.integrated_time.as_deref(),
        Some("2023-01-20T20:51:33Z")
    );

    // Same signature, another identity: named in the message.
    let other = public_good_keyless(vec![identity(
        "https://github.com/login/oauth",
        "someone@example.com",
    )]);
    let err = verify_keyless_layer(&layers[0], &digest, &other, &trust).unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate identity mitr@redhat.com issued by https://github.com/login/oauth matches none of: \
         {subject someone@example.com, issuer https://github.com/login/oauth}"
    );

    // Another digest: the payload does not name it.
    let err = verify_keyless_layer(&layers[0], "sha256:00", &policy, &trust).unwrap_err();
    assert!(matches!(err, Rejection::DigestMismatch { .. }), "{err}");
}

#[test]
fn public_good_signature_with_a_tampered_set_is_rejected() {
    let (digest, mut layers) = load("dir-img-cosign-fulcio-rekor-valid").unwrap();
    let bundle = layers[0].annotations.get_mut(BUNDLE_ANNOTATION).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(bundle).unwrap();
    v["Payload"]["integratedTime"] = serde_json::json!(1674247894);
    *bundle = v.to_string();
    let policy = public_good_keyless(vec![identity(
        "https://github.com/login/oauth",
        "mitr@redhat.com",
    )]);
    let err = verify_keyless_layer(&layers[0], &digest, &policy, &TrustMaterial::public_good())
        .unwrap_err();
    assert!(
        err.to_string().starts_with("Rekor SET does not verify"),
        "{err}"
    );
}

/// The same signature against a trust root that does not hold the
/// public-good Fulcio CA.
#[test]
fn public_good_signature_is_rejected_by_another_trust_root() {
    let (digest, layers) = load("dir-img-cosign-fulcio-rekor-valid").unwrap();
    let offline = sigil_testkit::sigstore::OfflineSigstore::new().unwrap();
    let trust = TrustMaterial::from_json("other", &offline.trusted_root_json(None)).unwrap();
    let policy = public_good_keyless(vec![identity(
        "https://github.com/login/oauth",
        "mitr@redhat.com",
    )]);
    let err = verify_keyless_layer(&layers[0], &digest, &policy, &trust).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

/// A private PKI (no Fulcio, no Rekor): the chain is checked against the
/// `ca-cert` roots and intermediates at admission time.
#[test]
fn private_pki_signature_verifies_against_its_ca() {
    let (digest, layers) = load("dir-img-cosign-pki-valid").unwrap();
    let pem = std::fs::read_to_string(dir().join("pki_root_crts.pem")).unwrap()
        + &std::fs::read_to_string(dir().join("pki_intermediate_crts.pem")).unwrap();
    let ca = PrivateCa::from_pem(&pem).unwrap();
    let policy = KeylessPolicy {
        identities: vec![IdentityRule::new(
            TextMatcher::new(None, Some(".*")).unwrap(),
            TextMatcher::new(Some("qiwan@redhat.com"), None).unwrap(),
        )],
        trust: CertificateTrust::PrivateCa(std::sync::Arc::new(ca)),
        trust_root_ref: None,
        verify_sct: true,
        require_tlog: false,
        timestamp_without_log: false,
        require_timestamp: false,
    };
    let trust = TrustMaterial::public_good();
    let signer = verify_keyless_layer(&layers[0], &digest, &policy, &trust).unwrap();
    assert_eq!(signer.subject, "qiwan@redhat.com");

    // Against the public-good CA as ca-cert, the chain does not verify.
    let public =
        PrivateCa::from_pem(&std::fs::read_to_string(dir().join("fulcio_v1.crt.pem")).unwrap())
            .unwrap();
    let wrong = KeylessPolicy {
        trust: CertificateTrust::PrivateCa(std::sync::Arc::new(public)),
        ..policy.clone()
    };
    let err = verify_keyless_layer(&layers[0], &digest, &wrong, &trust).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("certificate does not chain to the ca-cert authority"),
        "{err}"
    );

    // With ctlog set, the missing Rekor entry fails.
    let with_tlog = KeylessPolicy {
        require_tlog: true,
        ..policy
    };
    let err = verify_keyless_layer(&layers[0], &digest, &with_tlog, &trust).unwrap_err();
    assert!(err.to_string().contains("which ctlog requires"), "{err}");
}

/// A key signature with a public-good Rekor entry: what `ctlog` on a key
/// authority asks for.
#[test]
fn key_signature_rekor_entry_verifies_against_public_good() {
    let (digest, layers) = load("dir-img-cosign-key-rekor-valid").unwrap();
    let k = key("cosign2.pub");
    assert_eq!(verify_any(&layers, &digest, &k, "a"), Ok(()));
    verify_key_tlog(&layers[0], &k, &TrustMaterial::public_good()).unwrap();
    // The entry names cosign2's key, not cosign's.
    let err = verify_key_tlog(
        &layers[0],
        &key("cosign.pub"),
        &TrustMaterial::public_good(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("does not verify")
            || err.to_string().contains("not this signature"),
        "{err}"
    );
    // A signature without a Rekor entry fails when one is required.
    let (_, plain) = load("dir-img-cosign-valid").unwrap();
    let err =
        verify_key_tlog(&plain[0], &key("cosign.pub"), &TrustMaterial::public_good()).unwrap_err();
    assert!(err.to_string().contains("which ctlog requires"), "{err}");
}
