//! The Namespace watch: which namespaces are enforced (`include=true`),
//! audited (`include=audit`) or skipped, and the namespaces half of the
//! sync state.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use std::sync::Arc;

use super::sync::{ClusterState, Listing};
use super::watch::{watch_all, INCLUDE_LABEL};
use crate::service::NamespaceMode;

/// The namespace mode from a label value.
pub fn mode_from_label(value: Option<&str>) -> NamespaceMode {
    match value {
        Some("true") => NamespaceMode::Enforce,
        Some("audit") => NamespaceMode::Audit,
        _ => NamespaceMode::Skip,
    }
}

pub(super) fn label_mode(ns: &Namespace) -> NamespaceMode {
    mode_from_label(ns.labels().get(INCLUDE_LABEL).map(String::as_str))
}

/// Keeps `state`'s namespace modes current. Runs until the process stops.
pub async fn watch_namespaces(client: Client, state: Arc<ClusterState>) {
    let api: Api<Namespace> = Api::all(client);
    follow_namespaces(watch_all(api), &state).await;
}

/// Applies namespace watch events to `state` until the stream ends.
async fn follow_namespaces(
    events: impl futures::Stream<Item = Result<Event<Namespace>, watcher::Error>>,
    state: &ClusterState,
) {
    type Labels = Arc<std::collections::BTreeMap<String, String>>;
    let mut listing: Listing<(NamespaceMode, Labels)> = Listing::default();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let was_synced = listing.synced();
                if listing.apply(event, |ns| (label_mode(&ns), Arc::new(ns.labels().clone()))) {
                    *state.namespaces.write().unwrap_or_else(|e| e.into_inner()) = listing
                        .current
                        .iter()
                        .map(|(name, (mode, _))| (name.clone(), *mode))
                        .collect();
                    *state
                        .namespace_labels
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = listing
                        .current
                        .iter()
                        .map(|(name, (_, labels))| (name.clone(), labels.clone()))
                        .collect();
                }
                if listing.synced() && !was_synced {
                    tracing::info!("namespaces synced");
                }
                state.set(&state.namespaces_synced, listing.synced());
            }
            Err(e) => {
                // The watcher retries: it resumes where it stopped, or
                // starts a re-list (an `Init` event, which unsyncs).
                tracing::warn!(error = %e, "namespace watch failed; retrying");
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::service::NamespaceLookup;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn label_values() {
        assert_eq!(mode_from_label(Some("true")), NamespaceMode::Enforce);
        assert_eq!(mode_from_label(Some("audit")), NamespaceMode::Audit);
        assert_eq!(mode_from_label(Some("false")), NamespaceMode::Skip);
        assert_eq!(mode_from_label(None), NamespaceMode::Skip);
    }

    pub(in crate::cluster) fn ns(name: &str, label: Option<&str>) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        if let Some(v) = label {
            n.metadata.labels = Some([(INCLUDE_LABEL.to_string(), v.to_string())].into());
        }
        n
    }

    /// A watch that fails and then resumes without a re-list missed
    /// nothing: sigil stays ready (no cluster change needed to recover).
    /// A re-list makes it not ready until the list completes.
    #[tokio::test]
    async fn readiness_follows_relists_not_watch_errors() {
        let state = ClusterState::new(Arc::new(AtomicBool::new(false)));
        state.set(&state.policies_synced, true);
        state.set(&state.pull_secrets_synced, true);
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(ns("a", Some("true")))),
            Ok(Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
        ]);
        follow_namespaces(events, &state).await;
        assert!(state.synced(), "a watch error alone must not unsync");
        assert!(state.ready.load(Ordering::Acquire));
        assert_eq!(state.mode("a"), Ok(NamespaceMode::Enforce));

        let state = ClusterState::new(Arc::new(AtomicBool::new(false)));
        state.set(&state.policies_synced, true);
        state.set(&state.pull_secrets_synced, true);
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Ok(Event::InitApply(ns("b", None))),
        ]);
        follow_namespaces(events, &state).await;
        assert!(!state.synced(), "a re-list under way is not synced");
        assert!(state
            .mode("b")
            .unwrap_err()
            .contains("not finished syncing"));
    }
}
