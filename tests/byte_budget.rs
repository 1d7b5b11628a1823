//! Bounded by bytes: every hostile tenant of the byte budget, one after
//! another, against the real `sigil serve` binary (release build under
//! `scripts/byte-budget.sh`) and the real docker-registry, while another
//! namespace (`shop`) keeps reviewing freshly signed images:
//!
//! 1. escaping references: 48 dry-run reviews of ~1 MB at once, each of
//!    256 containers whose image is 4,000 bytes of DEL;
//! 2. big signatures: four 16-image Pods whose `.sig` manifests carry 64
//!    junk layers of 1 MiB each;
//! 3. `/mutate` on registries that never answer: 32 at once, each of 64
//!    tags on 8 hosts;
//! 4. five namespaces flooding at once (reviews that hang on black holes);
//! 5. an audit flood: 48 real (not dry-run) reviews of 256 failing images;
//! 6. shared work: a namespace whose registry share is taken by hangs asks
//!    first for the image `shop` then asks for.
//!
//! Per attack it prints `shop`'s refusals and slowest review against its
//! unloaded figure in the same run, the largest answer, and at the end the
//! largest audit line and sigil's peak RSS. The test asserts what must
//! hold on any machine (no refusal for `shop`, answers and audit lines
//! under 64 KiB, peak RSS under 192 MiB, `shop` never waiting on another
//! namespace's share) and prints the latency ratio against the issue's
//! goal (≤ 3× + 50 ms); it asserts a looser latency bound so that a busy
//! machine does not fail it. Events are flooded in `tests/cluster.rs`
//! (they need the apiserver).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::served::Served;
use common::*;
use serde_json::{json, Value};
use sigil_testkit::{TestKey, TestKeyKind};

/// The issue's goal for the whole run.
const RSS_GOAL_KIB: u64 = 192 << 10;
/// The answer and audit-line goal.
const OUTPUT_GOAL: usize = 64 << 10;

/// An AdmissionReview of a Pod in `namespace` with `images`.
fn pod(namespace: &str, uid: &str, images: &[String], dry_run: bool) -> Vec<u8> {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let mut body = pod_review(uid, namespace, "p", "x");
    body["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    body["request"]["dryRun"] = Value::Bool(dry_run);
    serde_json::to_vec(&body).unwrap()
}

/// What one POST came back with.
#[derive(Debug, Clone)]
struct Answer {
    allowed: bool,
    bytes: usize,
    took: Duration,
    /// The answer's text when it was not an AdmissionReview (a refusal).
    refusal: Option<String>,
    /// The deny message, if denied.
    message: String,
}

async fn post(http: &reqwest::Client, url: String, body: Vec<u8>) -> Answer {
    let sent = Instant::now();
    match http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.bytes().await.unwrap_or_default();
            let v = serde_json::from_slice::<Value>(&text).unwrap_or_default();
            let allowed = v["response"]["allowed"] == true;
            let message = v["response"]["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Answer {
                allowed,
                bytes: text.len(),
                took: sent.elapsed(),
                refusal: (status != 200).then(|| String::from_utf8_lossy(&text).into_owned()),
                message,
            }
        }
        Err(e) => Answer {
            allowed: false,
            bytes: 0,
            took: sent.elapsed(),
            refusal: Some(e.to_string()),
            message: String::new(),
        },
    }
}

/// `shop`'s reviews: one freshly signed image every 300 ms until `stop`
/// (at least `min` of them); each must be admitted.
async fn shop_reviews(
    served: &Served,
    images: &mut std::vec::IntoIter<String>,
    min: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Answer> {
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut pending = Vec::new();
    while pending.len() < min || !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tick.tick().await;
        let Some(image) = images.next() else { break };
        let body = pod("shop", "shop", &[image], false);
        let (http, url) = (served.http.clone(), format!("{}/validate", served.base));
        pending.push(tokio::spawn(async move { post(&http, url, body).await }));
    }
    let mut out = Vec::new();
    for p in pending {
        out.push(p.await.unwrap());
    }
    out
}

/// Runs `attack` while `shop` reviews; returns the attack's answers and
/// `shop`'s.
async fn beside_shop(
    served: &Served,
    shop_images: &mut std::vec::IntoIter<String>,
    attack: impl std::future::Future<Output = Vec<Answer>>,
) -> (Vec<Answer>, Vec<Answer>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shop = {
        let stop = stop.clone();
        shop_reviews(served, shop_images, 5, stop)
    };
    let attack = async {
        let answers = attack.await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        answers
    };
    tokio::join!(attack, shop)
}

/// `n` copies of one POST at once.
async fn at_once(served: &Served, path: &str, bodies: Vec<Vec<u8>>) -> Vec<Answer> {
    let all = bodies.into_iter().map(|body| {
        let (http, url) = (served.http.clone(), format!("{}{path}", served.base));
        tokio::spawn(async move { post(&http, url, body).await })
    });
    let mut out = Vec::new();
    for a in futures::future::join_all(all).await {
        out.push(a.unwrap());
    }
    out
}

/// Pushes 64 junk layers of 1 MiB once into `repo` and a `.sig` manifest
/// naming them for each of `digests` (so the registry holds 64 MiB, not
/// 64 MiB per image).
async fn junk_signatures(env: &Env, repo: &str, digests: &[String]) {
    use sha2::Digest as _;
    let reference = env.reference(repo, "junk");
    let mut layers = Vec::new();
    for i in 0..64u8 {
        let junk: Vec<u8> = (0..(1usize << 20)).map(|j| (j as u8) ^ i).collect();
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&junk)));
        env.client
            .push_blob(&reference, junk, &digest)
            .await
            .unwrap();
        layers.push(json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": digest,
            "size": 1 << 20,
            "annotations": {"dev.cosignproject.cosign/signature": "AAAA"},
        }));
    }
    let config = b"{}".to_vec();
    let config_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&config)));
    env.client
        .push_blob(&reference, config, &config_digest)
        .await
        .unwrap();
    for d in digests {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
            "layers": layers,
        });
        let tag = format!("{}.sig", d.replace(':', "-"));
        env.client
            .push_manifest_raw(
                &env.reference(repo, &tag),
                serde_json::to_vec(&manifest).unwrap(),
                reqwest::header::HeaderValue::from_static(
                    "application/vnd.oci.image.manifest.v1+json",
                ),
            )
            .await
            .unwrap();
    }
}

/// Eight images, one on each black hole, of digests from `seed` on.
fn hanging(holes: &[String], seed: usize) -> Vec<String> {
    (0..8)
        .map(|h| format!("{}/evil/app@sha256:{:064x}", holes[h], seed + h))
        .collect()
}

/// The attacks run so far, with `shop`'s reviews beside each and sigil's
/// CPU seconds before each.
struct Attacks<'a> {
    served: &'a Served,
    shop: &'a mut std::vec::IntoIter<String>,
    table: Vec<(String, Vec<Answer>, Vec<Answer>)>,
    cpu: Vec<f64>,
}

impl Attacks<'_> {
    /// POSTs `bodies` to `path` at once while `shop` reviews; records
    /// both and returns the attack's answers.
    async fn attack(&mut self, name: &str, path: &str, bodies: Vec<Vec<u8>>) -> &[Answer] {
        let (attack, beside) =
            beside_shop(self.served, self.shop, at_once(self.served, path, bodies)).await;
        self.table.push((name.to_string(), attack, beside));
        self.cpu.push(self.served.cpu_seconds());
        &self.table.last().unwrap().1
    }
}

fn slowest(answers: &[Answer]) -> Duration {
    answers.iter().map(|a| a.took).max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hostile_tenant_is_bounded_in_bytes() {
    let env = Env::start();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    // Shop's cold images: signed, a new digest each review.
    let mut shop = Vec::new();
    for i in 0..200 {
        let repo = format!("shop/app{i}");
        let digest = env.push(&repo, "v1").await;
        env.sign(&repo, &digest, &k).await;
        shop.push(format!("{}/{repo}@{digest}", env.addr()));
    }
    // The image of the shared-work attack, kept apart.
    let shared = shop.pop().unwrap();
    let mut shop = shop.into_iter();
    // The images whose signatures are 64 junk layers of 1 MiB.
    let mut junk = Vec::new();
    for i in 0..64 {
        junk.push(env.push("evil/junk", &format!("v{i}")).await);
    }
    junk_signatures(&env, "evil/junk", &junk).await;
    let junk: Vec<String> = junk
        .iter()
        .map(|d| format!("{}/evil/junk@{d}", env.addr()))
        .collect();
    let holes = black_holes(20, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(dir.path(), &key_policy("signed", "**", &[&k], ""));
    let served = Served::start(dir.path(), &policies, &["--insecure-registry", env.addr()]);

    // The yardstick: shop alone.
    let alone = shop_reviews(
        &served,
        &mut shop,
        10,
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
    )
    .await;
    assert!(alone.iter().all(|a| a.allowed), "{alone:?}");
    let unloaded = slowest(&alone);
    println!("shop alone: {} reviews, slowest {unloaded:?}", alone.len());
    println!(
        "peak RSS after warming up: {} MiB",
        served.peak_rss_kib() >> 10
    );

    let mut run = Attacks {
        served: &served,
        shop: &mut shop,
        table: Vec::new(),
        cpu: vec![served.cpu_seconds()],
    };

    // 1. Escaping references, dry run.
    let escaping: Vec<String> = vec!["\u{7f}".repeat(4_000); 256];
    let body = pod("evil-a", "a", &escaping, true);
    println!("escaping review: {} KiB", body.len() >> 10);
    run.attack(
        "escaping references (48 × 1 MB dry-run)",
        "/validate",
        vec![body; 48],
    )
    .await;

    // 2. Big signatures: 4 Pods of 16 images, each `.sig` 64 × 1 MiB junk.
    let bodies: Vec<Vec<u8>> = junk
        .chunks(16)
        .enumerate()
        .map(|(i, c)| pod(&format!("evil-b{i}"), "b", c, false))
        .collect();
    let attack = run
        .attack(
            "big signatures (4 × 16 images × 64 MiB)",
            "/validate",
            bodies,
        )
        .await;
    // Each image is denied saying what was read and what was not; a
    // review may instead be refused outright (HTTP 503, the namespace's
    // share taken: a bound holding too), never admitted, and at least one
    // is answered with the reason.
    let read_cap = "60 more layers (62,914,560 bytes) not read: over sigil's limit of 4,194,304 bytes of layers per tag";
    for a in attack.iter() {
        assert!(!a.allowed, "{a:?}");
        assert!(
            a.message.contains(read_cap) || a.refusal.as_deref().is_some_and(|r| !r.is_empty()),
            "{a:?}"
        );
    }
    assert!(
        attack.iter().any(|a| a.message.contains(read_cap)),
        "{attack:?}"
    );

    // 3. /mutate on registries that never answer: 64 tags on 8 hosts.
    let tags: Vec<String> = (0..64)
        .map(|i| format!("{}/evil/app{i}:latest", holes[i % holes.len()]))
        .collect();
    let body = pod("evil-c", "c", &tags, false);
    run.attack(
        "/mutate on black holes (32 × 64 tags, 8 hosts)",
        "/mutate",
        vec![body; 32],
    )
    .await;

    // 4. Five namespaces flooding at once, each review hanging on black
    // holes until its deadline.
    let mut bodies = Vec::new();
    for ns in 0..5 {
        for r in 0..24 {
            let images = hanging(&holes, ns * 1_000 + r * 8);
            bodies.push(pod(&format!("evil-d{ns}"), "d", &images, false));
        }
    }
    run.attack(
        "five namespaces flooding (5 × 24 hanging reviews)",
        "/validate",
        bodies,
    )
    .await;

    // 5. An audit flood: real requests, 256 failing images each.
    let body = pod("evil-e", "e", &escaping, false);
    run.attack(
        "audit flood (48 × 256 failing images, real)",
        "/validate",
        vec![body; 48],
    )
    .await;
    let (mut table, mut cpu) = (run.table, run.cpu);

    // 6. Shared work: evil-f's share is taken by hangs, then it asks
    // first for the image shop asks for next.
    let hangs: Vec<Vec<u8>> = (0..2)
        .map(|r| pod("evil-f", "f", &hanging(&holes, 90_000 + r * 8), false))
        .collect();
    let hanging = {
        let (http, base) = (served.http.clone(), served.base.clone());
        tokio::spawn(async move {
            let all = hangs
                .into_iter()
                .map(|b| post(&http, format!("{base}/validate"), b));
            futures::future::join_all(all).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = {
        let (http, base) = (served.http.clone(), served.base.clone());
        let body = pod("evil-f", "f", std::slice::from_ref(&shared), false);
        tokio::spawn(async move { post(&http, format!("{base}/validate"), body).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let joined = post(
        &served.http,
        format!("{}/validate", served.base),
        pod("shop", "shop", std::slice::from_ref(&shared), false),
    )
    .await;
    let first = first.await.unwrap();
    let _ = hanging.await.unwrap();
    table.push((
        "shared work (evil-f's share hung, shop joins its computation)".into(),
        vec![first],
        vec![joined],
    ));

    cpu.push(served.cpu_seconds());
    let peak = served.peak_rss_kib();
    let audit = served.stop_raw();
    let longest_audit = audit.lines().map(str::len).max().unwrap_or(0);
    if let Some(l) = audit.lines().find(|l| l.len() > OUTPUT_GOAL / 4) {
        println!("a long audit line: {}…", &l[..l.len().min(600)]);
    }
    let records = audit
        .lines()
        .filter(|l| l.contains(r#""target":"audit""#))
        .count();

    println!();
    println!("| attack | shop refused | shop slowest (alone {unloaded:?}) | ratio | largest answer | sigil CPU |");
    println!("|---|---|---|---|---|---|");
    let mut worst_ratio: f64 = 0.0;
    for (i, (name, attack, beside)) in table.iter().enumerate() {
        let refused = beside.iter().filter(|a| !a.allowed).count();
        let slow = slowest(beside);
        let ratio = slow.as_secs_f64() / (unloaded.as_secs_f64() * 3.0 + 0.05);
        worst_ratio = worst_ratio.max(ratio);
        let largest = attack.iter().map(|a| a.bytes).max().unwrap_or(0);
        println!(
            "| {name} | {refused} of {} | {slow:?} | {:.2}× (goal ≤ 3× + 50 ms: {}) | {} KiB | {:.2} s |",
            beside.len(),
            slow.as_secs_f64() / unloaded.as_secs_f64(),
            if ratio <= 1.0 { "met" } else { "NOT met" },
            largest >> 10,
            cpu[i + 1] - cpu[i],
        );
    }
    println!();
    println!(
        "largest audit line: {longest_audit} bytes ({records} records); peak RSS {} MiB (goal ≤ {} MiB)",
        peak >> 10,
        RSS_GOAL_KIB >> 10
    );

    for (name, attack, beside) in &table {
        let refused: Vec<&Option<String>> = beside
            .iter()
            .filter(|a| !a.allowed)
            .map(|a| &a.refusal)
            .collect();
        assert!(refused.is_empty(), "{name}: shop refused {refused:?}");
        assert!(
            attack.iter().all(|a| a.bytes <= OUTPUT_GOAL),
            "{name}: an answer over 64 KiB"
        );
        // The attacks admit nothing (/mutate never denies; the shared
        // image is signed).
        assert!(
            name.starts_with("/mutate")
                || name.starts_with("shared")
                || attack.iter().all(|a| !a.allowed),
            "{name}: admitted"
        );
    }
    assert!(longest_audit <= OUTPUT_GOAL, "{longest_audit}");
    assert!(peak <= RSS_GOAL_KIB, "peak RSS {peak} KiB");
    // Shop never waits out another namespace's hangs (a deadline is 8 s);
    // the 3× + 50 ms goal is printed, a looser bound asserted.
    let shared_wait = table.last().unwrap().2[0].took;
    assert!(
        shared_wait < Duration::from_secs(3),
        "shop waited {shared_wait:?} on evil-f's share"
    );
    assert!(
        worst_ratio < 10.0,
        "shop slowed {worst_ratio:.1}× past its goal"
    );
}
