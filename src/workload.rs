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
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Most images (containers of every kind and image volumes) sigil reads in
/// one workload. Pods in practice have a handful; each image may cost
/// registry requests, so the cap bounds a request's fan-out.
pub const MAX_IMAGES: usize = 256;
/// Most distinct pull-secret names considered for one workload (its
/// `imagePullSecrets` and its service account's together).
pub const MAX_PULL_SECRETS: usize = 32;
/// Most labels read from a workload (for `spec.match` selectors).
pub const MAX_LABELS: usize = 1_024;
/// Most bytes of labels (keys and values) read from a workload; what
/// Kubernetes accepts is far less per label (317 and 63 bytes).
pub const MAX_LABEL_BYTES: usize = 256 << 10;
/// Longest image reference read; a valid one is a few hundred bytes.
pub const MAX_REFERENCE_BYTES: usize = 4_096;
/// Longest object name (a pull secret's, a service account's): a DNS
/// subdomain name.
pub const MAX_NAME_BYTES: usize = 253;

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

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Workload;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Workload, D::Error> {
        let mut found = Found::new(self.kind, self.at);
        let mut workload = Workload::default();
        d.deserialize_map(ObjectVisitor {
            depth: 0,
            found: &mut found,
            workload: &mut workload,
        })?;
        if self.at.is_some() {
            workload.pod = Some(found.pod_view());
        }
        if workload.meta.labels_bytes > MAX_LABEL_BYTES {
            found.over_limit.get_or_insert(WorkloadError::OverLimit {
                field: "metadata.labels".into(),
                detail: format!(
                    "this {} has {} bytes of labels",
                    self.kind, workload.meta.labels_bytes
                ),
                limit: MAX_LABEL_BYTES,
            });
        }
        if workload.meta.labels_total > MAX_LABELS {
            found.over_limit.get_or_insert(WorkloadError::OverLimit {
                field: "metadata.labels".into(),
                detail: format!(
                    "this {} has {} labels",
                    self.kind, workload.meta.labels_total
                ),
                limit: MAX_LABELS,
            });
        }
        workload.over_limit = found.over_limit;
        Ok(workload)
    }
}

/// What the visitors collect on their way through one object.
struct Found<'k> {
    kind: &'k str,
    at: Option<&'static PodSpecAt>,
    /// Per list, in the order the old typed reader returned them.
    init: Vec<ImageUse>,
    containers: Vec<ImageUse>,
    ephemeral: Vec<ImageUse>,
    volumes: Vec<ImageUse>,
    images_seen: usize,
    /// The list where the image cap was crossed.
    images_over: Option<String>,
    pull_secrets: Vec<String>,
    pull_secret_entries: usize,
    pull_secrets_over: bool,
    service_account: Option<String>,
    over_limit: Option<WorkloadError>,
}

impl<'k> Found<'k> {
    fn new(kind: &'k str, at: Option<&'static PodSpecAt>) -> Self {
        Found {
            kind,
            at,
            init: Vec::new(),
            containers: Vec::new(),
            ephemeral: Vec::new(),
            volumes: Vec::new(),
            images_seen: 0,
            images_over: None,
            pull_secrets: Vec::new(),
            pull_secret_entries: 0,
            pull_secrets_over: false,
            service_account: None,
            over_limit: None,
        }
    }

    fn pod_view(&mut self) -> PodView {
        if let Some(field) = self.images_over.take() {
            self.over_limit.get_or_insert(WorkloadError::OverLimit {
                field,
                detail: format!(
                    "this {} has {} images (containers of every kind and image volumes)",
                    self.kind, self.images_seen
                ),
                limit: MAX_IMAGES,
            });
        }
        if self.pull_secrets_over {
            self.over_limit.get_or_insert(WorkloadError::OverLimit {
                field: format!("{}.imagePullSecrets", self.at.map_or("spec", |a| a.field)),
                detail: format!(
                    "this {} names more than {MAX_PULL_SECRETS} distinct pull secrets ({} entries)",
                    self.kind, self.pull_secret_entries
                ),
                limit: MAX_PULL_SECRETS,
            });
        }
        let mut images = std::mem::take(&mut self.init);
        images.append(&mut self.containers);
        images.append(&mut self.ephemeral);
        images.append(&mut self.volumes);
        PodView {
            images,
            pull_secrets: std::mem::take(&mut self.pull_secrets),
            service_account: self.service_account.take(),
        }
    }

    /// Records one image of `list` at `index`; beyond the cap only counts.
    fn image(&mut self, list: List, index: usize, reference: Option<String>) {
        let Some(reference) = reference else { return };
        self.images_seen += 1;
        let at = self.at.unwrap_or(&POD);
        if reference.len() > MAX_REFERENCE_BYTES {
            let (key, suffix) = match list {
                List::Volumes => ("volumes", ".image.reference"),
                other => (other.key(), ".image"),
            };
            self.over_limit.get_or_insert(WorkloadError::OverLimit {
                field: format!("{}.{key}[{index}]{suffix}", at.field),
                detail: format!("an image reference of {} bytes", reference.len()),
                limit: MAX_REFERENCE_BYTES,
            });
            return;
        }
        if self.images_seen > MAX_IMAGES {
            self.images_over
                .get_or_insert_with(|| format!("{}.{}", at.field, list.key()));
            return;
        }
        let (key, suffix_field, suffix_pointer) = match list {
            List::Volumes => ("volumes", ".image.reference", "/image/reference"),
            other => (other.key(), ".image", "/image"),
        };
        let image = ImageUse {
            field: format!("{}.{key}[{index}]{suffix_field}", at.field),
            reference,
            pointer: format!("{}/{key}/{index}{suffix_pointer}", at.pointer),
        };
        match list {
            List::Init => self.init.push(image),
            List::Containers => self.containers.push(image),
            List::Ephemeral => self.ephemeral.push(image),
            List::Volumes => self.volumes.push(image),
        }
    }

    fn pull_secret(&mut self, name: Option<String>) {
        self.pull_secret_entries += 1;
        // A name no Secret can have is one the kubelet skips too.
        let Some(name) = name.filter(|n| !n.is_empty() && n.len() <= MAX_NAME_BYTES) else {
            return;
        };
        if self.pull_secrets.contains(&name) {
            return;
        }
        if self.pull_secrets.len() >= MAX_PULL_SECRETS {
            self.pull_secrets_over = true;
            return;
        }
        self.pull_secrets.push(name);
    }
}

/// The image lists of a pod spec.
#[derive(Debug, Clone, Copy)]
enum List {
    Init,
    Containers,
    Ephemeral,
    Volumes,
}

impl List {
    fn key(self) -> &'static str {
        match self {
            List::Init => "initContainers",
            List::Containers => "containers",
            List::Ephemeral => "ephemeralContainers",
            List::Volumes => "volumes",
        }
    }
}

/// Walks an object: at depth 0 the root (metadata, apiVersion, kind), then
/// down the pod-spec path; at the end of the path, the pod spec's keys.
struct ObjectVisitor<'a, 'k> {
    depth: usize,
    found: &'a mut Found<'k>,
    workload: &'a mut Workload,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let path = self.found.at.map_or(&[][..], |a| a.path);
        let at_spec = self.found.at.is_some() && self.depth == path.len();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut once = |key: &'static str| -> Result<(), A::Error> {
            if seen.contains(&key) {
                return Err(de::Error::duplicate_field(key));
            }
            seen.push(key);
            Ok(())
        };
        while let Some(key) = map.next_key::<Key>()? {
            let key = key.0;
            if self.depth == 0 && key == Some("metadata") {
                once("metadata")?;
                map.next_value_seed(MetaSeed(&mut self.workload.meta))?;
                continue;
            }
            if self.depth == 0 && key == Some("apiVersion") {
                once("apiVersion")?;
                self.workload.api_version = map.next_value()?;
                continue;
            }
            if self.depth == 0 && key == Some("kind") {
                once("kind")?;
                self.workload.kind = map.next_value()?;
                continue;
            }
            if at_spec {
                let list = match key {
                    Some("initContainers") => Some(List::Init),
                    Some("containers") => Some(List::Containers),
                    Some("ephemeralContainers") => Some(List::Ephemeral),
                    Some("volumes") => Some(List::Volumes),
                    _ => None,
                };
                if let Some(list) = list {
                    once(list.key())?;
                    map.next_value_seed(ListSeed {
                        list,
                        found: self.found,
                    })?;
                    continue;
                }
                match key {
                    Some("imagePullSecrets") => {
                        once("imagePullSecrets")?;
                        map.next_value_seed(PullSecretsSeed(self.found))?;
                        continue;
                    }
                    Some("serviceAccountName") => {
                        once("serviceAccountName")?;
                        let name: Option<String> = map.next_value()?;
                        let name = name.filter(|n| !n.is_empty());
                        if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
                            let field = format!(
                                "{}.serviceAccountName",
                                self.found.at.map_or("spec", |a| a.field)
                            );
                            self.found
                                .over_limit
                                .get_or_insert(WorkloadError::OverLimit {
                                    field,
                                    detail: "a name longer than any object can have".into(),
                                    limit: MAX_NAME_BYTES,
                                });
                        } else {
                            self.found.service_account = name;
                        }
                        continue;
                    }
                    _ => {}
                }
            } else if self.depth < path.len() && key == Some(path[self.depth]) {
                once(path[self.depth])?;
                map.next_value_seed(NestedSeed {
                    depth: self.depth + 1,
                    found: self.found,
                    workload: self.workload,
                })?;
                continue;
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// One level down the pod-spec path (a `null` there is an empty spec).
struct NestedSeed<'a, 'k> {
    depth: usize,
    found: &'a mut Found<'k>,
    workload: &'a mut Workload,
}

impl<'de> DeserializeSeed<'de> for NestedSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(OptionalObject(ObjectVisitor {
            depth: self.depth,
            found: self.found,
            workload: self.workload,
        }))
    }
}

/// `null` or an object.
struct OptionalObject<V>(V);

impl<'de, V: Visitor<'de, Value = ()>> Visitor<'de> for OptionalObject<V> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.visit_map(map)
    }
}

/// An object key: the name when it is one sigil may need; read without
/// allocating.
struct Key(Option<&'static str>);

/// The keys sigil reads anywhere on its paths; any other key is `None`.
const KNOWN_KEYS: &[&str] = &[
    "metadata",
    "apiVersion",
    "kind",
    "spec",
    "template",
    "jobTemplate",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "volumes",
    "imagePullSecrets",
    "serviceAccountName",
];

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(KNOWN_KEYS.iter().find(|k| **k == v).copied()))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// One image list (`null` is empty).
struct ListSeed<'a, 'k> {
    list: List,
    found: &'a mut Found<'k>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(OptionalSeq(self))
    }
}

/// `null` or a list.
struct OptionalSeq<S>(S);

impl<'de> Visitor<'de> for OptionalSeq<ListSeed<'_, '_>> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ListSeed { list, found } = self.0;
        let mut index = 0;
        loop {
            // Past the cap only the count matters: nothing is kept.
            let keep = found.images_seen < MAX_IMAGES;
            let reference = match (list, keep) {
                (List::Volumes, true) => match seq.next_element::<VolumeImage>()? {
                    Some(v) => v.image.and_then(|i| i.reference),
                    None => break,
                },
                (List::Volumes, false) => match seq.next_element::<VolumeImageCount>()? {
                    Some(v) => v.image.and_then(|i| i.reference).map(|_| String::new()),
                    None => break,
                },
                (_, true) => match seq.next_element::<ContainerImage>()? {
                    Some(c) => c.image,
                    None => break,
                },
                (_, false) => match seq.next_element::<ContainerImageCount>()? {
                    Some(c) => c.image.map(|_| String::new()),
                    None => break,
                },
            };
            found.image(list, index, reference);
            index += 1;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ContainerImage {
    #[serde(default)]
    image: Option<String>,
}

#[derive(Deserialize)]
struct ContainerImageCount {
    #[serde(default)]
    image: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct VolumeImage {
    #[serde(default)]
    image: Option<ImageVolumeSource>,
}

#[derive(Deserialize)]
struct ImageVolumeSource {
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Deserialize)]
struct VolumeImageCount {
    #[serde(default)]
    image: Option<ImageVolumeSourceCount>,
}

#[derive(Deserialize)]
struct ImageVolumeSourceCount {
    #[serde(default)]
    reference: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct LocalObjectReference {
    #[serde(default)]
    name: Option<String>,
}

/// `imagePullSecrets` (`null` is empty).
struct PullSecretsSeed<'a, 'k>(&'a mut Found<'k>);

impl<'de> DeserializeSeed<'de> for PullSecretsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for PullSecretsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of {name} or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            if self.0.pull_secrets_over {
                match seq.next_element::<IgnoredAny>()? {
                    Some(_) => self.0.pull_secret_entries += 1,
                    None => break,
                }
                continue;
            }
            match seq.next_element::<LocalObjectReference>()? {
                Some(r) => self.0.pull_secret(r.name),
                None => break,
            }
        }
        Ok(())
    }
}

/// `metadata`.
struct MetaSeed<'a>(&'a mut Meta);

impl<'de> DeserializeSeed<'de> for MetaSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(OptionalObject(self))
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("object metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum Field {
            Name,
            Namespace,
            Uid,
            Labels,
            DeletionTimestamp,
            OwnerReferences,
            #[serde(other)]
            Other,
        }
        let meta = self.0;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Name => meta.name = map.next_value()?,
                Field::Namespace => meta.namespace = map.next_value()?,
                Field::Uid => meta.uid = map.next_value()?,
                Field::Labels => map.next_value_seed(LabelsSeed(meta))?,
                Field::DeletionTimestamp => {
                    meta.deleting = map.next_value::<Option<IgnoredAny>>()?.is_some()
                }
                Field::OwnerReferences => {
                    map.next_value_seed(OwnersSeed(&mut meta.controller_kind))?
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `metadata.labels`: the first [`MAX_LABELS`] kept, the rest counted.
struct LabelsSeed<'a>(&'a mut Meta);

impl<'de> DeserializeSeed<'de> for LabelsSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(OptionalObject(self))
    }
}

impl<'de> Visitor<'de> for LabelsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("labels")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let meta = self.0;
        loop {
            if meta.labels.len() < MAX_LABELS && meta.labels_bytes <= MAX_LABEL_BYTES {
                let Some(k) = map.next_key::<String>()? else {
                    break;
                };
                let v: String = map.next_value()?;
                meta.labels_bytes += k.len() + v.len();
                if meta.labels_bytes <= MAX_LABEL_BYTES {
                    meta.labels.insert(k, v);
                }
            } else {
                if map.next_key::<IgnoredAny>()?.is_none() {
                    break;
                }
                map.next_value::<IgnoredAny>()?;
            }
            meta.labels_total += 1;
        }
        Ok(())
    }
}

/// `metadata.ownerReferences`: the controller's kind.
struct OwnersSeed<'a>(&'a mut Option<String>);

impl<'de> DeserializeSeed<'de> for OwnersSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OwnersSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("owner references")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        #[derive(Deserialize)]
        struct Owner {
            #[serde(default)]
            kind: Option<String>,
            #[serde(default)]
            controller: Option<bool>,
        }
        while let Some(owner) = seq.next_element::<Owner>()? {
            if owner.controller == Some(true) && self.0.is_none() {
                *self.0 = owner.kind;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn images(kind: &str, obj: &serde_json::Value) -> Vec<(String, String, String)> {
        read_value(obj, kind, PodSpecAt::of_kind(kind))
            .unwrap()
            .checked()
            .unwrap()
            .pod
            .unwrap()
            .images
            .into_iter()
            .map(|i| (i.field, i.reference, i.pointer))
            .collect()
    }

    #[test]
    fn finds_all_container_kinds_in_a_deployment() {
        // Keys in another order than the result: the order is by list.
        let obj = json!({"spec": {"template": {"spec": {
            "ephemeralContainers": [{"name": "e", "image": "debug:3"}],
            "containers": [{"name": "a", "image": "app:1"}, {"name": "b", "image": "side:2"}],
            "initContainers": [{"name": "i", "image": "init:1"}],
        }}}});
        let got: Vec<(String, String)> = images("Deployment", &obj)
            .into_iter()
            .map(|(f, r, _)| (f, r))
            .collect();
        let want = [
            ("spec.template.spec.initContainers[0].image", "init:1"),
            ("spec.template.spec.containers[0].image", "app:1"),
            ("spec.template.spec.containers[1].image", "side:2"),
            ("spec.template.spec.ephemeralContainers[0].image", "debug:3"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(f, r)| (f.to_string(), r.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn image_volumes_are_images_too() {
        let obj = json!({"spec": {
            "containers": [{"name": "a", "image": "app:1"}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "model", "image": {"reference": "reg.example/models/llm:v1", "pullPolicy": "IfNotPresent"}}
            ]
        }});
        let imgs = images("Pod", &obj);
        assert_eq!(imgs.len(), 2);
        assert_eq!(
            imgs[1],
            (
                "spec.volumes[1].image.reference".to_string(),
                "reg.example/models/llm:v1".to_string(),
                "/spec/volumes/1/image/reference".to_string()
            )
        );
        let deploy = json!({"spec": {"template": {"spec": {"containers": [], "volumes": [{"name": "m", "image": {"reference": "x:1"}}]}}}});
        assert_eq!(
            images("Deployment", &deploy)[0].0,
            "spec.template.spec.volumes[0].image.reference"
        );
    }

    #[test]
    fn cronjob_and_unknown_kinds() {
        let obj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}}});
        let imgs = images("CronJob", &obj);
        assert_eq!(
            imgs[0].0,
            "spec.jobTemplate.spec.template.spec.containers[0].image"
        );
        assert_eq!(
            imgs[0].2,
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        );
        assert!(PodSpecAt::of_kind("ConfigMap").is_none());
        let w = read_value(&obj, "ConfigMap", None).unwrap();
        assert_eq!(w.pod, None);
    }

    #[test]
    fn malformed_spec_is_an_error_not_a_panic() {
        let obj = json!({"spec": {"containers": "nope"}});
        let err = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read the pod spec of this Pod at spec"),
            "{err}"
        );
        for bad in [
            r#"{"spec": {"containers": [{"image": 7}]}}"#,
            r#"{"spec": [1]}"#,
            r#"{"spec": {"containers": [], "containers": []}}"#,
            r#"{"metadata": {"labels": {"a": 1}}}"#,
            r#"{"metadata": {}, "metadata": {}}"#,
            r#"{"spec": {"imagePullSecrets": "x"}}"#,
            r#"{"spec": {"containers": [{"image": "a"}"#,
        ] {
            assert!(
                read_object(bad, "Pod", PodSpecAt::of_kind("Pod")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn metadata_pull_secrets_and_service_account() {
        let obj = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"big": "ignored"},
                "deletionTimestamp": "2026-11-23T10:00:00Z",
                "ownerReferences": [{"kind": "Thing", "controller": false}, {"kind": "ReplicaSet", "controller": true}]},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"x": "y"}}, "spec": {
                "serviceAccountName": "builder",
                "imagePullSecrets": [{"name": "a"}, {"name": ""}, {"name": "b"}, {"name": "a"}, {}],
                "containers": [{"name": "c", "image": "app:1", "env": [{"name": "X", "value": "y"}]}]}}}}"#;
        let w = read_object(obj, "Deployment", PodSpecAt::of_kind("Deployment"))
            .unwrap()
            .checked()
            .unwrap();
        assert_eq!(w.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(w.kind.as_deref(), Some("Deployment"));
        assert_eq!(w.meta.name.as_deref(), Some("web"));
        assert_eq!(w.meta.namespace.as_deref(), Some("shop"));
        assert_eq!(w.meta.uid.as_deref(), Some("u-1"));
        assert_eq!(
            w.meta.labels.len(),
            2,
            "the template's labels are not the object's"
        );
        assert!(w.meta.deleting);
        assert_eq!(w.meta.controller_kind.as_deref(), Some("ReplicaSet"));
        let pod = w.pod.unwrap();
        assert_eq!(pod.pull_secrets, vec!["a", "b"]);
        assert_eq!(pod.service_account.as_deref(), Some("builder"));
        assert_eq!(pod.images.len(), 1);
        // A null deletionTimestamp is not a deletion; a missing spec has no images.
        let w = read_object(
            r#"{"metadata": {"deletionTimestamp": null}}"#,
            "Pod",
            PodSpecAt::of_kind("Pod"),
        )
        .unwrap();
        assert!(!w.meta.deleting);
        assert_eq!(w.pod.unwrap(), PodView::default());
    }

    #[test]
    fn lists_over_their_caps_are_reported_not_kept() {
        let containers: Vec<_> = (0..MAX_IMAGES + 5)
            .map(|i| json!({"name": format!("c{i}"), "image": format!("app:{i}")}))
            .collect();
        let obj = json!({"spec": {"containers": containers}});
        let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap();
        assert_eq!(w.pod.as_ref().unwrap().images.len(), MAX_IMAGES);
        let e = w.checked().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("spec.containers: this Pod has {} images (containers of every kind and image volumes), over sigil's limit of {MAX_IMAGES} per workload", MAX_IMAGES + 5)
        );
        // Volumes count with containers.
        let volumes: Vec<_> = (0..MAX_IMAGES)
            .map(|i| json!({"name": format!("v{i}"), "image": {"reference": "m:1"}}))
            .collect();
        let obj = json!({"spec": {"containers": [{"image": "a:1"}], "volumes": volumes}});
        let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
            .unwrap()
            .checked()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("spec.volumes: this Pod has 257 images"),
            "{e}"
        );
        // Pull secrets: distinct names count; repeats of one do not.
        let many: Vec<_> = (0..MAX_PULL_SECRETS + 1)
            .map(|i| json!({"name": format!("s{i}")}))
            .collect();
        let obj = json!({"spec": {"imagePullSecrets": many}});
        let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
            .unwrap()
            .checked()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.imagePullSecrets: this Pod names more than 32 distinct pull secrets (33 entries), over sigil's limit of 32 per workload"
        );
        let same: Vec<_> = (0..1000).map(|_| json!({"name": "one"})).collect();
        let obj = json!({"spec": {"imagePullSecrets": same}});
        let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
            .unwrap()
            .checked()
            .unwrap();
        assert_eq!(w.pod.unwrap().pull_secrets, vec!["one"]);
        // Labels.
        let labels: serde_json::Map<String, serde_json::Value> = (0..MAX_LABELS + 1)
            .map(|i| (format!("l{i}"), json!("v")))
            .collect();
        let obj = json!({"metadata": {"labels": labels}});
        let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap();
        assert_eq!(w.meta.labels.len(), MAX_LABELS);
        let e = w.checked().unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata.labels: this Pod has 1025 labels, over sigil's limit of 1024 per workload"
        );
        // Long values: a reference, a label, a service account.
        let obj = json!({"spec": {"containers": [{"image": "a:1"}, {"image": "x".repeat(MAX_REFERENCE_BYTES + 1)}]}});
        let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
            .unwrap()
            .checked()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.containers[1].image: an image reference of 4097 bytes, over sigil's limit of 4096 per workload"
        );
        let obj = json!({"metadata": {"labels": {"a": "v".repeat(MAX_LABEL_BYTES)}}});
        let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
            .unwrap()
            .checked()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("metadata.labels: this Pod has 262145 bytes of labels"),
            "{e}"
        );
        let obj = json!({"spec": {"serviceAccountName": "s".repeat(300), "imagePullSecrets": [{"name": "n".repeat(300)}]}});
        let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap();
        assert!(w.pod.as_ref().unwrap().pull_secrets.is_empty());
        assert_eq!(w.checked().unwrap_err().field(), "spec.serviceAccountName");
    }

    #[test]
    fn what_is_not_read_is_skipped_at_any_depth() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let obj = format!(
            r#"{{"spec": {{"x": {deep}, "containers": [{{"image": "a:1", "y": {deep}}}]}}, "status": {deep}}}"#
        );
        let w = read_object(&obj, "Pod", PodSpecAt::of_kind("Pod"))
            .unwrap()
            .checked()
            .unwrap();
        assert_eq!(w.pod.unwrap().images.len(), 1);
    }

    #[test]
    fn the_old_ephemeral_containers_object() {
        let obj = json!({"metadata": {"name": "p"}, "ephemeralContainers": [{"name": "d", "image": "debug:1"}]});
        let w = read_value(
            &obj,
            "EphemeralContainers",
            Some(&EPHEMERAL_CONTAINERS_OBJECT),
        )
        .unwrap()
        .checked()
        .unwrap();
        let i = &w.pod.unwrap().images[0];
        assert_eq!(i.field, "spec.ephemeralContainers[0].image");
        assert_eq!(i.pointer, "/ephemeralContainers/0/image");
    }
}
