//! The audit log: one JSON object per line on stdout for every denied,
//! warned or audited (would-be denied) image. The schema is documented in
//! `docs/audit-log.md` and is stable: fields are only ever added.
//!
//! Lines written by [`StdoutAuditSink`] form a hash chain per process: each
//! carries the process's `stream` id, its `seq` (1, 2, …) and `prev`, the
//! SHA-256 of the previous line's bytes, so that a deleted, altered or
//! reordered line is found by `sigil report --verify` (`report::verify`).

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;
use sha2::Digest as _;

use crate::decision::Finding;

/// Who asked for what, from the admission request.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RequestContext {
    /// AdmissionReview request UID.
    pub uid: String,
    /// CREATE, UPDATE, …
    pub operation: String,
    /// Object kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Object name (may be empty for generateName).
    pub name: String,
    /// Requesting user.
    pub user: String,
    /// Group/version/resource and labels, for `spec.match`.
    #[serde(skip)]
    pub resource: crate::policy::ResourceRef,
    /// `imagePullSecrets` named by the workload (in its namespace).
    #[serde(skip)]
    pub pull_secrets: Vec<String>,
    /// The workload's service account, whose pull secrets apply too.
    #[serde(skip)]
    pub service_account: Option<String>,
    /// A dry-run request: decided and audited, but no Events are sent.
    #[serde(skip)]
    pub dry_run: bool,
}

/// One audit log line: who asked for what, and one failing finding.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// Always `audit`, so the stream can be told apart from other logs.
    pub target: &'static str,
    /// Schema version.
    pub schema: u32,
    /// RFC 3339 UTC time.
    pub time: String,
    /// uid, operation, kind, namespace, name, user.
    #[serde(flatten)]
    pub request: RequestContext,
    /// image, field, digest, policy, mode, decision, reasons, authorities.
    #[serde(flatten)]
    pub finding: Finding,
}

impl AuditRecord {
    /// Builds the record of one finding.
    pub fn new(ctx: &RequestContext, f: &Finding, time: String) -> Self {
        AuditRecord {
            target: "audit",
            schema: 1,
            time,
            request: ctx.clone(),
            finding: f.clone(),
        }
    }
}

/// Where audit records go.
pub trait AuditSink: Send + Sync {
    /// Writes one record.
    fn record(&self, record: &AuditRecord);
}

/// Every this many records, the chain head is logged on stderr, so that
/// an auditor holds a recent head from outside the audit stream: lines cut
/// from the end of the log are then missed against it.
pub const CHAIN_HEAD_EVERY: u64 = 1_000;

/// A record as the chained log writes it: the record, then its links.
#[derive(Serialize)]
struct Chained<'a> {
    #[serde(flatten)]
    record: &'a AuditRecord,
    /// This process's chain.
    stream: &'a str,
    /// 1 for the stream's first record, then one more each.
    seq: u64,
    /// SHA-256 (hex) of the stream's previous line; null for the first.
    prev: Option<&'a str>,
}

/// The chain's state: where it stands.
#[derive(Debug)]
pub(crate) struct Chain {
    stream: String,
    seq: u64,
    prev: Option<String>,
}

/// Writes records as hash-chained JSON lines to stdout (logs go to stderr).
#[derive(Debug)]
pub struct StdoutAuditSink {
    chain: Mutex<Chain>,
}

impl Default for StdoutAuditSink {
    fn default() -> Self {
        StdoutAuditSink::new()
    }
}

impl StdoutAuditSink {
    /// A sink starting a new stream: a random id, seq 1.
    pub fn new() -> Self {
        let mut id = [0u8; 8];
        // The id only tells streams apart; a clock-based fallback will do.
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            id = (nanos as u64).to_be_bytes();
        }
        StdoutAuditSink {
            chain: Mutex::new(Chain {
                stream: hex::encode(id),
                seq: 0,
                prev: None,
            }),
        }
    }
}

/// The line for `record` as the next link of `chain` (advancing it), or
/// `None` when it cannot be serialised (the chain does not advance).
fn chain_line(chain: &mut Chain, record: &AuditRecord) -> Option<Vec<u8>> {
    let line = serde_json::to_vec(&Chained {
        record,
        stream: &chain.stream,
        seq: chain.seq + 1,
        prev: chain.prev.as_deref(),
    })
    .ok()?;
    chain.seq += 1;
    chain.prev = Some(hex::encode(sha2::Sha256::digest(&line)));
    Some(line)
}

/// A chain for `stream` at its start (tests of the reader).
#[cfg(test)]
pub(crate) fn test_chain(stream: &str) -> Chain {
    Chain {
        stream: stream.to_string(),
        seq: 0,
        prev: None,
    }
}

/// The next line of `chain`, as the sink would write it (without newline).
#[cfg(test)]
pub(crate) fn test_chain_line(chain: &mut Chain, record: &AuditRecord) -> String {
    String::from_utf8(chain_line(chain, record).unwrap_or_default()).unwrap_or_default()
}

impl AuditSink for StdoutAuditSink {
    fn record(&self, record: &AuditRecord) {
        // One lock over linking and writing: the lines leave in chain order.
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        let written = match chain_line(&mut chain, record) {
            Some(mut line) => {
                line.push(b'\n');
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush()).is_ok()
            }
            None => false,
        };
        if !written {
            tracing::error!(stream = %chain.stream, seq = chain.seq, "cannot write an audit record");
        }
        crate::metrics::global().audit_record(written);
        if chain.seq % CHAIN_HEAD_EVERY == 0 && written {
            tracing::info!(
                stream = %chain.stream,
                seq = chain.seq,
                head = chain.prev.as_deref().unwrap_or_default(),
                "audit chain head"
            );
        }
    }
}

/// Keeps records in memory (tests, `sigil check`).
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditSink {
    /// Everything recorded so far.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, record: &AuditRecord) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record.clone());
    }
}

/// Discards records.
#[derive(Debug, Default)]
pub struct NullAuditSink;

impl AuditSink for NullAuditSink {
    fn record(&self, _record: &AuditRecord) {}
}

/// The current time in RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
