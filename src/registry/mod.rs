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
//! - [`error`]: failures worded for a deny message;
//! - [`breaker`]: the circuit breaker per registry host;
//! - `shares`: who a request is charged to, and the shares of requests
//!   and bytes it takes;
//! - [`options`]: how to reach registries, and every read limit.

mod auth;
pub mod breaker;
pub mod client;
pub mod credentials;
pub mod error;
pub mod github;
pub mod options;
mod shares;

pub use client::RegistryClient;
pub use credentials::{parse_docker_config, read_docker_config, Credentials, RegistryConfigError};
pub use error::RegistryError;
pub use options::{
    RegistryOptions, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_FAILURES, DEFAULT_MAX_REQUESTS,
    DEFAULT_MAX_REQUESTS_PER_REGISTRY, DEFAULT_MAX_REQUESTS_PER_TENANT, DEFAULT_MAX_RETRY_WAIT,
    MAX_DESCRIPTORS, MAX_MANIFEST_BYTES,
};
pub use shares::{
    as_tenant, as_tenants, charged_to, current_tenants, Coalesced, Membership, Tenants,
};
