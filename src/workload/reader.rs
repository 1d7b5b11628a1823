//! The visitors that read a workload object as it streams by: the root
//! and the pod-spec path, the image lists, pull secrets, metadata. What is
//! not read is skipped with `IgnoredAny` (no recursion, no allocation); what
//! is kept is counted against the caps of [`super`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{
    ImageUse, Meta, ObjectSeed, PodSpecAt, PodView, Workload, WorkloadError, MAX_IMAGES,
    MAX_LABELS, MAX_LABEL_BYTES, MAX_NAME_BYTES, MAX_PULL_SECRETS, MAX_REFERENCE_BYTES, POD,
};

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
    fn image(&mut self, list: List, index: usize, reference: Option<Cow<'_, str>>) {
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
        // Joined by hand: `format!` costs several times as much, for every
        // image of every review.
        let mut digits = itoa::Buffer::new();
        let index = digits.format(index);
        let image = ImageUse {
            field: [at.field, ".", key, "[", index, "]", suffix_field].concat(),
            reference: reference.into_owned(),
            pointer: [at.pointer, "/", key, "/", index, suffix_pointer].concat(),
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
                (List::Volumes, true) => match seq.next_element::<VolumeImage<'de>>()? {
                    Some(v) => v.image.and_then(|i| i.reference).map(|t| t.0),
                    None => break,
                },
                (List::Volumes, false) => match seq.next_element::<VolumeImageCount>()? {
                    Some(v) => v.image.and_then(|i| i.reference).map(|_| Cow::Borrowed("")),
                    None => break,
                },
                (_, true) => match seq.next_element::<ContainerImage<'de>>()? {
                    Some(c) => c.image.map(|t| t.0),
                    None => break,
                },
                (_, false) => match seq.next_element::<ContainerImageCount>()? {
                    Some(c) => c.image.map(|_| Cow::Borrowed("")),
                    None => break,
                },
            };
            found.image(list, index, reference);
            index += 1;
        }
        Ok(())
    }
}

/// A string borrowed from the input when it has no escapes, so that an
/// over-long one is measured, never copied.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// A container's image.
#[derive(Deserialize)]
struct ContainerImage<'a> {
    #[serde(default, borrow)]
    image: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ContainerImageCount {
    #[serde(default)]
    image: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct VolumeImage<'a> {
    #[serde(default, borrow)]
    image: Option<ImageVolumeSource<'a>>,
}

#[derive(Deserialize)]
struct ImageVolumeSource<'a> {
    #[serde(default, borrow)]
    reference: Option<Text<'a>>,
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
