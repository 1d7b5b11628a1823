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
        dry_run: req.dry_run,
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
/// that run no pods, objects being deleted).
///
/// On UPDATE only the images that are new — not in `oldObject` — are
/// returned: an update that changes no image (labels, finalizers, scale,
/// annotations) needs no registry and must not be blocked by a registry
/// outage, and running workloads are not re-judged on every edit. A new
/// image is always checked. An `oldObject` sigil cannot read counts as
/// having no images (everything is checked).
pub fn images_to_check(req: &Request) -> Result<Option<Vec<ImageUse>>, WorkloadError> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    let Some(object) = &req.object else {
        return Ok(None);
    };
    if req.operation == Operation::Update && object.metadata.deletion_timestamp.is_some() {
        // Finalizers being removed from an object on its way out.
        return Ok(None);
    }
    let images = images_in(req, object)?;
    if req.operation != Operation::Update {
        return Ok(images);
    }
    let old: std::collections::HashSet<String> = req
        .old_object
        .as_ref()
        .and_then(|o| images_in(req, o).ok().flatten())
        .into_iter()
        .flatten()
        .map(|i| i.reference)
        .collect();
    Ok(images.map(|images| {
        images
            .into_iter()
            .filter(|i| !old.contains(&i.reference))
            .collect()
    }))
}

/// Every image of one version of the request's object.
fn images_in(
    req: &Request,
    object: &DynamicObject,
) -> Result<Option<Vec<ImageUse>>, WorkloadError> {
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

    fn update(old: serde_json::Value, new: serde_json::Value) -> Request {
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "UPDATE", "userInfo": {}, "namespace": "ns", "name": "p",
                "object": new, "oldObject": old,
            }
        });
        decode(&serde_json::to_vec(&body).unwrap()).unwrap()
    }

    fn pod(images: &[&str], volume: Option<&str>) -> serde_json::Value {
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, im)| serde_json::json!({"name": format!("c{i}"), "image": im}))
            .collect();
        let volumes: Vec<_> = volume
            .iter()
            .map(|r| serde_json::json!({"name": "v", "image": {"reference": r}}))
            .collect();
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": containers, "volumes": volumes}})
    }

    #[test]
    fn updates_check_only_the_images_they_change() {
        // Same images, new label: nothing to check.
        let mut relabelled = pod(&["a:1", "b:1"], Some("m:1"));
        relabelled["metadata"]["labels"] = serde_json::json!({"x": "y"});
        let req = update(pod(&["a:1", "b:1"], Some("m:1")), relabelled);
        assert_eq!(images_to_check(&req).unwrap(), Some(vec![]));
        // One container and the image volume change: exactly those.
        let req = update(
            pod(&["a:1", "b:1"], Some("m:1")),
            pod(&["a:1", "b:2"], Some("m:2")),
        );
        let got: Vec<String> = images_to_check(&req)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|i| format!("{} {}", i.field, i.reference))
            .collect();
        assert_eq!(
            got,
            vec![
                "spec.containers[1].image b:2",
                "spec.volumes[0].image.reference m:2"
            ]
        );
        // An object on its way out (finalizers removed): nothing.
        let mut deleting = pod(&["c:9"], None);
        deleting["metadata"]["deletionTimestamp"] = "2026-11-23T10:00:00Z".into();
        let req = update(pod(&["a:1"], None), deleting);
        assert_eq!(images_to_check(&req).unwrap(), None);
        // An unreadable oldObject hides nothing: everything is checked.
        let req = update(
            serde_json::json!({"spec": {"containers": "x"}}),
            pod(&["a:1"], None),
        );
        assert_eq!(images_to_check(&req).unwrap().unwrap().len(), 1);
    }

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
