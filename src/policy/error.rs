//! The one error a policy can have: the field that is wrong and why. A leaf
//! both the validator and the compiler use.

/// A policy that cannot be used, with the field that is wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// JSON path of the offending field, e.g. `spec.authorities[1].key.data`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

pub(super) fn err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}
