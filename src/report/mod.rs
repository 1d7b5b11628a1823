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

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

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
pub fn report_lines<'a>(
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

#[cfg(test)]
mod tests;
mod verify;

pub use verify::{
    unwrap_lines, verify, verify_lines, BrokenLink, InputFormat, StreamSummary, Verification,
};
