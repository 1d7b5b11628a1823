//! The HTTPS server and the `sigil` binary: bad input gets a 400 with a
//! reason, TLS and policies reload from disk, `sigil check` exit codes.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum_server::tls_rustls::RustlsConfig;
use common::*;
use sigil::server::{self, AppState};
use sigil::tls;
use sigil_testkit::{free_port, TestKey, TestKeyKind};

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_get_400_with_a_reason_and_limits_hold() {
    sigil::install_crypto_provider();
    let (ev, _) = pipeline("", &Opts::for_registry("127.0.0.1:1"));
    let certs = tls::self_signed(&tls::default_names()).unwrap();
    let cfg = RustlsConfig::from_pem(
        certs.cert_pem.clone().into_bytes(),
        certs.key_pem.clone().into_bytes(),
    )
    .await
    .unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let running = server::start(
        "127.0.0.1:0".parse().unwrap(),
        cfg,
        AppState::new(ev, ready.clone()),
    )
    .await
    .unwrap();
    let base = format!("https://localhost:{}", running.addr.port());
    let http = https_client(&certs.ca_pem);

    let r = http
        .post(format!("{base}/validate"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .starts_with("invalid AdmissionReview: "));
    let r = http
        .post(format!("{base}/validate"))
        .body(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "invalid AdmissionReview: it has no request"
    );
    // A well-formed review of a Pod no policy matches: denied by the default no-match rule.
    let r = http
        .post(format!("{base}/validate"))
        .json(&pod_review("u", "default", "p", "nginx"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["response"]["allowed"], false);

    assert_eq!(get_status(&http, &format!("{base}/healthz")).await, 200);
    assert_eq!(get_status(&http, &format!("{base}/readyz")).await, 503);
    ready.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(get_status(&http, &format!("{base}/readyz")).await, 200);
    // Over the 4 MiB limit: 413, or the connection closed right after the
    // early 413 while the client was still uploading. Never processed.
    match https_client(&certs.ca_pem)
        .post(format!("{base}/validate"))
        .body(vec![b' '; 5 << 20])
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 413, "over the 4 MiB body limit"),
        Err(e) => assert!(e.is_request(), "{e}"),
    }

    running.shutdown(Duration::from_secs(2)).await;
}

async fn get_status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(
    limit: Duration,
    f: F,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn post_allowed(http: &reqwest::Client, url: &str, image: &str) -> Option<bool> {
    let r = http
        .post(url)
        .json(&pod_review("u", "default", "p", image))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["response"]["allowed"].as_bool()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_policies_and_certificates_and_stops_on_sigterm() {
    let env = Env::start();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k).await;
    let unsigned_digest = env.push("team/unsigned", "v1").await;

    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    write(
        &policies.join("allow.yaml"),
        &static_policy("allow-all", "**", "pass", None),
    );
    let first = tls::self_signed(&tls::default_names()).unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    write(&crt, &first.cert_pem);
    write(&key, &first.key_pem);
    let port = free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            // Port 0: any free port (tests run side by side).
            "--metrics-listen",
            "127.0.0.1:0",
            "--insecure-registry",
            env.addr(),
        ])
        .arg("--policy-dir")
        .arg(&policies)
        .arg("--tls-cert")
        .arg(&crt)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let url = format!("https://localhost:{port}/validate");
    // The binary's default: policy-matched images must be pinned.
    let unsigned = format!("{}/team/unsigned:v1@{unsigned_digest}", env.addr());
    let http = https_client(&first.ca_pem);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            post_allowed(&http, &url, &unsigned).await == Some(true)
        })
        .await,
        "static pass admits"
    );

    // Replace the policy: within a few seconds the unsigned image is denied and the signed one admitted.
    std::fs::remove_file(policies.join("allow.yaml")).unwrap();
    write(
        &policies.join("signed.yaml"),
        &key_policy("signed", "**", &[&k], ""),
    );
    assert!(
        wait_until(Duration::from_secs(8), || async {
            post_allowed(&http, &url, &unsigned).await == Some(false)
        })
        .await,
        "new policy in force"
    );
    assert_eq!(
        post_allowed(&http, &url, &format!("{}/team/app:v1@{digest}", env.addr())).await,
        Some(true)
    );

    // A file that stops parsing keeps its last good policies.
    write(&policies.join("signed.yaml"), "this: [is not: valid");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        post_allowed(&http, &url, &unsigned).await,
        Some(false),
        "broken file must not drop enforcement"
    );

    // New certificate files are picked up without restart.
    let second = tls::self_signed(&tls::default_names()).unwrap();
    write(&key, &second.key_pem);
    write(&crt, &second.cert_pem);
    let http2 = https_client(&second.ca_pem);
    assert!(
        wait_until(Duration::from_secs(8), || async {
            post_allowed(&http2, &url, &unsigned).await.is_some()
        })
        .await,
        "new certificate served"
    );
    assert!(
        post_allowed(&https_client(&first.ca_pem), &url, &unsigned)
            .await
            .is_none(),
        "old CA no longer matches"
    );

    // The audit log (stdout) has the denies as JSON lines.
    // SIGTERM: graceful shutdown, exit 0.
    let pid = proc.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "sigil did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut out = String::new();
    std::io::Read::read_to_string(proc.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The stream's first checkpoint, its records, its last checkpoint.
    assert_eq!(lines[0]["target"], "audit-checkpoint");
    assert_eq!(lines[0]["seq"], 0);
    let last = lines.last().unwrap();
    assert_eq!(last["target"], "audit-checkpoint");
    assert_eq!(last["last"], true);
    let first_line = &lines[1];
    assert_eq!(first_line["target"], "audit");
    assert_eq!(first_line["decision"], "denied");
    assert_eq!(first_line["image"], unsigned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_exit_codes_and_json() {
    let env = Env::start();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k).await;
    env.push("team/unsigned", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("p.yaml"),
        &key_policy("signed", "**", &[&k], ""),
    );
    let manifest = dir.path().join("deploy.yaml");
    write(
        &manifest,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector: {{}}\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {}/team/app:v1@{digest}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ignored\n",
            env.addr()
        ),
    );
    // The same Deployment written by tag: the webhook's verdict (denied).
    let tagged = dir.path().join("tagged.yaml");
    write(
        &tagged,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector: {{}}\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {}/team/app:v1\n",
            env.addr()
        ),
    );
    let sigil = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .arg("check")
            .arg("--policy-dir")
            .arg(dir.path())
            .args(["--insecure-registry", env.addr()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let m = manifest.to_str().unwrap();
    let (code, out) = sigil(&["-f", m]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Deployment shop/web spec.template.spec.containers[0].image")
            && out.contains("result: admitted"),
        "{out}"
    );

    let (code, out) = sigil(&["-f", tagged.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "DENIED: Deployment shop/web: spec.template.spec.containers[0].image {}/team/app:v1 (digest unresolved) fails policy \"signed\": {}/team/app:v1 must be an image digest",
            env.addr(),
            env.addr()
        )),
        "{out}"
    );
    // `--image` resolves a tag (like policy-controller's tester) and says
    // what the webhook would need.
    let (code, out) = sigil(&["--image", &format!("{}/team/app:v1", env.addr())]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "WARNING: Pod default/image-0: {a}/team/app:v1 was resolved to {digest} for this check; the webhook admits only images pinned to a digest: write {a}/team/app:v1@{digest}",
            a = env.addr()
        )),
        "{out}"
    );

    let unsigned = format!("{}/team/unsigned:v1", env.addr());
    let (code, out) = sigil(&["-f", m, "--image", &unsigned, "--output", "json"]);
    assert_eq!(code, Some(1), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    assert_eq!(v["images"][0]["digest"], serde_json::json!(digest));
    assert_eq!(v["images"][0]["policies"][0]["policy"], "signed");
    assert_eq!(v["images"][0]["policies"][0]["passed"], true);
    assert_eq!(v["images"][1]["image"], serde_json::json!(unsigned));
    assert_eq!(v["images"][1]["policies"][0]["passed"], false);
    assert!(
        v["denied"][0]
            .as_str()
            .unwrap()
            .contains("no signatures found"),
        "{v}"
    );

    let (code, _) = sigil(&[]);
    assert_eq!(code, Some(2), "no input is a usage error");
    let bad = tempfile::tempdir().unwrap();
    write(&bad.path().join("p.yaml"), "this: [is not: valid");
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["check", "--image", "nginx", "--policy-dir"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load policies"));
}

/// Before the first full list of policies and namespaces, sigil is not ready
/// and denies enforced reviews with that reason (here: no API server at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_and_fail_closed_until_the_cluster_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = free_port().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    write(
        &kubeconfig,
        &format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{nowhere}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"),
    );
    let port = free_port().unwrap();
    let certs = dir.path().join("certs");
    let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            // Port 0: any free port (tests run side by side).
            "--metrics-listen",
            "127.0.0.1:0",
            "--self-signed",
            "--no-match-policy",
            "allow",
        ])
        .arg("--self-signed-dir")
        .arg(&certs)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _proc = Proc(child);
    let start = Instant::now();
    while !certs.join("ca.pem").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sigil did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = https_client(&std::fs::read_to_string(certs.join("ca.pem")).unwrap());
    let base = format!("https://localhost:{port}");
    let mut resp = None;
    // Up to 30 s: a debug build starting on a busy machine.
    for _ in 0..300 {
        if let Ok(r) = http
            .post(format!("{base}/validate"))
            .json(&pod_review("u", "default", "p", "nginx"))
            .send()
            .await
        {
            resp = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = resp.expect("sigil answered");
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    assert!(
        resp["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not finished syncing"),
        "{resp}"
    );
    assert_eq!(get_status(&http, &format!("{base}/readyz")).await, 503);
    assert_eq!(get_status(&http, &format!("{base}/healthz")).await, 200);
}
