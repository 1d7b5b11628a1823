//! Kubernetes integration: watchers (kube-runtime) for ClusterImagePolicies
//! with the Secrets and ConfigMaps they name (`policies`), Namespaces
//! (`namespaces`) and TrustRoots (`trust_roots`); the sync state that
//! readiness follows (`sync`); the one routine that writes `Ready`
//! conditions (`status`); pull-secret credentials (`credentials`). It feeds
//! the same [`crate::policy::PolicyStore`] as the policy directory and
//! implements the small traits the pipeline asks for
//! ([`crate::service::NamespaceLookup`], [`crate::service::CredentialSource`]);
//! the pipeline never depends on this module. It must not verify anything.
//!
//! Fail closed: until both watches have listed everything once, and while
//! any of them is re-listing (the watcher starts a re-list when its watch
//! cannot resume, e.g. after `410 Gone`), the cluster is "not synced" and
//! enforced reviews are denied with that reason. A watch error that the
//! watcher recovers from by resuming where it stopped (no re-list; nothing
//! was missed) does not change readiness: not-ready means a re-list is
//! really under way.

mod credentials;
mod namespaces;
mod policies;
mod status;
mod sync;
mod trust_roots;

use std::path::Path;

use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;

pub use crate::service::{NamespaceLookup, NamespaceMode};
pub use credentials::KubeCredentials;
pub use namespaces::{mode_from_label, watch_namespaces};
pub use policies::{definition, watch_policies};
pub use status::status_json;
pub use sync::ClusterState;
pub use trust_roots::watch_trust_roots;

/// The store source name of cluster policies.
pub const SOURCE: &str = "cluster";
/// policy-controller's namespace label.
pub const INCLUDE_LABEL: &str = "policy.sigstore.dev/include";

/// A client from `kubeconfig`, or the in-cluster / default configuration.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// A watch of every `K` with the watcher's default backoff.
pub(crate) fn watch_all<K>(
    api: Api<K>,
) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}
