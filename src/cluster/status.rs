//! The one routine that writes `status.conditions[type=Ready]` (and
//! `observedGeneration`) of cluster-scoped resources: ClusterImagePolicies
//! and TrustRoots. It patches only when a resource's (generation, error)
//! changed since its last successful write, so a resync does not rewrite
//! every status. Only the Lease holder writes: other replicas remember what
//! they would write and write it if they become the leader
//! ([`StatusWriter::catch_up`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::core::ClusterResourceScope;
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::events::{not_ready_record, EventRecorder};
use super::lease::Leadership;

/// A stream that yields once every time this replica gains or loses the
/// Lease (never, without leadership).
pub(super) fn leader_changes(
    leadership: Option<&Leadership>,
) -> futures::stream::BoxStream<'static, ()> {
    use futures::StreamExt;
    match leadership {
        None => futures::stream::pending().boxed(),
        Some(l) => futures::stream::unfold(l.changes(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
        .boxed(),
    }
}

/// Writes `Ready` conditions of one kind.
pub(super) struct StatusWriter<K> {
    api: Api<K>,
    /// What `Ready=True` says, e.g. `policy compiled and in force`.
    ok_message: &'static str,
    /// name → (generation, error) last written.
    written: HashMap<String, (Option<i64>, Option<String>)>,
    /// name → (generation, error) this replica computed last.
    desired: HashMap<String, (Option<i64>, Option<String>)>,
    /// Where a turn to not-Ready is told as an Event.
    events: Option<Arc<EventRecorder>>,
    /// Writes only while this replica leads (None: always).
    leadership: Option<Leadership>,
}

impl<K> StatusWriter<K>
where
    K: kube::Resource<Scope = ClusterResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    pub(super) fn new(
        client: Client,
        ok_message: &'static str,
        events: Option<Arc<EventRecorder>>,
        leadership: Option<Leadership>,
    ) -> Self {
        StatusWriter {
            api: Api::all(client),
            ok_message,
            written: HashMap::new(),
            desired: HashMap::new(),
            events,
            leadership,
        }
    }

    /// Whether this replica writes now.
    fn leads(&self) -> bool {
        self.leadership.as_ref().is_none_or(Leadership::is_leader)
    }

    /// Writes what was computed while another replica led (and forgets
    /// what was written then, which that replica may have changed since).
    pub(super) async fn catch_up(&mut self) {
        if !self.leads() {
            self.written.clear();
            return;
        }
        let desired: Vec<_> = self
            .desired
            .iter()
            .map(|(name, (generation, error))| (name.clone(), *generation, error.clone()))
            .collect();
        for (name, generation, error) in desired {
            self.write(&name, generation, error).await;
        }
    }

    /// Forgets resources that no longer exist (so one re-created with the
    /// same name and generation gets its status written).
    pub(super) fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.written.retain(|name, _| exists(name));
        self.desired.retain(|name, _| exists(name));
    }

    /// Writes `name`'s status unless it already says this; a failed write is
    /// logged and retried on the next change.
    pub(super) async fn write(
        &mut self,
        name: &str,
        generation: Option<i64>,
        error: Option<String>,
    ) {
        let key = (generation, error);
        self.desired.insert(name.to_string(), key.clone());
        if self.written.get(name) == Some(&key) || !self.leads() {
            return;
        }
        // Not-Ready now, and not for this same reason before: an Event.
        let was = self.written.get(name).and_then(|(_, e)| e.as_deref());
        if let (Some(error), Some(events)) = (key.1.as_deref(), &self.events) {
            if was != Some(error) {
                let dt = K::DynamicType::default();
                events.record(not_ready_record(
                    &K::api_version(&dt),
                    &K::kind(&dt),
                    name,
                    error,
                ));
            }
        }
        let status = status_json(
            key.1.as_deref(),
            self.ok_message,
            generation,
            &crate::audit::now_rfc3339(),
        );
        match self
            .api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(_) => {
                self.written.insert(name.to_string(), key);
            }
            Err(e) => tracing::warn!(resource = name, error = %e, "cannot write status"),
        }
    }
}

/// The `status` a resource carries: `Ready` True (reason `Valid`) with
/// `ok_message`, or False (reason `Invalid`) with the error.
pub fn status_json(
    error: Option<&str>,
    ok_message: &str,
    generation: Option<i64>,
    now: &str,
) -> serde_json::Value {
    let (status, reason, message) = match error {
        None => ("True", "Valid", ok_message.to_string()),
        Some(e) => ("False", "Invalid", e.to_string()),
    };
    json!({
        "observedGeneration": generation,
        "conditions": [{
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        }]
    })
}
