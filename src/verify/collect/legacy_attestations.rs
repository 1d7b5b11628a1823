//! Collector for cosign's legacy attestations: the `sha256-<hex>.att` tag's
//! DSSE layers, each verified as the authority says (key, or keyless with
//! its chain, logs and identity) and bound to the admitted digest by the
//! Statement's subject. Unverified layers are only reasons.

use super::sources::{cosign_tag_layers, signer, Sources};
use crate::image::ImageRef;
use crate::policy::CompiledAuthority;
use crate::verify::attestation;
use crate::verify::cosign::{Rejection, SignatureLayer};
use crate::verify::evidence::{Evidence, Source};
use crate::verify::outcome::Failure;

/// The verified `.att` attestations of `image@digest` for authority `a`,
/// each layer checked as it arrives (only verified Statements are kept).
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
) -> Result<Evidence, Failure> {
    let signer = signer(sources, a);
    let check = |layer: SignatureLayer| match &signer {
        Ok(signer) => attestation::verify_attestation_layer(&layer, digest, signer),
        // Reported below, once the tag is known to hold something.
        Err(_) => Err(Rejection::Evidence(String::new())),
    };
    let checked = cosign_tag_layers(sources, image, digest, a, "att", check, |_| false).await?;
    signer?;
    let mut rejected = checked.rejected;
    rejected.sort_by_key(|r| std::cmp::Reverse(r.rank()));
    let mut rejected: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    // Nothing silently cut: what was not read leads the reasons.
    if let Some(unread) = checked.unread {
        rejected.insert(0, unread);
    }
    Ok(Evidence {
        source: Source::AttestationTag,
        signatures: Vec::new(),
        attestations: checked.passed,
        rejected,
        candidates: checked.candidates,
        index: None,
    })
}
