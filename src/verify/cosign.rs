//! cosign's legacy signature layout: the `sha256-<hex>.sig` tag holds an OCI
//! manifest whose layers are simple-signing payloads, each with its signature
//! in the `dev.cosignproject.cosign/signature` annotation.
//!
//! A signature counts only when it verifies over the exact payload bytes and
//! the payload's `critical.image.docker-manifest-digest` is the admitted
//! digest. As cosign does, `docker-reference` is not required to name the
//! admitted repository: signatures are copied between registries with the
//! image, and only the digest binds.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use crate::model::keys::VerificationKey;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation carrying the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The simple-signing `critical.type` cosign writes.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// Largest payload layer fetched.
pub use crate::limits::MAX_PAYLOAD_BYTES;
/// Most layers read from one signature manifest.
pub use crate::limits::MAX_SIGNATURE_LAYERS;

/// One signature layer: its payload and annotations, as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The exact payload bytes (signed as-is).
    pub payload: Vec<u8>,
    /// The layer's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl SignatureLayer {
    /// The base64 signature annotation.
    pub fn signature_b64(&self) -> Option<&str> {
        self.annotations
            .get(SIGNATURE_ANNOTATION)
            .map(String::as_str)
    }
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: CriticalImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Why one signature layer did not count.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// No signature annotation.
    #[error("signature layer has no {SIGNATURE_ANNOTATION} annotation")]
    MissingSignature,
    /// The annotation is not base64.
    #[error("signature is not valid base64")]
    MalformedSignature,
    /// Cryptographic failure.
    #[error("signature does not verify with key {authority}")]
    BadSignature {
        /// Authority whose key was tried.
        authority: String,
    },
    /// Signed, but the payload is not a cosign simple-signing document.
    #[error("signature payload is not a cosign simple-signing payload: {0}")]
    MalformedPayload(String),
    /// Evidence beyond the bare signature did not hold (certificate chain,
    /// identity, Rekor entry, SCT, timestamp, attestation subject or
    /// signature); the text names which. Used by key and keyless checks.
    #[error("{0}")]
    Evidence(String),
    /// Verified, but signed by an identity no rule accepts.
    #[error("certificate identity {subject} issued by {issuer} matches none of: {expected}")]
    IdentityMismatch {
        /// SAN of the certificate.
        subject: String,
        /// OIDC issuer of the certificate.
        issuer: String,
        /// The accepted identities.
        expected: String,
    },
    /// Verified, by an accepted identity, but claims it requires differ.
    #[error("certificate of {subject} issued by {issuer}: {differ}")]
    ClaimMismatch {
        /// SAN of the certificate.
        subject: String,
        /// OIDC issuer of the certificate.
        issuer: String,
        /// Each claim that differs: `<claim> is <found>, wanted <wanted>`.
        differ: String,
    },
    /// Signed, but for another image.
    #[error("signature payload names {signed}, image is {admitted}")]
    DigestMismatch {
        /// Digest in the payload.
        signed: String,
        /// Digest being admitted.
        admitted: String,
    },
}

impl Rejection {
    /// How informative the reason is when several layers fail: a valid
    /// signature over the wrong digest says more than a bad signature.
    pub fn rank(&self) -> u8 {
        match self {
            Rejection::ClaimMismatch { .. } => 6,
            Rejection::IdentityMismatch { .. } => 5,
            Rejection::DigestMismatch { .. } => 4,
            Rejection::Evidence(_) | Rejection::MalformedPayload(_) => 3,
            Rejection::BadSignature { .. } => 2,
            Rejection::MalformedSignature => 1,
            Rejection::MissingSignature => 0,
        }
    }
}

/// Checks one layer against a key and the admitted digest.
pub fn verify_layer(
    layer: &SignatureLayer,
    admitted_digest: &str,
    key: &VerificationKey,
    authority: &str,
) -> Result<(), Rejection> {
    let sig_b64 = layer.signature_b64().ok_or(Rejection::MissingSignature)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.trim())
        .map_err(|_| Rejection::MalformedSignature)?;
    if !key.verify(&layer.payload, &sig) {
        return Err(Rejection::BadSignature {
            authority: authority.to_string(),
        });
    }
    check_payload(&layer.payload, admitted_digest)
}

/// Checks that a (verified) payload is a cosign signature for `admitted_digest`.
pub fn check_payload(payload: &[u8], admitted_digest: &str) -> Result<(), Rejection> {
    super::strict_bundle::unique_keys(payload).map_err(Rejection::MalformedPayload)?;
    let ss: SimpleSigning =
        serde_json::from_slice(payload).map_err(|e| Rejection::MalformedPayload(e.to_string()))?;
    if ss.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(Rejection::MalformedPayload(format!(
            "critical.type is {:?}",
            ss.critical.kind
        )));
    }
    if ss.critical.image.docker_manifest_digest != admitted_digest {
        return Err(Rejection::DigestMismatch {
            signed: ss.critical.image.docker_manifest_digest,
            admitted: admitted_digest.to_string(),
        });
    }
    Ok(())
}

/// The outcome of checking every layer with `check`: the first success, else
/// the most informative rejection.
pub fn first_verified<T>(
    layers: &[SignatureLayer],
    mut check: impl FnMut(&SignatureLayer) -> Result<T, Rejection>,
) -> Result<T, Rejection> {
    let mut best: Option<Rejection> = None;
    for layer in layers {
        match check(layer) {
            Ok(v) => return Ok(v),
            Err(r) => {
                if best.as_ref().is_none_or(|b| r.rank() > b.rank()) {
                    best = Some(r);
                }
            }
        }
    }
    Err(best.unwrap_or(Rejection::MissingSignature))
}

/// The outcome of checking every layer against one key: `Ok` when one
/// verifies, else the most informative rejection.
pub fn verify_any(
    layers: &[SignatureLayer],
    admitted_digest: &str,
    key: &VerificationKey,
    authority: &str,
) -> Result<(), Rejection> {
    first_verified(layers, |l| verify_layer(l, admitted_digest, key, authority))
}
