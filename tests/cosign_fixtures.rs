//! Real cosign signatures from containers/image's test fixtures
//! (tests/fixtures/containers-image, copied from ../shared/fixtures), checked
//! at the verifier level: the image blobs are not included, so the admitted
//! digest is the sha256 of each folder's manifest.json.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sigil::verify::cosign::{verify_any, Rejection, SignatureLayer};
use sigil::verify::keys::{HashAlgorithm, VerificationKey};

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
