//! Workloads listed page by page with the bytes of a page bounded, not
//! only its object count: a page of 250 Pods of 1.4 MiB each would be
//! 350 MB. Each page's body is read up to [`PAGE_BYTES`]; a page over it is
//! asked for again with fewer objects (from the same continue token), and
//! the body is decoded by the workload reader, which keeps only what sigil
//! reads of each object. Lists only; it decides nothing.

use futures::AsyncReadExt as _;
use kube::api::ListParams;
use kube::core::{ApiResource, Request};
use kube::Client;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::workload::{ObjectSeed, PodSpecAt, Workload};

/// Most bytes of one list page held at once.
pub use crate::limits::LIST_PAGE_BYTES as PAGE_BYTES;

/// The pages of one kind's list.
pub struct WorkloadPages {
    client: Client,
    url_path: String,
    kind: &'static str,
    /// Objects asked for per page; lowered while pages are too large.
    limit: u32,
    max_limit: u32,
    next: Option<String>,
    done: bool,
}

/// A page could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The apiserver said no (404 for an API it does not serve).
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The body was not a list sigil can read.
    #[error("cannot read a list of {kind}: {reason}")]
    Unreadable {
        /// The kind listed.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

impl PageError {
    /// The apiserver answered 404 (the API is not served).
    pub fn not_served(&self) -> bool {
        matches!(self, PageError::Kube(kube::Error::Api(e)) if e.code == 404)
    }
}

impl WorkloadPages {
    /// The pages of `kind` (of `resource`) in `namespace`, or in all, at
    /// most `limit` objects a page.
    pub fn new(
        client: Client,
        resource: &ApiResource,
        kind: &'static str,
        namespace: Option<&str>,
        limit: u32,
    ) -> Self {
        let url_path = match namespace {
            Some(ns) => kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
                client.clone(),
                ns,
                resource,
            )
            .resource_url()
            .to_string(),
            None => kube::api::Api::<kube::api::DynamicObject>::all_with(client.clone(), resource)
                .resource_url()
                .to_string(),
        };
        WorkloadPages {
            client,
            url_path,
            kind,
            limit: limit.max(1),
            max_limit: limit.max(1),
            next: None,
            done: false,
        }
    }

    /// The next page's workloads; `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Workload>>, PageError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let mut params = ListParams::default().limit(self.limit);
            if let Some(token) = &self.next {
                params = params.continue_token(token);
            }
            let request = Request::new(&self.url_path)
                .list(&params)
                .map_err(kube::Error::BuildRequest)?;
            let body = self.client.request_stream(request).await?;
            let mut bytes = Vec::new();
            let read = body
                .take(PAGE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| PageError::Unreadable {
                    kind: self.kind,
                    reason: e.to_string(),
                })?;
            if read > PAGE_BYTES {
                if self.limit == 1 {
                    return Err(PageError::Unreadable {
                        kind: self.kind,
                        reason: format!("one object is larger than {} bytes", PAGE_BYTES),
                    });
                }
                // Ask again for fewer, from the same place.
                drop(bytes);
                self.limit = (self.limit / 4).max(1);
                tracing::debug!(
                    kind = self.kind,
                    limit = self.limit,
                    "list page over its byte limit; asking for fewer objects"
                );
                continue;
            }
            let page = ListSeed {
                kind: self.kind,
                at: PodSpecAt::of_kind(self.kind),
            }
            .deserialize(&mut serde_json::Deserializer::from_slice(&bytes))
            .map_err(|e| PageError::Unreadable {
                kind: self.kind,
                reason: e.to_string(),
            })?;
            self.next = page.next.filter(|c| !c.is_empty());
            self.done = self.next.is_none();
            // Small pages went well: grow back towards the asked size.
            self.limit = (self.limit * 2).min(self.max_limit);
            return Ok(Some(page.items));
        }
    }
}

/// One list page as read.
struct Page {
    items: Vec<Workload>,
    next: Option<String>,
}

struct ListSeed {
    kind: &'static str,
    at: Option<&'static PodSpecAt>,
}

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Page;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Page, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Page;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page, A::Error> {
        #[derive(serde::Deserialize)]
        struct ListMeta {
            #[serde(default, rename = "continue")]
            next: Option<String>,
        }
        let mut page = Page {
            items: Vec::new(),
            next: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => page.next = map.next_value::<ListMeta>()?.next,
                "items" => {
                    page.items = map.next_value_seed(Items {
                        kind: self.kind,
                        at: self.at,
                    })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

struct Items {
    kind: &'static str,
    at: Option<&'static PodSpecAt>,
}

impl<'de> DeserializeSeed<'de> for Items {
    type Value = Vec<Workload>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Workload>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Items {
    type Value = Vec<Workload>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("list items")
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<Workload>, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<Workload>, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Workload>, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Workload>, A::Error> {
        let mut out = Vec::new();
        while let Some(w) = seq.next_element_seed(ObjectSeed {
            kind: self.kind,
            at: self.at,
        })? {
            out.push(w);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_page_keeps_only_what_sigil_reads() {
        let body = serde_json::json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"continue": "abc", "resourceVersion": "7"},
            "items": [
                {"metadata": {"name": "a", "namespace": "n", "uid": "u1",
                    "ownerReferences": [{"kind": "ReplicaSet", "controller": true}]},
                 "spec": {"containers": [{"name": "c", "image": "x:1",
                    "env": (0..1000).map(|i| serde_json::json!({"name": format!("E{i}"), "value": "v"})).collect::<Vec<_>>()}]},
                 "status": {"phase": "Running"}},
                {"metadata": {"name": "b", "namespace": "n"}, "spec": {"containers": [{"image": "y:1"}]}}
            ]
        });
        let text = serde_json::to_vec(&body).unwrap();
        let page = ListSeed {
            kind: "Pod",
            at: PodSpecAt::of_kind("Pod"),
        }
        .deserialize(&mut serde_json::Deserializer::from_slice(&text))
        .unwrap();
        assert_eq!(page.next.as_deref(), Some("abc"));
        assert_eq!(page.items.len(), 2);
        assert_eq!(
            page.items[0].meta.controller_kind.as_deref(),
            Some("ReplicaSet")
        );
        assert_eq!(
            page.items[1].pod.as_ref().unwrap().images[0].reference,
            "y:1"
        );
    }
}
