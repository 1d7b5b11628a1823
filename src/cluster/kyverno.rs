//! The watch of Kyverno's `ImageValidatingPolicy` (cluster) and
//! `NamespacedImageValidatingPolicy` (every namespace), read as dynamic
//! objects so that one that does not fit the schema is an invalid policy,
//! never a broken list; each change recompiles both kinds into the
//! [`IvpStore`] and writes each policy's `status.conditionStatus` in
//! Kyverno's shape (leader only).
//!
//! A kind whose CRD is not installed has no policies: it is looked for
//! again every [`PROBE_EVERY`], so installing Kyverno (or the chart's
//! CRDs) later is noticed without a restart.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::lease::Leadership;
use super::sync::{ClusterState, Listing};
use super::watch::SOURCE;
use crate::kyverno::types::{GROUP, KIND, NAMESPACED_KIND};
use crate::kyverno::{IvpDocument, IvpStore, LoadedIvp};

/// How often a kind whose CRD is absent is looked for again.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);

/// The version read (Kyverno's stored version; the chart's CRDs serve it too).
const VERSION: &str = "v1beta1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

/// Whether the kind is served: `Ok(false)` on 404 (no CRD).
async fn served(api: &Api<DynamicObject>) -> Result<bool, kube::Error> {
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

enum Change {
    /// The watches (re)started: what is listed so far is published once
    /// both kinds are (a kind with no CRD is listed at once, empty).
    Start,
    Cluster(Result<Event<DynamicObject>, watcher::Error>),
    Namespaced(Result<Event<DynamicObject>, watcher::Error>),
    Probe,
    Leader,
}

/// Watches both kinds into `store` until the process ends.
pub async fn watch_kyverno_policies(
    client: Client,
    store: Arc<IvpStore>,
    state: Arc<ClusterState>,
    leadership: Option<Leadership>,
) {
    let cluster_kind = resource(KIND, "imagevalidatingpolicies");
    let namespaced_kind = resource(NAMESPACED_KIND, "namespacedimagevalidatingpolicies");
    let cluster_api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_kind);
    let namespaced_api: Api<DynamicObject> = Api::all_with(client.clone(), &namespaced_kind);
    let mut status = IvpStatusWriter {
        client,
        leadership: leadership.clone(),
        written: HashMap::new(),
        desired: HashMap::new(),
        kinds: (cluster_kind, namespaced_kind),
    };
    loop {
        let present = (served(&cluster_api).await, served(&namespaced_api).await);
        let (cluster_present, namespaced_present) = match present {
            (Ok(c), Ok(n)) => (c, n),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot list ImageValidatingPolicies; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let mut streams = Vec::new();
        if cluster_present {
            streams.push(
                watcher::watcher(cluster_api.clone(), watcher::Config::default())
                    .default_backoff()
                    .map(Change::Cluster)
                    .boxed(),
            );
        }
        if namespaced_present {
            streams.push(
                watcher::watcher(namespaced_api.clone(), watcher::Config::default())
                    .default_backoff()
                    .map(Change::Namespaced)
                    .boxed(),
            );
        }
        if !(cluster_present && namespaced_present) {
            // A missing kind is looked for again; when it appears, the
            // watches restart with it.
            streams.push(
                futures::stream::unfold((), |()| async {
                    tokio::time::sleep(PROBE_EVERY).await;
                    Some((Change::Probe, ()))
                })
                .boxed(),
            );
        }
        streams.push(
            super::status::leader_changes(leadership.as_ref())
                .map(|()| Change::Leader)
                .boxed(),
        );
        let mut stream =
            futures::stream::iter([Change::Start]).chain(futures::stream::select_all(streams));
        let mut cluster: Listing<DynamicObject> = Listing::default();
        let mut namespaced: Listing<DynamicObject> = Listing::default();
        if !cluster_present {
            cluster.apply(Event::Init, |o| o);
            cluster.apply(Event::InitDone, |o| o);
        }
        if !namespaced_present {
            namespaced.apply(Event::Init, |o| o);
            namespaced.apply(Event::InitDone, |o| o);
        }
        while let Some(change) = stream.next().await {
            let changed = match change {
                Change::Start => true,
                Change::Cluster(Ok(e)) => cluster.apply(e, |o| o),
                Change::Namespaced(Ok(e)) => namespaced.apply_keyed(
                    e,
                    |o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
                    |o| o,
                ),
                Change::Probe => {
                    let now = (served(&cluster_api).await, served(&namespaced_api).await);
                    if matches!(now, (Ok(c), Ok(n)) if (c, n) != (cluster_present, namespaced_present))
                    {
                        break;
                    }
                    false
                }
                Change::Leader => {
                    status.catch_up().await;
                    continue;
                }
                Change::Cluster(Err(e)) | Change::Namespaced(Err(e)) => {
                    tracing::warn!(error = %e, "ImageValidatingPolicy watch failed; retrying");
                    if e.to_string().contains("404") {
                        break;
                    }
                    false
                }
            };
            if !(cluster.synced() && namespaced.synced()) {
                continue;
            }
            if !changed && !state.kyverno_pending.load(Ordering::Acquire) {
                continue;
            }
            let docs: Vec<(IvpDocument, Option<i64>)> = cluster
                .current
                .values()
                .chain(namespaced.current.values())
                .filter_map(|o| {
                    let doc = crate::kyverno::document(&object_json(o)?)?.ok()?;
                    Some((doc, o.metadata.generation))
                })
                .collect();
            let loaded = store.replace_source(
                SOURCE,
                &docs.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            );
            state.set(&state.kyverno_pending, false);
            status.retain(&docs);
            for (policy, (doc, generation)) in loaded.iter().zip(&docs) {
                status.write(doc, policy, *generation).await;
            }
        }
    }
}

/// The object as the policy files read it (apiVersion, kind, metadata, spec).
fn object_json(o: &DynamicObject) -> Option<serde_json::Value> {
    let types = o.types.as_ref()?;
    Some(json!({
        "apiVersion": types.api_version,
        "kind": types.kind,
        "metadata": {"name": o.name_any(), "namespace": o.namespace()},
        "spec": o.data.get("spec").cloned().unwrap_or_default(),
    }))
}

type StatusKey = (Option<String>, String);

/// Writes `status.conditionStatus` as Kyverno does: only when a policy's
/// (generation, error) changed, only on the leader.
struct IvpStatusWriter {
    client: Client,
    leadership: Option<Leadership>,
    written: HashMap<StatusKey, (Option<i64>, Option<String>)>,
    desired: HashMap<StatusKey, (String, Option<i64>, Option<String>)>,
    kinds: (ApiResource, ApiResource),
}

impl IvpStatusWriter {
    fn leads(&self) -> bool {
        self.leadership.as_ref().is_none_or(Leadership::is_leader)
    }

    fn retain(&mut self, docs: &[(IvpDocument, Option<i64>)]) {
        let exists: std::collections::HashSet<StatusKey> = docs
            .iter()
            .map(|(d, _)| (d.namespace.clone(), d.name.clone()))
            .collect();
        self.written.retain(|k, _| exists.contains(k));
        self.desired.retain(|k, _| exists.contains(k));
    }

    async fn catch_up(&mut self) {
        if !self.leads() {
            self.written.clear();
            return;
        }
        let desired: Vec<_> = self.desired.clone().into_iter().collect();
        for ((namespace, name), (kind, generation, error)) in desired {
            self.patch(&kind, namespace.as_deref(), &name, generation, error)
                .await;
        }
    }

    async fn write(&mut self, doc: &IvpDocument, loaded: &LoadedIvp, generation: Option<i64>) {
        let error = loaded.error().map(|e| e.to_string());
        let key = (doc.namespace.clone(), doc.name.clone());
        self.desired
            .insert(key.clone(), (doc.kind.clone(), generation, error.clone()));
        if self.written.get(&key) == Some(&(generation, error.clone())) || !self.leads() {
            return;
        }
        self.patch(
            &doc.kind,
            doc.namespace.as_deref(),
            &doc.name,
            generation,
            error,
        )
        .await;
    }

    async fn patch(
        &mut self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        generation: Option<i64>,
        error: Option<String>,
    ) {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) if kind == NAMESPACED_KIND => {
                Api::namespaced_with(self.client.clone(), ns, &self.kinds.1)
            }
            _ => Api::all_with(self.client.clone(), &self.kinds.0),
        };
        let body = json!({"status": status_json(error.as_deref(), generation, &crate::audit::now_rfc3339())});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(_) => {
                self.written.insert(
                    (namespace.map(str::to_string), name.to_string()),
                    (generation, error),
                );
            }
            Err(e) => {
                tracing::warn!(policy = name, error = %e, "cannot write ImageValidatingPolicy status")
            }
        }
    }
}

/// Kyverno's `status`: `conditionStatus.ready`, and the conditions tools
/// built on Kyverno wait for. `WebhookConfigured` and
/// `RBACPermissionsGranted` say sigil's equivalents: its webhook receives
/// the policy's requests, and it may write their PolicyReports.
pub fn status_json(error: Option<&str>, generation: Option<i64>, now: &str) -> serde_json::Value {
    let condition = |kind: &str, ok: bool, reason: &str, message: &str| {
        json!({
            "type": kind,
            "status": if ok { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        })
    };
    match error {
        None => json!({"conditionStatus": {
            "ready": true,
            "message": "",
            "conditions": [
                condition("Ready", true, "Succeeded", "Policy compiled and in force (sigil)."),
                condition("WebhookConfigured", true, "Succeeded", "Webhook configured."),
                condition("RBACPermissionsGranted", true, "Succeeded", "Policy is ready for reporting."),
            ],
        }}),
        Some(e) => json!({"conditionStatus": {
            "ready": false,
            "message": e,
            "conditions": [condition("Ready", false, "Invalid", e)],
        }}),
    }
}
