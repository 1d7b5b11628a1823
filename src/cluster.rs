//! Kubernetes integration: watches ClusterImagePolicies and Namespaces with
//! `kube::runtime`, feeds the same [`PolicyStore`] as the policy directory,
//! writes each policy's `Ready` condition, and tells the webhook which
//! namespaces are enforced.
//!
//! Fail closed: until both watches have listed everything once, and while
//! any of them is re-listing (the watcher starts a re-list when its watch
//! cannot resume, e.g. after `410 Gone`), the cluster is "not synced" and
//! enforced reviews are denied with that reason. A watch error that the
//! watcher recovers from by resuming where it stopped (no re-list; nothing
//! was missed) does not change readiness: not-ready means a re-list is
//! really under way.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::policy::files::spec_from_value;
use crate::policy::store::{LoadedPolicy, PolicyDefinition};
use crate::policy::{ClusterImagePolicy, ClusterImagePolicySpec, PolicyError, PolicyStore};
use crate::registry::{parse_docker_config, Credentials};
use crate::service::CredentialSource;
use crate::trust::types::TrustRoot;
use crate::trust::{material_from_spec_value_fetching, TrustStore};

/// The store source name of cluster policies.
pub const SOURCE: &str = "cluster";
/// policy-controller's namespace label.
pub const INCLUDE_LABEL: &str = "policy.sigstore.dev/include";

/// What a namespace's label asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceMode {
    /// `include=true`: enforce.
    Enforce,
    /// `include=audit`: admit and log violations.
    Audit,
    /// No label (or another value): admit untouched.
    Skip,
}

/// The namespace mode from a label value.
pub fn mode_from_label(value: Option<&str>) -> NamespaceMode {
    match value {
        Some("true") => NamespaceMode::Enforce,
        Some("audit") => NamespaceMode::Audit,
        _ => NamespaceMode::Skip,
    }
}

/// The cluster as the webhook sees it.
pub trait NamespaceLookup: Send + Sync {
    /// The mode of `namespace`, or `Err(reason)` while not synced.
    fn mode(&self, namespace: &str) -> Result<NamespaceMode, String>;
}

/// Namespace labels and sync state, shared by the watchers and the webhook.
#[derive(Default)]
pub struct ClusterState {
    namespaces: RwLock<BTreeMap<String, NamespaceMode>>,
    namespaces_synced: AtomicBool,
    policies_synced: AtomicBool,
    ready: Arc<AtomicBool>,
}

impl ClusterState {
    /// A state whose readiness is mirrored into `ready` (the `/readyz` flag).
    pub fn new(ready: Arc<AtomicBool>) -> Self {
        ClusterState {
            ready,
            ..Default::default()
        }
    }

    /// Both watches have a complete, current view.
    pub fn synced(&self) -> bool {
        self.namespaces_synced.load(Ordering::Acquire)
            && self.policies_synced.load(Ordering::Acquire)
    }

    fn set(&self, flag: &AtomicBool, value: bool) {
        flag.store(value, Ordering::Release);
        self.ready.store(self.synced(), Ordering::Release);
    }
}

impl NamespaceLookup for ClusterState {
    fn mode(&self, namespace: &str) -> Result<NamespaceMode, String> {
        if !self.synced() {
            return Err("sigil has not finished syncing ClusterImagePolicies and namespaces from the API server; retry shortly".into());
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

fn label_mode(ns: &Namespace) -> NamespaceMode {
    mode_from_label(ns.labels().get(INCLUDE_LABEL).map(String::as_str))
}

/// What a watch has delivered, keyed by object name: applies watcher events,
/// swapping in a fresh list only when a (re-)list completes, so a half-done
/// re-list is never published.
struct Listing<V> {
    current: BTreeMap<String, V>,
    pending: BTreeMap<String, V>,
    listed: bool,
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
    fn synced(&self) -> bool {
        self.listed && !self.relisting
    }

    /// Applies one event, storing `value(object)`; true when `current` changed.
    fn apply<K: ResourceExt>(&mut self, event: Event<K>, value: impl Fn(K) -> V) -> bool {
        match event {
            Event::Init => {
                self.pending.clear();
                self.relisting = true;
                false
            }
            Event::InitApply(obj) => {
                self.pending.insert(obj.name_any(), value(obj));
                false
            }
            Event::InitDone => {
                self.current = std::mem::take(&mut self.pending);
                self.listed = true;
                self.relisting = false;
                true
            }
            Event::Apply(obj) => {
                self.current.insert(obj.name_any(), value(obj));
                true
            }
            Event::Delete(obj) => self.current.remove(&obj.name_any()).is_some(),
        }
    }
}

/// Keeps `state`'s namespace modes current. Runs until the process stops.
pub async fn watch_namespaces(client: Client, state: Arc<ClusterState>) {
    let api: Api<Namespace> = Api::all(client);
    follow_namespaces(watcher(api), &state).await;
}

/// Applies namespace watch events to `state` until the stream ends.
async fn follow_namespaces(
    events: impl futures::Stream<Item = Result<Event<Namespace>, watcher::Error>>,
    state: &ClusterState,
) {
    let mut listing: Listing<NamespaceMode> = Listing::default();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let was_synced = listing.synced();
                if listing.apply(event, |ns| label_mode(&ns)) {
                    *state.namespaces.write().unwrap_or_else(|e| e.into_inner()) =
                        listing.current.clone();
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

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

/// The policy definition of one ClusterImagePolicy object, with every
/// `key.secretRef` replaced by the key it names (a Secret in sigil's own
/// namespace holding exactly one entry).
pub fn definition(
    obj: &DynamicObject,
    secrets: &BTreeMap<String, Secret>,
    namespace: &str,
) -> PolicyDefinition {
    let spec =
        spec_from_value(obj.data.get("spec").cloned().unwrap_or_default()).and_then(|mut spec| {
            let globs = spec
                .images
                .iter()
                .map(|i| i.glob.clone())
                .collect::<Vec<_>>();
            inline_secret_keys(&mut spec, secrets, namespace).map_err(|e| (e, globs))?;
            Ok(spec)
        });
    PolicyDefinition {
        name: obj.name_any(),
        spec,
    }
}

fn inline_secret_keys(
    spec: &mut ClusterImagePolicySpec,
    secrets: &BTreeMap<String, Secret>,
    namespace: &str,
) -> Result<(), PolicyError> {
    for (i, authority) in spec.authorities.iter_mut().enumerate() {
        let key = authority
            .key
            .as_mut()
            .map(|k| (k, format!("spec.authorities[{i}].key")));
        let ca = authority
            .keyless
            .as_mut()
            .and_then(|k| k.ca_cert.as_mut())
            .map(|k| (k, format!("spec.authorities[{i}].keyless.ca-cert")));
        for (key, path) in key.into_iter().chain(ca) {
            let Some(secret_ref) = key.secret_ref.take() else {
                continue;
            };
            let field = format!("{path}.secretRef");
            key.data = Some(secret_entry(secret_ref, secrets, namespace, &field)?);
        }
    }
    Ok(())
}

/// The one entry of a Secret in sigil's namespace (a PEM key or CA).
fn secret_entry(
    secret_ref: k8s_openapi::api::core::v1::SecretReference,
    secrets: &BTreeMap<String, Secret>,
    namespace: &str,
    field: &str,
) -> Result<String, PolicyError> {
    let fail = |message: String| PolicyError {
        field: field.to_string(),
        message,
    };
    let name = secret_ref.name.unwrap_or_default();
    if let Some(ns) = secret_ref
        .namespace
        .filter(|ns| !ns.is_empty() && ns != namespace)
    {
        return Err(fail(format!(
            "Secret {ns}/{name} is outside sigil's namespace {namespace}"
        )));
    }
    let secret = secrets
        .get(&name)
        .ok_or_else(|| fail(format!("Secret {namespace}/{name} not found")))?;
    let mut entries: Vec<Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(_, v)| v.0.clone())
        .collect();
    entries.extend(
        secret
            .string_data
            .iter()
            .flatten()
            .map(|(_, v)| v.clone().into_bytes()),
    );
    if entries.len() != 1 {
        return Err(fail(format!(
            "Secret {namespace}/{name} must hold exactly one entry (the PEM key or certificate), found {}",
            entries.len()
        )));
    }
    String::from_utf8(entries.remove(0))
        .map_err(|_| fail(format!("Secret {namespace}/{name} is not text")))
}

enum Change {
    Policy(Result<Event<DynamicObject>, watcher::Error>),
    Secret(Result<Event<Secret>, watcher::Error>),
    ConfigMap(Result<Event<ConfigMap>, watcher::Error>),
}

/// Keeps the store's cluster policies current and writes their status.
/// ClusterImagePolicies are read as dynamic objects, so one that does not
/// fit the schema becomes an invalid policy instead of breaking the list.
/// Secrets in sigil's `namespace` are watched too, so a rotated
/// `key.secretRef` key recompiles the policies that use it.
pub async fn watch_policies(
    client: Client,
    store: Arc<PolicyStore>,
    state: Arc<ClusterState>,
    namespace: String,
) {
    let resource = ApiResource::erase::<ClusterImagePolicy>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let typed: Api<ClusterImagePolicy> = Api::all(client.clone());
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let configmaps_api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let policies = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .map(Change::Policy);
    let secret_events = watcher(secrets_api).map(Change::Secret);
    let configmap_events = watcher(configmaps_api).map(Change::ConfigMap);
    let mut stream = futures::stream::select_all([
        policies.boxed(),
        secret_events.boxed(),
        configmap_events.boxed(),
    ]);

    let remote = crate::policy::sources::RemotePrograms::default();
    let mut policies: Listing<DynamicObject> = Listing::default();
    let mut secrets: Listing<Secret> = Listing::default();
    let mut configmaps: Listing<ConfigMap> = Listing::default();
    let mut written: HashMap<String, (Option<i64>, Option<String>)> = HashMap::new();
    while let Some(change) = stream.next().await {
        let changed = match change {
            Change::Policy(Ok(event)) => policies.apply(event, |o| o),
            Change::Secret(Ok(event)) => secrets.apply(event, |s| s),
            Change::ConfigMap(Ok(event)) => configmaps.apply(event, |c| c),
            Change::Policy(Err(e)) | Change::Secret(Err(e)) | Change::ConfigMap(Err(e)) => {
                // Retried by the watcher: resumed, or re-listed (`Init`).
                tracing::warn!(error = %e, "policy, secret or ConfigMap watch failed; retrying");
                false
            }
        };
        if !(policies.synced() && secrets.synced() && configmaps.synced()) {
            // A (re-)list is under way: the view may be missing changes.
            state.set(&state.policies_synced, false);
            continue;
        }
        if !changed && state.policies_synced.load(Ordering::Acquire) {
            continue;
        }
        let current = &policies.current;
        written.retain(|name, _| current.contains_key(name));
        let mut defs: Vec<PolicyDefinition> = current
            .values()
            .map(|o| definition(o, &secrets.current, &namespace))
            .collect();
        let programs: crate::policy::sources::ConfigMaps = configmaps
            .current
            .iter()
            .map(|(name, cm)| {
                (
                    name.clone(),
                    cm.data.clone().unwrap_or_default().into_iter().collect(),
                )
            })
            .collect();
        remote.resolve(&mut defs, Some(&programs)).await;
        let loaded = store.replace_source(SOURCE, &defs);
        state.set(&state.policies_synced, true);
        for policy in &loaded {
            let generation = current
                .get(policy.name())
                .and_then(|o| o.metadata.generation);
            let error = policy.error().map(|e| e.to_string());
            let key = (generation, error.clone());
            if written.get(policy.name()) == Some(&key) {
                continue;
            }
            match write_status(&typed, policy, generation).await {
                Ok(()) => {
                    written.insert(policy.name().to_string(), key);
                }
                Err(e) => tracing::warn!(policy = policy.name(), error = %e, "cannot write status"),
            }
        }
    }
}

/// Keeps the trust store's named roots in step with the cluster's
/// `TrustRoot` resources and writes their `Ready` condition. Read as dynamic
/// objects, so one that does not fit the schema is reported (and makes the
/// authorities naming it fail closed) without breaking the list.
pub async fn watch_trust_roots(client: Client, trust: Arc<TrustStore>) {
    let resource = ApiResource::erase::<TrustRoot>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let typed: Api<TrustRoot> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Listing<DynamicObject> = Listing::default();
    let mut written: HashMap<String, (Option<i64>, Option<String>)> = HashMap::new();
    while let Some(event) = stream.next().await {
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
        written.retain(|name, _| listing.current.contains_key(name));
        for (name, generation, error) in results {
            let key = (generation, error.clone());
            if written.get(&name) == Some(&key) {
                continue;
            }
            let status = condition(error.as_deref(), "trusted root loaded", generation);
            match typed
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
            {
                Ok(_) => {
                    written.insert(name, key);
                }
                Err(e) => tracing::warn!(trust_root = %name, error = %e, "cannot write status"),
            }
        }
    }
}

/// Registry credentials from pull secrets, read from the API server and
/// cached for a few seconds. Only Secrets and the ServiceAccount of the
/// request's own namespace are read.
pub struct KubeCredentials {
    client: Client,
    cache: moka::future::Cache<(String, Vec<String>, Option<String>), Credentials>,
}

impl KubeCredentials {
    /// A source reading through `client`.
    pub fn new(client: Client) -> Self {
        KubeCredentials {
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(10))
                .build(),
        }
    }

    async fn load(
        &self,
        namespace: &str,
        names: &[String],
        service_account: Option<&str>,
    ) -> Credentials {
        let mut all: Vec<String> = names.to_vec();
        if let Some(sa) = service_account {
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            match api.get_opt(sa).await {
                Ok(Some(sa)) => all.extend(
                    sa.image_pull_secrets
                        .iter()
                        .flatten()
                        .map(|r| r.name.clone()),
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(namespace, service_account = sa, error = %e, "cannot read service account")
                }
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut auths = HashMap::new();
        for name in all {
            match secrets.get_opt(&name).await {
                Ok(Some(secret)) => {
                    for key in [".dockerconfigjson", ".dockercfg"] {
                        if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
                            match parse_docker_config(&bytes.0) {
                                Ok(found) => auths.extend(found),
                                Err(e) => {
                                    tracing::warn!(namespace, secret = %name, error = %e, "unreadable pull secret")
                                }
                            }
                        }
                    }
                }
                Ok(None) => tracing::warn!(namespace, secret = %name, "pull secret not found"),
                Err(e) => {
                    tracing::warn!(namespace, secret = %name, error = %e, "cannot read pull secret")
                }
            }
        }
        Credentials::from_auths(auths)
    }
}

#[async_trait::async_trait]
impl CredentialSource for KubeCredentials {
    async fn credentials(
        &self,
        namespace: &str,
        secret_names: &[String],
        service_account: Option<&str>,
    ) -> Credentials {
        let key = (
            namespace.to_string(),
            secret_names.to_vec(),
            service_account.map(str::to_string),
        );
        self.cache
            .get_with(key, self.load(namespace, secret_names, service_account))
            .await
    }
}

/// The `status` a policy should carry.
pub fn status_for(policy: &LoadedPolicy, generation: Option<i64>, now: &str) -> serde_json::Value {
    let error = policy
        .error()
        .map(|e| format!("{}: {}", e.field, e.message));
    status_json(
        error.as_deref(),
        "policy compiled and in force",
        generation,
        now,
    )
}

fn condition(error: Option<&str>, ok_message: &str, generation: Option<i64>) -> serde_json::Value {
    status_json(error, ok_message, generation, &crate::audit::now_rfc3339())
}

fn status_json(
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

async fn write_status(
    api: &Api<ClusterImagePolicy>,
    policy: &LoadedPolicy,
    generation: Option<i64>,
) -> Result<(), kube::Error> {
    let status = status_for(policy, generation, &crate::audit::now_rfc3339());
    api.patch_status(
        policy.name(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_cert_secret_refs_are_inlined_or_named_when_missing() {
        let resource = ApiResource::erase::<ClusterImagePolicy>(&());
        let obj = |secret: &str| {
            let mut o = DynamicObject::new("p", &resource);
            o.data = json!({"spec": {
                "images": [{"glob": "**"}],
                "authorities": [{"keyless": {
                    "ca-cert": {"secretRef": {"name": secret}},
                    "identities": [{"issuer": "i", "subject": "s"}],
                }}],
            }});
            o
        };
        let mut secret = Secret::default();
        secret.metadata.name = Some("ca".into());
        secret.string_data = Some(BTreeMap::from([("ca.pem".to_string(), "PEM".to_string())]));
        let secrets = BTreeMap::from([("ca".to_string(), secret)]);
        let def = definition(&obj("ca"), &secrets, "sigil-system");
        let spec = def.spec.unwrap();
        let ca = spec.authorities[0]
            .keyless
            .as_ref()
            .unwrap()
            .ca_cert
            .as_ref()
            .unwrap();
        assert_eq!(ca.data.as_deref(), Some("PEM"));
        assert!(ca.secret_ref.is_none());
        let def = definition(&obj("gone"), &secrets, "sigil-system");
        let (e, _) = def.spec.unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].keyless.ca-cert.secretRef");
        assert_eq!(e.message, "Secret sigil-system/gone not found");
    }

    #[test]
    fn label_values() {
        assert_eq!(mode_from_label(Some("true")), NamespaceMode::Enforce);
        assert_eq!(mode_from_label(Some("audit")), NamespaceMode::Audit);
        assert_eq!(mode_from_label(Some("false")), NamespaceMode::Skip);
        assert_eq!(mode_from_label(None), NamespaceMode::Skip);
    }

    fn ns(name: &str, label: Option<&str>) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        if let Some(v) = label {
            n.metadata.labels = Some([(INCLUDE_LABEL.to_string(), v.to_string())].into());
        }
        n
    }

    #[test]
    fn listing_publishes_only_complete_lists() {
        let mut l: Listing<NamespaceMode> = Listing::default();
        let mode = |n: Namespace| label_mode(&n);
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

    /// A watch that fails and then resumes without a re-list missed
    /// nothing: sigil stays ready (no cluster change needed to recover).
    /// A re-list makes it not ready until the list completes.
    #[tokio::test]
    async fn readiness_follows_relists_not_watch_errors() {
        let state = ClusterState::new(Arc::new(AtomicBool::new(false)));
        state.set(&state.policies_synced, true);
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

    #[test]
    fn not_synced_fails_closed() {
        let state = ClusterState::new(Arc::new(AtomicBool::new(false)));
        assert!(state
            .mode("default")
            .unwrap_err()
            .contains("not finished syncing"));
        state.set(&state.policies_synced, true);
        state.set(&state.namespaces_synced, true);
        assert!(state.ready.load(Ordering::Acquire));
        assert_eq!(state.mode("unknown"), Ok(NamespaceMode::Enforce));
    }
}
