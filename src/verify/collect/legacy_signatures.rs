//! Collector for cosign's legacy signatures: the `sha256-<hex>.sig` tag's
//! simple-signing layers, each checked with the authority's key (and its
//! Rekor/TSA evidence when required) or as a keyless signature.
//!
//! It stops at the first layer that verifies (one is enough to vouch); when
//! none does, every rejection is kept, most informative first.

use super::sources::{cosign_tag_layers, signer, Sources};
use crate::image::ImageRef;
use crate::policy::CompiledAuthority;
use crate::verify::cosign::{self, Rejection};
use crate::verify::evidence::{Evidence, Source, VerifiedSignature};
use crate::verify::keyless;
use crate::verify::legacy_evidence;
use crate::verify::outcome::Failure;
use crate::verify::signer::Signer;

/// The verified `.sig` signature of `image@digest` for authority `a`.
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
) -> Result<Evidence, Failure> {
    let layers = cosign_tag_layers(sources, image, digest, a, "sig").await?;
    let signer = signer(sources, a)?;
    let mut rejected: Vec<Rejection> = Vec::new();
    let mut signatures = Vec::new();
    for layer in layers.iter() {
        let verified = match &signer {
            Signer::Key {
                key,
                evidence,
                trust,
            } => cosign::verify_layer(layer, digest, key, &a.name)
                .and_then(|()| match evidence {
                    Some(ev) => legacy_evidence::verify_key_evidence(
                        layer,
                        key,
                        trust,
                        ev.tlog,
                        ev.timestamp,
                    ),
                    None => Ok(()),
                })
                .map(|()| None),
            Signer::Keyless { policy, trust } => {
                keyless::verify_keyless_layer(layer, digest, policy, trust).map(Some)
            }
        };
        match verified {
            Ok(signer) => {
                signatures.push(VerifiedSignature {
                    digest: digest.to_string(),
                    signer,
                    notation: None,
                });
                break;
            }
            Err(r) => rejected.push(r),
        }
    }
    // Stable: among equally informative reasons the first layer's leads.
    rejected.sort_by_key(|r| std::cmp::Reverse(r.rank()));
    Ok(Evidence {
        source: Source::SignatureTag,
        signatures,
        attestations: Vec::new(),
        rejected: rejected.iter().map(ToString::to_string).collect(),
        candidates: layers.len(),
        index: None,
    })
}
