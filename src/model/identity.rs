//! Keyless rules as a policy compiles them: which identities (issuer and
//! subject, exact or whole-string regular expression) an authority accepts,
//! and where certificates must chain to (the trust root's Fulcio CAs, or a
//! private CA). Built by `policy`, used by `verify`; no I/O.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

/// DER of the code-signing extended key usage, 1.3.6.1.5.5.7.3.3.
pub(crate) const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Matches a string exactly or by a whole-string regular expression.
#[derive(Debug, Clone)]
pub enum TextMatcher {
    /// Equal to this.
    Exact(String),
    /// The pattern as written, and its anchored compiled form.
    Regex(String, regex::Regex),
}

impl TextMatcher {
    /// From policy fields: exactly one of them is set (validated earlier).
    pub fn new(exact: Option<&str>, pattern: Option<&str>) -> Result<Self, regex::Error> {
        match (exact.filter(|s| !s.is_empty()), pattern) {
            (Some(e), _) => Ok(TextMatcher::Exact(e.to_string())),
            (None, Some(p)) => Ok(TextMatcher::Regex(
                p.to_string(),
                regex::Regex::new(&format!("^(?:{p})$"))?,
            )),
            (None, None) => Ok(TextMatcher::Exact(String::new())),
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TextMatcher::Exact(e) => e == value,
            TextMatcher::Regex(_, r) => r.is_match(value),
        }
    }
}

/// One accepted identity: issuer and subject must both match.
#[derive(Debug, Clone)]
pub struct IdentityRule {
    /// The OIDC issuer (Fulcio extension 1.3.6.1.4.1.57264.1.8 or .1.1).
    pub issuer: TextMatcher,
    /// The SAN (email or URI).
    pub subject: TextMatcher,
}

impl std::fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let part = |m: &TextMatcher, name: &str| match m {
            TextMatcher::Exact(e) => format!("{name} {e}"),
            TextMatcher::Regex(p, _) => format!("{name}RegExp {p}"),
        };
        write!(
            f,
            "{{{}, {}}}",
            part(&self.subject, "subject"),
            part(&self.issuer, "issuer")
        )
    }
}

/// The one identity check: `Ok` when some rule accepts `issuer` and
/// `subject`, else the accepted identities as one line for the message.
/// Both keyless authorities and `sigil verify-bundle` use it.
pub fn check_identity(rules: &[IdentityRule], issuer: &str, subject: &str) -> Result<(), String> {
    if rules
        .iter()
        .any(|r| r.issuer.matches(issuer) && r.subject.matches(subject))
    {
        return Ok(());
    }
    Err(rules
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", "))
}

/// A private CA from `keyless.ca-cert`.
#[derive(Debug)]
pub struct PrivateCa {
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
}

impl PrivateCa {
    /// From PEM certificates: self-signed ones are roots, the rest
    /// intermediates.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        use der::Decode;
        let blocks = pem::parse_many(text.trim()).map_err(|e| format!("not PEM: {e}"))?;
        let mut anchors = Vec::new();
        let mut intermediates = Vec::new();
        for b in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
            let cert = x509_cert::Certificate::from_der(b.contents())
                .map_err(|e| format!("not a certificate: {e}"))?;
            let der = CertificateDer::from(b.contents().to_vec());
            if cert.tbs_certificate.subject == cert.tbs_certificate.issuer {
                let anchor = webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| format!("unusable root certificate: {e}"))?;
                anchors.push(anchor.to_owned());
            } else {
                intermediates.push(der);
            }
        }
        if anchors.is_empty() {
            return Err("holds no self-signed root certificate".into());
        }
        Ok(PrivateCa {
            anchors,
            intermediates,
        })
    }

    pub(crate) fn verify_chain(
        &self,
        leaf: &[u8],
        extra: &[CertificateDer<'static>],
        at: jiff::Timestamp,
    ) -> Result<(), String> {
        let leaf = CertificateDer::from(leaf.to_vec());
        let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| e.to_string())?;
        let mut intermediates = self.intermediates.clone();
        intermediates.extend(extra.iter().cloned());
        let secs = u64::try_from(at.as_second()).unwrap_or(0);
        ee.verify_for_usage(
            sigstore_crypto::WEBPKI_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(secs)),
            webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("{e:?} at {at}"))
    }
}

/// Where a keyless authority's certificates must chain to.
#[derive(Debug, Clone)]
pub enum CertificateTrust {
    /// The Fulcio CAs of the trusted root (default or `trustRootRef`).
    TrustRoot,
    /// A private CA (`ca-cert`).
    PrivateCa(Arc<PrivateCa>),
}

/// A compiled keyless authority.
#[derive(Debug, Clone)]
pub struct KeylessPolicy {
    /// Accepted identities; any one matching is enough.
    pub identities: Vec<IdentityRule>,
    /// Where the chain must lead.
    pub trust: CertificateTrust,
    /// `trustRootRef` (keyless, else ctlog): the root for CAs, Rekor and CT.
    pub trust_root_ref: Option<String>,
    /// Check the embedded SCT (false with `insecureIgnoreSCT`).
    pub verify_sct: bool,
    /// A Rekor SET is required (always for Fulcio; for a private CA when
    /// the authority sets `ctlog`).
    pub require_tlog: bool,
    /// An RFC 3161 timestamp from a TSA of the trust root is required
    /// (`rfc3161timestamp`); the certificate must be valid at its time.
    pub require_timestamp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_needs_issuer_and_subject_from_one_rule() {
        let rules = vec![
            IdentityRule {
                issuer: TextMatcher::new(Some("https://accounts.example.com"), None).unwrap(),
                subject: TextMatcher::new(None, Some(".*@example.com")).unwrap(),
            },
            IdentityRule {
                issuer: TextMatcher::new(Some("https://token.example.org"), None).unwrap(),
                subject: TextMatcher::new(Some("ci"), None).unwrap(),
            },
        ];
        assert_eq!(
            check_identity(&rules, "https://accounts.example.com", "alice@example.com"),
            Ok(())
        );
        assert_eq!(
            check_identity(&rules, "https://token.example.org", "ci"),
            Ok(())
        );
        // Issuer of one rule, subject of the other: no.
        assert_eq!(
            check_identity(&rules, "https://token.example.org", "alice@example.com"),
            Err("{subjectRegExp .*@example.com, issuer https://accounts.example.com}, {subject ci, issuer https://token.example.org}".into())
        );
    }
}
