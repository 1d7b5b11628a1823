//! What a cluster runs, read once for `sigil check --cluster` (the what-if):
//! its workloads, in pages of bounded bytes, each kept as only what sigil
//! reads of it (images, labels, pull secrets; never the whole object); its
//! namespaces' `include` labels; its ClusterImagePolicies with the key
//! Secrets they name. It only lists and never writes; it does not evaluate
//! anything.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;

use super::namespaces::label_mode;
use super::pages::{PageError, WorkloadPages};
use super::policies::definition;
use crate::check::Listed;
use crate::policy::store::PolicyDefinition;
use crate::policy::ClusterImagePolicy;
use crate::service::NamespaceMode;
use crate::workload::Workload;

/// Objects listed per request.
const PAGE: u32 = 500;

/// The workload kinds listed: (group, version, kind).
pub(super) const WORKLOAD_KINDS: [(&str, &str, &str); 8] = [
    ("", "v1", "Pod"),
    ("", "v1", "ReplicationController"),
    ("apps", "v1", "Deployment"),
    ("apps", "v1", "ReplicaSet"),
    ("apps", "v1", "StatefulSet"),
    ("apps", "v1", "DaemonSet"),
    ("batch", "v1", "Job"),
    ("batch", "v1", "CronJob"),
];

/// What the cluster runs.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Every workload that no listed workload controls (a Deployment, not
    /// its ReplicaSets and Pods, which come from its template), as sigil
    /// read it.
    pub workloads: Vec<Listed>,
    /// The namespaces enforced now (`include=true`).
    pub enforced: BTreeSet<String>,
    /// The cluster's ClusterImagePolicies, `key.secretRef`s inlined.
    pub policies: Vec<PolicyDefinition>,
}

/// Lists what `client`'s cluster runs (in `namespace` only, when given).
/// Secrets named by `key.secretRef` are read from `sigil_namespace`.
pub async fn read_inventory(
    client: &Client,
    namespace: Option<&str>,
    sigil_namespace: &str,
    github_api_hosts: &[String],
) -> Result<Inventory, kube::Error> {
    let mut inventory = Inventory::default();
    for (group, version, kind) in WORKLOAD_KINDS {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let mut pages = WorkloadPages::new(client.clone(), &resource, kind, namespace, PAGE);
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                // An API this cluster does not serve (batch/v1 CronJob
                // before Kubernetes 1.21) holds no workloads.
                Err(e) if e.not_served() => {
                    tracing::warn!(kind, api_version = %resource.api_version, "not served by this cluster; skipped");
                    break;
                }
                Err(PageError::Kube(e)) => return Err(e),
                Err(e) => return Err(kube::Error::Service(e.to_string().into())),
            };
            for read in page {
                if controlled_by_a_workload(&read) {
                    continue;
                }
                let ns = read.meta.namespace.clone().unwrap_or_default();
                if let Some(mut listed) = Listed::of(Ok(read), kind, &resource.api_version) {
                    if let Listed::Unreadable { namespace, .. } = &mut listed {
                        *namespace = ns;
                    }
                    inventory.workloads.push(listed);
                }
            }
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    inventory.enforced = list_all(&namespaces)
        .await?
        .iter()
        .filter(|ns| label_mode(ns) == NamespaceMode::Enforce)
        .map(|ns| ns.name_any())
        .collect();
    let cips: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<ClusterImagePolicy>(&()),
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), sigil_namespace);
    // Without the right to read sigil's Secrets, policies naming one fail
    // closed with that reason, like a missing Secret.
    let secrets: BTreeMap<String, Secret> = list_all(&secrets)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name_any(), s))
        .collect();
    // Without the CRD there are no cluster policies, only the given ones.
    let cips = match list_all(&cips).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        other => other?,
    };
    inventory.policies = cips
        .iter()
        .map(|obj| definition(obj, &secrets, sigil_namespace, github_api_hosts))
        .collect();
    Ok(inventory)
}

/// Every object `api` lists, page by page.
async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// True when a listed workload kind controls `obj` (its template says
/// what `obj` runs, and the owner is checked instead).
pub(super) fn controlled_by_a_workload(obj: &Workload) -> bool {
    obj.meta
        .controller_kind
        .as_deref()
        .is_some_and(|kind| WORKLOAD_KINDS.iter().any(|(_, _, k)| *k == kind))
}
