//! The Sigstore bundle / OCI 1.1 referrers layout (`signatureFormat:
//! bundle`): signatures and attestations are artifacts whose `subject` is the
//! image, found with the referrers API or, on registries without it (such as
//! distribution 2.8), the `sha256-<hex>` referrers tag index.
//!
//! Two kinds of referrer are read: Sigstore bundles (v0.1–v0.3; a DSSE
//! envelope with the `https://sigstore.dev/cosign/sign/v1` predicate is a
//! signature, any other predicate an attestation; a message signature over
//! the image digest is a signature), and cosign's OCI 1.1 signature
//! artifacts (a simple-signing layer, as in the legacy layout). Every
//! referrer is verified before it counts — signature, certificate chain,
//! SET or inclusion proof with checkpoint, subject digest; an unverified one
//! is ignored and the reason kept for the message.

use std::collections::BTreeMap;

use oci_client::manifest::ImageIndexEntry;
use oci_client::Reference;
use sigstore_types::{Artifact, DerPublicKey, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy};

use super::attestation::sha256_of;
use super::cosign::{self, SignatureLayer, MAX_PAYLOAD_BYTES};
use super::evidence::{VerifiedAttestation, VerifiedSignature};
use super::keyless::{self, SignerIdentity};
use super::legacy_evidence::{self, describe_verify_error};
use super::signer::Signer;
use super::strict_bundle;
use crate::model::identity::CertificateTrust;
use crate::registry::{RegistryClient, RegistryError};

/// Artifact types of Sigstore bundles start with this.
pub const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// cosign's OCI 1.1 signature artifact type.
pub const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The predicate of a cosign image signature made as a DSSE bundle.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Notation's signature artifact type (older Notation writes it as the
/// config media type instead).
pub const NOTATION_SIGNATURE_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
/// Most referrers read for one image.
pub use crate::limits::MAX_REFERRERS;

/// What a referrer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrerKind {
    /// A Sigstore bundle.
    Bundle,
    /// A cosign simple-signing signature.
    CosignSignature,
    /// A Notation signature envelope (read by `notation` authorities only).
    Notation,
}

/// One referrer, fetched.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// Its manifest digest (used in messages).
    pub digest: String,
    /// What it holds.
    pub kind: ReferrerKind,
    /// The bundle JSON, the simple-signing payload, or the Notation envelope.
    pub blob: Vec<u8>,
    /// The layer's media type (a Notation envelope's format).
    pub media_type: String,
    /// The layer's annotations (signature, certificate, Rekor bundle).
    pub annotations: BTreeMap<String, String>,
}

/// Fetches one referrer listed for an image, if it is of a kind sigil
/// reads: its manifest (which says what it is; the index entry's artifact
/// type is the registry's word, and go-containerregistry's fallback tag
/// index records the config media type there), then its first layer.
/// `Ok(None)` for anything else.
pub async fn fetch_referrer(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    entry: &ImageIndexEntry,
) -> Result<Option<Referrer>, RegistryError> {
    let reference =
        Reference::with_digest(registry.into(), repository.into(), entry.digest.clone());
    let Some((manifest, _)) = client.image_manifest(&reference).await? else {
        return Ok(None);
    };
    let Some(kind) = referrer_kind(&manifest) else {
        return Ok(None);
    };
    let Some(layer) = manifest.layers.first() else {
        return Ok(None);
    };
    let blob = client.blob(&reference, layer, MAX_PAYLOAD_BYTES).await?;
    Ok(Some(Referrer {
        digest: entry.digest.clone(),
        kind,
        blob,
        media_type: layer.media_type.clone(),
        annotations: layer
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }))
}

/// The OCI empty descriptor's media type: says nothing about what an artifact is.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// What a referrer manifest holds, from its `artifactType`, else its config
/// media type, else its first layer's media type (the first of these that
/// is set and not the empty type decides); `None` for what sigil does not read.
pub fn referrer_kind(manifest: &oci_client::manifest::OciImageManifest) -> Option<ReferrerKind> {
    let decisive = manifest
        .artifact_type
        .as_deref()
        .into_iter()
        .chain(std::iter::once(manifest.config.media_type.as_str()))
        .chain(manifest.layers.first().map(|l| l.media_type.as_str()))
        .find(|t| !t.is_empty() && *t != EMPTY_MEDIA_TYPE)?;
    if decisive.starts_with(BUNDLE_MEDIA_TYPE_PREFIX) {
        Some(ReferrerKind::Bundle)
    } else if decisive == COSIGN_SIGNATURE_ARTIFACT || decisive == cosign::SIMPLE_SIGNING_MEDIA_TYPE
    {
        Some(ReferrerKind::CosignSignature)
    } else if decisive == NOTATION_SIGNATURE_ARTIFACT {
        Some(ReferrerKind::Notation)
    } else {
        None
    }
}

/// A verified referrer.
#[derive(Debug, Clone)]
pub enum VerifiedReferrer {
    /// A signature of the image.
    Signature(VerifiedSignature),
    /// An attestation about the image.
    Attestation(VerifiedAttestation),
}

/// Verifies one referrer for `admitted_digest`; `Err` says why it does not count.
pub fn verify_referrer(
    r: &Referrer,
    admitted_digest: &str,
    signer: &Signer<'_>,
) -> Result<VerifiedReferrer, String> {
    match r.kind {
        ReferrerKind::CosignSignature => {
            let layer = SignatureLayer {
                payload: r.blob.clone(),
                annotations: r.annotations.clone(),
            };
            match signer {
                Signer::Key { key, trust, .. } => {
                    cosign::verify_layer(&layer, admitted_digest, key, "the authority's key")
                        .map_err(|e| e.to_string())?;
                    if signer.requires_tlog() || signer.requires_timestamp() {
                        legacy_evidence::verify_key_evidence(
                            &layer,
                            key,
                            trust,
                            signer.requires_tlog(),
                            signer.requires_timestamp(),
                        )
                        .map_err(|e| e.to_string())?;
                    }
                    Ok(signature(admitted_digest, None))
                }
                Signer::Keyless { policy, trust } => {
                    keyless::verify_keyless_layer(&layer, admitted_digest, policy, trust)
                        .map(|s| signature(admitted_digest, Some(s)))
                        .map_err(|e| e.to_string())
                }
            }
        }
        ReferrerKind::Bundle => verify_bundle_referrer(r, admitted_digest, signer),
        ReferrerKind::Notation => {
            Err("a Notation signature, read only by notation authorities".into())
        }
    }
}

fn verify_bundle_referrer(
    r: &Referrer,
    admitted_digest: &str,
    signer: &Signer<'_>,
) -> Result<VerifiedReferrer, String> {
    let strict = strict_bundle::read(&r.blob).map_err(|e| format!("bundle is malformed: {e}"))?;
    let trust = match signer {
        Signer::Key { trust, .. } | Signer::Keyless { trust, .. } => trust,
    };
    strict_bundle::check_against(&strict.facts, &trust.facts)?;
    let bundle = strict.bundle;
    let digest = sha256_of(admitted_digest)
        .ok_or_else(|| format!("{admitted_digest} is not a sha256 digest"))?;
    let has_tlog = !bundle.verification_material.tlog_entries.is_empty();
    let identity = match signer {
        Signer::Key { key, trust, .. } => {
            if signer.requires_tlog() && !has_tlog {
                return Err("bundle has no transparency log entry, which ctlog requires".into());
            }
            let timestamps = bundle
                .verification_material
                .timestamp_verification_data
                .rfc3161_timestamps
                .len();
            if signer.requires_timestamp() && timestamps == 0 {
                return Err(
                    "bundle has no RFC 3161 timestamp, which rfc3161timestamp requires".into(),
                );
            }
            let mut policy =
                PublicKeyVerificationPolicy::new(DerPublicKey::new(key.spki_der().to_vec()));
            if !has_tlog {
                // Its RFC 3161 timestamp is then the signing-time evidence.
                policy = policy.skip_tlog_unsafe();
            }
            trust
                .verifier
                .verify(Artifact::from(digest), &bundle, &policy)
                .map_err(|e| describe_verify_error(&e))?;
            None
        }
        Signer::Keyless { policy, trust } => {
            if let CertificateTrust::PrivateCa(_) = policy.trust {
                return Err("bundles are verified against trust roots; a ca-cert authority reads only the legacy layout".into());
            }
            let mut vp = VerificationPolicy::any_identity();
            if !policy.verify_sct {
                vp = vp.skip_sct();
            }
            let timestamps = bundle
                .verification_material
                .timestamp_verification_data
                .rfc3161_timestamps
                .len();
            if policy.require_timestamp && timestamps == 0 {
                return Err(
                    "bundle has no RFC 3161 timestamp, which rfc3161timestamp requires".into(),
                );
            }
            if !has_tlog {
                if policy.tlog_required(!trust.root.tlogs.is_empty()) {
                    return Err("bundle has no transparency log entry; this authority needs one (a TSA timestamp stands in only with rfc3161timestamp, no ctlog, and a trust root that has no transparency log)".into());
                }
                // The TSA's timestamp (required above) is then the
                // signing-time evidence the chain is checked at.
                vp = vp.skip_tlog_unsafe();
            }
            let result = trust
                .verifier
                .verify(Artifact::from(digest), &bundle, &vp)
                .map_err(|e| match e {
                    // A DSSE Statement whose subjects do not name the digest.
                    sigstore_verify::Error::ArtifactMismatch(m)
                        if matches!(bundle.content, SignatureContent::DsseEnvelope(_)) =>
                    {
                        format!("the bundle is not about this image: {m}")
                    }
                    e => describe_verify_error(&e),
                })?;
            let signer = SignerIdentity {
                subject: result
                    .identity()
                    .map(|i| i.as_str().to_string())
                    .unwrap_or_default(),
                issuer: result.issuer().unwrap_or_default().to_string(),
                integrated_time: result.integrated_time().map(|t| t.to_string()),
                all_claims: result
                    .certificate()
                    .map(keyless::claims_of)
                    .unwrap_or_default(),
                ..Default::default()
            };
            Some(keyless::match_identity(policy, signer).map_err(|e| e.to_string())?)
        }
    };
    // Verified: the content may now be read.
    match &bundle.content {
        SignatureContent::MessageSignature(_) => Ok(signature(admitted_digest, identity)),
        SignatureContent::DsseEnvelope(envelope) => {
            let statement: serde_json::Value = serde_json::from_slice(envelope.payload.as_bytes())
                .map_err(|e| format!("DSSE payload is not an in-toto Statement: {e}"))?;
            let predicate_type = statement
                .get("predicateType")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string();
            if predicate_type == COSIGN_SIGN_PREDICATE {
                Ok(signature(admitted_digest, identity))
            } else {
                Ok(VerifiedReferrer::Attestation(VerifiedAttestation {
                    digest: admitted_digest.to_string(),
                    statement,
                    predicate_type,
                    signer: identity,
                }))
            }
        }
        _ => Err("bundle content is neither a message signature nor a DSSE envelope".into()),
    }
}

fn signature(admitted_digest: &str, signer: Option<SignerIdentity>) -> VerifiedReferrer {
    VerifiedReferrer::Signature(VerifiedSignature {
        digest: admitted_digest.to_string(),
        signer,
        notation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::manifest::{OciDescriptor, OciImageManifest};

    fn manifest(artifact: Option<&str>, config: &str, layer: &str) -> OciImageManifest {
        let d = |t: &str| OciDescriptor {
            media_type: t.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 2,
            urls: None,
            annotations: None,
            artifact_type: None,
        };
        OciImageManifest {
            schema_version: 2,
            media_type: None,
            config: d(config),
            layers: vec![d(layer)],
            subject: None,
            artifact_type: artifact.map(str::to_string),
            annotations: None,
        }
    }

    #[test]
    fn the_referrer_manifest_says_what_it_is() {
        let bundle = "application/vnd.dev.sigstore.bundle.v0.3+json";
        // cosign v3 as written: artifactType set.
        assert_eq!(
            referrer_kind(&manifest(Some(bundle), EMPTY_MEDIA_TYPE, bundle)),
            Some(ReferrerKind::Bundle)
        );
        // No artifactType, empty config: the layer decides.
        assert_eq!(
            referrer_kind(&manifest(None, EMPTY_MEDIA_TYPE, bundle)),
            Some(ReferrerKind::Bundle)
        );
        assert_eq!(
            referrer_kind(&manifest(
                None,
                COSIGN_SIGNATURE_ARTIFACT,
                cosign::SIMPLE_SIGNING_MEDIA_TYPE
            )),
            Some(ReferrerKind::CosignSignature)
        );
        // A Notation signature: artifactType set, or (older Notation) the config.
        assert_eq!(
            referrer_kind(&manifest(
                Some("application/vnd.cncf.notary.signature"),
                EMPTY_MEDIA_TYPE,
                "application/jose+json"
            )),
            Some(ReferrerKind::Notation)
        );
        assert_eq!(
            referrer_kind(&manifest(
                None,
                "application/vnd.cncf.notary.signature",
                "application/cose"
            )),
            Some(ReferrerKind::Notation)
        );
        // Something else (an SBOM): not read.
        assert_eq!(
            referrer_kind(&manifest(
                Some("application/spdx+json"),
                EMPTY_MEDIA_TYPE,
                "application/spdx+json"
            )),
            None
        );
    }
}
