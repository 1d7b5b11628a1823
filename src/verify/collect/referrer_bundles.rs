//! Collector for `signatureFormat: bundle`: the image's OCI referrers
//! (Sigstore bundles and cosign OCI 1.1 signature artifacts), or the bundles
//! GitHub's attestation API lists (`source[].githubAttestations`), each
//! verified for the admitted digest before it counts as a signature or
//! attestation.

use super::sources::{referrers, signer, Sources};
use crate::image::ImageRef;
use crate::policy::{CompiledAuthority, GithubSource};
use crate::verify::evidence::{Evidence, Source};
use crate::verify::fetch::Checked;
use crate::verify::outcome::Failure;
use crate::verify::referrers::{verify_referrer, Referrer, ReferrerKind, VerifiedReferrer};

/// The verified referrers of `image@digest` for authority `a`, each
/// checked as it arrives (only what verified is kept).
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
) -> Result<Evidence, Failure> {
    let signer = signer(sources, a);
    let check = |r: Referrer| match &signer {
        Ok(signer) => verify_referrer(&r, digest, signer)
            .map_err(|why| format!("referrer {}: {why}", r.digest)),
        // Reported below, once there is something to verify.
        Err(_) => Err(String::new()),
    };
    // Notation signatures are the notation collector's.
    let wanted = |kind: ReferrerKind| kind != ReferrerKind::Notation;
    let (nothing_found, checked) = match &a.github {
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
            let mut checked = Checked::default();
            for r in found.iter().filter(|r| wanted(r.kind)) {
                checked.candidates += 1;
                match check(r.clone()) {
                    Ok(v) => checked.passed.push(v),
                    Err(why) => checked.rejected.push(why),
                }
            }
            (
                format!(
                    "GitHub lists no attestations of {digest} for {}",
                    github_scope(github)
                ),
                checked,
            )
        }
        None => {
            let (registry, repository, checked) =
                referrers(sources, image, digest, a, wanted, check).await?;
            (
                format!("no signature or attestation referrers found for {registry}/{repository}@{digest}"),
                checked,
            )
        }
    };
    if checked.candidates == 0 {
        return Err(Failure::Verdict(nothing_found));
    }
    signer?;
    let mut evidence = Evidence {
        source: Source::Referrers,
        candidates: checked.candidates,
        // Nothing silently cut: what was not read leads the reasons.
        rejected: checked.unread.into_iter().chain(checked.rejected).collect(),
        ..Evidence::default()
    };
    for verified in checked.passed {
        match verified {
            VerifiedReferrer::Signature(s) => evidence.signatures.push(s),
            VerifiedReferrer::Attestation(v) => evidence.attestations.push(v),
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
