//! Verification of one image digest against its matching policies. The
//! data flows down this list:
//! - [`engine`]: orchestration under the request deadline, and the verdict
//!   cache;
//! - [`fetch`]: registry reads through coalescing, byte-weighed caches;
//! - [`collect`]: one evidence collector per signature layout, each
//!   returning only what verified for the admitted digest ([`evidence`]);
//! - [`judge`]: the pure decision over that evidence ([`outcome`]).
//!
//! Below them sit the per-format verifiers the collectors call:
//! [`cosign`] (simple signing), [`attestation`] (DSSE in-toto),
//! [`referrers`] (bundles and OCI 1.1 artifacts), [`keyless`] (Fulcio
//! chains and identities), [`legacy_evidence`] (a legacy layer's Rekor and
//! TSA evidence, as a bundle), [`notation`] (Notation JWS and COSE
//! envelopes, their chains and RFC 3161 countersignatures) and [`bundle`] (one standalone bundle, for
//! `sigil verify-bundle`), all taking a [`signer::Signer`] or its parts.

pub mod attestation;
pub mod bundle;
pub mod collect;
pub mod cosign;
pub mod engine;
pub mod evidence;
pub mod fetch;
pub mod index_attestations;
pub mod judge;
pub mod keyless;
/// Verification keys live in the model (a leaf); re-exported here for
/// the verifiers and their callers.
pub use crate::model::keys;
pub mod legacy_evidence;
pub mod notation;
pub mod outcome;
pub mod referrers;
pub mod signer;
pub mod strict_bundle;

pub use engine::{ImageReport, RequestCredentials, Verifier, VerifierSettings};
pub use outcome::{AuthorityOutcome, Failure, PolicyOutcome, Vouch};
