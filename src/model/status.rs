//! The `status` sigil writes on the resources it watches: the generation
//! described and its conditions (`Ready` first). Shared by ClusterImagePolicy
//! and TrustRoot, so neither module depends on the other for it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Shared by ClusterImagePolicy and TrustRoot; the doc line below is the
// CRDs' `status` description.
/// Status written by the controller.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and friends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
