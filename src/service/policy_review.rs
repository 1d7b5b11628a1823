//! The `/validate-policy` answer: a ClusterImagePolicy or TrustRoot that
//! breaks policy-controller's rules is refused, naming every wrong field.

use crate::admission::{self, Answer, ReviewError};

/// Answers an AdmissionReview of a ClusterImagePolicy or TrustRoot
/// (`/validate-policy`): refuses one that breaks policy-controller's rules,
/// naming every wrong field, and passes on warnings (e.g. CUE policies).
/// The spec is decoded straight into its typed form, never into a JSON tree.
pub fn validate_policy(body: &[u8]) -> Result<Vec<u8>, ReviewError> {
    let req = admission::decode_envelope(body)?;
    let name = req.name.clone().unwrap_or_default();
    let span = tracing::info_span!("validate-policy", uid = %req.uid, name = %name);
    let _guard = span.enter();
    let writes = matches!(
        req.operation,
        admission::Operation::Create | admission::Operation::Update
    );
    let spec = match (writes, req.object) {
        (true, Some(object)) => Some(crate::policy::files::spec_json(object.get())),
        _ => None,
    };
    let answer = match (req.kind.kind.as_str(), spec) {
        ("ClusterImagePolicy", Some(spec)) => {
            let validation = match crate::policy::files::spec_from_json(spec) {
                Ok(spec) => crate::policy::validate::validate(&spec),
                Err((error, _)) => crate::policy::validate::Validation {
                    errors: vec![error],
                    warnings: Vec::new(),
                },
            };
            if validation.errors.is_empty() {
                Answer {
                    warnings: validation.warnings,
                    ..Answer::allow()
                }
            } else {
                tracing::info!(
                    errors = validation.errors.len(),
                    "refusing invalid ClusterImagePolicy"
                );
                Answer::deny(format!(
                    "invalid ClusterImagePolicy {name:?}: {}",
                    validation.message().replace('\n', "; ")
                ))
            }
        }
        ("TrustRoot", Some(spec)) => {
            match crate::trust::material_from_spec_json(&name, spec) {
                // A remote mirror is read by the watcher, not at admission.
                Ok(_) | Err(crate::trust::TrustError::Pending(_)) => Answer::allow(),
                Err(e) => {
                    tracing::info!(error = %e, "refusing invalid TrustRoot");
                    Answer::deny(format!("invalid TrustRoot {name:?}: {e}"))
                }
            }
        }
        _ => Answer::allow(),
    };
    Ok(answer.encode(&req.uid))
}
