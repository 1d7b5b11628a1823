//! What the strict reading gathers of a bundle for the trust-root checks.

/// What the trust-root checks need of a bundle, read strictly.
#[derive(Debug, Clone, Default)]
pub struct StrictFacts {
    /// The one transparency-log entry, if any.
    pub entry: Option<EntryFacts>,
    /// The certificates of `x509CertificateChain` or `certificate` (DER),
    /// leaf first.
    pub certificates: Vec<Vec<u8>>,
    /// The RFC 3161 timestamp tokens (DER).
    pub timestamps: Vec<Vec<u8>>,
}

/// One transparency-log entry.
#[derive(Debug, Clone, Default)]
pub struct EntryFacts {
    /// `logId.keyId`.
    pub log_id: Vec<u8>,
    /// `logIndex`.
    pub log_index: u64,
    /// `integratedTime` (0: none, as Rekor v2 writes).
    pub integrated_time: i64,
    /// `kindVersion`.
    pub kind: String,
    /// `kindVersion.version`.
    pub version: String,
    /// The inclusion proof: log index, tree size, root hash, checkpoint.
    pub proof: Option<(u64, u64, Vec<u8>, String)>,
}

impl EntryFacts {
    /// A Rekor v2 entry (`hashedrekord` or `dsse` 0.0.2; `intoto` 0.0.2
    /// is Rekor v1's): no SET, no time.
    pub fn is_rekor_v2(&self) -> bool {
        matches!(self.kind.as_str(), "hashedrekord" | "dsse") && self.version == "0.0.2"
    }
}
