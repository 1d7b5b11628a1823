//! AdmissionReview (`admission.k8s.io/v1`) in and out: decoding, deciding
//! what needs checking, and the allow / deny / warnings answer.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;

use crate::audit::RequestContext;
use crate::decision::Verdict;
use crate::workload::{images_of, ImageUse, WorkloadError};

/// The only AdmissionReview version sigil speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// A request body that is not a usable AdmissionReview (answered with HTTP 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReviewError {
    /// Not JSON, or not the AdmissionReview shape.
    #[error("invalid AdmissionReview: {0}")]
    Malformed(String),
    /// No `request`.
    #[error("invalid AdmissionReview: it has no request")]
    NoRequest,
    /// Another apiVersion.
    #[error("unsupported AdmissionReview apiVersion {0:?}; expected admission.k8s.io/v1")]
    Version(String),
}

/// A decoded admission request.
pub type Request = AdmissionRequest<DynamicObject>;

/// Decodes an AdmissionReview body.
pub fn decode(body: &[u8]) -> Result<Request, ReviewError> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    if review.types.api_version != API_VERSION {
        return Err(ReviewError::Version(review.types.api_version));
    }
    review.try_into().map_err(|_| ReviewError::NoRequest)
}

/// Who asked for what.
/// (Pull secrets are filled in by [`with_pull_secrets`] only when a
/// credential source will use them, keeping the common path to one parse.)
pub fn context(req: &Request) -> RequestContext {
    RequestContext {
        pull_secrets: Vec::new(),
        service_account: None,
        uid: req.uid.clone(),
        operation: format!("{:?}", req.operation).to_uppercase(),
        kind: req.kind.kind.clone(),
        namespace: req.namespace.clone().unwrap_or_default(),
        name: req.name.clone(),
        user: req.user_info.username.clone().unwrap_or_default(),
        resource: crate::policy::ResourceRef {
            group: req.resource.group.clone(),
            version: req.resource.version.clone(),
            resource: req.resource.resource.clone(),
            labels: req
                .object
                .as_ref()
                .and_then(|o| o.metadata.labels.clone())
                .unwrap_or_default(),
        },
    }
}

/// Adds the workload's `imagePullSecrets` and service account to `ctx`.
pub fn with_pull_secrets(mut ctx: RequestContext, req: &Request) -> RequestContext {
    if let Some(o) = &req.object {
        (ctx.pull_secrets, ctx.service_account) =
            crate::workload::pull_secrets_of(&req.kind.kind, &o.data);
    }
    ctx
}

/// The images this request must have verified, or `Ok(None)` when it is
/// admitted without checks (DELETE/CONNECT, status/scale subresources, kinds
/// that run no pods).
pub fn images_to_check(req: &Request) -> Result<Option<Vec<ImageUse>>, WorkloadError> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    let Some(object) = &req.object else {
        return Ok(None);
    };
    match req.sub_resource.as_deref() {
        None | Some("") => images_of(&req.kind.kind, &object.data),
        Some("ephemeralcontainers") => {
            // Kubernetes ≥ 1.22 sends the Pod; older servers send an
            // `EphemeralContainers` object with a top-level list.
            if req.kind.kind == "EphemeralContainers" {
                let wrapped = serde_json::json!({"spec": {"containers": [], "ephemeralContainers": object.data.get("ephemeralContainers").cloned().unwrap_or_default()}});
                images_of("Pod", &wrapped).map(|found| {
                    found.map(|images| {
                        images
                            .into_iter()
                            .map(|mut i| {
                                i.pointer = i.pointer.replacen("/spec", "", 1);
                                i
                            })
                            .collect()
                    })
                })
            } else {
                images_of("Pod", &object.data)
            }
        }
        Some(_) => Ok(None),
    }
}

/// The response for `req` given a verdict.
pub fn respond(req: &Request, verdict: &Verdict) -> AdmissionReview<DynamicObject> {
    let mut resp = AdmissionResponse::from(req);
    if let Some(msg) = &verdict.message {
        resp = resp.deny(msg);
        resp.result.code = 403;
        resp.result.reason = "Forbidden".into();
    }
    if !verdict.warnings.is_empty() {
        resp.warnings = Some(verdict.warnings.clone());
    }
    resp.into_review()
}

/// An allow answer with nothing to say.
pub fn allow(req: &Request) -> AdmissionReview<DynamicObject> {
    AdmissionResponse::from(req).into_review()
}

/// A deny answer with a fixed reason (e.g. an unreadable workload).
pub fn deny(req: &Request, reason: &str) -> AdmissionReview<DynamicObject> {
    let mut resp = AdmissionResponse::from(req).deny(reason);
    resp.result.code = 403;
    resp.result.reason = "Forbidden".into();
    resp.into_review()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_reviews_are_errors() {
        assert!(matches!(
            decode(b"not json"),
            Err(ReviewError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(ReviewError::NoRequest)
        ));
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#),
            Err(ReviewError::Version(_))
        ));
    }
}
