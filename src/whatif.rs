//! `sigil check --cluster`, the what-if: every workload the cluster runs,
//! evaluated through the webhook's pipeline as if the given policies were
//! applied and every namespace enforced (or only the namespaces enforced
//! now, with `--respect-namespace-labels`). It prints one row per
//! (workload, image, policy) and a summary, and exits 1 when anything
//! would be denied.
//!
//! It reads the cluster through `cluster::read_inventory` and never writes
//! to it; it writes no audit log.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::check::{offline_evaluator, Listed};
use crate::cli::{CheckArgs, OutputFormat};
use crate::decision::{DecisionSettings, FindingDecision, ServerMode};
use crate::policy::{LoadedPolicy, PolicyMode};
use crate::service::{Evaluation, Evaluator};

/// One (workload, image, policy) row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The workload's namespace.
    pub namespace: String,
    /// `Kind/name`.
    pub workload: String,
    /// The image as written.
    pub image: String,
    /// The policy, or `-` when none matched.
    pub policy: String,
    /// `pass`, `deny`, `warn`, or `no policy` (admitted: no policy matched).
    pub verdict: String,
    /// Why, for anything but a pass.
    pub reason: String,
}

/// The what-if's answer.
#[derive(Debug, Clone, Serialize)]
pub struct WhatIf {
    /// Every row, by namespace and workload.
    pub rows: Vec<Row>,
    /// Workloads evaluated.
    pub workloads: usize,
    /// Workloads that would be denied.
    pub denied: usize,
    /// The namespaces those are in.
    pub denied_namespaces: Vec<String>,
    /// `would deny 3 of 41 workloads in 2 namespaces`.
    pub summary: String,
}

/// The rows of one workload's evaluation.
pub fn rows_of(namespace: &str, workload: &str, eval: &Evaluation) -> Vec<Row> {
    let row = |image: &str, policy: &str, verdict: &str, reason: String| Row {
        namespace: namespace.to_string(),
        workload: workload.to_string(),
        image: image.to_string(),
        policy: policy.to_string(),
        verdict: verdict.to_string(),
        reason,
    };
    let mut rows = Vec::new();
    for report in &eval.reports {
        let image = report.image.reference.as_str();
        // Findings not tied to a policy: no policy matched (and the
        // no-match rule denies), or the reference is unreadable.
        for f in eval
            .verdict
            .findings
            .iter()
            .filter(|f| f.policy.is_none() && f.image == image && f.field == report.image.field)
        {
            let verdict = match f.decision {
                FindingDecision::Denied => "deny",
                FindingDecision::Warned | FindingDecision::Audited => "warn",
            };
            rows.push(row(image, "-", verdict, f.reasons.join("; ")));
        }
        if report.policies.is_empty()
            && report.invalid_reference.is_none()
            && !rows.iter().any(|r| r.image == image && r.policy == "-")
        {
            rows.push(row(image, "-", "no policy", String::new()));
        }
        for p in &report.policies {
            let verdict = if p.passed {
                "pass"
            } else if p.mode == PolicyMode::Enforce {
                "deny"
            } else {
                "warn"
            };
            let reason = if p.passed {
                String::new()
            } else {
                p.reasons().join("; ")
            };
            rows.push(row(image, &p.policy, verdict, reason));
        }
    }
    rows
}

/// Evaluates `objects` (workload JSON) with `evaluator`, every namespace
/// in `namespaces` (all, when `None`) treated as enforced.
pub async fn what_if(
    evaluator: &Evaluator,
    objects: &[Listed],
    namespaces: Option<&BTreeSet<String>>,
) -> WhatIf {
    let decision = DecisionSettings {
        server_mode: ServerMode::Enforce,
        no_match: evaluator.settings.decision.no_match,
    };
    let mut rows = Vec::new();
    let (mut workloads, mut denied) = (0, 0);
    let mut denied_namespaces = BTreeSet::new();
    for obj in objects {
        let ns = obj.namespace();
        if namespaces.is_some_and(|n| !n.contains(ns)) {
            continue;
        }
        let w = match obj {
            Listed::Read(w) => (**w).clone(),
            Listed::Unreadable { reason: e, .. } => {
                // An object sigil cannot read would be denied at admission.
                workloads += 1;
                denied += 1;
                denied_namespaces.insert(ns.to_string());
                rows.push(Row {
                    namespace: ns.to_string(),
                    workload: String::new(),
                    image: String::new(),
                    policy: "-".into(),
                    verdict: "deny".into(),
                    reason: e.clone(),
                });
                continue;
            }
        };
        let namespace = w.context.namespace.clone();
        let name = format!("{}/{}", w.context.kind, w.context.name);
        let eval = evaluator
            .evaluate_with(
                &w.context,
                w.images,
                &decision,
                evaluator.settings.require_digest,
            )
            .await;
        workloads += 1;
        if !eval.verdict.allowed {
            denied += 1;
            denied_namespaces.insert(namespace.clone());
        }
        rows.extend(rows_of(&namespace, &name, &eval));
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.workload, &a.image, &a.policy).cmp(&(
            &b.namespace,
            &b.workload,
            &b.image,
            &b.policy,
        ))
    });
    let summary = format!(
        "would deny {denied} of {workloads} workloads in {} namespace{}",
        denied_namespaces.len(),
        if denied_namespaces.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    WhatIf {
        rows,
        workloads,
        denied,
        denied_namespaces: denied_namespaces.into_iter().collect(),
        summary,
    }
}

/// The table for people.
pub fn render_table(w: &WhatIf) -> String {
    let header = [
        "NAMESPACE",
        "WORKLOAD",
        "IMAGE",
        "POLICY",
        "VERDICT",
        "REASON",
    ];
    let cells: Vec<[&str; 6]> = w
        .rows
        .iter()
        .map(|r| {
            [
                r.namespace.as_str(),
                r.workload.as_str(),
                r.image.as_str(),
                r.policy.as_str(),
                r.verdict.as_str(),
                r.reason.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (i, c) in row.iter().enumerate().take(5) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |row: [&str; 6]| {
        let mut s = String::new();
        for (i, c) in row.iter().enumerate() {
            if i < 5 {
                s.push_str(&format!("{c:<width$}  ", width = widths[i]));
            } else {
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for row in cells {
        out.push_str(&line(row));
    }
    out.push_str(&w.summary);
    out.push('\n');
    out
}

/// `sigil check --cluster`.
pub async fn main(args: CheckArgs) -> i32 {
    match run(&args).await {
        Ok(w) => {
            match args.output {
                OutputFormat::Text => print!("{}", render_table(&w)),
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&w).unwrap_or_default())
                }
            }
            i32::from(w.denied > 0)
        }
        Err(e) => {
            eprintln!("sigil check --cluster: {e:#}");
            2
        }
    }
}

async fn run(args: &CheckArgs) -> anyhow::Result<WhatIf> {
    let evaluator = offline_evaluator(args).await?;
    let client = crate::cluster::client(args.kubeconfig.as_deref()).await?;
    let inventory = crate::cluster::read_inventory(
        &client,
        args.namespace.as_deref(),
        &args.sigil_namespace,
        &args.verify.github_api_hosts,
    )
    .await?;
    // The given policies replace the cluster's of the same name.
    let given: BTreeSet<String> = evaluator
        .store
        .current()
        .policies()
        .iter()
        .map(|p: &LoadedPolicy| p.name().to_string())
        .collect();
    let cluster_policies: Vec<_> = inventory
        .policies
        .into_iter()
        .filter(|d| !given.contains(&d.name))
        .collect();
    evaluator
        .store
        .replace_source(crate::cluster::SOURCE, &cluster_policies);
    let namespaces = args.respect_namespace_labels.then_some(&inventory.enforced);
    Ok(what_if(&evaluator, &inventory.workloads, namespaces).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::NullAuditSink;
    use crate::decision::NoMatchAction;
    use crate::policy::PolicyStore;
    use crate::registry::{RegistryClient, RegistryOptions};
    use crate::service::EvaluatorSettings;
    use crate::verify::{Verifier, VerifierSettings};
    use serde_json::json;
    use std::sync::Arc;

    fn evaluator() -> Evaluator {
        crate::install_crypto_provider();
        Evaluator::new(
            Arc::new(PolicyStore::new()),
            Arc::new(Verifier::new(
                Arc::new(RegistryClient::new(&RegistryOptions::default()).unwrap()),
                &VerifierSettings::default(),
            )),
            EvaluatorSettings {
                decision: DecisionSettings {
                    server_mode: ServerMode::Enforce,
                    no_match: NoMatchAction::Deny,
                },
                verify_timeout: std::time::Duration::from_secs(1),
                require_digest: true,
                ..Default::default()
            },
            Arc::new(NullAuditSink),
        )
    }

    /// An object sigil cannot read would be denied at admission: the
    /// what-if counts it as denied, with the reason; namespaces outside the
    /// given set are not evaluated at all.
    #[tokio::test]
    async fn an_unreadable_workload_would_be_denied_and_other_namespaces_are_skipped() {
        let ev = evaluator();
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "shop"},
                   "spec": {"containers": "nope"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere", "namespace": "lab"},
                   "spec": {"containers": [{"name": "a", "image": "r.example/app:v1"}]}}),
        ];
        let objects: Vec<Listed> = objects.iter().filter_map(Listed::of_value).collect();
        let w = what_if(&ev, &objects, None).await;
        assert_eq!(w.denied, 2, "{:?}", w.rows);
        let bad = w.rows.iter().find(|r| r.namespace == "shop").unwrap();
        assert_eq!(bad.verdict, "deny");
        assert!(
            bad.reason.contains("cannot read the pod spec"),
            "{}",
            bad.reason
        );
        // No policy matches the other image, and the no-match rule denies it.
        let other = w.rows.iter().find(|r| r.namespace == "lab").unwrap();
        assert_eq!(
            (other.policy.as_str(), other.verdict.as_str()),
            ("-", "deny")
        );
        assert_eq!(w.summary, "would deny 2 of 2 workloads in 2 namespaces");

        let only_lab: BTreeSet<String> = ["lab".to_string()].into();
        // The unreadable object is in a namespace outside the set: skipped.
        let w = what_if(&ev, &objects, Some(&only_lab)).await;
        assert_eq!((w.workloads, w.denied), (1, 1), "{:?}", w.rows);
        let none: BTreeSet<String> = BTreeSet::new();
        let w = what_if(&ev, &objects[1..], Some(&none)).await;
        assert_eq!((w.workloads, w.rows.len()), (0, 0));
    }
}
