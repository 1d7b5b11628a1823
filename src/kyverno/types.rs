//! Kyverno's `ImageValidatingPolicy` and `NamespacedImageValidatingPolicy`
//! (`policies.kyverno.io`, versions `v1`, `v1beta1` and `v1alpha1`, which
//! share one schema), read field by field as Kyverno's CRD defines them.
//! Every struct refuses a field it does not know, so a policy written for a
//! newer Kyverno is refused naming the field, never half-read.
//!
//! Owns the shape only; what each field means is `compile`'s.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group both kinds live in.
pub const GROUP: &str = "policies.kyverno.io";
/// The versions served (one schema).
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];
/// The cluster-wide kind.
pub const KIND: &str = "ImageValidatingPolicy";
/// The kind that applies in its own namespace only.
pub const NAMESPACED_KIND: &str = "NamespacedImageValidatingPolicy";

/// `spec` of both kinds. The derive makes the cluster kind's CRD; the
/// namespaced kind's is the same schema (`crate::crd`).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policies.kyverno.io",
    version = "v1beta1",
    kind = "ImageValidatingPolicy",
    shortname = "ivpol",
    status = "IvpStatus",
    category = "kyverno",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".status.conditionStatus.ready"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IvpSpec {
    /// Which requests the policy sees.
    #[serde(default)]
    pub match_constraints: Option<MatchConstraints>,
    /// CEL conditions that must all be true for the policy to apply.
    #[serde(default)]
    pub match_conditions: Vec<NamedExpression>,
    /// CEL values bound as `variables.<name>`, in order.
    #[serde(default)]
    pub variables: Vec<NamedExpression>,
    /// Which images the policy verifies (glob or CEL over `image`).
    #[serde(default)]
    pub match_image_references: Vec<ImageMatch>,
    /// CEL extractors: `images.<name>` (default: the pod specs' containers).
    #[serde(default)]
    pub images: Vec<NamedExpression>,
    /// Who may sign.
    #[serde(default)]
    pub attestors: Vec<Attestor>,
    /// What may be attested.
    #[serde(default)]
    pub attestations: Vec<AttestationSpec>,
    /// CEL checks, each with its message.
    #[serde(default)]
    pub validations: Vec<Validation>,
    /// `Deny`, `Audit`, `Warn`.
    #[serde(default)]
    #[schemars(extend("items" = {"type": "string", "enum": ["Deny", "Audit", "Warn"]}))]
    pub validation_actions: Vec<String>,
    /// `Fail` (default) or `Ignore`.
    #[serde(default)]
    #[schemars(extend("enum" = ["Ignore", "Fail"]))]
    pub failure_policy: Option<String>,
    /// Tag pinning and digest rules.
    #[serde(default)]
    pub validation_configurations: Option<ValidationConfigurations>,
    /// Registry credentials.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Audit annotations (`key`, `valueExpression`).
    #[serde(default)]
    pub audit_annotations: Vec<AuditAnnotation>,
    /// Admission and background evaluation.
    #[serde(default)]
    pub evaluation: Option<Evaluation>,
    /// Rules generated for pod controllers.
    #[serde(default)]
    pub autogen: Option<Autogen>,
    /// Kyverno's own webhook settings (sigil's webhook is the chart's).
    #[serde(default)]
    pub webhook_configuration: Option<WebhookConfiguration>,
}

/// `spec.matchConstraints`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchConstraints {
    /// Resources (with operations) the policy sees.
    #[serde(default)]
    pub resource_rules: Vec<ResourceRule>,
    /// Resources excluded.
    #[serde(default)]
    pub exclude_resource_rules: Vec<ResourceRule>,
    /// Namespaces (by label) the policy sees.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Objects (by label) the policy sees.
    #[serde(default)]
    pub object_selector: Option<LabelSelector>,
    /// `Equivalent` (default) or `Exact`.
    #[serde(default)]
    pub match_policy: Option<String>,
}

/// One rule of a resource list.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRule {
    /// API groups (`""` is core, `*` any).
    #[serde(default)]
    pub api_groups: Vec<String>,
    /// API versions (`*` any).
    #[serde(default)]
    pub api_versions: Vec<String>,
    /// Operations (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`, `*`).
    #[serde(default)]
    pub operations: Vec<String>,
    /// Resources, optionally `resource/subresource` (`*` any).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names this rule is limited to.
    #[serde(default)]
    pub resource_names: Vec<String>,
    /// `Cluster`, `Namespaced` or `*`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// A named CEL expression (match conditions, variables, image extractors).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedExpression {
    /// Its name.
    pub name: String,
    /// The CEL source.
    pub expression: String,
}

/// One of `matchImageReferences`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageMatch {
    /// A glob over the image reference as written.
    #[serde(default)]
    pub glob: Option<String>,
    /// A CEL expression over `image` (a string).
    #[serde(default)]
    pub expression: Option<String>,
}

/// One attestor: exactly one of `cosign` and `notary`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attestor {
    /// How validations name it (`attestors.<name>`).
    pub name: String,
    /// A cosign (Sigstore) attestor.
    #[serde(default)]
    pub cosign: Option<Cosign>,
    /// A Notary Project attestor.
    #[serde(default)]
    pub notary: Option<Notary>,
}

/// `attestors[].cosign`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cosign {
    /// Annotations the signature's payload must carry.
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    /// A public key.
    #[serde(default)]
    pub key: Option<CosignKey>,
    /// Keyless identities.
    #[serde(default)]
    pub keyless: Option<Keyless>,
    /// A signing certificate (and chain).
    #[serde(default)]
    pub certificate: Option<Certificate>,
    /// Transparency log and SCT settings.
    #[serde(default)]
    pub ctlog: Option<CtLog>,
    /// Where signatures live.
    #[serde(default)]
    pub source: Option<CosignSource>,
    /// A TUF repository for the trust root.
    #[serde(default)]
    pub tuf: Option<Tuf>,
    /// A Sigstore trusted root (JSON).
    #[serde(default)]
    pub trusted_root: Option<StringOrExpression>,
}

/// `cosign.key`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CosignKey {
    /// PEM public key.
    #[serde(default)]
    pub data: Option<String>,
    /// KMS reference.
    #[serde(default)]
    pub kms: Option<String>,
    /// sha224, sha256 (default), sha384, sha512.
    #[serde(default)]
    pub hash_algorithm: Option<String>,
    /// CEL giving the PEM key.
    #[serde(default)]
    pub expression: Option<String>,
}

/// `cosign.keyless`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Keyless {
    /// Identities, any of which may sign.
    #[serde(default)]
    pub identities: Vec<Identity>,
    /// PEM roots of a private Fulcio.
    #[serde(default)]
    pub roots: Option<String>,
    /// Fulcio certificate extensions the certificate must carry.
    #[serde(default)]
    pub additional_extensions: Option<std::collections::BTreeMap<String, String>>,
}

/// One keyless identity.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// OIDC issuer, exactly.
    #[serde(default)]
    pub issuer: Option<String>,
    /// OIDC issuer, as a regular expression.
    #[serde(default)]
    pub issuer_reg_exp: Option<String>,
    /// Certificate subject, exactly.
    #[serde(default)]
    pub subject: Option<String>,
    /// Certificate subject, as a regular expression.
    #[serde(default)]
    pub subject_reg_exp: Option<String>,
    /// Certificate subject from CEL.
    #[serde(default)]
    pub subject_expression: Option<String>,
}

/// `cosign.certificate`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Certificate {
    /// The signing certificate.
    #[serde(default)]
    pub cert: Option<StringOrExpression>,
    /// Its chain.
    #[serde(default)]
    pub cert_chain: Option<StringOrExpression>,
}

/// A literal value, or a CEL expression giving it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringOrExpression {
    /// The literal.
    #[serde(default)]
    pub value: Option<String>,
    /// CEL giving it.
    #[serde(default)]
    pub expression: Option<String>,
}

/// `cosign.ctlog`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CtLog {
    /// Rekor URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Rekor public key (PEM).
    #[serde(default)]
    pub rekor_pub_key: Option<String>,
    /// CT log public key (PEM).
    #[serde(default)]
    pub ct_log_pub_key: Option<String>,
    /// TSA certificate chain (PEM).
    #[serde(default)]
    pub tsa_cert_chain: Option<String>,
    /// Skip the SCT check.
    #[serde(default, rename = "insecureIgnoreSCT")]
    pub insecure_ignore_sct: Option<bool>,
    /// Skip the transparency log.
    #[serde(default)]
    pub insecure_ignore_tlog: Option<bool>,
}

/// `cosign.source`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CosignSource {
    /// Repository holding the signatures.
    #[serde(default)]
    pub repository: Option<String>,
    /// Prefix of the signature tags.
    #[serde(default)]
    pub tag_prefix: Option<String>,
    /// Pull secrets for that repository.
    #[serde(default, rename = "PullSecrets")]
    pub pull_secrets: Vec<SecretName>,
}

/// A Secret's name.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretName {
    /// The name.
    pub name: String,
}

/// `cosign.tuf`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tuf {
    /// Mirror URL.
    #[serde(default)]
    pub mirror: Option<String>,
    /// Root metadata.
    #[serde(default)]
    pub root: Option<TufRoot>,
}

/// `tuf.root`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TufRoot {
    /// Inline root.json (base64).
    #[serde(default)]
    pub data: Option<String>,
    /// A path to it.
    #[serde(default)]
    pub path: Option<String>,
}

/// `attestors[].notary`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notary {
    /// The trusted certificates (PEM).
    #[serde(default)]
    pub certs: Option<StringOrExpression>,
    /// TSA roots (PEM).
    #[serde(default)]
    pub tsa_certs: Option<StringOrExpression>,
}

/// One of `spec.attestations`: exactly one of `intoto` and `referrer`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttestationSpec {
    /// How validations name it (`attestations.<name>`).
    pub name: String,
    /// An in-toto Statement of this predicate type.
    #[serde(default)]
    pub intoto: Option<TypeOnly>,
    /// An OCI referrer artifact of this artifact type.
    #[serde(default)]
    pub referrer: Option<TypeOnly>,
}

/// `{type: …}`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeOnly {
    /// The type.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One of `spec.validations`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Validation {
    /// CEL that must be true.
    pub expression: String,
    /// The message when it is not.
    #[serde(default)]
    pub message: Option<String>,
    /// CEL giving the message.
    #[serde(default)]
    pub message_expression: Option<String>,
    /// The HTTP reason (`Unauthorized`, `Forbidden`, `Invalid`, `RequestEntityTooLarge`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `spec.validationConfigurations`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationConfigurations {
    /// Pin matched tags to their digest (default true).
    #[serde(default)]
    pub mutate_digest: Option<bool>,
    /// Matched images must be pinned (default true).
    #[serde(default)]
    pub verify_digest: Option<bool>,
    /// Matched images must be verified (default true).
    #[serde(default)]
    pub required: Option<bool>,
}

/// `spec.credentials`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// Plain HTTP or unverified TLS.
    #[serde(default)]
    pub allow_insecure_registry: Option<bool>,
    /// Cloud credential helpers.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Pull secrets (in Kyverno's namespace, for Kyverno).
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// One of `spec.auditAnnotations`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditAnnotation {
    /// Its key.
    pub key: String,
    /// CEL giving its value.
    pub value_expression: String,
}

/// `spec.evaluation`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evaluation {
    /// `Kubernetes` (default) or `JSON`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Admission requests.
    #[serde(default)]
    pub admission: Option<Enabled>,
    /// Background scans.
    #[serde(default)]
    pub background: Option<Enabled>,
}

/// `{enabled: bool}`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    /// Whether it is on (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `spec.autogen`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autogen {
    /// Which pod controllers get rules.
    #[serde(default)]
    pub pod_controllers: Option<PodControllers>,
}

/// `autogen.podControllers`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodControllers {
    /// `deployments`, `cronjobs`, … (empty: none).
    #[serde(default)]
    pub controllers: Vec<String>,
}

/// `spec.webhookConfiguration`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfiguration {
    /// Kyverno's webhook timeout.
    #[serde(default)]
    pub timeout_seconds: Option<i32>,
}

/// `status` as Kyverno writes it, which tools built on Kyverno read.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IvpStatus {
    /// Readiness and its conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_status: Option<ConditionStatus>,
}

/// `status.conditionStatus`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionStatus {
    /// The policy is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Ready`, `WebhookConfigured`, `RBACPermissionsGranted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}
