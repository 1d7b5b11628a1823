//! cosign simple-signing payloads: the payload check that runs once a
//! signature verified, and a whole layer with an arbitrary signature.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;
use common::{key, DIGEST};
use sigil::verify::cosign::{check_payload, verify_layer, SignatureLayer, SIGNATURE_ANNOTATION};

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
