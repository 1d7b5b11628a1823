//! Collector for `notation` authorities: the image's OCI referrers of
//! artifact type `application/vnd.cncf.notary.signature` (through the
//! referrers API or the referrers tag index), each envelope verified under
//! the authority's trust policy for the admitted manifest (its digest, and
//! the media type and size the registry serves for it) at the current time.
//! The clock is read here, at the edge; the verification is pure.

use std::sync::Arc;

use super::sources::{referrers, Sources};
use crate::image::ImageRef;
use crate::model::notation::NotationPolicy;
use crate::policy::CompiledAuthority;
use crate::verify::evidence::{Evidence, Source, VerifiedSignature};
use crate::verify::notation::{self, Target};
use crate::verify::outcome::Failure;
use crate::verify::referrers::ReferrerKind;

/// The verified Notation signatures of `image@digest` for authority `a`.
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
    policy: &Arc<NotationPolicy>,
) -> Result<Evidence, Failure> {
    let (registry, repository, found) = referrers(sources, image, digest, a).await?;
    let signatures: Vec<_> = found
        .iter()
        .filter(|r| r.kind == ReferrerKind::Notation)
        .collect();
    if signatures.is_empty() {
        return Err(Failure::Verdict(format!(
            "no Notation signature found for {registry}/{repository}@{digest}"
        )));
    }
    let (media_type, size) = sources
        .fetch
        .manifest_descriptor(&registry, &repository, digest, sources.creds)
        .await
        .map_err(|e| {
            Failure::registry(
                format!("cannot read the manifest {registry}/{repository}@{digest}: {e}"),
                &e,
            )
        })?;
    let target = Target {
        digest: digest.to_string(),
        media_type,
        size,
    };
    let now = jiff::Timestamp::now();
    let mut evidence = Evidence {
        source: Source::NotationSignatures,
        candidates: signatures.len(),
        ..Evidence::default()
    };
    for r in signatures {
        match notation::verify(policy, &r.media_type, &r.blob, &target, now) {
            Ok(signer) => evidence.signatures.push(VerifiedSignature {
                digest: digest.to_string(),
                signer: None,
                notation: Some(signer),
            }),
            Err(why) => evidence
                .rejected
                .push(format!("Notation signature {}: {why}", r.digest)),
        }
    }
    Ok(evidence)
}
