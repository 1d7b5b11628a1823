//! Registry credentials from pull secrets (the pod's `imagePullSecrets`,
//! its service account's, the authorities' `signaturePullSecrets`), served
//! from a watched cache: never a request to the apiserver per review.
//!
//! Three watches feed it: Secrets of type `kubernetes.io/dockerconfigjson`
//! and of type `kubernetes.io/dockercfg` (the only types the kubelet pulls
//! with; a field selector on `type`, so other Secrets are never sent to
//! sigil), and ServiceAccounts (their `imagePullSecrets` names). What is
//! kept is the parsed credentials, not the objects, weighed in bytes under
//! a budget in total and a share per namespace, so that no namespace can
//! push another's secrets out. A lookup reads the request's own namespace
//! only. A name that does not exist is skipped, as the kubelet skips it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use oci_client::secrets::RegistryAuth;

use super::sync::ClusterState;
use crate::registry::{parse_docker_config, Credentials};
use crate::service::CredentialSource;
use crate::workload::MAX_PULL_SECRETS;

/// Default of `--pull-secret-cache-memory`.
pub use crate::limits::DEFAULT_PULL_SECRET_CACHE_BYTES as DEFAULT_CACHE_BYTES;
/// Registries read from one pull secret.
pub use crate::limits::MAX_REGISTRIES_PER_SECRET;
/// A pull secret's docker config larger than this is not used.
pub use crate::limits::MAX_SECRET_BYTES;
/// The share of the cache one namespace's secrets may hold: a
/// thirty-second of it (1 MiB by default, thousands of ordinary secrets).
use crate::limits::PULL_SECRET_SHARE_DIVISOR as NAMESPACE_SHARE_DIVISOR;
/// Objects per list page: a page of Secrets holds their data (at most
/// about 1 MiB each), so pages are small.
const PAGE: u32 = 25;

/// One usable pull secret as cached. A secret that cannot be used (too
/// large, unreadable, or over a budget) is not kept at all: it is skipped
/// like a missing one (and logged), and holds nothing, so that no number
/// of them can fill the cache.
#[derive(Debug, Clone)]
struct Cached {
    auths: Arc<HashMap<String, RegistryAuth>>,
    weight: u64,
    generation: u64,
}

/// One service account's `imagePullSecrets` names as cached.
#[derive(Debug, Clone)]
struct Account {
    names: Vec<String>,
    weight: u64,
    generation: u64,
}

/// The secrets and service accounts, with their weights: both charged to
/// their namespace's share and to the total.
#[derive(Default)]
struct Store {
    /// (namespace, name) → secret.
    secrets: HashMap<(String, String), Cached>,
    /// (namespace, name) → its `imagePullSecrets` names.
    accounts: HashMap<(String, String), Account>,
    /// Bytes held, in total and per namespace.
    bytes: u64,
    per_namespace: HashMap<String, u64>,
}

impl Store {
    fn remove_secret(&mut self, key: &(String, String)) {
        if let Some(old) = self.secrets.remove(key) {
            self.release(&key.0, old.weight);
        }
    }

    fn remove_account(&mut self, key: &(String, String)) {
        if let Some(old) = self.accounts.remove(key) {
            self.release(&key.0, old.weight);
        }
    }

    /// Whether `weight` more bytes of `namespace` fit its share (`share`)
    /// and the total (`budget`); the reason when not.
    fn room(&self, namespace: &str, weight: u64, share: u64, budget: u64) -> Result<(), String> {
        let held = self.per_namespace.get(namespace).copied().unwrap_or(0);
        if held + weight > share {
            return Err(format!(
                "its namespace's share of the pull-secret cache ({share} bytes) is used up"
            ));
        }
        if self.bytes + weight > budget {
            return Err(format!(
                "the pull-secret cache is full (--pull-secret-cache-memory {budget})"
            ));
        }
        Ok(())
    }

    fn release(&mut self, namespace: &str, weight: u64) {
        self.bytes = self.bytes.saturating_sub(weight);
        if let Some(n) = self.per_namespace.get_mut(namespace) {
            *n = n.saturating_sub(weight);
            if *n == 0 {
                self.per_namespace.remove(namespace);
            }
        }
    }

    fn charge(&mut self, namespace: &str, weight: u64) {
        self.bytes += weight;
        *self.per_namespace.entry(namespace.to_string()).or_default() += weight;
    }
}

/// Registry credentials from pull secrets, served from watched caches.
pub struct KubeCredentials {
    store: RwLock<Store>,
    budget: u64,
}

impl KubeCredentials {
    /// An empty cache of at most `budget` bytes; [`KubeCredentials::start`]
    /// fills it.
    pub fn new(budget: u64) -> Self {
        KubeCredentials {
            store: RwLock::new(Store::default()),
            budget: budget.max(1 << 20),
        }
    }

    /// Starts the three watches; `state` is told when all have listed
    /// (readiness waits for it: until then enforced reviews are denied).
    pub fn start(self: &Arc<Self>, client: Client, state: Arc<ClusterState>) {
        let synced = Arc::new(SyncedWatches::default());
        for secret_type in ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"] {
            let api: Api<Secret> = Api::all(client.clone());
            let config = watcher::Config::default()
                .fields(&format!("type={secret_type}"))
                .page_size(PAGE);
            let events = watcher::watcher(api, config).default_backoff();
            let (this, state, synced) = (self.clone(), state.clone(), synced.clone());
            let index = usize::from(secret_type.ends_with("dockercfg"));
            tokio::spawn(async move {
                let mut events = std::pin::pin!(events);
                let mut generation = 0;
                while let Some(event) = events.next().await {
                    match event {
                        Ok(event) => {
                            if let Some(done) = this.apply_secret(event, &mut generation) {
                                synced.set(index, done, &state);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "pull secret watch failed; retrying"),
                    }
                }
            });
        }
        let api: Api<ServiceAccount> = Api::all(client);
        let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let this = self.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut generation = 0;
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        if let Some(done) = this.apply_account(event, &mut generation) {
                            synced.set(2, done, &state);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "service account watch failed; retrying"),
                }
            }
        });
    }

    /// Applies one Secret event; `Some(listed)` when the sync state changes.
    fn apply_secret(&self, event: Event<Secret>, generation: &mut u64) -> Option<bool> {
        match event {
            Event::Init => {
                // A re-list: what it does not deliver again is gone at its end.
                *generation += 1;
                Some(false)
            }
            Event::InitApply(secret) | Event::Apply(secret) => {
                self.put_secret(&secret, *generation);
                None
            }
            Event::InitDone => {
                let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
                let stale: Vec<(String, String)> = store
                    .secrets
                    .iter()
                    .filter(|(_, c)| c.generation < *generation)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in stale {
                    store.remove_secret(&key);
                }
                Some(true)
            }
            Event::Delete(secret) => {
                let key = (secret.namespace().unwrap_or_default(), secret.name_any());
                self.store
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove_secret(&key);
                None
            }
        }
    }

    /// Parses and stores one Secret, within the budgets.
    fn put_secret(&self, secret: &Secret, generation: u64) {
        let namespace = secret.namespace().unwrap_or_default();
        let name = secret.name_any();
        let key = (namespace.clone(), name.clone());
        let data = secret.data.as_ref().and_then(|d| {
            d.get(".dockerconfigjson")
                .or_else(|| d.get(".dockercfg"))
                .map(|b| b.0.as_slice())
        });
        let parsed: Result<HashMap<String, RegistryAuth>, String> = match data {
            None => Err("it has no .dockerconfigjson or .dockercfg entry".into()),
            Some(d) if d.len() > MAX_SECRET_BYTES => Err(format!(
                "its docker config is {} bytes, over sigil's limit of {MAX_SECRET_BYTES}",
                d.len()
            )),
            Some(d) => parse_docker_config(d).and_then(|auths| {
                if auths.len() > MAX_REGISTRIES_PER_SECRET {
                    Err(format!(
                        "it names {} registries, over sigil's limit of {MAX_REGISTRIES_PER_SECRET}",
                        auths.len()
                    ))
                } else {
                    Ok(auths)
                }
            }),
        };
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        store.remove_secret(&key);
        let share = self.share().max(MAX_SECRET_BYTES as u64);
        let admitted = parsed.and_then(|auths| {
            let weight = (namespace.len() + name.len() + 128) as u64
                + auths
                    .iter()
                    .map(|(h, a)| (h.len() + auth_len(a) + 96) as u64)
                    .sum::<u64>();
            store
                .room(&namespace, weight, share, self.budget)
                .map(|()| (auths, weight))
        });
        match admitted {
            Ok((auths, weight)) => {
                store.charge(&namespace, weight);
                store.secrets.insert(
                    key,
                    Cached {
                        auths: Arc::new(auths),
                        weight,
                        generation,
                    },
                );
            }
            Err(reason) => {
                crate::metrics::global().pull_secret_refused();
                tracing::warn!(namespace = %namespace, secret = %name, %reason, "pull secret not used");
            }
        }
    }

    /// One namespace's share of the cache.
    fn share(&self) -> u64 {
        self.budget / NAMESPACE_SHARE_DIVISOR
    }

    /// Stores one service account's pull-secret names within its
    /// namespace's share (over it: not kept, so its pull secrets are not
    /// used and its images fail closed, logged and counted).
    fn put_account(&self, sa: &ServiceAccount, generation: u64) {
        let mut names: Vec<String> = Vec::new();
        for r in sa.image_pull_secrets.iter().flatten() {
            if !r.name.is_empty() && !names.contains(&r.name) {
                names.push(r.name.clone());
            }
            // One more than the cap is enough to tell it was over.
            if names.len() > MAX_PULL_SECRETS {
                break;
            }
        }
        let key = (sa.namespace().unwrap_or_default(), sa.name_any());
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        store.remove_account(&key);
        if names.is_empty() {
            return;
        }
        let weight = (key.0.len() + key.1.len() + 128) as u64
            + names.iter().map(|n| (n.len() + 32) as u64).sum::<u64>();
        match store.room(
            &key.0,
            weight,
            self.share().max(MAX_SECRET_BYTES as u64),
            self.budget,
        ) {
            Ok(()) => {
                store.charge(&key.0, weight);
                store.accounts.insert(
                    key,
                    Account {
                        names,
                        weight,
                        generation,
                    },
                );
            }
            Err(reason) => {
                crate::metrics::global().pull_secret_refused();
                tracing::warn!(namespace = %key.0, service_account = %key.1, %reason, "service account's pull secrets not used");
            }
        }
    }

    /// Applies one ServiceAccount event; `Some(listed)` when the sync
    /// state changes. A re-list replaces what it does not deliver again
    /// at its end, as for Secrets.
    fn apply_account(&self, event: Event<ServiceAccount>, generation: &mut u64) -> Option<bool> {
        match event {
            Event::Init => {
                *generation += 1;
                Some(false)
            }
            Event::InitApply(sa) | Event::Apply(sa) => {
                self.put_account(&sa, *generation);
                None
            }
            Event::InitDone => {
                let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
                let stale: Vec<(String, String)> = store
                    .accounts
                    .iter()
                    .filter(|(_, a)| a.generation < *generation)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in stale {
                    store.remove_account(&key);
                }
                Some(true)
            }
            Event::Delete(sa) => {
                let key = (sa.namespace().unwrap_or_default(), sa.name_any());
                self.store
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove_account(&key);
                None
            }
        }
    }

    /// What the cache holds, weighed in bytes.
    pub fn bytes(&self) -> u64 {
        self.store.read().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// Pull secrets cached (usable or not).
    pub fn secrets(&self) -> usize {
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .secrets
            .len()
    }

    /// The credentials of `names` and `service_account`'s pull secrets in
    /// `namespace`, from the cache.
    fn lookup(
        &self,
        namespace: &str,
        names: &[String],
        service_account: Option<&str>,
    ) -> Result<Credentials, String> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Some(sa) = service_account {
            if let Some(account) = store.accounts.get(&(namespace.to_string(), sa.to_string())) {
                let listed = &account.names;
                if listed.len() > MAX_PULL_SECRETS {
                    return Err(format!(
                        "serviceAccount {sa:?} lists more than {MAX_PULL_SECRETS} imagePullSecrets, over sigil's limit of {MAX_PULL_SECRETS} per workload"
                    ));
                }
                for n in listed {
                    if !all.contains(&n.as_str()) {
                        all.push(n);
                    }
                }
            }
        }
        if all.len() > 2 * MAX_PULL_SECRETS {
            return Err(format!(
                "the workload, its serviceAccount and the policies' signaturePullSecrets name {} pull secrets, over sigil's limit of {}",
                all.len(),
                2 * MAX_PULL_SECRETS
            ));
        }
        let mut auths = HashMap::new();
        for name in all {
            if let Some(found) = store
                .secrets
                .get(&(namespace.to_string(), name.to_string()))
            {
                auths.extend(found.auths.iter().map(|(h, a)| (h.clone(), a.clone())));
            }
        }
        Ok(Credentials::from_auths(auths))
    }
}

fn auth_len(a: &RegistryAuth) -> usize {
    match a {
        RegistryAuth::Anonymous => 0,
        RegistryAuth::Basic(u, p) => u.len() + p.len(),
        RegistryAuth::Bearer(t) => t.len(),
    }
}

/// Which of the three watches have listed.
#[derive(Default)]
struct SyncedWatches(std::sync::Mutex<[bool; 3]>);

impl SyncedWatches {
    fn set(&self, index: usize, listed: bool, state: &ClusterState) {
        let mut flags = self.0.lock().unwrap_or_else(|e| e.into_inner());
        flags[index] = listed;
        let all = flags.iter().all(|f| *f);
        state.set(&state.pull_secrets_synced, all);
        if all {
            tracing::info!("pull secrets and service accounts synced");
        }
    }
}

#[async_trait::async_trait]
impl CredentialSource for KubeCredentials {
    async fn credentials(
        &self,
        namespace: &str,
        secret_names: &[String],
        service_account: Option<&str>,
    ) -> Result<Credentials, String> {
        self.lookup(namespace, secret_names, service_account)
    }

    fn cache_bytes(&self) -> Option<u64> {
        Some(self.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(ns: &str, name: &str, config: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.type_ = Some("kubernetes.io/dockerconfigjson".into());
        s.data = Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(config.as_bytes().to_vec()),
            )]
            .into(),
        );
        s
    }

    fn account(ns: &str, name: &str, secrets: &[&str]) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.namespace = Some(ns.into());
        sa.metadata.name = Some(name.into());
        sa.image_pull_secrets = Some(
            secrets
                .iter()
                .map(|n| k8s_openapi::api::core::v1::LocalObjectReference {
                    name: n.to_string(),
                })
                .collect(),
        );
        sa
    }

    const CONFIG: &str = r#"{"auths":{"reg.example":{"username":"u","password":"p"}}}"#;

    #[test]
    fn lookups_read_the_requests_namespace_only_and_skip_missing_names() {
        let c = KubeCredentials::new(DEFAULT_CACHE_BYTES);
        let mut g = 0;
        c.apply_secret(Event::InitApply(secret("team-a", "pull", CONFIG)), &mut g);
        c.apply_secret(Event::InitDone, &mut g);
        let mut ga = 0;
        c.apply_account(
            Event::InitApply(account("team-a", "default", &["pull"])),
            &mut ga,
        );
        c.apply_account(Event::InitDone, &mut ga);
        let with = c
            .lookup("team-a", &["pull".into(), "missing".into()], None)
            .unwrap();
        assert!(!with.is_empty());
        // Through the service account only.
        let via_sa = c.lookup("team-a", &[], Some("default")).unwrap();
        assert_eq!(via_sa.fingerprint(), with.fingerprint());
        // Another namespace naming the same secret gets nothing.
        assert!(c
            .lookup("team-b", &["pull".into()], Some("default"))
            .unwrap()
            .is_empty());
        // Deleted: gone.
        c.apply_secret(Event::Delete(secret("team-a", "pull", CONFIG)), &mut g);
        assert!(c
            .lookup("team-a", &["pull".into()], None)
            .unwrap()
            .is_empty());
        c.apply_account(
            Event::Delete(account("team-a", "default", &["pull"])),
            &mut ga,
        );
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn a_relist_drops_what_it_does_not_deliver_again() {
        let c = KubeCredentials::new(DEFAULT_CACHE_BYTES);
        let mut g = 0;
        c.apply_secret(Event::Init, &mut g);
        c.apply_secret(Event::InitApply(secret("a", "one", CONFIG)), &mut g);
        c.apply_secret(Event::InitApply(secret("a", "two", CONFIG)), &mut g);
        c.apply_secret(Event::InitDone, &mut g);
        assert_eq!(c.secrets(), 2);
        c.apply_secret(Event::Init, &mut g);
        c.apply_secret(Event::InitApply(secret("a", "two", CONFIG)), &mut g);
        // Until the re-list is done, what was there still serves.
        assert!(!c.lookup("a", &["one".into()], None).unwrap().is_empty());
        c.apply_secret(Event::InitDone, &mut g);
        assert_eq!(c.secrets(), 1);
        assert!(c.lookup("a", &["one".into()], None).unwrap().is_empty());
    }

    #[test]
    fn budgets_keep_one_namespace_from_pushing_out_the_others() {
        // 1 MiB in all (the minimum), 64 KiB per namespace.
        let c = KubeCredentials::new(0);
        let mut g = 0;
        let big = format!(
            r#"{{"auths":{{"reg.example":{{"username":"u","password":"{}"}}}}}}"#,
            "p".repeat(20_000)
        );
        for i in 0..10 {
            c.apply_secret(
                Event::Apply(secret("greedy", &format!("s{i}"), &big)),
                &mut g,
            );
        }
        let usable = (0..10)
            .filter(|i| {
                !c.lookup("greedy", &[format!("s{i}")], None)
                    .unwrap()
                    .is_empty()
            })
            .count();
        assert_eq!(usable, 3, "64 KiB hold three 20 KiB secrets");
        c.apply_secret(Event::Apply(secret("other", "pull", CONFIG)), &mut g);
        assert!(!c
            .lookup("other", &["pull".into()], None)
            .unwrap()
            .is_empty());
        // Too large, unreadable: present but not used.
        let huge = "x".repeat(MAX_SECRET_BYTES + 1);
        c.apply_secret(Event::Apply(secret("other", "huge", &huge)), &mut g);
        c.apply_secret(Event::Apply(secret("other", "junk", "not json")), &mut g);
        assert!(c
            .lookup("other", &["huge".into(), "junk".into()], None)
            .unwrap()
            .is_empty());
    }

    /// Secrets that cannot be used hold nothing, and service accounts are
    /// charged to their namespace's share: no number of either from one
    /// namespace pushes out another's credentials.
    #[test]
    fn unusable_secrets_and_service_accounts_cannot_fill_the_cache() {
        let c = KubeCredentials::new(0);
        let mut g = 0;
        for i in 0..100_000 {
            c.apply_secret(
                Event::Apply(secret("greedy", &format!("junk{i}"), "not json")),
                &mut g,
            );
        }
        assert_eq!(c.bytes(), 0, "unusable secrets are not kept");
        assert_eq!(c.secrets(), 0);
        let names: Vec<String> = (0..MAX_PULL_SECRETS)
            .map(|i| format!("{i:0>200}"))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut ga = 0;
        for i in 0..10_000 {
            c.apply_account(
                Event::Apply(account("greedy", &format!("sa{i}"), &refs)),
                &mut ga,
            );
        }
        // The namespace holds at most its share (64 KiB of the minimum
        // 1 MiB), and another namespace's secret and account still fit.
        assert!(c.bytes() <= 64 << 10, "{}", c.bytes());
        c.apply_secret(Event::Apply(secret("other", "pull", CONFIG)), &mut g);
        c.apply_account(
            Event::Apply(account("other", "default", &["pull"])),
            &mut ga,
        );
        assert!(!c.lookup("other", &[], Some("default")).unwrap().is_empty());
    }

    #[test]
    fn too_many_names_fail_closed_naming_where() {
        let c = KubeCredentials::new(DEFAULT_CACHE_BYTES);
        let many: Vec<String> = (0..=MAX_PULL_SECRETS).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut g = 0;
        c.apply_account(Event::Apply(account("a", "builder", &refs)), &mut g);
        let e = c.lookup("a", &[], Some("builder")).unwrap_err();
        assert!(
            e.contains("serviceAccount \"builder\" lists more than 32 imagePullSecrets"),
            "{e}"
        );
    }
}
