//! `sigil report`: what an audit log holds, counted (by decision, policy,
//! namespace and image, with the most frequent reasons), and whether its
//! hash chain is whole (`--verify`: every break, checked against the
//! checkpoints, with `--key-file` against their keyed MACs). Pure over the
//! lines it is given; the CLI reads files or stdin and prints. Lines are
//! read as sigil wrote them, or as `kubectl logs --timestamps` or the
//! container runtime's CRI log files hold them (`--format`).
//!
//! Owns reading audit lines back and checking their links. It must not
//! write anything; it does not know how the lines were written beyond the
//! documented schema (docs/audit-log.md).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use sha2::Digest as _;

/// Which records count.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Only records before this time.
    pub until: Option<jiff::Timestamp>,
    /// Only records of this namespace.
    pub namespace: Option<String>,
}

/// A value and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The value (a policy, namespace, image, reason or decision).
    pub value: String,
    /// How many records had it.
    pub count: u64,
}

/// The counts of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records counted (after the filter).
    pub records: u64,
    /// Lines that were not audit records (other logs, garbage): skipped.
    pub skipped_lines: u64,
    /// The earliest and latest `time` counted.
    pub from: Option<String>,
    /// See `from`.
    pub to: Option<String>,
    /// By decision: denied, warned, audited.
    pub decisions: Vec<Count>,
    /// By policy (`(no policy matched)` for null).
    pub policies: Vec<Count>,
    /// By namespace.
    pub namespaces: Vec<Count>,
    /// By image as written, the `top` most frequent.
    pub images: Vec<Count>,
    /// The `top` most frequent reasons.
    pub reasons: Vec<Count>,
}

/// Counts the audit records among `lines` that pass `filter`; lists keep
/// the `top` most frequent (decisions and policies are always complete).
pub fn report<'a>(lines: impl IntoIterator<Item = &'a str>, filter: &Filter, top: usize) -> Report {
    report_lines(
        lines
            .into_iter()
            .enumerate()
            .map(|(n, l)| (n + 1, l.into())),
        filter,
        top,
    )
}

/// [`report`] over lines already taken out of their capture format.
fn report_lines<'a>(
    lines: impl IntoIterator<Item = (usize, std::borrow::Cow<'a, str>)>,
    filter: &Filter,
    top: usize,
) -> Report {
    let mut records = 0;
    let mut skipped_lines = 0;
    let (mut from, mut to): (Option<jiff::Timestamp>, Option<jiff::Timestamp>) = (None, None);
    let mut decisions = HashMap::new();
    let mut policies = HashMap::new();
    let mut namespaces = HashMap::new();
    let mut images = HashMap::new();
    let mut reasons = HashMap::new();
    for (_, line) in lines {
        let Some(record) = audit_record(&line) else {
            if !line.trim().is_empty() {
                skipped_lines += 1;
            }
            continue;
        };
        let text = |field: &str| record.get(field).and_then(Value::as_str);
        let time = text("time").and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if filter.since.is_some_and(|s| time.is_none_or(|t| t < s))
            || filter.until.is_some_and(|u| time.is_none_or(|t| t >= u))
            || filter
                .namespace
                .as_deref()
                .is_some_and(|n| text("namespace") != Some(n))
        {
            continue;
        }
        records += 1;
        if let Some(t) = time {
            from = Some(from.map_or(t, |f| f.min(t)));
            to = Some(to.map_or(t, |x| x.max(t)));
        }
        *decisions
            .entry(text("decision").unwrap_or("?").to_string())
            .or_insert(0) += 1;
        *policies
            .entry(text("policy").unwrap_or("(no policy matched)").to_string())
            .or_insert(0) += 1;
        *namespaces
            .entry(text("namespace").unwrap_or("").to_string())
            .or_insert(0) += 1;
        *images
            .entry(without_digest(text("image").unwrap_or("")).to_string())
            .or_insert(0) += 1;
        for reason in record
            .get("reasons")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            *reasons.entry(digests_masked(reason)).or_insert(0) += 1;
        }
    }
    Report {
        records,
        skipped_lines,
        from: from.map(|t| t.to_string()),
        to: to.map(|t| t.to_string()),
        decisions: ranked(decisions, usize::MAX),
        policies: ranked(policies, usize::MAX),
        namespaces: ranked(namespaces, top),
        images: ranked(images, top),
        reasons: ranked(reasons, top),
    }
}

/// An image reference without its `@sha256:…`: images are counted by
/// what was asked for, not by each build.
fn without_digest(image: &str) -> &str {
    image.split_once('@').map_or(image, |(name, _)| name)
}

/// `reason` with every digest (`sha256:<hex>`, or cosign's tag form
/// `sha256-<hex>`) shortened to `sha256:…`, so that one cause over many
/// builds is counted as one reason.
fn digests_masked(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = rest.find("sha256") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after = &from["sha256".len()..];
        let hex_len = after
            .get(1..)
            .map_or(0, |h| h.bytes().take_while(u8::is_ascii_hexdigit).count());
        if after.starts_with([':', '-']) && hex_len >= 12 {
            out.push_str("sha256:…");
            rest = &after[1 + hex_len..];
        } else {
            out.push_str("sha256");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Most frequent first, then by value; at most `top`.
fn ranked(counts: HashMap<String, u64>, top: usize) -> Vec<Count> {
    let mut out: Vec<Count> = counts
        .into_iter()
        .map(|(value, count)| Count { value, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out.truncate(top);
    out
}

/// The line as an audit record (`"target": "audit"`), if it is one.
fn audit_record(line: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(line).ok()? {
        Value::Object(m) if m.get("target").and_then(Value::as_str) == Some("audit") => Some(m),
        _ => None,
    }
}

impl Report {
    /// The report as a table for people.
    pub fn table(&self, filter: &Filter) -> String {
        let mut out = String::new();
        let span = match (&self.from, &self.to) {
            (Some(f), Some(t)) => format!(" from {f} to {t}"),
            _ => String::new(),
        };
        let mut filters = Vec::new();
        if let Some(s) = filter.since {
            filters.push(format!("since {s}"));
        }
        if let Some(u) = filter.until {
            filters.push(format!("until {u}"));
        }
        if let Some(n) = &filter.namespace {
            filters.push(format!("namespace {n}"));
        }
        let filters = if filters.is_empty() {
            String::new()
        } else {
            format!(" ({})", filters.join(", "))
        };
        out.push_str(&format!("{} audit records{span}{filters}\n", self.records));
        if self.skipped_lines > 0 {
            out.push_str(&format!(
                "{} lines were not audit records and were skipped\n",
                self.skipped_lines
            ));
        }
        for (title, counts) in [
            ("DECISION", &self.decisions),
            ("POLICY", &self.policies),
            ("NAMESPACE", &self.namespaces),
            ("IMAGE", &self.images),
            ("REASON", &self.reasons),
        ] {
            if counts.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{:>7}  {title}\n", "COUNT"));
            for c in counts {
                out.push_str(&format!("{:>7}  {}\n", c.count, c.value));
            }
        }
        out
    }
}

/// `sigil report`: 0, or 1 for a broken chain (or unreadable lines) with
/// `--verify`, 2 when the input cannot be read.
pub fn main(args: &crate::cli::ReportArgs) -> u8 {
    let text = match read_input(&args.files) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sigil report: {e}");
            return 2;
        }
    };
    let json = args.output == crate::cli::OutputFormat::Json;
    let lines = unwrap_lines(&text, args.format);
    if args.verify {
        let key = match &args.key_file {
            Some(path) => match crate::audit::AuditKey::from_file(path) {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("sigil report: --key-file {e}");
                    return 2;
                }
            },
            None => None,
        };
        let mut extra = Vec::new();
        for path in &args.checkpoints {
            match std::fs::read_to_string(path) {
                Ok(t) => extra.push(t),
                Err(e) => {
                    eprintln!("sigil report: {}: {e}", path.display());
                    return 2;
                }
            }
        }
        let extra_lines: Vec<(usize, std::borrow::Cow<'_, str>)> = extra
            .iter()
            .flat_map(|t| unwrap_lines(t, args.format))
            .collect();
        let v = verify_lines(&lines, &extra_lines, key.as_ref());
        if json {
            println!("{}", v.json());
        } else {
            print!("{}", v.text(args.format));
        }
        return u8::from(!v.whole());
    }
    let filter = Filter {
        since: args.since,
        until: args.until,
        namespace: args.namespace.clone(),
    };
    let r = report_lines(lines, &filter, args.top);
    if json {
        match serde_json::to_string_pretty(&r) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("sigil report: {e}");
                return 2;
            }
        }
    } else {
        print!("{}", r.table(&filter));
    }
    0
}

/// The files' contents in order, or stdin's.
fn read_input(files: &[std::path::PathBuf]) -> Result<String, String> {
    use std::io::Read as _;
    if files.is_empty() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(text);
    }
    let mut text = String::new();
    for f in files {
        let content = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        text.push_str(&content);
        if !content.ends_with('\n') && !content.is_empty() {
            text.push('\n');
        }
    }
    Ok(text)
}

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

    fn json(&self) -> Value {
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

    fn text(&self, format: InputFormat) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, RequestContext};
    use crate::decision::{Finding, FindingDecision};

    /// Lines as the stdout sink writes them, from its own chaining code.
    fn chained_lines(n: usize) -> Vec<String> {
        let mut chain = crate::audit::test_chain("s1");
        (0..n)
            .map(|i| {
                let ctx = RequestContext {
                    uid: format!("u{i}"),
                    namespace: if i % 2 == 0 { "shop" } else { "ops" }.into(),
                    ..Default::default()
                };
                let finding = Finding {
                    image: format!("registry.example/app:{}", i % 3),
                    field: "spec.containers[0].image".into(),
                    digest: None,
                    policy: (i % 4 != 0).then(|| "signed".to_string()),
                    mode: "enforce".into(),
                    decision: if i % 2 == 0 {
                        FindingDecision::Denied
                    } else {
                        FindingDecision::Audited
                    },
                    reasons: vec!["no signatures found".into()],
                    authorities: Vec::new(),
                    passed: false,
                };
                let time = format!("2026-11-2{}T10:00:00Z", i % 3);
                let record = AuditRecord::new(&ctx, &finding, time);
                crate::audit::test_chain_line(&mut chain, &record)
            })
            .collect()
    }

    /// A writer that blocks until told to go on, like a stalled log pipe.
    struct Stalled {
        entered: std::sync::Arc<std::sync::atomic::AtomicBool>,
        go: Go,
        out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl std::io::Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.entered
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let (lock, cv) = &*self.go;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    type Go = std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>;
    type Written = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

    /// A sink over a stalled writer (stalled on the stream's first
    /// checkpoint once this returns), the switch that releases it, and
    /// what it wrote.
    fn stalled_sink(queue: usize) -> (crate::audit::StdoutAuditSink, Go, Written) {
        let go: Go = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let entered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink = crate::audit::StdoutAuditSink::writing_to(
            Box::new(Stalled {
                entered: entered.clone(),
                go: go.clone(),
                out: out.clone(),
            }),
            queue,
            None,
        );
        // The writer takes the start checkpoint and stalls on it (a
        // signal, not a timing: nothing else lets it go on).
        while !entered.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
        }
        (sink, go, out)
    }

    fn release(go: &Go) {
        *go.0.lock().unwrap() = true;
        go.1.notify_all();
    }

    fn a_record(dry_run: bool, uid: &str) -> AuditRecord {
        AuditRecord::new(
            &RequestContext {
                uid: uid.into(),
                dry_run,
                ..Default::default()
            },
            &Finding {
                image: "r.example/app:v1".into(),
                field: "spec.containers[0].image".into(),
                digest: None,
                policy: None,
                mode: "enforce".into(),
                decision: FindingDecision::Denied,
                reasons: vec!["no policy".into()],
                authorities: Vec::new(),
                passed: false,
            },
            "2026-11-23T00:00:00Z".into(),
        )
    }

    #[test]
    fn a_stalled_stdout_never_blocks_a_review_and_the_loss_shows_in_the_chain() {
        use crate::audit::AuditSink;
        let (sink, go, out) = stalled_sink(4);
        // The start checkpoint holds one of the 4 slots: 3 records are
        // queued, 7 are dropped at once (record() never waits).
        for i in 0..10 {
            sink.record(&a_record(false, &format!("u{i}")));
        }
        release(&go);
        assert!(sink.flush(std::time::Duration::from_secs(30)));
        // Once drained, later records are written again.
        sink.record(&a_record(false, "later"));
        assert!(sink.flush(std::time::Duration::from_secs(30)));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let v = verify(text.lines());
        assert_eq!(v.streams.values().next().unwrap().records, 4, "{text}");
        assert_eq!(v.breaks.len(), 1, "{:?}", v.breaks);
        assert!(
            v.breaks[0]
                .reason
                .contains("seq 11 follows seq 3 (7 record(s) missing)"),
            "{:?}",
            v.breaks
        );
        assert_eq!(v.checkpoints, 1, "the start checkpoint");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dry_runs_never_crowd_out_a_real_record_which_waits_for_room() {
        use crate::audit::AuditSink;
        let (sink, go, out) = stalled_sink(8);
        let sink = std::sync::Arc::new(sink);
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        // 7 slots free: dry-run records go in while more than half (4)
        // are free, then are shed.
        for i in 0..20 {
            sink.record_by(&a_record(true, &format!("dry{i}")), far)
                .await;
        }
        // The real ones take the other 4 at once…
        for i in 0..4 {
            sink.record_by(&a_record(false, &format!("real{i}")), far)
                .await;
        }
        // …and the next waits for room rather than being dropped.
        let waiting = {
            let sink = sink.clone();
            tokio::spawn(async move { sink.record_by(&a_record(false, "waited"), far).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        release(&go);
        waiting.await.unwrap();
        assert!(sink.flush(std::time::Duration::from_secs(30)));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let uids: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["target"] == "audit")
            .map(|r| {
                let dry = r.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
                format!(
                    "{}{}",
                    r["uid"].as_str().unwrap(),
                    if dry { "*" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            uids,
            vec!["dry0*", "dry1*", "dry2*", "real0", "real1", "real2", "real3", "waited"]
        );
        // Shed dry-run records are not links of the chain: it is whole.
        let v = verify(text.lines());
        assert!(v.whole(), "{:?}", v.breaks);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_record_past_its_deadline_is_a_gap_not_a_silence() {
        use crate::audit::AuditSink;
        let (sink, go, out) = stalled_sink(2);
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        sink.record_by(&a_record(false, "a"), soon).await;
        sink.record_by(&a_record(false, "b"), soon).await;
        sink.record_by(&a_record(false, "c"), soon).await;
        release(&go);
        assert!(sink.flush(std::time::Duration::from_secs(30)));
        // Nothing after them yet: the checkpoint at shutdown names seq 3.
        assert!(sink.finish(std::time::Duration::from_secs(30)));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let v = verify(text.lines());
        assert_eq!(v.breaks.len(), 1, "{text}");
        assert!(
            v.breaks[0]
                .reason
                .contains("the log ends at seq 1, but a checkpoint names seq 3: the last 2 record(s) were cut"),
            "{:?}",
            v.breaks
        );
    }

    #[test]
    fn a_whole_chain_verifies_and_names_its_head() {
        let lines = chained_lines(5);
        let mut with_logs: Vec<&str> = lines.iter().map(String::as_str).collect();
        with_logs.insert(
            2,
            "2026-11-23T10:00:00.123Z  INFO sigil::server: some other log line",
        );
        with_logs.insert(
            3,
            r#"{"timestamp":"2026-11-23T10:00:00Z","level":"INFO","fields":{"message":"x"},"target":"sigil"}"#,
        );
        let v = verify(with_logs);
        assert!(v.whole(), "{:?} {:?}", v.breaks, v.unreadable);
        assert_eq!(v.log_lines, 2);
        let s = &v.streams["s1"];
        assert_eq!((s.first, s.last, s.records), (1, 5, 5));
        assert_eq!(
            s.head,
            hex::encode(sha2::Sha256::digest(lines[4].as_bytes()))
        );
    }

    #[test]
    fn every_break_is_named_not_only_the_first() {
        let lines = chained_lines(8);
        let v = |ls: Vec<String>| verify(ls.iter().map(String::as_str));

        // Deleted, then altered, then reordered, in one log.
        let mut ls = lines.clone();
        ls.remove(1); // seq 2
        ls[3] = ls[3].replace("denied", "audited"); // seq 5 altered: seq 6 breaks
        ls.swap(5, 6); // seq 7 and 8 swapped
        let got = v(ls);
        let reasons: Vec<String> = got.breaks.iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            vec![
                "line 2: stream s1: seq 3 follows seq 1 (1 record(s) missing)",
                "line 5: stream s1: seq 6 does not follow the line of seq 5 (that line was altered, or this one's link was)",
                "line 6: stream s1: seq 8 follows seq 6 (1 record(s) missing)",
                "line 7: stream s1: seq 7 follows seq 8 (reordered or repeated)",
            ],
            "{reasons:#?}"
        );

        let got = v(lines[1..].to_vec());
        assert_eq!(got.breaks.len(), 1);
        assert!(
            got.breaks[0].reason.contains("begins at seq 2"),
            "{:?}",
            got.breaks
        );

        // A record without chain fields, and a line that is not one.
        let mut ls = lines.clone();
        ls.insert(
            3,
            r#"{"target":"audit","decision":"allowed","image":"x"}"#.into(),
        );
        ls.insert(5, "garbage".into());
        let got = v(ls);
        assert_eq!(got.breaks.len(), 1, "{:?}", got.breaks);
        assert!(got.breaks[0].reason.contains("without chain fields"));
        assert_eq!(got.unreadable, vec![6]);
        assert!(!got.whole());
    }

    fn numbered(ls: &[String]) -> Vec<(usize, std::borrow::Cow<'_, str>)> {
        ls.iter()
            .enumerate()
            .map(|(n, l)| (n + 1, l.as_str().into()))
            .collect()
    }

    #[test]
    fn checkpoints_find_a_cut_tail_a_deleted_stream_and_an_injected_one() {
        let key = crate::audit::AuditKey::new(&[7u8; 32]).unwrap();
        let mut chain = crate::audit::test_chain("s1");
        let mut lines = vec![crate::audit::test_checkpoint_line(
            &chain,
            Some(&key),
            false,
        )];
        for i in 0..6 {
            let r = a_record(false, &format!("u{i}"));
            lines.push(crate::audit::test_chain_line(&mut chain, &r));
            if i == 2 {
                lines.push(crate::audit::test_checkpoint_line(
                    &chain,
                    Some(&key),
                    false,
                ));
            }
        }
        let end = crate::audit::test_checkpoint_line(&chain, Some(&key), true);
        lines.push(end.clone());
        let run = |ls: &[String], key: Option<&crate::audit::AuditKey>| {
            verify_lines(&numbered(ls), &[], key)
        };
        let whole = run(&lines, Some(&key));
        assert!(whole.whole(), "{:?}", whole.breaks);
        assert_eq!(whole.streams["s1"].checkpointed, 6);
        assert!(whole.notes.is_empty(), "{:?}", whole.notes);

        // The tail cut, the last checkpoint kept.
        let mut cut: Vec<String> = lines[..5].to_vec();
        cut.push(end.clone());
        let got = run(&cut, Some(&key));
        assert!(
            got.breaks.iter().any(|b| {
                b.reason.contains(
                "the log ends at seq 3, but a checkpoint names seq 6: the last 3 record(s) were cut"
            )
            }),
            "{:?}",
            got.breaks
        );
        // The tail cut with its checkpoints, which an auditor holds apart.
        let extra = [(0usize, std::borrow::Cow::Borrowed(end.as_str()))];
        let got = verify_lines(&numbered(&lines[..5]), &extra, Some(&key));
        assert!(
            got.breaks.iter().any(|b| b.reason.contains("were cut")),
            "{:?}",
            got.breaks
        );

        // A deleted stream: only its checkpoint is left.
        let got = run(std::slice::from_ref(&end), Some(&key));
        assert!(
            got.breaks[0]
                .reason
                .contains("the log holds none of its records (the stream was deleted)"),
            "{:?}",
            got.breaks
        );

        // Injected: a whole stream made without the key, and a record
        // after a stream's end.
        let mut fake = crate::audit::test_chain("s2");
        let mut injected = lines.clone();
        injected.push(crate::audit::test_checkpoint_line(&fake, None, false));
        injected.push(crate::audit::test_chain_line(
            &mut fake,
            &a_record(false, "x"),
        ));
        injected.push(crate::audit::test_chain_line(
            &mut chain,
            &a_record(false, "late"),
        ));
        let got = run(&injected, Some(&key));
        let reasons: Vec<&str> = got.breaks.iter().map(|b| b.reason.as_str()).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("stream s2: the checkpoint of seq 0 has no MAC")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("stream s2: no checkpoint under the key")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(
                |r| r.contains("stream s1: records up to seq 7 come after its last checkpoint")
            ),
            "{reasons:?}"
        );
        // Without the key, the made-up stream is whole: an unkeyed chain
        // proves order, not authorship.
        let got = run(&injected[..injected.len() - 1], None);
        assert!(got.whole(), "{:?}", got.breaks);
        assert!(got.notes.iter().any(|n| n.contains("--key-file")));

        // A forged MAC, and another key.
        let mut forged = lines.clone();
        forged[0] = forged[0].replace("\"mac\":\"", "\"mac\":\"00");
        let got = run(&forged, Some(&key));
        assert!(
            got.breaks[0]
                .reason
                .contains("does not verify under the key"),
            "{:?}",
            got.breaks
        );
        let other = crate::audit::AuditKey::new(&[8u8; 32]).unwrap();
        assert!(!run(&lines, Some(&other)).whole());
        assert!(crate::audit::AuditKey::new(b"short\n").is_err());
    }

    #[test]
    fn kubectl_and_cri_captures_are_read_when_told() {
        let lines = chained_lines(3);
        let kubectl: String = lines
            .iter()
            .map(|l| format!("2026-11-23T10:00:00.123456789Z {l}\n"))
            .collect();
        // Not told: every line is unreadable, and the hint says why.
        let v = verify_lines(&unwrap_lines(&kubectl, InputFormat::Jsonl), &[], None);
        assert_eq!(v.unreadable, vec![1, 2, 3]);
        assert!(v
            .text(InputFormat::Jsonl)
            .contains("--format kubectl-timestamps"));
        let v = verify_lines(
            &unwrap_lines(&kubectl, InputFormat::KubectlTimestamps),
            &[],
            None,
        );
        assert!(v.whole(), "{:?} {:?}", v.breaks, v.unreadable);
        // CRI: a long record split into partial lines, stderr lines between.
        let (a, b) = lines[1].split_at(40);
        let cri = format!(
            "2026-11-23T10:00:00.1Z stdout F {}\n2026-11-23T10:00:00.2Z stdout P {a}\n2026-11-23T10:00:00.2Z stderr F 2026-11-23T10:00:00.2Z  WARN sigil: x\n2026-11-23T10:00:00.3Z stdout F {b}\n2026-11-23T10:00:00.4Z stdout F {}\n",
            lines[0], lines[2]
        );
        let v = verify_lines(&unwrap_lines(&cri, InputFormat::Cri), &[], None);
        assert!(v.whole(), "{:?} {:?}", v.breaks, v.unreadable);
        assert_eq!(v.streams["s1"].records, 3);
        assert_eq!(v.log_lines, 1);
        // A report over a CRI capture counts the same records.
        let r = report_lines(unwrap_lines(&cri, InputFormat::Cri), &Filter::default(), 10);
        assert_eq!(r.records, 3);
    }

    #[test]
    fn images_are_counted_without_digests_and_reasons_with_digests_masked() {
        let d = "a".repeat(64);
        assert_eq!(
            without_digest(&format!("r.io/app:v1@sha256:{d}")),
            "r.io/app:v1"
        );
        assert_eq!(without_digest("r.io/app:v1"), "r.io/app:v1");
        assert_eq!(
            digests_masked(&format!(
                "no signatures found at r.io/app:sha256-{d}.sig (sha256:{d})"
            )),
            "no signatures found at r.io/app:sha256:….sig (sha256:…)"
        );
        assert_eq!(digests_masked("sha256 alone"), "sha256 alone");
    }

    #[test]
    fn reports_count_and_filter() {
        let lines = chained_lines(8);
        let r = report(lines.iter().map(String::as_str), &Filter::default(), 10);
        assert_eq!(r.records, 8);
        assert_eq!(
            r.decisions,
            vec![
                Count {
                    value: "audited".into(),
                    count: 4
                },
                Count {
                    value: "denied".into(),
                    count: 4
                }
            ]
        );
        assert_eq!(
            r.policies[0],
            Count {
                value: "signed".into(),
                count: 6
            }
        );
        assert_eq!(
            r.reasons,
            vec![Count {
                value: "no signatures found".into(),
                count: 8
            }]
        );
        let only_shop = Filter {
            namespace: Some("shop".into()),
            since: Some("2026-11-21T00:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        let r = report(lines.iter().map(String::as_str), &only_shop, 1);
        // shop: i = 0, 2, 4, 6 on days 20, 22, 21, 20 → after the 21st: 2.
        assert_eq!(r.records, 2);
        assert_eq!(r.images.len(), 1);
        assert!(r.table(&only_shop).contains("2 audit records from 2026-11-21T10:00:00Z to 2026-11-22T10:00:00Z (since 2026-11-21T00:00:00Z, namespace shop)"), "{}", r.table(&only_shop));
    }
}
