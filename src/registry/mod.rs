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
//!
//! - [`client`]: the client, request limits, capped reads, digest checks;
//! - `auth`: `WWW-Authenticate` challenges and token exchange;
//! - [`credentials`]: docker `config.json` and per-request credential sets;
//! - [`error`]: failures worded for a deny message.

mod auth;
pub mod client;
pub mod credentials;
pub mod error;

pub use client::RegistryClient;
pub use credentials::{parse_docker_config, read_docker_config, Credentials, RegistryConfigError};
pub use error::RegistryError;

use std::path::PathBuf;
use std::time::Duration;

/// Largest manifest, image index or referrers list read (1 MiB). Signature
/// manifests with dozens of keyless signatures stay well under 500 KiB.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Most descriptors accepted in one manifest or index.
pub const MAX_DESCRIPTORS: usize = 1_000;
/// Largest error body read to explain a failure.
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 16 << 10;
/// Most redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// Largest token-server answer read.
pub(crate) const MAX_TOKEN_BYTES: usize = 64 << 10;

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
