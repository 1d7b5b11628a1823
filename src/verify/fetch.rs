//! Registry reads for verification, through coalescing caches weighed in
//! bytes: tag → digest, image → its referrers' descriptors, a manifest's
//! media type and size, and one registry client per pull-secret set.
//!
//! Each cache uses `try_get_with`, so concurrent misses for one key make one
//! set of registry calls, charged to every namespace waiting on them
//! ([`crate::registry::Coalesced`]); errors are shared with the waiters but
//! never stored.
//!
//! Signature layers and referrers are not cached as fetched: a hostile
//! repository can list 64 of up to 1 MiB each. They are read a few at a
//! time ([`SIGNATURES_CHECKED_AT_ONCE`]) and each is handed to the
//! collector's check as it arrives; only what passes is kept (the verdict
//! cache keeps what is concluded). This module reads bytes; it verifies
//! nothing and decides nothing (digests are checked by the registry
//! client, signatures by the checks the collectors pass in).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use moka::future::Cache;
use oci_client::manifest::ImageIndexEntry;
use oci_client::Reference;

use super::attestation::DSSE_MEDIA_TYPE;
use super::cosign::{
    SignatureLayer, MAX_PAYLOAD_BYTES, MAX_SIGNATURE_LAYERS, SIMPLE_SIGNING_MEDIA_TYPE,
};
use super::referrers::{self, Referrer, MAX_REFERRERS};
use crate::image::ImageRef;
use crate::limits::{MAX_REFERRER_BYTES, SIGNATURES_CHECKED_AT_ONCE};
use crate::metrics::{self, CacheName};
use crate::policy::GithubSource;
use crate::registry::github::AttestationQuery;

/// Each namespace's budget of GitHub API calls.
const GITHUB_BUDGET: crate::rate::Rate = crate::rate::Rate {
    burst: crate::limits::GITHUB_CALLS_BURST_PER_NAMESPACE,
    refill: crate::limits::GITHUB_CALL_REFILL_PER_NAMESPACE,
};
use crate::registry::{as_tenants, Coalesced, Credentials, RegistryClient, RegistryError};

/// The weight of a cache entry, in bytes, as moka wants it.
pub(super) fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn entries_weight(entries: &[ImageIndexEntry]) -> usize {
    entries
        .iter()
        .map(|e| {
            e.digest.len()
                + e.media_type.len()
                + e.artifact_type.as_ref().map_or(0, String::len)
                + e.annotations
                    .as_ref()
                    .map_or(0, |a| a.iter().map(|(k, v)| k.len() + v.len() + 48).sum())
                + 96
        })
        .sum()
}

fn referrers_weight(found: &[Referrer]) -> usize {
    found
        .iter()
        .map(|r| {
            r.blob.len()
                + r.digest.len()
                + r.media_type.len()
                + r.annotations
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                + 96
        })
        .sum()
}

/// (credentials fingerprint | registry/repository, tag or digest).
type RepoKey = (String, String);

/// Cached registry reads.
pub struct Fetcher {
    registry: Arc<RegistryClient>,
    clients: Cache<String, Arc<RegistryClient>>,
    digests: Cache<String, String>,
    /// Who waits on each digest being resolved.
    resolving: Coalesced<String>,
    /// The referrers' descriptors (not their contents) of an image.
    referrer_lists: Cache<RepoKey, Arc<Vec<ImageIndexEntry>>>,
    listing: Coalesced<RepoKey>,
    /// GitHub's attestation API's answers (bundles, unverified: GitHub
    /// holds them for the policy's owner, not a tenant's registry).
    github: Cache<RepoKey, Arc<Vec<Referrer>>>,
    /// Calls to GitHub's API each namespace may still make (cache misses).
    github_budgets: std::sync::Mutex<crate::rate::RateMap<Arc<str>>>,
    descriptors: Cache<String, (String, u64)>,
    /// Permits for reading blobs over 1 MiB.
    large_blobs: tokio::sync::Semaphore,
}

/// What a cosign tag or an image's referrers held for one check: the
/// candidates that passed it, why the others did not, and how many were
/// looked at.
#[derive(Debug)]
pub struct Checked<T, R> {
    /// What passed the check, in the registry's order.
    pub passed: Vec<T>,
    /// Why the others did not.
    pub rejected: Vec<R>,
    /// Candidates looked at (all of them, unless the check had enough).
    pub candidates: usize,
    /// Why some were not read at all (a byte cap), if any were not.
    pub unread: Option<String>,
}

impl<T, R> Default for Checked<T, R> {
    fn default() -> Self {
        Checked {
            passed: Vec::new(),
            rejected: Vec::new(),
            candidates: 0,
            unread: None,
        }
    }
}

/// Blobs over 1 MiB read at once, all reviews together.
pub use crate::limits::LARGE_BLOBS_AT_ONCE;

impl Fetcher {
    /// Reads through `registry`. Digests and descriptors get
    /// `cache_bytes / 20` each, referrer lists and GitHub's answers
    /// `cache_bytes / 5` each; all live `ttl`.
    pub fn new(registry: Arc<RegistryClient>, cache_bytes: u64, ttl: Duration) -> Self {
        Fetcher {
            registry,
            clients: Cache::builder()
                .max_capacity(1_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            digests: Cache::builder()
                .max_capacity(cache_bytes / 20)
                .weigher(|k: &String, v: &String| weight(k.len() + v.len() + 64))
                .time_to_live(ttl)
                .eviction_listener(evictions(CacheName::digests))
                .build(),
            resolving: Coalesced::default(),
            referrer_lists: Cache::builder()
                .max_capacity(cache_bytes / 5)
                .weigher(|k: &RepoKey, v: &Arc<Vec<ImageIndexEntry>>| {
                    weight(k.0.len() + k.1.len() + entries_weight(v))
                })
                .time_to_live(ttl)
                .eviction_listener(evictions(CacheName::referrers))
                .build(),
            listing: Coalesced::default(),
            descriptors: Cache::builder()
                .max_capacity(cache_bytes / 20)
                .weigher(|k: &String, v: &(String, u64)| weight(k.len() + v.0.len() + 72))
                .time_to_live(ttl)
                .eviction_listener(evictions(CacheName::digests))
                .build(),
            github: Cache::builder()
                .max_capacity(cache_bytes / 5)
                .weigher(|k: &RepoKey, v: &Arc<Vec<Referrer>>| {
                    weight(k.0.len() + k.1.len() + referrers_weight(v))
                })
                .time_to_live(ttl)
                .eviction_listener(evictions(CacheName::referrers))
                .build(),
            github_budgets: std::sync::Mutex::new(crate::rate::RateMap::new(
                GITHUB_BUDGET,
                crate::limits::GITHUB_BUDGETS_REMEMBERED,
            )),
            large_blobs: tokio::sync::Semaphore::new(LARGE_BLOBS_AT_ONCE),
        }
    }

    /// The registry client without pull-secret credentials.
    pub fn registry(&self) -> &Arc<RegistryClient> {
        &self.registry
    }

    /// The registry client for a credential set (one per set: a client
    /// keeps one credential per registry).
    async fn client_for(&self, creds: &Credentials) -> Result<Arc<RegistryClient>, RegistryError> {
        if creds.is_empty() {
            return Ok(self.registry.clone());
        }
        let base = self.registry.clone();
        let owned = creds.clone();
        self.clients
            .try_get_with(creds.fingerprint().to_string(), async move {
                base.with_credentials(&owned)
                    .map(Arc::new)
                    .map_err(|e| RegistryError::Protocol {
                        registry: "client".into(),
                        reason: format!("cannot use the pull-secret credentials: {e}"),
                    })
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// The digest to verify: the pinned one, or what the registry serves for the tag.
    pub async fn resolve(
        &self,
        image: &ImageRef,
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        let reference = image.to_reference();
        let registry = self.client_for(creds).await?;
        let fetched = AtomicBool::new(false);
        let key = format!("{}|{}", creds.fingerprint(), reference.whole());
        let waiting = self.resolving.waiting(&key);
        let work = async {
            fetched.store(true, Ordering::Relaxed);
            registry.resolve(&reference).await
        };
        let result = match waiting {
            Some((tenants, _joined)) => {
                self.digests
                    .try_get_with(key, as_tenants(tenants, work))
                    .await
            }
            None => self.digests.try_get_with(key, work).await,
        };
        looked_up(CacheName::digests, &fetched);
        result.map_err(|e| (*e).clone())
    }

    /// The simple-signing and DSSE layers of the cosign tag `sig_ref`,
    /// each handed to `check` as it arrives (a few fetched at once, in
    /// the manifest's order) and kept only if it passes; reading stops
    /// once `enough` says so. At most `budget` bytes of layers (as the
    /// manifest declares them) are read; the rest are left unread and
    /// [`Checked::unread`] says so. `Ok(None)` when there is no such tag.
    /// A layer that cannot be read fails the whole read (transient).
    pub async fn cosign_layers<T, R>(
        &self,
        sig_ref: &Reference,
        creds: &Credentials,
        budget: usize,
        check: impl Fn(SignatureLayer) -> Result<T, R>,
        enough: impl Fn(&[T]) -> bool,
    ) -> Result<Option<Checked<T, R>>, RegistryError> {
        let client = self.client_for(creds).await?;
        metrics::global().cache_lookup(CacheName::signatures, false);
        let Some((manifest, _)) = client.image_manifest(sig_ref).await? else {
            return Ok(None);
        };
        let mut wanted: Vec<oci_client::manifest::OciDescriptor> = manifest
            .layers
            .into_iter()
            .filter(|l| {
                l.media_type == SIMPLE_SIGNING_MEDIA_TYPE || l.media_type == DSSE_MEDIA_TYPE
            })
            .take(MAX_SIGNATURE_LAYERS)
            .collect();
        let mut checked = Checked::default();
        // The layers that fit the budget, by their declared sizes (a
        // layer read is checked against its size, so none can say less).
        let mut declared = 0usize;
        let fit = wanted
            .iter()
            .take_while(|l| {
                declared =
                    declared.saturating_add(usize::try_from(l.size.max(0)).unwrap_or(usize::MAX));
                declared <= budget
            })
            .count();
        if fit < wanted.len() {
            let left = wanted.split_off(fit);
            let bytes: i64 = left.iter().map(|l| l.size.max(0)).sum();
            checked.unread = Some(format!(
                "{} more layer{} ({} bytes) not read: over sigil's limit of {} bytes of layers per tag",
                left.len(),
                if left.len() == 1 { "" } else { "s" },
                crate::text::thousands(usize::try_from(bytes).unwrap_or(usize::MAX)),
                crate::text::thousands(budget)
            ));
        }
        // Each read owns what it uses (a client, the reference, its
        // descriptor): a future borrowing from this one would have to be
        // `Send` for every lifetime, which the compiler cannot show.
        let mut arriving = futures::stream::iter(wanted.into_iter().map(|l| {
            let (client, sig_ref) = (client.clone(), sig_ref.clone());
            async move {
                let payload = client.blob(&sig_ref, &l, MAX_PAYLOAD_BYTES).await?;
                Ok::<_, RegistryError>(SignatureLayer {
                    payload,
                    annotations: l.annotations.unwrap_or_default().into_iter().collect(),
                })
            }
        }))
        .buffered(SIGNATURES_CHECKED_AT_ONCE);
        while let Some(layer) = arriving.next().await {
            checked.candidates += 1;
            match check(layer?) {
                Ok(t) => checked.passed.push(t),
                Err(r) => checked.rejected.push(r),
            }
            if enough(&checked.passed) {
                break;
            }
        }
        Ok(Some(checked))
    }

    /// The referrers of `registry/repository@digest` that sigil reads and
    /// `wanted` accepts by kind, each handed to `check` as it arrives (a
    /// few fetched at once) and kept only if it passes. The list of
    /// descriptors is cached; the referrers' contents are not.
    pub async fn referrers<T, R>(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        creds: &Credentials,
        wanted: impl Fn(referrers::ReferrerKind) -> bool,
        check: impl Fn(Referrer) -> Result<T, R>,
    ) -> Result<Checked<T, R>, RegistryError> {
        let client = self.client_for(creds).await?;
        let listed = self
            .referrer_list(registry, repository, digest, creds)
            .await?;
        // Each read owns what it uses (see `cosign_layers`); what it is
        // is told by its own manifest, so `wanted` is asked here.
        let mut arriving =
            futures::stream::iter(listed.iter().take(MAX_REFERRERS).cloned().map(|e| {
                let client = client.clone();
                let (registry, repository) = (registry.to_string(), repository.to_string());
                async move { referrers::fetch_referrer(&client, &registry, &repository, &e).await }
            }))
            .buffered(SIGNATURES_CHECKED_AT_ONCE);
        let mut checked = Checked::default();
        let mut read = 0usize;
        let mut left = listed.len().min(MAX_REFERRERS);
        while let Some(found) = arriving.next().await {
            left -= 1;
            let Some(found) = found?.filter(|r| wanted(r.kind)) else {
                continue;
            };
            checked.candidates += 1;
            read += found.blob.len();
            match check(found) {
                Ok(t) => checked.passed.push(t),
                Err(r) => checked.rejected.push(r),
            }
            if read >= MAX_REFERRER_BYTES && left > 0 {
                checked.unread = Some(format!(
                    "{left} more referrer{} not read: over sigil's limit of {} bytes of referrers per image",
                    if left == 1 { "" } else { "s" },
                    crate::text::thousands(MAX_REFERRER_BYTES)
                ));
                break;
            }
        }
        Ok(checked)
    }

    /// The descriptors the referrers API (or its tag fallback) lists for
    /// `registry/repository@digest`, cached like every referrer list.
    /// Unverified: what they point at counts only once it verifies.
    pub async fn referrer_list(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        creds: &Credentials,
    ) -> Result<Arc<Vec<ImageIndexEntry>>, RegistryError> {
        let client = self.client_for(creds).await?;
        let key = (
            format!("{}|{registry}/{repository}", creds.fingerprint()),
            format!("{digest}|referrers"),
        );
        let subject = Reference::with_digest(registry.into(), repository.into(), digest.into());
        let fetched = AtomicBool::new(false);
        let waiting = self.listing.waiting(&key);
        let work = async {
            fetched.store(true, Ordering::Relaxed);
            client.referrers(&subject).await.map(Arc::new)
        };
        let listed = match waiting {
            Some((tenants, _joined)) => {
                self.referrer_lists
                    .try_get_with(key, as_tenants(tenants, work))
                    .await
            }
            None => self.referrer_lists.try_get_with(key, work).await,
        };
        looked_up(CacheName::referrers, &fetched);
        let listed = listed.map_err(|e| (*e).clone())?;
        Ok(listed)
    }

    /// Takes one GitHub API call from the budget of a namespace the work is
    /// charged to (any that has one left); with none left, the call is not
    /// made and the image is denied with that reason: one tenant's dry-run
    /// Pods of random digests cannot spend the token's quota for the whole
    /// cluster. Work charged to no namespace (`sigil check`) is not limited.
    fn charge_github_call(&self, api: &str) -> Result<(), RegistryError> {
        let Some(tenants) = crate::registry::current_tenants() else {
            return Ok(());
        };
        let names = tenants.names();
        if names.is_empty() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut budgets = self
            .github_budgets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if names.iter().any(|n| budgets.allow(n.clone(), now)) {
            return Ok(());
        }
        crate::metrics::global().github_budget_spent();
        Err(RegistryError::OverBudget {
            api: format!(
                "GitHub's attestation API at {}",
                api.trim_start_matches("https://")
            ),
            namespace: names.first().map(|n| n.to_string()).unwrap_or_default(),
            budget: format!(
                "{} at once, then one every {} s; answers already cached still count",
                GITHUB_BUDGET.burst,
                GITHUB_BUDGET.refill.as_secs()
            ),
        })
    }

    /// The Sigstore bundles GitHub's attestation API lists for `digest`,
    /// as referrers (unverified), cached like the registry's referrers.
    /// The cache key holds a hash of the token, never the token.
    pub async fn github_attestations(
        &self,
        source: &GithubSource,
        digest: &str,
    ) -> Result<Arc<Vec<Referrer>>, RegistryError> {
        use sha2::Digest as _;
        let token_id = source
            .token
            .as_deref()
            .map(|t| hex::encode(&sha2::Sha256::digest(t.as_bytes())[..8]))
            .unwrap_or_default();
        let key = (
            format!(
                "github|{}|{}/{}|{token_id}",
                source.api,
                source.owner,
                source.repository.as_deref().unwrap_or_default()
            ),
            format!("{digest}|github"),
        );
        let fetched = AtomicBool::new(false);
        let result = self
            .github
            .try_get_with(key, async {
                fetched.store(true, Ordering::Relaxed);
                self.charge_github_call(&source.api)?;
                let query = AttestationQuery {
                    api: &source.api,
                    owner: &source.owner,
                    repository: source.repository.as_deref(),
                    token: source.token.as_deref(),
                };
                let listed = self.registry.github_attestations(&query, digest).await?;
                Ok::<_, RegistryError>(Arc::new(
                    listed
                        .into_iter()
                        .enumerate()
                        .map(|(i, a)| Referrer {
                            digest: match a.repository_id {
                                Some(id) => {
                                    format!("GitHub attestation {} (repository_id {id})", i + 1)
                                }
                                None => format!("GitHub attestation {}", i + 1),
                            },
                            kind: referrers::ReferrerKind::Bundle,
                            blob: a.bundle,
                            media_type: "application/vnd.dev.sigstore.bundle+json".into(),
                            annotations: Default::default(),
                        })
                        .collect(),
                ))
            })
            .await;
        looked_up(CacheName::referrers, &fetched);
        result.map_err(|e| (*e).clone())
    }

    /// The media type and size of `registry/repository@digest` as the
    /// registry serves it (a Notation payload must state both).
    pub async fn manifest_descriptor(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        creds: &Credentials,
    ) -> Result<(String, u64), RegistryError> {
        let client = self.client_for(creds).await?;
        let reference = Reference::with_digest(
            registry.to_string(),
            repository.to_string(),
            digest.to_string(),
        );
        let fetched = AtomicBool::new(false);
        let result = self
            .descriptors
            .try_get_with(
                format!("{}|{}", creds.fingerprint(), reference.whole()),
                async {
                    fetched.store(true, Ordering::Relaxed);
                    client
                        .manifest_descriptor(&reference)
                        .await?
                        .ok_or_else(|| RegistryError::Protocol {
                            registry: reference.registry().to_string(),
                            reason: format!("{} is not in the registry", reference.whole()),
                        })
                },
            )
            .await;
        looked_up(CacheName::digests, &fetched);
        result.map_err(|e| (*e).clone())
    }

    /// The bytes of `registry/repository@digest`, read and checked against
    /// the digest (at most 1 MiB); `Ok(None)` when absent. Not cached: the
    /// verdict cache keeps what is concluded from it.
    pub async fn manifest(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        creds: &Credentials,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let client = self.client_for(creds).await?;
        let reference = Reference::with_digest(
            registry.to_string(),
            repository.to_string(),
            digest.to_string(),
        );
        Ok(client.manifest(&reference).await?.map(|(bytes, _)| bytes))
    }

    /// A blob of `registry/repository` of at most `limit` bytes, checked
    /// against its digest. Not cached. Blobs over 1 MiB (BuildKit's SBOMs)
    /// are read at most [`LARGE_BLOBS_AT_ONCE`] at a time, so that their
    /// bytes held at once stay bounded whatever the reviews ask for.
    pub async fn blob(
        &self,
        registry: &str,
        repository: &str,
        descriptor: &oci_client::manifest::OciDescriptor,
        limit: usize,
        creds: &Credentials,
    ) -> Result<Vec<u8>, RegistryError> {
        let client = self.client_for(creds).await?;
        let reference = Reference::with_digest(
            registry.to_string(),
            repository.to_string(),
            descriptor.digest.clone(),
        );
        let _large = if descriptor.size > MAX_PAYLOAD_BYTES as i64 {
            // Never closed, so acquiring cannot fail.
            Some(self.large_blobs.acquire().await.ok())
        } else {
            None
        };
        client.blob(&reference, descriptor, limit).await
    }

    /// What each cache holds now, weighed in bytes.
    pub async fn cache_bytes(&self) -> Vec<(CacheName, u64)> {
        self.digests.run_pending_tasks().await;
        self.referrer_lists.run_pending_tasks().await;
        self.github.run_pending_tasks().await;
        self.descriptors.run_pending_tasks().await;
        vec![
            (
                CacheName::digests,
                self.digests.weighted_size() + self.descriptors.weighted_size(),
            ),
            // Signature layers are no longer kept as fetched.
            (CacheName::signatures, 0),
            (
                CacheName::referrers,
                self.referrer_lists.weighted_size() + self.github.weighted_size(),
            ),
        ]
    }
}

/// Counts a lookup: a miss when this caller ran the fetch, a hit when the
/// value was there or another caller's fetch answered it.
fn looked_up(cache: CacheName, fetched: &AtomicBool) {
    metrics::global().cache_lookup(cache, !fetched.load(Ordering::Relaxed));
}

/// A listener counting what leaves `cache` on its own.
fn evictions<K, V>(
    cache: CacheName,
) -> impl Fn(Arc<K>, V, moka::notification::RemovalCause) + Send + Sync + 'static {
    move |_, _, cause| metrics::global().cache_removal(cache, cause)
}
