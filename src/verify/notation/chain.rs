//! The certificates of a Notation signature: the signing chain checked
//! against a trust store under the Notary Project's code-signing rules
//! (rustls-webpki builds and checks the path; the leaf's key usage and
//! basic constraints are read with x509-cert), each certificate's validity
//! at a time, revocation against inline CRLs, and the subject a trusted
//! identity is matched with. No clock: every time is the caller's.

use std::time::Duration;

use der::Decode;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_cert::Certificate;

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER value.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// id-kp-timeStamping (1.3.6.1.5.5.7.3.8), DER value.
pub const EKU_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

/// A parsed certificate of a chain.
pub struct ChainCertificate {
    /// Its DER.
    pub der: CertificateDer<'static>,
    /// Parsed.
    pub cert: Certificate,
}

/// Parses every certificate of a chain.
pub fn parse_chain(chain: &[CertificateDer<'static>]) -> Result<Vec<ChainCertificate>, String> {
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            Certificate::from_der(der.as_ref())
                .map(|cert| ChainCertificate {
                    der: der.clone(),
                    cert,
                })
                .map_err(|e| format!("certificate {i} of the chain does not parse: {e}"))
        })
        .collect()
}

fn unix(t: jiff::Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(t.as_second()).unwrap_or(0),
    ))
}

/// A certificate's validity period.
pub fn validity(c: &Certificate) -> (jiff::Timestamp, jiff::Timestamp) {
    let at = |t: &x509_cert::time::Time| {
        jiff::Timestamp::try_from(t.to_system_time()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    (
        at(&c.tbs_certificate.validity.not_before),
        at(&c.tbs_certificate.validity.not_after),
    )
}

/// Notation's short name of an attribute type; others keep their OID.
fn attribute_name(oid: &der::asn1::ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "2.5.4.6" => "C".to_string(),
        "2.5.4.8" => "ST".into(),
        "2.5.4.7" => "L".into(),
        "2.5.4.10" => "O".into(),
        "2.5.4.11" => "OU".into(),
        "2.5.4.3" => "CN".into(),
        "2.5.4.4" => "SN".into(),
        "2.5.4.42" => "GIVENNAME".into(),
        "2.5.4.9" => "STREET".into(),
        "2.5.4.17" => "POSTALCODE".into(),
        "1.2.840.113549.1.9.1" => "EMAILADDRESS".into(),
        other => other.to_string(),
    }
}

/// The value of an attribute when it is one of the directory string
/// types (UTF8String, PrintableString, IA5String, TeletexString,
/// BMPString); `None` for any other type.
fn string_value(value: &der::Any) -> Option<String> {
    der::asn1::Utf8StringRef::try_from(value)
        .map(|s| s.as_str().to_string())
        .or_else(|_| der::asn1::PrintableStringRef::try_from(value).map(|s| s.as_str().to_string()))
        .or_else(|_| der::asn1::Ia5StringRef::try_from(value).map(|s| s.as_str().to_string()))
        .or_else(|_| der::asn1::TeletexStringRef::try_from(value).map(|s| s.as_str().to_string()))
        .or_else(|_| {
            value
                .decode_as::<der::asn1::BmpString>()
                .map(|s| s.to_string())
        })
        .ok()
}

/// The subject of a certificate as (attribute, value) pairs with
/// Notation's short names (C, ST, L, O, OU, CN, …), for people to read:
/// attributes with other names keep their OID, values of other than string
/// types are shown as `#` and their DER in hex (as Go prints them).
pub fn subject_attributes(name: &x509_cert::name::Name) -> Vec<(String, String)> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .map(|atv| {
            let value = string_value(&atv.value).unwrap_or_else(|| {
                use der::Encode;
                format!("#{}", hex::encode(atv.value.to_der().unwrap_or_default()))
            });
            (attribute_name(&atv.oid), value)
        })
        .collect()
}

/// The subject's attributes as a trusted identity is matched against, as
/// notation-go reads a signing certificate: a subject with a multi-valued
/// RDN (`CN=dev+OU=Release`) or an attribute given twice (`OU=Dev,
/// OU=Release`) is refused, since which of its values "is" the attribute
/// is a matter of reading; values of other than string types are left out,
/// so they match nothing.
pub fn identity_attributes(name: &x509_cert::name::Name) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for rdn in name.0.iter() {
        if rdn.0.len() > 1 {
            let parts: Vec<String> = rdn.0.iter().map(|atv| attribute_name(&atv.oid)).collect();
            return Err(format!(
                "has a multi-valued RDN ({}); Notation refuses subjects with multi-valued RDNs",
                parts.join("+")
            ));
        }
        for atv in rdn.0.iter() {
            let attribute = attribute_name(&atv.oid);
            if seen.contains(&attribute) {
                return Err(format!(
                    "has {attribute} more than once; Notation refuses subjects with repeated attributes"
                ));
            }
            seen.push(attribute.clone());
            if let Some(value) = string_value(&atv.value) {
                out.push((attribute, value));
            }
        }
    }
    Ok(out)
}

/// A DN as people read it, in the certificate's order: `C=US, ST=WA, …`.
pub fn dn_string(attributes: &[(String, String)]) -> String {
    attributes
        .iter()
        .map(|(a, v)| format!("{a}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Notary Project's rules for a signing certificate that webpki does
/// not check on an end-entity: key usage present with digitalSignature,
/// not a CA.
fn check_signing_leaf(leaf: &Certificate) -> Result<(), String> {
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
    let extensions = leaf.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let find = |oid: &str| extensions.iter().find(|e| e.extn_id.to_string() == oid);
    match find("2.5.29.15") {
        None => return Err("the signing certificate has no key usage extension".into()),
        Some(ext) => {
            let usage = KeyUsage::from_der(ext.extn_value.as_bytes())
                .map_err(|e| format!("the signing certificate's key usage is malformed: {e}"))?;
            if !usage.0.contains(KeyUsages::DigitalSignature) {
                return Err("the signing certificate's key usage lacks digitalSignature".into());
            }
        }
    }
    if let Some(ext) = find("2.5.29.19") {
        let bc = BasicConstraints::from_der(ext.extn_value.as_bytes()).map_err(|e| {
            format!("the signing certificate's basic constraints are malformed: {e}")
        })?;
        if bc.ca {
            return Err("the signing certificate is a CA certificate".into());
        }
    }
    Ok(())
}

/// The authenticity of the chain's structure: the signing certificate
/// meets the code-signing rules and chains through the envelope's other
/// certificates to one of `anchors` (see [`verify_path`] for the time).
pub fn verify_code_signing_chain(
    chain: &[ChainCertificate],
    anchors: &[TrustAnchor<'static>],
) -> Result<(), String> {
    let leaf = chain.first().ok_or("empty certificate chain")?;
    check_signing_leaf(&leaf.cert)?;
    verify_path(chain, anchors, None)
        .map(|_| ())
        .map_err(|e| match e {
            // A certificate of the same name but another key is no issuer of it.
            webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                "the certificate chain does not lead to a certificate of the trust store"
                    .to_string()
            }
            other => format!("the certificate chain is not valid for code signing: {other:?}"),
        })
}

/// The path from the signing certificate through the envelope's other
/// certificates to one of `anchors`, for code signing. Validity periods
/// are the authentic timestamp check's, so the path is checked at a time
/// inside every certificate's period (the latest `notBefore`).
fn verify_path(
    chain: &[ChainCertificate],
    anchors: &[TrustAnchor<'static>],
    revocation: Option<webpki::RevocationOptions<'_>>,
) -> Result<(), webpki::Error> {
    let leaf = chain.first().ok_or(webpki::Error::BadDer)?;
    let at = chain
        .iter()
        .map(|c| validity(&c.cert).0)
        .max()
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let ee = webpki::EndEntityCert::try_from(&leaf.der)?;
    let intermediates: Vec<CertificateDer<'static>> =
        chain[1..].iter().map(|c| c.der.clone()).collect();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        &intermediates,
        unix(at),
        webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
        revocation,
        None,
    )
    .map(|_| ())
}

/// Every certificate of the chain is valid over all of `[earliest, latest]`.
pub fn check_validity(
    chain: &[ChainCertificate],
    earliest: jiff::Timestamp,
    latest: jiff::Timestamp,
    what: &str,
) -> Result<(), String> {
    for c in chain {
        let (not_before, not_after) = validity(&c.cert);
        let name = dn_string(&subject_attributes(&c.cert.tbs_certificate.subject));
        if earliest < not_before {
            return Err(format!(
                "{what} {earliest} is before certificate \"{name}\" is valid (from {not_before})"
            ));
        }
        if latest > not_after {
            return Err(format!(
                "certificate \"{name}\" expired at {not_after}, before {what} {latest}"
            ));
        }
    }
    Ok(())
}

/// No certificate of the chain is revoked by `crls`. A certificate no given
/// CRL covers is not revoked as far as sigil can tell; the CRLs are the
/// admin's, used as given (their `nextUpdate` is not enforced).
pub fn check_revocation(
    chain: &[ChainCertificate],
    anchors: &[TrustAnchor<'static>],
    crls: &[webpki::CertRevocationList<'static>],
) -> Result<(), String> {
    let refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let options = webpki::RevocationOptionsBuilder::new(&refs)
        .map_err(|_| "no usable CRL".to_string())?
        .with_depth(webpki::RevocationCheckDepth::Chain)
        .with_status_policy(webpki::UnknownStatusPolicy::Allow)
        .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
        .build();
    verify_path(chain, anchors, Some(options))
        .map(|_| ())
        .map_err(|e| match e {
            webpki::Error::CertRevoked => "a certificate of the chain is revoked".to_string(),
            other => format!("revocation could not be checked: {other:?}"),
        })
}
