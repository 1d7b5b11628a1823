//! Registry credentials: a docker `config.json` (the `--registry-config`
//! file, or a pull secret's `.dockerconfigjson` / `.dockercfg`) and the
//! credential set of one request, fingerprinted so caches never serve one
//! namespace's results to another.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use sha2::{Digest, Sha256};

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
    pub(super) auths: BTreeMap<String, RegistryAuth>,
    fingerprint: String,
    /// Only these: sigil's own `--registry-config` is not added.
    pub(super) exclusive: bool,
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
        Credentials {
            auths,
            fingerprint,
            exclusive: false,
        }
    }

    /// These credentials alone, without sigil's own `--registry-config`
    /// under them (a separate cache key: nothing read with sigil's own
    /// credentials is served to a request limited to its own).
    pub fn exclusive(&self) -> Self {
        Credentials {
            auths: self.auths.clone(),
            fingerprint: format!("only:{}", self.fingerprint),
            exclusive: true,
        }
    }

    /// Empty for no credentials; otherwise a hash of them.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether there are none, and sigil's own apply.
    pub fn is_empty(&self) -> bool {
        self.auths.is_empty() && !self.exclusive
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
