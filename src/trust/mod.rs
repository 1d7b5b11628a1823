//! Trust roots: whom sigil trusts for keyless signatures (Fulcio CAs), for
//! transparency (Rekor and CT log keys) and for time (RFC 3161 TSAs).
//!
//! The default is the Sigstore public-good trusted root, embedded in the
//! binary so that verification never needs the network; `--trust-root FILE`
//! replaces it. `TrustRoot` resources add named roots that authorities select
//! with `trustRootRef`. Validity windows (`validFor`) are honoured by the
//! verifier: a key or CA counts only for signatures made inside its window.

pub mod root_facts;
pub mod tuf;
pub mod types;

pub use root_facts::{KnownLog, RootFacts};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sigstore_trust_root::TrustedRoot;

use crate::model::error::PolicyError;
use types::{CertificateAuthority, SigstoreKeys, TransparencyLogInstance, TrustRootSpec, ValidFor};

/// The Sigstore public-good trusted root (sigstore/root-signing,
/// `targets/trusted_root.json`), the default when no `--trust-root` is given.
pub const PUBLIC_GOOD_TRUSTED_ROOT: &str = include_str!("public-good-trusted-root.json");

/// Name under which the default root is reported.
pub const DEFAULT_NAME: &str = "default";

/// A trusted root that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    /// The trusted-root JSON does not parse or holds unusable material.
    #[error("trusted root {name} is unusable: {reason}")]
    Unusable {
        /// Which root.
        name: String,
        /// Why.
        reason: String,
    },
    /// No root of that name exists.
    #[error("TrustRoot {0} does not exist")]
    Missing(String),
    /// A `remote` TrustRoot whose mirror has not been read yet (or could not
    /// be: the reason is logged and written to its status).
    #[error("TrustRoot {0} has not been loaded from its remote TUF mirror yet")]
    Pending(String),
    /// A `TrustRoot` resource that is invalid.
    #[error("TrustRoot {name} is not ready: {error}")]
    NotReady {
        /// Which root.
        name: String,
        /// The field that is wrong.
        error: PolicyError,
    },
}

/// One parsed trusted root with its prepared verifier.
pub struct TrustMaterial {
    /// `default` or the TrustRoot's name.
    pub name: String,
    /// The trusted root.
    pub root: TrustedRoot,
    /// sigstore-verify's verifier over it (keyrings and anchors prepared once).
    pub verifier: sigstore_verify::Verifier,
    /// Its logs and TSA certificates, as the strict bundle reading checks them.
    pub facts: RootFacts,
}

impl std::fmt::Debug for TrustMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustMaterial")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TrustMaterial {
    /// Parses protobuf-specs trusted-root JSON.
    pub fn from_json(name: &str, json: &str) -> Result<Self, TrustError> {
        let unusable = |reason: String| TrustError::Unusable {
            name: name.to_string(),
            reason,
        };
        let root = TrustedRoot::from_json(json).map_err(|e| unusable(e.to_string()))?;
        let verifier =
            sigstore_verify::Verifier::new(&root).map_err(|e| unusable(e.to_string()))?;
        Ok(TrustMaterial {
            name: name.to_string(),
            facts: RootFacts::of(&root),
            root,
            verifier,
        })
    }

    /// The embedded public-good root.
    pub fn public_good() -> Self {
        // The embedded file is tested; failing here is a build defect.
        Self::from_json(DEFAULT_NAME, PUBLIC_GOOD_TRUSTED_ROOT)
            .unwrap_or_else(|e| unreachable!("embedded trusted root: {e}"))
    }

    /// Reads a trusted-root JSON file (`--trust-root`).
    pub fn from_file(path: &std::path::Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrustError::Unusable {
            name: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(DEFAULT_NAME, &text)
    }

    /// Builds the material of a `TrustRoot` resource without the network: a
    /// `remote` one is only checked (its pinned root) and reported pending.
    pub fn from_spec(name: &str, spec: &TrustRootSpec) -> Result<Self, TrustError> {
        let not_ready = |field: String, message: String| TrustError::NotReady {
            name: name.to_string(),
            error: field_err(field, message),
        };
        let json = match source_of(spec).map_err(|e| not_ready(e.field, e.message))? {
            Source::Keys(keys) => keys_json(keys)
                .map_err(|e| not_ready(e.field, e.message))?
                .to_string(),
            Source::Repository(r) => {
                tuf::trusted_root_from_repository(&r.root, &r.mirror_fs, r.targets.as_deref())
                    .map_err(|(f, m)| not_ready(f, m))?
            }
            Source::Remote(r) => {
                tuf::decode_root(&r.root).map_err(|m| not_ready("spec.remote.root".into(), m))?;
                return Err(TrustError::Pending(name.to_string()));
            }
        };
        Self::from_json(name, &json).map_err(|e| match e {
            TrustError::Unusable { reason, .. } => not_ready("spec".into(), reason),
            other => other,
        })
    }

    /// [`TrustMaterial::from_spec`], reading a `remote` mirror over the network.
    pub async fn from_spec_fetching(name: &str, spec: &TrustRootSpec) -> Result<Self, TrustError> {
        let Ok(Source::Remote(r)) = source_of(spec) else {
            return Self::from_spec(name, spec);
        };
        let not_ready = |field: String, message: String| TrustError::NotReady {
            name: name.to_string(),
            error: field_err(field, message),
        };
        let json = tuf::trusted_root_from_remote(&r.root, &r.mirror, r.targets.as_deref())
            .await
            .map_err(|(f, m)| not_ready(f, m))?;
        Self::from_json(name, &json).map_err(|e| match e {
            TrustError::Unusable { reason, .. } => not_ready("spec.remote".into(), reason),
            other => other,
        })
    }
}

/// Where a `TrustRoot`'s material comes from (exactly one).
enum Source<'a> {
    Keys(&'a SigstoreKeys),
    Repository(&'a types::Repository),
    Remote(&'a types::Remote),
}

fn source_of(spec: &TrustRootSpec) -> Result<Source<'_>, PolicyError> {
    match (&spec.sigstore_keys, &spec.repository, &spec.remote) {
        (Some(k), None, None) => Ok(Source::Keys(k)),
        (None, Some(r), None) => Ok(Source::Repository(r)),
        (None, None, Some(r)) => Ok(Source::Remote(r)),
        _ => Err(field_err(
            "spec",
            "exactly one of sigstoreKeys, repository, remote is required",
        )),
    }
}

fn spec_of(name: &str, spec: Value) -> Result<TrustRootSpec, TrustError> {
    serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        TrustError::NotReady {
            name: name.to_string(),
            error: field_err(
                if path == "." {
                    "spec".to_string()
                } else {
                    format!("spec.{path}")
                },
                e.into_inner().to_string(),
            ),
        }
    })
}

/// Builds the material of a `TrustRoot` from its raw `spec` (as read from a
/// file or the API server), naming the exact field that does not fit. A
/// `remote` root is [`TrustError::Pending`] here; see
/// [`material_from_spec_value_fetching`].
pub fn material_from_spec_value(name: &str, spec: Value) -> Result<TrustMaterial, TrustError> {
    TrustMaterial::from_spec(name, &spec_of(name, spec)?)
}

/// [`material_from_spec_value`] straight from JSON text, without building
/// a JSON tree (`/validate-policy`).
pub fn material_from_spec_json(name: &str, spec: &str) -> Result<TrustMaterial, TrustError> {
    let mut de = serde_json::Deserializer::from_str(spec);
    let spec: TrustRootSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        TrustError::NotReady {
            name: name.to_string(),
            error: field_err(
                if path == "." {
                    "spec".to_string()
                } else {
                    format!("spec.{path}")
                },
                crate::model::error::json_message(&e.into_inner()),
            ),
        }
    })?;
    TrustMaterial::from_spec(name, &spec)
}

/// [`material_from_spec_value`], reading `remote` mirrors over the network.
pub async fn material_from_spec_value_fetching(
    name: &str,
    spec: Value,
) -> Result<TrustMaterial, TrustError> {
    TrustMaterial::from_spec_fetching(name, &spec_of(name, spec)?).await
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

/// Translates `sigstoreKeys` into protobuf-specs trusted-root JSON.
pub fn keys_json(keys: &SigstoreKeys) -> Result<Value, PolicyError> {
    let base = "spec.sigstoreKeys";
    let cas = keys
        .certificate_authorities
        .iter()
        .enumerate()
        .map(|(i, ca)| authority_json(&format!("{base}.certificateAuthorities[{i}]"), ca))
        .collect::<Result<Vec<_>, _>>()?;
    let tsas = keys
        .timestamp_authorities
        .iter()
        .enumerate()
        .map(|(i, ca)| authority_json(&format!("{base}.timestampAuthorities[{i}]"), ca))
        .collect::<Result<Vec<_>, _>>()?;
    let tlogs = keys
        .tlogs
        .iter()
        .enumerate()
        .map(|(i, l)| log_json(&format!("{base}.tLogs[{i}]"), l))
        .collect::<Result<Vec<_>, _>>()?;
    let ctlogs = keys
        .ctlogs
        .iter()
        .enumerate()
        .map(|(i, l)| log_json(&format!("{base}.ctLogs[{i}]"), l))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": tlogs,
        "certificateAuthorities": cas,
        "ctlogs": ctlogs,
        "timestampAuthorities": tsas,
    }))
}

fn decode_pem_field(field: &str, b64: &str) -> Result<Vec<pem::Pem>, PolicyError> {
    let text = B64
        .decode(b64.trim())
        .map_err(|e| field_err(field, format!("not base64: {e}")))?;
    let pems = pem::parse_many(&text).map_err(|e| field_err(field, format!("not PEM: {e}")))?;
    if pems.is_empty() {
        return Err(field_err(field, "holds no PEM block"));
    }
    Ok(pems)
}

fn valid_for_json(field: &str, v: &Option<ValidFor>) -> Result<Option<Value>, PolicyError> {
    let Some(v) = v else { return Ok(None) };
    let check = |name: &str, t: &str| {
        t.parse::<jiff::Timestamp>()
            .map_err(|e| field_err(format!("{field}.validFor.{name}"), e.to_string()))
    };
    check("start", &v.start)?;
    let mut out = json!({ "start": v.start });
    if let Some(end) = &v.end {
        check("end", end)?;
        out["end"] = json!(end);
    }
    Ok(Some(out))
}

fn authority_json(field: &str, ca: &CertificateAuthority) -> Result<Value, PolicyError> {
    let chain_field = format!("{field}.certChain");
    let certs = decode_pem_field(&chain_field, &ca.cert_chain)?;
    if let Some(p) = certs.iter().find(|p| p.tag() != "CERTIFICATE") {
        return Err(field_err(
            chain_field,
            format!("expected CERTIFICATE blocks, found {}", p.tag()),
        ));
    }
    let subject = ca.subject.clone().unwrap_or_default();
    let mut out = json!({
        "subject": {
            "organization": subject.organization.unwrap_or_default(),
            "commonName": subject.common_name.unwrap_or_default(),
        },
        "uri": ca.uri.clone().unwrap_or_default(),
        "certChain": {
            "certificates": certs
                .iter()
                .map(|c| json!({ "rawBytes": B64.encode(c.contents()) }))
                .collect::<Vec<_>>(),
        },
    });
    if let Some(v) = valid_for_json(field, &ca.valid_for)? {
        out["validFor"] = v;
    }
    Ok(out)
}

fn log_json(field: &str, log: &TransparencyLogInstance) -> Result<Value, PolicyError> {
    let key_field = format!("{field}.publicKey");
    let pems = decode_pem_field(&key_field, &log.public_key)?;
    let der = pems[0].contents();
    let details = key_details(der).map_err(|m| field_err(&key_field, m))?;
    let mut public_key = json!({
        "rawBytes": B64.encode(der),
        "keyDetails": details,
    });
    // Without a window the key is trusted for all time, as in
    // policy-controller (whose schema has no windows).
    public_key["validFor"] = valid_for_json(field, &log.valid_for)?
        .unwrap_or_else(|| json!({ "start": "1970-01-01T00:00:00Z" }));
    Ok(json!({
        "baseUrl": log.base_url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": public_key,
        "logId": { "keyId": B64.encode(Sha256::digest(der)) },
    }))
}

/// The protobuf-specs `PublicKeyDetails` name for an SPKI DER key.
fn key_details(spki_der: &[u8]) -> Result<&'static str, String> {
    use spki::der::Decode;
    let info = spki::SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| format!("not a public key: {e}"))?;
    let alg = info.algorithm.oid.to_string();
    let param = info
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    match (alg.as_str(), param.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => Ok("PKIX_ECDSA_P256_SHA_256"),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => Ok("PKIX_ECDSA_P384_SHA_384"),
        ("1.2.840.10045.2.1", Some("1.3.132.0.35")) => Ok("PKIX_ECDSA_P521_SHA_512"),
        ("1.3.101.112", _) => Ok("PKIX_ED25519"),
        ("1.2.840.113549.1.1.1", _) => Ok("PKIX_RSA_PKCS1V15_2048_SHA256"),
        _ => Err(format!("unsupported key algorithm {alg}")),
    }
}

/// A named root as loaded: usable, or the reason it is not.
pub type NamedRoot = (String, Result<TrustMaterial, TrustError>);

/// The default root and the named ones, swapped atomically as they change.
pub struct TrustStore {
    default: ArcSwap<TrustMaterial>,
    named: ArcSwap<BTreeMap<String, Result<Arc<TrustMaterial>, TrustError>>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("named", &self.named.load().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TrustStore {
    /// A store whose default is `default`.
    pub fn new(default: TrustMaterial) -> Self {
        TrustStore {
            default: ArcSwap::from_pointee(default),
            named: ArcSwap::from_pointee(BTreeMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// A store over the embedded public-good root.
    pub fn public_good() -> Self {
        Self::new(TrustMaterial::public_good())
    }

    /// Changes whenever any root changes: verdicts cached under an older
    /// generation are not reused.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The root an authority selects: `trustRootRef` or the default.
    pub fn resolve(&self, name: Option<&str>) -> Result<Arc<TrustMaterial>, TrustError> {
        match name.filter(|n| !n.is_empty()) {
            None => Ok(self.default.load_full()),
            Some(n) => match self.named.load().get(n) {
                Some(r) => r.clone(),
                None => Err(TrustError::Missing(n.to_string())),
            },
        }
    }

    /// Adds or replaces a named root (an invalid one is kept as its error,
    /// so that authorities naming it fail with the reason).
    pub fn set(&self, name: &str, material: Result<TrustMaterial, TrustError>) {
        let material = material.map(Arc::new);
        self.named.rcu(|m| {
            let mut m = (**m).clone();
            m.insert(name.to_string(), material.clone());
            m
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes a named root.
    pub fn remove(&self, name: &str) {
        self.named.rcu(|m| {
            let mut m = (**m).clone();
            m.remove(name);
            m
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Named roots that are usable and that are not (kept as their
    /// error). The default root is not counted.
    pub fn readiness(&self) -> (usize, usize) {
        let named = self.named.load();
        let ready = named.values().filter(|r| r.is_ok()).count();
        (ready, named.len() - ready)
    }

    /// Replaces every named root at once (a full relist).
    pub fn replace_all(&self, roots: BTreeMap<String, Result<TrustMaterial, TrustError>>) {
        let m = roots
            .into_iter()
            .map(|(k, v)| (k, v.map(Arc::new)))
            .collect();
        self.named.store(Arc::new(m));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_root_parses_and_has_public_good_material() {
        let m = TrustMaterial::public_good();
        assert_eq!(m.root.certificate_authorities.len(), 2);
        assert!(m
            .root
            .tlogs
            .iter()
            .any(|t| t.base_url == "https://rekor.sigstore.dev"));
        assert_eq!(m.root.ctlogs.len(), 2);
    }

    fn field_of(v: Value) -> String {
        match material_from_spec_value("t", v) {
            Err(TrustError::NotReady { error, .. }) => error.field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trust_root_spec_errors_name_the_field() {
        assert_eq!(
            field_of(
                json!({"sigstoreKeys": {"certificateAuthorities": [{"subject": {}, "uri": "x", "certChain": "!!"}]}})
            ),
            "spec.sigstoreKeys.certificateAuthorities[0].certChain"
        );
        assert_eq!(
            field_of(json!({"repository": {"root": "", "mirrorFS": ""}})),
            "spec.repository.root"
        );
        assert_eq!(field_of(json!({})), "spec");
        assert_eq!(
            field_of(
                json!({"sigstoreKeys": {"tLogs": [{"baseURL": "x", "publicKey": "x", "validFor": {"start": "yesterday"}}]}})
            ),
            "spec.sigstoreKeys.tLogs[0].publicKey"
        );
        assert_eq!(
            field_of(json!({"sigstoreKeys": {}, "bogus": 1})),
            "spec.bogus"
        );
        assert!(matches!(
            material_from_spec_value("t", json!({"remote": {"root": "!", "mirror": "https://x"}})),
            Err(TrustError::NotReady { .. })
        ));
    }

    #[test]
    fn store_resolves_default_named_missing_and_invalid() {
        let s = TrustStore::public_good();
        assert_eq!(s.resolve(None).unwrap().name, DEFAULT_NAME);
        assert_eq!(
            s.resolve(Some("x")).unwrap_err(),
            TrustError::Missing("x".into())
        );
        let g = s.generation();
        s.set(
            "bad",
            Err(TrustError::NotReady {
                name: "bad".into(),
                error: field_err("spec", "nope"),
            }),
        );
        assert!(s.generation() > g);
        assert!(s
            .resolve(Some("bad"))
            .unwrap_err()
            .to_string()
            .contains("spec: nope"));
        s.remove("bad");
        assert!(matches!(
            s.resolve(Some("bad")),
            Err(TrustError::Missing(_))
        ));
    }
}
