//! Evidence collectors: one per signature layout. A collector fetches what
//! its layout stores for one authority and one admitted digest, verifies
//! each candidate cryptographically (signature, chain, identity, logs,
//! subject digest), and returns the [`Evidence`] that verified, with why
//! the rest did not; or a [`Failure`] when nothing could be read.
//!
//! Collectors decide nothing about the policy (that is the judge's) and
//! cache nothing (the [`Fetcher`] does). Which collector applies to an
//! authority is [`Layout::of`], in one place. A new signature format
//! (Notation, say) is one new file here and one new [`Layout`] variant.

mod legacy_attestations;
mod legacy_signatures;
mod referrer_bundles;

use std::sync::Arc;

use oci_client::Reference;

use super::cosign::SignatureLayer;
use super::evidence::Evidence;
use super::fetch::Fetcher;
use super::outcome::Failure;
use super::signer::Signer;
use crate::image::{cosign_tag, ImageRef};
use crate::policy::{AuthorityCheck, CompiledAuthority};
use crate::registry::Credentials;
use crate::trust::TrustStore;

/// Where an authority's evidence is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cosign's `sha256-<hex>.sig` tag: simple-signing layers.
    LegacySignatures,
    /// cosign's `sha256-<hex>.att` tag: DSSE in-toto layers.
    LegacyAttestations,
    /// OCI referrers: Sigstore bundles and cosign OCI 1.1 signatures.
    ReferrerBundles,
}

impl Layout {
    /// The layout an authority reads, or `None` when it needs no evidence
    /// (static and unsupported authorities). `signatureFormat: bundle`
    /// reads referrers for signatures and attestations alike; otherwise an
    /// authority with `attestations` reads `.att`, one without reads `.sig`.
    pub fn of(a: &CompiledAuthority) -> Option<Layout> {
        match a.check {
            AuthorityCheck::Static { .. } | AuthorityCheck::Unsupported { .. } => None,
            AuthorityCheck::Key { .. } | AuthorityCheck::Keyless(_) => Some(if a.bundle_format {
                Layout::ReferrerBundles
            } else if a.attestations.is_empty() {
                Layout::LegacySignatures
            } else {
                Layout::LegacyAttestations
            }),
        }
    }
}

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

/// The evidence authority `a` vouches with for `image@digest`: what its
/// layout holds, verified. Static authorities collect nothing.
pub async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
) -> Result<Evidence, Failure> {
    let Some(layout) = Layout::of(a) else {
        return Ok(Evidence::default());
    };
    match layout {
        Layout::LegacySignatures => legacy_signatures::collect(sources, image, digest, a).await,
        Layout::LegacyAttestations => legacy_attestations::collect(sources, image, digest, a).await,
        Layout::ReferrerBundles => referrer_bundles::collect(sources, image, digest, a).await,
    }
}

/// The authority's signer with its trust root resolved. Called after the
/// fetch, so that "nothing there" is reported before a trust-root problem.
fn signer<'a>(sources: &Sources<'_>, a: &'a CompiledAuthority) -> Result<Signer<'a>, Failure> {
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
fn signature_home(image: &ImageRef, a: &CompiledAuthority) -> (String, String) {
    match &a.signature_repository {
        Some(r) => (r.registry.clone(), r.repository.clone()),
        None => (image.registry.clone(), image.repository.clone()),
    }
}

/// The layers of the cosign tag `sha256-<hex>.<suffix>` for an authority;
/// none at all is a failure naming what was looked for.
async fn cosign_tag_layers(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
    suffix: &str,
) -> Result<Arc<Vec<SignatureLayer>>, Failure> {
    let (registry, repository) = signature_home(image, a);
    let sig_ref = Reference::with_tag(
        registry,
        repository,
        format!("{}{}", a.signature_tag_prefix, cosign_tag(digest, suffix)),
    );
    match sources.fetch.cosign_layers(&sig_ref, sources.creds).await {
        Err(e) => Err(Failure::registry(
            format!("cannot fetch signatures from {}: {e}", sig_ref.whole()),
            &e,
        )),
        Ok(layers) if layers.is_empty() => Err(Failure::Verdict(format!(
            "no {} found at {}",
            if suffix == "att" {
                "attestations"
            } else {
                "signatures"
            },
            sig_ref.whole()
        ))),
        Ok(layers) => Ok(layers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::compile;

    const KEY: &str = include_str!("../../../tests/fixtures/containers-image/cosign.pub");

    fn layout(authority: &str) -> Option<Layout> {
        let key: String = KEY.lines().map(|l| format!("        {l}\n")).collect();
        let yaml = format!(
            "images: [{{glob: '**'}}]\nauthorities:\n  - {}",
            authority.replace("{key}", &format!("|\n{key}"))
        );
        let p = compile("p", &serde_saphyr::from_str(&yaml).unwrap()).unwrap();
        Layout::of(&p.authorities[0])
    }

    #[test]
    fn each_authority_reads_exactly_one_layout() {
        assert_eq!(layout("static: {action: pass}"), None);
        assert_eq!(
            layout("key: {kms: 'awskms:///arn:aws:kms:us-east-1:123456789012:key/abc'}"),
            None
        );
        assert_eq!(
            layout("key:\n      data: {key}"),
            Some(Layout::LegacySignatures)
        );
        assert_eq!(
            layout("key:\n      data: {key}    attestations: [{name: a, predicateType: spdx}]\n"),
            Some(Layout::LegacyAttestations)
        );
        // The bundle format wins, for signatures and attestations alike.
        assert_eq!(
            layout("signatureFormat: bundle\n    key:\n      data: {key}"),
            Some(Layout::ReferrerBundles)
        );
        assert_eq!(
            layout("signatureFormat: bundle\n    key:\n      data: {key}    attestations: [{name: a, predicateType: spdx}]\n"),
            Some(Layout::ReferrerBundles)
        );
    }
}
