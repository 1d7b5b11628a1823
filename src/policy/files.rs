//! Loads ClusterImagePolicy manifests from a directory of YAML files
//! (multi-document) and keeps the store in step when files change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::sources::RemotePrograms;
use super::store::{PolicyDefinition, PolicyStore};
use super::types::{ClusterImagePolicySpec, GROUP};
use crate::model::error::PolicyError;
use crate::trust::{
    material_from_spec_value, material_from_spec_value_fetching, TrustError, TrustMaterial,
    TrustStore,
};

/// The store source name used for directory policies.
pub const SOURCE: &str = "files";

/// A file that could not be read as YAML.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// The YAML files of `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let rd = std::fs::read_dir(dir).map_err(|e| FileError {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_yaml(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses the ClusterImagePolicy documents of one YAML text. Documents of
/// other kinds are skipped; a document whose spec does not fit the schema
/// becomes an invalid definition naming the field.
pub fn parse_documents(text: &str) -> Result<Vec<PolicyDefinition>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut defs = Vec::new();
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, _version) = api_version.split_once('/').unwrap_or(("", ""));
        if kind == "TrustRoot" && group == GROUP {
            continue;
        }
        if kind != "ClusterImagePolicy" || group != GROUP {
            tracing::debug!(
                api_version,
                kind,
                "skipping document that is not a ClusterImagePolicy"
            );
            continue;
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("a ClusterImagePolicy has no metadata.name")?
            .to_string();
        defs.push(PolicyDefinition {
            name,
            spec: spec_from_value(doc.get("spec").cloned().unwrap_or(Value::Null)),
        });
    }
    Ok(defs)
}

/// Deserialises a spec, reporting the exact path of a bad field.
pub fn spec_from_value(spec: Value) -> Result<ClusterImagePolicySpec, (PolicyError, Vec<String>)> {
    let globs: Vec<String> = spec
        .get("images")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("glob").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        (
            PolicyError {
                field,
                message: e.into_inner().to_string(),
            },
            globs,
        )
    })
}

/// The `spec` of an object's JSON text, unparsed (`null` when it has none).
pub fn spec_json(object: &str) -> &str {
    #[derive(serde::Deserialize)]
    struct Object<'a> {
        #[serde(borrow, default)]
        spec: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_str::<Object<'_>>(object)
        .ok()
        .and_then(|o| o.spec)
        .map_or("null", |s| s.get())
}

/// [`spec_from_value`] straight from JSON text, without building a JSON
/// tree (what `/validate-policy` receives from anyone who can reach it).
pub fn spec_from_json(spec: &str) -> Result<ClusterImagePolicySpec, (PolicyError, Vec<String>)> {
    #[derive(serde::Deserialize)]
    struct Glob {
        #[serde(default)]
        glob: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Globs {
        #[serde(default)]
        images: Option<Vec<Glob>>,
    }
    let mut de = serde_json::Deserializer::from_str(spec);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let globs = serde_json::from_str::<Globs>(spec)
            .ok()
            .and_then(|g| g.images)
            .into_iter()
            .flatten()
            .filter_map(|g| g.glob)
            .collect();
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        (
            PolicyError {
                field,
                message: crate::model::error::json_message(&e.into_inner()),
            },
            globs,
        )
    })
}

/// The raw `TrustRoot` documents (name, spec) of one YAML text.
fn trust_root_documents(text: &str) -> Result<Vec<(String, Value)>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut roots = Vec::new();
    for doc in docs {
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != "TrustRoot" || api_version.split_once('/').map(|(g, _)| g) != Some(GROUP) {
            continue;
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("a TrustRoot has no metadata.name")?
            .to_string();
        roots.push((name, doc.get("spec").cloned().unwrap_or(Value::Null)));
    }
    Ok(roots)
}

fn trust_root_documents_in(dir: &Path) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for path in yaml_files(dir).unwrap_or_default() {
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| trust_root_documents(&t))
        {
            Ok(roots) => all.extend(roots),
            Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot read TrustRoots"),
        }
    }
    all
}

/// Every `TrustRoot` in `dir`, without the network (`remote` ones are
/// pending). A file that cannot be read contributes none (authorities naming
/// its roots then fail closed as missing).
pub fn load_trust_roots(dir: &Path) -> BTreeMap<String, Result<TrustMaterial, TrustError>> {
    trust_root_documents_in(dir)
        .into_iter()
        .map(|(name, spec)| {
            let m = material_from_spec_value(&name, spec);
            (name, m)
        })
        .collect()
}

/// [`load_trust_roots`], reading `remote` TUF mirrors.
pub async fn load_trust_roots_fetching(
    dir: &Path,
) -> BTreeMap<String, Result<TrustMaterial, TrustError>> {
    let mut out = BTreeMap::new();
    for (name, spec) in trust_root_documents_in(dir) {
        let m = material_from_spec_value_fetching(&name, spec).await;
        if let Err(e) = &m {
            tracing::warn!(trust_root = %name, error = %e, "TrustRoot not usable");
        }
        out.insert(name, m);
    }
    out
}

/// Whether any policy program is `remote` (then the async loader fetches it).
pub fn has_remote_programs(defs: &[PolicyDefinition]) -> bool {
    defs.iter().any(|d| {
        d.spec.as_ref().is_ok_and(|s| {
            s.policy.as_ref().is_some_and(|p| p.remote.is_some())
                || s.authorities.iter().any(|a| {
                    a.attestations
                        .iter()
                        .any(|t| t.policy.as_ref().is_some_and(|p| p.remote.is_some()))
                })
        })
    })
}

/// [`load_dir`] with `remote` programs fetched (used by `sigil check`).
pub async fn load_dir_fetching(
    dir: &Path,
    remote: &RemotePrograms,
) -> Result<Vec<PolicyDefinition>, FileError> {
    let mut defs = load_dir(dir)?;
    remote.resolve(&mut defs, None).await;
    Ok(defs)
}

/// Loads every policy in `dir`; any unreadable file is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<PolicyDefinition>, FileError> {
    let mut all = Vec::new();
    for path in yaml_files(dir)? {
        all.extend(load_file(&path)?);
    }
    Ok(all)
}

fn load_file(path: &Path) -> Result<Vec<PolicyDefinition>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_documents(&text).map_err(|reason| FileError {
        path: path.to_path_buf(),
        reason,
    })
}

type Snapshot = Vec<(PathBuf, Option<SystemTime>, u64)>;

fn snapshot(dir: &Path) -> Snapshot {
    yaml_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let md = std::fs::metadata(&p).ok();
            let mtime = md.as_ref().and_then(|m| m.modified().ok());
            let len = md.map(|m| m.len()).unwrap_or(0);
            (p, mtime, len)
        })
        .collect()
}

/// Watches `dir` and republishes its policies when a file changes. A file
/// that stops parsing keeps its last good policies (and logs why), so a typo
/// never silently drops enforcement.
pub async fn watch_dir(
    dir: PathBuf,
    store: Arc<PolicyStore>,
    trust: Option<Arc<TrustStore>>,
    interval: Duration,
) {
    if let Some(trust) = &trust {
        trust.replace_all(load_trust_roots_fetching(&dir).await);
    }
    let remote = RemotePrograms::default();
    let mut last = snapshot(&dir);
    let mut last_good: BTreeMap<PathBuf, Vec<PolicyDefinition>> = BTreeMap::new();
    for (p, _, _) in &last {
        if let Ok(defs) = load_file(p) {
            last_good.insert(p.clone(), defs);
        }
    }
    // Remote programs are fetched here, not in the synchronous first load.
    let mut defs: Vec<PolicyDefinition> = last_good.values().flatten().cloned().collect();
    if has_remote_programs(&defs) || super::kms::has_aws_keys(&defs) {
        remote.resolve(&mut defs, None).await;
        store.replace_source(SOURCE, &defs);
    }
    loop {
        tokio::time::sleep(interval).await;
        let now = snapshot(&dir);
        if now == last && !remote.refresh_due() {
            continue;
        }
        last = now;
        let mut next = BTreeMap::new();
        for (p, _, _) in &last {
            match load_file(p) {
                Ok(defs) => {
                    next.insert(p.clone(), defs);
                }
                Err(e) => {
                    tracing::error!(error = %e, "policy file unreadable; keeping its last good policies");
                    if let Some(prev) = last_good.get(p) {
                        next.insert(p.clone(), prev.clone());
                    }
                }
            }
        }
        last_good = next;
        let mut defs: Vec<PolicyDefinition> = last_good.values().flatten().cloned().collect();
        tracing::info!(dir = %dir.display(), policies = defs.len(), "policy directory changed; reloading");
        remote.resolve(&mut defs, None).await;
        store.replace_source(SOURCE, &defs);
        if let Some(trust) = &trust {
            trust.replace_all(load_trust_roots_fetching(&dir).await);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_files_and_names_bad_fields() {
        let text = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: good}
spec:
  images: [{glob: "**"}]
  authorities: [{static: {action: pass}}]
---
apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: typo}
spec:
  images: [{glob: "ghcr.io/**"}]
  authorities: [{statik: {action: pass}}]
"#;
        let defs = parse_documents(text).unwrap();
        assert_eq!(defs.len(), 2);
        assert!(defs[0].spec.is_ok());
        let (e, globs) = defs[1].spec.as_ref().unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].statik");
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert_eq!(globs, &vec!["ghcr.io/**".to_string()]);
    }
}
