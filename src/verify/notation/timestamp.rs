//! RFC 3161 countersignatures of Notation signatures: a TimeStampToken (CMS
//! SignedData holding a TSTInfo) whose message imprint is the hash of the
//! envelope's signature value, signed by a TSA whose certificate chains to
//! the authority's TSA trust store with the timeStamping key usage at the
//! time it states. Parsed with `cms` and `x509-tsp`, the chain checked with
//! rustls-webpki, signatures with aws-lc-rs.
//!
//! sigstore-tsa verifies Sigstore's timestamps, but pins the TSA leaf and
//! takes ECDSA TSAs only; Notation's trust stores hold TSA roots, and
//! public TSAs sign with RSA, so the same steps are taken here over the
//! same crates.

use std::time::Duration;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::Digest;
use x509_cert::Certificate;
use x509_tsp::TstInfo;

use super::chain::EKU_TIME_STAMPING;

const OID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const OID_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";
const OID_CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const OID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
/// Most certificates read from one token.
use crate::limits::MAX_TOKEN_CERTIFICATES;

/// A verified timestamp: the TSA's time and its accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticTime {
    /// `genTime`.
    pub time: jiff::Timestamp,
    /// The accuracy the TSA states (1 s when it states none).
    pub accuracy: Duration,
}

impl AuthenticTime {
    /// The earliest moment it can mean.
    pub fn earliest(&self) -> jiff::Timestamp {
        self.time
            .checked_sub(jiff::SignedDuration::try_from(self.accuracy).unwrap_or_default())
            .unwrap_or(self.time)
    }

    /// The latest moment it can mean.
    pub fn latest(&self) -> jiff::Timestamp {
        self.time
            .checked_add(jiff::SignedDuration::try_from(self.accuracy).unwrap_or_default())
            .unwrap_or(self.time)
    }
}

fn hash(oid: &str, data: &[u8]) -> Option<Vec<u8>> {
    Some(match oid {
        OID_SHA256 => sha2::Sha256::digest(data).to_vec(),
        OID_SHA384 => sha2::Sha384::digest(data).to_vec(),
        OID_SHA512 => sha2::Sha512::digest(data).to_vec(),
        _ => return None,
    })
}

/// The algorithm of a CMS signer's signature: RSA PKCS#1 v1.5 and ECDSA
/// with the signer's digest algorithm, or RSASSA-PSS.
fn signature_algorithm(
    signature_oid: &str,
    digest_oid: &str,
) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match (signature_oid, digest_oid) {
        // rsaEncryption or sha*WithRSAEncryption: the digest decides.
        ("1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.11", OID_SHA256) => {
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
        ("1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.12", OID_SHA384) => {
            &signature::RSA_PKCS1_2048_8192_SHA384
        }
        ("1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.13", OID_SHA512) => {
            &signature::RSA_PKCS1_2048_8192_SHA512
        }
        ("1.2.840.113549.1.1.10", OID_SHA256) => &signature::RSA_PSS_2048_8192_SHA256,
        ("1.2.840.113549.1.1.10", OID_SHA384) => &signature::RSA_PSS_2048_8192_SHA384,
        ("1.2.840.113549.1.1.10", OID_SHA512) => &signature::RSA_PSS_2048_8192_SHA512,
        // ecdsa-with-SHA256/384/512: the curve is the key's.
        ("1.2.840.10045.4.3.2", _) => &signature::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", _) => &signature::ECDSA_P384_SHA384_ASN1,
        ("1.2.840.10045.4.3.4", _) => &signature::ECDSA_P521_SHA512_ASN1,
        _ => return None,
    })
}

fn unix(t: jiff::Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(t.as_second()).unwrap_or(0),
    ))
}

/// Verifies `token` as a timestamp over `signature` by a TSA leading to
/// `tsa_anchors`, and returns the time it states.
pub fn verify(
    token: &[u8],
    signature: &[u8],
    tsa_anchors: &[TrustAnchor<'static>],
) -> Result<AuthenticTime, String> {
    let content = ContentInfo::from_der(token)
        .map_err(|e| format!("the timestamp is not a CMS ContentInfo: {e}"))?;
    if content.content_type.to_string() != OID_SIGNED_DATA {
        return Err("the timestamp is not CMS SignedData".into());
    }
    let signed: SignedData = content
        .content
        .decode_as()
        .map_err(|e| format!("the timestamp's SignedData is malformed: {e}"))?;
    if signed.encap_content_info.econtent_type.to_string() != OID_TST_INFO {
        return Err("the timestamp does not hold a TSTInfo".into());
    }
    let tst_der = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("the timestamp has no TSTInfo content")?
        .decode_as::<der::asn1::OctetString>()
        .map_err(|e| format!("the timestamp's content is not an OCTET STRING: {e}"))?;
    let tst = TstInfo::from_der(tst_der.as_bytes())
        .map_err(|e| format!("the timestamp's TSTInfo is malformed: {e}"))?;

    // 1. It stamps this signature.
    let imprint_oid = tst.message_imprint.hash_algorithm.oid.to_string();
    let wanted = hash(&imprint_oid, signature)
        .ok_or_else(|| format!("unsupported timestamp hash algorithm {imprint_oid}"))?;
    if wanted != tst.message_imprint.hashed_message.as_bytes() {
        return Err("the timestamp is not over this signature (message imprint differs)".into());
    }

    // 2. Its one signer signed the TSTInfo.
    let signer_info = match signed.signer_infos.0.as_slice() {
        [one] => one,
        other => {
            return Err(format!(
                "the timestamp has {} signers, not one",
                other.len()
            ))
        }
    };
    let certificates: Vec<Certificate> = signed
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
                    _ => None,
                })
                .take(MAX_TOKEN_CERTIFICATES)
                .collect()
        })
        .unwrap_or_default();
    let signer_cert = certificates
        .iter()
        .find(|c| is_signer(c, &signer_info.sid))
        .ok_or("the timestamp does not carry its signer's certificate")?;
    let digest_oid = signer_info.digest_alg.oid.to_string();
    let attributes = signer_info
        .signed_attrs
        .as_ref()
        .ok_or("the timestamp's signer has no signed attributes")?;
    let attribute = |oid: &str| {
        attributes
            .iter()
            .find(|a| a.oid.to_string() == oid)
            .and_then(|a| a.values.iter().next())
    };
    let content_type = attribute(OID_CONTENT_TYPE)
        .and_then(|v| v.decode_as::<der::asn1::ObjectIdentifier>().ok())
        .ok_or("the timestamp's signer has no content-type attribute")?;
    if content_type.to_string() != OID_TST_INFO {
        return Err("the timestamp's signed content type is not TSTInfo".into());
    }
    let message_digest = attribute(OID_MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<der::asn1::OctetString>().ok())
        .ok_or("the timestamp's signer has no message-digest attribute")?;
    let content_hash = hash(&digest_oid, tst_der.as_bytes())
        .ok_or_else(|| format!("unsupported timestamp digest algorithm {digest_oid}"))?;
    if message_digest.as_bytes() != content_hash {
        return Err("the timestamp's message digest does not match its TSTInfo".into());
    }
    // RFC 5652 §5.4: the signature is over the attributes as a DER SET OF.
    let signed_attributes = attributes
        .to_der()
        .map_err(|e| format!("the timestamp's signed attributes do not encode: {e}"))?;
    let algorithm = signature_algorithm(
        &signer_info.signature_algorithm.oid.to_string(),
        &digest_oid,
    )
    .ok_or_else(|| {
        format!(
            "unsupported timestamp signature algorithm {}",
            signer_info.signature_algorithm.oid
        )
    })?;
    let key = signer_cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or("the TSA certificate's key is malformed")?;
    UnparsedPublicKey::new(algorithm, key)
        .verify(&signed_attributes, signer_info.signature.as_bytes())
        .map_err(|_| "the timestamp's signature does not verify with its TSA certificate")?;

    // 3. The TSA is trusted for timestamping at the time it states.
    let time = jiff::Timestamp::try_from(tst.gen_time.to_system_time())
        .map_err(|e| format!("the timestamp's time is out of range: {e}"))?;
    let leaf = CertificateDer::from(
        signer_cert
            .to_der()
            .map_err(|e| format!("the TSA certificate does not encode: {e}"))?,
    );
    let intermediates: Vec<CertificateDer<'static>> = certificates
        .iter()
        .filter(|c| !is_signer(c, &signer_info.sid))
        .filter_map(|c| c.to_der().ok().map(CertificateDer::from))
        .collect();
    if tsa_anchors.is_empty() {
        return Err("no TSA certificates are trusted".into());
    }
    // Notation: the TSA's own certificate must name timeStamping; webpki
    // checks EKUs along the path only where they are present (a CA
    // certificate without EKUs constrains nothing).
    if !has_time_stamping_eku(signer_cert) {
        return Err("the timestamp's TSA certificate lacks the timeStamping key usage".into());
    }
    webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| format!("the TSA certificate is unusable: {e:?}"))?
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            tsa_anchors,
            &intermediates,
            unix(time),
            webpki::KeyUsage::required_if_present(EKU_TIME_STAMPING),
            None,
            None,
        )
        .map_err(|e| match e {
            // A root of the same name but another key is no root of its.
            webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                "the timestamp's TSA does not lead to a trusted TSA certificate".to_string()
            }
            other => format!("the timestamp's TSA certificate is not valid at {time}: {other:?}"),
        })?;
    let accuracy = tst.accuracy.map_or(Duration::from_secs(1), |a| {
        Duration::from_secs(a.seconds.unwrap_or(0))
            + Duration::from_millis(a.millis.map_or(0, |m| m.max(0) as u64))
            + Duration::from_micros(a.micros.map_or(0, |m| m.max(0) as u64))
    });
    Ok(AuthenticTime { time, accuracy })
}

fn has_time_stamping_eku(c: &Certificate) -> bool {
    c.tbs_certificate
        .extensions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter(|e| e.extn_id.to_string() == "2.5.29.37")
        .filter_map(|e| {
            x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok()
        })
        .any(|eku| eku.0.iter().any(|oid| oid.as_bytes() == EKU_TIME_STAMPING))
}

fn is_signer(c: &Certificate, sid: &SignerIdentifier) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(is) => {
            c.tbs_certificate.issuer == is.issuer
                && c.tbs_certificate.serial_number == is.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => c
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(|e| e.extn_id.to_string() == "2.5.29.14")
            .filter_map(|e| {
                x509_cert::ext::pkix::SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).ok()
            })
            .any(|k| &k == ski),
    }
}
