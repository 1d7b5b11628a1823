//! The TrustRoot watch: keeps the trust store's named roots in step with
//! the cluster and writes each root's `Ready` condition.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Client;

use super::status::StatusWriter;
use super::sync::Listing;
use crate::trust::types::TrustRoot;
use crate::trust::{material_from_spec_value_fetching, TrustStore};

/// Keeps the trust store's named roots in step with the cluster's
/// `TrustRoot` resources and writes their `Ready` condition. Read as dynamic
/// objects, so one that does not fit the schema is reported (and makes the
/// authorities naming it fail closed) without breaking the list.
pub async fn watch_trust_roots(
    client: Client,
    trust: Arc<TrustStore>,
    events: Option<Arc<super::EventRecorder>>,
    leadership: Option<super::Leadership>,
) {
    let resource = ApiResource::erase::<TrustRoot>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let leader_changes = super::status::leader_changes(leadership.as_ref()).map(|()| None);
    let mut status: StatusWriter<TrustRoot> =
        StatusWriter::new(client, "trusted root loaded", events, leadership);
    let watch = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .map(Some);
    let mut stream = futures::stream::select(watch.boxed(), leader_changes.boxed());
    let mut listing: Listing<DynamicObject> = Listing::default();
    while let Some(event) = stream.next().await {
        let Some(event) = event else {
            status.catch_up().await;
            continue;
        };
        match event {
            Ok(event) => {
                if !listing.apply(event, |o| o) || !listing.listed {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "TrustRoot watch failed; keeping the last roots");
                continue;
            }
        }
        let mut roots = BTreeMap::new();
        for (name, o) in &listing.current {
            let spec = o.data.get("spec").cloned().unwrap_or_default();
            roots.insert(
                name.clone(),
                material_from_spec_value_fetching(name, spec).await,
            );
        }
        let results: Vec<(String, Option<i64>, Option<String>)> = roots
            .iter()
            .map(|(name, r)| {
                let generation = listing
                    .current
                    .get(name)
                    .and_then(|o| o.metadata.generation);
                (
                    name.clone(),
                    generation,
                    r.as_ref().err().map(ToString::to_string),
                )
            })
            .collect();
        trust.replace_all(roots);
        status.retain(|name| listing.current.contains_key(name));
        for (name, generation, error) in results {
            status.write(&name, generation, error).await;
        }
    }
}
