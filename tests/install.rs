//! The chart installed on the real kube-apiserver (deploy/sigil.yaml, the
//! chart's rendered defaults, server-side applied), and sigil run as the
//! chart's Deployment runs it: the same args and env, under a token of the
//! chart's ServiceAccount (TokenRequest API), so its RBAC is what it has.
//!
//! Routing, since there is no kube-proxy or controller-manager here: the
//! apiserver runs with `--enable-aggregator-routing`, so it reaches a webhook
//! Service through the Service's Endpoints, which this test writes (this
//! host's address, each replica's port) as the endpoints controller would
//! from ready Pods. The webhook configurations are exactly the chart's
//! (a Service reference, no URL override); the apiserver checks the TLS name
//! `sigil.sigil-system.svc` against the caBundle sigil injected.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::kube::{namespace, ok, text, within, KubeCluster};
use common::static_policy;
use sigil_testkit::free_port;

const NS: &str = "sigil-system";
const SECRET: &str = "sigil-webhook-tls";

/// One sigil process run as a replica of the chart's Deployment.
struct Replica {
    child: Child,
    port: u16,
    metrics: u16,
    name: String,
    log: PathBuf,
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This host's first global IPv4 address: Endpoints may not hold loopback.
fn host_address() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            Some(words.next()?.split('/').next()?.to_string())
        })
        .expect("a global IPv4 address on this host (Endpoints may not be loopback)")
}

fn kubectl_json(c: &KubeCluster, args: &[&str]) -> serde_json::Value {
    let out = c.kubectl(args);
    assert!(ok(&out), "kubectl {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The CRDs, then deploy/sigil.yaml, server-side applied.
fn install(c: &KubeCluster) {
    let root = env!("CARGO_MANIFEST_DIR");
    for entry in std::fs::read_dir(format!("{root}/crds")).unwrap() {
        let path = entry.unwrap().path();
        // crds/kyverno/ (Kyverno's kinds) is for clusters without Kyverno,
        // and deploy/sigil.yaml does not carry it: this install has none.
        if path.is_dir() {
            continue;
        }
        let yaml = std::fs::read_to_string(path).unwrap();
        let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &yaml);
        assert!(ok(&out), "{}", text(&out));
    }
    assert!(ok(&c.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=120s",
        "crd/clusterimagepolicies.policy.sigstore.dev",
        "crd/trustroots.policy.sigstore.dev",
        "crd/policyreports.wgpolicyk8s.io",
    ])));
    // Helm picks the PodDisruptionBudget's apiVersion from the cluster;
    // rendered offline it is policy/v1, which this v1.20 apiserver predates.
    let manifests = std::fs::read_to_string(format!("{root}/deploy/sigil.yaml"))
        .unwrap()
        .replace(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget",
            "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget",
        );
    assert!(manifests.contains("policy/v1beta1"));
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifests);
    assert!(ok(&out), "{}", text(&out));
    let applied = text(&out);
    for object in [
        "namespace/sigil-system",
        "deployment.apps/sigil",
        "service/sigil",
        "service/sigil-metrics",
        "serviceaccount/sigil",
        "clusterrole.rbac.authorization.k8s.io/sigil",
        "role.rbac.authorization.k8s.io/sigil",
        "poddisruptionbudget.policy/sigil",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/sigil",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/sigil",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/sigil-policies",
    ] {
        assert!(applied.contains(object), "{object} not applied: {applied}");
    }
}

/// A kubeconfig holding a TokenRequest token of ServiceAccount sigil.
fn service_account_kubeconfig(c: &KubeCluster) -> PathBuf {
    let out = c.kubectl_stdin(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/{NS}/serviceaccounts/sigil/token"),
            "-f",
            "-",
        ],
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}"#,
    );
    assert!(ok(&out), "TokenRequest: {}", text(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = answer["status"]["token"].as_str().unwrap().to_string();
    let path = c.dir.path().join("sigil-sa.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: sigil\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: sigil\ncurrent-context: test\n",
            c.url
        ),
    )
    .unwrap();
    path
}

/// The args of the Deployment as the apiserver holds it.
fn deployment_args(c: &KubeCluster) -> Vec<String> {
    let d = kubectl_json(c, &["-n", NS, "get", "deployment", "sigil", "-o", "json"]);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["POD_NAMESPACE", "POD_NAME"], "the env this test sets");
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Runs sigil with the Deployment's `args`: the ports are this test's, and
/// each `(flag, value)` of `set` replaces that flag's value (or is added).
fn start_replica(
    c: &KubeCluster,
    args: &[String],
    kubeconfig: &PathBuf,
    name: &str,
    set: &[(&str, &str)],
) -> Replica {
    let port = free_port().unwrap();
    let metrics = free_port().unwrap();
    let mut args: Vec<String> = args
        .iter()
        .map(|a| match a.split_once('=') {
            Some(("--listen", _)) => format!("--listen=0.0.0.0:{port}"),
            Some(("--metrics-listen", _)) => format!("--metrics-listen=127.0.0.1:{metrics}"),
            _ => a.clone(),
        })
        .filter(|a| {
            !set.iter()
                .any(|(flag, _)| a.starts_with(&format!("{flag}=")))
        })
        .collect();
    args.extend(set.iter().map(|(flag, value)| format!("{flag}={value}")));
    let log = c.dir.path().join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(&args)
        // In a Pod, the in-cluster configuration with the ServiceAccount's
        // token; here the same token through a kubeconfig.
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("POD_NAMESPACE", NS)
        .env("POD_NAME", name)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Replica {
        child,
        port,
        metrics,
        name: name.to_string(),
        log,
    }
}

impl Replica {
    /// Sends SIGTERM, as the kubelet does at a rollout or a drain.
    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to end; whether it exited 0.
    fn exited(&mut self, limit: Duration) -> Option<bool> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `sigil_serving_certificate_expiry_timestamp_seconds` from its /metrics.
    fn certificate_expiry(&self) -> Option<f64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics)).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix("sigil_serving_certificate_expiry_timestamp_seconds "))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// Points Service sigil at these replicas, as the endpoints controller
/// would for ready Pods.
fn route(c: &KubeCluster, replicas: &[&Replica]) {
    let address = host_address();
    let subsets: String = replicas
        .iter()
        .map(|r| {
            format!(
                "  - addresses: [{{ip: \"{address}\"}}]\n    ports: [{{name: https, port: {}, protocol: TCP}}]\n",
                r.port
            )
        })
        .collect();
    let yaml = format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: sigil\n  namespace: {NS}\nsubsets:\n{subsets}"
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &yaml);
    assert!(ok(&out), "{}", text(&out));
}

fn secret_entry(c: &KubeCluster, key: &str) -> String {
    let out = c.kubectl(&[
        "-n",
        NS,
        "get",
        "secret",
        SECRET,
        "-o",
        &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
    ]);
    if !ok(&out) {
        return String::new();
    }
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The caBundle (base64) of every webhook sigil keeps.
fn injected_bundles(c: &KubeCluster) -> Vec<String> {
    let mut all = Vec::new();
    for (kind, name) in [
        ("validatingwebhookconfiguration", "sigil"),
        ("validatingwebhookconfiguration", "sigil-policies"),
        ("mutatingwebhookconfiguration", "sigil"),
    ] {
        let v = kubectl_json(c, &["get", kind, name, "-o", "json"]);
        for hook in v["webhooks"].as_array().unwrap() {
            all.push(
                hook["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    all
}

/// Whether `replica` answers `/readyz` with a certificate for
/// `sigil.sigil-system.svc` that the injected caBundle trusts.
fn trusted_and_ready(rt: &tokio::runtime::Runtime, c: &KubeCluster, replica: &Replica) -> bool {
    let bundle = injected_bundles(c).remove(0);
    let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(bundle) else {
        return false;
    };
    let Ok(roots) = reqwest::Certificate::from_pem_bundle(&pem) else {
        return false;
    };
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .resolve(
            "sigil.sigil-system.svc",
            std::net::SocketAddr::from(([127, 0, 0, 1], replica.port)),
        );
    for root in roots {
        builder = builder.add_root_certificate(root);
    }
    let client = builder.build().unwrap();
    rt.block_on(async {
        client
            .get(format!(
                "https://sigil.sigil-system.svc:{}/readyz",
                replica.port
            ))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
}

fn pod(name: &str, image: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  containers:\n    - name: app\n      image: {image}\n")
}

const PASS_IMAGE: &str = "registry.example/ok/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DENY_IMAGE: &str = "registry.example/denied/app@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A steady stream of server-side dry-run Pod creations through the
/// apiserver (each one calls both webhooks), from `workers` loops, until
/// `stop`. Returns (succeeded, failures with their messages).
async fn load(kubeconfig: PathBuf, workers: usize, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    let client = sigil::cluster::client(Some(&kubeconfig)).await.unwrap();
    let api: Api<Pod> = Api::namespaced(client, "shop");
    let succeeded = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (api, stop, succeeded, failures) = (
            api.clone(),
            stop.clone(),
            succeeded.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let p: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("load-{w}-{n}")},
                    "spec": {"containers": [{"name": "app", "image": PASS_IMAGE}]},
                }))
                .unwrap();
                let params = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                match api.create(&params, &p).await {
                    Ok(_) => {
                        succeeded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    (succeeded.load(Ordering::Relaxed), failures)
}

fn can_i(c: &KubeCluster, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--as", "system:serviceaccount:sigil-system:sigil"]);
    let out = c.kubectl(&all);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {args:?}: {}",
        text(&out)
    );
    answer == "yes"
}

/// Fresh install from the chart's defaults; certificates `self`; the
/// apiserver calling sigil through the chart's webhook configurations;
/// RBAC enough and no more. Then two replicas with short lifetimes over
/// the leftovers (old Secret deleted, old Lease): reviews keep succeeding
/// across serving-certificate renewals and a CA rollover under load; then
/// the leader is killed and the other carries on.
#[test]
fn the_chart_runs_under_its_service_account_with_self_managed_certificates() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = KubeCluster::start();
    install(&c);
    namespace(&c, "shop", Some("true"));
    let kubeconfig = service_account_kubeconfig(&c);
    let args = deployment_args(&c);
    assert!(args.contains(&format!("--tls-secret={SECRET}")), "{args:?}");

    // 1. One replica, exactly the chart's args.
    let first = start_replica(&c, &args, &kubeconfig, "sigil-0", &[]);
    route(&c, &[&first]);
    let started = within(Duration::from_secs(30), || {
        !secret_entry(&c, "tls.crt").is_empty()
            && injected_bundles(&c)
                .iter()
                .all(|b| *b == secret_entry(&c, "ca-bundle.crt"))
            && trusted_and_ready(&rt, &c, &first)
    });
    assert!(
        started.is_some(),
        "Secret, caBundle and a trusted serving certificate: {}",
        first.log()
    );
    let bundles = injected_bundles(&c);
    assert_eq!(bundles.len(), 3);
    assert!(!bundles[0].is_empty());
    // The expiry gauge is the end of the certificate loaded from the Secret.
    let pem = base64::engine::general_purpose::STANDARD
        .decode(secret_entry(&c, "tls.crt"))
        .unwrap();
    let not_after = sigil::certificates::not_after_of(std::str::from_utf8(&pem).unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert_eq!(
        first.certificate_expiry(),
        Some(not_after),
        "{}",
        first.log()
    );

    // The apiserver calls sigil through the chart's policy webhook...
    let policies = format!(
        "{}{}",
        static_policy("shop-ok", "registry.example/ok/**", "pass", None),
        static_policy(
            "shop-denied",
            "registry.example/denied/**",
            "fail",
            Some("denied by the shop policy")
        )
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &policies);
    assert!(ok(&out), "{}", text(&out));
    let broken = "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: broken\nspec:\n  images: [{glob: \"**\"}]\n  authorities: [{key: {data: \"not a key\"}}]\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], broken);
    assert!(!ok(&out), "{}", text(&out));
    assert!(
        text(&out).contains("policies.sigil.dev")
            && text(&out).contains("spec.authorities[0].key.data"),
        "{}",
        text(&out)
    );
    // ...and its workload webhooks.
    let mut last = String::new();
    let denied = within(Duration::from_secs(20), || {
        let out = c.kubectl_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            &pod("denied", DENY_IMAGE),
        );
        last = text(&out);
        !ok(&out) && last.contains("denied by the shop policy")
    });
    assert!(denied.is_some(), "{last}\n{}", first.log());
    assert!(last.contains("validate.sigil.dev"), "{last}");
    let out = c.kubectl_stdin(&["create", "-f", "-"], &pod("allowed", PASS_IMAGE));
    assert!(ok(&out), "{}", text(&out));
    // A real denial: an Event.
    let out = c.kubectl_stdin(&["create", "-f", "-"], &pod("denied", DENY_IMAGE));
    assert!(!ok(&out));

    // RBAC is enough: every watch and write above happened under the
    // ServiceAccount's token, without a refusal.
    let ready = within(Duration::from_secs(20), || {
        let v = kubectl_json(&c, &["get", "cip", "shop-ok", "-o", "json"]);
        v["status"]["conditions"][0]["status"] == "True"
    });
    assert!(ready.is_some(), "Ready condition written: {}", first.log());
    // A change of policies starts a background audit at once.
    let extra = static_policy("shop-extra", "registry.example/extra/**", "pass", None);
    assert!(ok(&c.kubectl_stdin(&["apply", "-f", "-"], &extra)));
    let reported = within(Duration::from_secs(20), || {
        let v = kubectl_json(&c, &["-n", "shop", "get", "policyreports", "-o", "json"]);
        v["items"].as_array().is_some_and(|i| !i.is_empty())
    });
    assert!(reported.is_some(), "PolicyReport written: {}", first.log());
    let evented = within(Duration::from_secs(20), || {
        text(&c.kubectl(&["-n", "shop", "get", "events.events.k8s.io", "-o", "json"]))
            .contains("PolicyViolation")
    });
    assert!(evented.is_some(), "Event written: {}", first.log());
    let lease = kubectl_json(
        &c,
        &["-n", NS, "get", "lease", "sigil-leader", "-o", "json"],
    );
    assert!(lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .starts_with("sigil-0-"));
    let log = first.log().to_lowercase();
    assert!(
        !log.contains("forbidden") && !log.contains("\"403\""),
        "a refusal under the chart's RBAC: {log}"
    );
    // ...and no more: what sigil needs, by name, and nothing around it.
    for (allowed, args) in [
        (true, vec!["patch", "validatingwebhookconfigurations/sigil"]),
        (true, vec!["patch", "mutatingwebhookconfigurations/sigil"]),
        (true, vec!["-n", NS, "update", &format!("secrets/{SECRET}")]),
        (true, vec!["-n", NS, "update", "leases/sigil-leader"]),
        (
            false,
            vec!["patch", "validatingwebhookconfigurations/other"],
        ),
        (
            false,
            vec!["delete", "validatingwebhookconfigurations/sigil"],
        ),
        (false, vec!["create", "validatingwebhookconfigurations"]),
        (false, vec!["-n", NS, "update", "secrets/other"]),
        (
            false,
            vec!["-n", NS, "delete", &format!("secrets/{SECRET}")],
        ),
        (false, vec!["-n", "shop", "update", "secrets/anything"]),
        (false, vec!["-n", "shop", "create", "secrets"]),
        // The pull-secret cache: list and watch, read-only (the field
        // selector on `type` is sigil's; RBAC cannot say it).
        (true, vec!["list", "secrets", "--all-namespaces"]),
        (true, vec!["watch", "serviceaccounts", "--all-namespaces"]),
        (
            false,
            vec!["-n", "shop", "patch", "serviceaccounts/default"],
        ),
        (false, vec!["-n", NS, "delete", "leases/sigil-leader"]),
        (false, vec!["-n", "shop", "create", "pods"]),
        (false, vec!["-n", "shop", "delete", "pods"]),
        (false, vec!["update", "clusterimagepolicies/shop-ok"]),
        (false, vec!["delete", "clusterimagepolicies/shop-ok"]),
        (false, vec!["-n", "shop", "delete", "policyreports"]),
        // What the background audit wrote before, listed to skip what did
        // not change.
        (true, vec!["list", "policyreports", "--all-namespaces"]),
        (false, vec!["create", "clusterrolebindings"]),
        // Verbs the code never uses are not granted either.
        (false, vec!["get", "clusterimagepolicies/shop-ok"]),
        (
            false,
            vec![
                "update",
                "clusterimagepolicies/shop-ok",
                "--subresource=status",
            ],
        ),
        (
            true,
            vec![
                "patch",
                "clusterimagepolicies/shop-ok",
                "--subresource=status",
            ],
        ),
        (false, vec!["get", "namespaces/shop"]),
        (false, vec!["-n", "shop", "get", "policyreports"]),
        (false, vec!["-n", NS, "get", "configmaps/anything"]),
        (true, vec!["-n", NS, "watch", "configmaps"]),
    ] {
        assert_eq!(can_i(&c, &args), allowed, "can-i {args:?}");
    }

    // 2. A reinstall over leftovers: the replica is gone without releasing
    //    its Lease, and the Secret is deleted. Two replicas with short
    //    lifetimes (serving 12 s, CA 40 s, renewed 6 s before the end).
    let first_ca = secret_entry(&c, "ca.crt");
    drop(first);
    assert!(ok(&c.kubectl(&["-n", NS, "delete", "secret", SECRET])));
    let short = [
        ("--cert-lifetime", "12s"),
        ("--ca-lifetime", "40s"),
        ("--renew-before", "6s"),
        ("--lease-duration", "3s"),
    ];
    let a = start_replica(&c, &args, &kubeconfig, "sigil-a", &short);
    let b = start_replica(&c, &args, &kubeconfig, "sigil-b", &short);
    route(&c, &[&a, &b]);
    // The old holder's Lease (15 s) must run out first.
    let both = within(Duration::from_secs(45), || {
        trusted_and_ready(&rt, &c, &a) && trusted_and_ready(&rt, &c, &b)
    });
    assert!(both.is_some(), "{}\n---\n{}", a.log(), b.log());
    assert_ne!(secret_entry(&c, "ca.crt"), first_ca, "a new CA");

    let stop = Arc::new(AtomicBool::new(false));
    let generator = rt.spawn(load(c.kubeconfig.clone(), 4, stop.clone()));
    let mut serving = BTreeSet::new();
    let mut cas = BTreeSet::new();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(45) {
        serving.insert(secret_entry(&c, "tls.crt"));
        cas.insert(secret_entry(&c, "ca.crt"));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Release);
    let (succeeded, failures) = rt.block_on(generator).unwrap();
    println!(
        "rotation under load: {succeeded} reviews, {} failed; {} serving certificates, {} CAs seen",
        failures.len(),
        serving.len(),
        cas.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} failed, first: {:?}\n{}\n---\n{}",
        failures.len(),
        succeeded + failures.len(),
        failures.first(),
        a.log(),
        b.log()
    );
    assert!(succeeded >= 100, "only {succeeded} reviews");
    assert!(
        serving.len() >= 3,
        "at least two renewals: {}",
        serving.len()
    );
    assert!(cas.len() >= 2, "a CA rollover: {}", cas.len());

    // 3. Failover: the leader dies; the other takes the Lease within its
    //    3 s and carries on: renewals and status writes.
    let holder = kubectl_json(
        &c,
        &["-n", NS, "get", "lease", "sigil-leader", "-o", "json"],
    )["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let (leader, follower) = if holder.starts_with("sigil-a-") {
        (a, b)
    } else {
        (b, a)
    };
    assert!(holder.starts_with(&format!("{}-", leader.name)));
    drop(leader);
    route(&c, &[&follower]);
    let killed = Instant::now();
    let took = within(Duration::from_secs(15), || {
        follower.log().contains("became the leader")
    });
    assert!(took.is_some(), "{}", follower.log());
    println!("failover: leader after {:?}", killed.elapsed());
    let cert_at_takeover = secret_entry(&c, "tls.crt");
    let renewed = within(Duration::from_secs(15), || {
        let now = secret_entry(&c, "tls.crt");
        !now.is_empty() && now != cert_at_takeover
    });
    assert!(
        renewed.is_some(),
        "renewal by the new leader: {}",
        follower.log()
    );
    let changed = static_policy("shop-ok", "registry.example/ok/**", "pass", None).replace(
        "  images:\n",
        "  images:\n    - glob: \"registry.example/also/**\"\n",
    );
    assert!(ok(&c.kubectl_stdin(&["apply", "-f", "-"], &changed)));
    let written = within(Duration::from_secs(15), || {
        let v = kubectl_json(&c, &["get", "cip", "shop-ok", "-o", "json"]);
        v["metadata"]["generation"] == 2 && v["status"]["observedGeneration"] == 2
    });
    assert!(
        written.is_some(),
        "status by the new leader: {}",
        follower.log()
    );
    let out = c.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &pod("after", PASS_IMAGE),
    );
    assert!(ok(&out), "{}", text(&out));

    // 4. A reinstall over the old Secret: new webhook configurations, no
    //    caBundle; the leader injects the Secret's bundle again.
    for (kind, name) in [
        ("validatingwebhookconfiguration", "sigil"),
        ("validatingwebhookconfiguration", "sigil-policies"),
        ("mutatingwebhookconfiguration", "sigil"),
    ] {
        assert!(ok(&c.kubectl(&["delete", kind, name])));
    }
    install(&c);
    let reinjected = within(Duration::from_secs(15), || {
        injected_bundles(&c)
            .iter()
            .all(|b| !b.is_empty() && *b == secret_entry(&c, "ca-bundle.crt"))
    });
    assert!(reinjected.is_some(), "{}", follower.log());
    let mut last = String::new();
    let admitted = within(Duration::from_secs(15), || {
        let out = c.kubectl_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            &pod("reinstalled", PASS_IMAGE),
        );
        last = text(&out);
        ok(&out)
    });
    assert!(admitted.is_some(), "{last}");
}

/// A rolling update of two replicas, as the Deployment controller does it
/// (one surge replica Ready, then one old replica terminated, twice), while
/// reviews go through the real apiserver without a pause. The endpoint of
/// a terminated replica leaves the Service a second after its SIGTERM (the
/// endpoints controller's and the apiservers' lag, here written by this
/// test). Done twice: with `--shutdown-delay=0s`, sigil's old behaviour,
/// and with the chart's args. The chart's loses no review.
#[test]
fn a_rolling_update_of_two_replicas_loses_no_review() {
    const LAG: Duration = Duration::from_secs(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = KubeCluster::start();
    install(&c);
    namespace(&c, "shop", Some("true"));
    let kubeconfig = service_account_kubeconfig(&c);
    let args = deployment_args(&c);
    assert!(
        args.contains(&"--shutdown-delay=5s".to_string()),
        "{args:?}"
    );
    let policy = static_policy("shop-ok", "registry.example/ok/**", "pass", None);
    let mut outcomes = Vec::new();
    for (run, delay) in [("before", Some("0s")), ("after", None)] {
        let mut set = vec![("--lease-duration", "3s")];
        set.extend(delay.map(|d| ("--shutdown-delay", d)));
        let name = |n: &str| format!("{run}-{n}");
        let ready = |r: &Replica| {
            within(Duration::from_secs(60), || trusted_and_ready(&rt, &c, r)).is_some()
        };
        let mut old_a = start_replica(&c, &args, &kubeconfig, &name("a"), &set);
        let mut old_b = start_replica(&c, &args, &kubeconfig, &name("b"), &set);
        assert!(
            ready(&old_a) && ready(&old_b),
            "{}\n---\n{}",
            old_a.log(),
            old_b.log()
        );
        route(&c, &[&old_a, &old_b]);
        // The policy (its webhook needs a replica) is loaded and the
        // apiserver reaches both.
        let applied = within(Duration::from_secs(30), || {
            ok(&c.kubectl_stdin(&["apply", "-f", "-"], &policy))
        });
        assert!(applied.is_some(), "{}", old_a.log());
        let admitted = within(Duration::from_secs(30), || {
            ok(&c.kubectl_stdin(
                &["create", "--dry-run=server", "-f", "-"],
                &pod("warm", PASS_IMAGE),
            ))
        });
        assert!(admitted.is_some(), "{}", old_a.log());

        let stop = Arc::new(AtomicBool::new(false));
        let generator = rt.spawn(load(c.kubeconfig.clone(), 4, stop.clone()));
        std::thread::sleep(Duration::from_secs(2));
        // One step of the Deployment controller: a surge replica Ready and
        // in the Endpoints, then one old replica terminated and, LAG later,
        // out of them.
        let surge = |old: &mut Replica, staying: &Replica, letter: &str| {
            let new = start_replica(&c, &args, &kubeconfig, &name(letter), &set);
            assert!(ready(&new), "{}", new.log());
            route(&c, &[&*old, staying, &new]);
            std::thread::sleep(LAG);
            old.terminate();
            std::thread::sleep(LAG);
            route(&c, &[staying, &new]);
            assert_eq!(
                old.exited(Duration::from_secs(40)),
                Some(true),
                "{}",
                old.log()
            );
            new
        };
        let new_c = surge(&mut old_a, &old_b, "c");
        let new_d = surge(&mut old_b, &new_c, "d");
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Release);
        let (succeeded, failures) = rt.block_on(generator).unwrap();
        println!(
            "rolling update {run}: {succeeded} reviews answered, {} lost; first: {:?}",
            failures.len(),
            failures.first()
        );
        outcomes.push((run, succeeded, failures));
        drop((new_c, new_d));
    }
    let (_, before_ok, before_lost) = &outcomes[0];
    let (_, after_ok, after_lost) = &outcomes[1];
    assert!(
        *before_ok >= 20 && *after_ok >= 20,
        "too few reviews: {before_ok}, {after_ok}"
    );
    assert!(
        after_lost.is_empty(),
        "{} of {} reviews lost with the chart's shutdown delay, first: {:?}",
        after_lost.len(),
        after_ok + after_lost.len(),
        after_lost.first()
    );
    // The same rollout without the delay loses reviews to refused
    // connections: what makes the difference is the delay.
    assert!(
        before_lost.iter().any(|f| f.contains("failed calling webhook")),
        "without the delay nothing was lost ({before_ok} answered): the test no longer shows what the delay is for"
    );
}
