//! Keyless cosign signatures in the legacy `.sig` layout: the layer carries
//! the signing certificate (`dev.sigstore.cosign/certificate`), its chain, and
//! the Rekor entry with its signed entry timestamp (`dev.sigstore.cosign/bundle`).
//!
//! The layer is rewritten as the Sigstore bundle (v0.1) it is equivalent to,
//! and verified by `sigstore-verify` against a trusted root: the certificate
//! chains to a trusted CA and was valid at the Rekor integrated time, the SET
//! verifies with a trusted Rekor key valid at that time and its body is this
//! signature, the embedded SCT verifies with a trusted CT log key, and the
//! signature verifies over the payload. sigil then checks the payload names
//! the admitted digest and the certificate identity matches a policy
//! identity (regular expressions match the whole string).
//!
//! A private CA (`keyless.ca-cert`) is not Fulcio: it has no CT log, so no
//! SCT is asked for; its chain is checked with rustls-webpki, at the Rekor
//! integrated time when the signature carries a SET (required when the
//! authority sets `ctlog`), otherwise at admission time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sigstore_types::{Artifact, Bundle, DerCertificate, DerPublicKey, DsseEnvelope, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy};

use super::cosign::{check_payload, Rejection, SignatureLayer};
use super::keys::{HashAlgorithm, VerificationKey};
use crate::trust::TrustMaterial;

/// Annotation holding the PEM signing certificate.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation holding the PEM chain (intermediates, root).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation holding the Rekor entry and its SET.
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Annotation holding an RFC 3161 timestamp over the signature.
pub const RFC3161_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

pub use crate::model::identity::{
    CertificateTrust, IdentityRule, KeylessPolicy, PrivateCa, TextMatcher,
};

fn missing_tlog(why: &str) -> Rejection {
    keyless_err(format!(
        "signature has no Rekor entry ({BUNDLE_ANNOTATION}), which {why} requires"
    ))
}

fn missing_timestamp() -> Rejection {
    keyless_err(format!(
        "signature has no RFC 3161 timestamp ({RFC3161_ANNOTATION}), which rfc3161timestamp requires"
    ))
}

/// The GitHub workflow extensions of a Fulcio certificate
/// (1.3.6.1.4.1.57264.1.2 – .6), for policies over signatures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GithubWorkflow {
    /// Event that triggered the workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Commit SHA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Workflow name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `owner/repo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Git ref.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

/// What a verified signing certificate says about its holder.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SignerIdentity {
    /// The SAN (email or URI).
    pub subject: String,
    /// The OIDC issuer (empty when the certificate has none).
    pub issuer: String,
    /// GitHub workflow extensions.
    #[serde(rename = "githubWorkflow")]
    pub github_workflow: GithubWorkflow,
    /// The Rekor integrated time, when the signature was logged.
    #[serde(rename = "integratedTime", skip_serializing_if = "Option::is_none")]
    pub integrated_time: Option<String>,
}

/// cosign's `dev.sigstore.cosign/bundle` annotation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundle {
    signed_entry_timestamp: String,
    payload: RekorPayload,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryKind {
    kind: String,
    api_version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Rfc3161Annotation {
    #[serde(rename = "SignedRFC3161Timestamp")]
    signed_rfc3161_timestamp: String,
}

fn keyless_err(m: impl Into<String>) -> Rejection {
    Rejection::Evidence(m.into())
}

/// The material of one legacy layer that keyless checks use.
struct LegacyMaterial {
    /// Base64 with any line breaks removed (cosign wraps long RSA signatures);
    /// empty for DSSE layers, whose signature is in the envelope.
    signature_b64: String,
    certificate: Option<Vec<u8>>,
    chain: Vec<CertificateDer<'static>>,
    rekor: Option<RekorBundle>,
    rfc3161: Option<String>,
}

fn read_layer(layer: &SignatureLayer, dsse: bool) -> Result<LegacyMaterial, Rejection> {
    let signature_b64: String = if dsse {
        String::new()
    } else {
        let s: String = layer
            .signature_b64()
            .ok_or(Rejection::MissingSignature)?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        B64.decode(&s).map_err(|_| Rejection::MalformedSignature)?;
        s
    };
    let certificate = match layer.annotations.get(CERTIFICATE_ANNOTATION) {
        None => None,
        Some(text) => Some(
            pem::parse(text.trim())
                .map_err(|e| keyless_err(format!("certificate annotation is not PEM: {e}")))?
                .into_contents(),
        ),
    };
    let chain = match layer.annotations.get(CHAIN_ANNOTATION) {
        None => Vec::new(),
        Some(text) => pem::parse_many(text.trim())
            .map_err(|e| keyless_err(format!("chain annotation is not PEM: {e}")))?
            .into_iter()
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect(),
    };
    let rekor = match layer.annotations.get(BUNDLE_ANNOTATION) {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<RekorBundle>(text)
                .map_err(|e| keyless_err(format!("Rekor bundle annotation is malformed: {e}")))?,
        ),
    };
    let rfc3161 = match layer.annotations.get(RFC3161_ANNOTATION) {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<Rfc3161Annotation>(text)
                .map_err(|e| keyless_err(format!("RFC 3161 annotation is malformed: {e}")))?
                .signed_rfc3161_timestamp,
        ),
    };
    Ok(LegacyMaterial {
        signature_b64,
        certificate,
        chain,
        rekor,
        rfc3161,
    })
}

/// The Sigstore bundle (v0.1, message signature) a legacy layer amounts to.
/// `signer` is the certificate DER, or the public key for key signatures.
/// What a layer signs: a simple-signing payload, or a DSSE envelope.
#[derive(Clone, Copy)]
pub(crate) enum Content<'a> {
    /// The exact payload bytes, signed directly.
    Message(&'a [u8]),
    /// An in-toto DSSE envelope (the signature is over its PAE).
    Dsse(&'a DsseEnvelope),
}

fn legacy_bundle(
    content: Content<'_>,
    m: &LegacyMaterial,
    signer: Signer<'_>,
) -> Result<Bundle, Rejection> {
    // v0.1 bundles need a Rekor inclusion promise; without a Rekor entry
    // (a TSA timestamp alone), the layer is the v0.3 bundle it equals.
    let (media_type, mut material) = match (signer, m.rekor.is_some()) {
        (Signer::Certificate(der), true) => (
            "application/vnd.dev.sigstore.bundle+json;version=0.1",
            json!({ "x509CertificateChain": { "certificates": [{ "rawBytes": B64.encode(der) }] } }),
        ),
        (Signer::Certificate(der), false) => (
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            json!({ "certificate": { "rawBytes": B64.encode(der) } }),
        ),
        (Signer::Key(spki), tlog) => (
            if tlog {
                "application/vnd.dev.sigstore.bundle+json;version=0.1"
            } else {
                "application/vnd.dev.sigstore.bundle.v0.3+json"
            },
            json!({ "publicKey": { "hint": B64.encode(Sha256::digest(spki)) } }),
        ),
    };
    material["tlogEntries"] = json!([]);
    if let Some(rekor) = &m.rekor {
        let body = B64
            .decode(rekor.payload.body.trim())
            .map_err(|e| keyless_err(format!("Rekor entry body is not base64: {e}")))?;
        let kind: EntryKind = serde_json::from_slice(&body)
            .map_err(|e| keyless_err(format!("Rekor entry body is malformed: {e}")))?;
        let log_id = hex::decode(&rekor.payload.log_id)
            .map_err(|e| keyless_err(format!("Rekor log ID is not hex: {e}")))?;
        material["tlogEntries"] = json!([{
            "logIndex": rekor.payload.log_index.to_string(),
            "logId": { "keyId": B64.encode(log_id) },
            "kindVersion": { "kind": kind.kind, "version": kind.api_version },
            "integratedTime": rekor.payload.integrated_time.to_string(),
            "inclusionPromise": { "signedEntryTimestamp": rekor.signed_entry_timestamp },
            "canonicalizedBody": rekor.payload.body,
        }]);
    }
    if let Some(ts) = &m.rfc3161 {
        material["timestampVerificationData"] =
            json!({ "rfc3161Timestamps": [{ "signedTimestamp": ts }] });
    }
    let mut bundle = json!({
        "mediaType": media_type,
        "verificationMaterial": material,
    });
    match content {
        Content::Message(payload) => {
            bundle["messageSignature"] = json!({
                "messageDigest": { "algorithm": "SHA2_256", "digest": B64.encode(Sha256::digest(payload)) },
                "signature": m.signature_b64,
            });
        }
        Content::Dsse(envelope) => {
            bundle["dsseEnvelope"] = serde_json::to_value(envelope)
                .map_err(|e| keyless_err(format!("DSSE envelope is unusable: {e}")))?;
        }
    }
    serde_json::from_value(bundle).map_err(|e| keyless_err(format!("Rekor entry is unusable: {e}")))
}

enum Signer<'a> {
    Certificate(&'a [u8]),
    Key(&'a [u8]),
}

/// Names which of the checks failed, in words a person can act on.
pub fn describe_verify_error(e: &sigstore_verify::Error) -> String {
    use sigstore_verify::{CertificateError, Error, TransparencyLogError};
    match e {
        Error::Certificate(CertificateError::Sct(m)) => format!("SCT does not verify: {m}"),
        Error::Certificate(c) => format!("certificate does not verify: {c}"),
        Error::TransparencyLog(TransparencyLogError::InclusionPromise(m)) => {
            format!("Rekor SET does not verify: {m}")
        }
        Error::TransparencyLog(TransparencyLogError::EntryMismatch(m)) => {
            format!("Rekor entry is not this signature: {m}")
        }
        Error::TransparencyLog(t) => format!("transparency log check failed: {t}"),
        Error::ArtifactMismatch(m) => format!("Rekor entry is not this signature: {m}"),
        Error::SignatureInvalid(m) => format!("signature does not verify: {m}"),
        Error::Timestamp(t) => format!("timestamp does not verify: {t}"),
        other => other.to_string(),
    }
}

fn identity_from_certificate(
    der: &[u8],
    integrated_time: Option<jiff::Timestamp>,
) -> Result<SignerIdentity, Rejection> {
    let info = sigstore_crypto::x509::parse_certificate_info(&DerCertificate::new(der.to_vec()))
        .map_err(|e| keyless_err(format!("certificate is malformed: {e}")))?;
    let gh = &info.ci_claims.deprecated_github;
    Ok(SignerIdentity {
        subject: info
            .identity
            .as_ref()
            .map(|i| i.as_str().to_string())
            .unwrap_or_default(),
        issuer: info.issuer.clone().unwrap_or_default(),
        github_workflow: GithubWorkflow {
            trigger: gh.workflow_trigger.clone(),
            sha: gh.workflow_sha.clone(),
            name: gh.workflow_name.clone(),
            repository: gh.workflow_repository.clone(),
            git_ref: gh.workflow_ref.clone(),
        },
        integrated_time: integrated_time.map(|t| t.to_string()),
    })
}

/// Verifies one legacy layer as a keyless signature for `admitted_digest`.
pub fn verify_keyless_layer(
    layer: &SignatureLayer,
    admitted_digest: &str,
    policy: &KeylessPolicy,
    trust: &TrustMaterial,
) -> Result<SignerIdentity, Rejection> {
    let m = read_layer(layer, false)?;
    let signer = verify_certificate(
        &m,
        Content::Message(&layer.payload),
        Artifact::from(layer.payload.as_slice()),
        policy,
        trust,
    )?;
    check_payload(&layer.payload, admitted_digest)?;
    match_identity(policy, signer)
}

/// Verifies a legacy `.att` layer's DSSE envelope as a keyless attestation
/// whose in-toto subject includes `admitted_digest`.
pub fn verify_keyless_attestation(
    layer: &SignatureLayer,
    envelope: &DsseEnvelope,
    admitted_digest: &Sha256Hash,
    policy: &KeylessPolicy,
    trust: &TrustMaterial,
) -> Result<SignerIdentity, Rejection> {
    let m = read_layer(layer, true)?;
    let signer = verify_certificate(
        &m,
        Content::Dsse(envelope),
        Artifact::from(*admitted_digest),
        policy,
        trust,
    )?;
    match_identity(policy, signer)
}

pub(crate) fn match_identity(
    policy: &KeylessPolicy,
    signer: SignerIdentity,
) -> Result<SignerIdentity, Rejection> {
    if !policy
        .identities
        .iter()
        .any(|r| r.issuer.matches(&signer.issuer) && r.subject.matches(&signer.subject))
    {
        return Err(Rejection::IdentityMismatch {
            subject: signer.subject,
            issuer: signer.issuer,
            expected: policy
                .identities
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(signer)
}

/// The certificate, chain, SET, SCT and timestamp checks of a keyless layer,
/// with the signature over `content`.
fn verify_certificate(
    m: &LegacyMaterial,
    content: Content<'_>,
    artifact: Artifact<'_>,
    policy: &KeylessPolicy,
    trust: &TrustMaterial,
) -> Result<SignerIdentity, Rejection> {
    let cert = m.certificate.as_deref().ok_or_else(|| {
        keyless_err(format!(
            "signature has no certificate ({CERTIFICATE_ANNOTATION}): it was not made keyless"
        ))
    })?;
    if policy.require_timestamp && m.rfc3161.is_none() {
        return Err(missing_timestamp());
    }
    match &policy.trust {
        CertificateTrust::TrustRoot => {
            if m.rekor.is_none() {
                return Err(keyless_err(format!(
                    "signature has no Rekor entry ({BUNDLE_ANNOTATION}); a keyless signature needs a signed entry timestamp"
                )));
            }
            let bundle = legacy_bundle(content, m, Signer::Certificate(cert))?;
            let mut vp = VerificationPolicy::any_identity();
            if !policy.verify_sct {
                vp = vp.skip_sct();
            }
            let result = trust
                .verifier
                .verify(artifact, &bundle, &vp)
                .map_err(|e| keyless_err(describe_verify_error(&e)))?;
            identity_from_certificate(cert, result.integrated_time())
        }
        CertificateTrust::PrivateCa(ca) => {
            if m.rekor.is_none() && policy.require_tlog {
                return Err(missing_tlog("ctlog"));
            }
            // The times the chain must hold at: those a SET or TSA vouches
            // for (verified here, with the signature), else admission time.
            let (times, integrated) = if m.rekor.is_some() || m.rfc3161.is_some() {
                let bundle = legacy_bundle(content, m, Signer::Certificate(cert))?;
                let mut vp = VerificationPolicy::any_identity().skip_certificate_chain();
                if m.rekor.is_none() {
                    vp = vp.skip_tlog_unsafe();
                }
                let result = trust
                    .verifier
                    .verify(artifact, &bundle, &vp)
                    .map_err(|e| keyless_err(describe_verify_error(&e)))?;
                (
                    result.verified_timestamps().to_vec(),
                    result.integrated_time(),
                )
            } else {
                match content {
                    Content::Message(payload) => {
                        verify_with_certificate_key(cert, payload, &m.signature_b64)?
                    }
                    Content::Dsse(envelope) => verify_with_certificate_key(
                        cert,
                        &envelope.pae(),
                        &B64.encode(envelope.signature.sig.as_bytes()),
                    )?,
                }
                (vec![jiff::Timestamp::now()], None)
            };
            for when in times {
                ca.verify_chain(cert, &m.chain, when).map_err(|e| {
                    keyless_err(format!(
                        "certificate does not chain to the ca-cert authority: {e}"
                    ))
                })?;
            }
            identity_from_certificate(cert, integrated)
        }
    }
}

fn verify_with_certificate_key(
    cert: &[u8],
    payload: &[u8],
    sig_b64: &str,
) -> Result<(), Rejection> {
    use der::{Decode, Encode};
    let parsed = x509_cert::Certificate::from_der(cert)
        .map_err(|e| keyless_err(format!("certificate is malformed: {e}")))?;
    let spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| keyless_err(format!("certificate key is malformed: {e}")))?;
    let key = VerificationKey::from_spki_der(&spki, HashAlgorithm::Sha256)
        .map_err(|e| keyless_err(format!("certificate key is unusable: {e}")))?;
    let sig = B64
        .decode(sig_b64)
        .map_err(|_| Rejection::MalformedSignature)?;
    if key.verify(payload, &sig) {
        Ok(())
    } else {
        Err(keyless_err(
            "signature does not verify with the certificate's key",
        ))
    }
}

/// For a key authority with `ctlog` and/or `rfc3161timestamp`: the layer's
/// Rekor SET must verify with a trusted Rekor key and its entry must be this
/// signature by this key; its RFC 3161 timestamp must verify with a trusted
/// TSA.
pub fn verify_key_evidence(
    layer: &SignatureLayer,
    key: &VerificationKey,
    trust: &TrustMaterial,
    require_tlog: bool,
    require_timestamp: bool,
) -> Result<(), Rejection> {
    verify_key_evidence_for(
        layer,
        Content::Message(&layer.payload),
        Artifact::from(layer.payload.as_slice()),
        key,
        trust,
        require_tlog,
        require_timestamp,
    )
}

/// [`verify_key_evidence`] for any content (signature payload or DSSE).
pub(crate) fn verify_key_evidence_for(
    layer: &SignatureLayer,
    content: Content<'_>,
    artifact: Artifact<'_>,
    key: &VerificationKey,
    trust: &TrustMaterial,
    require_tlog: bool,
    require_timestamp: bool,
) -> Result<(), Rejection> {
    let m = read_layer(layer, matches!(content, Content::Dsse(_)))?;
    if require_tlog && m.rekor.is_none() {
        return Err(missing_tlog("ctlog"));
    }
    if require_timestamp && m.rfc3161.is_none() {
        return Err(missing_timestamp());
    }
    let mut bundle_material = m;
    if !require_tlog {
        // A Rekor entry nobody asked for is not checked (nor trusted).
        bundle_material.rekor = None;
    }
    let bundle = legacy_bundle(content, &bundle_material, Signer::Key(key.spki_der()))?;
    let mut policy = PublicKeyVerificationPolicy::new(DerPublicKey::new(key.spki_der().to_vec()));
    if !require_tlog {
        policy = policy.skip_tlog_unsafe();
    }
    trust
        .verifier
        .verify(artifact, &bundle, &policy)
        .map(|_| ())
        .map_err(|e| keyless_err(describe_verify_error(&e)))
}

/// [`verify_key_evidence`] for `ctlog` alone.
pub fn verify_key_tlog(
    layer: &SignatureLayer,
    key: &VerificationKey,
    trust: &TrustMaterial,
) -> Result<(), Rejection> {
    verify_key_evidence(layer, key, trust, true, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_identities_are_anchored() {
        let m = TextMatcher::new(None, Some("https://github.com/acme/.*")).unwrap();
        assert!(m.matches("https://github.com/acme/app/.github/workflows/x.yml@refs/heads/main"));
        assert!(!m.matches("evil https://github.com/acme/app"));
        let m = TextMatcher::new(None, Some("a|b")).unwrap();
        assert!(m.matches("a"));
        assert!(!m.matches("ab"));
        assert!(TextMatcher::new(Some("x"), None).unwrap().matches("x"));
        assert!(!TextMatcher::new(Some("x"), None).unwrap().matches("xx"));
    }
}
