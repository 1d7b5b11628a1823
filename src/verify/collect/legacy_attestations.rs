//! Collector for cosign's legacy attestations: the `sha256-<hex>.att` tag's
//! DSSE layers, each verified as the authority says (key, or keyless with
//! its chain, logs and identity) and bound to the admitted digest by the
//! Statement's subject. Unverified layers are only reasons.

use super::sources::{cosign_tag_layers, signer, Sources};
use crate::image::ImageRef;
use crate::policy::CompiledAuthority;
use crate::verify::attestation;
use crate::verify::evidence::{Evidence, Source};
use crate::verify::outcome::Failure;

/// The verified `.att` attestations of `image@digest` for authority `a`.
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
) -> Result<Evidence, Failure> {
    let layers = cosign_tag_layers(sources, image, digest, a, "att").await?;
    let signer = signer(sources, a)?;
    let (attestations, mut rejected) =
        attestation::verify_attestation_layers(&layers, digest, &signer);
    rejected.sort_by_key(|r| std::cmp::Reverse(r.rank()));
    Ok(Evidence {
        source: Source::AttestationTag,
        signatures: Vec::new(),
        attestations,
        rejected: rejected.iter().map(ToString::to_string).collect(),
        candidates: layers.len(),
        index: None,
    })
}
