//! Registry reads for verification: tag resolution, signature manifests,
//! blobs and referrers, over sigil's own small OCI distribution client
//! (reqwest), with credentials from a docker `config.json` and pull secrets,
//! plain-HTTP hosts, private CAs and timeouts.
//!
//! Every registry is treated as hostile. Each read is capped while it
//! streams (a `Content-Length` over the cap is refused before reading; a body
//! without one is cut off at the cap), every manifest and blob fetched by
//! digest must hash to that digest, digests a registry hands back are checked
//! for shape before they are used in a URL, and requests are bounded in total
//! and per registry. Errors are classified so that a deny message can say
//! whether the registry failed or simply had nothing; only "not found" says
//! something about the image, so only it may be cached by callers.
//!
//! This module must not know about signatures: it returns bytes, manifests
//! and index entries.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::image::DOCKER_HUB;

/// Largest manifest, image index or referrers list read (1 MiB). Signature
/// manifests with dozens of keyless signatures stay well under 500 KiB.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Most descriptors accepted in one manifest or index.
pub const MAX_DESCRIPTORS: usize = 1_000;
/// Largest error body read to explain a failure.
const MAX_ERROR_BODY_BYTES: usize = 16 << 10;
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest token-server answer read.
const MAX_TOKEN_BYTES: usize = 64 << 10;

/// The manifest media types sigil asks for.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// The media type of an OCI image index (referrers answers).
const INDEX_ACCEPT: &str = "application/vnd.oci.image.index.v1+json";

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM files) for registry TLS.
    pub ca_files: Vec<PathBuf>,
    /// A docker `config.json` with `auths`.
    pub docker_config: Option<PathBuf>,
    /// TCP connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Read timeout per request.
    pub read_timeout: Option<Duration>,
    /// Registry requests in flight at once, all registries together.
    pub max_requests: usize,
    /// Registry requests in flight at once to one registry host.
    pub max_requests_per_registry: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            ca_files: Vec::new(),
            docker_config: None,
            connect_timeout: None,
            read_timeout: None,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_requests_per_registry: DEFAULT_MAX_REQUESTS_PER_REGISTRY,
        }
    }
}

/// Default of `--registry-concurrency`.
pub const DEFAULT_MAX_REQUESTS: usize = 32;
/// Default of `--registry-concurrency-per-host`.
pub const DEFAULT_MAX_REQUESTS_PER_REGISTRY: usize = 8;

/// A registry failure, worded for a deny message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// Could not connect.
    #[error("registry {registry} unreachable: {reason}")]
    Unreachable {
        /// Host.
        registry: String,
        /// Cause, e.g. `connection refused`.
        reason: String,
    },
    /// The registry did not answer in time.
    #[error("registry {registry} timed out")]
    Timeout {
        /// Host.
        registry: String,
    },
    /// Credentials missing or refused.
    #[error("registry {registry} denied access to {repository}: {reason}")]
    Unauthorized {
        /// Host.
        registry: String,
        /// Repository.
        repository: String,
        /// Detail.
        reason: String,
    },
    /// The manifest or tag does not exist.
    #[error("{reference} not found")]
    NotFound {
        /// What was looked up.
        reference: String,
    },
    /// The registry asked sigil to slow down (HTTP 429).
    #[error("registry {registry} is throttling requests (HTTP 429{})", retry_after.map(|s| format!(", retry after {s}s")).unwrap_or_default())]
    Throttled {
        /// Host.
        registry: String,
        /// `Retry-After`, in seconds, when given.
        retry_after: Option<u64>,
    },
    /// A body larger than sigil reads.
    #[error("registry {registry} sent more than {limit} bytes for {what}")]
    TooLarge {
        /// Host.
        registry: String,
        /// What was being read.
        what: String,
        /// The cap.
        limit: usize,
    },
    /// Content whose hash is not the digest it was fetched by.
    #[error("registry {registry} sent content for {what} whose digest is {actual}")]
    DigestMismatch {
        /// Host.
        registry: String,
        /// What was asked for (`repo@sha256:…`).
        what: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Anything else the registry or transport reported.
    #[error("registry {registry} error: {reason}")]
    Protocol {
        /// Host.
        registry: String,
        /// Detail.
        reason: String,
    },
}

impl RegistryError {
    /// Whether the failure says nothing about the image itself (so must not
    /// be cached): everything but "not found".
    pub fn is_transient(&self) -> bool {
        !matches!(self, RegistryError::NotFound { .. })
    }
}
/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RegistryConfigError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

/// Normalises a docker config `auths` key (`https://index.docker.io/v1/`,
/// `docker.io`, `host:port`) to the registry host used in references.
fn normalise_host(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    crate::image::canonical_registry(host)
}

/// Reads registry credentials from a docker `config.json`.
pub fn read_docker_config(
    path: &Path,
) -> Result<HashMap<String, RegistryAuth>, RegistryConfigError> {
    let bytes = std::fs::read(path).map_err(|e| RegistryConfigError {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_docker_config(&bytes).map_err(|reason| RegistryConfigError {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses a docker `config.json` (the `.dockerconfigjson` of a
/// `kubernetes.io/dockerconfigjson` Secret) into credentials per registry.
/// A bare map of hosts (the legacy `.dockercfg`) is accepted too.
pub fn parse_docker_config(bytes: &[u8]) -> Result<HashMap<String, RegistryAuth>, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let cfg: DockerConfig = if value.get("auths").is_some() {
        serde_json::from_value(value).map_err(|e| e.to_string())?
    } else {
        DockerConfig {
            auths: serde_json::from_value(value).map_err(|e| e.to_string())?,
        }
    };
    let fail = |reason: String| reason;
    let mut out = HashMap::new();
    for (key, a) in cfg.auths {
        let auth = if let Some(token) = a.registrytoken.or(a.identitytoken) {
            RegistryAuth::Bearer(token)
        } else if let (Some(u), Some(p)) = (a.username, a.password) {
            RegistryAuth::Basic(u, p)
        } else if let Some(b64) = a.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| fail(format!("auths.{key}.auth: {e}")))?;
            let s = String::from_utf8(raw).map_err(|e| fail(format!("auths.{key}.auth: {e}")))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| fail(format!("auths.{key}.auth: expected user:password")))?;
            RegistryAuth::Basic(u.to_string(), p.to_string())
        } else {
            continue;
        };
        out.insert(normalise_host(&key), auth);
    }
    Ok(out)
}

/// Registry credentials one request may use (from its namespace's pull
/// secrets), with a fingerprint that keys every cache, so results fetched
/// with one namespace's credentials are never served to another.
#[derive(Clone, Default)]
pub struct Credentials {
    auths: BTreeMap<String, RegistryAuth>,
    fingerprint: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("registries", &self.auths.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// No credentials beyond the server's own (`--registry-config`).
    pub fn none() -> Self {
        Self::default()
    }

    /// Credentials per registry host.
    pub fn from_auths(auths: HashMap<String, RegistryAuth>) -> Self {
        let auths: BTreeMap<String, RegistryAuth> = auths
            .into_iter()
            .map(|(h, a)| (normalise_host(&h), a))
            .collect();
        let mut h = Sha256::new();
        for (host, auth) in &auths {
            h.update(host.as_bytes());
            match auth {
                RegistryAuth::Anonymous => h.update(b"\0anon"),
                RegistryAuth::Basic(u, p) => {
                    h.update(b"\0basic\0");
                    h.update(u.as_bytes());
                    h.update(b"\0");
                    h.update(p.as_bytes());
                }
                RegistryAuth::Bearer(t) => {
                    h.update(b"\0bearer\0");
                    h.update(t.as_bytes());
                }
            }
            h.update(b"\n");
        }
        let fingerprint = if auths.is_empty() {
            String::new()
        } else {
            hex::encode(h.finalize())
        };
        Credentials { auths, fingerprint }
    }

    /// Empty for no credentials; otherwise a hash of them.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.auths.is_empty()
    }
}

/// Which registries share one limit of concurrent requests.
struct Limits {
    total: Arc<Semaphore>,
    per_registry: moka::sync::Cache<String, Arc<Semaphore>>,
    per_registry_max: usize,
}

impl Limits {
    fn new(opts: &RegistryOptions) -> Self {
        Limits {
            total: Arc::new(Semaphore::new(opts.max_requests.max(1))),
            // Bounded: a broad glob can name any number of registries.
            per_registry: moka::sync::Cache::builder()
                .max_capacity(4_096)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            per_registry_max: opts.max_requests_per_registry.max(1),
        }
    }

    /// Waits for a slot (callers run under the request's deadline, so the
    /// wait is bounded in time; the waiters are bounded by the in-flight
    /// reviews and the images each verifies at once).
    async fn acquire(&self, registry: &str) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        let host = self.per_registry.get_with(registry.to_string(), || {
            Arc::new(Semaphore::new(self.per_registry_max))
        });
        // The semaphores are never closed, so acquiring cannot fail.
        let host = host.acquire_owned().await.expect("semaphore never closed");
        let total = self
            .total
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        (host, total)
    }
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
}

/// Shared by a client and every per-credential client derived from it: the
/// connection pool, the request limits and the TLS roots.
struct Shared {
    http: reqwest::Client,
    limits: Limits,
    opts: RegistryOptions,
    /// (credentials fingerprint, registry, repository) → token.
    tokens: moka::sync::Cache<(String, String, String), Token>,
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
                opts: opts.clone(),
                tokens: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(Duration::from_secs(3_600))
                    .build(),
            }),
            auths,
            fingerprint: String::new(),
        })
    }

    /// A client sharing this one's connections and limits whose credentials
    /// are this client's overlaid with `creds`.
    pub fn with_credentials(&self, creds: &Credentials) -> Result<Self, RegistryConfigError> {
        let mut auths = self.auths.clone();
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
        let insecure = self.shared.opts.insecure.iter().any(|h| {
            h.eq_ignore_ascii_case(registry)
                || crate::image::canonical_registry(h) == crate::image::canonical_registry(registry)
        });
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
        let what = || format!("{}{}", reference.registry(), path);
        let mut resp = self.send(reference, Method::GET, path, accept).await?;
        let registry = reference.registry().to_string();
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(RegistryError::TooLarge {
                registry,
                what: what(),
                limit,
            });
        }
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
        let mut authorization = cached.map(|t| format!("Bearer {}", t.value));
        let mut answered_challenge = false;
        loop {
            let mut req = self
                .shared
                .http
                .request(method.clone(), &url)
                .header(ACCEPT, accept);
            if let Some(a) = &authorization {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| transport_error(registry, &e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(LimitedResponse {
                    inner: resp,
                    _permits: permits,
                });
            }
            if status == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge);
                authorization = match challenge {
                    Some(Challenge::Basic) => match self.auth_for(registry) {
                        Some(RegistryAuth::Basic(u, p)) => Some(basic(u, p)),
                        _ => None,
                    },
                    Some(Challenge::Bearer(params)) => {
                        let token = self.token(registry, repository, &params).await?;
                        self.shared.tokens.insert(token_key.clone(), token.clone());
                        Some(format!("Bearer {}", token.value))
                    }
                    None => None,
                };
                if authorization.is_some() {
                    continue;
                }
            }
            return Err(self.status_error(reference, resp).await);
        }
    }

    /// Gets a token from the token server named in a `Bearer` challenge.
    async fn token(
        &self,
        registry: &str,
        repository: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Token, RegistryError> {
        let fail = |reason: String| RegistryError::Unauthorized {
            registry: registry.to_string(),
            repository: repository.to_string(),
            reason,
        };
        let realm = params
            .get("realm")
            .ok_or_else(|| fail("token challenge without a realm".into()))?;
        let service = params.get("service").cloned().unwrap_or_default();
        let scope = format!("repository:{repository}:pull");
        let auth = self.auth_for(registry);
        let req = match auth {
            // An identity token is an OAuth2 refresh token (docker's flow).
            Some(RegistryAuth::Bearer(refresh)) => self.shared.http.post(realm).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service.as_str()),
                ("scope", scope.as_str()),
                ("client_id", "sigil"),
            ]),
            _ => {
                let req = self
                    .shared
                    .http
                    .get(realm)
                    .query(&[("service", service.as_str()), ("scope", scope.as_str())]);
                match auth {
                    Some(RegistryAuth::Basic(u, p)) => req.header(AUTHORIZATION, basic(u, p)),
                    _ => req,
                }
            }
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| transport_error(registry, &e))?;
        if !resp.status().is_success() {
            return Err(fail(format!(
                "token server {realm} answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transport_error(registry, &e))?
        {
            if body.len() + chunk.len() > MAX_TOKEN_BYTES {
                return Err(fail(format!("token server {realm} sent too much")));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            fail(format!(
                "token server {realm} sent an unreadable answer: {e}"
            ))
        })?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail(format!("token server {realm} sent no token")))?;
        // Docker's default lifetime is 60 s; renew a little early.
        let lifetime = answer.expires_in.unwrap_or(60).clamp(10, 3_600);
        Ok(Token {
            value,
            expires: Instant::now() + Duration::from_secs(lifetime - 5),
        })
    }

    /// The error for a failed answer, with the registry's own error code
    /// when its (capped) body says one.
    async fn status_error(&self, reference: &Reference, resp: reqwest::Response) -> RegistryError {
        let registry = reference.registry().to_string();
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let detail = read_error_body(resp).await;
        match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                reference: reference.whole(),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                registry,
                repository: reference.repository().to_string(),
                reason: detail.unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
            },
            StatusCode::TOO_MANY_REQUESTS => RegistryError::Throttled {
                registry,
                retry_after,
            },
            s => RegistryError::Protocol {
                registry,
                reason: match detail {
                    Some(d) => format!("HTTP {}: {d}", s.as_u16()),
                    None => format!("HTTP {}", s.as_u16()),
                },
            },
        }
    }
}

/// A response whose request-limit permits are released when it is dropped.
struct LimitedResponse {
    inner: reqwest::Response,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl LimitedResponse {
    fn headers(&self) -> &HeaderMap<HeaderValue> {
        self.inner.headers()
    }
    fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }
    async fn chunk(&mut self) -> reqwest::Result<Option<bytes::Bytes>> {
        self.inner.chunk().await
    }
}

/// The registry's error message (`{"errors":[{"code","message"}]}`), read
/// from at most [`MAX_ERROR_BODY_BYTES`].
async fn read_error_body(mut resp: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY_BYTES {
            break;
        }
    }
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let env: Envelope = serde_json::from_slice(&body).ok()?;
    let text: Vec<String> = env
        .errors
        .iter()
        .take(3)
        .map(|e| {
            // Registry text reaches deny messages: no control characters
            // (a newline would forge another deny line), bounded length.
            let clean = |t: &str, n: usize| -> String {
                t.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(n)
                    .collect()
            };
            format!("{}: {}", clean(&e.code, 40), clean(&e.message, 200))
        })
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer(BTreeMap<String, String>),
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
fn parse_challenge(header: &str) -> Challenge {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::Basic;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    Challenge::Bearer(params)
}

/// A digest sigil will put in a URL: `sha256:` and 64 lowercase hex digits.
fn check_digest(registry: &str, digest: &str) -> Result<(), RegistryError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
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

/// The innermost cause of an error, lowercased the way people read it
/// (`connection refused`, not `Connection refused (os error 111)`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
            std::io::ErrorKind::TimedOut => return "timed out".into(),
            std::io::ErrorKind::UnexpectedEof => return "connection closed mid-answer".into(),
            _ => {}
        }
    }
    cur.to_string()
}

fn transport_error(registry: &str, e: &reqwest::Error) -> RegistryError {
    let registry = registry.to_string();
    if e.is_timeout() {
        RegistryError::Timeout { registry }
    } else if e.is_connect() {
        RegistryError::Unreachable {
            registry,
            reason: root_cause(e),
        }
    } else {
        RegistryError::Protocol {
            registry,
            reason: root_cause(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"127.0.0.1:5000":{"username":"a","password":"b"}}}"#,
        )
        .unwrap();
        let a = read_docker_config(&p).unwrap();
        assert!(
            matches!(a.get("index.docker.io"), Some(RegistryAuth::Basic(u, p)) if u == "user" && p == "pass")
        );
        assert!(matches!(a.get("127.0.0.1:5000"), Some(RegistryAuth::Basic(u, _)) if u == "a"));
    }
}
