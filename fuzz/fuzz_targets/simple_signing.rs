//! cosign simple-signing payloads: the payload check that runs once a
//! signature verified, and a whole layer with an arbitrary signature.
#![no_main]
use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil::verify::cosign::{check_payload, verify_layer, SignatureLayer, SIGNATURE_ANNOTATION};
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
    let _ = check_payload(data, DIGEST);
    let (sig, payload) = data.split_at(data.len().min(96));
    let layer = SignatureLayer {
        payload: payload.to_vec(),
        annotations: BTreeMap::from([(
            SIGNATURE_ANNOTATION.to_string(),
            String::from_utf8_lossy(sig).into_owned(),
        )]),
    };
    assert!(verify_layer(&layer, DIGEST, key(), "fuzz").is_err(), "no forged signature verifies");
});
