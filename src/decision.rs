//! The verdict: pure code that combines per-image verification outcomes with
//! policy modes, the server mode and the no-match rule. No I/O happens here.
//!
//! Rules (policy-controller's, plus audit): every policy that matches an
//! image must pass; a failing `enforce` policy denies, `warn` admits with a
//! warning, `audit` admits and logs. An image no policy matches follows the
//! no-match action. In server audit mode nothing is denied: what would have
//! been denied is recorded as `audited`.

use serde::Serialize;

use crate::limits::{
    MAX_DENY_MESSAGE_BYTES, MAX_IMAGE_IN_TEXT, MAX_REASON_BYTES, MAX_WARNINGS, MAX_WARNING_BYTES,
};
use crate::policy::PolicyMode;
use crate::text;
use crate::verify::{AuthorityOutcome, ImageReport};

/// Whether the server may deny at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerMode {
    /// Deny what fails.
    Enforce,
    /// Never deny; log what would have been denied.
    Audit,
}

/// What to do with an image no policy matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NoMatchAction {
    /// Deny it (policy-controller's default).
    Deny,
    /// Admit it with a warning.
    Warn,
    /// Admit it.
    Allow,
}

/// Inputs to the decision besides the reports.
#[derive(Debug, Clone, Copy)]
pub struct DecisionSettings {
    /// Server-wide mode.
    pub server_mode: ServerMode,
    /// No-match rule.
    pub no_match: NoMatchAction,
}

/// What happened to one failing (image, policy) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingDecision {
    /// The request was denied for it.
    Denied,
    /// Admitted with a warning.
    Warned,
    /// Admitted and logged (would have been denied).
    Audited,
}

/// One failing image under one policy (or under no policy at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The image as written.
    pub image: String,
    /// Where it was found.
    pub field: String,
    /// The digest verified, when resolved.
    pub digest: Option<String>,
    /// The policy, or `None` when no policy matched.
    pub policy: Option<String>,
    /// The mode that applied: `enforce`, `warn`, `audit` or `no-match`.
    pub mode: String,
    /// What was done.
    pub decision: FindingDecision,
    /// Reasons, one per failing authority (or one for the whole policy).
    pub reasons: Vec<String>,
    /// Every authority's result.
    pub authorities: Vec<AuthorityOutcome>,
    /// The policy passed, and `reasons` are what a Notation verification
    /// level logs instead of enforcing (a warning, never a deny).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passed: bool,
}

impl Finding {
    /// The one-line text used in deny messages, warnings and `sigil check`:
    /// the image excerpted (at most [`MAX_IMAGE_IN_TEXT`] bytes), each
    /// reason cut at [`MAX_REASON_BYTES`], everything escaped by the rules
    /// of [`crate::text`].
    pub fn line(&self) -> String {
        let (head, tail) = self.line_parts();
        format!("{head}{tail}")
    }

    /// The line in two parts: where the image is (field, image, digest)
    /// and what fails, so that images failing identically can be said once.
    fn line_parts(&self) -> (String, String) {
        if self.mode == KYVERNO_MODE {
            // Kyverno's words, which dashboards built on Kyverno parse.
            let policy = self.policy.as_deref().unwrap_or_default();
            return (
                String::new(),
                format!(
                    "Policy {} failed: {}",
                    text::escape(policy),
                    self.reasons_text()
                ),
            );
        }
        let digest = self.digest.as_deref().unwrap_or("digest unresolved");
        let head = format!(
            "{} {} ({})",
            text::escape(&self.field),
            text::excerpt(&self.image, MAX_IMAGE_IN_TEXT),
            text::escape(digest)
        );
        let reasons = self.reasons_text();
        let tail = match &self.policy {
            Some(p) if self.passed => format!(
                " passes policy {:?} with logged failures: {reasons}",
                text::escape(p)
            ),
            Some(p) => format!(" fails policy {:?}: {reasons}", text::escape(p)),
            None => format!(": {reasons}"),
        };
        (head, tail)
    }

    /// The reasons, each escaped and cut at [`MAX_REASON_BYTES`].
    fn reasons_text(&self) -> String {
        self.reasons
            .iter()
            .map(|r| text::cap(text::escape(r).into_owned(), MAX_REASON_BYTES))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Admit or deny.
    pub allowed: bool,
    /// The deny message (one line per failing image), when denied.
    pub message: Option<String>,
    /// Admission warnings.
    pub warnings: Vec<String>,
    /// Every failure, whatever was done about it.
    pub findings: Vec<Finding>,
}

/// The mode of a finding an `ImageValidatingPolicy` made: its line is
/// Kyverno's `Policy <name> failed: <message>`.
pub const KYVERNO_MODE: &str = "kyverno";

/// Decides a request from its image reports.
pub fn decide(reports: &[ImageReport], settings: &DecisionSettings) -> Verdict {
    decide_with(reports, settings, &[], Vec::new())
}

/// [`decide`] with the images `claimed` by an `ImageValidatingPolicy`
/// that applies (never "no policy matches"), and that policy's findings.
pub fn decide_with(
    reports: &[ImageReport],
    settings: &DecisionSettings,
    claimed: &[String],
    kyverno: Vec<Finding>,
) -> Verdict {
    let mut findings = Vec::new();
    for r in reports {
        let base = |policy: Option<String>, mode: &str, decision, reasons, authorities| Finding {
            image: r.image.reference.clone(),
            field: r.image.field.clone(),
            digest: r.digest.clone(),
            policy,
            mode: mode.to_string(),
            decision,
            reasons,
            authorities,
            passed: false,
        };
        if let Some(reason) = &r.invalid_reference {
            findings.push(base(
                None,
                "enforce",
                apply(settings, FindingDecision::Denied),
                vec![reason.clone()],
                Vec::new(),
            ));
            continue;
        }
        if r.policies.is_empty() && claimed.contains(&r.image.reference) {
            continue;
        }
        if r.policies.is_empty() {
            let d = match settings.no_match {
                NoMatchAction::Allow => continue,
                NoMatchAction::Deny => FindingDecision::Denied,
                NoMatchAction::Warn => FindingDecision::Warned,
            };
            findings.push(base(
                None,
                "no-match",
                apply(settings, d),
                vec!["no ClusterImagePolicy matches this image".to_string()],
                Vec::new(),
            ));
            continue;
        }
        // A passing policy whose vouching Notation signature had checks its
        // level only logs: admitted, with those as a warning.
        for p in r.policies.iter().filter(|p| p.passed) {
            let logged: Vec<String> = p
                .authorities
                .iter()
                .filter_map(|a| Some((a, a.result.as_ref().ok()?)))
                .flat_map(|(a, v)| v.warnings().iter().map(move |w| format!("{}: {w}", a.name)))
                .collect();
            if !logged.is_empty() {
                findings.push(Finding {
                    passed: true,
                    ..base(
                        Some(p.policy.clone()),
                        p.mode.name(),
                        FindingDecision::Warned,
                        logged,
                        p.authorities.clone(),
                    )
                });
            }
        }
        for p in r.policies.iter().filter(|p| !p.passed) {
            let (mode, d) = match p.mode {
                PolicyMode::Enforce => ("enforce", FindingDecision::Denied),
                PolicyMode::Warn => ("warn", FindingDecision::Warned),
                PolicyMode::Audit => ("audit", FindingDecision::Audited),
            };
            findings.push(base(
                Some(p.policy.clone()),
                mode,
                apply(settings, d),
                p.reasons(),
                p.authorities.clone(),
            ));
        }
    }

    findings.extend(kyverno.into_iter().map(|mut f| {
        f.decision = apply(settings, f.decision);
        f
    }));
    let lines = deny_lines(&findings);
    let warnings = warning_lines(&findings);
    Verdict {
        allowed: lines.is_empty(),
        message: (!lines.is_empty()).then(|| deny_message(&lines)),
        warnings,
        findings,
    }
}

/// Lines that say the same failure of several images once: the first
/// image's line, then how many more fail the same way and where.
#[derive(Debug)]
struct Grouped {
    head: String,
    tail: String,
    /// The fields of the other images that fail the same way.
    more: Vec<String>,
}

impl Grouped {
    fn text(&self) -> String {
        let mut line = format!("{}{}", self.head, self.tail);
        if !self.more.is_empty() {
            let shown: Vec<&str> = self.more.iter().take(3).map(String::as_str).collect();
            line.push_str(&format!(
                " (the same for {} more image{}: {}{})",
                self.more.len(),
                if self.more.len() == 1 { "" } else { "s" },
                shown.join(", "),
                if self.more.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ));
        }
        text::cap(line, MAX_DENY_MESSAGE_BYTES / 4)
    }
}

/// `(head, tail, field)` grouped by identical tails, in first-seen order.
fn group(parts: impl Iterator<Item = (String, String, String)>) -> Vec<Grouped> {
    let mut groups: Vec<Grouped> = Vec::new();
    let mut by_tail: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (head, tail, field) in parts {
        match by_tail.get(&tail) {
            Some(&at) => groups[at].more.push(field),
            None => {
                by_tail.insert(tail.clone(), groups.len());
                groups.push(Grouped {
                    head,
                    tail,
                    more: Vec::new(),
                });
            }
        }
    }
    groups
}

/// One deny line per failing image, listing each denying policy; images
/// that fail identically share one line.
fn deny_lines(findings: &[Finding]) -> Vec<Grouped> {
    let mut per_image: Vec<(String, String, String)> = Vec::new();
    let mut last_image: Option<(&str, &str)> = None;
    for f in findings
        .iter()
        .filter(|f| f.decision == FindingDecision::Denied)
    {
        let key = (f.field.as_str(), f.image.as_str());
        if last_image == Some(key) {
            if let (Some((_, tail, _)), Some(p)) = (per_image.last_mut(), &f.policy) {
                tail.push_str(&format!(
                    "; and fails policy {:?}: {}",
                    text::escape(p),
                    f.reasons_text()
                ));
                continue;
            }
        }
        last_image = Some(key);
        let (head, tail) = f.line_parts();
        per_image.push((head, tail, text::escape(&f.field).into_owned()));
    }
    group(per_image.into_iter())
}

/// The deny message: the lines, at most [`MAX_DENY_MESSAGE_BYTES`] in
/// all; past it, how many failing images it leaves out.
fn deny_message(lines: &[Grouped]) -> String {
    let mut message = String::new();
    for (i, line) in lines.iter().enumerate() {
        let text = line.text();
        // Room for this line and the count of what would follow.
        if message.len() + text.len() + 96 > MAX_DENY_MESSAGE_BYTES {
            let left: usize = lines[i..].iter().map(|l| 1 + l.more.len()).sum();
            message.push_str(&format!(
                "\n… and {left} more failing image{} (each is in the audit log)",
                if left == 1 { "" } else { "s" }
            ));
            break;
        }
        if i > 0 {
            message.push('\n');
        }
        message.push_str(&text);
    }
    message
}

/// The warnings: identical ones once with a count, each at most
/// [`MAX_WARNING_BYTES`], at most [`MAX_WARNINGS`] (the last one says how
/// many it leaves out).
fn warning_lines(findings: &[Finding]) -> Vec<String> {
    let groups = group(
        findings
            .iter()
            .filter(|f| f.decision == FindingDecision::Warned)
            .map(|f| {
                let (head, tail) = f.line_parts();
                (
                    head,
                    format!("{tail} [mode {}]", text::escape(&f.mode)),
                    text::escape(&f.field).into_owned(),
                )
            }),
    );
    let mut out: Vec<String> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        if out.len() + 1 == MAX_WARNINGS && groups.len() > MAX_WARNINGS {
            let left: usize = groups[i..].iter().map(|g| 1 + g.more.len()).sum();
            out.push(format!(
                "… and {left} more warned image{} (each is in the audit log)",
                if left == 1 { "" } else { "s" }
            ));
            break;
        }
        out.push(text::cap(g.text(), MAX_WARNING_BYTES));
    }
    out
}

fn apply(settings: &DecisionSettings, d: FindingDecision) -> FindingDecision {
    match (settings.server_mode, d) {
        (ServerMode::Audit, FindingDecision::Denied) => FindingDecision::Audited,
        (_, d) => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::PolicyOutcome;
    use crate::workload::ImageUse;

    fn report(policies: Vec<PolicyOutcome>) -> ImageReport {
        ImageReport {
            image: ImageUse {
                field: "spec.containers[0].image".into(),
                reference: "r/app:1".into(),
                pointer: "/spec/containers/0/image".into(),
            },
            digest: Some("sha256:aa".into()),
            policies: policies.into_iter().map(std::sync::Arc::new).collect(),
            invalid_reference: None,
        }
    }

    fn outcome(name: &str, mode: PolicyMode, passed: bool) -> PolicyOutcome {
        PolicyOutcome {
            policy: name.into(),
            mode,
            passed,
            failure: None,
            authorities: vec![AuthorityOutcome {
                name: "authority-0".into(),
                result: if passed {
                    Ok(crate::verify::Vouch {
                        reason: "ok".into(),
                        signer: None,
                        matches: serde_json::json!({}),
                        notation: None,
                        statements: Default::default(),
                    })
                } else {
                    Err(crate::verify::Failure::Verdict(
                        "no signatures found".into(),
                    ))
                },
            }],
        }
    }

    const ENFORCE: DecisionSettings = DecisionSettings {
        server_mode: ServerMode::Enforce,
        no_match: NoMatchAction::Deny,
    };

    #[test]
    fn all_matching_policies_must_pass() {
        let v = decide(
            &[report(vec![
                outcome("a", PolicyMode::Enforce, true),
                outcome("b", PolicyMode::Enforce, false),
            ])],
            &ENFORCE,
        );
        assert!(!v.allowed);
        assert_eq!(
            v.message.as_deref(),
            Some("spec.containers[0].image r/app:1 (sha256:aa) fails policy \"b\": authority-0: no signatures found")
        );
        let v = decide(
            &[report(vec![outcome("a", PolicyMode::Enforce, true)])],
            &ENFORCE,
        );
        assert!(v.allowed && v.findings.is_empty());
    }

    #[test]
    fn warn_and_audit_modes_admit() {
        let v = decide(
            &[report(vec![
                outcome("w", PolicyMode::Warn, false),
                outcome("x", PolicyMode::Audit, false),
            ])],
            &ENFORCE,
        );
        assert!(v.allowed);
        assert_eq!(v.warnings.len(), 1);
        assert!(v.warnings[0].contains("fails policy \"w\""));
        assert_eq!(v.findings[1].decision, FindingDecision::Audited);
    }

    #[test]
    fn server_audit_mode_never_denies() {
        let s = DecisionSettings {
            server_mode: ServerMode::Audit,
            no_match: NoMatchAction::Deny,
        };
        let v = decide(
            &[
                report(vec![outcome("a", PolicyMode::Enforce, false)]),
                report(vec![]),
            ],
            &s,
        );
        assert!(v.allowed);
        assert!(v
            .findings
            .iter()
            .all(|f| f.decision == FindingDecision::Audited));
        assert_eq!(v.findings.len(), 2);
    }

    #[test]
    fn no_match_actions() {
        for (action, allowed, warnings, findings) in [
            (NoMatchAction::Deny, false, 0, 1),
            (NoMatchAction::Warn, true, 1, 1),
            (NoMatchAction::Allow, true, 0, 0),
        ] {
            let v = decide(
                &[report(vec![])],
                &DecisionSettings {
                    server_mode: ServerMode::Enforce,
                    no_match: action,
                },
            );
            assert_eq!(
                (v.allowed, v.warnings.len(), v.findings.len()),
                (allowed, warnings, findings),
                "{action:?}"
            );
        }
    }

    #[test]
    fn two_failing_policies_make_one_line() {
        let v = decide(
            &[report(vec![
                outcome("a", PolicyMode::Enforce, false),
                outcome("b", PolicyMode::Enforce, false),
            ])],
            &ENFORCE,
        );
        let msg = v.message.unwrap();
        assert_eq!(msg.lines().count(), 1);
        assert!(
            msg.contains("\"a\"") && msg.contains("and fails policy \"b\""),
            "{msg}"
        );
    }

    /// 256 images that fail alike (a tenant's references of 4,000 bytes of
    /// DEL each) make one line with a count, a message well under its cap,
    /// and nothing a terminal would obey.
    #[test]
    fn identical_failures_are_said_once_and_the_message_is_bounded() {
        let reference = "\u{7f}".repeat(4_000);
        let reason = crate::image::ImageRef::parse(&reference)
            .unwrap_err()
            .to_string();
        let reports: Vec<ImageReport> = (0..256)
            .map(|i| ImageReport {
                image: crate::workload::ImageUse {
                    field: format!("spec.containers[{i}].image"),
                    reference: reference.clone(),
                    pointer: String::new(),
                },
                digest: None,
                policies: Vec::new(),
                invalid_reference: Some(reason.clone()),
            })
            .collect();
        let v = decide(&reports, &ENFORCE);
        assert!(!v.allowed);
        assert_eq!(v.findings.len(), 256, "every image is still a finding");
        let msg = v.message.unwrap();
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(msg.len() < 2_048, "{}", msg.len());
        assert!(
            msg.contains("(the same for 255 more images: spec.containers[1].image, spec.containers[2].image, spec.containers[3].image, …)"),
            "{msg}"
        );
        assert!(msg.contains("…(4,000 bytes)"), "{msg}");
        assert!(!msg.chars().any(crate::text::needs_escape), "{msg}");
    }

    /// Distinct failures past the cap: the message stops and says how many
    /// it leaves out; warnings are at most their number and size.
    #[test]
    fn distinct_failures_are_capped_with_a_count() {
        let reports: Vec<ImageReport> = (0..256)
            .map(|i| ImageReport {
                image: crate::workload::ImageUse {
                    field: format!("spec.containers[{i}].image"),
                    reference: format!("r/{i}{}", "x".repeat(3_000)),
                    pointer: String::new(),
                },
                digest: None,
                policies: Vec::new(),
                invalid_reference: Some(format!("reason {i} {}", "y".repeat(3_000))),
            })
            .collect();
        let v = decide(&reports, &ENFORCE);
        let msg = v.message.unwrap();
        assert!(
            msg.len() <= crate::limits::MAX_DENY_MESSAGE_BYTES,
            "{}",
            msg.len()
        );
        let last = msg.lines().last().unwrap();
        assert!(
            last.starts_with("… and ")
                && last.ends_with("more failing images (each is in the audit log)"),
            "{last}"
        );
        let shown = msg.lines().count() - 1;
        assert_eq!(
            last,
            format!(
                "… and {} more failing images (each is in the audit log)",
                256 - shown
            )
        );
        // Warnings: 256 images each failing another warn-mode policy.
        let reports: Vec<ImageReport> = (0..256)
            .map(|i| {
                let mut r = report(vec![outcome(&format!("w{i}"), PolicyMode::Warn, false)]);
                r.image.field = format!("spec.containers[{i}].image");
                r.image.reference = format!("r/{i}{}", "x".repeat(3_000));
                r
            })
            .collect();
        let v = decide(&reports, &ENFORCE);
        assert!(v.allowed);
        assert_eq!(v.warnings.len(), crate::limits::MAX_WARNINGS);
        assert!(v
            .warnings
            .iter()
            .all(|w| w.len() <= crate::limits::MAX_WARNING_BYTES));
        assert_eq!(
            v.warnings.last().unwrap(),
            &format!(
                "… and {} more warned images (each is in the audit log)",
                256 - (crate::limits::MAX_WARNINGS - 1)
            )
        );
    }
}
