//! Graceful termination of the real `sigil serve` (a rollout or a drain
//! sends SIGTERM while apiservers still send it reviews): `/readyz` turns
//! 503 at once, reviews are still accepted and answered through
//! `--shutdown-delay`, a review in flight when the delay ends is answered
//! and recorded, and the process exits 0. Reviews are sent without a pause
//! across the signal, over kept-alive connections and fresh ones. The same
//! through a real kube-apiserver, as a rolling update of two replicas:
//! tests/install.rs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::served::Served;
use sigil_testkit::{pod_review, TestKey, TestKeyKind};

const PASS_IMAGE: &str = "registry.example/ok/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Sends reviews of `PASS_IMAGE` one after another until `stop`; counts
/// those answered as admitted and describes every other outcome.
async fn steady_reviews(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<Instant>>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let body = pod_review(&format!("steady-{n}"), "default", "p", PASS_IMAGE);
        match client.post(&url).json(&body).send().await {
            Ok(r) if r.status() == 200 => match r.json::<serde_json::Value>().await {
                Ok(v) if v["response"]["allowed"] == true => {
                    answered.lock().unwrap().push(Instant::now())
                }
                Ok(v) => failures.push(format!("not admitted: {v}")),
                Err(e) => failures.push(format!("unreadable answer: {e}")),
            },
            Ok(r) => failures.push(format!("HTTP {}", r.status())),
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_sent_across_a_sigterm_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    // A registry that accepts and never answers: a review of its image is
    // in flight for the whole --verify-timeout.
    let hole = common::black_holes(1, 1).await.remove(0);
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        format!(
            "{}{}",
            common::static_policy("ok", "registry.example/ok/**", "pass", None),
            common::key_policy("slow", &format!("{hole}/**"), &[&key], "")
        ),
    )
    .unwrap();
    let mut served = Served::start(
        dir.path(),
        &policies,
        &[
            "--shutdown-delay",
            "3s",
            "--verify-timeout",
            "3s",
            "--insecure-registry",
            &hole,
        ],
    );
    let port = served.base.rsplit(':').next().unwrap().to_string();
    let ca = std::fs::read(dir.path().join(format!("certs-{port}/ca.pem"))).unwrap();
    let fresh = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{}/validate", served.base);
    let ready = served
        .http
        .get(format!("{}/readyz", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let loads: Vec<_> = [served.http.clone(), fresh.clone()]
        .into_iter()
        .map(|client| {
            tokio::spawn(steady_reviews(
                client,
                url.clone(),
                stop.clone(),
                answered.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGTERM: not ready at once, still answering.
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut readyz = String::new();
    while signalled.elapsed() < Duration::from_secs(2) {
        let r = fresh
            .get(format!("{}/readyz", served.base))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            readyz = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(readyz.contains("shutting down"), "readyz: {readyz:?}");
    // An HTTP/1.1 answer now closes its connection: a kept-alive one is
    // never closed under a request the client is already sending.
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = http1
        .post(&url)
        .json(&pod_review("h1", "default", "p", PASS_IMAGE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );

    // A review in flight when the delay ends (it waits on the black hole
    // for its 3 s): answered, not cut.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(signalled.elapsed())).await;
    let slow_image = format!("{hole}/app@sha256:{}", "c".repeat(64));
    let slow = tokio::spawn({
        let client = fresh.clone();
        let url = url.clone();
        let body = pod_review("slow-review", "default", "p", &slow_image);
        async move { client.post(&url).json(&body).send().await }
    });
    // The apiserver's view of the endpoint lags the signal: it keeps
    // sending until just before the delay ends.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(signalled.elapsed())).await;
    stop.store(true, Ordering::Release);
    let mut failures = Vec::new();
    for l in loads {
        failures.extend(l.await.unwrap());
    }
    let after_signal = answered
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t > signalled)
        .count();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        after_signal >= 10,
        "only {after_signal} reviews answered after SIGTERM"
    );

    let slow = slow
        .await
        .unwrap()
        .expect("the in-flight review is answered");
    assert_eq!(slow.status(), 200);
    let slow: serde_json::Value = slow.json().await.unwrap();
    assert_eq!(slow["response"]["allowed"], false, "{slow}");
    assert!(
        slow["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{slow}"
    );

    // Then it stops listening and exits 0, the in-flight review recorded.
    let exited = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "{exited:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "stopped before the delay"
    );
    assert!(fresh
        .post(&url)
        .json(&pod_review("late", "default", "p", PASS_IMAGE))
        .send()
        .await
        .is_err());
    let audit = served.stop_raw();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"uid\":\"slow-review\"") && l.contains("denied")),
        "{audit}"
    );
}
