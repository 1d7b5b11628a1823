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

/// Lines that may wait for the writer; past that, records are dropped
/// (counted, logged, and visible as a gap in the chain) rather than
/// blocking reviews behind a stalled stdout.
pub const AUDIT_QUEUE: usize = 4_096;

/// Writes records as hash-chained JSON lines to stdout (logs go to stderr),
/// from one writer thread: a review links its records and queues them, and
/// never waits for stdout. A stdout that stops draining (a stalled log
/// pipe) would otherwise block every worker thread, and with them every
/// admission in the cluster.
pub struct StdoutAuditSink {
    chain: Mutex<Chain>,
    lines: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Lines queued and not yet written.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for StdoutAuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutAuditSink").finish_non_exhaustive()
    }
}

impl Default for StdoutAuditSink {
    fn default() -> Self {
        StdoutAuditSink::new()
    }
}

impl StdoutAuditSink {
    /// A sink writing to stdout, starting a new stream: a random id, seq 1.
    pub fn new() -> Self {
        Self::writing_to(Box::new(std::io::stdout()), AUDIT_QUEUE)
    }

    /// A sink writing to `out` through a queue of `queue` lines.
    pub fn writing_to(mut out: Box<dyn Write + Send>, queue: usize) -> Self {
        let mut id = [0u8; 8];
        // The id only tells streams apart; a clock-based fallback will do.
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            id = (nanos as u64).to_be_bytes();
        }
        let (lines, queued) = std::sync::mpsc::sync_channel::<Vec<u8>>(queue);
        let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let left = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("sigil-audit".into())
            .spawn(move || {
                for line in queued {
                    let written = out.write_all(&line).and_then(|()| out.flush()).is_ok();
                    if !written {
                        tracing::error!("cannot write an audit record to stdout");
                    }
                    crate::metrics::global().audit_record(written);
                    left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                }
            });
        if let Err(e) = spawned {
            // Without the writer every record fails, counted and logged.
            tracing::error!(error = %e, "cannot start the audit writer");
        }
        StdoutAuditSink {
            chain: Mutex::new(Chain {
                stream: hex::encode(id),
                seq: 0,
                prev: None,
            }),
            lines,
            pending,
        }
    }

    /// Waits until every queued line is written, for at most `limit`
    /// (at shutdown, so that the last records are not lost); true when
    /// nothing is left.
    pub fn flush(&self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while self.pending.load(std::sync::atomic::Ordering::Acquire) > 0 {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
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
        // One lock over linking and queueing: the lines leave in chain order.
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut line) = chain_line(&mut chain, record) else {
            tracing::error!(stream = %chain.stream, "cannot serialise an audit record");
            crate::metrics::global().audit_record(false);
            return;
        };
        line.push(b'\n');
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.lines.try_send(line).is_err() {
            self.pending
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            // Its link is made: `sigil report --verify` shows the gap.
            tracing::error!(
                stream = %chain.stream,
                seq = chain.seq,
                "audit record dropped: stdout is not draining ({AUDIT_QUEUE} lines waiting)"
            );
            crate::metrics::global().audit_record(false);
            return;
        }
        if chain.seq % CHAIN_HEAD_EVERY == 0 {
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
