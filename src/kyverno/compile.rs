//! An `ImageValidatingPolicy` turned into what a request is checked with:
//! its CEL programs parsed, its globs built, each attestor compiled into
//! the one-authority [`CompiledPolicy`] sigil's verifier already runs (so
//! an attestor is verified by the same collectors, caches, budgets and
//! fail-closed rules as a ClusterImagePolicy authority), and every field
//! sigil does not implement refused, naming it.
//!
//! Runs when a policy changes, never on the request path. Does not fetch.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::core::Selector;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::types::{Attestor, IvpSpec, ResourceRule};
use crate::model::error::{err, PolicyError};
use crate::policy::compile::compile as compile_cip;
use crate::policy::{files::spec_from_value, CompiledPolicy};

/// Most attestors, attestations, validations or variables one policy may
/// list: each attestor is verified for every matched image, each
/// attestation with every attestor that can sign it.
pub const MAX_LIST: usize = 16;

/// Functions that reach outside the request. sigil builds none of them
/// yet, so a policy that calls one is refused at load, naming it.
const OUTSIDE: [(&str, &str); 6] = [
    ("resource", "resource.get / resource.list / resource.post"),
    ("globalContext", "globalContext.get"),
    ("http", "http.get / http.post"),
    ("GetMetadata", "image.GetMetadata"),
    ("getImageData", "getImageData"),
    ("imagedata", "imagedata.get"),
];

/// A compiled CEL expression and where it came from.
#[derive(Debug, Clone)]
pub struct Cel {
    /// The field it was read from (`spec.validations[0].expression`).
    pub field: String,
    /// The parsed program.
    pub program: Arc<cel::Program>,
    /// Its source, as written.
    pub source: String,
}

impl Cel {
    fn compile(field: String, source: &str) -> Result<Self, PolicyError> {
        let program = cel::Program::compile(source)
            .map_err(|e| err(&field, format!("CEL does not parse: {e}")))?;
        let refs = program.references();
        for (name, said) in OUTSIDE {
            if refs.has_variable(name) || refs.has_function(name) {
                return Err(err(
                    &field,
                    format!("{said} is not supported by sigil: it reaches outside the request"),
                ));
            }
        }
        Ok(Cel {
            field,
            program: Arc::new(program),
            source: source.trim().to_string(),
        })
    }
}

/// One resource rule, as admission matches it.
#[derive(Debug, Clone)]
pub struct Rule {
    /// API groups (`*` any).
    pub groups: Vec<String>,
    /// API versions (`*` any).
    pub versions: Vec<String>,
    /// Operations (`*` any).
    pub operations: Vec<String>,
    /// `resource` or `resource/subresource` (`*`, `*/*`, `pods/*`).
    pub resources: Vec<String>,
    /// Names (empty: any).
    pub names: Vec<String>,
}

/// What `validationActions` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    /// Deny the request.
    pub deny: bool,
    /// Warn the client.
    pub warn: bool,
    /// Record it in the audit log.
    pub audit: bool,
}

/// One of `spec.attestations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationKind {
    /// An in-toto Statement of this predicate type (cosign attestors).
    Intoto(String),
    /// An OCI referrer artifact of this artifact type, signed by Notation
    /// (notary attestors).
    Referrer(String),
}

/// One attestor and the verifications sigil runs for it.
#[derive(Debug, Clone)]
pub struct CompiledAttestor {
    /// `attestors[].name`.
    pub name: String,
    /// Its signature check: one-authority policies, one per layout it
    /// reads (cosign's tags, and Sigstore bundles as OCI referrers, which
    /// cosign v3 writes); any one verifying is enough.
    pub signature: Vec<Arc<CompiledPolicy>>,
    /// Per in-toto attestation name: the same authority asking for that
    /// Statement, in each layout.
    pub intoto: BTreeMap<String, Vec<Arc<CompiledPolicy>>>,
    /// A notary attestor (reads referrer attestations).
    pub notary: bool,
}

/// A validation.
#[derive(Debug, Clone)]
pub struct CompiledValidation {
    /// Must be true.
    pub expression: Cel,
    /// Its message, when written.
    pub message: Option<String>,
    /// CEL giving the message.
    pub message_expression: Option<Cel>,
}

/// An `ImageValidatingPolicy` ready for requests.
#[derive(Debug)]
pub struct CompiledIvp {
    /// `metadata.name`.
    pub name: String,
    /// A `NamespacedImageValidatingPolicy`'s namespace (it applies there only).
    pub namespace: Option<String>,
    /// sha256 of the spec.
    pub fingerprint: String,
    /// Resource rules (empty: none match).
    pub rules: Vec<Rule>,
    /// Excluded resources.
    pub excludes: Vec<Rule>,
    /// `matchConstraints.namespaceSelector`.
    pub namespace_selector: Option<Selector>,
    /// `matchConstraints.objectSelector`.
    pub object_selector: Option<Selector>,
    /// `matchConditions`, by name.
    pub match_conditions: Vec<(String, Cel)>,
    /// `variables`, in order.
    pub variables: Vec<(String, Cel)>,
    /// `matchImageReferences` globs (`*` crosses `/`, as Kyverno's).
    pub image_globs: Vec<globset::GlobMatcher>,
    /// `matchImageReferences` expressions over `image`.
    pub image_expressions: Vec<Cel>,
    /// `images` extractors; empty: the pod specs' containers.
    pub extractors: Vec<(String, Cel)>,
    /// Attestors.
    pub attestors: Vec<CompiledAttestor>,
    /// Attestations by name.
    pub attestations: BTreeMap<String, AttestationKind>,
    /// Validations.
    pub validations: Vec<CompiledValidation>,
    /// Actions.
    pub actions: Actions,
    /// `failurePolicy: Ignore`: an error (not a failed check) admits.
    pub ignore_failures: bool,
    /// `validationConfigurations.mutateDigest` (default true).
    pub mutate_digest: bool,
    /// `validationConfigurations.verifyDigest` (default true).
    pub verify_digest: bool,
    /// `validationConfigurations.required` (default true).
    pub required: bool,
    /// Pod controllers rules are generated for (`autogen`; default all).
    pub autogen: Vec<String>,
    /// Checked by the background audit too.
    pub background: bool,
    /// Checked at admission.
    pub admission: bool,
}

impl CompiledIvp {
    /// Whether deciding that it applies, and to which images, runs no CEL
    /// (no match conditions, variables, extractors or image expressions).
    pub fn matches_without_cel(&self) -> bool {
        self.match_conditions.is_empty()
            && self.variables.is_empty()
            && self.extractors.is_empty()
            && self.image_expressions.is_empty()
    }
}

/// The pod controllers Kyverno generates rules for by default.
pub const AUTOGEN_DEFAULT: [&str; 6] = [
    "daemonsets",
    "deployments",
    "jobs",
    "statefulsets",
    "replicasets",
    "cronjobs",
];

/// Compiles `spec` of the policy `name` (in `namespace` for the namespaced kind).
pub fn compile(
    name: &str,
    namespace: Option<&str>,
    spec: &IvpSpec,
) -> Result<CompiledIvp, PolicyError> {
    refuse_unsupported(spec)?;
    let fingerprint = {
        let bytes = serde_json::to_vec(spec).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    };
    let constraints = spec.match_constraints.clone().unwrap_or_default();
    let rules = rules(
        &constraints.resource_rules,
        "spec.matchConstraints.resourceRules",
    )?;
    let excludes = rules_of(&constraints.exclude_resource_rules);
    let selector = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
                    field: &str| {
        s.clone()
            .map(Selector::try_from)
            .transpose()
            .map_err(|e| err(field, format!("invalid label selector: {e}")))
    };
    let namespace_selector = selector(
        &constraints.namespace_selector,
        "spec.matchConstraints.namespaceSelector",
    )?;
    let object_selector = selector(
        &constraints.object_selector,
        "spec.matchConstraints.objectSelector",
    )?;
    let named = |list: &[super::types::NamedExpression], at: &str| {
        check_len(list.len(), at)?;
        let mut seen = std::collections::BTreeSet::new();
        list.iter()
            .enumerate()
            .map(|(i, n)| {
                if !seen.insert(n.name.as_str()) {
                    return Err(err(
                        format!("{at}[{i}].name"),
                        format!("{:?} is listed twice", n.name),
                    ));
                }
                Ok((
                    n.name.clone(),
                    Cel::compile(format!("{at}[{i}].expression"), &n.expression)?,
                ))
            })
            .collect::<Result<Vec<_>, PolicyError>>()
    };
    let match_conditions = named(&spec.match_conditions, "spec.matchConditions")?;
    let variables = named(&spec.variables, "spec.variables")?;
    let extractors = named(&spec.images, "spec.images")?;
    let mut image_globs = Vec::new();
    let mut image_expressions = Vec::new();
    for (i, m) in spec.match_image_references.iter().enumerate() {
        let at = format!("spec.matchImageReferences[{i}]");
        match (&m.glob, &m.expression) {
            (Some(g), None) => image_globs.push(
                globset::GlobBuilder::new(g)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| err(format!("{at}.glob"), e.to_string()))?
                    .compile_matcher(),
            ),
            (None, Some(e)) => image_expressions.push(Cel::compile(format!("{at}.expression"), e)?),
            _ => return Err(err(at, "exactly one of glob and expression is required")),
        }
    }
    let attestations = attestations(spec)?;
    let attestors = attestors(name, spec, &attestations)?;
    check_len(spec.validations.len(), "spec.validations")?;
    let validations = spec
        .validations
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = format!("spec.validations[{i}]");
            Ok(CompiledValidation {
                expression: Cel::compile(format!("{at}.expression"), &v.expression)?,
                message: v.message.clone().filter(|m| !m.is_empty()),
                message_expression: v
                    .message_expression
                    .as_deref()
                    .map(|m| Cel::compile(format!("{at}.messageExpression"), m))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, PolicyError>>()?;
    let actions = actions(&spec.validation_actions)?;
    let ignore_failures = match spec.failure_policy.as_deref() {
        None | Some("Fail") => false,
        Some("Ignore") => true,
        Some(other) => {
            return Err(err(
                "spec.failurePolicy",
                format!("{other:?} is not Fail or Ignore"),
            ))
        }
    };
    let config = spec.validation_configurations.clone().unwrap_or_default();
    let autogen = match spec
        .autogen
        .as_ref()
        .and_then(|a| a.pod_controllers.as_ref())
    {
        None => AUTOGEN_DEFAULT.iter().map(|s| s.to_string()).collect(),
        Some(p) => {
            for (i, c) in p.controllers.iter().enumerate() {
                if !AUTOGEN_DEFAULT.contains(&c.as_str()) {
                    return Err(err(
                        format!("spec.autogen.podControllers.controllers[{i}]"),
                        format!("{c:?} is not one of {}", AUTOGEN_DEFAULT.join(", ")),
                    ));
                }
            }
            p.controllers.clone()
        }
    };
    let evaluation = spec.evaluation.clone().unwrap_or_default();
    Ok(CompiledIvp {
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
        fingerprint,
        rules,
        excludes,
        namespace_selector,
        object_selector,
        match_conditions,
        variables,
        image_globs,
        image_expressions,
        extractors,
        attestors,
        attestations,
        validations,
        actions,
        ignore_failures,
        mutate_digest: config.mutate_digest.unwrap_or(true),
        verify_digest: config.verify_digest.unwrap_or(true),
        required: config.required.unwrap_or(true),
        autogen,
        background: evaluation
            .background
            .and_then(|b| b.enabled)
            .unwrap_or(true),
        admission: evaluation.admission.and_then(|b| b.enabled).unwrap_or(true),
    })
}

fn check_len(n: usize, at: &str) -> Result<(), PolicyError> {
    if n > MAX_LIST {
        return Err(err(
            at,
            format!("{n} entries; sigil reads at most {MAX_LIST}"),
        ));
    }
    Ok(())
}

/// Fields sigil does not implement: refused, naming them.
fn refuse_unsupported(spec: &IvpSpec) -> Result<(), PolicyError> {
    let no = |field: &str, why: &str| Err(err(field, why.to_string()));
    if let Some(e) = &spec.evaluation {
        if e.mode.as_deref().is_some_and(|m| m != "Kubernetes") {
            return no(
                "spec.evaluation.mode",
                "only Kubernetes is supported by sigil (JSON payloads are not admission requests)",
            );
        }
    }
    if let Some(c) = &spec.credentials {
        if c.allow_insecure_registry == Some(true) {
            return no(
                "spec.credentials.allowInsecureRegistry",
                "sigil never reads a registry insecurely",
            );
        }
        if !c.providers.is_empty() {
            return no("spec.credentials.providers", "cloud credential helpers are not supported by sigil; use the workload's imagePullSecrets");
        }
        if !c.secrets.is_empty() {
            return no("spec.credentials.secrets", "secrets in Kyverno's namespace are not read by sigil; sigil reads the workload's own imagePullSecrets");
        }
    }
    if !spec.audit_annotations.is_empty() {
        return no(
            "spec.auditAnnotations",
            "audit annotations are not supported by sigil; its audit log records every decision",
        );
    }
    if let Some(m) = spec
        .match_constraints
        .as_ref()
        .and_then(|m| m.match_policy.as_deref())
    {
        if m != "Equivalent" && m != "Exact" {
            return no(
                "spec.matchConstraints.matchPolicy",
                "must be Equivalent or Exact",
            );
        }
    }
    Ok(())
}

fn rules(list: &[ResourceRule], at: &str) -> Result<Vec<Rule>, PolicyError> {
    if list.is_empty() {
        return Err(err(at, "at least one resource rule is required"));
    }
    for (i, r) in list.iter().enumerate() {
        if r.scope
            .as_deref()
            .is_some_and(|s| !["*", "Namespaced", "Cluster"].contains(&s))
        {
            return Err(err(
                format!("{at}[{i}].scope"),
                "must be *, Namespaced or Cluster",
            ));
        }
    }
    Ok(rules_of(list))
}

fn rules_of(list: &[ResourceRule]) -> Vec<Rule> {
    list.iter()
        .map(|r| Rule {
            groups: r.api_groups.clone(),
            versions: r.api_versions.clone(),
            operations: r.operations.clone(),
            resources: r.resources.clone(),
            names: r.resource_names.clone(),
        })
        .collect()
}

fn actions(list: &[String]) -> Result<Actions, PolicyError> {
    let mut a = Actions::default();
    for (i, action) in list.iter().enumerate() {
        match action.as_str() {
            "Deny" => a.deny = true,
            "Warn" => a.warn = true,
            "Audit" => a.audit = true,
            other => {
                return Err(err(
                    format!("spec.validationActions[{i}]"),
                    format!("{other:?} is not one of Deny, Warn, Audit"),
                ))
            }
        }
    }
    if list.is_empty() {
        a.deny = true;
    }
    if a.deny && a.warn {
        return Err(err(
            "spec.validationActions",
            "Deny and Warn cannot be combined (as in ValidatingAdmissionPolicy)",
        ));
    }
    Ok(a)
}

fn attestations(spec: &IvpSpec) -> Result<BTreeMap<String, AttestationKind>, PolicyError> {
    check_len(spec.attestations.len(), "spec.attestations")?;
    let mut out = BTreeMap::new();
    for (i, a) in spec.attestations.iter().enumerate() {
        let at = format!("spec.attestations[{i}]");
        let kind = match (&a.intoto, &a.referrer) {
            (Some(t), None) => AttestationKind::Intoto(t.kind.clone()),
            (None, Some(t)) => AttestationKind::Referrer(t.kind.clone()),
            _ => return Err(err(at, "exactly one of intoto and referrer is required")),
        };
        if out.insert(a.name.clone(), kind).is_some() {
            return Err(err(
                format!("{at}.name"),
                format!("{:?} is listed twice", a.name),
            ));
        }
    }
    Ok(out)
}

fn attestors(
    policy: &str,
    spec: &IvpSpec,
    attestations: &BTreeMap<String, AttestationKind>,
) -> Result<Vec<CompiledAttestor>, PolicyError> {
    check_len(spec.attestors.len(), "spec.attestors")?;
    let mut out: Vec<CompiledAttestor> = Vec::new();
    for (i, a) in spec.attestors.iter().enumerate() {
        let at = format!("spec.attestors[{i}]");
        if out.iter().any(|o| o.name == a.name) {
            return Err(err(
                format!("{at}.name"),
                format!("{:?} is listed twice", a.name),
            ));
        }
        let authority = authority(a, &at)?;
        let notary = a.notary.is_some();
        let one = |suffix: &str, authority: Value| -> Result<Arc<CompiledPolicy>, PolicyError> {
            let cip = json!({"images": [{"glob": "**"}], "authorities": [authority]});
            let name = format!("{policy}/{}{suffix}", a.name);
            let spec = spec_from_value(cip).map_err(|(e, _)| relocate(e, &at))?;
            compile_cip(&name, &spec)
                .map(Arc::new)
                .map_err(|e| relocate(e, &at))
        };
        // A cosign attestor reads cosign's tags and, where the options
        // allow it (not with a tag prefix or another hash), the bundles
        // cosign v3 stores as OCI referrers.
        let layouts = |suffix: &str, authority: Value| {
            let mut policies = vec![one(suffix, authority.clone())?];
            if !notary {
                let mut bundle = authority;
                bundle["signatureFormat"] = json!("bundle");
                policies.extend(one(&format!("{suffix}/bundle"), bundle).ok());
            }
            Ok::<_, PolicyError>(policies)
        };
        let signature = layouts("", authority.clone())?;
        let mut intoto = BTreeMap::new();
        if !notary {
            for (name, kind) in attestations {
                if let AttestationKind::Intoto(predicate) = kind {
                    let mut with = authority.clone();
                    with["attestations"] = json!([{"name": name, "predicateType": predicate}]);
                    intoto.insert(name.clone(), layouts(&format!("/{name}"), with)?);
                }
            }
        }
        out.push(CompiledAttestor {
            name: a.name.clone(),
            signature,
            intoto,
            notary,
        });
    }
    Ok(out)
}

/// A ClusterImagePolicy error said at the attestor field it came from.
fn relocate(e: PolicyError, at: &str) -> PolicyError {
    let Some(rest) = e.field.strip_prefix("spec.authorities[0]") else {
        return err(at, e.message);
    };
    // The authority's fields as the attestor writes them.
    const RENAMED: [(&str, &str); 7] = [
        (".notation.trustStore.tsaCertificates", ".notary.tsaCerts"),
        (".notation.trustStore.certificates", ".notary.certs"),
        (".notation", ".notary"),
        (".keyless.ca-cert", ".cosign.keyless.roots"),
        (".keyless", ".cosign.keyless"),
        (".key", ".cosign.key"),
        (".source[0].oci", ".cosign.source.repository"),
    ];
    let rest = RENAMED
        .iter()
        .find_map(|(from, to)| {
            rest.strip_prefix(from).map(|tail| {
                // `roots` is one PEM text: whatever inside it is wrong, it is the field.
                if to.ends_with("roots") || to.ends_with("certs") || to.ends_with("tsaCerts") {
                    to.to_string()
                } else {
                    format!("{to}{tail}")
                }
            })
        })
        .unwrap_or_else(|| rest.replace(".source[0]", ".cosign.source"));
    err(format!("{at}{rest}"), e.message)
}

/// The ClusterImagePolicy authority an attestor is.
fn authority(a: &Attestor, at: &str) -> Result<Value, PolicyError> {
    match (&a.cosign, &a.notary) {
        (Some(c), None) => cosign_authority(c, &format!("{at}.cosign")),
        (None, Some(n)) => {
            let at = format!("{at}.notary");
            let certs = literal(n.certs.as_ref(), &format!("{at}.certs"))?
                .ok_or_else(|| err(format!("{at}.certs"), "certificates are required"))?;
            let mut store = json!({"certificates": certs});
            if let Some(tsa) = literal(n.tsa_certs.as_ref(), &format!("{at}.tsaCerts"))? {
                store["tsaCertificates"] = json!(tsa);
            }
            Ok(json!({"notation": {"trustStore": store, "trustedIdentities": ["*"]}}))
        }
        _ => Err(err(at, "exactly one of cosign and notary is required")),
    }
}

/// A `{value, expression}` pair: the value; an expression is refused.
fn literal(
    v: Option<&super::types::StringOrExpression>,
    at: &str,
) -> Result<Option<String>, PolicyError> {
    match v {
        None => Ok(None),
        Some(v) if v.expression.is_some() => Err(err(
            format!("{at}.expression"),
            "certificates and keys from CEL are not supported by sigil yet: write the value",
        )),
        Some(v) => Ok(v.value.clone()),
    }
}

fn cosign_authority(c: &super::types::Cosign, at: &str) -> Result<Value, PolicyError> {
    let no = |field: &str, why: &str| Err(err(format!("{at}.{field}"), why.to_string()));
    if c.annotations.is_some() {
        return no(
            "annotations",
            "payload annotations are not supported by sigil",
        );
    }
    if c.certificate.is_some() {
        return no(
            "certificate",
            "certificate attestors are not supported by sigil; use key or keyless",
        );
    }
    if c.tuf.is_some() {
        return no("tuf", "write the root as a TrustRoot resource; an attestor's own TUF repository is not supported by sigil");
    }
    if c.trusted_root.is_some() {
        return no("trustedRoot", "write the root as a TrustRoot resource; an attestor's own trusted root is not supported by sigil");
    }
    let mut authority = match (&c.key, &c.keyless) {
        (Some(k), None) => {
            if k.expression.is_some() {
                return no(
                    "key.expression",
                    "keys from CEL are not supported by sigil yet: write key.data",
                );
            }
            if k.kms.is_some() {
                return no("key.kms", "KMS keys in an ImageValidatingPolicy are not supported by sigil yet; use a ClusterImagePolicy");
            }
            let Some(data) = &k.data else {
                return no("key", "key.data is required");
            };
            let mut key = json!({"data": data});
            if let Some(h) = &k.hash_algorithm {
                key["hashAlgorithm"] = json!(h);
            }
            json!({"key": key})
        }
        (None, Some(k)) => {
            if k.additional_extensions.is_some() {
                return no(
                    "keyless.additionalExtensions",
                    "certificate extensions are not supported by sigil in an ImageValidatingPolicy",
                );
            }
            let mut identities = Vec::new();
            for (i, id) in k.identities.iter().enumerate() {
                if id.subject_expression.is_some() {
                    return no(
                        &format!("keyless.identities[{i}].subjectExpression"),
                        "subjects from CEL are not supported by sigil",
                    );
                }
                let mut o = serde_json::Map::new();
                for (key, v) in [
                    ("issuer", &id.issuer),
                    ("issuerRegExp", &id.issuer_reg_exp),
                    ("subject", &id.subject),
                    ("subjectRegExp", &id.subject_reg_exp),
                ] {
                    if let Some(v) = v {
                        o.insert(key.into(), json!(v));
                    }
                }
                identities.push(Value::Object(o));
            }
            let mut keyless = json!({"identities": identities});
            if let Some(roots) = &k.roots {
                keyless["ca-cert"] = json!({"data": roots});
            }
            if c.ctlog.as_ref().and_then(|l| l.insecure_ignore_sct) == Some(true) {
                keyless["insecureIgnoreSCT"] = json!(true);
            }
            json!({"keyless": keyless})
        }
        _ => return no("", "exactly one of key and keyless is required"),
    };
    if let Some(l) = &c.ctlog {
        if l.rekor_pub_key.is_some() || l.ct_log_pub_key.is_some() || l.tsa_cert_chain.is_some() {
            return no(
                "ctlog",
                "log and TSA keys are read from the trust root in sigil: write them as a TrustRoot",
            );
        }
        if l.insecure_ignore_tlog == Some(true) {
            return no("ctlog.insecureIgnoreTlog", "sigil does not skip the transparency log; use a key authority with an RFC 3161 timestamp");
        }
    }
    if let Some(s) = &c.source {
        let mut source = serde_json::Map::new();
        if let Some(r) = &s.repository {
            source.insert("oci".into(), json!(r));
        }
        if let Some(t) = &s.tag_prefix {
            source.insert("tagPrefix".into(), json!(t));
        }
        if !s.pull_secrets.is_empty() {
            source.insert(
                "signaturePullSecrets".into(),
                json!(s
                    .pull_secrets
                    .iter()
                    .map(|p| json!({"name": p.name}))
                    .collect::<Vec<_>>()),
            );
        }
        if !source.is_empty() {
            authority["source"] = json!([source]);
        }
    }
    Ok(authority)
}
