//! in-toto attestations in cosign's legacy layout: the `sha256-<hex>.att`
//! tag holds layers whose payload is a DSSE envelope
//! (`application/vnd.dsse.envelope.v1+json`) around an in-toto Statement.
//!
//! An attestation is data only after it is verified: the DSSE signature over
//! the PAE encoding with the authority's key (or, keyless, everything a
//! keyless signature needs: chain, SET, SCT, identity), and the Statement's
//! `subject[].digest.sha256` must include the admitted digest. Unverified
//! layers are ignored, and the reason is kept for the message.

use serde_json::Value;
use sigstore_types::{Artifact, DsseEnvelope, Sha256Hash, Statement};

use super::cosign::{Rejection, SignatureLayer};
use super::evidence::VerifiedAttestation;
use super::keyless::verify_keyless_attestation;
use super::legacy_evidence::{verify_key_evidence_for, Content};
use super::signer::Signer;

/// Media type of a DSSE envelope layer.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The DSSE payload type of an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Parses an admitted digest (`sha256:<hex>`).
pub fn sha256_of(digest: &str) -> Option<Sha256Hash> {
    Sha256Hash::from_hex(digest.strip_prefix("sha256:")?).ok()
}

/// Verifies one `.att` layer for `admitted_digest`.
pub fn verify_attestation_layer(
    layer: &SignatureLayer,
    admitted_digest: &str,
    signer: &Signer<'_>,
) -> Result<VerifiedAttestation, Rejection> {
    super::strict_bundle::check_envelope(&layer.payload)
        .map_err(|e| Rejection::MalformedPayload(format!("not a DSSE envelope: {e}")))?;
    let envelope: DsseEnvelope = serde_json::from_slice(&layer.payload)
        .map_err(|e| Rejection::MalformedPayload(format!("not a DSSE envelope: {e}")))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Rejection::MalformedPayload(format!(
            "DSSE payload type is {:?}, not {IN_TOTO_PAYLOAD_TYPE}",
            envelope.payload_type
        )));
    }
    let digest = sha256_of(admitted_digest).ok_or_else(|| {
        Rejection::MalformedPayload(format!("{admitted_digest} is not a sha256 digest"))
    })?;
    let identity = match signer {
        Signer::Key {
            key,
            evidence,
            trust,
        } => {
            if !key.verify(&envelope.pae(), envelope.signature.sig.as_bytes()) {
                return Err(Rejection::Evidence(
                    "attestation signature does not verify with the authority's key".into(),
                ));
            }
            if let Some(ev) = evidence {
                verify_key_evidence_for(
                    layer,
                    Content::Dsse(&envelope),
                    Artifact::from(digest),
                    key,
                    trust,
                    ev.tlog,
                    ev.timestamp,
                )?;
            }
            None
        }
        Signer::Keyless { policy, trust } => Some(verify_keyless_attestation(
            layer, &envelope, &digest, policy, trust,
        )?),
    };
    // Signed: now the content may be read.
    let statement: Statement = serde_json::from_slice(envelope.payload.as_bytes())
        .map_err(|e| Rejection::MalformedPayload(format!("not an in-toto Statement: {e}")))?;
    let subjects: Vec<String> = statement
        .subject
        .iter()
        .filter_map(|s| {
            s.digest
                .sha256
                .as_ref()
                .map(|d| format!("sha256:{}", d.to_hex()))
        })
        .collect();
    if !subjects.iter().any(|s| s == admitted_digest) {
        return Err(Rejection::Evidence(format!(
            "attestation subject is {}, not the admitted digest {admitted_digest}",
            if subjects.is_empty() {
                "empty".to_string()
            } else {
                subjects.join(", ")
            }
        )));
    }
    let value: Value = serde_json::from_slice(envelope.payload.as_bytes())
        .map_err(|e| Rejection::MalformedPayload(e.to_string()))?;
    Ok(VerifiedAttestation {
        digest: admitted_digest.to_string(),
        predicate_type: statement.predicate_type.clone(),
        statement: value,
        signer: identity,
    })
}
