//! The background audit: what already runs, re-checked. Every
//! `--audit-interval`, and at once when the policies change, it lists the
//! workloads of enforced and audited namespaces page by page, evaluates
//! each through the admission pipeline and its caches (at most
//! `--audit-concurrency` at once, without audit records or Events), and
//! writes:
//! - one `PolicyReport` (wgpolicyk8s.io/v1alpha2) per workload, named
//!   after its UID and owned by it (garbage-collected with it): one result
//!   per (image, policy), and the summary;
//! - on each ClusterImagePolicy, `status.workloads` {pass, fail, error}
//!   and `status.lastAuditTime`;
//! - metrics: the last run's time and duration, and violations by policy.
//!
//! It writes only what changed: each report carries a hash of its content
//! (timestamps left out) in the annotation `sigil.dev/report-hash`; the
//! run lists the hashes of the reports it wrote before (metadata only,
//! page by page) and skips a report whose hash is unchanged. A policy's
//! status is written only when its counts differ from those it holds, so
//! `lastAuditTime` is the time of the audit that last changed them (the
//! metrics say when the audit last ran). An unchanged cluster costs the
//! apiserver reads only.
//!
//! With several replicas, only the holder of the `sigil-leader`
//! Lease audits (`lease`).
//!
//! It decides nothing itself: verdicts are the pipeline's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::inventory::{controlled_by_a_workload, WORKLOAD_KINDS};
use super::namespaces::label_mode;
use super::pages::{PageError, WorkloadPages};
use crate::check::Listed;
use crate::decision::{DecisionSettings, ServerMode};
use crate::metrics;
use crate::policy::ClusterImagePolicy;
use crate::service::{Evaluation, Evaluator, NamespaceMode};

/// Objects listed per request.
const PAGE: u32 = 250;
/// The field manager of what the audit writes.
const MANAGER: &str = "sigil-background-audit";
/// How often the policy set is compared with the last audited one.
const POLICY_CHECK: Duration = Duration::from_secs(2);

/// Settings of the background audit.
#[derive(Debug, Clone, Copy)]
pub struct BackgroundAuditSettings {
    /// Time between runs.
    pub interval: Duration,
    /// Workloads evaluated at once.
    pub concurrency: usize,
}

/// Per policy: workloads by result, from the reports written.
type Counts = BTreeMap<String, [u64; 3]>;

/// The annotation holding a report's content hash.
pub const REPORT_HASH: &str = "sigil.dev/report-hash";

/// (namespace, name) → content hash of the PolicyReports sigil wrote.
type WrittenReports = std::collections::HashMap<(String, String), String>;

fn policy_report_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    )
}

/// The hashes of the PolicyReports sigil wrote, listed as metadata only,
/// page by page. Without the PolicyReport CRD, none.
async fn written_reports(client: &Client) -> Result<WrittenReports, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &policy_report_resource());
    let mut out = WrittenReports::new();
    let mut params = ListParams::default()
        .labels("app.kubernetes.io/managed-by=sigil")
        .limit(500);
    loop {
        let page = match api.list_metadata(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(out),
            Err(e) => return Err(e),
        };
        for item in page.items {
            let hash = item.annotations().get(REPORT_HASH).cloned();
            if let (Some(ns), Some(hash)) = (item.metadata.namespace.clone(), hash) {
                out.insert((ns, item.name_any()), hash);
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Runs the background audit until the process stops.
pub async fn background_audit(
    client: Client,
    evaluator: Arc<Evaluator>,
    settings: BackgroundAuditSettings,
    leadership: super::lease::Leadership,
) {
    let mut audited_policies = String::new();
    let mut last_run: Option<Instant> = None;
    loop {
        if !leadership.is_leader() {
            // A new leader audits at once.
            last_run = None;
            tokio::time::sleep(POLICY_CHECK).await;
            continue;
        }
        let policies = policy_fingerprints(&evaluator);
        let due = last_run.is_none_or(|t| t.elapsed() >= settings.interval);
        if due || policies != audited_policies {
            let started = Instant::now();
            match audit_once(&client, &evaluator, settings.concurrency).await {
                Ok(counts) => {
                    let took = started.elapsed();
                    metrics::global()
                        .background_audit(took, counts.iter().map(|(p, c)| (p.as_str(), c[1])));
                    write_policy_status(&client, &counts).await;
                    tracing::info!(
                        took_ms = took.as_millis() as u64,
                        "background audit finished"
                    );
                    audited_policies = policies;
                    last_run = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "background audit failed; retrying");
                    last_run = Some(Instant::now() - settings.interval + Duration::from_secs(10));
                }
            }
        }
        tokio::time::sleep(POLICY_CHECK).await;
    }
}

/// What identifies the policy set in force: names and fingerprints.
fn policy_fingerprints(evaluator: &Evaluator) -> String {
    let set = evaluator.store.current();
    let mut parts: Vec<String> = set
        .policies()
        .iter()
        .map(|p| match p {
            crate::policy::LoadedPolicy::Valid(c) => format!("{}={}", c.name, c.fingerprint),
            crate::policy::LoadedPolicy::Invalid(i) => format!("{}=invalid:{}", i.name, i.error),
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// One pass over every workload of enforced and audited namespaces.
pub async fn audit_once(
    client: &Client,
    evaluator: &Arc<Evaluator>,
    concurrency: usize,
) -> Result<Counts, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let included: BTreeSet<String> = namespaces
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|ns| label_mode(ns) != NamespaceMode::Skip)
        .map(|ns| ns.name_any())
        .collect();
    let mut counts = Counts::new();
    let written = written_reports(client).await?;
    let mut unchanged = 0usize;
    for (group, version, kind) in WORKLOAD_KINDS {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        // One page in memory at a time (its bytes bounded), `concurrency`
        // evaluations at once.
        let mut pages = WorkloadPages::new(client.clone(), &resource, kind, None, PAGE);
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if e.not_served() => break,
                Err(PageError::Kube(e)) => return Err(e),
                Err(e) => return Err(kube::Error::Service(e.to_string().into())),
            };
            let results: Vec<Option<(ReportTarget, Evaluation)>> =
                futures::stream::iter(page.into_iter().filter(|o| {
                    !controlled_by_a_workload(o)
                        && o.meta
                            .namespace
                            .as_ref()
                            .is_some_and(|n| included.contains(n))
                }))
                .map(|read| {
                    let api_version = resource.api_version.clone();
                    async move {
                        let target = ReportTarget {
                            api_version: api_version.clone(),
                            kind: kind.to_string(),
                            namespace: read.meta.namespace.clone()?,
                            name: read.meta.name.clone()?,
                            uid: read.meta.uid.clone()?,
                        };
                        let w = match Listed::of(Ok(read), kind, &api_version)? {
                            Listed::Read(w) => w,
                            Listed::Unreadable { reason, .. } => {
                                tracing::warn!(namespace = %target.namespace, name = %target.name, %reason, "background audit cannot read a workload; skipped");
                                return None;
                            }
                        };
                        let decision = DecisionSettings {
                            server_mode: ServerMode::Enforce,
                            no_match: evaluator.settings.decision.no_match,
                        };
                        let eval = evaluator
                            .evaluate_quietly(
                                &w.context,
                                w.images,
                                &decision,
                                evaluator.settings.require_digest,
                            )
                            .await;
                        Some((target, eval))
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            let mut changed = Vec::new();
            for (target, eval) in results.into_iter().flatten() {
                count(&mut counts, &eval);
                let hash = report_hash(&target, &eval);
                let key = (target.namespace.clone(), target.uid.clone());
                if written.get(&key) == Some(&hash) {
                    unchanged += 1;
                } else {
                    // Built only for what is written: the unchanged path
                    // (every report, in a quiet cluster) makes only the hash.
                    let report = report_json(&target, &eval, &jiff::Timestamp::now());
                    changed.push((target, with_hash(report, &hash)));
                }
            }
            futures::stream::iter(changed)
                .for_each_concurrent(concurrency.max(1), |(target, report)| async move {
                    if let Err(e) = write_report(client, &target, &report).await {
                        tracing::warn!(error = %e, "cannot write a PolicyReport");
                    }
                })
                .await;
        }
    }
    tracing::debug!(unchanged, "PolicyReports left as they were");
    Ok(counts)
}

/// The hash of a report's content, timestamps left out: equal for the
/// same results about the same workload.
pub fn report_hash(target: &ReportTarget, eval: &Evaluation) -> String {
    use sha2::Digest as _;
    let timeless = report_json(target, eval, &jiff::Timestamp::UNIX_EPOCH);
    let bytes = serde_json::to_vec(&timeless).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&bytes)[..16])
}

fn with_hash(mut report: Value, hash: &str) -> Value {
    report["metadata"]["annotations"] = json!({ REPORT_HASH: hash });
    report
}

/// Adds one workload to each of its policies' counts, by its worst image.
fn count(counts: &mut Counts, eval: &Evaluation) {
    let mut worst: BTreeMap<&str, usize> = BTreeMap::new();
    for p in eval.reports.iter().flat_map(|r| r.policies.iter()) {
        let rank = if p.passed {
            0
        } else if p.is_transient() {
            2
        } else {
            1
        };
        let slot = worst.entry(p.policy.as_str()).or_insert(0);
        // fail (1) over error (2) over pass (0).
        let order = |r: usize| [0, 2, 1][r];
        if order(rank) > order(*slot) {
            *slot = rank;
        }
    }
    for (policy, rank) in worst {
        counts.entry(policy.to_string()).or_default()[rank] += 1;
    }
}

/// The workload a PolicyReport is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTarget {
    /// Its apiVersion.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID (the report's name, and its owner).
    pub uid: String,
}

/// The PolicyReport of one workload.
pub fn report_json(target: &ReportTarget, eval: &Evaluation, now: &jiff::Timestamp) -> Value {
    let ReportTarget {
        api_version,
        kind,
        namespace,
        name,
        uid,
    } = target;
    let mut results = Vec::new();
    let mut summary = BTreeMap::from([
        ("pass", 0u64),
        ("fail", 0),
        ("warn", 0),
        ("error", 0),
        ("skip", 0),
    ]);
    for r in &eval.reports {
        for p in &r.policies {
            let result = if p.passed {
                "pass"
            } else if p.is_transient() {
                "error"
            } else {
                "fail"
            };
            *summary.entry(result).or_default() += 1;
            let message = if p.passed {
                format!("image {} verified", r.image.reference)
            } else {
                p.reasons().join("; ")
            };
            results.push(json!({
                "source": "sigil",
                "policy": p.policy,
                "result": result,
                "message": message,
                "properties": {
                    "image": r.image.reference,
                    "digest": r.digest.clone().unwrap_or_default(),
                    "field": r.image.field,
                },
                "timestamp": {"seconds": now.as_second(), "nanos": 0},
            }));
        }
    }
    json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": uid,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "sigil"},
            "ownerReferences": [{
                "apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
            }],
        },
        "scope": {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name, "uid": uid},
        "summary": summary,
        "results": results,
    })
}

async fn write_report(
    client: &Client,
    target: &ReportTarget,
    report: &Value,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &target.namespace, &policy_report_resource());
    api.patch(
        &target.uid,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(report),
    )
    .await
    .map(|_| ())
}

/// Writes `status.workloads` and `status.lastAuditTime` on every policy in
/// the cluster whose counts differ from those it holds (zeros for one that
/// matched nothing).
async fn write_policy_status(client: &Client, counts: &Counts) {
    // Untyped: a policy sigil cannot read still gets its counts (zeros).
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<ClusterImagePolicy>(&()),
    );
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    let now = crate::audit::now_rfc3339();
    for cip in list.items {
        let name = cip.name_any();
        let [pass, fail, error] = counts.get(&name).copied().unwrap_or_default();
        let workloads = json!({"pass": pass, "fail": fail, "error": error});
        let held = cip.data.get("status").and_then(|s| s.get("workloads"));
        let audited = cip
            .data
            .get("status")
            .and_then(|s| s.get("lastAuditTime"))
            .is_some();
        if held == Some(&workloads) && audited {
            continue;
        }
        let status = json!({"status": {
            "workloads": {"pass": pass, "fail": fail, "error": error},
            "lastAuditTime": now,
        }});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            tracing::warn!(policy = %name, error = %e, "cannot write the audit status");
        }
    }
}
