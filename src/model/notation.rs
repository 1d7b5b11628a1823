//! A compiled Notation (Notary Project) authority: its trust store, trusted
//! identities and verification level, and the Notary Project's table of
//! what each level does with each check. Pure data and rules: parsing the
//! policy's strings, matching a certificate subject; no verification.
//!
//! The levels (Notary Project trust policy specification):
//!
//! | level      | integrity | authenticity | authentic timestamp | expiry  | revocation |
//! |------------|-----------|--------------|---------------------|---------|------------|
//! | strict     | enforce   | enforce      | enforce             | enforce | enforce    |
//! | permissive | enforce   | enforce      | log                 | log     | log        |
//! | audit      | enforce   | log          | log                 | log     | log        |
//! | skip       | skip      | skip         | skip                | skip    | skip       |

use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::Serialize;

/// A Notation verification level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Every check enforced.
    Strict,
    /// Integrity and authenticity enforced; the rest logged.
    Permissive,
    /// Integrity enforced; the rest logged.
    Audit,
    /// Nothing verified: the image is trusted as it is.
    Skip,
}

/// The levels' spellings, in the table's order.
pub const LEVELS: [&str; 4] = ["strict", "permissive", "audit", "skip"];

impl Level {
    /// `strict`, `permissive`, `audit`, `skip`; absent means strict.
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("strict") {
            "strict" => Ok(Level::Strict),
            "permissive" => Ok(Level::Permissive),
            "audit" => Ok(Level::Audit),
            "skip" => Ok(Level::Skip),
            other => Err(format!("{other:?} is not one of {}", LEVELS.join(", "))),
        }
    }

    /// Its spelling.
    pub fn name(self) -> &'static str {
        LEVELS[self as usize]
    }

    /// What this level does when `check` fails.
    pub fn action(self, check: Check) -> Action {
        match (self, check) {
            (Level::Skip, _) => Action::Skip,
            (Level::Strict, _) | (_, Check::Integrity) => Action::Enforce,
            (Level::Permissive, Check::Authenticity) => Action::Enforce,
            _ => Action::Log,
        }
    }
}

/// One of the Notary Project's verification checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The envelope's signature over its payload, with the signing
    /// certificate's key.
    Integrity,
    /// The chain leads to the trust store under the code-signing rules, and
    /// the signer is a trusted identity.
    Authenticity,
    /// The chain was valid at the signing time: the RFC 3161 timestamp's,
    /// else now.
    AuthenticTimestamp,
    /// The signature's own expiry (`io.cncf.notary.expiry`) has not passed.
    Expiry,
    /// No certificate of the chain is revoked.
    Revocation,
}

impl Check {
    /// How people read it.
    pub fn name(self) -> &'static str {
        match self {
            Check::Integrity => "integrity",
            Check::Authenticity => "authenticity",
            Check::AuthenticTimestamp => "authentic timestamp",
            Check::Expiry => "expiry",
            Check::Revocation => "revocation",
        }
    }
}

/// What a level does with a failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The signature does not count.
    Enforce,
    /// The signature counts; the failure is reported as a warning.
    Log,
    /// The check is not made.
    Skip,
}

/// One `trustedIdentities` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedIdentity {
    /// `*`: any signer whose chain leads to the trust store.
    Any,
    /// `x509.subject: DN`: a signer whose certificate subject holds every
    /// attribute of the DN with the same value.
    Subject(Vec<(String, String)>),
}

/// X.509 attributes a Notation `x509.subject` may name.
pub const SUBJECT_ATTRIBUTES: [&str; 11] = [
    "C",
    "ST",
    "L",
    "O",
    "OU",
    "CN",
    "SN",
    "GIVENNAME",
    "STREET",
    "POSTALCODE",
    "EMAILADDRESS",
];

impl TrustedIdentity {
    /// `*` or `x509.subject: C=US, ST=WA, O=Notary, CN=e2e` (attributes once
    /// each, C, ST and O required, as Notation's trust policy requires).
    /// Escaped or quoted DN values are refused rather than guessed at.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if entry == "*" {
            return Ok(TrustedIdentity::Any);
        }
        let Some(dn) = entry.strip_prefix("x509.subject:") else {
            return Err(format!(
                "{entry:?} is neither \"*\" nor \"x509.subject: DN\""
            ));
        };
        if dn.contains(['\\', '"', '+']) {
            return Err(
                "x509.subject: escaped, quoted or multi-valued DN attributes are not supported"
                    .into(),
            );
        }
        let mut attributes: Vec<(String, String)> = Vec::new();
        for part in dn.split(',') {
            let (attribute, value) = part
                .split_once('=')
                .ok_or_else(|| format!("x509.subject: {:?} is not ATTRIBUTE=value", part.trim()))?;
            let attribute = attribute.trim().to_ascii_uppercase();
            if !SUBJECT_ATTRIBUTES.contains(&attribute.as_str()) {
                return Err(format!("x509.subject: unknown attribute {attribute:?}"));
            }
            let value = value.trim();
            if value.is_empty() {
                return Err(format!("x509.subject: {attribute} has no value"));
            }
            if attributes.iter().any(|(a, _)| *a == attribute) {
                return Err(format!("x509.subject: {attribute} appears twice"));
            }
            attributes.push((attribute, value.to_string()));
        }
        for required in ["C", "ST", "O"] {
            if !attributes.iter().any(|(a, _)| a == required) {
                return Err(format!(
                    "x509.subject: {required} is required (C, ST and O must all be present)"
                ));
            }
        }
        Ok(TrustedIdentity::Subject(attributes))
    }

    /// Whether a certificate whose subject has these (attribute, value)
    /// pairs is this identity.
    pub fn matches(&self, subject: &[(String, String)]) -> bool {
        match self {
            TrustedIdentity::Any => true,
            TrustedIdentity::Subject(wanted) => wanted
                .iter()
                .all(|w| subject.iter().any(|(a, v)| *a == w.0 && *v == w.1)),
        }
    }
}

impl std::fmt::Display for TrustedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustedIdentity::Any => f.write_str("*"),
            TrustedIdentity::Subject(attributes) => {
                let dn: Vec<String> = attributes.iter().map(|(a, v)| format!("{a}={v}")).collect();
                write!(f, "x509.subject: {}", dn.join(", "))
            }
        }
    }
}

/// A compiled `notation` authority.
#[derive(Debug)]
pub struct NotationPolicy {
    /// `trustStore.certificates` as trust anchors.
    pub anchors: Vec<TrustAnchor<'static>>,
    /// `trustStore.tsaCertificates` as trust anchors (empty: timestamps are
    /// not verified and the chain must be valid now).
    pub tsa_anchors: Vec<TrustAnchor<'static>>,
    /// `trustStore.crls`, parsed once (empty: revocation is skipped).
    pub crls: Vec<webpki::CertRevocationList<'static>>,
    /// Any one matching is enough.
    pub identities: Vec<TrustedIdentity>,
    /// The verification level.
    pub level: Level,
}

/// The certificates of a PEM bundle as DER, or why it is not one.
pub fn pem_certificates(pem_text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    use der::Decode;
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("no PEM certificate found".into());
    }
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        if block.tag() != "CERTIFICATE" {
            return Err(format!(
                "PEM block {i} is {:?}, not CERTIFICATE",
                block.tag()
            ));
        }
        x509_cert::Certificate::from_der(block.contents())
            .map_err(|e| format!("certificate {i} does not parse: {e}"))?;
        out.push(CertificateDer::from(block.contents().to_vec()));
    }
    Ok(out)
}

/// The revocation lists of a PEM bundle (`X509 CRL` blocks), parsed, or
/// why not.
pub fn pem_crls(pem_text: &str) -> Result<Vec<webpki::CertRevocationList<'static>>, String> {
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("no PEM X509 CRL found".into());
    }
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        if block.tag() != "X509 CRL" {
            return Err(format!("PEM block {i} is {:?}, not X509 CRL", block.tag()));
        }
        let crl = webpki::OwnedCertRevocationList::from_der(block.contents())
            .map_err(|e| format!("CRL {i} does not parse: {e:?}"))?;
        out.push(crl.into());
    }
    Ok(out)
}

/// Trust anchors from certificates (each one trusted as it is, whether a
/// root CA or a self-signed signing certificate, as Notation's trust
/// stores hold either).
pub fn anchors(certs: &[CertificateDer<'static>]) -> Result<Vec<TrustAnchor<'static>>, String> {
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(|e| format!("certificate {i} cannot be a trust anchor: {e:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_acts_as_the_specification_table_says() {
        use Action::*;
        use Check::*;
        let checks = [
            Integrity,
            Authenticity,
            AuthenticTimestamp,
            Expiry,
            Revocation,
        ];
        for (level, want) in [
            (Level::Strict, [Enforce, Enforce, Enforce, Enforce, Enforce]),
            (Level::Permissive, [Enforce, Enforce, Log, Log, Log]),
            (Level::Audit, [Enforce, Log, Log, Log, Log]),
            (Level::Skip, [Skip, Skip, Skip, Skip, Skip]),
        ] {
            let got: Vec<Action> = checks.iter().map(|c| level.action(*c)).collect();
            assert_eq!(got, want, "{level:?}");
            assert_eq!(Level::parse(Some(level.name())), Ok(level));
        }
        assert_eq!(Level::parse(None), Ok(Level::Strict));
        assert_eq!(
            Level::parse(Some("lenient")),
            Err("\"lenient\" is not one of strict, permissive, audit, skip".into())
        );
    }

    fn subject(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_x509_subject_identity_is_a_subset_of_the_certificate_subject() {
        let id = TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Notary").unwrap();
        let cert = subject(&[
            ("C", "US"),
            ("ST", "WA"),
            ("L", "Seattle"),
            ("O", "Notary"),
            ("CN", "alpine"),
        ]);
        assert!(id.matches(&cert));
        let full =
            TrustedIdentity::parse("x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine")
                .unwrap();
        assert!(full.matches(&cert));
        // One attribute different, or missing from the certificate: no.
        let other = TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Notary, CN=e2e").unwrap();
        assert!(!other.matches(&cert));
        let ou = TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Notary, OU=Dev").unwrap();
        assert!(!ou.matches(&cert));
        assert!(TrustedIdentity::Any.matches(&cert));
        assert_eq!(
            other.to_string(),
            "x509.subject: C=US, ST=WA, O=Notary, CN=e2e"
        );
    }

    #[test]
    fn malformed_identities_are_refused_with_the_reason() {
        for (entry, says) in [
            ("e2e", "is neither"),
            ("x509.subject: CN=e2e", "C is required"),
            (
                "x509.subject: C=US, ST=WA, O=N, XX=1",
                "unknown attribute \"XX\"",
            ),
            ("x509.subject: C=US, C=DE, ST=WA, O=N", "C appears twice"),
            ("x509.subject: C=US, ST=WA, O=", "O has no value"),
            ("x509.subject: C=US, ST=WA, O=A\\,B", "escaped"),
            ("x509.subject: C=US ST=WA", "ST is required"),
        ] {
            let e = TrustedIdentity::parse(entry).unwrap_err();
            assert!(e.contains(says), "{entry}: {e}");
        }
    }
}
