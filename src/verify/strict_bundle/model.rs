//! protobuf-specs' `Bundle` as JSON, field by field: every struct refuses
//! unknown fields, and serde's derive refuses a key written twice. Holds
//! no logic beyond reading protobuf JSON's int64 and bytes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JBundle {
    pub(super) media_type: Option<String>,
    pub(super) verification_material: Option<JMaterial>,
    pub(super) message_signature: Option<JMessageSignature>,
    pub(super) dsse_envelope: Option<JEnvelope>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JMaterial {
    pub(super) public_key: Option<JPublicKey>,
    pub(super) x509_certificate_chain: Option<JChain>,
    pub(super) certificate: Option<JCert>,
    #[serde(default)]
    pub(super) tlog_entries: Option<Vec<JEntry>>,
    pub(super) timestamp_verification_data: Option<JTimestamps>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JPublicKey {
    /// Names the key for a client; read (so it is a known field), never trusted.
    #[serde(default, rename = "hint")]
    _hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JChain {
    pub(super) certificates: Vec<JCert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JCert {
    pub(super) raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JEntry {
    pub(super) log_index: Option<JInt>,
    pub(super) log_id: Option<JLogId>,
    pub(super) kind_version: Option<JKindVersion>,
    pub(super) integrated_time: Option<JInt>,
    pub(super) inclusion_promise: Option<JPromise>,
    pub(super) inclusion_proof: Option<JProof>,
    pub(super) canonicalized_body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JLogId {
    pub(super) key_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JKindVersion {
    pub(super) kind: String,
    pub(super) version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JPromise {
    pub(super) signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JProof {
    pub(super) log_index: Option<JInt>,
    pub(super) root_hash: Option<String>,
    pub(super) tree_size: Option<JInt>,
    #[serde(default)]
    pub(super) hashes: Option<Vec<String>>,
    pub(super) checkpoint: Option<JCheckpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JCheckpoint {
    pub(super) envelope: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JTimestamps {
    #[serde(default)]
    pub(super) rfc3161_timestamps: Option<Vec<JTimestamp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JTimestamp {
    pub(super) signed_timestamp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JMessageSignature {
    pub(super) message_digest: Option<JDigest>,
    pub(super) signature: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JDigest {
    pub(super) algorithm: String,
    pub(super) digest: String,
}

/// A DSSE envelope, as a bundle holds it and as a `.att` layer is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JEnvelope {
    pub(super) payload: String,
    pub(super) payload_type: String,
    pub(super) signatures: Vec<JSignature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JSignature {
    pub(super) sig: String,
    /// A hint for the verifier; read (a known field), never trusted.
    #[serde(default, rename = "keyid")]
    _keyid: Option<String>,
}

/// protobuf JSON's int64: a decimal string (canonical) or a number.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum JInt {
    Number(i64),
    Text(String),
}

impl JInt {
    pub(super) fn value(&self, field: &str) -> Result<i64, String> {
        match self {
            JInt::Number(n) => Ok(*n),
            JInt::Text(t) => {
                let digits = t.strip_prefix('-').unwrap_or(t);
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || (digits.len() > 1 && digits.starts_with('0'))
                {
                    return Err(format!("{field} {t:?} is not a canonical integer"));
                }
                t.parse()
                    .map_err(|_| format!("{field} {t:?} is out of range"))
            }
        }
    }

    pub(super) fn unsigned(&self, field: &str) -> Result<u64, String> {
        u64::try_from(self.value(field)?).map_err(|_| format!("{field} is negative"))
    }
}

/// `text` as standard, padded base64 (what protobuf JSON writes).
pub(super) fn bytes(field: &str, text: &str) -> Result<Vec<u8>, String> {
    B64.decode(text)
        .map_err(|e| format!("{field} is not standard base64: {e}"))
}

/// `text` as base64 of exactly `len` bytes (a hash: hex written here reads
/// as base64 of the wrong length, as protobuf JSON reads it).
pub(super) fn hash(field: &str, text: &str, len: usize) -> Result<Vec<u8>, String> {
    let b = bytes(field, text)?;
    if b.len() != len {
        return Err(format!(
            "{field} is {} bytes, not {len} (a hash is base64, not hex)",
            b.len()
        ));
    }
    Ok(b)
}
