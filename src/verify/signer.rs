//! Who an authority accepts as signer, with its trust root resolved once:
//! the one input every format's verifier (`.sig`, `.att`, referrers) takes.
//!
//! Resolving `trustRootRef` happens here and nowhere else. It performs no
//! verification itself.

use std::sync::Arc;

use crate::model::identity::KeylessPolicy;
use crate::model::keys::VerificationKey;
use crate::policy::{AuthorityCheck, CompiledAuthority, KeyEvidence};
use crate::trust::{TrustError, TrustMaterial, TrustStore};

/// How evidence must be signed for one authority.
#[derive(Clone)]
pub enum Signer<'a> {
    /// With this key; with `ctlog` / `rfc3161timestamp`, `evidence` says
    /// what must also be shown.
    Key {
        /// The key.
        key: &'a VerificationKey,
        /// Evidence required beyond the signature.
        evidence: Option<&'a KeyEvidence>,
        /// The trust root for that evidence (the default root when the
        /// authority names none).
        trust: Arc<TrustMaterial>,
    },
    /// Keyless, for one of the policy's identities.
    Keyless {
        /// The keyless rules.
        policy: &'a KeylessPolicy,
        /// The trust root.
        trust: Arc<TrustMaterial>,
    },
}

impl<'a> Signer<'a> {
    /// The signer of a key or keyless authority (`None` for static and
    /// unsupported ones), or why its trust root cannot be used.
    pub fn of(a: &'a CompiledAuthority, store: &TrustStore) -> Option<Result<Self, TrustError>> {
        Some(match &a.check {
            AuthorityCheck::Key { key, evidence } => store
                .resolve(evidence.as_ref().and_then(|e| e.trust_root_ref.as_deref()))
                .map(|trust| Signer::Key {
                    key,
                    evidence: evidence.as_ref(),
                    trust,
                }),
            AuthorityCheck::Keyless(policy) => store
                .resolve(policy.trust_root_ref.as_deref())
                .map(|trust| Signer::Keyless { policy, trust }),
            AuthorityCheck::Static { .. }
            | AuthorityCheck::Unsupported { .. }
            | AuthorityCheck::Notation(_) => return None,
        })
    }

    /// Whether a key signature must come with a transparency-log entry.
    pub fn requires_tlog(&self) -> bool {
        matches!(self, Signer::Key { evidence: Some(e), .. } if e.tlog)
    }

    /// Whether a key signature must come with an RFC 3161 timestamp
    /// (`rfc3161timestamp`), in every layout.
    pub fn requires_timestamp(&self) -> bool {
        matches!(self, Signer::Key { evidence: Some(e), .. } if e.timestamp)
    }
}
