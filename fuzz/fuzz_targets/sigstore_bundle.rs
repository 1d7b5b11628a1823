//! Sigstore bundles behind referrers, verified against a key authority and
//! the public-good trust root: JSON, certificates, tlog entries, proofs.
//! Must never panic, and nothing forged verifies.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;
use common::{key, trust, DIGEST};
use sigil::verify::referrers::{verify_referrer, Referrer, ReferrerKind};
use sigil::verify::signer::Signer;

fuzz_target!(|data: &[u8]| {
    let r = Referrer {
        digest: DIGEST.into(),
        kind: ReferrerKind::Bundle,
        blob: data.to_vec(),
        media_type: "application/vnd.dev.sigstore.bundle.v0.3+json".into(),
        annotations: BTreeMap::new(),
    };
    let signer = Signer::Key {
        key: key(),
        evidence: None,
        trust: trust(),
    };
    assert!(verify_referrer(&r, DIGEST, &signer).is_err());
});
