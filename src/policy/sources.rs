//! Where policy programs come from when they are not inline: `remote` (a URL
//! with a required `sha256sum`, fetched once, cached, checksum enforced) and
//! `configMapRef` (a ConfigMap in sigil's namespace, watched). Both are
//! resolved into `data` before the policy is compiled, so a changed
//! ConfigMap changes the policy's fingerprint and no old verdict is reused;
//! a body that does not match its checksum, or a missing ConfigMap, makes
//! the policy invalid, naming the field. `awskms://` keys are resolved here
//! too, through [`super::kms`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::store::PolicyDefinition;
use super::types::{ClusterImagePolicySpec, Policy};
use crate::model::error::PolicyError;

/// Largest remote program accepted.
pub use crate::limits::MAX_REMOTE_BYTES;

/// ConfigMaps by name (sigil's namespace), each a map of key → text.
pub type ConfigMaps = BTreeMap<String, BTreeMap<String, String>>;

/// Fetches and caches remote programs by (URL, sha256).
pub struct RemotePrograms {
    client: reqwest::Client,
    fetched: Mutex<HashMap<(String, String), String>>,
}

impl Default for RemotePrograms {
    fn default() -> Self {
        RemotePrograms {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            fetched: Mutex::new(HashMap::new()),
        }
    }
}

fn err(field: String, message: String) -> PolicyError {
    PolicyError { field, message }
}

impl RemotePrograms {
    /// Whether a KMS key is due for refresh (or a failed one for retry):
    /// the caller resolves and recompiles again even though nothing
    /// changed.
    pub fn refresh_due(&self) -> bool {
        super::kms::global().refresh_due()
    }

    /// The program at `url` whose sha256 must be `sha256`.
    async fn get(&self, url: &str, sha256: &str) -> Result<String, String> {
        let key = (url.to_string(), sha256.to_lowercase());
        if let Some(body) = self
            .fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(body.clone());
        }
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("cannot fetch {url}: HTTP {}", resp.status()));
        }
        // Read while it streams, stopping at the cap: the server may not
        // say how long the body is, or may never end it.
        let too_large = || format!("{url} is larger than {MAX_REMOTE_BYTES} bytes");
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_REMOTE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?
        {
            if bytes.len() + chunk.len() > MAX_REMOTE_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let got = hex::encode(Sha256::digest(&bytes));
        if got != key.1 {
            return Err(format!("the body of {url} has sha256 {got}, not {}", key.1));
        }
        let body = String::from_utf8(bytes).map_err(|_| format!("{url} is not text"))?;
        self.fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, body.clone());
        Ok(body)
    }

    /// Resolves every `remote` and `configMapRef` program of `defs` into
    /// `data`. `configmaps` is `None` outside a cluster (then a
    /// `configMapRef` stays unresolved and the policy fails closed naming it).
    pub async fn resolve(&self, defs: &mut [PolicyDefinition], configmaps: Option<&ConfigMaps>) {
        super::kms::global().resolve(defs).await;
        for def in defs.iter_mut() {
            let Ok(spec) = &mut def.spec else { continue };
            if let Err(e) = self.resolve_spec(spec, configmaps).await {
                let globs = spec.images.iter().map(|i| i.glob.clone()).collect();
                def.spec = Err((e, globs));
            }
        }
    }

    async fn resolve_spec(
        &self,
        spec: &mut ClusterImagePolicySpec,
        configmaps: Option<&ConfigMaps>,
    ) -> Result<(), PolicyError> {
        if let Some(p) = spec.policy.as_mut() {
            self.resolve_program("spec.policy", p, configmaps).await?;
        }
        for (i, a) in spec.authorities.iter_mut().enumerate() {
            for (j, att) in a.attestations.iter_mut().enumerate() {
                if let Some(p) = att.policy.as_mut() {
                    let path = format!("spec.authorities[{i}].attestations[{j}].policy");
                    self.resolve_program(&path, p, configmaps).await?;
                }
            }
        }
        Ok(())
    }

    async fn resolve_program(
        &self,
        path: &str,
        p: &mut Policy,
        configmaps: Option<&ConfigMaps>,
    ) -> Result<(), PolicyError> {
        if p.data.as_deref().is_some_and(|d| !d.is_empty()) {
            return Ok(());
        }
        if let Some(remote) = &p.remote {
            let url = remote.url.clone().unwrap_or_default();
            let sha = remote.sha256sum.clone().unwrap_or_default();
            let body = self.get(&url, &sha).await.map_err(|m| {
                let field = if m.contains("has sha256") {
                    format!("{path}.remote.sha256sum")
                } else {
                    format!("{path}.remote.url")
                };
                err(field, m)
            })?;
            // Resolved: the program is now inline (and part of the fingerprint).
            p.data = Some(body);
            p.remote = None;
            return Ok(());
        }
        if let (Some(cm), Some(maps)) = (&p.config_map_ref, configmaps) {
            let field = format!("{path}.configMapRef");
            let name = cm.name.clone().unwrap_or_default();
            let key = cm.key.clone().unwrap_or_default();
            let entries = maps.get(&name).ok_or_else(|| {
                err(
                    field.clone(),
                    format!("ConfigMap {name} not found in sigil's namespace"),
                )
            })?;
            let text = if key.is_empty() && entries.len() == 1 {
                entries.values().next().cloned()
            } else {
                entries.get(&key).cloned()
            };
            p.data = Some(text.ok_or_else(|| {
                err(
                    field.clone(),
                    format!("ConfigMap {name} has no key {key:?}"),
                )
            })?);
            p.config_map_ref = None;
        }
        Ok(())
    }
}
