//! What sigil reads of a workload object, read straight from its JSON
//! without building it: the metadata it needs (name, namespace, UID,
//! labels, deletion, controller) and, at each kind's pod-spec path, every
//! image a pod would run or mount (containers, initContainers,
//! ephemeralContainers, image volumes `volumes[].image.reference`), its
//! `imagePullSecrets` and service account.
//!
//! Everything else (env, volumes of other kinds, unknown fields nested to
//! any depth) is skipped as it is read, without allocating, so a request's
//! cost is its bytes: a 3 MiB Pod with 240,000 `env` entries costs what
//! its body costs. The lists sigil keeps have caps ([`MAX_IMAGES`],
//! [`MAX_PULL_SECRETS`], [`MAX_LABELS`]); over a cap the workload is
//! [`WorkloadError::OverLimit`], naming the field, and is failed closed by
//! the caller. It owns reading; it does not decide anything.

use std::collections::BTreeMap;

use serde::de::DeserializeSeed;

/// Most images (containers of every kind and image volumes) sigil reads in
/// one workload. Pods in practice have a handful; each image may cost
/// registry requests, so the cap bounds a request's fan-out.
pub use crate::limits::MAX_IMAGES;
/// Most labels read from a workload (for `spec.match` selectors).
pub use crate::limits::MAX_LABELS;
/// Most bytes of labels (keys and values) read from a workload; what
/// Kubernetes accepts is far less per label (317 and 63 bytes).
pub use crate::limits::MAX_LABEL_BYTES;
/// Longest object name (a pull secret's, a service account's): a DNS
/// subdomain name.
pub use crate::limits::MAX_NAME_BYTES;
/// Most distinct pull-secret names considered for one workload (its
/// `imagePullSecrets` and its service account's together).
pub use crate::limits::MAX_PULL_SECRETS;
/// Longest image reference read; a valid one is a few hundred bytes.
pub use crate::limits::MAX_REFERENCE_BYTES;

/// One image reference and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageUse {
    /// Field path, e.g. `spec.template.spec.initContainers[0].image`.
    pub field: String,
    /// The reference as written.
    pub reference: String,
    /// JSON pointer of the field in the object, e.g.
    /// `/spec/template/spec/containers/0/image` (for digest pinning patches).
    #[serde(skip)]
    pub pointer: String,
}

/// A workload object sigil cannot read, or will not read whole.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WorkloadError {
    /// Not the shape of the kind (a list where an object belongs, …).
    #[error("cannot read the pod spec of this {kind} at {path}: {reason}")]
    Unreadable {
        /// Kind of the object.
        kind: String,
        /// Path of the pod spec.
        path: String,
        /// Parser message.
        reason: String,
    },
    /// A list longer than sigil reads.
    #[error("{field}: {detail}, over sigil's limit of {limit} per workload")]
    OverLimit {
        /// The field where the limit was crossed.
        field: String,
        /// What was found, e.g. `this Pod has 300 images (…)`.
        detail: String,
        /// The limit.
        limit: usize,
    },
}

impl WorkloadError {
    /// The field the error is about (`spec`, `spec.containers`, …).
    pub fn field(&self) -> String {
        match self {
            WorkloadError::Unreadable { path, .. } => path.clone(),
            WorkloadError::OverLimit { field, .. } => field.clone(),
        }
    }
}

/// Where a kind keeps its pod spec.
#[derive(Debug)]
pub struct PodSpecAt {
    /// Object keys from the root to the pod spec.
    path: &'static [&'static str],
    /// Field path as people read it, e.g. `spec.template.spec`.
    field: &'static str,
    /// JSON pointer, e.g. `/spec/template/spec`.
    pointer: &'static str,
}

const POD: PodSpecAt = PodSpecAt {
    path: &["spec"],
    field: "spec",
    pointer: "/spec",
};
const TEMPLATE: PodSpecAt = PodSpecAt {
    path: &["spec", "template", "spec"],
    field: "spec.template.spec",
    pointer: "/spec/template/spec",
};
const CRONJOB: PodSpecAt = PodSpecAt {
    path: &["spec", "jobTemplate", "spec", "template", "spec"],
    field: "spec.jobTemplate.spec.template.spec",
    pointer: "/spec/jobTemplate/spec/template/spec",
};
/// The `EphemeralContainers` object older apiservers send for the
/// `pods/ephemeralcontainers` subresource: the list sits at the root.
/// Reported as `spec.ephemeralContainers[i]`, patched at the root.
pub const EPHEMERAL_CONTAINERS_OBJECT: PodSpecAt = PodSpecAt {
    path: &[],
    field: "spec",
    pointer: "",
};

impl PodSpecAt {
    /// Where `kind` keeps its pod spec, or `None` for kinds that run no pods.
    pub fn of_kind(kind: &str) -> Option<&'static PodSpecAt> {
        match kind {
            "Pod" => Some(&POD),
            "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "ReplicationController" => Some(&TEMPLATE),
            "CronJob" => Some(&CRONJOB),
            _ => None,
        }
    }

    /// The field path, e.g. `spec.template.spec`.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

/// The metadata sigil reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// `metadata.name`.
    pub name: Option<String>,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.labels` (at most [`MAX_LABELS`]).
    pub labels: BTreeMap<String, String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The kind of the owner reference with `controller: true`, if any.
    pub controller_kind: Option<String>,
    /// How many labels the object has (more than [`MAX_LABELS`] is over
    /// the limit; only the first are kept).
    pub labels_total: usize,
    /// Bytes of the labels kept (keys and values).
    pub labels_bytes: usize,
}

/// What a pod of this workload would run and pull with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// Every image: init containers, containers, ephemeral containers,
    /// image volumes, in that order.
    pub images: Vec<ImageUse>,
    /// `imagePullSecrets[].name`, deduplicated, empty names dropped.
    pub pull_secrets: Vec<String>,
    /// `serviceAccountName`, when set and not empty.
    pub service_account: Option<String>,
}

impl PodView {
    /// The service account the pods run as (`default` when unset).
    pub fn service_account_or_default(&self) -> String {
        self.service_account
            .clone()
            .unwrap_or_else(|| "default".into())
    }
}

/// What sigil read of one workload object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// `apiVersion` when the object carries it (list items do not).
    pub api_version: Option<String>,
    /// `kind` when the object carries it.
    pub kind: Option<String>,
    /// Its metadata.
    pub meta: Meta,
    /// `None` when the kind runs no pods; an empty view when it has no spec.
    pub pod: Option<PodView>,
    /// The first cap crossed, if any.
    pub over_limit: Option<WorkloadError>,
}

impl Workload {
    /// The workload, or the cap it crossed.
    pub fn checked(self) -> Result<Workload, WorkloadError> {
        match self.over_limit {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

/// Reads one object of `kind` (its JSON text) whose pod spec is `at`
/// (`None`: read the metadata only). An over-limit list is reported in
/// [`Workload::over_limit`], not as an error, so a list of objects can go on.
pub fn read_object(
    json: &str,
    kind: &str,
    at: Option<&'static PodSpecAt>,
) -> Result<Workload, WorkloadError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let unreadable = |e: serde_json::Error| WorkloadError::Unreadable {
        kind: kind.to_string(),
        path: at.map_or("metadata", |a| a.field).to_string(),
        reason: e.to_string(),
    };
    let w = ObjectSeed { kind, at }
        .deserialize(&mut de)
        .map_err(unreadable)?;
    de.end().map_err(unreadable)?;
    Ok(w)
}

/// [`read_object`] over a JSON value already parsed (manifests given to
/// `sigil check`).
pub fn read_value(
    value: &serde_json::Value,
    kind: &str,
    at: Option<&'static PodSpecAt>,
) -> Result<Workload, WorkloadError> {
    ObjectSeed { kind, at }
        .deserialize(value)
        .map_err(|e| WorkloadError::Unreadable {
            kind: kind.to_string(),
            path: at.map_or("metadata", |a| a.field).to_string(),
            reason: e.to_string(),
        })
}

/// Reads one workload object; usable as a seed inside a larger document
/// (the items of a list).
#[derive(Clone, Copy)]
pub struct ObjectSeed<'k> {
    /// Kind, for messages.
    pub kind: &'k str,
    /// Where the pod spec is.
    pub at: Option<&'static PodSpecAt>,
}

mod reader;
#[cfg(test)]
mod tests;
