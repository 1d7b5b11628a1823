//! What every watcher shares: the Kubernetes client, the watch stream with
//! its backoff, and the names sigil's watches use.

use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use std::path::Path;

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
