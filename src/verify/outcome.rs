//! What verification concludes: one [`AuthorityOutcome`] per authority and
//! one [`PolicyOutcome`] per policy, with typed failures ([`Failure`]) so
//! that whether a verdict may be cached is decided by type, not by a flag
//! someone has to remember to carry.
//!
//! This module only describes conclusions; it reaches none (that is
//! [`super::judge`]) and fetches nothing.

use serde::{Serialize, Serializer};

use super::keyless::SignerIdentity;
use super::notation::NotationSigner;
use crate::policy::PolicyMode;
use crate::registry::RegistryError;

/// Why something does not vouch for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The registry, the network or the clock failed (unreachable, 5xx,
    /// timeout): it says nothing about the image and may not recur, so it
    /// is never cached.
    Transient(String),
    /// A fact about the image and the policy (unsigned, wrong key, wrong
    /// identity, tampered, missing trust root): cached like a pass.
    Verdict(String),
}

impl Failure {
    /// `message` about a registry error: transient when the registry (not
    /// the image) is at fault, as [`RegistryError::is_transient`] decides.
    pub fn registry(message: String, error: &RegistryError) -> Self {
        if error.is_transient() {
            Failure::Transient(message)
        } else {
            Failure::Verdict(message)
        }
    }

    /// The reason, as people read it.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Transient(r) | Failure::Verdict(r) => r,
        }
    }

    /// Whether it may not recur (and so must not be cached).
    pub fn is_transient(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// A passing authority: why, who signed, and what it adds to `spec.policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouch {
    /// `verified …`, as people read it.
    pub reason: String,
    /// For keyless evidence: who signed (certificate identity, issuer,
    /// GitHub workflow extensions, Rekor integrated time).
    pub signer: Option<SignerIdentity>,
    /// Its `authorityMatches.<name>` entry for `spec.policy`
    /// (`signatures`, `attestations`, `static`).
    pub matches: serde_json::Value,
    /// For a Notation authority: the signature that vouched, how it was
    /// verified, and the failures its level only logs.
    pub notation: Option<NotationSigner>,
    /// For an attestation authority: the verified Statements, by
    /// attestation name (what Kyverno's `extractPayload` returns). Counted
    /// in the verdict cache's weight.
    pub statements: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
}

impl Vouch {
    /// What passed but should be seen: the failures a Notation
    /// verification level logs instead of enforcing.
    pub fn warnings(&self) -> &[String] {
        self.notation.as_ref().map_or(&[], |n| n.logged.as_slice())
    }
}

/// What one authority concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityOutcome {
    /// Authority name.
    pub name: String,
    /// It vouches for the image, or why not.
    pub result: Result<Vouch, Failure>,
}

impl AuthorityOutcome {
    /// A failure of authority `name`.
    pub fn failed(name: &str, failure: Failure) -> Self {
        AuthorityOutcome {
            name: name.to_string(),
            result: Err(failure),
        }
    }

    /// Whether it vouches for the image.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// Why (`verified …` or the failure).
    pub fn reason(&self) -> &str {
        match &self.result {
            Ok(v) => &v.reason,
            Err(f) => f.reason(),
        }
    }

    /// Who signed, for a passing keyless authority.
    pub fn signer(&self) -> Option<&SignerIdentity> {
        self.result.as_ref().ok().and_then(|v| v.signer.as_ref())
    }

    /// The Notation signature that vouched, for a passing Notation authority.
    pub fn notation(&self) -> Option<&NotationSigner> {
        self.result.as_ref().ok().and_then(|v| v.notation.as_ref())
    }

    /// Whether it failed for a reason that may not recur.
    pub fn is_transient(&self) -> bool {
        matches!(&self.result, Err(f) if f.is_transient())
    }
}

/// The audit log's documented shape: `{name, passed, reason, signer?,
/// notation?}`.
impl Serialize for AuthorityOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<'a> {
            name: &'a str,
            passed: bool,
            reason: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            signer: Option<&'a SignerIdentity>,
            #[serde(skip_serializing_if = "Option::is_none")]
            notation: Option<&'a NotationSigner>,
        }
        Shape {
            name: &self.name,
            passed: self.passed(),
            reason: self.reason(),
            signer: self.signer(),
            notation: self.notation(),
        }
        .serialize(s)
    }
}

/// What one policy concluded for one image digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// Policy name.
    pub policy: String,
    /// The policy's mode.
    pub mode: PolicyMode,
    /// Whether the image satisfies it. A passing policy has no `failure`.
    pub passed: bool,
    /// A failure of the whole policy (invalid policy, unsupported field,
    /// resolution failure, timeout, `spec.policy`), when there is one; a
    /// policy whose authorities all failed has none of its own.
    pub failure: Option<Failure>,
    /// Per-authority results.
    pub authorities: Vec<AuthorityOutcome>,
}

impl PolicyOutcome {
    /// A failure of the whole policy for one reason.
    pub fn failed(policy: &str, mode: PolicyMode, failure: Failure) -> Self {
        PolicyOutcome {
            policy: policy.to_string(),
            mode,
            passed: false,
            failure: Some(failure),
            authorities: Vec::new(),
        }
    }

    /// The policy-level reason, when there is one.
    pub fn reason(&self) -> Option<&str> {
        self.failure.as_ref().map(Failure::reason)
    }

    /// A failed policy may not fail again when its own failure, or one of
    /// its authorities', is transient: such an outcome is never cached.
    pub fn is_transient(&self) -> bool {
        !self.passed
            && (self.failure.as_ref().is_some_and(Failure::is_transient)
                || self.authorities.iter().any(AuthorityOutcome::is_transient))
    }

    /// The reasons to show a person, policy-level first, then each authority.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self.reason().map(str::to_string).into_iter().collect();
        out.extend(
            self.authorities
                .iter()
                .filter(|a| !a.passed())
                .map(|a| format!("{}: {}", a.name, a.reason())),
        );
        out
    }
}

/// `{policy, mode, passed, reason?, authorities}`, as `sigil check` prints it.
impl Serialize for PolicyOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<'a> {
            policy: &'a str,
            mode: PolicyMode,
            passed: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
            authorities: &'a [AuthorityOutcome],
        }
        Shape {
            policy: &self.policy,
            mode: self.mode,
            passed: self.passed,
            reason: self.reason(),
            authorities: &self.authorities,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_is_decided_by_type() {
        let key_failure = AuthorityOutcome::failed("a", Failure::Verdict("unsigned".into()));
        let registry_down = AuthorityOutcome::failed("b", Failure::Transient("503".into()));
        let mut p = PolicyOutcome {
            policy: "p".into(),
            mode: PolicyMode::Enforce,
            passed: false,
            failure: None,
            authorities: vec![key_failure.clone()],
        };
        assert!(!p.is_transient());
        p.authorities.push(registry_down);
        assert!(p.is_transient());
        // A pass is never transient, whatever an authority met on the way.
        p.passed = true;
        assert!(!p.is_transient());
        let timeout = PolicyOutcome::failed(
            "p",
            PolicyMode::Enforce,
            Failure::Transient("timed out after 10s".into()),
        );
        assert!(timeout.is_transient());
        assert_eq!(timeout.reasons(), vec!["timed out after 10s".to_string()]);
    }

    #[test]
    fn serialised_shape_is_the_documented_one() {
        let a = AuthorityOutcome::failed("a", Failure::Transient("down".into()));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"name": "a", "passed": false, "reason": "down"})
        );
        let p = PolicyOutcome::failed("p", PolicyMode::Warn, Failure::Verdict("bad".into()));
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"policy": "p", "mode": "warn", "passed": false, "reason": "bad", "authorities": []})
        );
    }
}
