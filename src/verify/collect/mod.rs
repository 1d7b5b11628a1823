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

mod index_attestations;
mod legacy_attestations;
mod legacy_signatures;
mod notation_signatures;
mod referrer_bundles;
mod sources;

pub use sources::Sources;

use super::evidence::{Evidence, Source};
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
    let mut evidence = match layout {
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
    if wants_index(a, layout, &evidence) {
        evidence = with_index_attestations(sources, image, digest, a, layout, evidence).await;
    }
    crate::metrics::global().verification(layout.name(), started.elapsed());
    evidence
}

/// Whether BuildKit's attestations inside the admitted index may be
/// needed: the authority wants attestations, reads a cosign layout, and
/// what that layout held does not already have a Statement of every wanted
/// predicate type (or held nothing at all). Checking this first spares
/// every other image the read of its manifest.
fn wants_index(
    a: &CompiledAuthority,
    layout: Layout,
    evidence: &Result<Evidence, Failure>,
) -> bool {
    if a.attestations.is_empty()
        || !matches!(layout, Layout::LegacyAttestations | Layout::ReferrerBundles)
    {
        return false;
    }
    match evidence {
        Err(Failure::Transient(_)) => false,
        Err(Failure::Verdict(_)) => true,
        Ok(e) => a.attestations.iter().any(|w| {
            !e.attestations
                .iter()
                .any(|v| v.predicate_type == w.predicate_type)
        }),
    }
}

/// `evidence` with the Statements of the admitted index's attestation
/// manifests, when the admitted digest is an index and a signature of this
/// authority over it verifies: the signer signed the index, which names
/// them by digest. A platform manifest admitted directly is judged on its
/// own evidence only (no index's signature covers a digest it cannot see).
async fn with_index_attestations(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
    a: &CompiledAuthority,
    layout: Layout,
    evidence: Result<Evidence, Failure>,
) -> Result<Evidence, Failure> {
    // The index and, for the legacy layout, its `.sig` signature are read
    // at once: the signature is needed only when the digest is an index,
    // and an image that gets here fails anyway without one.
    let (index, legacy_signature) = match layout {
        Layout::ReferrerBundles => (
            index_attestations::layout(sources, image, digest).await,
            None,
        ),
        _ => {
            let (index, signature) = futures::join!(
                index_attestations::layout(sources, image, digest),
                legacy_signatures::collect(sources, image, digest, a)
            );
            (index, Some(signature))
        }
    };
    let index = match index? {
        Some(index) => index,
        None => return evidence,
    };
    // Why nothing inside the index counts: first among the reasons, or
    // added to the layout's own failure.
    let without = |evidence: Result<Evidence, Failure>, why: String| match evidence {
        Ok(mut e) => {
            e.rejected.insert(0, why);
            Ok(e)
        }
        Err(f) => Err(Failure::Verdict(format!("{}; {why}", f.reason()))),
    };
    if index.attestations.is_empty() {
        let mut why =
            "the image index holds no BuildKit attestation manifest for its platforms".to_string();
        if let Some(r) = index.rejected.first() {
            why.push_str(&format!(" ({r})"));
        }
        return without(evidence, why);
    }
    // The authority's signature over the index: a referrer bundle read
    // already, or its `.sig` tag.
    let signed = match layout {
        Layout::ReferrerBundles => Ok(evidence
            .as_ref()
            .ok()
            .into_iter()
            .flat_map(|e| e.signatures.iter())
            .find(|s| s.digest == digest)
            .cloned()),
        _ => match legacy_signature.unwrap_or_else(|| Ok(Evidence::default())) {
            Ok(e) => match e.signatures.into_iter().find(|s| s.digest == digest) {
                Some(s) => Ok(Some(s)),
                None => Err(e.rejected.first().cloned().unwrap_or_default()),
            },
            Err(f) if f.is_transient() => return Err(f),
            Err(f) => Err(f.reason().to_string()),
        },
    };
    match signed {
        Ok(Some(signature)) => {
            let mut evidence = match evidence {
                Ok(e) => e,
                Err(f) => Evidence {
                    source: if layout == Layout::ReferrerBundles {
                        Source::Referrers
                    } else {
                        Source::AttestationTag
                    },
                    rejected: vec![f.reason().to_string()],
                    ..Evidence::default()
                },
            };
            evidence.index = Some(
                index_attestations::collect(sources, image, index, a, signature.signer).await?,
            );
            Ok(evidence)
        }
        Ok(None) | Err(_) => {
            let why = match signed {
                Err(why) if !why.is_empty() => format!(": {why}"),
                _ => String::new(),
            };
            let why = format!(
                "the image index holds BuildKit attestations ({} attestation manifest{}), but no signature of {} over the index verified{why}",
                index.attestations.len(),
                if index.attestations.len() == 1 { "" } else { "s" },
                a.name
            );
            without(evidence, why)
        }
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
