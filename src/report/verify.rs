//! `sigil report --verify`: the audit log's hash chain checked line by
//! line (every break reported, not only the first), held against the
//! checkpoints (with a key: only keyed ones count), and the capture formats
//! the lines may come in (`kubectl logs --timestamps`, CRI log files).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use sha2::Digest as _;

/// How the lines of a log were captured (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputFormat {
    /// As sigil writes them: one JSON object per line (its stdout; stderr
    /// log lines mixed in are recognised and skipped).
    #[default]
    Jsonl,
    /// `kubectl logs --timestamps`: each line behind an RFC 3339 time.
    KubectlTimestamps,
    /// The container runtime's CRI log files (`/var/log/pods/…`): time,
    /// stream, `F`/`P` tag; partial lines (`P`) are joined.
    Cri,
}

/// The lines of `text` with their capture prefixes taken off, numbered by
/// the input line they end on. A line without the expected prefix is
/// kept whole (and is then unreadable).
pub fn unwrap_lines(text: &str, format: InputFormat) -> Vec<(usize, std::borrow::Cow<'_, str>)> {
    use std::borrow::Cow;
    let mut out = Vec::new();
    // CRI partial lines, per stream (stdout, stderr).
    let mut partial: BTreeMap<&str, String> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        match format {
            InputFormat::Jsonl => out.push((n, Cow::Borrowed(line))),
            InputFormat::KubectlTimestamps => match line.split_once(' ') {
                Some((time, rest)) if time.parse::<jiff::Timestamp>().is_ok() => {
                    out.push((n, Cow::Borrowed(rest)))
                }
                _ => out.push((n, Cow::Borrowed(line))),
            },
            InputFormat::Cri => {
                let mut parts = line.splitn(4, ' ');
                let (time, stream, tag) = (parts.next(), parts.next(), parts.next());
                let content = parts.next().unwrap_or("");
                match (time, stream, tag) {
                    (Some(t), Some(stream), Some(tag))
                        if t.parse::<jiff::Timestamp>().is_ok()
                            && matches!(stream, "stdout" | "stderr")
                            && (tag == "P"
                                || tag == "F"
                                || tag.starts_with("F:")
                                || tag.starts_with("P:")) =>
                    {
                        if tag.starts_with('P') {
                            partial.entry(stream).or_default().push_str(content);
                        } else if let Some(mut whole) = partial.remove(stream) {
                            whole.push_str(content);
                            out.push((n, Cow::Owned(whole)));
                        } else {
                            out.push((n, Cow::Borrowed(content)));
                        }
                    }
                    _ => out.push((n, Cow::Borrowed(line))),
                }
            }
        }
    }
    // A partial line never finished: the log was cut mid-line.
    for (_, rest) in partial {
        out.push((text.lines().count(), Cow::Owned(rest)));
    }
    out
}

/// A checkpoint as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadCheckpoint {
    line: usize,
    stream: String,
    seq: u64,
    head: String,
    last: bool,
    mac: Option<String>,
    /// From a log line on stderr (`audit chain head`), not the audit stream.
    from_log: bool,
}

/// What one line is.
enum Kind {
    Record(serde_json::Map<String, Value>),
    Checkpoint(ReadCheckpoint),
    Log,
    Blank,
    Unreadable,
}

/// Is `line` one of sigil's own text log lines (stderr mixed in)?
fn is_text_log(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let (Some(time), Some(level)) = (words.next(), words.next()) else {
        return false;
    };
    time.parse::<jiff::Timestamp>().is_ok()
        && matches!(level, "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")
}

fn classify(n: usize, line: &str) -> Kind {
    if line.trim().is_empty() {
        return Kind::Blank;
    }
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line) {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        match m.get("target").and_then(Value::as_str) {
            Some("audit") => return Kind::Record(m),
            Some("audit-checkpoint") => {
                return match (text(m.get("stream")), m.get("seq").and_then(Value::as_u64)) {
                    (Some(stream), Some(seq)) => Kind::Checkpoint(ReadCheckpoint {
                        line: n,
                        stream,
                        seq,
                        head: text(m.get("head")).unwrap_or_default(),
                        last: m.get("last").and_then(Value::as_bool).unwrap_or(false),
                        mac: text(m.get("mac")),
                        from_log: false,
                    }),
                    _ => Kind::Unreadable,
                }
            }
            _ => {}
        }
        // tracing's JSON log lines: {"timestamp", "level", "fields", "target"}.
        if m.contains_key("level") && m.contains_key("timestamp") {
            let fields = m.get("fields").and_then(Value::as_object);
            if let Some(f) = fields
                .filter(|f| f.get("message").and_then(Value::as_str) == Some("audit chain head"))
            {
                if let (Some(stream), Some(seq)) =
                    (text(f.get("stream")), f.get("seq").and_then(Value::as_u64))
                {
                    return Kind::Checkpoint(ReadCheckpoint {
                        line: n,
                        stream,
                        seq,
                        head: text(f.get("head")).unwrap_or_default(),
                        last: f.get("last").and_then(Value::as_bool).unwrap_or(false),
                        mac: text(f.get("mac")).filter(|m| !m.is_empty()),
                        from_log: true,
                    });
                }
            }
            return Kind::Log;
        }
        return Kind::Unreadable;
    }
    if is_text_log(line) {
        if let Some((_, fields)) = line.split_once("audit chain head") {
            let value = |key: &str| {
                fields
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                    .map(str::to_string)
            };
            if let (Some(stream), Some(seq)) =
                (value("stream"), value("seq").and_then(|s| s.parse().ok()))
            {
                return Kind::Checkpoint(ReadCheckpoint {
                    line: n,
                    stream,
                    seq,
                    head: value("head").unwrap_or_default(),
                    last: value("last").as_deref() == Some("true"),
                    mac: value("mac").filter(|m| !m.is_empty()),
                    from_log: true,
                });
            }
        }
        return Kind::Log;
    }
    Kind::Unreadable
}

/// A broken link or a claim the log does not bear out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BrokenLink {
    /// 1-based line number in the input (0: the input as a whole).
    pub line: usize,
    /// What is wrong, in words.
    pub reason: String,
}

/// One stream as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamSummary {
    /// Records of it seen.
    pub records: u64,
    /// Its first and last seq seen.
    pub first: u64,
    /// See `first`.
    pub last: u64,
    /// The hash of its last line (compare with the heads logged on stderr).
    pub head: String,
    /// The last seq a checkpoint vouches for (with a key: a keyed one).
    pub checkpointed: u64,
}

/// What `--verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Per stream.
    pub streams: BTreeMap<String, StreamSummary>,
    /// Every break, in input order.
    pub breaks: Vec<BrokenLink>,
    /// Lines that are neither audit records, checkpoints nor sigil's logs.
    pub unreadable: Vec<usize>,
    /// sigil's own log lines (stderr mixed in), skipped.
    pub log_lines: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Things to know that are not breaks.
    pub notes: Vec<String>,
}

impl Verification {
    /// Every line read and every link whole.
    pub fn whole(&self) -> bool {
        self.breaks.is_empty() && self.unreadable.is_empty()
    }

    /// The verification as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "whole": self.whole(),
            "streams": self.streams.iter().map(|(s, v)| {
                let mut o = serde_json::to_value(v).unwrap_or_default();
                o["stream"] = Value::String(s.clone());
                o
            }).collect::<Vec<_>>(),
            "breaks": self.breaks,
            "unreadable": self.unreadable.len(),
            "unreadable_lines": self.unreadable.iter().take(20).collect::<Vec<_>>(),
            "log_lines": self.log_lines,
            "checkpoints": self.checkpoints,
            "notes": self.notes,
        })
    }

    /// The verification for people.
    pub fn text(&self, format: InputFormat) -> String {
        let mut out = String::new();
        let records: u64 = self.streams.values().map(|s| s.records).sum();
        if self.whole() {
            out.push_str(&format!(
                "chain whole: {} stream(s), {records} record(s), {} checkpoint(s)\n",
                self.streams.len(),
                self.checkpoints
            ));
        } else {
            out.push_str(&format!(
                "chain broken: {} break(s), {} unreadable line(s) in {} stream(s), {records} record(s)\n",
                self.breaks.len(),
                self.unreadable.len(),
                self.streams.len()
            ));
        }
        for (stream, s) in &self.streams {
            out.push_str(&format!(
                "  stream {stream}: {} records (seq {}..{}), head {}, checkpointed to seq {}\n",
                s.records, s.first, s.last, s.head, s.checkpointed
            ));
        }
        for b in &self.breaks {
            out.push_str(&format!("broken at {b}\n"));
        }
        if !self.unreadable.is_empty() {
            let shown: Vec<String> = self
                .unreadable
                .iter()
                .take(10)
                .map(usize::to_string)
                .collect();
            out.push_str(&format!(
                "{} line(s) could not be read (lines {}{}){}\n",
                self.unreadable.len(),
                shown.join(", "),
                if self.unreadable.len() > 10 { ", …" } else { "" },
                if format == InputFormat::Jsonl {
                    "; if the log came from `kubectl logs --timestamps` or a CRI log file, say so with --format kubectl-timestamps or --format cri"
                } else {
                    ""
                }
            ));
        }
        if self.log_lines > 0 {
            out.push_str(&format!(
                "{} log line(s) of sigil's skipped\n",
                self.log_lines
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

/// Checks the chain of every stream in `lines` (input line numbers and
/// contents), in order, and reports every break rather than the first:
/// each record's `seq` must be one more than its stream's previous record
/// and its `prev` the SHA-256 of that record's line; a stream starts at
/// seq 1 with no `prev`; a record without chain fields is a break. After
/// a break the check goes on from the record that broke it.
///
/// Then every checkpoint (from `lines` and `extra`) is held against the
/// records: a checkpoint's seq past its stream's last record is a cut
/// tail, one naming a stream the log does not hold is a deleted stream,
/// one whose head is not the hash of its seq's line an altered log, and a
/// record after a stream's last checkpoint an injected one. With `key`,
/// only checkpoints whose MAC verifies count, a checkpoint whose MAC does
/// not is a break, and a stream without any is not sigil's.
pub fn verify_lines(
    lines: &[(usize, std::borrow::Cow<'_, str>)],
    extra: &[(usize, std::borrow::Cow<'_, str>)],
    key: Option<&crate::audit::AuditKey>,
) -> Verification {
    let mut v = Verification::default();
    let mut checkpoints: Vec<ReadCheckpoint> = Vec::new();
    let mut records: Vec<(usize, &str, serde_json::Map<String, Value>)> = Vec::new();
    for (n, line) in lines {
        match classify(*n, line) {
            Kind::Record(m) => records.push((*n, line.as_ref(), m)),
            Kind::Checkpoint(c) => checkpoints.push(c),
            Kind::Log => v.log_lines += 1,
            Kind::Blank => {}
            Kind::Unreadable => v.unreadable.push(*n),
        }
    }
    for (_, line) in extra {
        if let Kind::Checkpoint(mut c) = classify(0, line) {
            c.line = 0;
            checkpoints.push(c);
        }
    }
    v.checkpoints = checkpoints.len() as u64;
    // Which checkpoints count: with a key, only the keyed ones.
    let mut counted: Vec<&ReadCheckpoint> = Vec::new();
    for c in &checkpoints {
        match (key, &c.mac) {
            (Some(k), Some(mac)) => {
                let claim = crate::audit::CheckpointClaim {
                    stream: &c.stream,
                    seq: c.seq,
                    head: &c.head,
                    last: c.last,
                };
                if k.verify(&claim, mac) {
                    counted.push(c);
                } else {
                    v.breaks.push(BrokenLink {
                        line: c.line,
                        reason: format!(
                            "stream {}: the checkpoint of seq {} does not verify under the key (forged, or written with another key)",
                            c.stream, c.seq
                        ),
                    });
                }
            }
            (Some(_), None) if c.from_log => {}
            (Some(_), None) => v.breaks.push(BrokenLink {
                line: c.line,
                reason: format!(
                    "stream {}: the checkpoint of seq {} has no MAC, but a key was given",
                    c.stream, c.seq
                ),
            }),
            (None, _) => counted.push(c),
        }
    }
    // The seqs whose line hash a checkpoint names.
    let wanted: std::collections::HashSet<(&str, u64)> =
        counted.iter().map(|c| (c.stream.as_str(), c.seq)).collect();
    let mut hashes: HashMap<(String, u64), String> = HashMap::new();
    struct State {
        last: u64,
        hash: String,
        summary: StreamSummary,
    }
    let mut streams: BTreeMap<String, State> = BTreeMap::new();
    for (n, line, record) in &records {
        let broken = |reason: String| BrokenLink { line: *n, reason };
        let Some(stream) = record.get("stream").and_then(Value::as_str) else {
            v.breaks.push(broken(
                "an audit record without chain fields (stream, seq, prev): not written by sigil serve's chained log, or its fields were removed".into(),
            ));
            continue;
        };
        let Some(seq) = record.get("seq").and_then(Value::as_u64) else {
            v.breaks
                .push(broken(format!("stream {stream}: a record without seq")));
            continue;
        };
        let prev = match record.get("prev") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.as_str()),
            Some(_) => {
                v.breaks
                    .push(broken(format!("stream {stream}: prev is not a string")));
                None
            }
        };
        let hash = hex::encode(sha2::Sha256::digest(line.as_bytes()));
        if wanted.contains(&(stream, seq)) {
            hashes.insert((stream.to_string(), seq), hash.clone());
        }
        match streams.get_mut(stream) {
            None => {
                if seq != 1 {
                    v.breaks.push(broken(format!(
                        "stream {stream} begins at seq {seq}: the {} record(s) before it are missing",
                        seq.saturating_sub(1)
                    )));
                } else if prev.is_some() {
                    v.breaks.push(broken(format!(
                        "stream {stream}: seq 1 names a previous record"
                    )));
                }
                streams.insert(
                    stream.to_string(),
                    State {
                        last: seq,
                        hash: hash.clone(),
                        summary: StreamSummary {
                            records: 1,
                            first: seq,
                            last: seq,
                            head: hash,
                            checkpointed: 0,
                        },
                    },
                );
            }
            Some(state) => {
                if seq == state.last + 1 {
                    if prev != Some(state.hash.as_str()) {
                        v.breaks.push(broken(format!(
                            "stream {stream}: seq {seq} does not follow the line of seq {} (that line was altered, or this one's link was)",
                            state.last
                        )));
                    }
                } else if seq > state.last + 1 {
                    v.breaks.push(broken(format!(
                        "stream {stream}: seq {seq} follows seq {} ({} record(s) missing)",
                        state.last,
                        seq - state.last - 1
                    )));
                } else {
                    v.breaks.push(broken(format!(
                        "stream {stream}: seq {seq} follows seq {} (reordered or repeated)",
                        state.last
                    )));
                }
                state.last = seq;
                state.hash = hash.clone();
                state.summary.records += 1;
                state.summary.last = state.summary.last.max(seq);
                state.summary.head = hash;
            }
        }
    }
    // Checkpoints against the records.
    let mut ended: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &counted {
        let at = |reason: String| BrokenLink {
            line: c.line,
            reason,
        };
        match streams.get_mut(&c.stream) {
            None if c.seq > 0 => v.breaks.push(at(format!(
                "stream {}: a checkpoint names seq {}, but the log holds none of its records (the stream was deleted)",
                c.stream, c.seq
            ))),
            None => {}
            Some(state) => {
                if c.seq > state.summary.last {
                    v.breaks.push(at(format!(
                        "stream {}: the log ends at seq {}, but a checkpoint names seq {}: the last {} record(s) were cut",
                        c.stream,
                        state.summary.last,
                        c.seq,
                        c.seq - state.summary.last
                    )));
                } else if c.seq > 0 {
                    match hashes.get(&(c.stream.clone(), c.seq)) {
                        Some(h) if *h == c.head => {
                            state.summary.checkpointed = state.summary.checkpointed.max(c.seq)
                        }
                        Some(h) => v.breaks.push(at(format!(
                            "stream {}: the checkpoint of seq {} names head {}, but that line hashes to {h} (altered)",
                            c.stream, c.seq, c.head
                        ))),
                        None => v.breaks.push(at(format!(
                            "stream {}: the checkpoint of seq {} names a record the log does not hold",
                            c.stream, c.seq
                        ))),
                    }
                }
            }
        }
        if c.last {
            ended.insert(c.stream.as_str(), c.seq);
        }
    }
    for (stream, state) in &streams {
        if let Some(end) = ended.get(stream.as_str()) {
            if state.summary.last > *end {
                v.breaks.push(BrokenLink {
                    line: 0,
                    reason: format!(
                        "stream {stream}: records up to seq {} come after its last checkpoint (seq {end}, the stream's end): injected",
                        state.summary.last
                    ),
                });
            }
        }
        if key.is_some() {
            let keyed = counted.iter().any(|c| c.stream == *stream);
            if !keyed {
                v.breaks.push(BrokenLink {
                    line: 0,
                    reason: format!(
                        "stream {stream}: no checkpoint under the key: not written by a holder of the key"
                    ),
                });
            } else if state.summary.checkpointed < state.summary.last
                && !ended.contains_key(stream.as_str())
            {
                v.notes.push(format!(
                    "stream {stream}: seq {}..{} come after its last keyed checkpoint and are not proven yet (a checkpoint follows within a minute, and at shutdown)",
                    state.summary.checkpointed + 1,
                    state.summary.last
                ));
            }
        }
    }
    if key.is_none() && counted.iter().any(|c| c.mac.is_some()) {
        v.notes.push(
            "checkpoints carry MACs; give --key-file to prove the log was written by a holder of the key".into(),
        );
    }
    if counted.is_empty() && !streams.is_empty() {
        v.notes.push("no checkpoint in the input: a cut tail cannot be seen (give --checkpoints with sigil's stderr log)".into());
    }
    v.streams = streams.into_iter().map(|(s, st)| (s, st.summary)).collect();
    v
}

/// [`verify_lines`] over plain lines (as sigil writes them), without a
/// key.
pub fn verify<'a>(lines: impl IntoIterator<Item = &'a str>) -> Verification {
    let lines: Vec<(usize, std::borrow::Cow<'a, str>)> = lines
        .into_iter()
        .enumerate()
        .map(|(n, l)| (n + 1, l.into()))
        .collect();
    verify_lines(&lines, &[], None)
}
