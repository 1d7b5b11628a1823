//! Registry access through oci-client: tag resolution, signature manifests
//! and blobs, with credentials from a docker `config.json`, plain-HTTP hosts,
//! private CAs and timeouts. Errors are classified so that a deny message can
//! say whether the registry failed or simply had nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::image::DOCKER_HUB;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
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
}

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
    /// Whether the failure says nothing about the image itself (so must not be cached).
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
    match host {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
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

/// Registry client shared by all requests (oci-client's `Client` takes `&self`
/// and is safe to share). oci-client remembers one credential per registry,
/// so each distinct credential set gets its own client ([`RegistryClient::with_credentials`]).
pub struct RegistryClient {
    client: Client,
    auths: HashMap<String, RegistryAuth>,
    opts: RegistryOptions,
}

impl RegistryClient {
    /// Builds the client; reads CA files and credentials.
    pub fn new(opts: &RegistryOptions) -> Result<Self, RegistryConfigError> {
        let mut extra = Vec::new();
        for path in &opts.ca_files {
            let data = std::fs::read(path).map_err(|e| RegistryConfigError {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            extra.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let auths = match &opts.docker_config {
            Some(p) => read_docker_config(p)?,
            None => HashMap::new(),
        };
        let config = ClientConfig {
            protocol: if opts.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(opts.insecure.clone())
            },
            extra_root_certificates: extra,
            connect_timeout: opts.connect_timeout,
            read_timeout: opts.read_timeout,
            ..Default::default()
        };
        Ok(RegistryClient {
            client: Client::new(config),
            auths,
            opts: opts.clone(),
        })
    }

    /// A client with the same settings whose credentials are this client's
    /// overlaid with `creds`.
    pub fn with_credentials(&self, creds: &Credentials) -> Result<Self, RegistryConfigError> {
        let mut client = Self::new(&RegistryOptions {
            docker_config: None,
            ..self.opts.clone()
        })?;
        client.auths = self.auths.clone();
        client
            .auths
            .extend(creds.auths.iter().map(|(h, a)| (h.clone(), a.clone())));
        Ok(client)
    }

    /// The underlying oci-client (for pushing in tests and the demo).
    pub fn inner(&self) -> &Client {
        &self.client
    }

    fn auth_for(&self, registry: &str) -> RegistryAuth {
        self.auths
            .get(registry)
            .cloned()
            .unwrap_or(RegistryAuth::Anonymous)
    }

    /// Resolves a reference to the digest the registry serves for it (for a
    /// multi-arch image, the index digest).
    pub async fn resolve(&self, reference: &Reference) -> Result<String, RegistryError> {
        let auth = self.auth_for(reference.registry());
        self.client
            .fetch_manifest_digest(reference, &auth)
            .await
            .map_err(|e| classify(reference, e))
    }

    /// Fetches an image manifest; `Ok(None)` when the tag does not exist.
    pub async fn image_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<(OciImageManifest, String)>, RegistryError> {
        let auth = self.auth_for(reference.registry());
        match self.client.pull_manifest(reference, &auth).await {
            Ok((OciManifest::Image(m), digest)) => Ok(Some((m, digest))),
            Ok((OciManifest::ImageIndex(_), _)) => Err(RegistryError::Protocol {
                registry: reference.registry().to_string(),
                reason: format!(
                    "{} is an image index, expected an image manifest",
                    reference.whole()
                ),
            }),
            Err(e) => match classify(reference, e) {
                RegistryError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Fetches a blob of at most `limit` bytes; oci-client checks its digest.
    pub async fn blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        if descriptor.size < 0 || descriptor.size as u64 > limit as u64 {
            return Err(RegistryError::Protocol {
                registry: reference.registry().to_string(),
                reason: format!(
                    "blob {} is {} bytes, over the {limit}-byte limit",
                    descriptor.digest, descriptor.size
                ),
            });
        }
        let auth = self.auth_for(reference.registry());
        self.client
            .store_auth_if_needed(reference.registry(), &auth)
            .await;
        let mut out = Vec::with_capacity(descriptor.size as usize);
        self.client
            .pull_blob(reference, descriptor, &mut out)
            .await
            .map_err(|e| classify(reference, e))?;
        if out.len() > limit {
            return Err(RegistryError::Protocol {
                registry: reference.registry().to_string(),
                reason: format!("blob {} exceeds {limit} bytes", descriptor.digest),
            });
        }
        Ok(out)
    }
}

impl RegistryClient {
    /// The referrers of `subject` (a digest reference): the OCI 1.1
    /// referrers API, or, where the registry has none (404), the
    /// `sha256-<hex>` referrers tag index. No referrers is an empty list.
    pub async fn referrers(
        &self,
        subject: &Reference,
    ) -> Result<Vec<oci_client::manifest::ImageIndexEntry>, RegistryError> {
        let auth = self.auth_for(subject.registry());
        self.client
            .store_auth_if_needed(subject.registry(), &auth)
            .await;
        match self.client.pull_referrers(subject, None).await {
            Ok(index) => Ok(index.manifests),
            Err(e) => match classify(subject, e) {
                RegistryError::NotFound { .. } => Ok(Vec::new()),
                other => Err(other),
            },
        }
    }
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
            _ => {}
        }
    }
    cur.to_string()
}

fn classify(reference: &Reference, e: OciDistributionError) -> RegistryError {
    let registry = reference.registry().to_string();
    let not_found = || RegistryError::NotFound {
        reference: reference.whole(),
    };
    match e {
        OciDistributionError::RequestError(re) => {
            if re.is_timeout() {
                RegistryError::Timeout { registry }
            } else if re.is_connect() {
                RegistryError::Unreachable {
                    registry,
                    reason: root_cause(&re),
                }
            } else {
                RegistryError::Protocol {
                    registry,
                    reason: root_cause(&re),
                }
            }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found()
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                RegistryError::Unauthorized {
                    registry,
                    repository: reference.repository().to_string(),
                    reason: envelope.to_string(),
                }
            } else {
                RegistryError::Protocol {
                    registry,
                    reason: envelope.to_string(),
                }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => not_found(),
        OciDistributionError::UnauthorizedError { url }
        | OciDistributionError::AuthenticationFailure(url) => RegistryError::Unauthorized {
            registry,
            repository: reference.repository().to_string(),
            reason: url,
        },
        other => RegistryError::Protocol {
            registry,
            reason: other.to_string(),
        },
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
