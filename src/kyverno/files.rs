//! `ImageValidatingPolicy` documents in `--policy-dir`, beside the
//! ClusterImagePolicies of the same files, kept in step when files change.
//! A file that stops parsing keeps its last good policies, as for
//! ClusterImagePolicies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{document, IvpDocument, IvpStore};
use crate::policy::files::{yaml_files, FileError};

/// The store source name used for directory policies.
pub const SOURCE: &str = "files";

/// The policy documents of one YAML text.
pub fn parse_documents(text: &str) -> Result<Vec<IvpDocument>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    docs.iter().filter_map(document).collect()
}

fn load_file(path: &Path) -> Result<Vec<IvpDocument>, FileError> {
    let fail = |reason: String| FileError {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    parse_documents(&text).map_err(fail)
}

/// Every policy document of `dir`; any unreadable file is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<IvpDocument>, FileError> {
    let mut all = Vec::new();
    for path in yaml_files(dir)? {
        all.extend(load_file(&path)?);
    }
    Ok(all)
}

/// Re-reads `dir` every `interval` and republishes its policies when a
/// file changed.
pub async fn watch_dir(dir: PathBuf, store: Arc<IvpStore>, interval: Duration) {
    let mut last_good: BTreeMap<PathBuf, Vec<IvpDocument>> = BTreeMap::new();
    let mut last_text: BTreeMap<PathBuf, String> = BTreeMap::new();
    loop {
        let mut changed = false;
        let mut next = BTreeMap::new();
        let mut texts = BTreeMap::new();
        for path in yaml_files(&dir).unwrap_or_default() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            changed |= last_text.get(&path) != Some(&text);
            match parse_documents(&text) {
                Ok(docs) => {
                    next.insert(path.clone(), docs);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "policy file unreadable; keeping its last good ImageValidatingPolicies");
                    if let Some(prev) = last_good.get(&path) {
                        next.insert(path.clone(), prev.clone());
                    }
                }
            }
            texts.insert(path, text);
        }
        changed |= texts.len() != last_text.len();
        if changed {
            let docs: Vec<IvpDocument> = next.values().flatten().cloned().collect();
            store.replace_source(SOURCE, &docs);
        }
        last_good = next;
        last_text = texts;
        tokio::time::sleep(interval).await;
    }
}
