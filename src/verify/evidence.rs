//! What collectors hand the judge: signatures and attestations that have
//! already been verified cryptographically for one admitted digest, who
//! signed them, and why the other candidates did not count.
//!
//! Everything here is data that verified. A collector must never put an
//! unverified signature or Statement in it; the judge trusts it as it is
//! (and still ignores anything bound to another digest).

use serde_json::Value;

use super::keyless::SignerIdentity;
use super::notation::NotationSigner;

/// A signature that verified over the admitted digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The digest it signs (the admitted one).
    pub digest: String,
    /// Who signed, for keyless signatures (subject, issuer, GitHub workflow
    /// extensions, Rekor integrated time); `None` for the authority's key.
    pub signer: Option<SignerIdentity>,
    /// For a Notation signature: who signed, when, and how it was verified.
    pub notation: Option<NotationSigner>,
}

impl VerifiedSignature {
    /// Its entry in `authorityMatches.<name>.signatures`. A Notation
    /// signature's subject and issuer are its signing certificate's DNs.
    pub fn policy_input(&self) -> Value {
        match &self.notation {
            Some(n) => serde_json::json!({
                "id": format!("notation|{}", n.subject),
                "subject": n.subject,
                "issuer": n.issuer,
                "signingTime": n.timestamp.as_ref().or(n.signing_time.as_ref()),
                "timestamped": n.timestamp.is_some(),
                "verificationLevel": n.level,
            }),
            None => signature_match(self.signer.as_ref()),
        }
    }
}

/// An in-toto Statement whose envelope verified and whose subject names the
/// admitted digest.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAttestation {
    /// The digest its subject names (the admitted one).
    pub digest: String,
    /// The whole Statement (the input of attestation policies).
    pub statement: Value,
    /// Its predicate type.
    pub predicate_type: String,
    /// Who signed, for keyless attestations.
    pub signer: Option<SignerIdentity>,
}

impl VerifiedAttestation {
    /// Its entry in `authorityMatches.<name>.attestations.<attestation>`.
    pub fn policy_input(&self) -> Value {
        signature_match(self.signer.as_ref())
    }
}

/// Where evidence was read: the judge words its reasons after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Nothing was collected (static authorities need no evidence).
    #[default]
    NotCollected,
    /// cosign's `sha256-<hex>.sig` tag.
    SignatureTag,
    /// cosign's `sha256-<hex>.att` tag.
    AttestationTag,
    /// The image's OCI referrers (Sigstore bundles, cosign OCI 1.1).
    Referrers,
    /// The image's Notation signature referrers.
    NotationSignatures,
}

/// What one collector found for one authority and one digest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Where it was read.
    pub source: Source,
    /// Signatures that verified.
    pub signatures: Vec<VerifiedSignature>,
    /// Attestations that verified.
    pub attestations: Vec<VerifiedAttestation>,
    /// Why each other candidate did not count, most informative first.
    pub rejected: Vec<String>,
    /// How many candidates were read (verified or not).
    pub candidates: usize,
    /// BuildKit's attestations inside the admitted image index, read once
    /// a signature of this authority over the index verified.
    pub index: Option<IndexEvidence>,
}

/// The Statements a signed image index holds in its attestation manifests
/// (`verify::index_attestations` says why they may count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexEvidence {
    /// The index's platform manifests: a required attestation must hold
    /// for each.
    pub platforms: Vec<String>,
    /// Statements bound to one of those platforms (`digest` is the
    /// platform manifest's), of the predicate types the authority wants.
    pub statements: Vec<VerifiedAttestation>,
    /// What did not count, and why.
    pub rejected: Vec<String>,
}

/// policy-controller's `{id, subject, issuer}` for one signer; `id` is
/// `key` for the authority's key.
fn signature_match(signer: Option<&SignerIdentity>) -> Value {
    match signer {
        Some(s) => serde_json::json!({
            "id": format!("{}|{}", s.issuer, s.subject),
            "subject": s.subject,
            "issuer": s.issuer,
        }),
        None => serde_json::json!({ "id": "key", "subject": "", "issuer": "" }),
    }
}
