//! `TrustRoot` as sigstore policy-controller defines it (`policy.sigstore.dev`
//! v1alpha1, cluster-scoped), so its manifests apply unchanged. Go `[]byte`
//! fields are base64 strings in JSON, as here.
//!
//! sigil adds one optional field, `validFor`, on logs and authorities: the
//! window in which a key or CA is trusted (the trusted-root JSON's
//! `validFor`), which policy-controller's schema cannot express.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::status::ResourceStatus;

/// The keys and certificates trusted for keyless verification.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.sigstore.dev",
    version = "v1alpha1",
    kind = "TrustRoot",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustRootSpec {
    /// A TUF root and remote mirror (the only case where sigil goes to the
    /// network for trust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Remote>,
    /// An air-gapped TUF repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// Bring-your-own keys and certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigstore_keys: Option<SigstoreKeys>,
}

/// A TUF root and remote mirror.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Remote {
    /// base64 of the trusted initial `root.json`.
    pub root: String,
    /// Mirror URL.
    pub mirror: String,
    /// Targets path (default `targets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<String>,
}

/// An air-gapped TUF repository.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Repository {
    /// base64 of the trusted initial `root.json`.
    pub root: String,
    /// base64 of a tar.gz of the repository (metadata and targets).
    #[serde(rename = "mirrorFS")]
    pub mirror_fs: String,
    /// Targets path inside the archive (default `targets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<String>,
}

/// Keys and certificates of one Sigstore instance.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigstoreKeys {
    /// Certificate authorities (Fulcio).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_authorities: Vec<CertificateAuthority>,
    /// Rekor logs.
    #[serde(default, rename = "tLogs", skip_serializing_if = "Vec::is_empty")]
    pub tlogs: Vec<TransparencyLogInstance>,
    /// Certificate transparency logs.
    #[serde(default, rename = "ctLogs", skip_serializing_if = "Vec::is_empty")]
    pub ctlogs: Vec<TransparencyLogInstance>,
    /// RFC 3161 timestamp authorities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamp_authorities: Vec<CertificateAuthority>,
}

/// One transparency log.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransparencyLogInstance {
    /// Base URL.
    #[serde(rename = "baseURL")]
    pub base_url: String,
    /// Merkle tree hash, e.g. `sha-256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_algorithm: Option<String>,
    /// base64 of the PEM public key.
    pub public_key: String,
    /// sigil extension: when the key is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<ValidFor>,
}

/// A certificate authority.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuthority {
    /// Subject of the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<DistinguishedName>,
    /// Where the CA can be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// base64 of the PEM chain, leaf-most first, root last.
    pub cert_chain: String,
    /// sigil extension: when the CA is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<ValidFor>,
}

/// An X.500 name, as policy-controller reduces it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DistinguishedName {
    /// O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// CN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
}

/// A validity window (RFC 3339 times; `end` omitted means open-ended).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidFor {
    /// Start of trust.
    pub start: String,
    /// End of trust (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}
