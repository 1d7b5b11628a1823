//! The CustomResourceDefinitions sigil serves, generated from the Rust types
//! (`sigil crd`), and checked into `crds/` (a test fails on drift).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::crd::merge_crds;
use kube::CustomResourceExt;

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

/// Every CRD, by its name (`crds/<name>.yaml` holds it).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![cluster_image_policy(), trust_root()]
}

/// One CRD as a YAML document (`---` first).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, String> {
    Ok(format!(
        "---\n{}",
        serde_saphyr::to_string(crd).map_err(|e| e.to_string())?
    ))
}

/// Every CRD as one multi-document YAML text.
pub fn all_yaml() -> Result<String, String> {
    all().iter().map(to_yaml).collect()
}
