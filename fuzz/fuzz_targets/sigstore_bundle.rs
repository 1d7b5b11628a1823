//! Sigstore bundles behind referrers, verified against a key authority and
//! the public-good trust root: JSON, certificates, tlog entries, proofs.
//! Must never panic, and nothing forged verifies.
#![no_main]
use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil::trust::TrustMaterial;
use sigil::verify::keys::{HashAlgorithm, VerificationKey};
use sigil::verify::referrers::{verify_referrer, Referrer, ReferrerKind, ReferrerSigner};

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

fn trust() -> &'static TrustMaterial {
    static TRUST: OnceLock<TrustMaterial> = OnceLock::new();
    TRUST.get_or_init(TrustMaterial::public_good)
}

fuzz_target!(|data: &[u8]| {
    let r = Referrer {
        digest: DIGEST.into(),
        kind: ReferrerKind::Bundle,
        blob: data.to_vec(),
        annotations: BTreeMap::new(),
    };
    let signer = ReferrerSigner::Key {
        key: key(),
        require_tlog: false,
        trust: trust(),
    };
    assert!(verify_referrer(&r, DIGEST, &signer).is_err());
});
