//! The parts of a trusted root the strict bundle reading
//! (`verify::strict_bundle`) checks bundles against: each transparency
//! log's ID, name and key, and every TSA certificate. Built once per root
//! when it loads, never per bundle.

/// A log of the trust root, as the checks need it.
#[derive(Debug, Clone)]
pub struct KnownLog {
    /// `logId.keyId`.
    pub key_id: Vec<u8>,
    /// The host of `baseUrl`: the name its checkpoints are signed under.
    pub name: String,
    /// Its public key (DER SubjectPublicKeyInfo).
    pub key_der: Vec<u8>,
}

/// What the strict bundle reading checks against a trust root, prepared
/// once when the root loads.
#[derive(Debug, Clone, Default)]
pub struct RootFacts {
    /// The transparency logs.
    pub logs: Vec<KnownLog>,
    /// Every certificate of every TSA chain (DER).
    pub tsa_certificates: Vec<Vec<u8>>,
}

impl RootFacts {
    /// The facts of a protobuf-specs trusted root.
    pub fn of(root: &sigstore_trust_root::TrustedRoot) -> RootFacts {
        RootFacts {
            logs: root
                .tlogs
                .iter()
                .map(|t| KnownLog {
                    key_id: t.log_id.key_id.as_bytes().to_vec(),
                    name: log_name(&t.base_url),
                    key_der: t.public_key.raw_bytes.as_bytes().to_vec(),
                })
                .collect(),
            tsa_certificates: root
                .timestamp_authorities
                .iter()
                .flat_map(|a| a.cert_chain.certificates.iter())
                .map(|c| c.raw_bytes.as_bytes().to_vec())
                .collect(),
        }
    }
}

/// The host of a log's base URL (`https://rekor.sigstore.dev` →
/// `rekor.sigstore.dev`), the name Rekor signs its checkpoints under.
fn log_name(base_url: &str) -> String {
    let rest = base_url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(base_url);
    rest.split('/').next().unwrap_or(rest).to_string()
}
