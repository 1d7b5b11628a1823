//! Notation signature envelopes: JWS (the flattened JSON serialization,
//! `application/jose+json`) and COSE_Sign1 (`application/cose`), parsed into
//! the signer information both carry, with the envelope's signature checked
//! against its signing certificate's key (the integrity check).
//!
//! JSON is read with serde, CBOR/COSE with `coset`, signatures checked with
//! aws-lc-rs. No JWS crate reads Notation's `crit` extension headers and
//! ES512, so the JWS signing input (`protected.payload`, RFC 7515 §5.2) is
//! formed here. This module knows nothing of trust: the chain, identities,
//! timestamps and levels are the caller's.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use coset::cbor::value::Value;
use coset::{
    iana, Label, RegisteredLabel, RegisteredLabelWithPrivate, TaggedCborSerializable as _,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

/// The JWS envelope's media type.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// The COSE envelope's media type.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// The payload's content type (`cty` / COSE content type).
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// The signing scheme of a certificate chain leading to a CA.
pub const SCHEME_X509: &str = "notary.x509";
/// The signing scheme of signing authorities (AWS Signer, say).
pub const SCHEME_SIGNING_AUTHORITY: &str = "notary.x509.signingAuthority";
/// Most certificates read from one envelope.
pub use crate::limits::MAX_NOTATION_CHAIN as MAX_CHAIN;

const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";
const TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";
/// Extension headers Notation defines and sigil understands when critical.
const KNOWN_CRITICAL: [&str; 3] = [SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME];
/// COSE's `x5chain` header label (RFC 9360).
const X5CHAIN: i64 = 33;

/// Which envelope a signature came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeFormat {
    /// JWS JSON serialization.
    Jws,
    /// COSE_Sign1.
    Cose,
}

impl EnvelopeFormat {
    /// The format of an envelope of this media type.
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            JWS_MEDIA_TYPE => Some(EnvelopeFormat::Jws),
            COSE_MEDIA_TYPE => Some(EnvelopeFormat::Cose),
            _ => None,
        }
    }

    /// `JWS` or `COSE`, as people read it.
    pub fn name(self) -> &'static str {
        match self {
            EnvelopeFormat::Jws => "JWS",
            EnvelopeFormat::Cose => "COSE",
        }
    }
}

/// What an envelope whose signature verified says.
#[derive(Debug, Clone)]
pub struct SignerInfo {
    /// Its format.
    pub format: EnvelopeFormat,
    /// The signed payload (the Notary payload JSON).
    pub payload: Vec<u8>,
    /// `notary.x509` or `notary.x509.signingAuthority`.
    pub signing_scheme: String,
    /// The signer's claimed signing time (not authentic by itself).
    pub signing_time: Option<jiff::Timestamp>,
    /// The signature's expiry, when it has one.
    pub expiry: Option<jiff::Timestamp>,
    /// The certificate chain, signing certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The signature value (what an RFC 3161 countersignature stamps).
    pub signature: Vec<u8>,
    /// The RFC 3161 TimeStampToken, DER, when there is one.
    pub timestamp_token: Option<Vec<u8>>,
    /// The signing tool, as it names itself (unsigned).
    pub signing_agent: Option<String>,
}

/// Parses an envelope of `media_type` and checks its signature with the
/// key of its signing certificate. `Err` says why it is not intact.
pub fn open(media_type: &str, bytes: &[u8]) -> Result<SignerInfo, String> {
    match EnvelopeFormat::of_media_type(media_type) {
        Some(EnvelopeFormat::Jws) => open_jws(bytes),
        Some(EnvelopeFormat::Cose) => open_cose(bytes),
        None => Err(format!("unsupported envelope media type {media_type:?}")),
    }
}

/// The signature algorithms Notation allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl Algorithm {
    fn from_jws(alg: &str) -> Option<Self> {
        Some(match alg {
            "PS256" => Algorithm::Ps256,
            "PS384" => Algorithm::Ps384,
            "PS512" => Algorithm::Ps512,
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            "ES512" => Algorithm::Es512,
            _ => return None,
        })
    }

    fn from_cose(alg: &coset::Algorithm) -> Option<Self> {
        Some(match alg {
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS256) => Algorithm::Ps256,
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS384) => Algorithm::Ps384,
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS512) => Algorithm::Ps512,
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256) => Algorithm::Es256,
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384) => Algorithm::Es384,
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES512) => Algorithm::Es512,
            _ => return None,
        })
    }

    /// Its JOSE name.
    fn name(self) -> &'static str {
        match self {
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Es512 => "ES512",
        }
    }

    /// JWS and COSE both carry ECDSA signatures as fixed-size r‖s.
    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::Es512 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }
}

/// Checks `signature` over `message` with the key of certificate `leaf`.
fn verify_with_certificate(
    alg: Algorithm,
    leaf: &CertificateDer<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("the signing certificate does not parse: {e}"))?;
    let key = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or("the signing certificate's public key is not a whole number of bytes")?;
    UnparsedPublicKey::new(alg.verification(), key)
        .verify(message, signature)
        .map_err(|_| {
            format!(
                "the signature does not verify with the signing certificate's key ({})",
                alg.name()
            )
        })
}

/// A critical-header list: it must name the signing scheme, every name must
/// be an extension sigil understands, and each must be present.
fn check_critical(critical: &[String], present: impl Fn(&str) -> bool) -> Result<(), String> {
    if !critical.iter().any(|c| c == SIGNING_SCHEME) {
        return Err(format!("{SIGNING_SCHEME} is not marked critical"));
    }
    for c in critical {
        if !KNOWN_CRITICAL.contains(&c.as_str()) {
            return Err(format!("unknown critical header {c:?}"));
        }
        if !present(c) {
            return Err(format!("critical header {c:?} is missing"));
        }
    }
    Ok(())
}

fn chain_from(certs: Vec<Vec<u8>>) -> Result<Vec<CertificateDer<'static>>, String> {
    if certs.is_empty() {
        return Err("the envelope holds no certificate chain".into());
    }
    if certs.len() > MAX_CHAIN {
        return Err(format!(
            "the certificate chain has {} certificates, over the limit of {MAX_CHAIN}",
            certs.len()
        ));
    }
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

fn rfc3339(field: &str, s: &str) -> Result<jiff::Timestamp, String> {
    s.parse()
        .map_err(|e| format!("{field} {s:?} is not an RFC 3339 time: {e}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwsJson {
    payload: String,
    protected: String,
    #[serde(default)]
    header: JwsUnprotected,
    signature: String,
}

#[derive(Deserialize, Default)]
struct JwsUnprotected {
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(rename = "io.cncf.notary.signingAgent")]
    signing_agent: Option<String>,
    #[serde(rename = "io.cncf.notary.timestampSignature")]
    timestamp_signature: Option<String>,
}

#[derive(Deserialize)]
struct JwsProtected {
    alg: String,
    cty: Option<String>,
    #[serde(default)]
    crit: Vec<String>,
    #[serde(rename = "io.cncf.notary.signingScheme")]
    signing_scheme: Option<String>,
    #[serde(rename = "io.cncf.notary.signingTime")]
    signing_time: Option<String>,
    #[serde(rename = "io.cncf.notary.expiry")]
    expiry: Option<String>,
    #[serde(rename = "io.cncf.notary.authenticSigningTime")]
    authentic_signing_time: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

fn open_jws(bytes: &[u8]) -> Result<SignerInfo, String> {
    let jws: JwsJson =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWS JSON envelope: {e}"))?;
    let b64url = |field: &str, s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("JWS {field} is not base64url: {e}"))
    };
    let protected_json = b64url("protected header", &jws.protected)?;
    let protected: JwsProtected = serde_json::from_slice(&protected_json)
        .map_err(|e| format!("JWS protected header is malformed: {e}"))?;
    let payload = b64url("payload", &jws.payload)?;
    let signature = b64url("signature", &jws.signature)?;
    let alg = Algorithm::from_jws(&protected.alg)
        .ok_or_else(|| format!("unsupported JWS algorithm {:?}", protected.alg))?;
    let certs = jws
        .header
        .x5c
        .iter()
        .map(|c| STANDARD.decode(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("JWS x5c is not base64: {e}"))?;
    let chain = chain_from(certs)?;
    // RFC 7515 §5.2: the signing input is the two encoded parts as sent.
    let signing_input = format!("{}.{}", jws.protected, jws.payload);
    verify_with_certificate(alg, &chain[0], signing_input.as_bytes(), &signature)?;
    // Only what the signature covers is read from here on.
    check_critical(&protected.crit, |name| match name {
        SIGNING_SCHEME => protected.signing_scheme.is_some(),
        EXPIRY => protected.expiry.is_some(),
        AUTHENTIC_SIGNING_TIME => protected.authentic_signing_time.is_some(),
        other => protected.other.contains_key(other),
    })?;
    if protected.expiry.is_some() && !protected.crit.iter().any(|c| c == EXPIRY) {
        return Err(format!("{EXPIRY} is not marked critical"));
    }
    if protected.cty.as_deref() != Some(PAYLOAD_CONTENT_TYPE) {
        return Err(format!(
            "payload content type is {:?}, not {PAYLOAD_CONTENT_TYPE}",
            protected.cty.unwrap_or_default()
        ));
    }
    let timestamp_token = jws
        .header
        .timestamp_signature
        .as_deref()
        .map(|t| STANDARD.decode(t))
        .transpose()
        .map_err(|e| format!("JWS {TIMESTAMP_SIGNATURE} is not base64: {e}"))?;
    Ok(SignerInfo {
        format: EnvelopeFormat::Jws,
        payload,
        signing_scheme: protected.signing_scheme.unwrap_or_default(),
        signing_time: protected
            .signing_time
            .as_deref()
            .map(|t| rfc3339(SIGNING_TIME, t))
            .transpose()?,
        expiry: protected
            .expiry
            .as_deref()
            .map(|t| rfc3339(EXPIRY, t))
            .transpose()?,
        chain,
        signature,
        timestamp_token,
        signing_agent: jws.header.signing_agent,
    })
}

/// A COSE header value by text label.
fn text_label<'h>(header: &'h coset::Header, name: &str) -> Option<&'h Value> {
    header
        .rest
        .iter()
        .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
        .map(|(_, v)| v)
}

/// A COSE time: a CBOR tag-1 (epoch seconds) integer.
fn cose_time(field: &str, v: &Value) -> Result<jiff::Timestamp, String> {
    let seconds = match v {
        Value::Tag(1, inner) => match inner.as_ref() {
            Value::Integer(i) => i64::try_from(*i).ok(),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| format!("{field} is not a CBOR epoch time (tag 1, integer)"))?;
    jiff::Timestamp::from_second(seconds).map_err(|e| format!("{field} is out of range: {e}"))
}

fn open_cose(bytes: &[u8]) -> Result<SignerInfo, String> {
    let sign1 = coset::CoseSign1::from_tagged_slice(bytes)
        .map_err(|e| format!("not a tagged COSE_Sign1 envelope: {e:?}"))?;
    let protected = &sign1.protected.header;
    let alg = protected
        .alg
        .as_ref()
        .and_then(Algorithm::from_cose)
        .ok_or_else(|| format!("unsupported COSE algorithm {:?}", protected.alg))?;
    let certs = match sign1
        .unprotected
        .rest
        .iter()
        .find(|(l, _)| *l == Label::Int(X5CHAIN))
        .map(|(_, v)| v)
    {
        Some(Value::Bytes(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|v| match v {
                Value::Bytes(b) => Ok(b.clone()),
                _ => Err("COSE x5chain holds something other than certificates".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("COSE x5chain is neither bytes nor an array".into()),
        None => Vec::new(),
    };
    let chain = chain_from(certs)?;
    let payload = sign1
        .payload
        .clone()
        .ok_or("the COSE envelope has no payload (detached payloads are not Notation's)")?;
    sign1.verify_signature(b"", |sig, data| {
        verify_with_certificate(alg, &chain[0], data, sig)
    })?;
    let critical: Vec<String> = protected
        .crit
        .iter()
        .map(|c| match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    check_critical(&critical, |name| text_label(protected, name).is_some())?;
    if text_label(protected, EXPIRY).is_some() && !critical.iter().any(|c| c == EXPIRY) {
        return Err(format!("{EXPIRY} is not marked critical"));
    }
    match &protected.content_type {
        Some(RegisteredLabel::Text(t)) if t == PAYLOAD_CONTENT_TYPE => {}
        other => {
            return Err(format!(
                "payload content type is {other:?}, not {PAYLOAD_CONTENT_TYPE}"
            ))
        }
    }
    let signing_scheme = match text_label(protected, SIGNING_SCHEME) {
        Some(Value::Text(t)) => t.clone(),
        _ => return Err(format!("{SIGNING_SCHEME} is not text")),
    };
    let timestamp_token = match text_label(&sign1.unprotected, TIMESTAMP_SIGNATURE) {
        None => None,
        Some(Value::Bytes(b)) => Some(b.clone()),
        Some(_) => return Err(format!("COSE {TIMESTAMP_SIGNATURE} is not bytes")),
    };
    let signing_agent = match text_label(&sign1.unprotected, SIGNING_AGENT) {
        Some(Value::Text(t)) => Some(t.clone()),
        _ => None,
    };
    Ok(SignerInfo {
        format: EnvelopeFormat::Cose,
        payload,
        signing_scheme,
        signing_time: text_label(protected, SIGNING_TIME)
            .map(|v| cose_time(SIGNING_TIME, v))
            .transpose()?,
        expiry: text_label(protected, EXPIRY)
            .map(|v| cose_time(EXPIRY, v))
            .transpose()?,
        chain,
        signature: sign1.signature.clone(),
        timestamp_token,
        signing_agent,
    })
}

/// Re-encodes a COSE envelope (tests tamper with parsed envelopes).
#[cfg(test)]
pub(crate) fn cose_to_vec(sign1: coset::CoseSign1) -> Vec<u8> {
    sign1.to_tagged_vec().unwrap_or_default()
}

/// The Notary payload's `targetArtifact`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetArtifact {
    /// The manifest's media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The manifest's size in bytes.
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    target_artifact: TargetArtifact,
}

/// The `targetArtifact` of a Notary payload.
pub fn target_artifact(payload: &[u8]) -> Result<TargetArtifact, String> {
    serde_json::from_slice::<Payload>(payload)
        .map(|p| p.target_artifact)
        .map_err(|e| format!("the payload is not a Notary payload: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWS: &[u8] =
        include_bytes!("../../../tests/fixtures/notation-go/timestamp/sigEnv/jwsWithTimestamp.sig");
    const COSE: &[u8] = include_bytes!(
        "../../../tests/fixtures/notation-go/timestamp/sigEnv/coseWithTimestamp.sig"
    );

    #[test]
    fn notation_go_envelopes_open() {
        for (media_type, bytes, format) in [
            (JWS_MEDIA_TYPE, JWS, EnvelopeFormat::Jws),
            (COSE_MEDIA_TYPE, COSE, EnvelopeFormat::Cose),
        ] {
            let info = open(media_type, bytes).unwrap();
            assert_eq!(info.format, format);
            assert_eq!(info.signing_scheme, SCHEME_X509);
            assert_eq!(info.chain.len(), 1);
            assert!(info.timestamp_token.is_some());
            assert!(info.signing_time.is_some());
            let target = target_artifact(&info.payload).unwrap();
            assert!(target.digest.starts_with("sha256:"), "{target:?}");
        }
    }

    #[test]
    fn a_tampered_jws_payload_fails_integrity() {
        let mut jws: serde_json::Value = serde_json::from_slice(JWS).unwrap();
        let payload = URL_SAFE_NO_PAD
            .decode(jws["payload"].as_str().unwrap())
            .unwrap();
        let tampered = String::from_utf8(payload)
            .unwrap()
            .replace("\"size\":528", "\"size\":529");
        jws["payload"] = URL_SAFE_NO_PAD.encode(tampered).into();
        let e = open(JWS_MEDIA_TYPE, &serde_json::to_vec(&jws).unwrap()).unwrap_err();
        assert!(e.contains("signature does not verify"), "{e}");
    }

    #[test]
    fn a_tampered_cose_payload_fails_integrity() {
        let mut sign1 = coset::CoseSign1::from_tagged_slice(COSE).unwrap();
        if let Some(p) = sign1.payload.as_mut() {
            let last = p.len() - 2;
            p[last] ^= 1;
        }
        let e = open(COSE_MEDIA_TYPE, &cose_to_vec(sign1)).unwrap_err();
        assert!(e.contains("signature does not verify"), "{e}");
    }

    #[test]
    fn hostile_envelopes_are_refused_with_a_reason() {
        for (media_type, bytes, says) in [
            (JWS_MEDIA_TYPE, &b"{"[..], "not a JWS JSON envelope"),
            (
                JWS_MEDIA_TYPE,
                &b"{\"payload\":\"e30\",\"protected\":\"e30\",\"signature\":\"\"}"[..],
                "malformed",
            ),
            (
                JWS_MEDIA_TYPE,
                &b"{\"payload\":\"e30\",\"protected\":\"eyJhbGciOiJIUzI1NiJ9\",\"signature\":\"\"}"
                    [..],
                "unsupported JWS algorithm \"HS256\"",
            ),
            (
                JWS_MEDIA_TYPE,
                &b"{\"payload\":\"e30\",\"protected\":\"eyJhbGciOiJQUzI1NiJ9\",\"signature\":\"\"}"
                    [..],
                "no certificate chain",
            ),
            (COSE_MEDIA_TYPE, &b"\xd2\x84"[..], "not a tagged COSE_Sign1"),
            (COSE_MEDIA_TYPE, JWS, "not a tagged COSE_Sign1"),
            (
                "application/octet-stream",
                JWS,
                "unsupported envelope media type",
            ),
        ] {
            let e = open(media_type, bytes).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
    }
}
