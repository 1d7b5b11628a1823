//! policy-controller's validation rules for ClusterImagePolicy, with every
//! problem reported by its field path. Used by `/validate-policy` (refusing
//! bad policies at `kubectl apply` time) and by the compiler (so a policy
//! that slipped in is marked not Ready with the same words).
//!
//! sigil is stricter than policy-controller where it only warns: a keyless
//! authority must name both an issuer and a subject for every identity.

use super::glob::ImageGlob;
use super::types::{
    Attestation, Authority, ClusterImagePolicySpec, Identity, KeyRef, KeylessRef, MatchResource,
    NotationRef, Policy,
};
use crate::image::ImageRef;
use crate::model::error::PolicyError;
use crate::model::keys::{HashAlgorithm, VerificationKey};

/// Resources `spec.match[].resource` may name.
pub const MATCH_RESOURCES: &[&str] = &[
    "replicasets",
    "deployments",
    "pods",
    "cronjobs",
    "jobs",
    "statefulsets",
    "daemonsets",
];
/// cosign's predicate type short names.
pub const PREDICATE_SHORT_NAMES: &[&str] = &[
    "custom",
    "slsaprovenance",
    "slsaprovenance02",
    "slsaprovenance1",
    "link",
    "spdx",
    "spdxjson",
    "cyclonedx",
    "vuln",
    "openvex",
];

/// The result of validating a spec.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Problems that make the policy unusable.
    pub errors: Vec<PolicyError>,
    /// Things worth telling the author that do not block the policy.
    pub warnings: Vec<String>,
}

impl Validation {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(PolicyError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// All errors on one line each.
    pub fn message(&self) -> String {
        self.errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn present(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|v| !v.is_empty())
}

/// Validates a spec with policy-controller's rules.
pub fn validate(spec: &ClusterImagePolicySpec) -> Validation {
    let mut v = Validation::default();
    if spec.images.is_empty() {
        v.error("spec.images", "at least one image glob is required");
    }
    for (i, image) in spec.images.iter().enumerate() {
        let field = format!("spec.images[{i}].glob");
        if image.glob.is_empty() {
            v.error(field, "missing field");
        } else if let Err(e) = ImageGlob::compile(&image.glob) {
            v.error(field, e.to_string());
        }
    }
    if spec.authorities.is_empty() {
        v.error("spec.authorities", "at least one authority is required");
    }
    for (i, a) in spec.authorities.iter().enumerate() {
        authority(&mut v, &format!("spec.authorities[{i}]"), a);
    }
    if let Some(mode) = spec.mode.as_deref() {
        if !matches!(mode, "" | "enforce" | "warn" | "audit") {
            v.error(
                "spec.mode",
                format!("{mode:?} is not one of enforce, warn, audit"),
            );
        }
    }
    for (i, m) in spec.match_resources.iter().enumerate() {
        match_resource(&mut v, &format!("spec.match[{i}]"), m);
    }
    if let Some(p) = &spec.policy {
        policy(&mut v, "spec.policy", p, true);
    }
    v
}

fn authority(v: &mut Validation, path: &str, a: &Authority) {
    let kinds: Vec<&str> = [
        a.key.as_ref().map(|_| "key"),
        a.keyless.as_ref().map(|_| "keyless"),
        a.static_ref.as_ref().map(|_| "static"),
        a.notation.as_ref().map(|_| "notation"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if kinds.len() != 1 {
        let found = if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        };
        v.error(
            path,
            format!("expected exactly one of key, keyless, static, notation; found {found}"),
        );
        return;
    }
    if let Some(n) = &a.notation {
        notation(v, &format!("{path}.notation"), n);
        for (field, set) in [
            ("attestations", !a.attestations.is_empty()),
            ("source", !a.sources.is_empty()),
            ("ctlog", a.ctlog.is_some()),
            ("rfc3161timestamp", a.rfc3161timestamp.is_some()),
            ("signatureFormat", a.signature_format.is_some()),
        ] {
            if set {
                v.error(path, format!("notation cannot be combined with {field}"));
            }
        }
    }
    if let Some(k) = &a.key {
        key(v, &format!("{path}.key"), k);
    }
    if let Some(k) = &a.keyless {
        keyless(v, &format!("{path}.keyless"), k);
    }
    if let Some(s) = &a.static_ref {
        if !matches!(s.action.as_str(), "pass" | "fail") {
            v.error(
                format!("{path}.static.action"),
                format!("{:?} is not one of pass, fail", s.action),
            );
        }
        for (field, set) in [
            ("attestations", !a.attestations.is_empty()),
            ("source", !a.sources.is_empty()),
            ("ctlog", a.ctlog.is_some()),
            ("rfc3161timestamp", a.rfc3161timestamp.is_some()),
            ("signatureFormat", a.signature_format.is_some()),
        ] {
            if set {
                v.error(
                    path,
                    format!("static cannot be combined with {field}: a static authority reads no signature layout"),
                );
            }
        }
    }
    layout_combinations(v, path, a);
    if let Some(format) = a.signature_format.as_deref() {
        if !matches!(format, "" | "legacy" | "bundle") {
            v.error(
                format!("{path}.signatureFormat"),
                format!("{format:?} is not one of legacy, bundle"),
            );
        }
    }
    if a.sources.len() > 1 {
        v.error(format!("{path}.source"), "only one source is supported");
    }
    for (i, s) in a.sources.iter().enumerate() {
        let sp = format!("{path}.source[{i}]");
        // No oci: the signatures sit beside the image (the source may only
        // carry pull secrets).
        if let Some(oci) = s.oci.as_deref().filter(|o| !o.is_empty()) {
            match ImageRef::parse(oci) {
                Err(e) => v.error(format!("{sp}.oci"), e.to_string()),
                Ok(r)
                    if r.digest.is_some()
                        || oci
                            .rsplit('/')
                            .next()
                            .is_some_and(|last| last.contains(':')) =>
                {
                    v.error(
                        format!("{sp}.oci"),
                        "must name a repository, without tag or digest",
                    )
                }
                Ok(_) => {}
            }
        }
        for (j, secret) in s.signature_pull_secrets.iter().enumerate() {
            if secret.name.is_empty() {
                v.error(
                    format!("{sp}.signaturePullSecrets[{j}].name"),
                    "missing field",
                );
            }
        }
        if let Some(g) = &s.github_attestations {
            github_attestations(v, &format!("{sp}.githubAttestations"), g);
            for (field, set) in [
                ("oci", s.oci.is_some()),
                ("tagPrefix", s.tag_prefix.is_some()),
                ("signaturePullSecrets", !s.signature_pull_secrets.is_empty()),
            ] {
                if set {
                    v.error(
                        format!("{sp}.{field}"),
                        "githubAttestations reads GitHub's API, not a registry; it cannot be combined with oci, tagPrefix or signaturePullSecrets",
                    );
                }
            }
        }
    }
    for (i, att) in a.attestations.iter().enumerate() {
        attestation(v, &format!("{path}.attestations[{i}]"), att);
    }
}

/// Options that one layout cannot honour, refused by name when the policy
/// loads instead of being dropped when it is verified (the promise table,
/// `promises.rs`, lists each of these refusals).
fn layout_combinations(v: &mut Validation, path: &str, a: &Authority) {
    let github = a.sources.iter().any(|s| s.github_attestations.is_some());
    let format = a.signature_format.as_deref().filter(|f| !f.is_empty());
    // GitHub's API lists Sigstore bundles only.
    let bundles = format == Some("bundle") || github;
    if github && format == Some("legacy") {
        v.error(
            format!("{path}.signatureFormat"),
            "legacy reads cosign's .sig/.att tags, but source.githubAttestations lists Sigstore bundles from GitHub's attestation API; leave signatureFormat out or set it to bundle",
        );
    }
    if github && a.key.is_some() {
        v.error(
            format!("{path}.key"),
            "GitHub's attestation API lists keyless (Fulcio) bundles; a key authority cannot read source.githubAttestations",
        );
    }
    if !bundles {
        return;
    }
    let layout = if github {
        "GitHub's attestation API (source.githubAttestations)"
    } else {
        "the bundle layout (signatureFormat: bundle)"
    };
    if let Some(k) = &a.keyless {
        if k.ca_cert.is_some() {
            v.error(
                format!("{path}.keyless.ca-cert"),
                format!("{layout} is verified against trust roots; a ca-cert authority reads only cosign's .sig/.att tags (signatureFormat: legacy)"),
            );
        }
    }
    if let Some(k) = &a.key {
        if !matches!(
            k.hash_algorithm.as_deref(),
            None | Some("") | Some("sha256")
        ) {
            v.error(
                format!("{path}.key.hashAlgorithm"),
                format!("{layout} names its own digest algorithm; hashAlgorithm applies to cosign's .sig/.att tags only (signatureFormat: legacy)"),
            );
        }
    }
    for (i, s) in a.sources.iter().enumerate() {
        if !github && s.tag_prefix.as_deref().is_some_and(|p| !p.is_empty()) {
            v.error(
                format!("{path}.source[{i}].tagPrefix"),
                format!("{layout} reads OCI referrers, not cosign's .sig/.att tags; a tag prefix cannot apply"),
            );
        }
    }
}

fn key(v: &mut Validation, path: &str, k: &KeyRef) {
    let set: Vec<&str> = [
        present(&k.data).then_some("data"),
        present(&k.kms).then_some("kms"),
        k.secret_ref.as_ref().map(|_| "secretRef"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if set.len() != 1 {
        let found = if set.is_empty() {
            "none".to_string()
        } else {
            set.join(", ")
        };
        v.error(
            path,
            format!("expected exactly one of data, kms, secretRef; found {found}"),
        );
    }
    let hash = match HashAlgorithm::parse(k.hash_algorithm.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            v.error(format!("{path}.hashAlgorithm"), e.to_string());
            HashAlgorithm::Sha256
        }
    };
    if let Some(data) = k.data.as_deref().filter(|d| !d.is_empty()) {
        if let Err(e) = VerificationKey::from_pem(data, hash) {
            v.error(format!("{path}.data"), e.to_string());
        }
    }
    if let Some(kms) = k.kms.as_deref().filter(|d| d.starts_with("awskms://")) {
        if let Err(reason) = aws_kms(kms) {
            v.error(format!("{path}.kms"), reason);
        }
    }
    if let Some(secret) = &k.secret_ref {
        if secret.name.as_deref().unwrap_or("").is_empty() {
            v.error(format!("{path}.secretRef.name"), "missing field");
        }
    }
}

/// `awskms://[ENDPOINT]/KEY` in any of cosign's forms.
fn aws_kms(kms: &str) -> Result<(), String> {
    super::kms_ref::parse_aws(kms).map(|_| ())
}

/// Notation's verification levels.
pub use crate::model::notation::LEVELS as NOTATION_LEVELS;

fn notation(v: &mut Validation, path: &str, n: &NotationRef) {
    use crate::model::notation::{anchors, pem_certificates, pem_crls, Level, TrustedIdentity};
    let store = format!("{path}.trustStore");
    if let Err(e) = pem_certificates(&n.trust_store.certificates).and_then(|c| anchors(&c)) {
        v.error(format!("{store}.certificates"), e);
    }
    if let Some(tsa) = &n.trust_store.tsa_certificates {
        if let Err(e) = pem_certificates(tsa).and_then(|c| anchors(&c)) {
            v.error(format!("{store}.tsaCertificates"), e);
        }
    }
    if let Some(crls) = &n.trust_store.crls {
        if let Err(e) = pem_crls(crls) {
            v.error(format!("{store}.crls"), e);
        }
    }
    if n.trusted_identities.is_empty() {
        v.error(
            format!("{path}.trustedIdentities"),
            "at least one entry: \"*\" or \"x509.subject: C=…, ST=…, O=…\"",
        );
    }
    for (i, identity) in n.trusted_identities.iter().enumerate() {
        let ip = format!("{path}.trustedIdentities[{i}]");
        match TrustedIdentity::parse(identity) {
            Ok(TrustedIdentity::Any) if n.trusted_identities.len() > 1 => {
                v.error(&ip, "\"*\" cannot be combined with other identities")
            }
            Ok(_) => {}
            Err(e) => v.error(&ip, e),
        }
    }
    if let Err(e) = Level::parse(n.verification_level.as_deref()) {
        v.error(format!("{path}.verificationLevel"), e);
    }
}

fn keyless(v: &mut Validation, path: &str, k: &KeylessRef) {
    // A missing url means the default (public-good) Fulcio, as
    // policy-controller's defaulting does; only both at once is an error.
    if present(&k.url) && k.ca_cert.is_some() {
        v.error(path, "url and ca-cert cannot both be set");
    }
    if let Some(ca) = &k.ca_cert {
        let cp = format!("{path}.ca-cert");
        let set = [present(&ca.data), present(&ca.kms), ca.secret_ref.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set != 1 {
            v.error(&cp, "expected exactly one of data, kms, secretRef");
        }
    }
    if k.identities.is_empty() {
        v.error(
            format!("{path}.identities"),
            "at least one identity (issuer and subject) is required",
        );
    }
    for (i, id) in k.identities.iter().enumerate() {
        identity(v, &format!("{path}.identities[{i}]"), id);
    }
}

fn identity(v: &mut Validation, path: &str, id: &Identity) {
    for (claim, exact, pattern) in id.claims() {
        let name = claim.field();
        if exact.is_some() && pattern.is_some() {
            v.error(path, format!("{name} and {name}RegExp cannot both be set"));
        }
        if let Some(p) = pattern {
            if p.is_empty() {
                v.error(
                    format!("{path}.{name}RegExp"),
                    "an empty pattern matches nothing useful",
                );
            } else if let Err(e) = regex::Regex::new(p) {
                v.error(
                    format!("{path}.{name}RegExp"),
                    format!("regex is invalid: {e}"),
                );
            }
        }
    }
    for (exact, exact_name, re, re_name) in [
        (&id.issuer, "issuer", &id.issuer_reg_exp, "issuerRegExp"),
        (&id.subject, "subject", &id.subject_reg_exp, "subjectRegExp"),
    ] {
        match (present(exact), present(re)) {
            (true, true) => v.error(
                path,
                format!("{exact_name} and {re_name} cannot both be set"),
            ),
            (false, false) => v.error(path, format!("one of {exact_name}, {re_name} is required")),
            _ => {}
        }
        if let Some(pattern) = re.as_deref().filter(|p| !p.is_empty()) {
            if let Err(e) = regex::Regex::new(pattern) {
                v.error(
                    format!("{path}.{re_name}"),
                    format!("regex is invalid: {e}"),
                );
            }
        }
    }
}

fn match_resource(v: &mut Validation, path: &str, m: &MatchResource) {
    if let Some(r) = m.resource.as_deref().filter(|r| !r.is_empty()) {
        if !MATCH_RESOURCES.contains(&r) {
            v.error(
                format!("{path}.resource"),
                format!("{r:?} is not one of {}", MATCH_RESOURCES.join(", ")),
            );
        }
    }
    if m.selector.is_some() && !present(&m.resource) && !present(&m.version) && !present(&m.group) {
        v.error(
            format!("{path}.selector"),
            "a selector requires a resource type to match the labels",
        );
    }
}

fn attestation(v: &mut Validation, path: &str, a: &Attestation) {
    if a.name.is_empty() {
        v.error(format!("{path}.name"), "missing field");
    }
    if a.predicate_type.is_empty() {
        v.error(format!("{path}.predicateType"), "missing field");
    } else if !PREDICATE_SHORT_NAMES.contains(&a.predicate_type.as_str())
        && !a.predicate_type.contains(':')
    {
        v.error(
            format!("{path}.predicateType"),
            format!(
                "{:?} is neither a cosign predicate type name nor a URI",
                a.predicate_type
            ),
        );
    }
    if let Some(p) = &a.policy {
        policy(v, &format!("{path}.policy"), p, false);
    }
}

/// The program inputs policy-controller can add that sigil does not
/// provide yet (`includeSpec`, `includeObjectMeta`, `includeTypeMeta`,
/// `fetchConfigFile` set to true). A program written against them (`not
/// input.spec.hostPID`) would pass on missing data, so a policy asking for
/// one fails closed instead of being evaluated without it.
pub fn unimplemented_inputs(p: &Policy) -> Vec<&'static str> {
    [
        ("includeSpec", p.include_spec),
        ("includeObjectMeta", p.include_object_meta),
        ("includeTypeMeta", p.include_type_meta),
        ("fetchConfigFile", p.fetch_config_file),
    ]
    .into_iter()
    .filter(|(_, on)| *on == Some(true))
    .map(|(f, _)| f)
    .collect()
}

fn policy(v: &mut Validation, path: &str, p: &Policy, within_spec: bool) {
    let language = match p.policy_type.as_str() {
        "rego" => Some(super::program::Language::Rego),
        "cel" => Some(super::program::Language::Cel),
        // No Rust CUE implementation exists: refused, not ignored.
        "cue" => {
            v.error(
                format!("{path}.type"),
                "CUE is not supported; use rego or cel",
            );
            None
        }
        other => {
            v.error(
                format!("{path}.type"),
                format!("{other:?} is not one of rego, cel"),
            );
            None
        }
    };
    if let (Some(language), Some(data)) = (language, p.data.as_deref().filter(|d| !d.is_empty())) {
        if let Err(e) = super::program::Program::compile(language, data) {
            v.error(format!("{path}.data"), format!("does not compile: {e}"));
        }
    }
    let sources = [
        present(&p.data),
        p.remote.is_some(),
        p.config_map_ref.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources != 1 {
        v.error(path, "expected exactly one of data, remote, configMapRef");
    }
    if let Some(r) = &p.remote {
        if !present(&r.url) {
            v.error(format!("{path}.remote.url"), "missing field");
        }
        if !r
            .sha256sum
            .as_deref()
            .is_some_and(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
        {
            v.error(
                format!("{path}.remote.sha256sum"),
                "a 64-hex-digit sha256 is required",
            );
        }
    }
    if !within_spec && p.fetch_config_file.is_some() {
        v.error(
            format!("{path}.fetchConfigFile"),
            "only allowed in spec.policy",
        );
    }
    for field in unimplemented_inputs(p) {
        v.warnings.push(format!(
            "{path}.{field}: not implemented by sigil; every image this policy matches fails closed naming it"
        ));
    }
}

/// `source[].githubAttestations`: names GitHub accepts, an https API URL.
fn github_attestations(
    v: &mut Validation,
    path: &str,
    g: &crate::policy::types::GithubAttestations,
) {
    // GitHub's owner and repository names: letters, digits, `-`, `_`, `.`.
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 100
            && n != "."
            && n != ".."
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !name_ok(&g.owner) {
        v.error(
            format!("{path}.owner"),
            format!("{:?} is not a GitHub owner name", g.owner),
        );
    }
    if let Some(r) = &g.repository {
        if !name_ok(r) {
            v.error(
                format!("{path}.repository"),
                format!("{r:?} is not a GitHub repository name"),
            );
        }
    }
    if let Some(url) = &g.url {
        let ok = reqwest::Url::parse(url).is_ok_and(|u| {
            u.scheme() == "https"
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if !ok {
            v.error(
                format!("{path}.url"),
                format!("{url:?} is not an https URL without credentials, query or fragment"),
            );
        }
    }
    if let Some(secret) = &g.token_secret_ref {
        if secret.name.as_deref().unwrap_or_default().is_empty() {
            v.error(format!("{path}.tokenSecretRef.name"), "missing field");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "notation test CA");
        params.self_signed(&key).unwrap().pem()
    }

    /// The errors of a spec with one notation authority, as (field, message).
    fn errors(notation: serde_json::Value, extra: serde_json::Value) -> Vec<(String, String)> {
        let mut authority = serde_json::json!({"name": "notary", "notation": notation});
        if let (Some(a), Some(e)) = (authority.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        let spec: ClusterImagePolicySpec = serde_json::from_value(serde_json::json!({
            "images": [{"glob": "**"}],
            "authorities": [authority],
        }))
        .unwrap();
        validate(&spec)
            .errors
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn the_notation_authority_of_the_documented_shape_is_valid() {
        let certs = certificate_pem();
        for identities in [
            serde_json::json!(["*"]),
            serde_json::json!(["x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=e2e"]),
        ] {
            for level in NOTATION_LEVELS {
                let found = errors(
                    serde_json::json!({
                        "trustStore": {"certificates": certs, "tsaCertificates": certs},
                        "trustedIdentities": identities,
                        "verificationLevel": level,
                    }),
                    serde_json::json!({}),
                );
                assert!(found.is_empty(), "{identities} {level}: {found:?}");
            }
        }
    }

    #[test]
    fn bad_notation_fields_are_named() {
        let certs = certificate_pem();
        let ok_store = serde_json::json!({"certificates": certs});
        for (notation, extra, field, says) in [
            (
                serde_json::json!({"trustStore": {"certificates": "not pem"}, "trustedIdentities": ["*"]}),
                serde_json::json!({}),
                "spec.authorities[0].notation.trustStore.certificates",
                "no PEM certificate found",
            ),
            (
                serde_json::json!({"trustStore": {"certificates": certs, "tsaCertificates": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "trustedIdentities": ["*"]}),
                serde_json::json!({}),
                "spec.authorities[0].notation.trustStore.tsaCertificates",
                "certificate 0 does not parse",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": []}),
                serde_json::json!({}),
                "spec.authorities[0].notation.trustedIdentities",
                "at least one entry",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": ["*", "x509.subject: C=US, ST=WA, O=N"]}),
                serde_json::json!({}),
                "spec.authorities[0].notation.trustedIdentities[0]",
                "cannot be combined",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": ["x509.subject: CN=e2e"]}),
                serde_json::json!({}),
                "spec.authorities[0].notation.trustedIdentities[0]",
                "x509.subject: C is required",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": ["x509.subject: C=US, ST=WA, O=N, XX=1"]}),
                serde_json::json!({}),
                "spec.authorities[0].notation.trustedIdentities[0]",
                "unknown attribute \"XX\"",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": ["e2e"]}),
                serde_json::json!({}),
                "spec.authorities[0].notation.trustedIdentities[0]",
                "is neither",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": ["*"], "verificationLevel": "lenient"}),
                serde_json::json!({}),
                "spec.authorities[0].notation.verificationLevel",
                "\"lenient\" is not one of strict, permissive, audit, skip",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": ["*"]}),
                serde_json::json!({"key": {"data": "x"}}),
                "spec.authorities[0]",
                "expected exactly one of key, keyless, static, notation; found key, notation",
            ),
            (
                serde_json::json!({"trustStore": ok_store, "trustedIdentities": ["*"]}),
                serde_json::json!({"ctlog": {"url": "https://rekor.example"}}),
                "spec.authorities[0]",
                "notation cannot be combined with ctlog",
            ),
        ] {
            let found = errors(notation.clone(), extra);
            assert!(
                found.iter().any(|(f, m)| f == field && m.contains(says)),
                "{notation}: wanted {field}: {says}; got {found:?}"
            );
        }
    }

    #[test]
    fn unknown_notation_fields_are_refused() {
        let spec: Result<ClusterImagePolicySpec, _> = serde_json::from_value(serde_json::json!({
            "images": [{"glob": "**"}],
            "authorities": [{"notation": {"trustStore": {"certificates": "x"}, "trustedIdentity": ["*"]}}],
        }));
        assert!(spec.unwrap_err().to_string().contains("trustedIdentity"));
    }
}
