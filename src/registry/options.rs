//! How registries are reached (plain-HTTP hosts, CAs, credentials,
//! timeouts, concurrency) and every limit on what is read from them. Data
//! only: the client applies it.

use std::path::PathBuf;
use std::time::Duration;

/// Most descriptors accepted in one manifest or index.
pub use crate::limits::MAX_DESCRIPTORS;
/// Largest error body read to explain a failure.
pub(crate) use crate::limits::MAX_ERROR_BODY_BYTES;
/// Largest manifest, image index or referrers list read (1 MiB). Signature
/// manifests with dozens of keyless signatures stay well under 500 KiB.
pub use crate::limits::MAX_MANIFEST_BYTES;
/// Most redirects followed for one request.
pub(crate) use crate::limits::MAX_REDIRECTS;
/// Largest token-server answer read.
pub(crate) use crate::limits::MAX_TOKEN_BYTES;

/// The manifest media types sigil asks for.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// The media type of an OCI image index (referrers answers).
pub(crate) const INDEX_ACCEPT: &str = "application/vnd.oci.image.index.v1+json";

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
    /// Registry requests in flight at once for the reviews of one
    /// namespace (its share of `max_requests`).
    pub max_requests_per_tenant: usize,
    /// Bytes of registry answers being read at once, all namespaces
    /// (`--registry-read-memory`); one namespace may read a quarter of it.
    pub read_memory: u64,
    /// A `429` or `503` whose `Retry-After` asks for at most this long is
    /// retried once after waiting (still within the review's deadline);
    /// longer, or a second refusal, fails with the registry's answer.
    /// Zero never retries.
    pub max_retry_wait: Duration,
    /// Failures in a row (unreachable, timeout, reset, 5xx) after which a
    /// registry is not contacted for `breaker_cooldown`; 0 never.
    pub breaker_failures: u32,
    /// How long an open breaker refuses before one probe goes through.
    pub breaker_cooldown: Duration,
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
            max_requests_per_tenant: DEFAULT_MAX_REQUESTS_PER_TENANT,
            read_memory: crate::limits::DEFAULT_REGISTRY_READ_MEMORY,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
    }
}

/// Default of `--registry-breaker-cooldown`.
pub use crate::limits::DEFAULT_BREAKER_COOLDOWN;
/// Default of `--registry-breaker-failures`.
pub use crate::limits::DEFAULT_BREAKER_FAILURES;
/// Default of `--registry-concurrency`.
pub use crate::limits::DEFAULT_MAX_REQUESTS;
/// Default of `--registry-concurrency-per-host`: as the namespace's share.
pub use crate::limits::DEFAULT_MAX_REQUESTS_PER_REGISTRY;
/// Default of `--registry-concurrency-per-namespace`: a quarter of the
/// total, and as many as the images one review verifies at once
/// ([`crate::service::IMAGES_IN_PARALLEL`]), so that a Pod of up to that
/// many images fetches them all in one round trip, not in two waves.
pub use crate::limits::DEFAULT_MAX_REQUESTS_PER_TENANT;
/// Default of `--registry-max-retry-wait`: a quarter of the default
/// verification deadline.
pub use crate::limits::DEFAULT_MAX_RETRY_WAIT;
