//! The one error a resource spec can have (a ClusterImagePolicy or a
//! TrustRoot): the field that is wrong and why. The validator, the compiler
//! and the trust-root loader all use it; it knows nothing of any of them.

/// A policy that cannot be used, with the field that is wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// JSON path of the offending field, e.g. `spec.authorities[1].key.data`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A [`PolicyError`] for `field`.
pub fn err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

/// A JSON error's message without serde_json's ` at line L column C`
/// (a field path says where).
pub fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) if e.line() > 0 => text[..at].to_string(),
        _ => text,
    }
}
