//! Registry reads for verification, through coalescing caches weighed in
//! bytes: tag → digest, cosign tag → layers, image → referrers, and one
//! registry client per pull-secret set.
//!
//! Each cache uses `try_get_with`, so concurrent misses for one key make one
//! set of registry calls and errors are shared with the waiters but never
//! stored. This module reads bytes; it verifies nothing and decides nothing
//! (digests are checked by the registry client, signatures by collectors).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use moka::future::Cache;
use oci_client::Reference;

use super::attestation::DSSE_MEDIA_TYPE;
use super::cosign::{
    SignatureLayer, MAX_PAYLOAD_BYTES, MAX_SIGNATURE_LAYERS, SIMPLE_SIGNING_MEDIA_TYPE,
};
use super::referrers::{self, Referrer};
use crate::image::ImageRef;
use crate::metrics::{self, CacheName};
use crate::policy::GithubSource;
use crate::registry::github::AttestationQuery;
use crate::registry::{Credentials, RegistryClient, RegistryError};

/// The weight of a cache entry, in bytes, as moka wants it.
pub(super) fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn layers_weight(layers: &[SignatureLayer]) -> usize {
    layers
        .iter()
        .map(|l| {
            l.payload.len()
                + l.annotations
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                + 64
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
    signatures: Cache<RepoKey, Arc<Vec<SignatureLayer>>>,
    referrers: Cache<RepoKey, Arc<Vec<Referrer>>>,
    descriptors: Cache<String, (String, u64)>,
    /// Permits for reading blobs over 1 MiB.
    large_blobs: tokio::sync::Semaphore,
}

/// Blobs over 1 MiB read at once, all reviews together.
pub const LARGE_BLOBS_AT_ONCE: usize = 4;

impl Fetcher {
    /// Reads through `registry`. Digests get `cache_bytes / 20`, signature
    /// layers and referrers `cache_bytes / 5 * 2` each; all live `ttl`.
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
            signatures: Cache::builder()
                .max_capacity(cache_bytes / 5 * 2)
                .weigher(|k: &RepoKey, v: &Arc<Vec<SignatureLayer>>| {
                    weight(k.0.len() + k.1.len() + layers_weight(v))
                })
                .time_to_live(ttl)
                .eviction_listener(evictions(CacheName::signatures))
                .build(),
            descriptors: Cache::builder()
                .max_capacity(cache_bytes / 20)
                .weigher(|k: &String, v: &(String, u64)| weight(k.len() + v.0.len() + 72))
                .time_to_live(ttl)
                .eviction_listener(evictions(CacheName::digests))
                .build(),
            referrers: Cache::builder()
                .max_capacity(cache_bytes / 5 * 2)
                .weigher(|k: &RepoKey, v: &Arc<Vec<Referrer>>| {
                    weight(k.0.len() + k.1.len() + referrers_weight(v))
                })
                .time_to_live(ttl)
                .eviction_listener(evictions(CacheName::referrers))
                .build(),
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
        let result = self
            .digests
            .try_get_with(
                format!("{}|{}", creds.fingerprint(), reference.whole()),
                async {
                    fetched.store(true, Ordering::Relaxed);
                    registry.resolve(&reference).await
                },
            )
            .await;
        looked_up(CacheName::digests, &fetched);
        result.map_err(|e| (*e).clone())
    }

    /// The signature layers stored under the tag `sig_ref` (empty when
    /// there is no such tag).
    pub async fn cosign_layers(
        &self,
        sig_ref: &Reference,
        creds: &Credentials,
    ) -> Result<Arc<Vec<SignatureLayer>>, RegistryError> {
        let client = self.client_for(creds).await?;
        let key = (
            format!(
                "{}|{}/{}",
                creds.fingerprint(),
                sig_ref.registry(),
                sig_ref.repository()
            ),
            sig_ref.tag().unwrap_or_default().to_string(),
        );
        let fetched = AtomicBool::new(false);
        let result = self
            .signatures
            .try_get_with(key, async {
                fetched.store(true, Ordering::Relaxed);
                fetch_signature_layers(&client, sig_ref).await
            })
            .await;
        looked_up(CacheName::signatures, &fetched);
        result.map_err(|e| (*e).clone())
    }

    /// The referrers of `registry/repository@digest` that sigil reads.
    pub async fn referrers(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        creds: &Credentials,
    ) -> Result<Arc<Vec<Referrer>>, RegistryError> {
        let client = self.client_for(creds).await?;
        let key = (
            format!("{}|{registry}/{repository}", creds.fingerprint()),
            format!("{digest}|referrers"),
        );
        let (registry, repository, digest) = (
            registry.to_string(),
            repository.to_string(),
            digest.to_string(),
        );
        let fetched = AtomicBool::new(false);
        let result = self
            .referrers
            .try_get_with(key, async {
                fetched.store(true, Ordering::Relaxed);
                referrers::fetch_referrers(&client, &registry, &repository, &digest).await
            })
            .await;
        looked_up(CacheName::referrers, &fetched);
        result.map_err(|e| (*e).clone())
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
            .referrers
            .try_get_with(key, async {
                fetched.store(true, Ordering::Relaxed);
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
        self.signatures.run_pending_tasks().await;
        self.referrers.run_pending_tasks().await;
        self.descriptors.run_pending_tasks().await;
        vec![
            (
                CacheName::digests,
                self.digests.weighted_size() + self.descriptors.weighted_size(),
            ),
            (CacheName::signatures, self.signatures.weighted_size()),
            (CacheName::referrers, self.referrers.weighted_size()),
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

/// Fetches the simple-signing and DSSE layers of a cosign tag's manifest.
pub async fn fetch_signature_layers(
    registry: &RegistryClient,
    sig_ref: &Reference,
) -> Result<Arc<Vec<SignatureLayer>>, RegistryError> {
    let Some((manifest, _)) = registry.image_manifest(sig_ref).await? else {
        return Ok(Arc::new(Vec::new()));
    };
    let wanted: Vec<_> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE || l.media_type == DSSE_MEDIA_TYPE)
        .take(MAX_SIGNATURE_LAYERS)
        .collect();
    let blobs = join_all(
        wanted
            .iter()
            .map(|l| registry.blob(sig_ref, l, MAX_PAYLOAD_BYTES)),
    )
    .await;
    let mut layers = Vec::with_capacity(wanted.len());
    for (desc, blob) in wanted.into_iter().zip(blobs) {
        layers.push(SignatureLayer {
            payload: blob?,
            annotations: desc
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        });
    }
    Ok(Arc::new(layers))
}
