//! The CustomResourceDefinitions sigil serves, generated from the Rust types
//! (`sigil crd`), and checked into `crds/` (a test fails on drift).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::crd::merge_crds;
use kube::CustomResourceExt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionNames;

use crate::kyverno::types::{ImageValidatingPolicy, NAMESPACED_KIND};
use crate::policy::types::ClusterImagePolicy;

/// `clusterimagepolicies.policy.sigstore.dev`: v1alpha1 and v1beta1 with the
/// same schema (conversion `None`), v1beta1 stored, status subresource,
/// printer columns Mode, Ready, Age.
pub fn cluster_image_policy() -> CustomResourceDefinition {
    let beta = ClusterImagePolicy::crd();
    let mut alpha = beta.clone();
    for v in &mut alpha.spec.versions {
        v.name = "v1alpha1".to_string();
    }
    // Both inputs come from one derive, so they always agree on group, kind
    // and names; merging cannot fail.
    merge_crds(vec![alpha, beta], "v1beta1")
        .unwrap_or_else(|e| unreachable!("CRD versions disagree: {e}"))
}

/// `trustroots.policy.sigstore.dev`: v1alpha1, cluster-scoped.
pub fn trust_root() -> CustomResourceDefinition {
    crate::trust::types::TrustRoot::crd()
}

/// `imagevalidatingpolicies.policies.kyverno.io`, Kyverno's kind as
/// sigil reads it: v1, v1beta1 (stored) and v1alpha1 (deprecated) with one
/// schema, cluster-scoped, status subresource. Installed by the chart only
/// where Kyverno's own CRD is absent.
pub fn image_validating_policy() -> CustomResourceDefinition {
    let mut beta = ImageValidatingPolicy::crd();
    // No defaults in the schema: every field's absence already means its
    // default to sigil, and kube-apiserver 1.20 turns a `default: []`
    // inside a list's items into null and then refuses the object.
    for v in &mut beta.spec.versions {
        if let Some(schema) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut json = serde_json::to_value(&*schema).unwrap_or_default();
            strip_defaults(&mut json);
            if let Ok(stripped) = serde_json::from_value(json) {
                *schema = stripped;
            }
        }
    }
    let version = |name: &str, deprecated: bool| {
        let mut v = beta.clone();
        for version in &mut v.spec.versions {
            version.name = name.to_string();
            version.deprecated = deprecated.then_some(true);
        }
        v
    };
    merge_crds(
        vec![
            version("v1", false),
            beta.clone(),
            version("v1alpha1", true),
        ],
        "v1beta1",
    )
    .unwrap_or_else(|e| unreachable!("CRD versions disagree: {e}"))
}

fn strip_defaults(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("default");
            m.values_mut().for_each(strip_defaults);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

/// `namespacedimagevalidatingpolicies.policies.kyverno.io`: the same
/// schema, namespaced, v1 and v1beta1 (stored).
pub fn namespaced_image_validating_policy() -> CustomResourceDefinition {
    let mut crd = image_validating_policy();
    crd.spec.versions.retain(|v| v.name != "v1alpha1");
    crd.spec.scope = "Namespaced".to_string();
    crd.spec.names = CustomResourceDefinitionNames {
        kind: NAMESPACED_KIND.to_string(),
        list_kind: Some(format!("{NAMESPACED_KIND}List")),
        plural: "namespacedimagevalidatingpolicies".to_string(),
        singular: Some("namespacedimagevalidatingpolicy".to_string()),
        short_names: Some(vec!["nivpol".to_string()]),
        categories: Some(vec!["kyverno".to_string()]),
    };
    crd.metadata.name = Some("namespacedimagevalidatingpolicies.policies.kyverno.io".to_string());
    crd
}

/// Every CRD sigil owns, by its name (`crds/<name>.yaml` holds it).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![cluster_image_policy(), trust_root()]
}

/// Kyverno's two kinds (`crds/kyverno/<name>.yaml`; the chart installs
/// them only where Kyverno's are absent).
pub fn kyverno() -> Vec<CustomResourceDefinition> {
    vec![
        image_validating_policy(),
        namespaced_image_validating_policy(),
    ]
}

/// One CRD as a YAML document (`---` first).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, String> {
    Ok(format!(
        "---\n{}",
        serde_saphyr::to_string(crd).map_err(|e| e.to_string())?
    ))
}

/// Every CRD (sigil's, then Kyverno's kinds) as one multi-document YAML text.
pub fn all_yaml() -> Result<String, String> {
    all().iter().chain(kyverno().iter()).map(to_yaml).collect()
}
