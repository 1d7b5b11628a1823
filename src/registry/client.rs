//! The registry client: one per credential set, all sharing a connection
//! pool and the request limits (in total and per registry); every read
//! capped while it streams, every manifest fetched by digest and every blob
//! checked against its digest, every digest a registry hands back checked
//! for shape before it goes into a URL.
//!
//! Longer than most files (~530 lines) because it is one request path:
//! limits, redirects, the 401 → token → retry loop and the capped reads
//! share state, and splitting them would spread one security boundary over
//! several files. Challenges and tokens are already apart (`auth`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::auth::{basic, fetch_token, parse_challenge, Challenge, Token};
use super::breaker::Breakers;
use super::credentials::{read_docker_config, Credentials, RegistryConfigError};
use super::error::RegistryError;
use super::error::{status_error, transport_error};
use super::options::{
    RegistryOptions, INDEX_ACCEPT, MANIFEST_ACCEPT, MAX_DESCRIPTORS, MAX_MANIFEST_BYTES,
    MAX_REDIRECTS,
};
use super::shares::{Limits, Permits};
use crate::image::DOCKER_HUB;

/// Shared by a client and every per-credential client derived from it: the
/// connection pool, the request limits and the TLS roots.
struct Shared {
    http: reqwest::Client,
    limits: Limits,
    /// `--insecure-registry` hosts, canonical (as references are), so a
    /// request compares strings only.
    insecure: std::collections::HashSet<String>,
    /// (credentials fingerprint, registry, repository) → token.
    tokens: moka::sync::Cache<(String, String, String), Token>,
    /// (credentials fingerprint, registry) → the challenge it last sent, so
    /// later requests authenticate up front instead of collecting a `401`
    /// first: one round trip saved per request (basic) or per repository
    /// (bearer: the token is fetched before the first request).
    challenges: moka::sync::Cache<(String, String), Challenge>,
    /// Longest `Retry-After` waited for, once.
    max_retry_wait: Duration,
    /// One circuit breaker per registry host.
    breakers: Breakers,
    /// How long a request may go without an answer before it counts as a
    /// failure of its registry.
    hang_after: Duration,
}

/// Reads from registries for verification. One per credential set
/// ([`RegistryClient::with_credentials`]); all of them share one connection
/// pool and one set of request limits.
pub struct RegistryClient {
    shared: Arc<Shared>,
    auths: HashMap<String, RegistryAuth>,
    /// Keys the token cache, so one credential set's tokens serve no other.
    fingerprint: String,
}

impl RegistryClient {
    /// Builds the client; reads CA files and credentials.
    pub fn new(opts: &RegistryOptions) -> Result<Self, RegistryConfigError> {
        // Registries may redirect blob reads to storage; a hostile one must
        // not turn that into a downgrade to plain HTTP or an endless chain.
        // (reqwest drops `Authorization` on a redirect to another host.)
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt
                .previous()
                .first()
                .is_some_and(|u| u.scheme() == "https")
                && attempt.url().scheme() != "https";
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if downgrade {
                attempt.error("redirect from HTTPS to plain HTTP refused")
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .redirect(redirects)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(opts.max_requests_per_registry.max(1))
            .user_agent(concat!("sigil/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = opts.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = opts.read_timeout {
            builder = builder.read_timeout(t);
        }
        let mut roots = Vec::new();
        for path in &opts.ca_files {
            let fail = |reason: String| RegistryConfigError {
                path: path.clone(),
                reason,
            };
            let data = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            roots.extend(
                reqwest::Certificate::from_pem_bundle(&data).map_err(|e| fail(e.to_string()))?,
            );
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder.build().map_err(|e| RegistryConfigError {
            path: PathBuf::from("(registry client)"),
            reason: e.to_string(),
        })?;
        let auths = match &opts.docker_config {
            Some(p) => read_docker_config(p)?,
            None => HashMap::new(),
        };
        Ok(RegistryClient {
            shared: Arc::new(Shared {
                http,
                limits: Limits::new(opts),
                insecure: opts
                    .insecure
                    .iter()
                    .map(|h| crate::image::canonical_registry(h))
                    .collect(),
                // Both hold what registries sent (tokens up to 64 KiB,
                // challenge parameters up to a header's size), for hosts a
                // tenant can name: weighed in bytes, not counted.
                tokens: moka::sync::Cache::builder()
                    .max_capacity(AUTH_CACHE_BYTES)
                    .weigher(|k: &(String, String, String), t: &Token| {
                        weight(k.0.len() + k.1.len() + k.2.len() + t.value.len() + 64)
                    })
                    .time_to_live(Duration::from_secs(3_600))
                    .eviction_listener(|_, _, cause| {
                        crate::metrics::global()
                            .cache_removal(crate::metrics::CacheName::tokens, cause)
                    })
                    .build(),
                challenges: moka::sync::Cache::builder()
                    .max_capacity(AUTH_CACHE_BYTES)
                    .weigher(|k: &(String, String), c: &Challenge| {
                        let params = match c {
                            Challenge::Basic => 0,
                            Challenge::Bearer(p) => {
                                p.iter().map(|(k, v)| k.len() + v.len() + 48).sum()
                            }
                        };
                        weight(k.0.len() + k.1.len() + params + 64)
                    })
                    .time_to_live(Duration::from_secs(600))
                    .build(),
                max_retry_wait: opts.max_retry_wait,
                breakers: Breakers::new(opts.breaker_failures, opts.breaker_cooldown),
                hang_after: opts.connect_timeout.unwrap_or(DEFAULT_HANG_AFTER),
            }),
            auths,
            fingerprint: String::new(),
        })
    }

    /// What the token cache holds now, weighed in bytes.
    pub fn token_cache_bytes(&self) -> u64 {
        self.shared.tokens.run_pending_tasks();
        self.shared.tokens.weighted_size()
    }

    /// A client sharing this one's connections and limits whose credentials
    /// are this client's overlaid with `creds`.
    pub fn with_credentials(&self, creds: &Credentials) -> Result<Self, RegistryConfigError> {
        let mut auths = if creds.exclusive {
            HashMap::new()
        } else {
            self.auths.clone()
        };
        auths.extend(creds.auths.iter().map(|(h, a)| (h.clone(), a.clone())));
        Ok(RegistryClient {
            shared: self.shared.clone(),
            auths,
            fingerprint: creds.fingerprint().to_string(),
        })
    }

    fn auth_for(&self, registry: &str) -> Option<&RegistryAuth> {
        self.auths
            .get(registry)
            .filter(|a| !matches!(a, RegistryAuth::Anonymous))
    }

    fn base_url(&self, registry: &str) -> String {
        // References carry canonical hosts; the set was canonicalised once.
        let insecure = self.shared.insecure.contains(registry);
        // Docker Hub's API lives at registry-1.docker.io.
        let host = if registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        format!("{}://{host}", if insecure { "http" } else { "https" })
    }

    /// Resolves a reference to the digest the registry serves for it (for a
    /// multi-arch image, the index digest): one `HEAD`, or a capped `GET`
    /// hashed here when the registry gives no usable `Docker-Content-Digest`.
    pub async fn resolve(&self, reference: &Reference) -> Result<String, RegistryError> {
        if let Some(d) = reference.digest() {
            return Ok(d.to_string());
        }
        let path = format!(
            "/v2/{}/manifests/{}",
            reference.repository(),
            reference.tag().unwrap_or("latest")
        );
        let resp = self
            .send(reference, Method::HEAD, &path, MANIFEST_ACCEPT)
            .await?;
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match header {
            Some(d) => check_digest(reference.registry(), &d).map(|_| d),
            None => {
                let body = self
                    .get_capped(reference, &path, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES)
                    .await?;
                Ok(format!("sha256:{}", hex::encode(Sha256::digest(&body))))
            }
        }
    }

    /// Fetches an image manifest; `Ok(None)` when the tag does not exist.
    /// A manifest fetched by digest must hash to it.
    pub async fn image_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<(OciImageManifest, String)>, RegistryError> {
        let Some((body, digest)) = self.manifest_bytes(reference).await? else {
            return Ok(None);
        };
        let manifest: OciImageManifest = parse_manifest(reference, &body)?;
        if manifest.layers.len() > MAX_DESCRIPTORS {
            return Err(RegistryError::Protocol {
                registry: reference.registry().to_string(),
                reason: format!(
                    "{} has {} layers, over the limit of {MAX_DESCRIPTORS}",
                    reference.whole(),
                    manifest.layers.len()
                ),
            });
        }
        Ok(Some((manifest, digest)))
    }

    /// The media type and size of the manifest `reference` names by digest
    /// (what a Notation payload's `targetArtifact` must state); `Ok(None)`
    /// when absent. The bytes are fetched and hashed, so both are the
    /// digest's own: the media type is the manifest's `mediaType` (an OCI
    /// manifest without one is an index when it lists `manifests`).
    pub async fn manifest_descriptor(
        &self,
        reference: &Reference,
    ) -> Result<Option<(String, u64)>, RegistryError> {
        let Some((body, _)) = self.manifest_bytes(reference).await? else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Shape {
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let shape: Shape = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            registry: reference.registry().to_string(),
            reason: format!("manifest {} is not JSON: {e}", reference.whole()),
        })?;
        let media_type = shape.media_type.unwrap_or_else(|| {
            if shape.manifests.is_some() {
                oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()
            } else {
                oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_string()
            }
        });
        Ok(Some((media_type, body.len() as u64)))
    }

    /// The bytes of a manifest and their digest (checked when `reference`
    /// names one); `Ok(None)` when absent. At most 1 MiB.
    pub async fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        self.manifest_bytes(reference).await
    }

    /// The bytes of a manifest and their digest; `Ok(None)` when absent.
    async fn manifest_bytes(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let path = format!(
            "/v2/{}/manifests/{}",
            reference.repository(),
            reference.digest().or(reference.tag()).unwrap_or("latest")
        );
        let body = match self
            .get_capped(reference, &path, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES)
            .await
        {
            Ok(b) => b,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(wanted) = reference.digest() {
            if wanted != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: reference.registry().to_string(),
                    what: format!("{}@{wanted}", reference.repository()),
                    actual,
                });
            }
        }
        Ok(Some((body, actual)))
    }

    /// Fetches a blob of at most `limit` bytes and checks its digest.
    pub async fn blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let registry = reference.registry().to_string();
        check_digest(&registry, &descriptor.digest)?;
        if descriptor.size < 0 || descriptor.size as u64 > limit as u64 {
            return Err(RegistryError::Protocol {
                registry,
                reason: format!(
                    "blob {} is {} bytes, over the {limit}-byte limit",
                    descriptor.digest, descriptor.size
                ),
            });
        }
        let path = format!("/v2/{}/blobs/{}", reference.repository(), descriptor.digest);
        let body = self.get_capped(reference, &path, "*/*", limit).await?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if actual != descriptor.digest {
            return Err(RegistryError::DigestMismatch {
                registry,
                what: format!("{}@{}", reference.repository(), descriptor.digest),
                actual,
            });
        }
        Ok(body)
    }

    /// The referrers of `subject` (a digest reference): the OCI 1.1
    /// referrers API, or, where the registry has none (404), the
    /// `sha256-<hex>` referrers tag index. No referrers is an empty list.
    /// Entries whose digest is malformed are dropped.
    pub async fn referrers(
        &self,
        subject: &Reference,
    ) -> Result<Vec<ImageIndexEntry>, RegistryError> {
        let registry = subject.registry().to_string();
        let Some(digest) = subject.digest() else {
            return Err(RegistryError::Protocol {
                registry,
                reason: "referrers need a digest".into(),
            });
        };
        check_digest(&registry, digest)?;
        let path = format!("/v2/{}/referrers/{digest}", subject.repository());
        let body = match self
            .get_capped(subject, &path, INDEX_ACCEPT, MAX_MANIFEST_BYTES)
            .await
        {
            Ok(b) => Some(b),
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let body = match body {
            Some(b) => b,
            None => {
                let tag = Reference::with_tag(
                    registry.clone(),
                    subject.repository().to_string(),
                    digest.replacen(':', "-", 1),
                );
                match self.manifest_bytes(&tag).await? {
                    Some((b, _)) => b,
                    None => return Ok(Vec::new()),
                }
            }
        };
        let index: OciImageIndex = parse_manifest(subject, &body)?;
        if index.manifests.len() > MAX_DESCRIPTORS {
            return Err(RegistryError::Protocol {
                registry,
                reason: format!(
                    "the referrers of {} list {} entries, over the limit of {MAX_DESCRIPTORS}",
                    subject.whole(),
                    index.manifests.len()
                ),
            });
        }
        Ok(index
            .manifests
            .into_iter()
            .filter(|e| check_digest(&registry, &e.digest).is_ok())
            .collect())
    }

    /// GETs `path` and reads at most `limit` bytes of a 200 answer.
    async fn get_capped(
        &self,
        reference: &Reference,
        path: &str,
        accept: &str,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let resp = self.send(reference, Method::GET, path, accept).await?;
        read_capped(
            resp,
            reference.registry(),
            &format!("{}{}", reference.registry(), path),
            limit,
        )
        .await
    }

    /// GETs `url` on `host`, an HTTPS API that is not a registry (GitHub's
    /// attestation API), within the same request limits and circuit
    /// breaker as registries; a non-2xx answer comes back as it is, for
    /// the caller to word. No credentials of this client are sent: only
    /// `headers`.
    pub(super) async fn send_api(
        &self,
        host: &str,
        url: &str,
        headers: HeaderMap,
    ) -> Result<(StatusCode, LimitedResponse), RegistryError> {
        let breakers = &self.shared.breakers;
        let metrics = crate::metrics::global();
        if let Err(open) = breakers.admit(host, Instant::now()) {
            metrics.registry_request(host, "api", "circuit_open", None);
            return Err(RegistryError::CircuitOpen {
                registry: host.to_string(),
                failures: open.failures,
                retry_in_secs: open.retry_in.as_secs()
                    + u64::from(open.retry_in.subsec_nanos() > 0),
            });
        }
        let permits = self.shared.limits.acquire(host).await;
        let sent = Instant::now();
        let resp = match self.shared.http.get(url).headers(headers).send().await {
            Ok(r) => r,
            Err(e) => {
                metrics.registry_request(host, "api", "error", Some(sent.elapsed()));
                breakers.failure(host, Instant::now());
                return Err(transport_error(host, &e));
            }
        };
        let status = resp.status();
        metrics.registry_request(
            host,
            "api",
            crate::metrics::status_class(status.as_u16()),
            Some(sent.elapsed()),
        );
        if status.is_server_error() {
            breakers.failure(host, Instant::now());
        } else {
            breakers.success(host);
        }
        Ok((
            status,
            LimitedResponse {
                inner: resp,
                _permits: permits,
                limits: self.shared.clone(),
            },
        ))
    }
}

/// Reads at most `limit` bytes of `resp` (`what` names it in the error).
pub(super) async fn read_capped(
    mut resp: LimitedResponse,
    registry: &str,
    what: &str,
    limit: usize,
) -> Result<Vec<u8>, RegistryError> {
    let what = || what.to_string();
    let registry = registry.to_string();
    {
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(RegistryError::TooLarge {
                registry,
                what: what(),
                limit,
            });
        }
        // What it may hold is charged before it is read: its declared
        // length, or the cap when it declares none.
        let room = resp
            .content_length()
            .map_or(limit, |n| n as usize)
            .min(limit);
        let _room = resp
            .limits
            .limits
            .read_room(resp._permits.charged.as_ref(), room)
            .await;
        let mut out = Vec::with_capacity(
            resp.content_length()
                .map_or(8 << 10, |n| n as usize)
                .min(limit),
        );
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if out.len() + chunk.len() > limit {
                        return Err(RegistryError::TooLarge {
                            registry,
                            what: what(),
                            limit,
                        });
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(out),
                Err(e) => return Err(transport_error(&registry, &e)),
            }
        }
    }
}

impl RegistryClient {
    /// Sends one request with the registry's credentials (answering a
    /// `401` challenge once: basic credentials, or a bearer token from the
    /// token server, reused until it expires) within the request limits,
    /// and maps failure statuses to errors. The permits are held until the
    /// response is dropped.
    async fn send(
        &self,
        reference: &Reference,
        method: Method,
        path: &str,
        accept: &str,
    ) -> Result<LimitedResponse, RegistryError> {
        let registry = reference.registry();
        let repository = reference.repository();
        let breakers = &self.shared.breakers;
        let metrics = crate::metrics::global();
        let operation = crate::metrics::registry_operation(path);
        if let Err(open) = breakers.admit(registry, Instant::now()) {
            metrics.registry_request(registry, operation, "circuit_open", None);
            return Err(RegistryError::CircuitOpen {
                registry: registry.to_string(),
                failures: open.failures,
                retry_in_secs: open.retry_in.as_secs()
                    + u64::from(open.retry_in.subsec_nanos() > 0),
            });
        }
        let permits = self.shared.limits.acquire(registry).await;
        let url = format!("{}{path}", self.base_url(registry));
        let token_key = (
            self.fingerprint.clone(),
            registry.to_string(),
            repository.to_string(),
        );
        let cached = self
            .shared
            .tokens
            .get(&token_key)
            .filter(|t| t.expires > Instant::now());
        if cached.is_some() {
            metrics.cache_lookup(crate::metrics::CacheName::tokens, true);
        }
        let mut authorization = cached.map(|t| format!("Bearer {}", t.value));
        let challenge_key = (self.fingerprint.clone(), registry.to_string());
        if authorization.is_none() {
            if let Some(known) = self.shared.challenges.get(&challenge_key) {
                authorization = self
                    .answer(&known, registry, repository, &token_key)
                    .await?;
            }
        }
        let mut answered_challenge = false;
        let mut waited = false;
        loop {
            let mut req = self
                .shared
                .http
                .request(method.clone(), &url)
                .header(ACCEPT, accept);
            if let Some(a) = &authorization {
                req = req.header(AUTHORIZATION, a);
            }
            let sent = Instant::now();
            // A request with no answer by the hang threshold (the connect
            // timeout) counts as a failure of its registry then, not only
            // when it finally times out: hanging registries open their
            // breaker after a few concurrent hangs.
            let sending = req.send();
            tokio::pin!(sending);
            let mut hung = false;
            let result = tokio::select! {
                r = &mut sending => r,
                () = tokio::time::sleep(self.shared.hang_after) => {
                    hung = true;
                    breakers.failure(registry, Instant::now());
                    metrics.registry_hang(registry);
                    sending.await
                }
            };
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => {
                    metrics.registry_request(registry, operation, "error", Some(sent.elapsed()));
                    if !hung {
                        breakers.failure(registry, Instant::now());
                    }
                    return Err(transport_error(registry, &e));
                }
            };
            let status = resp.status();
            metrics.registry_request(
                registry,
                operation,
                crate::metrics::status_class(status.as_u16()),
                Some(sent.elapsed()),
            );
            if status.is_server_error() {
                breakers.failure(registry, Instant::now());
            } else {
                breakers.success(registry);
            }
            if status.is_success() {
                return Ok(LimitedResponse {
                    inner: resp,
                    _permits: permits,
                    limits: self.shared.clone(),
                });
            }
            if let Some(wait) = retry_wait(&resp)
                .filter(|w| !waited && !w.is_zero() && *w <= self.shared.max_retry_wait)
            {
                // A polite registry said when to come back, soon enough
                // to matter for this review: wait once, holding this
                // registry's permits so that others queue rather than add
                // to its load. The review's deadline still bounds it.
                waited = true;
                drop(resp);
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge);
                authorization = match challenge {
                    Some(c) => {
                        self.shared
                            .challenges
                            .insert(challenge_key.clone(), c.clone());
                        self.answer(&c, registry, repository, &token_key).await?
                    }
                    None => None,
                };
                if authorization.is_some() {
                    continue;
                }
            }
            return Err(status_error(reference, resp).await);
        }
    }
}

impl RegistryClient {
    /// The `Authorization` answering `challenge` with this client's
    /// credentials: basic credentials, or a bearer token from the token
    /// server (kept for its lifetime); `None` when there is nothing to send.
    async fn answer(
        &self,
        challenge: &Challenge,
        registry: &str,
        repository: &str,
        token_key: &(String, String, String),
    ) -> Result<Option<String>, RegistryError> {
        Ok(match challenge {
            Challenge::Basic => match self.auth_for(registry) {
                Some(RegistryAuth::Basic(u, p)) => Some(basic(u, p)),
                _ => None,
            },
            Challenge::Bearer(params) => {
                let token = fetch_token(
                    &self.shared.http,
                    self.auth_for(registry),
                    registry,
                    repository,
                    params,
                )
                .await?;
                crate::metrics::global().cache_lookup(crate::metrics::CacheName::tokens, false);
                self.shared.tokens.insert(token_key.clone(), token.clone());
                Some(format!("Bearer {}", token.value))
            }
        })
    }
}

/// The hang threshold without a connect timeout.
use crate::limits::DEFAULT_HANG_AFTER;

/// Bytes the token cache, and separately the challenge cache, may hold.
use crate::limits::AUTH_CACHE_BYTES;

/// A cache entry's weight in bytes, as moka wants it.
fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// How long a `429` or `503` asks to wait (`Retry-After` in seconds);
/// `None` for any other answer or without the header.
fn retry_wait(resp: &reqwest::Response) -> Option<Duration> {
    if !matches!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// A response whose request-limit permits are released when it is dropped.
pub(super) struct LimitedResponse {
    inner: reqwest::Response,
    _permits: Permits,
    /// The limits, for the room its body takes while it is read.
    limits: Arc<Shared>,
}

impl LimitedResponse {
    pub(super) fn headers(&self) -> &HeaderMap<HeaderValue> {
        self.inner.headers()
    }
    fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }
    async fn chunk(&mut self) -> reqwest::Result<Option<bytes::Bytes>> {
        self.inner.chunk().await
    }
}

/// A digest sigil will put in a URL: `sha256:` and 64 lowercase hex digits.
fn check_digest(registry: &str, digest: &str) -> Result<(), RegistryError> {
    if crate::image::is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(RegistryError::Protocol {
            registry: registry.to_string(),
            reason: format!(
                "unusable digest {:?} (sigil reads sha256 digests only)",
                digest.chars().take(80).collect::<String>()
            ),
        })
    }
}

fn parse_manifest<T: serde::de::DeserializeOwned>(
    reference: &Reference,
    body: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::Protocol {
        registry: reference.registry().to_string(),
        reason: format!("unreadable manifest for {}: {e}", reference.whole()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A digest from a registry (HEAD, referrers) goes into a URL only in
    /// the one shape sigil fetches by.
    #[test]
    fn registry_supplied_digests_are_shape_checked() {
        let good = format!("sha256:{}", "0a".repeat(32));
        assert!(check_digest("r", &good).is_ok());
        for bad in [
            format!("sha256:{}", "0A".repeat(32)),
            format!("sha512:{}", "0a".repeat(64)),
            "sha256:../../v2/_catalog".to_string(),
            format!("sha256:{}/x", "0a".repeat(32)),
            String::new(),
        ] {
            let e = check_digest("r", &bad).unwrap_err();
            assert!(e.to_string().contains("unusable digest"), "{bad}: {e}");
        }
    }
}
