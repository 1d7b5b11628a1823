//! Collector for `notation` authorities: the image's OCI referrers of
//! artifact type `application/vnd.cncf.notary.signature` (through the
//! referrers API or the referrers tag index), each envelope verified under
//! the authority's trust policy for the admitted manifest (its digest, and
//! the media type and size the registry serves for it) at the current time.
//! The clock is read here, at the edge; the verification is pure.

use std::sync::Arc;

use super::sources::{referrers, signature_home, Sources};
use crate::image::ImageRef;
use crate::model::notation::NotationPolicy;
use crate::policy::CompiledAuthority;
use crate::verify::evidence::{Evidence, Source, VerifiedSignature};
use crate::verify::notation::{self, Target};
use crate::verify::outcome::Failure;
use crate::verify::referrers::{Referrer, ReferrerKind};

/// The verified Notation signatures of `image@digest` for authority `a`,
/// each envelope checked as it arrives (only what verified is kept).
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
    policy: &Arc<NotationPolicy>,
) -> Result<Evidence, Failure> {
    // What the payload must state of the admitted manifest is read first:
    // each envelope is checked against it as it arrives.
    let (registry, repository) = signature_home(image, a);
    let target = match sources
        .fetch
        .manifest_descriptor(&registry, &repository, digest, sources.creds)
        .await
    {
        Ok((media_type, size)) => Ok(Target {
            digest: digest.to_string(),
            media_type,
            size,
        }),
        Err(e) => Err(Failure::registry(
            format!("cannot read the manifest {registry}/{repository}@{digest}: {e}"),
            &e,
        )),
    };
    let now = jiff::Timestamp::now();
    let check = |r: Referrer| match &target {
        Ok(target) => notation::verify(policy, &r.media_type, &r.blob, target, now)
            .map(|signer| VerifiedSignature {
                digest: digest.to_string(),
                signer: None,
                notation: Some(signer),
            })
            .map_err(|why| format!("Notation signature {}: {why}", r.digest)),
        // Reported below, once there is something to verify.
        Err(_) => Err(String::new()),
    };
    let (_, _, checked) = referrers(
        sources,
        image,
        digest,
        a,
        |kind| kind == ReferrerKind::Notation,
        check,
    )
    .await?;
    if checked.candidates == 0 {
        return Err(Failure::Verdict(format!(
            "no Notation signature found for {registry}/{repository}@{digest}"
        )));
    }
    target?;
    Ok(Evidence {
        source: Source::NotationSignatures,
        candidates: checked.candidates,
        signatures: checked.passed,
        // Nothing silently cut: what was not read leads the reasons.
        rejected: checked.unread.into_iter().chain(checked.rejected).collect(),
        ..Evidence::default()
    })
}
