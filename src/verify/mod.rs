//! Verification: resolving tags, fetching signatures, checking them against a
//! policy's authorities, with caches that coalesce concurrent misses.

pub mod attestation;
pub mod bundle;
pub mod cosign;
pub mod engine;
pub mod keyless;
/// Verification keys live in the model (a leaf); re-exported here for
/// the verifiers and their callers.
pub use crate::model::keys;
pub mod referrers;

pub use engine::{ImageReport, Verifier, VerifierSettings};

use serde::Serialize;

use crate::policy::PolicyMode;

/// What one authority concluded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuthorityOutcome {
    /// Authority name.
    pub name: String,
    /// Whether it vouches for the image.
    pub passed: bool,
    /// Why (`verified …` or the failure).
    pub reason: String,
    /// The failure came from the registry or a timeout, not the image.
    #[serde(skip)]
    pub transient: bool,
    /// For a passing keyless authority: who signed (certificate identity,
    /// issuer, GitHub workflow extensions, Rekor integrated time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<keyless::SignerIdentity>,
    /// What a passing authority contributes to `spec.policy`'s
    /// `authorityMatches.<name>` (`signatures`, `attestations`, `static`).
    #[serde(skip)]
    pub matches: Option<serde_json::Value>,
}

impl AuthorityOutcome {
    /// A failure of authority `name` for `reason`.
    pub fn failed(name: &str, reason: String, transient: bool) -> Self {
        AuthorityOutcome {
            name: name.to_string(),
            passed: false,
            reason,
            transient,
            signer: None,
            matches: None,
        }
    }
}

/// What one policy concluded for one image digest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// Policy name.
    pub policy: String,
    /// The policy's mode.
    pub mode: PolicyMode,
    /// Whether the image satisfies it.
    pub passed: bool,
    /// A reason that applies to the whole policy (invalid policy, unsupported
    /// field, resolution failure, timeout), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Per-authority results.
    pub authorities: Vec<AuthorityOutcome>,
    /// The failure may not recur (registry trouble): never cached.
    #[serde(skip)]
    pub transient: bool,
}

impl PolicyOutcome {
    /// A failure of the whole policy for one reason.
    pub fn failed(policy: &str, mode: PolicyMode, reason: String, transient: bool) -> Self {
        PolicyOutcome {
            policy: policy.to_string(),
            mode,
            passed: false,
            reason: Some(reason),
            authorities: Vec::new(),
            transient,
        }
    }

    /// The reasons to show a person, policy-level first, then each authority.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self.reason.iter().cloned().collect();
        out.extend(
            self.authorities
                .iter()
                .filter(|a| !a.passed)
                .map(|a| format!("{}: {}", a.name, a.reason)),
        );
        out
    }
}
