//! Collector for `signatureFormat: bundle`: the image's OCI referrers
//! (Sigstore bundles and cosign OCI 1.1 signature artifacts), each verified
//! for the admitted digest before it counts as a signature or attestation.

use super::sources::{referrers, signer, Sources};
use crate::image::ImageRef;
use crate::policy::CompiledAuthority;
use crate::verify::evidence::{Evidence, Source};
use crate::verify::outcome::Failure;
use crate::verify::referrers::{verify_referrer, Referrer, ReferrerKind, VerifiedReferrer};

/// The verified referrers of `image@digest` for authority `a`.
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
) -> Result<Evidence, Failure> {
    let (registry, repository, found) = referrers(sources, image, digest, a).await?;
    // Notation signatures are the notation collector's.
    let found: Vec<&Referrer> = found
        .iter()
        .filter(|r| r.kind != ReferrerKind::Notation)
        .collect();
    if found.is_empty() {
        return Err(Failure::Verdict(format!(
            "no signature or attestation referrers found for {registry}/{repository}@{digest}"
        )));
    }
    let signer = signer(sources, a)?;
    let mut evidence = Evidence {
        source: Source::Referrers,
        candidates: found.len(),
        ..Evidence::default()
    };
    for r in found {
        match verify_referrer(r, digest, &signer) {
            Ok(VerifiedReferrer::Signature(s)) => evidence.signatures.push(s),
            Ok(VerifiedReferrer::Attestation(v)) => evidence.attestations.push(v),
            Err(why) => evidence
                .rejected
                .push(format!("referrer {}: {why}", r.digest)),
        }
    }
    Ok(evidence)
}
