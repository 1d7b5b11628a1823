//! Collector for cosign's legacy signatures: the `sha256-<hex>.sig` tag's
//! simple-signing layers, each checked with the authority's key (and its
//! Rekor/TSA evidence when required) or as a keyless signature.
//!
//! Layers are read a few at a time and checked as they arrive; it stops
//! at the first that verifies (one is enough to vouch), and nothing that
//! failed is held. When none verifies, every rejection is kept, most
//! informative first.

use super::sources::{cosign_tag_layers, signer, Sources};
use crate::image::ImageRef;
use crate::policy::CompiledAuthority;
use crate::verify::cosign::{self, Rejection, SignatureLayer};
use crate::verify::evidence::{Evidence, Source, VerifiedSignature};
use crate::verify::keyless;
use crate::verify::legacy_evidence;
use crate::verify::outcome::Failure;
use crate::verify::signer::Signer;

/// The verified `.sig` signature of `image@digest` for authority `a`:
/// layers are checked as they arrive and reading stops at the first that
/// verifies.
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
) -> Result<Evidence, Failure> {
    let signer = signer(sources, a);
    let check = |layer: SignatureLayer| match &signer {
        Ok(signer) => verify_layer(&layer, digest, signer, a),
        // Reported below, once the tag is known to hold something.
        Err(_) => Err(Rejection::Evidence(String::new())),
    };
    let checked = cosign_tag_layers(sources, image, digest, a, "sig", check, |verified| {
        !verified.is_empty()
    })
    .await?;
    signer?;
    let mut rejected = checked.rejected;
    // Stable: among equally informative reasons the first layer's leads.
    rejected.sort_by_key(|r| std::cmp::Reverse(r.rank()));
    let mut rejected: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    // Nothing silently cut: what was not read leads the reasons.
    if let Some(unread) = checked.unread {
        rejected.insert(0, unread);
    }
    Ok(Evidence {
        source: Source::SignatureTag,
        signatures: checked
            .passed
            .into_iter()
            .take(1)
            .map(|signer| VerifiedSignature {
                digest: digest.to_string(),
                signer,
                notation: None,
            })
            .collect(),
        attestations: Vec::new(),
        rejected,
        candidates: checked.candidates,
        index: None,
    })
}

/// One `.sig` layer checked for `digest`: with the authority's key (and
/// its Rekor/TSA evidence when required), or as a keyless signature (its
/// verified identity).
fn verify_layer(
    layer: &SignatureLayer,
    digest: &str,
    signer: &Signer<'_>,
    a: &CompiledAuthority,
) -> Result<Option<keyless::SignerIdentity>, Rejection> {
    match signer {
        Signer::Key {
            key,
            evidence,
            trust,
        } => cosign::verify_layer(layer, digest, key, &a.name)
            .and_then(|()| match evidence {
                Some(ev) => {
                    legacy_evidence::verify_key_evidence(layer, key, trust, ev.tlog, ev.timestamp)
                }
                None => Ok(()),
            })
            .map(|()| None),
        Signer::Keyless { policy, trust } => {
            keyless::verify_keyless_layer(layer, digest, policy, trust).map(Some)
        }
    }
}
