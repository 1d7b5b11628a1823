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
//! Lines are bounded and safe to read: each is at most
//! [`MAX_AUDIT_LINE_BYTES`] (a record past it is written with its tenant
//! text excerpted and `truncated` set, never dropped), and the characters
//! a terminal would obey (DEL, C1 controls, line separators, bidirectional
//! controls) are written as JSON `\uXXXX` escapes ([`crate::text::json_safe`]).
//!
//! The queue to the writer is counted in bytes (`--audit-queue-memory`).
//! No tenant can crowd out the record of a request that changes the
//! cluster: dry-run records (`dryRun: true`) are written only while less
//! than half of the queue is taken (the rest are shed and counted), and a
//! real request's records are queued together or not at all: they wait for
//! room until the review's deadline, and a review whose records still find
//! none is not answered ([`AuditRefused`], HTTP 503) rather than answered
//! without them.

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
    /// Set when the record was over [`MAX_AUDIT_LINE_BYTES`] and its
    /// tenant text was excerpted to fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
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
            truncated: None,
            target: "audit",
            schema: 1,
            time,
            request: ctx.clone(),
            finding: f.clone(),
        }
    }

    /// The record cut to fit a line: every string a tenant or a registry
    /// wrote excerpted to [`MAX_IMAGE_IN_TEXT`] bytes, at most four
    /// reasons of at most 512 bytes, authorities left out (their reasons
    /// are the reasons), and what was cut said in `truncated`.
    pub fn shrunk(&self) -> AuditRecord {
        use sha2::Digest as _;
        let short = |s: &str| crate::text::excerpt(s, MAX_IMAGE_IN_TEXT).into_owned();
        let mut r = self.clone();
        r.truncated = Some(Truncated {
            image_bytes: self.finding.image.len(),
            image_sha256: hex::encode(sha2::Sha256::digest(self.finding.image.as_bytes())),
            reasons: self.finding.reasons.len(),
            authorities: self.finding.authorities.len(),
        });
        for s in [
            &mut r.request.uid,
            &mut r.request.operation,
            &mut r.request.kind,
            &mut r.request.namespace,
            &mut r.request.name,
            &mut r.request.user,
            &mut r.finding.image,
            &mut r.finding.field,
            &mut r.finding.mode,
        ] {
            *s = short(s);
        }
        for s in [&mut r.finding.digest, &mut r.finding.policy]
            .into_iter()
            .flatten()
        {
            *s = short(s);
        }
        r.finding.reasons = self
            .finding
            .reasons
            .iter()
            .take(4)
            .map(|reason| crate::text::cap(crate::text::escape(reason).into_owned(), 512))
            .collect();
        r.finding.authorities = Vec::new();
        r
    }
}

/// What was cut from a record to fit [`MAX_AUDIT_LINE_BYTES`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Truncated {
    /// The image reference's length as written.
    #[serde(rename = "imageBytes")]
    pub image_bytes: usize,
    /// SHA-256 (hex) of the image reference as written, to find it again.
    #[serde(rename = "imageSha256")]
    pub image_sha256: String,
    /// How many reasons the finding had.
    pub reasons: usize,
    /// How many authority results it had.
    pub authorities: usize,
}

/// A review whose audit records could not be queued by its deadline: it
/// is not answered (HTTP 503; the apiserver applies the webhook's
/// failurePolicy) rather than answered without its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sigil's audit log is not draining ({waiting} bytes of records wait for stdout, --audit-queue-memory {queue}); refused rather than answered without its audit record, retry")]
pub struct AuditRefused {
    /// Bytes waiting.
    pub waiting: usize,
    /// The queue's size in bytes.
    pub queue: usize,
}

/// Where audit records go.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Writes one record now if there is room (a full queue loses it,
    /// counted and logged, and the chain shows the gap).
    fn record(&self, record: &AuditRecord);

    /// Writes the records of one review whose deadline is `deadline`, all
    /// or none: a request that changes the cluster waits for room until
    /// then and is refused past it; a dry-run one is written only while
    /// the queue has room to spare (else shed, counted).
    async fn record_review(
        &self,
        records: &[AuditRecord],
        deadline: tokio::time::Instant,
    ) -> Result<(), AuditRefused> {
        let _ = deadline;
        for r in records {
            self.record(r);
        }
        Ok(())
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

/// A record as the chained log writes it: the record, then its links
/// (what [`chain_line_of`] writes without serialising the record again;
/// a test holds the two equal).
#[cfg(test)]
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
    /// Bytes of the queue it holds (given back once written).
    held: usize,
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

/// Bytes of lines that may wait for the writer (`--audit-queue-memory`).
/// Past half of it, dry-run records are shed; past all of it, a real
/// request's records wait (within its review's deadline) rather than
/// blocking reviews behind a stalled stdout.
pub const AUDIT_QUEUE_BYTES: usize = crate::limits::DEFAULT_AUDIT_QUEUE_BYTES as usize;

/// What linking adds to a record's line (stream, seq, prev and the
/// newline), counted when its room in the queue is taken.
const CHAIN_BYTES: usize = 160;

use crate::limits::{MAX_AUDIT_LINE_BYTES, MAX_IMAGE_IN_TEXT};

/// The writer's buffer is given back past this size.
use crate::limits::AUDIT_WRITE_BATCH_KEEP as WRITE_BATCH_KEEP;
/// At most this many queued lines go out in one write.
use crate::limits::AUDIT_WRITE_BATCH_LINES as WRITE_BATCH_LINES;

/// Writes records as hash-chained JSON lines to stdout (logs go to stderr),
/// from one writer thread: a review links its records and queues them, and
/// never blocks a thread on stdout. A stdout that stops draining (a stalled
/// log pipe) would otherwise block every worker thread, and with them every
/// admission in the cluster.
pub struct StdoutAuditSink {
    chain: Mutex<Chain>,
    /// Lines for the writer.
    lines: std::sync::mpsc::Sender<Queued>,
    /// One permit per byte that may be queued; the writer gives a line's
    /// back once it is written.
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    /// The queue's size in bytes.
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
        Self::writing_to(Box::new(std::io::stdout()), AUDIT_QUEUE_BYTES, None)
    }

    /// A sink writing to stdout through a queue of `queue` bytes, whose
    /// checkpoints carry an HMAC under `key`.
    pub fn with_key(key: Option<AuditKey>, queue: usize) -> Self {
        Self::writing_to(Box::new(std::io::stdout()), queue, key)
    }

    /// A sink writing to `out` through a queue of `queue` bytes (at least
    /// two of the longest lines).
    pub fn writing_to(mut out: Box<dyn Write + Send>, queue: usize, key: Option<AuditKey>) -> Self {
        let mut id = [0u8; 8];
        // The id only tells streams apart; a clock-based fallback will do.
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            id = (nanos as u64).to_be_bytes();
        }
        // Permits are counted in u32 by `acquire_many`.
        let queue = queue.clamp(2 * (MAX_AUDIT_LINE_BYTES + CHAIN_BYTES), u32::MAX as usize);
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
                    let held: usize = batch.iter().map(|l| l.held).sum();
                    if held > 0 {
                        freed.add_permits(held);
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

    /// Bytes of the queue free now.
    pub fn free_bytes(&self) -> usize {
        self.slots.available_permits()
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
            let held = match self.slots.try_acquire_many(bytes.len() as u32) {
                Ok(permit) => {
                    permit.forget();
                    bytes.len()
                }
                Err(_) => 0,
            };
            self.send(Queued {
                bytes,
                held,
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

    /// Links `record` into the chain and queues it holding `held` bytes
    /// of the queue, or, when it got no room (`None`), leaves its link as
    /// a gap.
    fn link(&self, record: &AuditRecord, json: Option<&[u8]>, held: Option<usize>) {
        // One lock over linking and queueing: the lines leave in chain order.
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut line) = json.map(|j| chain_line_of(&mut chain, j)) else {
            if let Some(held) = held {
                self.slots.add_permits(held);
            }
            tracing::error!(stream = %chain.stream, "cannot serialise an audit record");
            crate::metrics::global().audit_record(false);
            return;
        };
        let Some(held) = held else {
            // Its link is made: `sigil report --verify` shows the gap.
            tracing::error!(
                stream = %chain.stream,
                seq = chain.seq,
                uid = %crate::text::excerpt(&record.request.uid, 64),
                "audit record dropped: stdout did not drain in time ({} bytes of queue)",
                self.queue
            );
            crate::metrics::global().audit_record(false);
            return;
        };
        line.push(b'\n');
        self.send(Queued {
            bytes: line,
            held,
            record: true,
        });
        if chain.seq % CHECKPOINT_EVERY == 0 {
            self.checkpoint(&mut chain, false);
        }
    }

    /// Whether a dry-run review's records are shed: they take room only
    /// while more than half of the queue is free.
    fn shed(&self, dry_run: bool, records: usize) -> bool {
        if dry_run && self.slots.available_permits() <= self.queue / 2 {
            let metrics = crate::metrics::global();
            for _ in 0..records {
                metrics.audit_record_shed();
            }
            tracing::warn!(
                records,
                "dry-run audit records shed: the audit queue is half full"
            );
            return true;
        }
        false
    }
}

/// The record as its line will hold it, serialised once: itself, or
/// [`AuditRecord::shrunk`] when it would be longer than
/// [`MAX_AUDIT_LINE_BYTES`] as written ([`crate::text::json_safe`] counted:
/// a DEL is one byte in a reference and six in the line). A record plainly
/// over the cap (its tenant text alone is) is shrunk without being written
/// whole first.
fn record_json(record: &AuditRecord) -> Option<Vec<u8>> {
    let room = MAX_AUDIT_LINE_BYTES - CHAIN_BYTES;
    // At least as long as `s` written (ASCII controls grow to six bytes;
    // any other byte is counted thrice, more than any escape of the
    // multi-byte characters it belongs to adds), counted byte by byte.
    let written = |s: &str| {
        s.len()
            + s.bytes()
                .map(|b| match b {
                    0..0x20 | 0x7f => 5,
                    0x80.. => 2,
                    _ => 0,
                })
                .sum::<usize>()
    };
    let plainly_over = written(&record.finding.image)
        + record
            .finding
            .reasons
            .iter()
            .map(|r| written(r))
            .sum::<usize>()
        > room;
    if !plainly_over {
        let whole = crate::text::json_safe(serde_json::to_vec(record).ok()?);
        if whole.len() <= room {
            return Some(whole);
        }
    }
    Some(crate::text::json_safe(
        serde_json::to_vec(&record.shrunk()).ok()?,
    ))
}

/// The line of a record serialised by [`record_json`] as the next link of
/// `chain` (advancing it): its fields, then `stream`, `seq` and `prev`, as
/// [`Chained`] would write them.
fn chain_line_of(chain: &mut Chain, json: &[u8]) -> Vec<u8> {
    let body = json.strip_suffix(b"}").unwrap_or(json);
    let mut line = Vec::with_capacity(json.len() + CHAIN_BYTES);
    line.extend_from_slice(body);
    let prev = match &chain.prev {
        Some(p) => format!("\"{p}\""),
        None => "null".to_string(),
    };
    line.extend_from_slice(
        format!(
            ",\"stream\":\"{}\",\"seq\":{},\"prev\":{prev}}}",
            chain.stream,
            chain.seq + 1
        )
        .as_bytes(),
    );
    chain.seq += 1;
    chain.prev = Some(hex::encode(sha2::Sha256::digest(&line)));
    line
}

/// The line for `record` as the next link of `chain` (advancing it), or
/// `None` when it cannot be serialised (the chain does not advance).
#[cfg(test)]
fn chain_line(chain: &mut Chain, record: &AuditRecord) -> Option<Vec<u8>> {
    Some(chain_line_of(chain, &record_json(record)?))
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
        if self.shed(record.request.dry_run, 1) {
            return;
        }
        let json = record_json(record);
        let room = json
            .as_ref()
            .map_or(MAX_AUDIT_LINE_BYTES, |j| j.len() + CHAIN_BYTES)
            .min(self.queue);
        let held = match self.slots.try_acquire_many(room as u32) {
            Ok(permit) => {
                permit.forget();
                Some(room)
            }
            Err(_) => None,
        };
        self.link(record, json.as_deref(), held);
    }

    async fn record_review(
        &self,
        records: &[AuditRecord],
        deadline: tokio::time::Instant,
    ) -> Result<(), AuditRefused> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        if self.shed(first.request.dry_run, records.len()) {
            return Ok(());
        }
        // Each record serialised once, as its line will hold it.
        let lines: Vec<Option<Vec<u8>>> = records.iter().map(record_json).collect();
        let rooms: Vec<usize> = lines
            .iter()
            .map(|j| {
                j.as_ref()
                    .map_or(MAX_AUDIT_LINE_BYTES, |j| j.len() + CHAIN_BYTES)
            })
            .collect();
        // One review's records never need more than the whole queue.
        let total = rooms.iter().sum::<usize>().min(self.queue);
        match tokio::time::timeout_at(deadline, self.slots.acquire_many(total as u32)).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => {
                let refused = AuditRefused {
                    waiting: self.queue - self.slots.available_permits().min(self.queue),
                    queue: self.queue,
                };
                tracing::error!(
                    records = records.len(),
                    uid = %crate::text::excerpt(&first.request.uid, 64),
                    "{refused}"
                );
                crate::metrics::global().audit_records(false, records.len() as u64);
                return Err(refused);
            }
        }
        // The room taken is handed out line by line; past the queue's
        // size (one review's records never wait for more), lines hold none.
        let mut left = total;
        for ((record, json), room) in records.iter().zip(&lines).zip(rooms) {
            let held = room.min(left);
            left -= held;
            self.link(record, json.as_deref(), Some(held));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The links appended to a record serialised once are what serde
    /// writes for the record and its links together.
    #[test]
    fn a_line_is_the_record_then_its_links() {
        let record = AuditRecord::new(
            &RequestContext {
                uid: "u\u{202e}".into(),
                ..Default::default()
            },
            &Finding {
                image: "r/app:1".into(),
                field: "spec.containers[0].image".into(),
                digest: None,
                policy: Some("p".into()),
                mode: "enforce".into(),
                decision: crate::decision::FindingDecision::Denied,
                reasons: vec!["no".into()],
                authorities: Vec::new(),
                passed: false,
            },
            "2026-12-04T00:00:00Z".into(),
        );
        let mut chain = test_chain("s1");
        for _ in 0..2 {
            let prev = chain.prev.clone();
            let seq = chain.seq;
            let line = chain_line(&mut chain, &record).unwrap();
            let by_serde = crate::text::json_safe(
                serde_json::to_vec(&Chained {
                    record: &record,
                    stream: "s1",
                    seq: seq + 1,
                    prev: prev.as_deref(),
                })
                .unwrap(),
            );
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(by_serde).unwrap()
            );
        }
    }
}
