//! The verdict: pure code that combines per-image verification outcomes with
//! policy modes, the server mode and the no-match rule. No I/O happens here.
//!
//! Rules (policy-controller's, plus audit): every policy that matches an
//! image must pass; a failing `enforce` policy denies, `warn` admits with a
//! warning, `audit` admits and logs. An image no policy matches follows the
//! no-match action. In server audit mode nothing is denied: what would have
//! been denied is recorded as `audited`.

use serde::Serialize;

use crate::policy::PolicyMode;
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
    /// The one-line text used in deny messages, warnings and `sigil check`.
    pub fn line(&self) -> String {
        let digest = self.digest.as_deref().unwrap_or("digest unresolved");
        match &self.policy {
            Some(p) if self.passed => format!(
                "{} {} ({}) passes policy {:?} with logged failures: {}",
                self.field,
                self.image,
                digest,
                p,
                self.reasons.join("; ")
            ),
            Some(p) => format!(
                "{} {} ({}) fails policy {:?}: {}",
                self.field,
                self.image,
                digest,
                p,
                self.reasons.join("; ")
            ),
            None => format!(
                "{} {} ({}): {}",
                self.field,
                self.image,
                digest,
                self.reasons.join("; ")
            ),
        }
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

/// Decides a request from its image reports.
pub fn decide(reports: &[ImageReport], settings: &DecisionSettings) -> Verdict {
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

    // One deny line per failing image, listing each denying policy.
    let mut lines: Vec<String> = Vec::new();
    let mut last_image: Option<(&str, &str)> = None;
    for f in findings
        .iter()
        .filter(|f| f.decision == FindingDecision::Denied)
    {
        let key = (f.field.as_str(), f.image.as_str());
        if last_image == Some(key) {
            if let (Some(line), Some(p)) = (lines.last_mut(), &f.policy) {
                line.push_str(&format!(
                    "; and fails policy {:?}: {}",
                    p,
                    f.reasons.join("; ")
                ));
                continue;
            }
        }
        last_image = Some(key);
        lines.push(f.line());
    }
    let warnings = findings
        .iter()
        .filter(|f| f.decision == FindingDecision::Warned)
        .map(|f| format!("{} [mode {}]", f.line(), f.mode))
        .collect();
    Verdict {
        allowed: lines.is_empty(),
        message: (!lines.is_empty()).then(|| lines.join("\n")),
        warnings,
        findings,
    }
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
}
