//! DSSE envelopes (legacy `.att` layers) verified against a key: parse,
//! PAE, signature. Must never panic, and nothing forged verifies.
#![no_main]
use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil::verify::attestation::{verify_attestation_layer, EnvelopeSigner};
use sigil::verify::cosign::SignatureLayer;
use sigil::verify::keys::{HashAlgorithm, VerificationKey};

const DIGEST: &str = "sha256:2f2b6a1c9e0f0b8d3c1e4a5b6c7d8e9f00112233445566778899aabbccddeeff";

fn key() -> &'static VerificationKey {
    static KEY: OnceLock<VerificationKey> = OnceLock::new();
    KEY.get_or_init(|| {
        VerificationKey::from_pem(
            include_str!("../../tests/fixtures/containers-image/cosign.pub"),
            HashAlgorithm::Sha256,
        )
        .expect("fixture key")
    })
}

fuzz_target!(|data: &[u8]| {
    let layer = SignatureLayer {
        payload: data.to_vec(),
        annotations: BTreeMap::new(),
    };
    let signer = EnvelopeSigner::Key {
        key: key(),
        evidence: None,
    };
    assert!(verify_attestation_layer(&layer, DIGEST, &signer).is_err());
});
