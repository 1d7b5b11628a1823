//! The Sigstore evidence a legacy cosign layer carries in its annotations
//! (signing certificate, chain, Rekor entry with its SET, RFC 3161
//! timestamp), read and rewritten as the Sigstore bundle it is equivalent
//! to, so that `sigstore-verify` checks it; and the checks a key authority
//! with `ctlog` / `rfc3161timestamp` asks of it.
//!
//! Certificate identities are [`super::keyless`]'s; this module never
//! decides who signed, only whether the logs and timestamps hold.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sigstore_types::{Artifact, Bundle, DerPublicKey, DsseEnvelope};
use sigstore_verify::PublicKeyVerificationPolicy;

use super::cosign::{Rejection, SignatureLayer};
use crate::model::keys::VerificationKey;
use crate::trust::TrustMaterial;

/// Annotation holding the PEM signing certificate.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation holding the PEM chain (intermediates, root).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation holding the Rekor entry and its SET.
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Annotation holding an RFC 3161 timestamp over the signature.
pub const RFC3161_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// No Rekor entry where `why` requires one.
pub(super) fn missing_tlog(why: &str) -> Rejection {
    keyless_err(format!(
        "signature has no Rekor entry ({BUNDLE_ANNOTATION}), which {why} requires"
    ))
}

/// No RFC 3161 timestamp where `rfc3161timestamp` requires one.
pub(super) fn missing_timestamp() -> Rejection {
    keyless_err(format!(
        "signature has no RFC 3161 timestamp ({RFC3161_ANNOTATION}), which rfc3161timestamp requires"
    ))
}

/// cosign's `dev.sigstore.cosign/bundle` annotation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RekorBundle {
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

/// A rejection for evidence that does not hold.
pub(super) fn keyless_err(m: impl Into<String>) -> Rejection {
    Rejection::Evidence(m.into())
}

/// The material of one legacy layer that keyless checks use.
pub(super) struct LegacyMaterial {
    /// Base64 with any line breaks removed (cosign wraps long RSA signatures);
    /// empty for DSSE layers, whose signature is in the envelope.
    pub(super) signature_b64: String,
    /// The DER signing certificate, when the layer has one.
    pub(super) certificate: Option<Vec<u8>>,
    /// Its chain (intermediates, root).
    pub(super) chain: Vec<CertificateDer<'static>>,
    /// The Rekor entry and its SET.
    pub(super) rekor: Option<RekorBundle>,
    /// The RFC 3161 timestamp (base64 DER).
    pub(super) rfc3161: Option<String>,
}

/// Reads the Sigstore material of a layer (`dsse`: an attestation layer,
/// whose signature is in the envelope).
pub(super) fn read_layer(layer: &SignatureLayer, dsse: bool) -> Result<LegacyMaterial, Rejection> {
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

/// The Sigstore bundle a legacy layer equals, signed by `signer`.
pub(super) fn legacy_bundle(
    content: Content<'_>,
    m: &LegacyMaterial,
    signer: BundleSigner<'_>,
    trust: &TrustMaterial,
) -> Result<Bundle, Rejection> {
    // v0.1 bundles need a Rekor inclusion promise; without a Rekor entry
    // (a TSA timestamp alone), the layer is the v0.3 bundle it equals.
    let (media_type, mut material) = match (signer, m.rekor.is_some()) {
        (BundleSigner::Certificate(der), true) => (
            "application/vnd.dev.sigstore.bundle+json;version=0.1",
            json!({ "x509CertificateChain": { "certificates": [{ "rawBytes": B64.encode(der) }] } }),
        ),
        (BundleSigner::Certificate(der), false) => (
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            json!({ "certificate": { "rawBytes": B64.encode(der) } }),
        ),
        (BundleSigner::Key(spki), tlog) => (
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
        // Read as strictly as a bundle's timestamp (one SignerInfo, an
        // algorithm that fits the TSA, only the TSA's certificates).
        let der = B64
            .decode(ts.trim())
            .map_err(|e| keyless_err(format!("RFC 3161 timestamp is not base64: {e}")))?;
        super::strict_bundle::check_timestamp(&der, &trust.facts).map_err(keyless_err)?;
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

/// Who the bundle says signed: a certificate (DER) or a key (SPKI DER).
pub(super) enum BundleSigner<'a> {
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
    let bundle = legacy_bundle(
        content,
        &bundle_material,
        BundleSigner::Key(key.spki_der()),
        trust,
    )?;
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
