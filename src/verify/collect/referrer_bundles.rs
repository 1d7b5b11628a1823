//! Collector for `signatureFormat: bundle`: the image's OCI referrers
//! (Sigstore bundles and cosign OCI 1.1 signature artifacts), or the bundles
//! GitHub's attestation API lists (`source[].githubAttestations`), each
//! verified for the admitted digest before it counts as a signature or
//! attestation.

use super::sources::{referrers, signer, Sources};
use crate::image::ImageRef;
use crate::policy::{CompiledAuthority, GithubSource};
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
    let (nothing_found, found) = match &a.github {
        Some(github) => {
            let found = sources
                .fetch
                .github_attestations(github, digest)
                .await
                .map_err(|e| {
                    Failure::registry(
                        format!(
                            "cannot list GitHub attestations of {digest} for {}: {e}",
                            github_scope(github)
                        ),
                        &e,
                    )
                })?;
            (
                format!(
                    "GitHub lists no attestations of {digest} for {}",
                    github_scope(github)
                ),
                found,
            )
        }
        None => {
            let (registry, repository, found) = referrers(sources, image, digest, a).await?;
            (
                format!("no signature or attestation referrers found for {registry}/{repository}@{digest}"),
                found,
            )
        }
    };
    // Notation signatures are the notation collector's.
    let found: Vec<&Referrer> = found
        .iter()
        .filter(|r| r.kind != ReferrerKind::Notation)
        .collect();
    if found.is_empty() {
        return Err(Failure::Verdict(nothing_found));
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

/// `owner` or `owner/repository` on the API's host, for messages.
fn github_scope(g: &GithubSource) -> String {
    let host = g.api.trim_start_matches("https://");
    match &g.repository {
        Some(r) => format!("{}/{r} on {host}", g.owner),
        None => format!("{} on {host}", g.owner),
    }
}
