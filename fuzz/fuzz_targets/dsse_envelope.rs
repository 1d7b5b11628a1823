//! DSSE envelopes (legacy `.att` layers) verified against a key: parse,
//! PAE, signature. Must never panic, and nothing forged verifies.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;
use common::{key, trust, DIGEST};
use sigil::verify::attestation::verify_attestation_layer;
use sigil::verify::cosign::SignatureLayer;
use sigil::verify::signer::Signer;

fuzz_target!(|data: &[u8]| {
    let layer = SignatureLayer {
        payload: data.to_vec(),
        annotations: BTreeMap::new(),
    };
    let signer = Signer::Key {
        key: key(),
        evidence: None,
        trust: trust(),
    };
    assert!(verify_attestation_layer(&layer, DIGEST, &signer).is_err());
});
