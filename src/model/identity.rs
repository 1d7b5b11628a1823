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

/// A claim a Fulcio certificate carries about the workload that asked for
/// it (extensions 1.3.6.1.4.1.57264.1.2–.6 and .9–.21), which an identity
/// may require. Named as the policy field names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    /// `.12` the repository the artifact was built from.
    SourceRepositoryUri,
    /// `.14` the ref it was built from, e.g. `refs/heads/main`.
    SourceRepositoryRef,
    /// `.13` the commit it was built from.
    SourceRepositoryDigest,
    /// `.16` the repository's owner.
    SourceRepositoryOwnerUri,
    /// `.9` the build configuration that asked for the certificate, with its ref.
    BuildSignerUri,
    /// `.10` the commit of that configuration.
    BuildSignerDigest,
    /// `.20` the event that started the build (`push`, `release`, …).
    BuildTrigger,
    /// `.11` `github-hosted` or `self-hosted`.
    RunnerEnvironment,
    /// `.18` the build configuration that ran (a workflow file).
    BuildConfigUri,
    /// `.2` GitHub's workflow trigger (deprecated by Fulcio).
    GithubWorkflowTrigger,
    /// `.3` GitHub's workflow commit (deprecated).
    GithubWorkflowSha,
    /// `.4` GitHub's workflow name (deprecated).
    GithubWorkflowName,
    /// `.5` GitHub's `owner/repository` (deprecated).
    GithubWorkflowRepository,
    /// `.6` GitHub's ref (deprecated).
    GithubWorkflowRef,
}

impl Claim {
    /// Every claim, in the order messages name them.
    pub const ALL: [Claim; 14] = [
        Claim::SourceRepositoryUri,
        Claim::SourceRepositoryRef,
        Claim::SourceRepositoryDigest,
        Claim::SourceRepositoryOwnerUri,
        Claim::BuildSignerUri,
        Claim::BuildSignerDigest,
        Claim::BuildTrigger,
        Claim::RunnerEnvironment,
        Claim::BuildConfigUri,
        Claim::GithubWorkflowTrigger,
        Claim::GithubWorkflowSha,
        Claim::GithubWorkflowName,
        Claim::GithubWorkflowRepository,
        Claim::GithubWorkflowRef,
    ];

    /// The policy field (`keyless.identities[].<field>`), also its name in
    /// messages and records.
    pub fn field(self) -> &'static str {
        match self {
            Claim::SourceRepositoryUri => "sourceRepositoryURI",
            Claim::SourceRepositoryRef => "sourceRepositoryRef",
            Claim::SourceRepositoryDigest => "sourceRepositoryDigest",
            Claim::SourceRepositoryOwnerUri => "sourceRepositoryOwnerURI",
            Claim::BuildSignerUri => "buildSignerURI",
            Claim::BuildSignerDigest => "buildSignerDigest",
            Claim::BuildTrigger => "buildTrigger",
            Claim::RunnerEnvironment => "runnerEnvironment",
            Claim::BuildConfigUri => "buildConfigURI",
            Claim::GithubWorkflowTrigger => "githubWorkflowTrigger",
            Claim::GithubWorkflowSha => "githubWorkflowSha",
            Claim::GithubWorkflowName => "githubWorkflowName",
            Claim::GithubWorkflowRepository => "githubWorkflowRepository",
            Claim::GithubWorkflowRef => "githubWorkflowRef",
        }
    }

    /// Its certificate extension's OID.
    pub fn oid(self) -> &'static str {
        match self {
            Claim::GithubWorkflowTrigger => "1.3.6.1.4.1.57264.1.2",
            Claim::GithubWorkflowSha => "1.3.6.1.4.1.57264.1.3",
            Claim::GithubWorkflowName => "1.3.6.1.4.1.57264.1.4",
            Claim::GithubWorkflowRepository => "1.3.6.1.4.1.57264.1.5",
            Claim::GithubWorkflowRef => "1.3.6.1.4.1.57264.1.6",
            Claim::BuildSignerUri => "1.3.6.1.4.1.57264.1.9",
            Claim::BuildSignerDigest => "1.3.6.1.4.1.57264.1.10",
            Claim::RunnerEnvironment => "1.3.6.1.4.1.57264.1.11",
            Claim::SourceRepositoryUri => "1.3.6.1.4.1.57264.1.12",
            Claim::SourceRepositoryDigest => "1.3.6.1.4.1.57264.1.13",
            Claim::SourceRepositoryRef => "1.3.6.1.4.1.57264.1.14",
            Claim::SourceRepositoryOwnerUri => "1.3.6.1.4.1.57264.1.16",
            Claim::BuildConfigUri => "1.3.6.1.4.1.57264.1.18",
            Claim::BuildTrigger => "1.3.6.1.4.1.57264.1.20",
        }
    }

    /// Whether a `…RegExp` twin of the field exists (URIs, refs, triggers:
    /// not digests, runner environments or GitHub's deprecated names).
    pub fn has_pattern(self) -> bool {
        matches!(
            self,
            Claim::SourceRepositoryUri
                | Claim::SourceRepositoryRef
                | Claim::SourceRepositoryOwnerUri
                | Claim::BuildSignerUri
                | Claim::BuildTrigger
                | Claim::BuildConfigUri
        )
    }

    /// `sigil verify-bundle`'s flag for it (cosign's names for GitHub's
    /// deprecated claims, Fulcio's names for the rest).
    pub fn flag(self) -> &'static str {
        match self {
            Claim::SourceRepositoryUri => "certificate-source-repository-uri",
            Claim::SourceRepositoryRef => "certificate-source-repository-ref",
            Claim::SourceRepositoryDigest => "certificate-source-repository-digest",
            Claim::SourceRepositoryOwnerUri => "certificate-source-repository-owner-uri",
            Claim::BuildSignerUri => "certificate-build-signer-uri",
            Claim::BuildSignerDigest => "certificate-build-signer-digest",
            Claim::BuildTrigger => "certificate-build-trigger",
            Claim::RunnerEnvironment => "certificate-runner-environment",
            Claim::BuildConfigUri => "certificate-build-config-uri",
            Claim::GithubWorkflowTrigger => "certificate-github-workflow-trigger",
            Claim::GithubWorkflowSha => "certificate-github-workflow-sha",
            Claim::GithubWorkflowName => "certificate-github-workflow-name",
            Claim::GithubWorkflowRepository => "certificate-github-workflow-repository",
            Claim::GithubWorkflowRef => "certificate-github-workflow-ref",
        }
    }
}

/// The claims a certificate carries.
pub type Claims = std::collections::BTreeMap<Claim, String>;

/// One accepted identity: issuer and subject must both match, and every
/// claim it names.
#[derive(Debug, Clone)]
pub struct IdentityRule {
    /// The OIDC issuer (Fulcio extension 1.3.6.1.4.1.57264.1.8 or .1.1).
    pub issuer: TextMatcher,
    /// The SAN (email or URI).
    pub subject: TextMatcher,
    /// Claims that must hold too.
    pub claims: Vec<(Claim, TextMatcher)>,
}

impl IdentityRule {
    /// A rule of issuer and subject only.
    pub fn new(issuer: TextMatcher, subject: TextMatcher) -> Self {
        IdentityRule {
            issuer,
            subject,
            claims: Vec::new(),
        }
    }
}

fn part(m: &TextMatcher, name: &str) -> String {
    match m {
        TextMatcher::Exact(e) => format!("{name} {e}"),
        TextMatcher::Regex(p, _) => format!("{name}RegExp {p}"),
    }
}

impl std::fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{{}, {}",
            part(&self.subject, "subject"),
            part(&self.issuer, "issuer")
        )?;
        for (claim, m) in &self.claims {
            write!(f, ", {}", part(m, claim.field()))?;
        }
        f.write_str("}")
    }
}

/// Why a certificate is not an accepted identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityMismatch {
    /// No rule accepts its issuer and subject: the accepted identities.
    Identity(String),
    /// A rule accepts its issuer and subject, but claims it names differ:
    /// each as `<claim> is <found>, wanted <wanted>`.
    Claims(String),
}

/// The one identity check: `Ok` with the claims the accepting rule checked
/// (claim → the certificate's value) when some rule accepts `issuer`,
/// `subject` and every claim it names; else why not. Both keyless
/// authorities and `sigil verify-bundle` use it.
pub fn check_identity(
    rules: &[IdentityRule],
    issuer: &str,
    subject: &str,
    claims: &Claims,
) -> Result<Claims, IdentityMismatch> {
    let mut differing: Vec<String> = Vec::new();
    for r in rules
        .iter()
        .filter(|r| r.issuer.matches(issuer) && r.subject.matches(subject))
    {
        let mut checked = Claims::new();
        let mut wrong = Vec::new();
        for (claim, wanted) in &r.claims {
            let want = match wanted {
                TextMatcher::Exact(e) => e.clone(),
                TextMatcher::Regex(p, _) => format!("one matching {p}"),
            };
            match claims.get(claim) {
                Some(found) if wanted.matches(found) => {
                    checked.insert(*claim, found.clone());
                }
                Some(found) => wrong.push(format!("{} is {found}, wanted {want}", claim.field())),
                None => wrong.push(format!(
                    "{} is absent from the certificate ({}), wanted {want}",
                    claim.field(),
                    claim.oid()
                )),
            }
        }
        if wrong.is_empty() {
            return Ok(checked);
        }
        differing.push(wrong.join(", "));
    }
    if !differing.is_empty() {
        return Err(IdentityMismatch::Claims(differing.join("; or ")));
    }
    Err(IdentityMismatch::Identity(
        rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    ))
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
    /// A Rekor entry is required: always for Fulcio certificates (as in
    /// policy-controller, `rfc3161timestamp` adds a requirement, it takes
    /// none away), for a private CA when the authority sets `ctlog`. See
    /// [`KeylessPolicy::tlog_required`] for the one exception.
    pub require_tlog: bool,
    /// `rfc3161timestamp` without `ctlog` on a Fulcio authority: when its
    /// trust root has no transparency log at all (GitHub's instance for
    /// private repositories: Fulcio and a TSA, no Rekor), the timestamp is
    /// the signing-time evidence instead of a Rekor entry nobody could
    /// have made.
    pub timestamp_without_log: bool,
    /// An RFC 3161 timestamp from a TSA of the trust root is required
    /// (`rfc3161timestamp`); the certificate must be valid at its time.
    pub require_timestamp: bool,
}

impl KeylessPolicy {
    /// Whether a Rekor entry is required against a trust root that has
    /// transparency logs (`root_has_logs`) or none.
    pub fn tlog_required(&self, root_has_logs: bool) -> bool {
        self.require_tlog && (root_has_logs || !self.timestamp_without_log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_needs_issuer_and_subject_from_one_rule() {
        let rules = vec![
            IdentityRule::new(
                TextMatcher::new(Some("https://accounts.example.com"), None).unwrap(),
                TextMatcher::new(None, Some(".*@example.com")).unwrap(),
            ),
            IdentityRule::new(
                TextMatcher::new(Some("https://token.example.org"), None).unwrap(),
                TextMatcher::new(Some("ci"), None).unwrap(),
            ),
        ];
        let none = Claims::new();
        assert_eq!(
            check_identity(
                &rules,
                "https://accounts.example.com",
                "alice@example.com",
                &none
            ),
            Ok(Claims::new())
        );
        assert_eq!(
            check_identity(&rules, "https://token.example.org", "ci", &none),
            Ok(Claims::new())
        );
        // Issuer of one rule, subject of the other: no.
        assert_eq!(
            check_identity(&rules, "https://token.example.org", "alice@example.com", &none),
            Err(IdentityMismatch::Identity("{subjectRegExp .*@example.com, issuer https://accounts.example.com}, {subject ci, issuer https://token.example.org}".into()))
        );
    }

    #[test]
    fn every_claim_a_rule_names_must_hold() {
        let issuer = "https://token.actions.githubusercontent.com";
        let subject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";
        let rule = IdentityRule {
            claims: vec![
                (
                    Claim::SourceRepositoryUri,
                    TextMatcher::new(Some("https://github.com/acme/app"), None).unwrap(),
                ),
                (
                    Claim::SourceRepositoryRef,
                    TextMatcher::new(None, Some("refs/(heads/main|tags/v.*)")).unwrap(),
                ),
                (
                    Claim::RunnerEnvironment,
                    TextMatcher::new(Some("github-hosted"), None).unwrap(),
                ),
            ],
            ..IdentityRule::new(
                TextMatcher::new(Some(issuer), None).unwrap(),
                TextMatcher::new(Some(subject), None).unwrap(),
            )
        };
        let claims = |r: &str, runner: Option<&str>| {
            let mut c = Claims::from([
                (
                    Claim::SourceRepositoryUri,
                    "https://github.com/acme/app".to_string(),
                ),
                (Claim::SourceRepositoryRef, r.to_string()),
                (Claim::BuildTrigger, "push".to_string()),
            ]);
            if let Some(runner) = runner {
                c.insert(Claim::RunnerEnvironment, runner.to_string());
            }
            c
        };
        let checked = check_identity(
            std::slice::from_ref(&rule),
            issuer,
            subject,
            &claims("refs/tags/v1.2", Some("github-hosted")),
        )
        .unwrap();
        assert_eq!(
            checked.len(),
            3,
            "only the claims the rule names: {checked:?}"
        );
        assert_eq!(
            check_identity(
                std::slice::from_ref(&rule),
                issuer,
                subject,
                &claims("refs/heads/dev", Some("self-hosted"))
            ),
            Err(IdentityMismatch::Claims("sourceRepositoryRef is refs/heads/dev, wanted one matching refs/(heads/main|tags/v.*), runnerEnvironment is self-hosted, wanted github-hosted".into()))
        );
        assert_eq!(
            check_identity(
                std::slice::from_ref(&rule),
                issuer,
                subject,
                &claims("refs/heads/main", None)
            ),
            Err(IdentityMismatch::Claims("runnerEnvironment is absent from the certificate (1.3.6.1.4.1.57264.1.11), wanted github-hosted".into()))
        );
        assert_eq!(
            rule.to_string(),
            format!("{{subject {subject}, issuer {issuer}, sourceRepositoryURI https://github.com/acme/app, sourceRepositoryRefRegExp refs/(heads/main|tags/v.*), runnerEnvironment github-hosted}}")
        );
    }
}
