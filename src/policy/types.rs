//! `ClusterImagePolicy` as sigstore policy-controller defines it
//! (`policy.sigstore.dev`, v1alpha1 and v1beta1 share this schema), so that
//! policy-controller manifests parse unchanged. Field names follow its JSON.

use k8s_openapi::api::core::v1::{LocalObjectReference, SecretReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::identity::Claim;

use crate::model::status::PolicyStatus;

/// The API group of policy-controller's resources, which sigil shares.
pub const GROUP: &str = "policy.sigstore.dev";

/// The images a policy covers and the authorities that must vouch for them.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.sigstore.dev",
    version = "v1beta1",
    kind = "ClusterImagePolicy",
    shortname = "cip",
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Violations","type":"integer","jsonPath":".status.workloads.fail"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterImagePolicySpec {
    /// Globs of the image names this policy applies to.
    pub images: Vec<ImagePattern>,
    /// Ways to find and verify signatures; any one passing is enough.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<Authority>,
    /// A policy evaluated over all authorities' results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// `enforce` (default), `warn`, or sigil's `audit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Restricts the policy to some resources.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_resources: Vec<MatchResource>,
}

/// One image glob.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePattern {
    /// policy-controller glob (`*` within a segment, `**` across).
    pub glob: String,
}

/// A way to find and verify signatures (exactly one of key, keyless,
/// static, notation).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authority {
    /// Name used in messages and policies; defaults to `authority-<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyRef>,
    /// Fulcio certificate identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessRef>,
    /// A fixed pass or fail.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_ref: Option<StaticRef>,
    /// sigil's extension: Notation (Notary Project) signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notation: Option<NotationRef>,
    /// Where signatures are stored when not beside the image.
    #[serde(default, rename = "source", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// Transparency log requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctlog: Option<TLog>,
    /// Attestations that must be present and verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<Attestation>,
    /// RFC 3161 timestamp authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc3161timestamp: Option<Rfc3161Timestamp>,
    /// `legacy` (default) or `bundle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_format: Option<String>,
}

/// sigil's extension: Notation (Notary Project v2) signatures, OCI 1.1
/// referrers of the image, verified against a trust store.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotationRef {
    /// The certificates trusted.
    pub trust_store: NotationTrustStore,
    /// `*` (any signer the trust store admits) or `x509.subject: DN` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_identities: Vec<String>,
    /// strict (default), permissive, audit or skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_level: Option<String>,
}

/// A Notation trust store, inline.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotationTrustStore {
    /// PEM bundle: the CA or self-signed signing certificates trusted.
    pub certificates: String,
    /// PEM bundle: TSA roots for RFC 3161 countersignatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa_certificates: Option<String>,
    /// PEM bundle of `X509 CRL`s: revocation lists for the signing chain
    /// (sigil is offline; without them revocation is skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crls: Option<String>,
}

/// A public key, inline, in a Secret or in a KMS (exactly one).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRef {
    /// Secret holding the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    /// PEM public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// KMS URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<String>,
    /// sha224, sha256 (default), sha384 or sha512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_algorithm: Option<String>,
}

/// Keyless (Fulcio) verification settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeylessRef {
    /// Fulcio URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Accepted certificate identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Identity>,
    /// A private CA.
    #[serde(default, rename = "ca-cert", skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<KeyRef>,
    /// TrustRoot resource to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root_ref: Option<String>,
    /// Skip the SCT check.
    #[serde(
        default,
        rename = "insecureIgnoreSCT",
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_ignore_sct: Option<bool>,
}

/// A certificate identity (exact or regular expression).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Exact OIDC issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Exact subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Issuer regular expression.
    #[serde(
        default,
        rename = "issuerRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub issuer_reg_exp: Option<String>,
    /// Subject regular expression.
    #[serde(
        default,
        rename = "subjectRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub subject_reg_exp: Option<String>,
    // Fulcio's claims about the workload that asked for the certificate:
    // each one set must hold too (sigil's extension of policy-controller's
    // identity, in the names Fulcio gives its extensions).
    /// The repository the artifact was built from (`https://github.com/acme/app`), Fulcio's 1.3.6.1.4.1.57264.1.12.
    #[serde(
        default,
        rename = "sourceRepositoryURI",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_repository_uri: Option<String>,
    /// `sourceRepositoryURI` as a regular expression (the whole value must match).
    #[serde(
        default,
        rename = "sourceRepositoryURIRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_repository_uri_reg_exp: Option<String>,
    /// The ref it was built from (`refs/heads/main`), .1.14.
    #[serde(
        default,
        rename = "sourceRepositoryRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_repository_ref: Option<String>,
    /// `sourceRepositoryRef` as a regular expression (the whole value must match).
    #[serde(
        default,
        rename = "sourceRepositoryRefRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_repository_ref_reg_exp: Option<String>,
    /// The commit it was built from, .1.13.
    #[serde(
        default,
        rename = "sourceRepositoryDigest",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_repository_digest: Option<String>,
    /// The repository's owner (`https://github.com/acme`), .1.16.
    #[serde(
        default,
        rename = "sourceRepositoryOwnerURI",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_repository_owner_uri: Option<String>,
    /// `sourceRepositoryOwnerURI` as a regular expression (the whole value must match).
    #[serde(
        default,
        rename = "sourceRepositoryOwnerURIRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_repository_owner_uri_reg_exp: Option<String>,
    /// The build configuration that asked for the certificate, with its ref (a reusable workflow), .1.9.
    #[serde(
        default,
        rename = "buildSignerURI",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_signer_uri: Option<String>,
    /// `buildSignerURI` as a regular expression (the whole value must match).
    #[serde(
        default,
        rename = "buildSignerURIRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_signer_uri_reg_exp: Option<String>,
    /// The commit of that configuration, .1.10.
    #[serde(
        default,
        rename = "buildSignerDigest",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_signer_digest: Option<String>,
    /// The event that started the build (`push`, `release`), .1.20.
    #[serde(
        default,
        rename = "buildTrigger",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_trigger: Option<String>,
    /// `buildTrigger` as a regular expression (the whole value must match).
    #[serde(
        default,
        rename = "buildTriggerRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_trigger_reg_exp: Option<String>,
    /// `github-hosted` or `self-hosted`, .1.11.
    #[serde(
        default,
        rename = "runnerEnvironment",
        skip_serializing_if = "Option::is_none"
    )]
    pub runner_environment: Option<String>,
    /// The build configuration that ran (a workflow file with its ref), .1.18.
    #[serde(
        default,
        rename = "buildConfigURI",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_config_uri: Option<String>,
    /// `buildConfigURI` as a regular expression (the whole value must match).
    #[serde(
        default,
        rename = "buildConfigURIRegExp",
        skip_serializing_if = "Option::is_none"
    )]
    pub build_config_uri_reg_exp: Option<String>,
    /// GitHub's workflow trigger, .1.2 (cosign's `--certificate-github-workflow-trigger`).
    #[serde(
        default,
        rename = "githubWorkflowTrigger",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_workflow_trigger: Option<String>,
    /// GitHub's workflow commit, .1.3.
    #[serde(
        default,
        rename = "githubWorkflowSha",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_workflow_sha: Option<String>,
    /// GitHub's workflow name, .1.4.
    #[serde(
        default,
        rename = "githubWorkflowName",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_workflow_name: Option<String>,
    /// GitHub's `owner/repository`, .1.5.
    #[serde(
        default,
        rename = "githubWorkflowRepository",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_workflow_repository: Option<String>,
    /// GitHub's ref, .1.6.
    #[serde(
        default,
        rename = "githubWorkflowRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_workflow_ref: Option<String>,
}

impl Identity {
    /// The claims this identity names: (claim, exact, pattern).
    pub fn claims(&self) -> Vec<(Claim, Option<&str>, Option<&str>)> {
        fn both<'a>(
            e: &'a Option<String>,
            p: &'a Option<String>,
        ) -> (Option<&'a str>, Option<&'a str>) {
            (e.as_deref(), p.as_deref())
        }
        [
            (
                Claim::SourceRepositoryUri,
                both(
                    &self.source_repository_uri,
                    &self.source_repository_uri_reg_exp,
                ),
            ),
            (
                Claim::SourceRepositoryRef,
                both(
                    &self.source_repository_ref,
                    &self.source_repository_ref_reg_exp,
                ),
            ),
            (
                Claim::SourceRepositoryDigest,
                both(&self.source_repository_digest, &None),
            ),
            (
                Claim::SourceRepositoryOwnerUri,
                both(
                    &self.source_repository_owner_uri,
                    &self.source_repository_owner_uri_reg_exp,
                ),
            ),
            (
                Claim::BuildSignerUri,
                both(&self.build_signer_uri, &self.build_signer_uri_reg_exp),
            ),
            (
                Claim::BuildSignerDigest,
                both(&self.build_signer_digest, &None),
            ),
            (
                Claim::BuildTrigger,
                both(&self.build_trigger, &self.build_trigger_reg_exp),
            ),
            (
                Claim::RunnerEnvironment,
                both(&self.runner_environment, &None),
            ),
            (
                Claim::BuildConfigUri,
                both(&self.build_config_uri, &self.build_config_uri_reg_exp),
            ),
            (
                Claim::GithubWorkflowTrigger,
                both(&self.github_workflow_trigger, &None),
            ),
            (
                Claim::GithubWorkflowSha,
                both(&self.github_workflow_sha, &None),
            ),
            (
                Claim::GithubWorkflowName,
                both(&self.github_workflow_name, &None),
            ),
            (
                Claim::GithubWorkflowRepository,
                both(&self.github_workflow_repository, &None),
            ),
            (
                Claim::GithubWorkflowRef,
                both(&self.github_workflow_ref, &None),
            ),
        ]
        .into_iter()
        .filter(|(_, (e, p))| e.is_some_and(|e| !e.is_empty()) || p.is_some())
        .map(|(c, (e, p))| (c, e.filter(|e| !e.is_empty()), p))
        .collect()
    }
}

/// A fixed verdict.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticRef {
    /// `pass` or `fail`.
    pub action: String,
    /// Message shown on `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where signatures live.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Repository that holds the signatures, e.g. `registry.example/sigs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    /// Pull secrets for that repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signature_pull_secrets: Vec<LocalObjectReference>,
    /// Prefix of the signature tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_prefix: Option<String>,
    /// sigil extension: the authority's Sigstore bundles are listed by
    /// GitHub's attestation API (for attestations never pushed to the
    /// registry) instead of read from the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_attestations: Option<GithubAttestations>,
}

/// GitHub's attestation API as a source of Sigstore bundles.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GithubAttestations {
    /// The organisation or user whose attestations are listed
    /// (`/orgs/{owner}/attestations/{digest}`).
    pub owner: String,
    /// A repository of the owner, to list `/repos/{owner}/{repository}/attestations/{digest}` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The API's base URL (default `https://api.github.com`; GitHub
    /// Enterprise Server: `https://HOST/api/v3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Secret in sigil's namespace holding one entry, the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretReference>,
    /// The token, read from `tokenSecretRef` by the cluster watch; never
    /// part of the resource.
    #[serde(skip)]
    pub token: Option<String>,
}

/// Transparency log settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TLog {
    /// Rekor URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// TrustRoot resource to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root_ref: Option<String>,
}

/// An attestation requirement.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attestation {
    /// Name referenced by policies.
    pub name: String,
    /// Predicate type (cosign short name or URI).
    pub predicate_type: String,
    /// Policy over the attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// RFC 3161 timestamp settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rfc3161Timestamp {
    /// TrustRoot resource to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root_ref: Option<String>,
}

/// A policy program (rego, cel, cue) and where it comes from.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Language.
    #[serde(rename = "type")]
    pub policy_type: String,
    /// Inline program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Remote program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemotePolicy>,
    /// Program in a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapReference>,
    /// Fetch the image config for the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_config_file: Option<bool>,
    /// Include the resource spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_spec: Option<bool>,
    /// Include the object metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_object_meta: Option<bool>,
    /// Include the type metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_type_meta: Option<bool>,
}

/// A remote policy program.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemotePolicy {
    /// URL of the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Required sha256 of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256sum: Option<String>,
}

/// A key in a ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapReference {
    /// ConfigMap name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ConfigMap namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Key inside the ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Selects resources by group/version/resource and labels.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchResource {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Resource (plural).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}
