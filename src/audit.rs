//! The audit log: one JSON object per line on stdout for every denied,
//! warned or audited (would-be denied) image. The schema is documented in
//! `docs/audit-log.md` and is stable: fields are only ever added.

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;

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

/// Writes records as JSON lines to stdout (logs go to stderr).
#[derive(Debug, Default)]
pub struct StdoutAuditSink;

impl AuditSink for StdoutAuditSink {
    fn record(&self, record: &AuditRecord) {
        let written = match serde_json::to_vec(record) {
            Ok(mut line) => {
                line.push(b'\n');
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush()).is_ok()
            }
            Err(_) => false,
        };
        crate::metrics::global().audit_record(written);
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
