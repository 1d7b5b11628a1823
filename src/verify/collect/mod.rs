//! Evidence collectors: one per signature layout. A collector fetches what
//! its layout stores for one authority and one admitted digest, verifies
//! each candidate cryptographically (signature, chain, identity, logs,
//! subject digest), and returns the [`Evidence`] that verified, with why
//! the rest did not; or a [`Failure`] when nothing could be read.
//!
//! Collectors decide nothing about the policy (that is the judge's) and
//! cache nothing (the [`Fetcher`] does). Which collector applies to an
//! authority is [`Layout::of`], in one place. A new signature format
//! (as Notation was) is one new file here and one new [`Layout`] variant.

mod legacy_attestations;
mod legacy_signatures;
mod notation_signatures;
mod referrer_bundles;
mod sources;

pub use sources::Sources;

use super::evidence::Evidence;
use super::outcome::Failure;
use crate::image::ImageRef;
use crate::model::notation::Level;
use crate::policy::{AuthorityCheck, CompiledAuthority};

/// Where an authority's evidence is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cosign's `sha256-<hex>.sig` tag: simple-signing layers.
    LegacySignatures,
    /// cosign's `sha256-<hex>.att` tag: DSSE in-toto layers.
    LegacyAttestations,
    /// OCI referrers: Sigstore bundles and cosign OCI 1.1 signatures.
    ReferrerBundles,
    /// OCI referrers: Notation signature envelopes (JWS, COSE).
    NotationSignatures,
}

impl Layout {
    /// The layout an authority reads, or `None` when it needs no evidence
    /// (static and unsupported authorities, and Notation's `skip` level).
    /// A `notation` authority reads Notation referrers. `signatureFormat: bundle`
    /// reads referrers for signatures and attestations alike; otherwise an
    /// authority with `attestations` reads `.att`, one without reads `.sig`.
    pub fn of(a: &CompiledAuthority) -> Option<Layout> {
        match a.check {
            AuthorityCheck::Static { .. } | AuthorityCheck::Unsupported { .. } => None,
            AuthorityCheck::Notation(ref p) => {
                (p.level != Level::Skip).then_some(Layout::NotationSignatures)
            }
            AuthorityCheck::Key { .. } | AuthorityCheck::Keyless(_) => Some(if a.bundle_format {
                Layout::ReferrerBundles
            } else if a.attestations.is_empty() {
                Layout::LegacySignatures
            } else {
                Layout::LegacyAttestations
            }),
        }
    }

    /// The layout's name in metrics and docs.
    pub fn name(self) -> &'static str {
        match self {
            Layout::LegacySignatures => "legacy_signatures",
            Layout::LegacyAttestations => "legacy_attestations",
            Layout::ReferrerBundles => "referrer_bundles",
            Layout::NotationSignatures => "notation_signatures",
        }
    }
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
    let started = std::time::Instant::now();
    let evidence = match layout {
        Layout::LegacySignatures => legacy_signatures::collect(sources, image, digest, a).await,
        Layout::LegacyAttestations => legacy_attestations::collect(sources, image, digest, a).await,
        Layout::ReferrerBundles => referrer_bundles::collect(sources, image, digest, a).await,
        Layout::NotationSignatures => match &a.check {
            AuthorityCheck::Notation(policy) => {
                notation_signatures::collect(sources, image, digest, a, policy).await
            }
            _ => Ok(Evidence::default()),
        },
    };
    crate::metrics::global().verification(layout.name(), started.elapsed());
    evidence
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
            layout("key: {kms: 'gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k'}"),
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
