//! `sigil report`: what an audit log holds, counted (by decision, policy,
//! namespace and image, with the most frequent reasons), and whether its
//! hash chain is whole (`--verify`). Pure over the lines it is given; the
//! CLI reads files or stdin and prints.
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
    let mut records = 0;
    let mut skipped_lines = 0;
    let (mut from, mut to): (Option<jiff::Timestamp>, Option<jiff::Timestamp>) = (None, None);
    let mut decisions = HashMap::new();
    let mut policies = HashMap::new();
    let mut namespaces = HashMap::new();
    let mut images = HashMap::new();
    let mut reasons = HashMap::new();
    for line in lines {
        let Some(record) = audit_record(line) else {
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

/// `sigil report`: 0, or 1 for a broken chain with `--verify`, 2 when the
/// input cannot be read.
pub fn main(args: &crate::cli::ReportArgs) -> u8 {
    let text = match read_input(&args.files) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sigil report: {e}");
            return 2;
        }
    };
    let json = args.output == crate::cli::OutputFormat::Json;
    if args.verify {
        return match verify(text.lines()) {
            Ok(summary) => {
                if json {
                    let streams: Vec<Value> = summary
                        .streams
                        .iter()
                        .map(|(s, (seq, head))| serde_json::json!({"stream": s, "seq": seq, "head": head}))
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"whole": true, "streams": streams, "unchained": summary.unchained})
                    );
                } else {
                    println!(
                        "chain whole: {} stream(s); {} record(s) without chain fields not checked",
                        summary.streams.len(),
                        summary.unchained
                    );
                    for (stream, (seq, head)) in &summary.streams {
                        println!("  stream {stream}: {seq} records, head {head}");
                    }
                }
                0
            }
            Err(broken) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"whole": false, "line": broken.line, "reason": broken.reason})
                    );
                } else {
                    println!("chain broken at {broken}");
                }
                1
            }
        };
    }
    let filter = Filter {
        since: args.since,
        until: args.until,
        namespace: args.namespace.clone(),
    };
    let r = report(text.lines(), &filter, args.top);
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

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BrokenLink {
    /// 1-based line number in the input.
    pub line: usize,
    /// What is wrong, in words.
    pub reason: String,
}

/// What a whole chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Per stream: its last seq and the hash of its last line (the head
    /// to compare with the heads logged on stderr).
    pub streams: BTreeMap<String, (u64, String)>,
    /// Audit records without chain fields (written before the chain, or by
    /// `sigil check`): not checked.
    pub unchained: u64,
}

/// Checks the chain of every stream in `lines`, in order: each record's
/// `seq` must be one more than its stream's previous record, and its
/// `prev` the SHA-256 of that record's line; a stream must start at seq 1
/// with no `prev`. The first broken link is the error. Lines that are not
/// audit records are ignored (logs may be interleaved).
pub fn verify<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<ChainSummary, BrokenLink> {
    let mut streams: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut unchained = 0;
    for (n, line) in lines.into_iter().enumerate() {
        let line_no = n + 1;
        let broken = |reason: String| BrokenLink {
            line: line_no,
            reason,
        };
        let Some(record) = audit_record(line) else {
            continue;
        };
        let Some(stream) = record.get("stream").and_then(Value::as_str) else {
            unchained += 1;
            continue;
        };
        let seq = record
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| broken(format!("stream {stream}: no seq")))?;
        let prev = match record.get("prev") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.as_str()),
            Some(_) => return Err(broken(format!("stream {stream}: prev is not a string"))),
        };
        let hash = hex::encode(sha2::Sha256::digest(line.as_bytes()));
        match streams.get(stream) {
            None if seq != 1 => {
                return Err(broken(format!(
                    "stream {stream} begins at seq {seq}: the {} record(s) before it are missing",
                    seq - 1
                )))
            }
            None if prev.is_some() => {
                return Err(broken(format!(
                    "stream {stream}: seq 1 names a previous record"
                )))
            }
            None => {}
            Some((last, last_hash)) => {
                if seq != last + 1 {
                    return Err(broken(format!(
                        "stream {stream}: seq {seq} follows seq {last}{}",
                        if seq > last + 1 {
                            format!(" ({} record(s) missing)", seq - last - 1)
                        } else {
                            " (reordered or repeated)".to_string()
                        }
                    )));
                }
                if prev != Some(last_hash.as_str()) {
                    return Err(broken(format!(
                        "stream {stream}: seq {seq} does not follow the line of seq {last} (that line was altered, or this one's link was)"
                    )));
                }
            }
        }
        streams.insert(stream.to_string(), (seq, hash));
    }
    Ok(ChainSummary { streams, unchained })
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
        go: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
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

    #[test]
    fn a_stalled_stdout_never_blocks_a_review_and_the_loss_shows_in_the_chain() {
        use crate::audit::{AuditSink, StdoutAuditSink};
        let go = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let entered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink = StdoutAuditSink::writing_to(
            Box::new(Stalled {
                entered: entered.clone(),
                go: go.clone(),
                out: out.clone(),
            }),
            4,
        );
        let record = AuditRecord::new(
            &RequestContext::default(),
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
        );
        let started = std::time::Instant::now();
        // The first is taken by the writer, which stalls on it…
        sink.record(&record);
        while !entered.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // …four wait in the queue, five are dropped.
        for _ in 0..9 {
            sink.record(&record);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        *go.0.lock().unwrap() = true;
        go.1.notify_all();
        assert!(sink.flush(std::time::Duration::from_secs(5)));
        // Once drained, later records are written again.
        sink.record(&record);
        assert!(sink.flush(std::time::Duration::from_secs(5)));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        let e = verify(lines.iter().copied()).unwrap_err();
        assert_eq!(e.line, 6);
        assert!(
            e.reason
                .contains("seq 11 follows seq 5 (5 record(s) missing)"),
            "{e}"
        );
    }

    #[test]
    fn a_whole_chain_verifies_and_names_its_head() {
        let lines = chained_lines(5);
        let mut with_logs: Vec<&str> = lines.iter().map(String::as_str).collect();
        with_logs.insert(2, "2026-11-23 INFO some other log line");
        let summary = verify(with_logs).unwrap();
        let (seq, head) = &summary.streams["s1"];
        assert_eq!(*seq, 5);
        assert_eq!(
            *head,
            hex::encode(sha2::Sha256::digest(lines[4].as_bytes()))
        );
    }

    #[test]
    fn a_tampered_deleted_or_reordered_line_is_named() {
        let lines = chained_lines(5);
        let v = |ls: Vec<String>| verify(ls.iter().map(String::as_str)).unwrap_err();

        let mut tampered = lines.clone();
        tampered[2] = tampered[2].replace("denied", "audited");
        assert_eq!(v(tampered).line, 4);

        let mut deleted = lines.clone();
        deleted.remove(2);
        let e = v(deleted);
        assert_eq!(e.line, 3);
        assert!(
            e.reason
                .contains("seq 4 follows seq 2 (1 record(s) missing)"),
            "{e}"
        );

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert!(v(swapped).reason.contains("seq 3 follows seq 1"));

        let e = v(lines[1..].to_vec());
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("begins at seq 2"), "{e}");
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
