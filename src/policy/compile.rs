//! Turns a `ClusterImagePolicySpec` into the form the verifier uses: globs
//! compiled, keys parsed, defaults applied, every problem named by its field.
//! This runs when a policy changes, never on the request path.
//!
//! About 500 lines of code and 80 of tests: one compilation path, authority
//! by authority, kept whole so every field's path is built in one place;
//! the rules that only refuse (policy-controller's) are in `validate`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::core::{Selector, SelectorExt};

use sha2::{Digest, Sha256};

use super::glob::ImageGlob;
use super::program::{Language, Program};
use super::types::{Authority, ClusterImagePolicySpec, NotationRef};
use super::validate::validate;
use crate::image::ImageRef;
use crate::model::error::{err, PolicyError};
use crate::model::identity::{
    CertificateTrust, IdentityRule, KeylessPolicy, PrivateCa, TextMatcher,
};
use crate::model::keys::{HashAlgorithm, VerificationKey};
use crate::model::notation::NotationPolicy;

/// How a policy's failures are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Failures deny admission.
    Enforce,
    /// Failures admit with a warning.
    Warn,
    /// Failures admit and are written to the audit log.
    Audit,
}

impl PolicyMode {
    /// Parses `spec.mode`; empty means enforce.
    pub fn parse(mode: Option<&str>) -> Option<Self> {
        match mode.unwrap_or("") {
            "" | "enforce" => Some(Self::Enforce),
            "warn" => Some(Self::Warn),
            "audit" => Some(Self::Audit),
            _ => None,
        }
    }

    /// Its spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Warn => "warn",
            Self::Audit => "audit",
        }
    }
}

/// A policy ready for evaluation.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// `metadata.name`.
    pub name: String,
    /// Enforcement mode.
    pub mode: PolicyMode,
    /// Image globs.
    pub globs: Vec<ImageGlob>,
    /// Authorities, in order; any one passing passes the policy.
    pub authorities: Vec<CompiledAuthority>,
    /// Spec-level fields this build does not implement (the policy fails
    /// closed for every image it matches, naming them).
    pub unsupported: Vec<String>,
    /// sha256 of the spec: verdict cache entries are keyed by it, so an edited
    /// policy never reuses an old verdict.
    pub fingerprint: String,
    /// `spec.match`: the resources the policy applies to (empty: all).
    pub match_rules: Vec<MatchRule>,
    /// `spec.policy`: when present, it decides over every authority's
    /// matches (policy-controller's `authorityMatches` input) instead of
    /// "any authority passes".
    pub program: Option<Program>,
}

/// One `spec.match` entry.
#[derive(Debug)]
pub struct MatchRule {
    /// API group (`""` is the core group); `None` matches any.
    pub group: Option<String>,
    /// API version; `None` matches any.
    pub version: Option<String>,
    /// Resource (plural); `None` matches any.
    pub resource: Option<String>,
    /// Labels the object must carry.
    pub selector: Option<Selector>,
}

/// The resource being admitted, as `spec.match` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRef {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource (plural), e.g. `deployments`.
    pub resource: String,
    /// The object's labels.
    pub labels: BTreeMap<String, String>,
}

impl CompiledPolicy {
    /// Whether `spec.match` selects this resource.
    pub fn applies_to(&self, r: &ResourceRef) -> bool {
        self.match_rules.is_empty()
            || self.match_rules.iter().any(|m| {
                m.group.as_ref().is_none_or(|g| *g == r.group)
                    && m.version.as_ref().is_none_or(|v| *v == r.version)
                    && m.resource.as_ref().is_none_or(|x| *x == r.resource)
                    && m.selector.as_ref().is_none_or(|s| s.matches(&r.labels))
            })
    }
}

/// One authority of a compiled policy.
#[derive(Debug)]
pub struct CompiledAuthority {
    /// Name from the spec or `authority-<index>`.
    pub name: String,
    /// What must hold.
    pub check: AuthorityCheck,
    /// Repository holding the signatures; `None` means beside the image.
    pub signature_repository: Option<SignatureRepository>,
    /// `source[].signaturePullSecrets`: Secrets in the workload's namespace.
    pub signature_pull_secrets: Vec<String>,
    /// `attestations[]`: when present, the authority is satisfied by these
    /// (each verified with the authority's key or identity) instead of by a
    /// signature, as in policy-controller.
    pub attestations: Vec<CompiledAttestation>,
    /// `source[].tagPrefix`: prefix of the `sha256-<hex>.sig`/`.att` tags.
    pub signature_tag_prefix: String,
    /// `signatureFormat: bundle`: signatures and attestations are Sigstore
    /// bundles (or cosign OCI 1.1 signatures) behind OCI referrers.
    pub bundle_format: bool,
    /// `source[].githubAttestations`: the bundles are listed by GitHub's
    /// attestation API instead of read from the registry.
    pub github: Option<Arc<GithubSource>>,
}

/// `source[].githubAttestations`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubSource {
    /// The API's base URL, without a trailing `/`.
    pub api: String,
    /// The organisation or user.
    pub owner: String,
    /// A repository of the owner, when the policy names one.
    pub repository: Option<String>,
    /// The token from `tokenSecretRef`, when it names one.
    pub token: Option<String>,
}

/// GitHub's public API, where `githubAttestations.url` is not set.
pub const GITHUB_API: &str = "https://api.github.com";

/// One required attestation.
#[derive(Debug)]
pub struct CompiledAttestation {
    /// `name`, used in messages and `spec.policy`.
    pub name: String,
    /// The predicate type URI (cosign short names resolved).
    pub predicate_type: String,
    /// A program every matching attestation must satisfy.
    pub policy: Option<Program>,
}

/// cosign's predicate type short names and the URIs they stand for.
pub fn predicate_type_uri(name: &str) -> Option<&'static str> {
    Some(match name {
        "custom" => "https://cosign.sigstore.dev/attestation/v1",
        "slsaprovenance" | "slsaprovenance02" => "https://slsa.dev/provenance/v0.2",
        "slsaprovenance1" => "https://slsa.dev/provenance/v1",
        "link" => "https://in-toto.io/Link/v1",
        "spdx" | "spdxjson" => "https://spdx.dev/Document",
        "cyclonedx" => "https://cyclonedx.org/bom",
        "vuln" => "https://cosign.sigstore.dev/attestation/vuln/v1",
        "openvex" => "https://openvex.dev/ns",
        _ => return None,
    })
}

/// The test an authority applies.
#[derive(Debug)]
pub enum AuthorityCheck {
    /// A cosign signature made with this key.
    Key {
        /// The key.
        key: Arc<VerificationKey>,
        /// Evidence beyond the signature (`ctlog`, `rfc3161timestamp`).
        evidence: Option<KeyEvidence>,
    },
    /// A keyless signature by one of these identities.
    Keyless(Arc<KeylessPolicy>),
    /// A fixed verdict.
    Static {
        /// `action: pass`.
        pass: bool,
        /// Message for `fail`.
        message: Option<String>,
    },
    /// A Notation signature under this trust policy (sigil's extension).
    Notation(Arc<NotationPolicy>),
    /// A field this build does not verify yet: the authority never passes.
    Unsupported {
        /// The field path, e.g. `spec.authorities[0].keyless`.
        field: String,
    },
}

/// What a key authority asks for beyond the signature itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvidence {
    /// `ctlog`: a Rekor SET over this signature.
    pub tlog: bool,
    /// `rfc3161timestamp`: a TSA timestamp over this signature.
    pub timestamp: bool,
    /// The trust root for both (`trustRootRef`; `None`: the default).
    pub trust_root_ref: Option<String>,
}

/// A registry repository (from `source[].oci`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignatureRepository {
    /// Registry host.
    pub registry: String,
    /// Repository path.
    pub repository: String,
}

/// Computes the fingerprint of a spec (its canonical JSON's sha256).
pub fn fingerprint(spec: &ClusterImagePolicySpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// Compiles only the globs, so that a policy that is otherwise invalid can
/// still claim (and fail closed for) the images it names.
pub fn compile_globs(spec: &ClusterImagePolicySpec) -> Result<Vec<ImageGlob>, PolicyError> {
    if spec.images.is_empty() {
        return Err(err("spec.images", "at least one image glob is required"));
    }
    spec.images
        .iter()
        .enumerate()
        .map(|(i, p)| {
            ImageGlob::compile(&p.glob)
                .map_err(|e| err(format!("spec.images[{i}].glob"), e.to_string()))
        })
        .collect()
}

/// Every glob of the spec that compiles. An invalid policy claims (and
/// fails closed for) all the images these name, even when another of its
/// globs is what makes it invalid.
pub fn parseable_globs(spec: &ClusterImagePolicySpec) -> Vec<ImageGlob> {
    spec.images
        .iter()
        .filter_map(|p| ImageGlob::compile(&p.glob).ok())
        .collect()
}

/// Compiles a policy, or names the first field that makes it unusable.
/// Validation ([`super::validate`]) runs first, so the rest only extracts
/// values whose shape is already known to be right.
pub fn compile(name: &str, spec: &ClusterImagePolicySpec) -> Result<CompiledPolicy, PolicyError> {
    if let Some(first) = validate(spec).errors.into_iter().next() {
        return Err(first);
    }
    let globs = compile_globs(spec)?;
    let mode = PolicyMode::parse(spec.mode.as_deref()).unwrap_or(PolicyMode::Enforce);
    let authorities = spec
        .authorities
        .iter()
        .enumerate()
        .map(|(i, a)| compile_authority(i, a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut unsupported = Vec::new();
    let program = match &spec.policy {
        None => None,
        Some(p) => compile_program("spec.policy", p, &mut unsupported)?,
    };
    let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
    let match_rules = spec
        .match_resources
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let selector = m
                .selector
                .clone()
                .map(Selector::try_from)
                .transpose()
                .map_err(|e| err(format!("spec.match[{i}].selector"), e.to_string()))?;
            Ok(MatchRule {
                // An empty group with a version or resource means the core group.
                group: m.group.clone().or_else(|| {
                    (nonempty(&m.version).is_some() || nonempty(&m.resource).is_some())
                        .then(String::new)
                }),
                version: nonempty(&m.version),
                resource: nonempty(&m.resource),
                selector,
            })
        })
        .collect::<Result<Vec<_>, PolicyError>>()?;
    Ok(CompiledPolicy {
        name: name.to_string(),
        mode,
        globs,
        authorities,
        unsupported,
        fingerprint: fingerprint(spec),
        match_rules,
        program,
    })
}

/// Compiles a policy program given inline (`data`); a `remote` or
/// `configMapRef` program that has not been resolved into `data` yet is
/// recorded as unsupported (the policy fails closed naming it).
fn compile_program(
    path: &str,
    p: &super::types::Policy,
    unsupported: &mut Vec<String>,
) -> Result<Option<Program>, PolicyError> {
    unsupported.extend(
        super::validate::unimplemented_inputs(p)
            .into_iter()
            .map(|f| format!("{path}.{f}")),
    );
    let language = match p.policy_type.as_str() {
        "rego" => Language::Rego,
        "cel" => Language::Cel,
        _ => {
            return Err(err(
                format!("{path}.type"),
                "CUE is not supported; use rego or cel",
            ))
        }
    };
    match p.data.as_deref().filter(|d| !d.is_empty()) {
        Some(data) => Program::compile(language, data)
            .map(Some)
            .map_err(|e| err(format!("{path}.data"), format!("does not compile: {e}"))),
        None => {
            let source = if p.remote.is_some() {
                "remote (not fetched)"
            } else {
                "configMapRef (only resolved when sigil watches a cluster)"
            };
            unsupported.push(format!("{path}.{source}"));
            Ok(None)
        }
    }
}

fn compile_authority(index: usize, a: &Authority) -> Result<CompiledAuthority, PolicyError> {
    let path = format!("spec.authorities[{index}]");
    let name = a
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("authority-{index}"));

    if let Some(st) = &a.static_ref {
        return Ok(CompiledAuthority {
            name,
            check: AuthorityCheck::Static {
                pass: st.action == "pass",
                message: st.message.clone().filter(|m| !m.is_empty()),
            },
            signature_repository: None,
            signature_pull_secrets: Vec::new(),
            attestations: Vec::new(),
            signature_tag_prefix: String::new(),
            bundle_format: false,
            github: None,
        });
    }

    let mut unsupported: Option<String> = None;
    let mut signature_repository = None;
    let mut signature_tag_prefix = String::new();
    let mut github = None;
    if let Some(src) = a.sources.first() {
        let sp = format!("{path}.source[0]");
        if let Some(oci) = src.oci.as_deref() {
            let r = ImageRef::parse(oci).map_err(|e| err(format!("{sp}.oci"), e.to_string()))?;
            signature_repository = Some(SignatureRepository {
                registry: r.registry,
                repository: r.repository,
            });
        }
        if let Some(prefix) = src.tag_prefix.as_deref().filter(|p| !p.is_empty()) {
            signature_tag_prefix = prefix.to_string();
        }
        if let Some(g) = &src.github_attestations {
            if g.token_secret_ref.is_some() && g.token.is_none() {
                unsupported.get_or_insert(format!(
                    "{sp}.githubAttestations.tokenSecretRef (only resolved when sigil watches a cluster)"
                ));
            }
            github = Some(Arc::new(GithubSource {
                api: g
                    .url
                    .as_deref()
                    .unwrap_or(GITHUB_API)
                    .trim_end_matches('/')
                    .to_string(),
                owner: g.owner.clone(),
                repository: g.repository.clone().filter(|r| !r.is_empty()),
                token: g.token.clone(),
            }));
        }
    }

    let tlog_ref = a
        .ctlog
        .as_ref()
        .map(|c| c.trust_root_ref.clone().filter(|r| !r.is_empty()));
    let tsa_ref = a
        .rfc3161timestamp
        .as_ref()
        .map(|t| t.trust_root_ref.clone().filter(|r| !r.is_empty()));
    // One trust root per authority: every trustRootRef it names must be
    // the same one, or the policy is refused naming the two that differ
    // (a certificate chain checked against one root and its timestamp
    // against another would be neither root's promise).
    let named_refs = [
        (
            format!("{path}.keyless.trustRootRef"),
            a.keyless
                .as_ref()
                .and_then(|k| k.trust_root_ref.clone())
                .filter(|r| !r.is_empty()),
        ),
        (
            format!("{path}.ctlog.trustRootRef"),
            tlog_ref.clone().flatten(),
        ),
        (
            format!("{path}.rfc3161timestamp.trustRootRef"),
            tsa_ref.clone().flatten(),
        ),
    ];
    let mut named = named_refs
        .iter()
        .filter_map(|(field, r)| r.as_ref().map(|r| (field, r)));
    if let Some((first_field, first)) = named.next() {
        if let Some((field, other)) = named.find(|(_, r)| *r != first) {
            return Err(err(
                field.clone(),
                format!(
                    "names TrustRoot {other:?}, but {first_field} names {first:?}: an authority is verified against one trust root; name the same one"
                ),
            ));
        }
    }
    let evidence_ref = tlog_ref
        .clone()
        .flatten()
        .or_else(|| tsa_ref.clone().flatten());
    let mut check = None;
    if let Some(key) = &a.key {
        let kp = format!("{path}.key");
        match key.data.as_deref().filter(|d| !d.is_empty()) {
            Some(data) => {
                let hash = HashAlgorithm::parse(key.hash_algorithm.as_deref())
                    .map_err(|e| err(format!("{kp}.hashAlgorithm"), e.to_string()))?;
                let vk = VerificationKey::from_pem(data, hash)
                    .map_err(|e| err(format!("{kp}.data"), e.to_string()))?;
                check = Some(AuthorityCheck::Key {
                    key: Arc::new(vk),
                    evidence: (tlog_ref.is_some() || tsa_ref.is_some()).then(|| KeyEvidence {
                        tlog: tlog_ref.is_some(),
                        timestamp: tsa_ref.is_some(),
                        trust_root_ref: evidence_ref.clone(),
                    }),
                });
            }
            None if key.secret_ref.is_some() => {
                // The cluster watcher inlines Secret keys before compiling;
                // a secretRef left here means there is no cluster to read it from.
                unsupported.get_or_insert(format!(
                    "{kp}.secretRef (only resolved when sigil watches a cluster)"
                ));
            }
            None => {
                unsupported.get_or_insert(format!("{kp}.kms"));
            }
        }
    }
    if let Some(k) = &a.keyless {
        let kp = format!("{path}.keyless");
        let identities = k
            .identities
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let ip = format!("{kp}.identities[{i}]");
                let claims = id
                    .claims()
                    .into_iter()
                    .map(|(claim, exact, pattern)| {
                        TextMatcher::new(exact, pattern)
                            .map(|m| (claim, m))
                            .map_err(|e| {
                                err(format!("{ip}.{}RegExp", claim.field()), e.to_string())
                            })
                    })
                    .collect::<Result<Vec<_>, PolicyError>>()?;
                Ok(IdentityRule {
                    issuer: TextMatcher::new(id.issuer.as_deref(), id.issuer_reg_exp.as_deref())
                        .map_err(|e| err(format!("{ip}.issuerRegExp"), e.to_string()))?,
                    subject: TextMatcher::new(id.subject.as_deref(), id.subject_reg_exp.as_deref())
                        .map_err(|e| err(format!("{ip}.subjectRegExp"), e.to_string()))?,
                    claims,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let trust = match &k.ca_cert {
            None => Some(CertificateTrust::TrustRoot),
            Some(ca) => match ca.data.as_deref().filter(|d| !d.is_empty()) {
                Some(data) => Some(CertificateTrust::PrivateCa(Arc::new(
                    PrivateCa::from_pem(data).map_err(|e| err(format!("{kp}.ca-cert.data"), e))?,
                ))),
                None if ca.secret_ref.is_some() => {
                    unsupported.get_or_insert(format!(
                        "{kp}.ca-cert.secretRef (only resolved when sigil watches a cluster)"
                    ));
                    None
                }
                None => {
                    unsupported.get_or_insert(format!("{kp}.ca-cert.kms"));
                    None
                }
            },
        };
        if let Some(trust) = trust {
            let private = matches!(trust, CertificateTrust::PrivateCa(_));
            check = Some(AuthorityCheck::Keyless(Arc::new(KeylessPolicy {
                identities,
                trust,
                trust_root_ref: k
                    .trust_root_ref
                    .clone()
                    .filter(|r| !r.is_empty())
                    .or_else(|| evidence_ref.clone()),
                verify_sct: !k.insecure_ignore_sct.unwrap_or(false),
                // Fulcio certificates need a Rekor entry, with or without
                // rfc3161timestamp (as policy-controller), unless the trust
                // root has no log at all and the authority asks for a TSA
                // timestamp instead (GitHub's instance for private
                // repositories); a private CA needs one only when `ctlog`
                // asks.
                require_tlog: tlog_ref.is_some() || !private,
                timestamp_without_log: !private && tlog_ref.is_none() && tsa_ref.is_some(),
                require_timestamp: tsa_ref.is_some(),
            })));
        }
    }
    let mut attestations = Vec::new();
    for (j, att) in a.attestations.iter().enumerate() {
        let ap = format!("{path}.attestations[{j}]");
        let predicate_type = predicate_type_uri(&att.predicate_type)
            .map(str::to_string)
            .unwrap_or_else(|| att.predicate_type.clone());
        let mut missing = Vec::new();
        let policy = match &att.policy {
            None => None,
            Some(p) => compile_program(&format!("{ap}.policy"), p, &mut missing)?,
        };
        if let Some(m) = missing.into_iter().next() {
            unsupported.get_or_insert(m);
        }
        attestations.push(CompiledAttestation {
            name: att.name.clone(),
            predicate_type,
            policy,
        });
    }
    if let Some(n) = &a.notation {
        check = Some(AuthorityCheck::Notation(Arc::new(compile_notation(
            &format!("{path}.notation"),
            n,
        )?)));
    }
    let check = match unsupported {
        Some(field) => AuthorityCheck::Unsupported { field },
        None => check.ok_or_else(|| err(&path, "no verification method"))?,
    };
    Ok(CompiledAuthority {
        name,
        check,
        signature_repository,
        signature_pull_secrets: a
            .sources
            .iter()
            .flat_map(|s| s.signature_pull_secrets.iter().map(|r| r.name.clone()))
            .collect(),
        attestations,
        signature_tag_prefix,
        // GitHub's API lists Sigstore bundles only.
        bundle_format: a.signature_format.as_deref() == Some("bundle") || github.is_some(),
        github,
    })
}

/// A `notation` authority: certificates parsed into trust anchors once,
/// identities and level parsed (validation has named any bad field).
fn compile_notation(path: &str, n: &NotationRef) -> Result<NotationPolicy, PolicyError> {
    use crate::model::notation::{anchors, pem_certificates, pem_crls, Level, TrustedIdentity};
    let store = format!("{path}.trustStore");
    let certificates = pem_certificates(&n.trust_store.certificates)
        .map_err(|e| err(format!("{store}.certificates"), e))?;
    let trust_anchors =
        anchors(&certificates).map_err(|e| err(format!("{store}.certificates"), e))?;
    let tsa_anchors = match &n.trust_store.tsa_certificates {
        None => Vec::new(),
        Some(pem) => pem_certificates(pem)
            .and_then(|c| anchors(&c))
            .map_err(|e| err(format!("{store}.tsaCertificates"), e))?,
    };
    let crls = match &n.trust_store.crls {
        None => Vec::new(),
        Some(pem) => pem_crls(pem).map_err(|e| err(format!("{store}.crls"), e))?,
    };
    let identities = n
        .trusted_identities
        .iter()
        .enumerate()
        .map(|(i, id)| {
            TrustedIdentity::parse(id).map_err(|e| err(format!("{path}.trustedIdentities[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if identities.is_empty() {
        return Err(err(
            format!("{path}.trustedIdentities"),
            "at least one entry",
        ));
    }
    Ok(NotationPolicy {
        anchors: trust_anchors,
        tsa_anchors,
        crls,
        identities,
        level: Level::parse(n.verification_level.as_deref())
            .map_err(|e| err(format!("{path}.verificationLevel"), e))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ClusterImagePolicySpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const KEY: &str = include_str!("../../tests/fixtures/containers-image/cosign.pub");

    #[test]
    fn compiles_key_policy_with_defaults() {
        let s = ClusterImagePolicySpec {
            images: vec![super::super::types::ImagePattern { glob: "**".into() }],
            authorities: vec![Authority {
                key: Some(super::super::types::KeyRef {
                    data: Some(KEY.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = compile("p", &s).unwrap();
        assert_eq!(p.mode, PolicyMode::Enforce);
        assert_eq!(p.authorities[0].name, "authority-0");
        assert!(matches!(
            p.authorities[0].check,
            AuthorityCheck::Key { evidence: None, .. }
        ));
    }

    /// One trust root per authority: trustRootRefs that differ are refused
    /// naming both fields; the same one named twice, or one alone, loads.
    #[test]
    fn an_authority_naming_two_trust_roots_is_refused() {
        let keyless = "keyless: {identities: [{issuer: https://i.example, subject: s}]";
        let e = compile(
            "p",
            &spec(&format!("images: [{{glob: '**'}}]\nauthorities: [{{{keyless}, trustRootRef: a}}, rfc3161timestamp: {{trustRootRef: b}}}}]\n")),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].rfc3161timestamp.trustRootRef");
        assert!(
            e.message.contains("\"b\"")
                && e.message
                    .contains("spec.authorities[0].keyless.trustRootRef names \"a\""),
            "{}",
            e.message
        );
        let e = compile(
            "p",
            &spec(&format!("images: [{{glob: '**'}}]\nauthorities: [{{{keyless}}}, ctlog: {{trustRootRef: a}}, rfc3161timestamp: {{trustRootRef: b}}}}]\n")),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].rfc3161timestamp.trustRootRef");
        for same in [
            format!("[{{{keyless}, trustRootRef: a}}, ctlog: {{trustRootRef: a}}, rfc3161timestamp: {{trustRootRef: a}}}}]"),
            format!("[{{{keyless}}}, rfc3161timestamp: {{trustRootRef: a}}}}]"),
        ] {
            let p = compile("p", &spec(&format!("images: [{{glob: '**'}}]\nauthorities: {same}\n"))).unwrap();
            let AuthorityCheck::Keyless(k) = &p.authorities[0].check else {
                panic!("keyless")
            };
            assert_eq!(k.trust_root_ref.as_deref(), Some("a"));
        }
    }

    #[test]
    fn names_the_wrong_field() {
        let e = compile(
            "p",
            &spec("images: [{glob: '**'}]\nauthorities: [{key: {data: nope}}]\n"),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].key.data");
        let e = compile(
            "p",
            &spec("images: [{glob: '**'}]\nmode: loud\nauthorities: [{static: {action: pass}}]\n"),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.mode");
        let e = compile(
            "p",
            &spec("images: [{glob: '[a]'}]\nauthorities: [{static: {action: pass}}]\n"),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.images[0].glob");
        let e = compile(
            "p",
            &spec("images: [{glob: '**'}]\nauthorities: [{static: {action: maybe}}]\n"),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].static.action");
        let e = compile("p", &spec("images: [{glob: '**'}]\nauthorities: [{}]\n")).unwrap_err();
        assert_eq!(e.field, "spec.authorities[0]");
        assert!(e.message.contains("found none"));
    }

    #[test]
    fn unimplemented_fields_fail_closed_by_name() {
        let p = compile("p", &spec("images: [{glob: '**'}]\nauthorities: [{key: {kms: 'gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k'}}]\n")).unwrap();
        match &p.authorities[0].check {
            AuthorityCheck::Unsupported { field } => {
                assert_eq!(field, "spec.authorities[0].key.kms")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let a = spec("images: [{glob: '**'}]\nauthorities: [{static: {action: pass}}]\n");
        let b = spec("images: [{glob: '**'}]\nauthorities: [{static: {action: fail}}]\n");
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
    }
}
