//! The audit log: one JSON object per line on stdout for every denied,
//! warned or audited (would-be denied) image. The schema is documented in
//! `docs/audit-log.md` and is stable: fields are only ever added.
//!
//! Lines written by [`StdoutAuditSink`] form a hash chain per process: each
//! carries the process's `stream` id, its `seq` (1, 2, …) and `prev`, the
//! SHA-256 of the previous line's bytes, so that a deleted, altered or
//! reordered line is found by `sigil report --verify` (`report::verify`).
//! Checkpoints (`"target": "audit-checkpoint"`: the stream, a seq and the
//! hash of that seq's line) are written at the stream's start, every
//! [`CHECKPOINT_EVERY`] records, every [`CHECKPOINT_INTERVAL`] when records
//! were written, and at shutdown; with `--audit-key-file` each carries an
//! HMAC-SHA256 that only a holder of the key can make.
//!
//! No tenant can crowd out the record of a request that changes the
//! cluster: dry-run records (`dryRun: true`) are written only while the
//! queue is less than half full, and a real request's record waits for room
//! until its review's deadline. A record that still cannot be queued is
//! linked anyway, so its loss shows as a gap in the chain, and is counted
//! and logged.

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
    /// A dry-run request: decided and audited (`dryRun: true`, the first
    /// records shed when the queue is under pressure), but no Events are sent.
    #[serde(rename = "dryRun", skip_serializing_if = "std::ops::Not::not")]
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
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Writes one record now if there is room (a full queue loses it,
    /// counted and logged).
    fn record(&self, record: &AuditRecord);

    /// Writes one record of a review whose deadline is `deadline`: a
    /// request that changes the cluster waits for room until then; a
    /// dry-run one is written only while the queue has room to spare.
    async fn record_by(&self, record: &AuditRecord, deadline: tokio::time::Instant) {
        let _ = deadline;
        self.record(record);
    }
}

/// Every this many records a checkpoint is written (on stdout, and the
/// chain head on stderr), so that an auditor holds a recent head: lines cut
/// from the end of the log are then found against it.
pub const CHECKPOINT_EVERY: u64 = 1_000;

/// A checkpoint is also written this often when records were written since
/// the last one, so the uncovered tail of a quiet log stays short.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The audit key (`--audit-key-file`): checkpoints carry an HMAC-SHA256
/// under it.
#[derive(Clone)]
pub struct AuditKey(aws_lc_rs::hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

/// Shortest key accepted.
pub const MIN_KEY_BYTES: usize = 32;

impl AuditKey {
    /// A key from its bytes (a trailing newline is not part of it).
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the audit key has {} bytes; at least {MIN_KEY_BYTES} are needed",
                bytes.len()
            ));
        }
        Ok(AuditKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            bytes,
        )))
    }

    /// Reads the key from `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::new(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The checkpoint's MAC (hex).
    pub fn mac(&self, checkpoint: &CheckpointClaim<'_>) -> String {
        hex::encode(aws_lc_rs::hmac::sign(&self.0, &checkpoint.message()).as_ref())
    }

    /// Whether `mac` (hex) is the checkpoint's.
    pub fn verify(&self, checkpoint: &CheckpointClaim<'_>, mac: &str) -> bool {
        hex::decode(mac)
            .is_ok_and(|tag| aws_lc_rs::hmac::verify(&self.0, &checkpoint.message(), &tag).is_ok())
    }
}

/// What a checkpoint states: stream `stream` had reached `seq`, whose line
/// hashes to `head` (empty at seq 0); `last` when the stream ended there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointClaim<'a> {
    /// The stream.
    pub stream: &'a str,
    /// Its seq at the checkpoint (0: the stream's start).
    pub seq: u64,
    /// SHA-256 (hex) of that seq's line; empty at seq 0.
    pub head: &'a str,
    /// The stream ended here (the process shut down).
    pub last: bool,
}

impl CheckpointClaim<'_> {
    fn message(&self) -> Vec<u8> {
        format!(
            "sigil-audit-checkpoint/v1\n{}\n{}\n{}\n{}",
            self.stream, self.seq, self.head, self.last
        )
        .into_bytes()
    }
}

/// A checkpoint line as written.
#[derive(Serialize)]
struct Checkpoint<'a> {
    target: &'static str,
    schema: u32,
    time: String,
    stream: &'a str,
    seq: u64,
    head: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    last: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

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

/// A line for the writer.
struct Queued {
    bytes: Vec<u8>,
    /// It holds one of the queue's slots (given back once written).
    held_slot: bool,
    /// An audit record (counted), not a checkpoint.
    record: bool,
}

/// The chain's state: where it stands.
#[derive(Debug)]
pub(crate) struct Chain {
    stream: String,
    seq: u64,
    prev: Option<String>,
    /// The seq of the last checkpoint, and when it was written.
    checkpointed: (u64, std::time::Instant),
}

/// Lines that may wait for the writer. Past half of it, dry-run records
/// are shed; past all of it, a real request's record waits (within its
/// review's deadline) rather than blocking reviews behind a stalled stdout.
pub const AUDIT_QUEUE: usize = 4_096;

/// At most this many queued lines go out in one write.
const WRITE_BATCH_LINES: usize = 256;
/// The writer's buffer is given back past this size.
const WRITE_BATCH_KEEP: usize = 256 << 10;

/// Writes records as hash-chained JSON lines to stdout (logs go to stderr),
/// from one writer thread: a review links its records and queues them, and
/// never blocks a thread on stdout. A stdout that stops draining (a stalled
/// log pipe) would otherwise block every worker thread, and with them every
/// admission in the cluster.
pub struct StdoutAuditSink {
    chain: Mutex<Chain>,
    /// Lines for the writer.
    lines: std::sync::mpsc::Sender<Queued>,
    /// One permit per line that may be queued; the writer gives each back
    /// once its line is written.
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    queue: usize,
    /// Lines queued and not yet written.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    key: Option<AuditKey>,
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
        Self::writing_to(Box::new(std::io::stdout()), AUDIT_QUEUE, None)
    }

    /// A sink writing to stdout whose checkpoints carry an HMAC under `key`.
    pub fn with_key(key: Option<AuditKey>) -> Self {
        Self::writing_to(Box::new(std::io::stdout()), AUDIT_QUEUE, key)
    }

    /// A sink writing to `out` through a queue of `queue` lines.
    pub fn writing_to(mut out: Box<dyn Write + Send>, queue: usize, key: Option<AuditKey>) -> Self {
        let mut id = [0u8; 8];
        // The id only tells streams apart; a clock-based fallback will do.
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            id = (nanos as u64).to_be_bytes();
        }
        let queue = queue.max(2);
        let (lines, queued) = std::sync::mpsc::channel::<Queued>();
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(queue));
        let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (left, freed) = (pending.clone(), slots.clone());
        let spawned = std::thread::Builder::new()
            .name("sigil-audit".into())
            .spawn(move || {
                // Lines that queued up while the writer waited go out in one
                // write: under load that is one system call (and one wakeup
                // of this thread) for many reviews, not one per record.
                let mut batch: Vec<Queued> = Vec::new();
                let mut bytes: Vec<u8> = Vec::new();
                while let Ok(first) = queued.recv() {
                    batch.push(first);
                    while batch.len() < WRITE_BATCH_LINES {
                        match queued.try_recv() {
                            Ok(line) => batch.push(line),
                            Err(_) => break,
                        }
                    }
                    bytes.clear();
                    for line in &batch {
                        bytes.extend_from_slice(&line.bytes);
                    }
                    let written = out.write_all(&bytes).and_then(|()| out.flush()).is_ok();
                    if !written {
                        tracing::error!(lines = batch.len(), "cannot write audit lines to stdout");
                    }
                    let records = batch.iter().filter(|l| l.record).count();
                    if records > 0 {
                        crate::metrics::global().audit_records(written, records as u64);
                    }
                    let slots = batch.iter().filter(|l| l.held_slot).count();
                    if slots > 0 {
                        freed.add_permits(slots);
                    }
                    left.fetch_sub(batch.len(), std::sync::atomic::Ordering::AcqRel);
                    batch.clear();
                    // A burst's buffer is not kept for the quiet that follows.
                    if bytes.capacity() > WRITE_BATCH_KEEP {
                        bytes = Vec::new();
                    }
                }
            });
        if let Err(e) = spawned {
            // Without the writer every record fails, counted and logged.
            tracing::error!(error = %e, "cannot start the audit writer");
        }
        let sink = StdoutAuditSink {
            chain: Mutex::new(Chain {
                stream: hex::encode(id),
                seq: 0,
                prev: None,
                checkpointed: (0, std::time::Instant::now()),
            }),
            lines,
            slots,
            queue,
            pending,
            key,
        };
        // The stream's start, so that a stream seen without one (and, with
        // a key, without a keyed one) was not begun by sigil.
        {
            let mut chain = sink.chain.lock().unwrap_or_else(|e| e.into_inner());
            sink.checkpoint(&mut chain, false);
        }
        sink
    }

    /// This stream's id.
    pub fn stream(&self) -> String {
        self.chain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stream
            .clone()
    }

    /// Writes a checkpoint if records were written since the last and
    /// [`CHECKPOINT_INTERVAL`] has passed (called by a timer).
    pub fn checkpoint_if_due(&self) {
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        if chain.seq > chain.checkpointed.0 && chain.checkpointed.1.elapsed() >= CHECKPOINT_INTERVAL
        {
            self.checkpoint(&mut chain, false);
        }
    }

    /// Writes the stream's last checkpoint, then waits until every queued
    /// line is written, for at most `limit` (at shutdown, so that the last
    /// records are not lost); true when nothing is left.
    pub fn finish(&self, limit: std::time::Duration) -> bool {
        {
            let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
            self.checkpoint(&mut chain, true);
        }
        self.flush(limit)
    }

    /// Waits until every queued line is written, for at most `limit`;
    /// true when nothing is left.
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

    /// Queues a line.
    fn send(&self, line: Queued) {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.lines.send(line).is_err() {
            // The writer is gone: its slot is never given back.
            self.pending
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            crate::metrics::global().audit_record(false);
        }
    }

    /// Writes a checkpoint of `chain` where it stands (a checkpoint takes
    /// a slot when one is free and is written past the queue otherwise: it
    /// is small and rare, and the writer never blocks a review).
    fn checkpoint(&self, chain: &mut Chain, last: bool) {
        let head = chain.prev.clone().unwrap_or_default();
        let claim = CheckpointClaim {
            stream: &chain.stream,
            seq: chain.seq,
            head: &head,
            last,
        };
        let line = Checkpoint {
            target: "audit-checkpoint",
            schema: 1,
            time: now_rfc3339(),
            stream: &chain.stream,
            seq: chain.seq,
            head: &head,
            last,
            mac: self.key.as_ref().map(|k| k.mac(&claim)),
        };
        if let Ok(mut bytes) = serde_json::to_vec(&line) {
            bytes.push(b'\n');
            let held_slot = match self.slots.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    true
                }
                Err(_) => false,
            };
            self.send(Queued {
                bytes,
                held_slot,
                record: false,
            });
        }
        tracing::info!(
            stream = %chain.stream,
            seq = chain.seq,
            head = %head,
            "audit chain head"
        );
        chain.checkpointed = (chain.seq, std::time::Instant::now());
    }

    /// Links `record` into the chain and queues it (`queued`: it holds a
    /// slot) or, when it could not get one, leaves its link as a gap.
    fn link(&self, record: &AuditRecord, queued: bool) {
        // One lock over linking and queueing: the lines leave in chain order.
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut line) = chain_line(&mut chain, record) else {
            if queued {
                self.slots.add_permits(1);
            }
            tracing::error!(stream = %chain.stream, "cannot serialise an audit record");
            crate::metrics::global().audit_record(false);
            return;
        };
        if !queued {
            // Its link is made: `sigil report --verify` shows the gap.
            tracing::error!(
                stream = %chain.stream,
                seq = chain.seq,
                uid = %record.request.uid,
                "audit record dropped: stdout did not drain in time ({} lines waiting)",
                self.queue
            );
            crate::metrics::global().audit_record(false);
            return;
        }
        line.push(b'\n');
        self.send(Queued {
            bytes: line,
            held_slot: true,
            record: true,
        });
        if chain.seq % CHECKPOINT_EVERY == 0 {
            self.checkpoint(&mut chain, false);
        }
    }

    /// A dry-run record takes a slot only while more than half are free.
    fn shed(&self, record: &AuditRecord) -> bool {
        if record.request.dry_run && self.slots.available_permits() <= self.queue / 2 {
            crate::metrics::global().audit_record_shed();
            tracing::warn!(uid = %record.request.uid, "dry-run audit record shed: the audit queue is half full");
            return true;
        }
        false
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
        checkpointed: (0, std::time::Instant::now()),
    }
}

/// The next line of `chain`, as the sink would write it (without newline).
#[cfg(test)]
pub(crate) fn test_chain_line(chain: &mut Chain, record: &AuditRecord) -> String {
    String::from_utf8(chain_line(chain, record).unwrap_or_default()).unwrap_or_default()
}

/// The checkpoint line of `chain` where it stands (tests of the reader).
#[cfg(test)]
pub(crate) fn test_checkpoint_line(chain: &Chain, key: Option<&AuditKey>, last: bool) -> String {
    let head = chain.prev.clone().unwrap_or_default();
    let claim = CheckpointClaim {
        stream: &chain.stream,
        seq: chain.seq,
        head: &head,
        last,
    };
    serde_json::to_string(&Checkpoint {
        target: "audit-checkpoint",
        schema: 1,
        time: "2026-12-01T00:00:00Z".into(),
        stream: &chain.stream,
        seq: chain.seq,
        head: &head,
        last,
        mac: key.map(|k| k.mac(&claim)),
    })
    .unwrap_or_default()
}

#[async_trait::async_trait]
impl AuditSink for StdoutAuditSink {
    fn record(&self, record: &AuditRecord) {
        if self.shed(record) {
            return;
        }
        let queued = match self.slots.try_acquire() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        };
        self.link(record, queued);
    }

    async fn record_by(&self, record: &AuditRecord, deadline: tokio::time::Instant) {
        if self.shed(record) {
            return;
        }
        let queued = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                true
            }
            _ => false,
        };
        self.link(record, queued);
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
