//! What every collector reads with, and the reads they share: the
//! authority's signer, where its signatures live, a cosign tag's layers.

use oci_client::Reference;

use crate::image::{cosign_tag, ImageRef};
use crate::policy::CompiledAuthority;
use crate::registry::Credentials;
use crate::trust::TrustStore;
use crate::verify::cosign::SignatureLayer;
use crate::verify::fetch::{Checked, Fetcher};
use crate::verify::outcome::Failure;
use crate::verify::referrers::{Referrer, ReferrerKind};
use crate::verify::signer::Signer;

/// What collectors read with: the cached registry, the trust roots and the
/// request namespace's pull secrets.
pub struct Sources<'a> {
    /// Cached registry reads.
    pub fetch: &'a Fetcher,
    /// Trusted roots.
    pub trust: &'a TrustStore,
    /// The namespace's pull-secret credentials.
    pub creds: &'a Credentials,
}

/// The authority's signer with its trust root resolved. Its error is
/// reported after the fetch, so that "nothing there" comes before a
/// trust-root problem.
pub(super) fn signer<'a>(
    sources: &Sources<'_>,
    a: &'a CompiledAuthority,
) -> Result<Signer<'a>, Failure> {
    match Signer::of(a, sources.trust) {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(Failure::Verdict(e.to_string())),
        // Layout::of gave a layout, so the authority has a key or identity.
        None => Err(Failure::Verdict(
            "only key and keyless authorities carry signatures".into(),
        )),
    }
}

/// Where an authority's signatures live: `source[].oci`, else beside the image.
pub(super) fn signature_home(image: &ImageRef, a: &CompiledAuthority) -> (String, String) {
    match &a.signature_repository {
        Some(r) => (r.registry.clone(), r.repository.clone()),
        None => (image.registry.clone(), image.repository.clone()),
    }
}

/// The OCI referrers of `image@digest` where authority `a`'s signatures
/// live, of the kinds `wanted` takes, each checked by `check` as it
/// arrives (only what passes is kept).
pub(super) async fn referrers<T, R>(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
    wanted: impl Fn(ReferrerKind) -> bool,
    check: impl Fn(Referrer) -> Result<T, R>,
) -> Result<(String, String, Checked<T, R>), Failure> {
    let (registry, repository) = signature_home(image, a);
    let found = sources
        .fetch
        .referrers(&registry, &repository, digest, sources.creds, wanted, check)
        .await
        .map_err(|e| {
            Failure::registry(
                format!("cannot fetch referrers of {registry}/{repository}@{digest}: {e}"),
                &e,
            )
        })?;
    Ok((registry, repository, found))
}

/// The layers of the cosign tag `sha256-<hex>.<suffix>` for an authority,
/// each checked by `check` as it arrives until `enough`; none at all is a
/// failure naming what was looked for.
pub(super) async fn cosign_tag_layers<T, R>(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
    suffix: &str,
    check: impl Fn(SignatureLayer) -> Result<T, R>,
    enough: impl Fn(&[T]) -> bool,
) -> Result<Checked<T, R>, Failure> {
    let (registry, repository) = signature_home(image, a);
    let sig_ref = Reference::with_tag(
        registry,
        repository,
        format!("{}{}", a.signature_tag_prefix, cosign_tag(digest, suffix)),
    );
    let budget = if suffix == "att" {
        crate::limits::MAX_ATTESTATION_TAG_BYTES
    } else {
        crate::limits::MAX_SIGNATURE_TAG_BYTES
    };
    match sources
        .fetch
        .cosign_layers(&sig_ref, sources.creds, budget, check, enough)
        .await
    {
        Err(e) => Err(Failure::registry(
            format!("cannot fetch signatures from {}: {e}", sig_ref.whole()),
            &e,
        )),
        Ok(Some(checked)) if checked.candidates > 0 => Ok(checked),
        Ok(_) => Err(Failure::Verdict(format!(
            "no {} found at {}",
            if suffix == "att" {
                "attestations"
            } else {
                "signatures"
            },
            sig_ref.whole()
        ))),
    }
}
