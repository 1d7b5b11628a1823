//! `sigil check`: evaluates manifests or image references offline through the
//! same pipeline as the webhook and prints the decision.

use serde::Serialize;
use serde_json::Value;

use crate::audit::RequestContext;
use crate::cli::{CheckArgs, OutputFormat};
use crate::service::Evaluator;
use crate::verify::PolicyOutcome;
use crate::workload::{ImageUse, PodSpecAt};

/// One workload to evaluate.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Who/what, as the webhook would see it.
    pub context: RequestContext,
    /// Its images.
    pub images: Vec<ImageUse>,
    /// Given with `--image`: tags are resolved (like policy-controller's
    /// tester) and the output says the webhook would need the digest.
    /// Manifests (`-f`) get exactly the webhook's verdict.
    pub from_image_flag: bool,
    /// The object as written (manifests only): what an
    /// `ImageValidatingPolicy`'s CEL sees as `object`.
    pub object: Option<std::sync::Arc<Value>>,
}

/// One image in the JSON output.
#[derive(Debug, Serialize)]
pub struct ImageResult {
    /// `Kind namespace/name`.
    pub workload: String,
    /// Field path.
    pub field: String,
    /// Image as written.
    pub image: String,
    /// Digest verified.
    pub digest: Option<String>,
    /// Each matching policy's outcome.
    pub policies: Vec<PolicyOutcome>,
}

/// The whole result.
#[derive(Debug, Serialize)]
pub struct CheckResult {
    /// Every workload admitted.
    pub allowed: bool,
    /// Deny messages (one line per failing image).
    pub denied: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Per-image results.
    pub images: Vec<ImageResult>,
}

/// Reads workloads from manifest texts and image flags.
pub fn workloads(
    texts: &[(String, String)],
    images: &[String],
    namespace: &str,
) -> Result<Vec<Workload>, String> {
    let mut out = Vec::new();
    for (path, text) in texts {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(text).map_err(|e| format!("{path}: {e}"))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            if let Some(mut w) = workload_of(&doc, namespace).map_err(|e| format!("{path}: {e}"))? {
                w.object = Some(std::sync::Arc::new(doc));
                out.push(w);
            }
        }
    }
    for (i, image) in images.iter().enumerate() {
        out.push(Workload {
            context: ctx("Pod", namespace, &format!("image-{i}")),
            images: vec![ImageUse {
                field: "spec.containers[0].image".into(),
                reference: image.clone(),
                pointer: "/spec/containers/0/image".into(),
            }],
            from_image_flag: true,
            object: None,
        });
    }
    Ok(out)
}

/// The workload one object is (`None` for kinds that run no pods), as
/// the webhook would see it created; `namespace` when it names none.
pub fn workload_of(doc: &Value, namespace: &str) -> Result<Option<Workload>, String> {
    let text = |pointer: &str| doc.pointer(pointer).and_then(Value::as_str);
    let kind = text("/kind").unwrap_or("").to_string();
    let name = text("/metadata/name").unwrap_or("").to_string();
    let api_version = text("/apiVersion").unwrap_or("v1").to_string();
    let read = crate::workload::read_value(doc, &kind, PodSpecAt::of_kind(&kind))
        .and_then(crate::workload::Workload::checked)
        .map_err(|e| format!("{kind} {name}: {e}"))?;
    Ok(check_workload(read, &kind, &api_version, namespace))
}

/// A workload as listed from a cluster: what sigil read of it, or why it
/// could not read it (at admission it would be denied for that).
#[derive(Debug, Clone)]
pub enum Listed {
    /// Read.
    Read(Box<Workload>),
    /// Not readable (malformed, or over a limit).
    Unreadable {
        /// Its namespace.
        namespace: String,
        /// `Kind name: reason`.
        reason: String,
    },
}

impl Listed {
    /// What `sigil check` reads of an object the cluster listed (`kind`
    /// and `api_version` are the list's); `None` for kinds that run no
    /// pods.
    pub fn of(
        read: Result<crate::workload::Workload, crate::workload::WorkloadError>,
        kind: &str,
        api_version: &str,
    ) -> Option<Listed> {
        match read.and_then(crate::workload::Workload::checked) {
            Ok(w) => {
                check_workload(w, kind, api_version, "default").map(|w| Listed::Read(Box::new(w)))
            }
            Err(e) => Some(Listed::Unreadable {
                namespace: "default".into(),
                reason: format!("{kind}: {e}"),
            }),
        }
    }

    /// [`Listed::of`] for an object as JSON (carrying its own kind).
    pub fn of_value(doc: &Value) -> Option<Listed> {
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        match workload_of(doc, "default") {
            Ok(w) => w.map(|w| Listed::Read(Box::new(w))),
            Err(reason) => Some(Listed::Unreadable {
                namespace: ns.to_string(),
                reason,
            }),
        }
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        match self {
            Listed::Read(w) => &w.context.namespace,
            Listed::Unreadable { namespace, .. } => namespace,
        }
    }
}

/// The workload an object read from the cluster or a file is (`None` for
/// kinds that run no pods): its images, labels, pull secrets and service
/// account, as the webhook would see it created. `kind` and `api_version`
/// are the list's when the object does not carry them.
pub fn check_workload(
    read: crate::workload::Workload,
    kind: &str,
    api_version: &str,
    namespace: &str,
) -> Option<Workload> {
    let name = read.meta.name.clone().unwrap_or_default();
    let Some(pod) = read.pod else {
        tracing::info!(kind, name, "skipping: this kind runs no pods");
        return None;
    };
    let ns = read.meta.namespace.as_deref().unwrap_or(namespace);
    let mut context = ctx(kind, ns, &name);
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    context.resource.group = group.to_string();
    context.resource.version = version.to_string();
    context.resource.labels = read.meta.labels;
    context.service_account = Some(pod.service_account_or_default());
    context.pull_secrets = pod.pull_secrets;
    Some(Workload {
        context,
        images: pod.images,
        from_image_flag: false,
        object: None,
    })
}

fn ctx(kind: &str, namespace: &str, name: &str) -> RequestContext {
    RequestContext {
        uid: "sigil-check".into(),
        operation: "CREATE".into(),
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
        user: "sigil-check".into(),
        pull_secrets: Vec::new(),
        service_account: None,
        dry_run: false,
        resource: crate::policy::ResourceRef {
            group: String::new(),
            version: "v1".into(),
            resource: resource_plural(kind),
            labels: Default::default(),
        },
    }
}

/// The resource (plural) of a workload kind.
fn resource_plural(kind: &str) -> String {
    match kind {
        "Pod" => "pods",
        "Deployment" => "deployments",
        "ReplicaSet" => "replicasets",
        "StatefulSet" => "statefulsets",
        "DaemonSet" => "daemonsets",
        "Job" => "jobs",
        "CronJob" => "cronjobs",
        "ReplicationController" => "replicationcontrollers",
        other => return other.to_lowercase(),
    }
    .to_string()
}

/// Evaluates every workload.
pub async fn run_check(evaluator: &Evaluator, workloads: Vec<Workload>) -> CheckResult {
    let mut result = CheckResult {
        allowed: true,
        denied: Vec::new(),
        warnings: Vec::new(),
        images: Vec::new(),
    };
    for w in workloads {
        let label = format!(
            "{} {}/{}",
            w.context.kind, w.context.namespace, w.context.name
        );
        let require_digest = evaluator.settings.require_digest && !w.from_image_flag;
        let input = w.object.as_ref().map(|o| kyverno_input(&w.context, o));
        let eval = evaluator
            .evaluate_with_kyverno_input(
                &w.context,
                w.images,
                &evaluator.settings.decision,
                require_digest,
                input,
            )
            .await;
        if w.from_image_flag && evaluator.settings.require_digest {
            for r in &eval.reports {
                if let (Some(digest), false) = (&r.digest, r.policies.is_empty()) {
                    let pinned = crate::image::ImageRef::parse(&r.image.reference)
                        .is_ok_and(|i| i.digest.is_some());
                    if !pinned {
                        result.warnings.push(format!(
                            "{label}: {} was resolved to {digest} for this check; the webhook admits only images pinned to a digest: write {}@{digest} (or let the mutating webhook pin it)",
                            r.image.reference, r.image.reference
                        ));
                    }
                }
            }
        }
        if !eval.verdict.allowed {
            result.allowed = false;
        }
        if let Some(m) = eval.verdict.message {
            result
                .denied
                .extend(m.lines().map(|l| format!("{label}: {l}")));
        }
        result.warnings.extend(
            eval.verdict
                .warnings
                .into_iter()
                .map(|l| format!("{label}: {l}")),
        );
        for r in eval.reports {
            result.images.push(ImageResult {
                workload: label.clone(),
                field: r.image.field,
                image: r.image.reference,
                digest: r.digest,
                policies: r
                    .policies
                    .into_iter()
                    .map(std::sync::Arc::unwrap_or_clone)
                    .collect(),
            });
        }
    }
    result
}

/// What an `ImageValidatingPolicy` sees of a manifest: a CREATE of it,
/// by `sigil-check`.
fn kyverno_input(ctx: &RequestContext, object: &Value) -> std::sync::Arc<crate::kyverno::Input> {
    let r = &ctx.resource;
    let kind = object.get("kind").cloned().unwrap_or_default();
    std::sync::Arc::new(crate::kyverno::Input {
        request: serde_json::json!({
            "uid": ctx.uid, "operation": ctx.operation, "namespace": ctx.namespace, "name": ctx.name,
            "kind": {"group": r.group, "version": r.version, "kind": kind},
            "resource": {"group": r.group, "version": r.version, "resource": r.resource},
            "userInfo": {"username": ctx.user},
            "dryRun": true,
        }),
        object: object.clone(),
        ..Default::default()
    })
}

/// The pipeline `check` runs: `serve`'s, with the policy directory's
/// trust roots and remote programs fetched now (`build` does not touch
/// the network) and no audit log.
pub async fn offline_evaluator(args: &CheckArgs) -> anyhow::Result<Evaluator> {
    let evaluator = args
        .verify
        .build(std::sync::Arc::new(crate::audit::NullAuditSink))?;
    if let Some(dir) = &args.verify.policy_dir {
        evaluator
            .verifier
            .trust()
            .replace_all(crate::policy::files::load_trust_roots_fetching(dir).await);
        let remote = crate::policy::sources::RemotePrograms::default();
        if let Ok(defs) = crate::policy::files::load_dir_fetching(dir, &remote).await {
            evaluator
                .store
                .replace_source(crate::policy::files::SOURCE, &defs);
        }
    }
    Ok(evaluator)
}

/// Renders the human-readable form.
pub fn render_text(r: &CheckResult) -> String {
    let mut s = String::new();
    for i in &r.images {
        s.push_str(&format!("{} {} {}\n", i.workload, i.field, i.image));
        s.push_str(&format!(
            "  digest: {}\n",
            i.digest.as_deref().unwrap_or("unresolved")
        ));
        if i.policies.is_empty() {
            s.push_str("  no matching policy\n");
        }
        for p in &i.policies {
            s.push_str(&format!(
                "  policy {} ({:?}): {}\n",
                p.policy,
                p.mode,
                if p.passed { "pass" } else { "FAIL" }
            ));
            if let Some(reason) = p.reason() {
                s.push_str(&format!("    {reason}\n"));
            }
            for a in &p.authorities {
                s.push_str(&format!(
                    "    {} {}: {}\n",
                    if a.passed() { "✓" } else { "✗" },
                    a.name,
                    a.reason()
                ));
                if let Some(n) = a.notation() {
                    let checks: Vec<String> = n
                        .checks
                        .iter()
                        .map(|(check, result)| {
                            format!(
                                "{} {}",
                                check.name(),
                                serde_json::to_value(result)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    s.push_str(&format!(
                        "      notation level {}: {}\n",
                        n.level.name(),
                        checks.join(", ")
                    ));
                    for logged in &n.logged {
                        s.push_str(&format!("      logged: {logged}\n"));
                    }
                }
            }
        }
    }
    for w in &r.warnings {
        s.push_str(&format!("WARNING: {w}\n"));
    }
    for d in &r.denied {
        s.push_str(&format!("DENIED: {d}\n"));
    }
    s.push_str(if r.allowed {
        "result: admitted\n"
    } else {
        "result: denied\n"
    });
    s
}

/// Runs `sigil check`; returns the process exit code (0 admitted, 1 denied, 2 error).
pub async fn main(args: CheckArgs) -> i32 {
    if args.files.is_empty() && args.images.is_empty() {
        eprintln!("sigil check: give at least one -f MANIFEST or --image REF, or --cluster");
        return 2;
    }
    let evaluator = match offline_evaluator(&args).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sigil check: {e}");
            return 2;
        }
    };
    let mut texts = Vec::new();
    for f in &args.files {
        match std::fs::read_to_string(f) {
            Ok(t) => texts.push((f.display().to_string(), t)),
            Err(e) => {
                eprintln!("sigil check: {}: {e}", f.display());
                return 2;
            }
        }
    }
    let namespace = args.namespace.as_deref().unwrap_or("default");
    let ws = match workloads(&texts, &args.images, namespace) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("sigil check: {e}");
            return 2;
        }
    };
    let result = run_check(&evaluator, ws).await;
    match args.output {
        OutputFormat::Text => print!("{}", render_text(&result)),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        ),
    }
    if result.allowed {
        0
    } else {
        1
    }
}
