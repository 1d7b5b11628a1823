//! What several fuzz targets share: the digest they verify for, a real
//! cosign public key, the public-good trust root.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use sigil::trust::TrustMaterial;
use sigil::verify::keys::{HashAlgorithm, VerificationKey};

/// The digest every target pretends to admit.
pub const DIGEST: &str =
    "sha256:2f2b6a1c9e0f0b8d3c1e4a5b6c7d8e9f00112233445566778899aabbccddeeff";

/// containers/image's cosign test key.
pub fn key() -> &'static VerificationKey {
    static KEY: OnceLock<VerificationKey> = OnceLock::new();
    KEY.get_or_init(|| {
        VerificationKey::from_pem(
            include_str!("../../tests/fixtures/containers-image/cosign.pub"),
            HashAlgorithm::Sha256,
        )
        .expect("fixture key")
    })
}

/// The embedded Sigstore public-good trusted root.
pub fn trust() -> Arc<TrustMaterial> {
    static TRUST: OnceLock<Arc<TrustMaterial>> = OnceLock::new();
    TRUST
        .get_or_init(|| Arc::new(TrustMaterial::public_good()))
        .clone()
}
