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

/// A ClusterImagePolicy's status: readiness, and what the background
/// audit last found among running workloads.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and friends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Running workloads this policy matched at the last background
    /// audit, by result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<WorkloadCounts>,
    /// When the background audit last finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_audit_time: Option<String>,
}

/// Workloads by result: a workload counts once per policy, by its worst
/// image (fail over error over pass).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct WorkloadCounts {
    /// Every matched image passed.
    pub pass: u64,
    /// An image failed on the evidence (would be denied).
    pub fail: u64,
    /// An image could not be decided (registry, timeout).
    pub error: u64,
}
