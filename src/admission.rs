//! AdmissionReview (`admission.k8s.io/v1`) in and out: decoding only what
//! sigil reads, deciding what needs checking, and the allow / deny /
//! warnings / patch answer.
//!
//! A review is decoded without building the object: the envelope (uid,
//! kind, resource, operation, names, user, dry-run) and each object through
//! [`crate::workload`]'s streaming reader at its kind's pod-spec path. As
//! the apiserver writes reviews (kind and operation before the object) that
//! is one pass over the body ([`one_pass`]); otherwise two: the envelope
//! with `object` and `oldObject` kept as borrowed slices of the body, then
//! each object. The result owns everything it needs, so the body can be
//! dropped before any verification starts.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::audit::RequestContext;
use crate::decision::Verdict;
use crate::workload::{
    read_object, ImageUse, PodSpecAt, Workload, WorkloadError, EPHEMERAL_CONTAINERS_OBJECT,
};

mod one_pass;

/// Longest uid, name, namespace, kind or user name accepted (the
/// apiserver's are far shorter); a review is kept decoded while it waits
/// for its namespace's share, so what it holds is bounded.
pub use crate::limits::MAX_ENVELOPE_STRING;

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

/// What the request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// CREATE.
    Create,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// CONNECT.
    Connect,
}

impl Operation {
    /// As the apiserver spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// `request.kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    /// API group (empty for core).
    #[serde(default)]
    pub group: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// `request.resource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionResource {
    /// API group (empty for core).
    #[serde(default)]
    pub group: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Resource (plural).
    #[serde(default)]
    pub resource: String,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: Option<String>,
}

/// The envelope of a review, its objects left as slices of the body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRequest<'a> {
    pub(crate) uid: String,
    pub(crate) kind: GroupVersionKind,
    #[serde(default)]
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    pub(crate) operation: Operation,
    #[serde(default)]
    user_info: UserInfo,
    #[serde(borrow, default)]
    pub(crate) object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReview<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(borrow, default)]
    request: Option<RawRequest<'a>>,
}

/// The envelope of an AdmissionReview body, objects unread.
pub(crate) fn decode_envelope(body: &[u8]) -> Result<RawRequest<'_>, ReviewError> {
    let review: RawReview<'_> =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    if review.api_version != API_VERSION {
        return Err(ReviewError::Version(review.api_version));
    }
    review.request.ok_or(ReviewError::NoRequest)
}

/// A decoded admission request: what sigil reads of it, owned.
#[derive(Debug, Clone)]
pub struct Request {
    /// `request.uid`, echoed in the answer.
    pub uid: String,
    /// `request.kind`.
    pub kind: GroupVersionKind,
    /// `request.resource`.
    pub resource: GroupVersionResource,
    /// `request.subResource` (empty when none).
    pub sub_resource: String,
    /// `request.name`.
    pub name: String,
    /// `request.namespace`.
    pub namespace: String,
    /// `request.operation`.
    pub operation: Operation,
    /// `request.userInfo.username`.
    pub username: String,
    /// `request.dryRun`.
    pub dry_run: bool,
    /// The object as sigil read it, for CREATE and UPDATE (`None`: no
    /// object, or one sigil has no reason to read).
    pub object: Option<Result<Workload, WorkloadError>>,
    /// The image references of `oldObject` (UPDATE); `None` when there is
    /// none or it cannot be read.
    pub old_images: Option<Vec<String>>,
}

/// Where the images of this request's object are, if anywhere.
fn spec_at(kind: &str, sub_resource: &str) -> Option<&'static PodSpecAt> {
    match sub_resource {
        "" => PodSpecAt::of_kind(kind),
        // Kubernetes ≥ 1.22 sends the Pod; older servers send an
        // `EphemeralContainers` object with a top-level list.
        "ephemeralcontainers" if kind == "EphemeralContainers" => {
            Some(&EPHEMERAL_CONTAINERS_OBJECT)
        }
        "ephemeralcontainers" => PodSpecAt::of_kind("Pod"),
        // status, scale and other subresources run nothing new.
        _ => None,
    }
}

/// Decodes an AdmissionReview body: in one pass when it is written as the
/// apiserver writes it, else in two (see [`one_pass`]).
pub fn decode(body: &[u8]) -> Result<Request, ReviewError> {
    let request = match one_pass::decode(body) {
        Some(request) => request,
        None => decode_in_two_passes(body)?,
    };
    for (field, value) in [
        ("request.uid", &request.uid),
        ("request.name", &request.name),
        ("request.namespace", &request.namespace),
        ("request.userInfo.username", &request.username),
        ("request.kind.kind", &request.kind.kind),
    ] {
        if value.len() > MAX_ENVELOPE_STRING {
            return Err(ReviewError::Malformed(format!(
                "{field} is longer than {MAX_ENVELOPE_STRING} bytes"
            )));
        }
    }
    Ok(request)
}

/// The envelope first, its objects kept as slices of the body, then each
/// object at its kind's pod-spec path: whatever order the fields come in.
fn decode_in_two_passes(body: &[u8]) -> Result<Request, ReviewError> {
    let raw = decode_envelope(body)?;
    let sub_resource = raw.sub_resource.unwrap_or_default();
    let at = spec_at(&raw.kind.kind, &sub_resource);
    let reads_objects = matches!(raw.operation, Operation::Create | Operation::Update);
    let object = raw
        .object
        .filter(|_| reads_objects)
        .map(|o| read_object(o.get(), &raw.kind.kind, at));
    let old_images = raw
        .old_object
        .filter(|_| raw.operation == Operation::Update && at.is_some())
        .and_then(|o| read_object(o.get(), &raw.kind.kind, at).ok())
        .and_then(|w| w.checked().ok())
        .and_then(|w| w.pod)
        .map(|p| p.images.into_iter().map(|i| i.reference).collect());
    Ok(Request {
        uid: raw.uid,
        kind: raw.kind,
        resource: raw.resource,
        sub_resource,
        name: raw.name.unwrap_or_default(),
        namespace: raw.namespace.unwrap_or_default(),
        operation: raw.operation,
        username: raw.user_info.username.unwrap_or_default(),
        dry_run: raw.dry_run.unwrap_or(false),
        object,
        old_images,
    })
}

/// Who asked for what, with the workload's pull secrets and service
/// account (empty when the object could not be read), and the images this
/// request must have verified, or `Ok(None)` when it is admitted without
/// checks (DELETE/CONNECT, status/scale subresources, kinds that run no
/// pods, objects being deleted). The request is taken apart, not copied:
/// this runs once per review on the warm path.
///
/// On UPDATE only the images that are new — not in `oldObject` — are
/// returned: an update that changes no image (labels, finalizers, scale,
/// annotations) needs no registry and must not be blocked by a registry
/// outage, and running workloads are not re-judged on every edit. A new
/// image is always checked. An `oldObject` sigil cannot read counts as
/// having no images (everything is checked).
pub fn split(req: Request) -> (RequestContext, Result<Option<Vec<ImageUse>>, WorkloadError>) {
    let Request {
        uid,
        kind,
        resource,
        name,
        namespace,
        operation,
        username,
        dry_run,
        object,
        old_images,
        ..
    } = req;
    let (workload, unreadable) = match object {
        Some(Ok(w)) => (Some(w), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let (labels, deleting, over_limit, pod) = match workload {
        Some(w) => (w.meta.labels, w.meta.deleting, w.over_limit, w.pod),
        None => Default::default(),
    };
    let service_account = pod.as_ref().map(|p| p.service_account_or_default());
    let (pull_secrets, images) = match pod {
        Some(p) => (p.pull_secrets, Some(p.images)),
        None => Default::default(),
    };
    let images = if !matches!(operation, Operation::Create | Operation::Update) {
        Ok(None)
    } else if let Some(e) = unreadable {
        Err(e)
    } else if operation == Operation::Update && deleting {
        // Finalizers being removed from an object on its way out.
        Ok(None)
    } else if let Some(e) = over_limit {
        Err(e)
    } else if operation == Operation::Update {
        let old: std::collections::HashSet<&str> =
            old_images.iter().flatten().map(String::as_str).collect();
        Ok(images.map(|images| {
            images
                .into_iter()
                .filter(|i| !old.contains(i.reference.as_str()))
                .collect()
        }))
    } else {
        Ok(images)
    };
    let context = RequestContext {
        pull_secrets,
        service_account,
        uid,
        dry_run,
        operation: operation.as_str().to_string(),
        kind: kind.kind,
        namespace,
        name,
        user: username,
        resource: crate::policy::ResourceRef {
            group: resource.group,
            version: resource.version,
            resource: resource.resource,
            labels,
        },
    };
    (context, images)
}

/// The `status` of a deny.
#[derive(Serialize)]
struct DenyStatus<'a> {
    status: &'static str,
    code: u16,
    message: &'a str,
    reason: &'static str,
}

/// `response`, in the shape the apiserver reads.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    status: Status<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
#[serde(untagged)]
enum Status<'a> {
    Allowed {},
    Denied(DenyStatus<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

/// An answer: allow or deny, warnings, a JSON patch.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Denied with this message, or allowed.
    pub denied: Option<String>,
    /// Admission warnings.
    pub warnings: Vec<String>,
    /// A JSON patch (`/mutate`).
    pub patch: Option<Vec<u8>>,
}

impl Answer {
    /// Admit with nothing to say.
    pub fn allow() -> Self {
        Answer::default()
    }

    /// Deny with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Answer {
            denied: Some(reason.into()),
            ..Answer::default()
        }
    }

    /// The answer a verdict gives.
    pub fn of(verdict: &Verdict) -> Self {
        Answer {
            denied: verdict.message.clone(),
            warnings: verdict.warnings.clone(),
            patch: None,
        }
    }

    /// The AdmissionReview body answering request `uid`, within
    /// [`crate::limits::MAX_ANSWER_BYTES`] whatever it was given: the
    /// message, each warning and their number are capped here too (the
    /// pipeline builds them within these caps; this is the backstop).
    pub fn encode(&self, uid: &str) -> Vec<u8> {
        use crate::limits::{MAX_DENY_MESSAGE_BYTES, MAX_WARNINGS, MAX_WARNING_BYTES};
        use base64::Engine as _;
        let capped_message = self
            .denied
            .as_ref()
            .filter(|m| m.len() > MAX_DENY_MESSAGE_BYTES)
            .map(|m| crate::text::cap(m.clone(), MAX_DENY_MESSAGE_BYTES));
        let capped_warnings: Option<Vec<String>> = (self.warnings.len() > MAX_WARNINGS
            || self.warnings.iter().any(|w| w.len() > MAX_WARNING_BYTES))
        .then(|| {
            self.warnings
                .iter()
                .take(MAX_WARNINGS)
                .map(|w| crate::text::cap(w.clone(), MAX_WARNING_BYTES))
                .collect()
        });
        let warnings = capped_warnings.as_ref().unwrap_or(&self.warnings);
        let denied = capped_message.as_ref().or(self.denied.as_ref());
        let review = Review {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: Response {
                uid,
                allowed: denied.is_none(),
                status: match denied {
                    None => Status::Allowed {},
                    Some(message) => Status::Denied(DenyStatus {
                        status: "Failure",
                        code: 403,
                        message,
                        reason: "Forbidden",
                    }),
                },
                // The apiserver decodes `patch` as Go `[]byte`: base64.
                patch: self
                    .patch
                    .as_ref()
                    .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
                patch_type: self.patch.as_ref().map(|_| "JSONPatch"),
                warnings,
            },
        };
        // Only strings, numbers and booleans: serialising cannot fail.
        serde_json::to_vec(&review).unwrap_or_default()
    }
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
        assert_eq!(split(req.clone()).1.unwrap(), Some(vec![]));
        assert_eq!(
            split(req.clone())
                .0
                .resource
                .labels
                .get("x")
                .map(String::as_str),
            Some("y")
        );
        // One container and the image volume change: exactly those.
        let req = update(
            pod(&["a:1", "b:1"], Some("m:1")),
            pod(&["a:1", "b:2"], Some("m:2")),
        );
        let got: Vec<String> = split(req.clone())
            .1
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
        assert_eq!(split(req.clone()).1.unwrap(), None);
        // An unreadable oldObject hides nothing: everything is checked.
        let req = update(
            serde_json::json!({"spec": {"containers": "x"}}),
            pod(&["a:1"], None),
        );
        assert_eq!(split(req.clone()).1.unwrap().unwrap().len(), 1);
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
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},"operation":"EXPLODE"}}"#),
            Err(ReviewError::Malformed(_))
        ));
    }

    #[test]
    fn an_unreadable_object_is_an_error_to_the_caller_not_a_400() {
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE",
                "object": {"spec": {"containers": {"a": 1}}}}
        });
        let req = decode(&serde_json::to_vec(&body).unwrap()).unwrap();
        let e = split(req.clone()).1.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read the pod spec of this Pod at spec"),
            "{e}"
        );
        // A DELETE's object is not read at all.
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "DELETE",
                "oldObject": {"spec": {"containers": {"a": 1}}}}
        });
        let req = decode(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(split(req.clone()).1.unwrap(), None);
    }

    #[test]
    fn answers_have_the_apiservers_shape() {
        let allow: serde_json::Value =
            serde_json::from_slice(&Answer::allow().encode("u1")).unwrap();
        assert_eq!(
            allow,
            serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": "u1", "allowed": true, "status": {}}})
        );
        let mut deny = Answer::deny("no");
        deny.warnings = vec!["w".into()];
        let deny: serde_json::Value = serde_json::from_slice(&deny.encode("u2")).unwrap();
        assert_eq!(
            deny["response"],
            serde_json::json!({"uid": "u2", "allowed": false, "warnings": ["w"],
                "status": {"status": "Failure", "code": 403, "message": "no", "reason": "Forbidden"}})
        );
        let patch = Answer {
            patch: Some(b"[]".to_vec()),
            ..Answer::allow()
        };
        let patch: serde_json::Value = serde_json::from_slice(&patch.encode("u3")).unwrap();
        assert_eq!(patch["response"]["patch"], "W10=");
        assert_eq!(patch["response"]["patchType"], "JSONPatch");
    }
}
