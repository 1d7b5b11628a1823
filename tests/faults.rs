//! The fault matrix: `sigil serve` (the real binary, enforce and audit
//! mode) verifying key-signed images held by the real docker-registry,
//! through a fault-injecting proxy (common/faults.rs). Every fault must be a
//! deny with its reason in enforce mode, an admit with an `audited` record in
//! audit mode, never cached (the same review passes once the fault is gone),
//! and the server's peak RSS must stay under the memory budget even while
//! many endless bodies stream at once.

mod common;

use std::time::{Duration, Instant};

use common::faults::{Fault, FaultProxy};
use common::served::Served;
use common::*;
use sigil_testkit::{free_port, TestKey, TestKeyKind};

/// Peak RSS allowed to one `sigil serve` through the whole matrix: half the
/// deployment's 256 MiB limit. `--cache-memory 32MiB` below; reads are
/// capped at 1 MiB each and 32 at once.
const RSS_BUDGET_KIB: u64 = 128 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_faults_fail_closed_and_stay_within_memory() {
    let env = Env::start();
    let proxy = FaultProxy::start(env.addr()).await;
    let dead = format!("127.0.0.1:{}", free_port().unwrap());
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        key_policy("signed", "**", &[&k], ""),
    )
    .unwrap();
    let flags = [
        "--insecure-registry",
        &proxy.addr,
        "--insecure-registry",
        &dead,
        "--verify-timeout",
        "3s",
        "--registry-read-timeout",
        "2s",
        "--cache-memory",
        "32MiB",
    ];
    let enforce = Served::start(dir.path(), &policies, &flags);
    let mut audit_flags = flags.to_vec();
    audit_flags.extend(["--mode", "audit"]);
    let audit = Served::start(dir.path(), &policies, &audit_flags);

    let sig = ".sig";
    let cases: Vec<(&str, &str, Fault, String)> = vec![
        (
            "reset mid-body",
            sig,
            Fault::ResetMidBody,
            format!("cannot fetch signatures from {}", proxy.addr),
        ),
        (
            "5xx",
            sig,
            Fault::Status(503),
            format!(
                "registry {} error: HTTP 503: UNAVAILABLE: registry in maintenance",
                proxy.addr
            ),
        ),
        (
            "429 with Retry-After",
            sig,
            Fault::Throttle(7),
            format!(
                "registry {} is throttling requests (HTTP 429, retry after 7s)",
                proxy.addr
            ),
        ),
        (
            "slower than the deadline",
            sig,
            Fault::Slow(Duration::from_secs(10)),
            "timed out".into(),
        ),
        (
            "truncated JSON",
            sig,
            Fault::Truncated,
            "unreadable manifest for".into(),
        ),
        (
            "garbage",
            sig,
            Fault::Garbage,
            "unreadable manifest for".into(),
        ),
        (
            "body is not the digest asked for",
            "/blobs/",
            Fault::WrongDigest,
            "whose digest is sha256:".into(),
        ),
        (
            "endless body",
            sig,
            Fault::Endless,
            "sent more than 1048576 bytes".into(),
        ),
        (
            "100,000 layers",
            sig,
            Fault::ManyLayers(100_000),
            "sent more than 1048576 bytes".into(),
        ),
        (
            "2,000 layers in a small body",
            sig,
            Fault::ManyLayers(2_000),
            "has 2000 layers, over the limit of 1000".into(),
        ),
    ];

    let mut images = Vec::new();
    for (i, (name, needle, fault, want)) in cases.iter().enumerate() {
        let repo = format!("team/app{i}");
        let digest = env.push(&repo, "v1").await;
        env.sign(&repo, &digest, &k).await;
        let image = format!("{}/{repo}@{digest}", proxy.addr);
        images.push(image.clone());

        proxy.set(needle, fault.clone());
        let resp = enforce.review(&image).await;
        assert_eq!(resp["allowed"], false, "{name}: {resp}");
        let msg = message(&resp);
        assert!(msg.contains(want), "{name}: want {want:?} in {msg}");
        assert!(
            msg.contains(&digest),
            "{name}: the deny names the digest: {msg}"
        );

        let resp = audit.review(&image).await;
        assert_eq!(resp["allowed"], true, "{name} (audit mode): {resp}");

        // Nothing transient was cached: the same review passes at once.
        proxy.clear();
        for served in [&enforce, &audit] {
            let resp = served.review(&image).await;
            assert_eq!(
                resp["allowed"], true,
                "{name} once the fault is gone: {resp}"
            );
        }
    }

    // A registry nobody listens on.
    let repo = "team/unreachable";
    let resp = enforce
        .review(&format!("{dead}/{repo}@sha256:{}", "a".repeat(64)))
        .await;
    assert_eq!(resp["allowed"], false);
    assert!(
        message(&resp).contains(&format!("registry {dead} unreachable: connection refused")),
        "{}",
        message(&resp)
    );

    // Many endless bodies at once, on images not cached: memory stays
    // bounded (each read stops at 1 MiB; 32 reads at most in flight).
    let mut many = Vec::new();
    for i in 0..24 {
        let repo = format!("team/flood{i}");
        let digest = env.push(&repo, "v1").await;
        many.push(format!("{}/{repo}@{digest}", proxy.addr));
    }
    proxy.set(sig, Fault::Endless);
    let answers = futures::future::join_all(many.iter().map(|i| enforce.review(i))).await;
    for a in &answers {
        assert_eq!(a["allowed"], false, "{a}");
        assert!(message(a).contains("sent more than 1048576 bytes"), "{a}");
    }
    proxy.clear();
    assert!(proxy.faulted.load(std::sync::atomic::Ordering::Relaxed) >= cases.len() + 24);

    let peak = enforce.peak_rss_kib();
    let audit_peak = audit.peak_rss_kib();
    eprintln!(
        "peak RSS: enforce {} MiB, audit {} MiB (budget {} MiB)",
        peak >> 10,
        audit_peak >> 10,
        RSS_BUDGET_KIB >> 10
    );
    assert!(peak < RSS_BUDGET_KIB, "enforce peak RSS {peak} KiB");
    assert!(
        audit_peak < RSS_BUDGET_KIB,
        "audit peak RSS {audit_peak} KiB"
    );

    // The audit server wrote an `audited` record with the reason for every
    // faulted image.
    let records = audit.stop();
    for ((name, _, _, want), image) in cases.iter().zip(&images) {
        let r = records
            .iter()
            .find(|r| r["image"] == image.as_str())
            .unwrap_or_else(|| panic!("{name}: no audit record for {image}"));
        assert_eq!(r["decision"], "audited", "{name}");
        assert_eq!(r["mode"], "enforce", "{name}");
        let reasons = r["reasons"].to_string();
        assert!(reasons.contains(want.as_str()), "{name}: {reasons}");
    }
    let denied = enforce.stop();
    assert!(denied.iter().all(|r| r["decision"] == "denied"));
}

/// `sigil serve` with a key policy over `**`, reading the real registry
/// through a fault proxy.
struct Proxied {
    env: Env,
    proxy: FaultProxy,
    k: TestKey,
    served: Served,
    _dir: tempfile::TempDir,
}

impl Proxied {
    async fn start(flags: &[&str]) -> Proxied {
        let env = Env::start();
        let proxy = FaultProxy::start(env.addr()).await;
        let k = TestKey::generate(TestKeyKind::P256).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(
            policies.join("p.yaml"),
            key_policy("signed", "**", &[&k], ""),
        )
        .unwrap();
        let mut all = vec!["--insecure-registry", proxy.addr.as_str()];
        all.extend_from_slice(flags);
        let served = Served::start(dir.path(), &policies, &all);
        Proxied {
            env,
            proxy,
            k,
            served,
            _dir: dir,
        }
    }
}

/// A `429` whose `Retry-After` fits `--registry-max-retry-wait` is waited
/// for and retried once; a second refusal, or a longer wait, is a deny with
/// the registry's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_asks_to_wait_is_retried_once() {
    use std::sync::atomic::Ordering::Relaxed;
    let Proxied {
        env,
        proxy,
        k,
        served,
        _dir,
    } = Proxied::start(&["--verify-timeout", "6s", "--registry-max-retry-wait", "2s"]).await;
    let image = |i: usize| {
        let (env, k, proxy) = (&env, &k, &proxy);
        async move {
            let repo = format!("team/polite{i}");
            let digest = env.push(&repo, "v1").await;
            env.sign(&repo, &digest, k).await;
            format!("{}/{repo}@{digest}", proxy.addr)
        }
    };
    let throttled = |secs| {
        format!(
            "registry {} is throttling requests (HTTP 429, retry after {secs}s)",
            proxy.addr
        )
    };

    // Once: waited for, retried, admitted.
    let first = image(0).await;
    let before = proxy.faulted.load(Relaxed);
    proxy.set_times(".sig", Fault::Throttle(1), 1);
    let started = Instant::now();
    let resp = served.review(&first).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(proxy.faulted.load(Relaxed) - before, 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");

    // Refused again after the wait: denied with the registry's answer.
    let second = image(1).await;
    let before = proxy.faulted.load(Relaxed);
    proxy.set(".sig", Fault::Throttle(1));
    let resp = served.review(&second).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(message(&resp).contains(&throttled(1)), "{}", message(&resp));
    assert_eq!(proxy.faulted.load(Relaxed) - before, 2, "one retry only");

    // Asked to wait longer than --registry-max-retry-wait: no retry.
    let third = image(2).await;
    let before = proxy.faulted.load(Relaxed);
    proxy.set(".sig", Fault::Throttle(3));
    let resp = served.review(&third).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(message(&resp).contains(&throttled(3)), "{}", message(&resp));
    assert_eq!(proxy.faulted.load(Relaxed) - before, 1);
    proxy.clear();
    served.stop();
}

/// A registry that keeps failing (HTTP 503 here) opens its breaker after
/// `--registry-breaker-failures` failures in a row: its images are denied
/// at once with that reason, and the registry gets no request until the
/// cooldown is over; then one probe goes through, and once the registry
/// answers again the next review is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_registry_opens_its_breaker_and_is_probed() {
    use std::sync::atomic::Ordering::Relaxed;
    let Proxied {
        env,
        proxy,
        k,
        served,
        _dir,
    } = Proxied::start(&[
        "--registry-breaker-failures",
        "3",
        "--registry-breaker-cooldown",
        "2s",
    ])
    .await;
    let repo = "team/flaky";
    let digest = env.push(repo, "v1").await;
    env.sign(repo, &digest, &k).await;
    let image = format!("{}/{repo}@{digest}", proxy.addr);

    proxy.set(".sig", Fault::Status(503));
    for _ in 0..3 {
        let resp = served.review(&image).await;
        assert_eq!(resp["allowed"], false, "{resp}");
        assert!(message(&resp).contains("HTTP 503"), "{}", message(&resp));
    }
    // Open: denied at once, and the registry is not asked.
    let asked = proxy.faulted.load(Relaxed) + proxy.forwarded.load(Relaxed);
    let started = Instant::now();
    let resp = served.review(&image).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        message(&resp).contains(&format!(
            "registry {} is failing (3 failures in a row); not contacted for another",
            proxy.addr
        )),
        "{}",
        message(&resp)
    );
    // Far less than a request to the registry would have waited.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        proxy.faulted.load(Relaxed) + proxy.forwarded.load(Relaxed),
        asked,
        "no request while open"
    );

    // The registry recovers; after the cooldown the probe goes through and
    // the review is admitted.
    proxy.clear();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let resp = served.review(&image).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    served.stop();
}
