//! Kyverno's `ImageValidatingPolicy` and `NamespacedImageValidatingPolicy`
//! (`policies.kyverno.io` v1, v1beta1, v1alpha1), read unchanged and run
//! on sigil's verification core:
//!
//! - `types`: the spec, every unknown field refused;
//! - `compile`: the spec into [`CompiledIvp`] (each attestor a
//!   one-authority ClusterImagePolicy the verifier already runs; what sigil
//!   does not implement refused, naming the field);
//! - `cel_env`: the CEL bindings and Kyverno's image libraries over the
//!   verifier's [`Facts`];
//! - `judge`: the pure decision over one request.
//!
//! This module does no I/O: `service::kyverno` collects the facts, and the
//! policy directory and the cluster watch feed [`IvpStore`].

pub mod cel_env;
pub mod compile;
pub mod files;
pub mod judge;
pub mod types;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde_json::Value;

pub use cel_env::{Check, Facts, ImageFacts};
pub use compile::{AttestationKind, CompiledIvp};
pub use judge::{Applies, Input, Outcome};

use crate::model::error::{err, PolicyError};

/// One policy as read: compiled, or why not.
#[derive(Debug, Clone)]
pub enum LoadedIvp {
    /// Ready.
    Valid(Arc<CompiledIvp>),
    /// Refused: it fails closed for every request it could match.
    Invalid {
        /// `metadata.name`.
        name: String,
        /// Its namespace, for the namespaced kind.
        namespace: Option<String>,
        /// What is wrong, by field.
        error: PolicyError,
        /// What its `matchConstraints` (and `autogen`) select, when they
        /// compile by themselves: the requests it fails. `None`: every
        /// request in its namespace scope.
        scope: Option<Arc<CompiledIvp>>,
    },
}

impl LoadedIvp {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        match self {
            LoadedIvp::Valid(p) => &p.name,
            LoadedIvp::Invalid { name, .. } => name,
        }
    }

    /// What is wrong, when invalid.
    pub fn error(&self) -> Option<&PolicyError> {
        match self {
            LoadedIvp::Valid(_) => None,
            LoadedIvp::Invalid { error, .. } => Some(error),
        }
    }
}

/// A policy document: kind, name, namespace and spec.
#[derive(Debug, Clone)]
pub struct IvpDocument {
    /// `ImageValidatingPolicy` or `NamespacedImageValidatingPolicy`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (namespaced kind only).
    pub namespace: Option<String>,
    /// `spec`, as written.
    pub spec: Value,
}

/// Whether `(apiVersion, kind)` is one of the two kinds, in a served version.
pub fn is_ivp(api_version: &str, kind: &str) -> bool {
    let (group, version) = api_version.split_once('/').unwrap_or(("", ""));
    group == types::GROUP
        && types::VERSIONS.contains(&version)
        && (kind == types::KIND || kind == types::NAMESPACED_KIND)
}

/// The document of a parsed YAML/JSON object, if it is one of the two kinds.
pub fn document(doc: &Value) -> Option<Result<IvpDocument, String>> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str)?;
    let kind = doc.get("kind").and_then(Value::as_str)?;
    if !is_ivp(api_version, kind) {
        return None;
    }
    let Some(name) = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Some(Err(format!("an {kind} has no metadata.name")));
    };
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let namespace = match (kind == types::NAMESPACED_KIND, namespace) {
        (true, None) => return Some(Err(format!("{kind} {name} has no metadata.namespace"))),
        (true, ns) => ns,
        (false, _) => None,
    };
    Some(Ok(IvpDocument {
        kind: kind.to_string(),
        name: name.to_string(),
        namespace,
        spec: doc.get("spec").cloned().unwrap_or(Value::Null),
    }))
}

/// What an invalid policy's `matchConstraints` and `autogen` select, when
/// they compile by themselves.
fn scope_of(doc: &IvpDocument) -> Option<Arc<CompiledIvp>> {
    let field = |name: &str| doc.spec.get(name).cloned();
    let spec = types::IvpSpec {
        match_constraints: Some(serde_json::from_value(field("matchConstraints")?).ok()?),
        autogen: field("autogen").and_then(|a| serde_json::from_value(a).ok()),
        ..Default::default()
    };
    compile::compile(&doc.name, doc.namespace.as_deref(), &spec)
        .ok()
        .map(Arc::new)
}

/// Compiles one document.
pub fn load(doc: &IvpDocument) -> LoadedIvp {
    let invalid = |error| LoadedIvp::Invalid {
        name: doc.name.clone(),
        namespace: doc.namespace.clone(),
        error,
        scope: scope_of(doc),
    };
    let spec: types::IvpSpec = match serde_path_to_error::deserialize(&doc.spec) {
        Ok(s) => s,
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                "spec".into()
            } else {
                format!("spec.{path}")
            };
            return invalid(err(field, e.into_inner().to_string()));
        }
    };
    match compile::compile(&doc.name, doc.namespace.as_deref(), &spec) {
        Ok(p) => LoadedIvp::Valid(Arc::new(p)),
        Err(e) => invalid(e),
    }
}

/// The policies of every source (the directory, the cluster), published
/// as one snapshot.
#[derive(Default)]
pub struct IvpStore {
    sources: Mutex<BTreeMap<String, Vec<LoadedIvp>>>,
    current: ArcSwap<Vec<LoadedIvp>>,
}

impl IvpStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policies in force.
    pub fn current(&self) -> Arc<Vec<LoadedIvp>> {
        self.current.load_full()
    }

    /// Whether any policy is loaded (a review then keeps its object for CEL).
    pub fn is_empty(&self) -> bool {
        self.current.load().is_empty()
    }

    /// Replaces what `source` supplied; returns what each compiled to.
    pub fn replace_source(&self, source: &str, docs: &[IvpDocument]) -> Vec<LoadedIvp> {
        let loaded: Vec<LoadedIvp> = docs.iter().map(load).collect();
        for p in &loaded {
            match p.error() {
                None => tracing::info!(source, policy = p.name(), "ImageValidatingPolicy loaded"),
                Some(e) => {
                    tracing::error!(source, policy = p.name(), error = %e, "ImageValidatingPolicy invalid; requests it could match fail closed")
                }
            }
        }
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.insert(source.to_string(), loaded.clone());
        let all = sources.values().flatten().cloned().collect();
        self.current.store(Arc::new(all));
        loaded
    }
}

#[cfg(test)]
mod tests;
