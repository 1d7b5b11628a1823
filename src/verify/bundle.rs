//! Sigstore bundles (v0.1 – v0.3): message signatures and DSSE envelopes,
//! signed keyless (Fulcio certificate) or with a managed key, logged in Rekor
//! v1 (SET and/or inclusion proof with checkpoint) or v2 (inclusion proof
//! and RFC 3161 timestamp). Verified by `sigstore-verify` against a trust
//! root; the signer's identity is then matched by sigil's own rules, the
//! same as for legacy keyless signatures.

use sigstore_types::{DerPublicKey, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy};

use super::legacy_evidence::describe_verify_error;
use super::strict_bundle::{self, StrictBundle};
use crate::model::identity::{check_identity, IdentityMismatch, IdentityRule};
use crate::trust::TrustMaterial;

/// What a bundle must have been signed by.
#[derive(Debug, Clone)]
pub enum BundleSigner {
    /// A certificate for one of these identities.
    Identity(Vec<IdentityRule>),
    /// This public key (DER SubjectPublicKeyInfo).
    Key(Vec<u8>),
}

/// What a bundle signs.
#[derive(Debug, Clone)]
pub enum BundleArtifact {
    /// The artifact bytes.
    Bytes(Vec<u8>),
    /// Its sha256.
    Sha256([u8; 32]),
}

/// A verified bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleVerified {
    /// The certificate SAN, for keyless bundles.
    pub subject: Option<String>,
    /// The certificate's OIDC issuer, for keyless bundles.
    pub issuer: Option<String>,
    /// The claims the accepting identity required, as the certificate has
    /// them (claim → value).
    pub claims: std::collections::BTreeMap<String, String>,
}

/// Why a bundle was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    /// The JSON is not a bundle of a supported version.
    #[error("bundle is malformed: {0}")]
    Malformed(String),
    /// A cryptographic or consistency check failed.
    #[error("{0}")]
    Rejected(String),
    /// Verified, but by an identity no rule accepts.
    #[error("certificate identity {subject} issued by {issuer} matches none of: {expected}")]
    Identity {
        /// SAN of the certificate.
        subject: String,
        /// OIDC issuer.
        issuer: String,
        /// The accepted identities.
        expected: String,
    },
    /// Verified, by an accepted identity, but claims it requires differ.
    #[error("certificate of {subject} issued by {issuer}: {differ}")]
    Claims {
        /// SAN of the certificate.
        subject: String,
        /// OIDC issuer.
        issuer: String,
        /// Each claim that differs: `<claim> is <found>, wanted <wanted>`.
        differ: String,
    },
}

/// Parses bundle JSON strictly ([`strict_bundle::read`]).
pub fn parse_bundle(json: &[u8]) -> Result<StrictBundle, BundleError> {
    strict_bundle::read(json).map_err(BundleError::Malformed)
}

/// What a verification may leave out or must add (cosign's
/// `--insecure-ignore-sct`, `--insecure-ignore-tlog`,
/// `--use-signed-timestamps`); all off: SCT and log required.
#[derive(Debug, Clone, Copy, Default)]
pub struct BundleChecks {
    /// No SCT is required of the certificate.
    pub skip_sct: bool,
    /// No transparency-log entry is required.
    pub skip_tlog: bool,
    /// An RFC 3161 timestamp is required (and verified).
    pub require_timestamp: bool,
}

/// Verifies `bundle` over `artifact` against `trust`, requiring `signer`
/// and what `checks` says.
pub fn verify_bundle(
    strict: &StrictBundle,
    artifact: &BundleArtifact,
    signer: &BundleSigner,
    trust: &TrustMaterial,
    checks: BundleChecks,
) -> Result<BundleVerified, BundleError> {
    strict_bundle::check_against(&strict.facts, &trust.facts).map_err(BundleError::Rejected)?;
    let bundle = &strict.bundle;
    if checks.require_timestamp
        && bundle
            .verification_material
            .timestamp_verification_data
            .rfc3161_timestamps
            .is_empty()
    {
        return Err(BundleError::Rejected(
            "the bundle has no RFC 3161 timestamp, which --use-signed-timestamps requires".into(),
        ));
    }
    if checks.skip_tlog
        && bundle.verification_material.tlog_entries.is_empty()
        && bundle
            .verification_material
            .timestamp_verification_data
            .rfc3161_timestamps
            .is_empty()
        && matches!(signer, BundleSigner::Identity(_))
    {
        // Nothing would date the signature: the certificate, valid for
        // minutes, cannot be checked at the time it signed.
        return Err(BundleError::Rejected(
            "the bundle has neither a transparency-log entry nor an RFC 3161 timestamp: nothing dates the signature".into(),
        ));
    }
    let result = match (signer, artifact) {
        (BundleSigner::Key(spki), a) => {
            let mut policy = PublicKeyVerificationPolicy::new(DerPublicKey::new(spki.clone()));
            if checks.skip_tlog {
                policy = policy.skip_tlog_unsafe();
            }
            match a {
                BundleArtifact::Bytes(b) => trust.verifier.verify(b.as_slice(), bundle, &policy),
                BundleArtifact::Sha256(d) => {
                    trust.verifier.verify(Sha256Hash::new(*d), bundle, &policy)
                }
            }
        }
        (BundleSigner::Identity(_), a) => {
            let mut policy = VerificationPolicy::any_identity();
            if checks.skip_sct {
                policy = policy.skip_sct();
            }
            if checks.skip_tlog {
                policy = policy.skip_tlog_unsafe();
            }
            match a {
                BundleArtifact::Bytes(b) => trust.verifier.verify(b.as_slice(), bundle, &policy),
                BundleArtifact::Sha256(d) => {
                    trust.verifier.verify(Sha256Hash::new(*d), bundle, &policy)
                }
            }
        }
    }
    .map_err(|e| BundleError::Rejected(describe_verify_error(&e)))?;
    let subject = result.identity().map(|i| i.as_str().to_string());
    let issuer = result.issuer().map(str::to_string);
    let mut checked = std::collections::BTreeMap::new();
    if let BundleSigner::Identity(rules) = signer {
        let s = subject.clone().unwrap_or_default();
        let i = issuer.clone().unwrap_or_default();
        let claims = result
            .certificate()
            .map(super::keyless::claims_of)
            .unwrap_or_default();
        match check_identity(rules, &i, &s, &claims) {
            Ok(found) => {
                checked = found
                    .into_iter()
                    .map(|(c, v)| (c.field().to_string(), v))
                    .collect()
            }
            Err(IdentityMismatch::Identity(expected)) => {
                return Err(BundleError::Identity {
                    subject: s,
                    issuer: i,
                    expected,
                })
            }
            Err(IdentityMismatch::Claims(differ)) => {
                return Err(BundleError::Claims {
                    subject: s,
                    issuer: i,
                    differ,
                })
            }
        }
    }
    Ok(BundleVerified {
        subject,
        issuer,
        claims: checked,
    })
}
