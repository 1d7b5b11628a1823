//! Sync state in one place: what each watch has delivered ([`Listing`]) and
//! whether the cluster view is complete ([`ClusterState`], which `/readyz`
//! and the webhook's fail-closed rule follow).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use kube::runtime::watcher::Event;
use kube::ResourceExt;

use crate::service::{NamespaceLookup, NamespaceMode};

/// Namespace labels and sync state, shared by the watchers and the webhook.
#[derive(Default)]
pub struct ClusterState {
    pub(super) namespaces: RwLock<BTreeMap<String, NamespaceMode>>,
    /// Each namespace's labels (ImageValidatingPolicies select by them).
    pub(super) namespace_labels: RwLock<BTreeMap<String, Arc<BTreeMap<String, String>>>>,
    pub(super) namespaces_synced: AtomicBool,
    pub(super) policies_synced: AtomicBool,
    pub(super) pull_secrets_synced: AtomicBool,
    /// Kyverno's policy kinds are watched and not listed yet (set before
    /// the watch starts, cleared once both kinds are listed or absent).
    pub(super) kyverno_pending: AtomicBool,
    pub(super) ready: Arc<AtomicBool>,
}

impl ClusterState {
    /// A state whose readiness is mirrored into `ready` (the `/readyz` flag).
    pub fn new(ready: Arc<AtomicBool>) -> Self {
        ClusterState {
            ready,
            ..Default::default()
        }
    }

    /// Every watch has a complete, current view.
    pub fn synced(&self) -> bool {
        self.namespaces_synced.load(Ordering::Acquire)
            && self.policies_synced.load(Ordering::Acquire)
            && self.pull_secrets_synced.load(Ordering::Acquire)
            && !self.kyverno_pending.load(Ordering::Acquire)
    }

    /// Readiness waits for Kyverno's policy kinds to be listed (call before
    /// [`super::watch_kyverno_policies`] starts).
    pub fn await_kyverno_policies(&self) {
        self.set(&self.kyverno_pending, true);
    }

    pub(super) fn set(&self, flag: &AtomicBool, value: bool) {
        flag.store(value, Ordering::Release);
        self.ready.store(self.synced(), Ordering::Release);
    }
}

impl NamespaceLookup for ClusterState {
    fn labels(&self, namespace: &str) -> Option<Arc<BTreeMap<String, String>>> {
        self.namespace_labels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
    }

    fn mode(&self, namespace: &str) -> Result<NamespaceMode, String> {
        if !self.synced() {
            return Err("sigil has not finished syncing ClusterImagePolicies, ImageValidatingPolicies, namespaces and pull secrets from the API server; retry shortly".into());
        }
        let map = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
        // A namespace the watch has not delivered yet was sent to us because
        // the webhook's namespaceSelector matched it: enforce.
        Ok(map
            .get(namespace)
            .copied()
            .unwrap_or(NamespaceMode::Enforce))
    }
}

/// What a watch has delivered, keyed by object name: applies watcher events,
/// swapping in a fresh list only when a (re-)list completes, so a half-done
/// re-list is never published.
pub(super) struct Listing<V> {
    pub(super) current: BTreeMap<String, V>,
    pending: BTreeMap<String, V>,
    pub(super) listed: bool,
    relisting: bool,
}

impl<V> Default for Listing<V> {
    fn default() -> Self {
        Listing {
            current: BTreeMap::new(),
            pending: BTreeMap::new(),
            listed: false,
            relisting: false,
        }
    }
}

impl<V> Listing<V> {
    /// A complete list arrived and no re-list is under way.
    pub(super) fn synced(&self) -> bool {
        self.listed && !self.relisting
    }

    /// Applies one event, storing `value(object)`; true when `current` changed.
    pub(super) fn apply<K: ResourceExt>(
        &mut self,
        event: Event<K>,
        value: impl Fn(K) -> V,
    ) -> bool {
        self.apply_keyed(event, |o| o.name_any(), value)
    }

    /// [`Listing::apply`] keyed by `key` (namespace and name, for a
    /// namespaced kind watched in every namespace).
    pub(super) fn apply_keyed<K: ResourceExt>(
        &mut self,
        event: Event<K>,
        key: impl Fn(&K) -> String,
        value: impl Fn(K) -> V,
    ) -> bool {
        match event {
            Event::Init => {
                self.pending.clear();
                self.relisting = true;
                false
            }
            Event::InitApply(obj) => {
                self.pending.insert(key(&obj), value(obj));
                false
            }
            Event::InitDone => {
                self.current = std::mem::take(&mut self.pending);
                self.listed = true;
                self.relisting = false;
                true
            }
            Event::Apply(obj) => {
                self.current.insert(key(&obj), value(obj));
                true
            }
            Event::Delete(obj) => self.current.remove(&key(&obj)).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::namespaces::label_mode;
    use crate::cluster::namespaces::tests::ns;

    #[test]
    fn listing_publishes_only_complete_lists() {
        let mut l: Listing<NamespaceMode> = Listing::default();
        let mode = |n: k8s_openapi::api::core::v1::Namespace| label_mode(&n);
        assert!(!l.apply(Event::Init, mode));
        assert!(!l.apply(Event::InitApply(ns("a", Some("true"))), mode));
        assert!(
            l.current.is_empty() && !l.listed,
            "a half-done list is not published"
        );
        assert!(l.apply(Event::InitDone, mode));
        assert_eq!(l.current.get("a"), Some(&NamespaceMode::Enforce));
        assert!(l.apply(Event::Apply(ns("b", Some("audit"))), mode));
        assert!(l.apply(Event::Delete(ns("a", None)), mode));
        assert!(
            !l.apply(Event::Delete(ns("zz", None)), mode),
            "deleting an unknown object changes nothing"
        );
        // A re-list replaces everything at once when it completes.
        assert!(!l.apply(Event::Init, mode));
        assert!(!l.apply(Event::InitApply(ns("c", None)), mode));
        assert_eq!(l.current.keys().collect::<Vec<_>>(), vec!["b"]);
        assert!(l.apply(Event::InitDone, mode));
        assert_eq!(l.current.keys().collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(l.current.get("c"), Some(&NamespaceMode::Skip));
    }

    #[test]
    fn not_synced_fails_closed() {
        let state = ClusterState::new(Arc::new(AtomicBool::new(false)));
        assert!(state
            .mode("default")
            .unwrap_err()
            .contains("not finished syncing"));
        state.set(&state.policies_synced, true);
        state.set(&state.namespaces_synced, true);
        assert!(
            !state.ready.load(Ordering::Acquire),
            "pull secrets not synced yet"
        );
        state.set(&state.pull_secrets_synced, true);
        assert!(state.ready.load(Ordering::Acquire));
        assert_eq!(state.mode("unknown"), Ok(NamespaceMode::Enforce));
    }
}
