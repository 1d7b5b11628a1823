//! The AdmissionReview decode in one pass, for reviews written as the
//! apiserver writes them: `kind`, `subResource` and `operation` come before
//! `object` (Go marshals `AdmissionRequest`'s fields in declaration order),
//! so the object can be read by [`crate::workload`]'s streaming reader as it
//! goes by, instead of being scanned once into a borrowed slice and then
//! read again.
//!
//! This module only ever answers "here is the request" or "not sure":
//! anything it cannot settle in one pass (an object before its kind, a
//! `subResource` after the object it decides the reading of, a duplicate
//! field, any error, an object sigil cannot read) makes it give up, and
//! [`super::decode`] decodes the body again in two passes, whose answer
//! (and error message) is the reference. It must never answer differently
//! from the two passes; the tests below hold it to that.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{spec_at, GroupVersionKind, GroupVersionResource, Operation, Request, UserInfo};
use crate::workload::{read_object, ObjectSeed, Workload};

/// The request, or `None` when the two passes must decide.
pub(super) fn decode(body: &[u8]) -> Option<Request> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let request = de::Deserializer::deserialize_map(&mut de, ReviewVisitor).ok()?;
    de.end().ok()?;
    request
}

/// A field of the review or of its request that sigil reads.
enum Key {
    ApiVersion,
    Request,
    Uid,
    Kind,
    Resource,
    SubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "apiVersion" => Key::ApiVersion,
                    "request" => Key::Request,
                    "uid" => Key::Uid,
                    "kind" => Key::Kind,
                    "resource" => Key::Resource,
                    "subResource" => Key::SubResource,
                    "name" => Key::Name,
                    "namespace" => Key::Namespace,
                    "operation" => Key::Operation,
                    "userInfo" => Key::UserInfo,
                    "object" => Key::Object,
                    "oldObject" => Key::OldObject,
                    "dryRun" => Key::DryRun,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// Gives up: the two passes decide.
fn unsure<E: de::Error>() -> E {
    E::custom("decoded in two passes")
}

/// Sets a field once; a second value makes the two passes decide (they
/// refuse duplicates).
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    match slot {
        Some(_) => Err(unsure()),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

struct ReviewVisitor;

impl<'de> Visitor<'de> for ReviewVisitor {
    type Value = Option<Request>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Request>, A::Error> {
        let mut version_ok = None;
        let mut request = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::ApiVersion => {
                    let version: &str = map.next_value()?;
                    once(&mut version_ok, version == super::API_VERSION)?;
                }
                Key::Request => once(&mut request, map.next_value_seed(OrNull(RequestSeed))?)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (version_ok, request) {
            // Another version, or none, or no request: the two passes
            // word the error.
            (Some(true), Some(Some(request))) => Ok(Some(request)),
            _ => Err(unsure()),
        }
    }
}

/// `request`.
struct RequestSeed;

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = Request;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Request, D::Error> {
        d.deserialize_map(RequestVisitor)
    }
}

/// An object: read as it streams by, skipped, or kept as a slice of the
/// body when its kind or the operation was not known yet.
// Two of these live on the stack for one decode; boxing the workload would
// cost an allocation per review.
#[allow(clippy::large_enum_variant)]
enum Object<'de> {
    Read {
        workload: Option<Workload>,
        /// The `subResource` it was read under.
        sub_resource: Option<String>,
    },
    Skipped {
        sub_resource: Option<String>,
    },
    Raw(Option<&'de RawValue>),
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = Request;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an admission request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request, A::Error> {
        let mut uid: Option<String> = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut resource: Option<GroupVersionResource> = None;
        let mut sub_resource: Option<Option<String>> = None;
        let mut name: Option<Option<String>> = None;
        let mut namespace: Option<Option<String>> = None;
        let mut operation: Option<Operation> = None;
        let mut user_info: Option<UserInfo> = None;
        let mut object: Option<Object<'de>> = None;
        let mut old_object: Option<Object<'de>> = None;
        let mut dry_run: Option<Option<bool>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Uid => once(&mut uid, map.next_value()?)?,
                Key::Kind => once(&mut kind, map.next_value()?)?,
                Key::Resource => once(&mut resource, map.next_value()?)?,
                Key::SubResource => once(&mut sub_resource, map.next_value()?)?,
                Key::Name => once(&mut name, map.next_value()?)?,
                Key::Namespace => once(&mut namespace, map.next_value()?)?,
                Key::Operation => once(&mut operation, map.next_value()?)?,
                Key::UserInfo => once(&mut user_info, map.next_value()?)?,
                Key::DryRun => once(&mut dry_run, map.next_value()?)?,
                Key::Object | Key::OldObject => {
                    let old = matches!(key, Key::OldObject);
                    let sub = sub_resource.clone().flatten();
                    let value = match (&kind, operation) {
                        (Some(kind), Some(op)) => {
                            let at = spec_at(&kind.kind, sub.as_deref().unwrap_or(""));
                            let reads = if old {
                                op == Operation::Update && at.is_some()
                            } else {
                                matches!(op, Operation::Create | Operation::Update)
                            };
                            if reads {
                                let seed = ObjectSeed {
                                    kind: &kind.kind,
                                    at,
                                };
                                Object::Read {
                                    workload: map.next_value_seed(OrNull(seed))?,
                                    sub_resource: sub,
                                }
                            } else {
                                map.next_value::<IgnoredAny>()?;
                                Object::Skipped { sub_resource: sub }
                            }
                        }
                        _ => Object::Raw(map.next_value()?),
                    };
                    once(if old { &mut old_object } else { &mut object }, value)?;
                }
                Key::ApiVersion | Key::Request | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (Some(uid), Some(kind), Some(operation)) = (uid, kind, operation) else {
            return Err(unsure());
        };
        let sub_resource = sub_resource.flatten();
        // An object read or skipped under another subResource than the
        // one the request ends up with was read at the wrong path.
        for o in [&object, &old_object].into_iter().flatten() {
            if let Object::Read {
                sub_resource: s, ..
            }
            | Object::Skipped { sub_resource: s } = o
            {
                if *s != sub_resource {
                    return Err(unsure());
                }
            }
        }
        let at = spec_at(&kind.kind, sub_resource.as_deref().unwrap_or(""));
        let reads_objects = matches!(operation, Operation::Create | Operation::Update);
        let object = match object {
            Some(Object::Read { workload, .. }) => workload.map(Ok),
            Some(Object::Raw(Some(raw))) if reads_objects => {
                Some(read_object(raw.get(), &kind.kind, at))
            }
            _ => None,
        };
        let old_workload = match old_object {
            Some(Object::Read { workload, .. }) => workload,
            Some(Object::Raw(Some(raw))) if operation == Operation::Update && at.is_some() => {
                read_object(raw.get(), &kind.kind, at).ok()
            }
            _ => None,
        };
        let old_images = old_workload
            .and_then(|w| w.checked().ok())
            .and_then(|w| w.pod)
            .map(|p| p.images.into_iter().map(|i| i.reference).collect());
        Ok(Request {
            uid,
            kind,
            resource: resource.unwrap_or_default(),
            sub_resource: sub_resource.unwrap_or_default(),
            name: name.flatten().unwrap_or_default(),
            namespace: namespace.flatten().unwrap_or_default(),
            operation,
            username: user_info.and_then(|u| u.username).unwrap_or_default(),
            dry_run: dry_run.flatten().unwrap_or(false),
            object,
            old_images,
        })
    }
}

/// What `S` reads, or `null`.
struct OrNull<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OrNull<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OrNull<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `body` both ways; whenever one pass answers, it answers what
    /// the two passes answer, and `decode` always does. Returns whether one
    /// pass answered.
    fn agree(body: &str) -> bool {
        let two = super::super::decode_in_two_passes(body.as_bytes()).map(|r| format!("{r:?}"));
        let one = decode(body.as_bytes()).map(|r| format!("{r:?}"));
        if let Some(one) = &one {
            assert_eq!(Ok(one), two.as_ref(), "one pass differs on {body}");
        }
        let decoded = super::super::decode(body.as_bytes()).map(|r| format!("{r:?}"));
        assert_eq!(decoded, two, "decode differs on {body}");
        one.is_some()
    }

    /// A review with `request`'s fields in the given order.
    fn review(fields: &[&str]) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{{}}}}}"#,
            fields.join(",")
        )
    }

    const UID: &str = r#""uid":"u1""#;
    const POD: &str = r#""kind":{"group":"","version":"v1","kind":"Pod"}"#;
    const PODS: &str = r#""resource":{"group":"","version":"v1","resource":"pods"}"#;
    const NAMES: &str = r#""name":"p","namespace":"ns","userInfo":{"username":"alice"}"#;
    const CREATE: &str = r#""operation":"CREATE""#;
    const UPDATE: &str = r#""operation":"UPDATE""#;
    const OBJECT: &str = r#""object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"a"}},"spec":{"initContainers":[{"name":"i","image":"r.example/i@sha256:1111111111111111111111111111111111111111111111111111111111111111"}],"containers":[{"name":"a","image":"r.example/a:1"},{"name":"b","image":"r.example/b:2"}],"imagePullSecrets":[{"name":"s"}]}}"#;
    const OLD: &str = r#""oldObject":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"r.example/a:1"}]}}"#;

    #[test]
    fn the_apiservers_order_is_read_in_one_pass() {
        assert!(agree(&review(&[UID, POD, PODS, NAMES, CREATE, OBJECT])));
        assert!(agree(&review(&[
            UID, POD, PODS, NAMES, UPDATE, OBJECT, OLD
        ])));
        assert!(agree(&review(&[
            UID,
            POD,
            PODS,
            r#""subResource":"status""#,
            NAMES,
            UPDATE,
            OBJECT,
            OLD,
            r#""dryRun":true"#
        ])));
        assert!(agree(&review(&[
            UID,
            POD,
            NAMES,
            CREATE,
            r#""object":null"#
        ])));
        assert!(agree(&review(&[
            UID,
            POD,
            r#""operation":"DELETE""#,
            OBJECT,
            OLD
        ])));
        let deployment = r#""kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{"kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"a","image":"r.example/a:1"}]}}}}"#;
        assert!(agree(&review(&[UID, deployment])));
        // The one pass really read the images.
        let one = decode(review(&[UID, POD, NAMES, CREATE, OBJECT]).as_bytes()).unwrap();
        let images = one.object.unwrap().unwrap().pod.unwrap().images;
        assert_eq!(images.len(), 3);
        assert_eq!(images[2].reference, "r.example/b:2");
        assert_eq!(images[2].field, "spec.containers[1].image");
    }

    #[test]
    fn other_orders_read_the_same() {
        // An object before its kind or the operation is kept and read after.
        assert!(agree(&review(&[UID, OBJECT, POD, CREATE, NAMES])));
        assert!(agree(&review(&[UID, POD, OBJECT, OLD, UPDATE])));
        // A key spelled with escapes is the same key.
        assert!(agree(&review(&[
            UID,
            r#""\u006bind":{"group":"","version":"v1","kind":"Pod"}"#,
            CREATE,
            OBJECT
        ])));
    }

    #[test]
    fn what_one_pass_cannot_settle_goes_to_two_passes() {
        // A subResource after the object it decides the reading of.
        assert!(!agree(&review(&[
            UID,
            POD,
            CREATE,
            OBJECT,
            r#""subResource":"ephemeralcontainers""#
        ])));
        assert!(!agree(&review(&[
            UID,
            POD,
            CREATE,
            OBJECT,
            r#""subResource":"status""#
        ])));
        // Duplicates, which the two passes refuse.
        assert!(!agree(&review(&[UID, UID, POD, CREATE, OBJECT])));
        assert!(!agree(&review(&[UID, POD, CREATE, OBJECT, OBJECT])));
        // An object sigil cannot read: the two passes word the reason.
        let unreadable = r#""object":{"kind":"Pod","spec":{"containers":"not a list"}}"#;
        assert!(!agree(&review(&[UID, POD, CREATE, unreadable])));
        let decoded = super::super::decode(review(&[UID, POD, CREATE, unreadable]).as_bytes());
        assert!(matches!(decoded.unwrap().object, Some(Err(_))));
        // No request, another version, missing fields, not JSON.
        assert!(!agree(
            r#"{"apiVersion":"admission.k8s.io/v1","request":null}"#
        ));
        assert!(!agree(
            &review(&[UID, POD, CREATE]).replace("/v1", "/v1beta1")
        ));
        assert!(!agree(&review(&[POD, CREATE, OBJECT])));
        assert!(!agree(&review(&[UID, POD, r#""operation":"PATCH""#])));
        assert!(!agree(&review(&[UID, POD, CREATE, OBJECT])[..60]));
    }
}
