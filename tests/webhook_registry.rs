//! The admission pipeline against a real registry (Debian docker-registry on
//! loopback) holding real images and cosign-format signatures. Each case
//! asserts the decision and the message a person would see.

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use serde_json::json;
use sigil::decision::{FindingDecision, NoMatchAction, ServerMode};
use sigil_testkit::{attach_signatures, push_index, SignatureToAttach, TestKey, TestKeyKind};

fn key(kind: TestKeyKind) -> TestKey {
    TestKey::generate(kind).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_images_are_admitted_for_every_key_type() {
    let env = Env::start();
    for (i, kind) in [
        TestKeyKind::P256,
        TestKeyKind::P384,
        TestKeyKind::Ed25519,
        TestKeyKind::Rsa,
    ]
    .into_iter()
    .enumerate()
    {
        let k = key(kind);
        let repo = format!("team/app{i}");
        let digest = env.push(&repo, "v1").await;
        env.sign(&repo, &digest, &k).await;
        let (ev, audit) = pipeline(
            &key_policy("signed", &format!("{}/team/**", env.addr()), &[&k], ""),
            &Opts::for_registry(env.addr()),
        );
        let resp = review_pod(&ev, &format!("{}/{repo}:v1", env.addr())).await;
        assert!(allowed(&resp), "{kind:?}: {resp}");
        assert!(
            audit.records().is_empty(),
            "{kind:?}: nothing to audit on a clean allow"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_image_is_denied_with_image_digest_policy_and_reason() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/unsigned", "v1").await;
    let (ev, audit) = pipeline(
        &key_policy(
            "must-be-signed",
            &format!("{}/team/**", env.addr()),
            &[&k],
            "",
        ),
        &Opts::for_registry(env.addr()),
    );
    let image = format!("{}/team/unsigned:v1", env.addr());
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert_eq!(resp["status"]["code"], 403);
    let msg = message(&resp);
    assert_eq!(
        msg,
        format!(
            "spec.containers[0].image {image} ({digest}) fails policy \"must-be-signed\": authority-0: no signatures found at {}/team/unsigned:{}.sig",
            env.addr(),
            digest.replace(':', "-")
        )
    );
    let records = audit.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].finding.decision, FindingDecision::Denied);
    assert_eq!(records[0].finding.digest.as_deref(), Some(digest.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_by_another_key_is_denied() {
    let env = Env::start();
    let (trusted, other) = (key(TestKeyKind::P256), key(TestKeyKind::P256));
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &other).await;
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&trusted], ""),
        &Opts::for_registry(env.addr()),
    );
    let resp = review_pod(&ev, &format!("{}/team/app:v1", env.addr())).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).ends_with("authority-0: signature does not verify with key authority-0"),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_copied_from_another_digest_is_denied() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let signed = env.push("team/app", "signed").await;
    let target = env.push("team/app", "target").await;
    // A valid signature for `signed`, placed under `target`'s signature tag.
    let sig = SignatureToAttach::new(&k, &format!("{}/team/app", env.addr()), &signed);
    attach_signatures(&env.client, env.addr(), "team/app", &target, &[sig])
        .await
        .unwrap();
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let resp = review_pod(&ev, &format!("{}/team/app:target", env.addr())).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).ends_with(&format!(
            "authority-0: signature payload names {signed}, image is {target}"
        )),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_denied() {
    let env = Env::start();
    let k = key(TestKeyKind::Ed25519);
    let digest = env.push("team/app", "v1").await;
    let mut sig = SignatureToAttach::new(&k, &format!("{}/team/app", env.addr()), &digest);
    // Same digest, different identity: any byte change breaks the signature.
    sig.payload = String::from_utf8(sig.payload)
        .unwrap()
        .replace("team/app", "team/evil")
        .into_bytes();
    attach_signatures(&env.client, env.addr(), "team/app", &digest, &[sig])
        .await
        .unwrap();
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let resp = review_pod(&ev, &format!("{}/team/app:v1", env.addr())).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("signature does not verify with key authority-0"),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_moved_after_signing_is_denied_for_the_new_digest() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let old = env.push("team/app", "v1").await;
    env.sign("team/app", &old, &k).await;
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let image = format!("{}/team/app:v1", env.addr());
    assert!(allowed(&review_pod(&ev, &image).await));
    let new = env.push("team/app", "v1").await;
    assert_ne!(old, new);
    // A fresh pipeline (no cached tag) sees the moved tag.
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!("({new})"))
            && message(&resp).contains("no signatures found"),
        "{}",
        message(&resp)
    );
    // Pinning the old, signed digest still works.
    assert!(allowed(
        &review_pod(&ev, &format!("{}/team/app@{old}", env.addr())).await
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matching_policy_must_pass_and_any_authority_suffices() {
    let env = Env::start();
    let (k1, k2) = (key(TestKeyKind::P256), key(TestKeyKind::Rsa));
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k2).await;
    let image = format!("{}/team/app:v1", env.addr());

    // key OR key: signed by the second authority's key only.
    let (ev, _) = pipeline(
        &key_policy("either-key", "**", &[&k1, &k2], ""),
        &Opts::for_registry(env.addr()),
    );
    assert!(allowed(&review_pod(&ev, &image).await));

    // static pass AND static fail: the fail wins, with its message.
    let policies = format!(
        "{}{}",
        static_policy("always-pass", "**", "pass", None),
        static_policy(
            "frozen",
            &format!("{}/team/*", env.addr()),
            "fail",
            Some("deploys are frozen")
        )
    );
    let (ev, _) = pipeline(&policies, &Opts::for_registry(env.addr()));
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).ends_with("fails policy \"frozen\": authority-0: deploys are frozen"),
        "{}",
        message(&resp)
    );
    assert!(!message(&resp).contains("always-pass"));

    // key policy AND static fail.
    let policies = format!(
        "{}{}",
        key_policy("signed", "**", &[&k2], ""),
        static_policy("deny-all", "**", "fail", None)
    );
    let (ev, _) = pipeline(&policies, &Opts::for_registry(env.addr()));
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("\"deny-all\": authority-0: disallowed by static policy"),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_rule_deny_warn_allow_and_no_registry_contact() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    env.push("other/app", "v1").await;
    let image = format!("{}/other/app:v1", env.addr());
    let policy = key_policy("p", "ghcr.io/**", &[&k], "");
    let before = env.registry.count_requests("/v2/other/app/");
    for (action, want_allowed, want_warnings) in [
        (NoMatchAction::Deny, false, 0),
        (NoMatchAction::Warn, true, 1),
        (NoMatchAction::Allow, true, 0),
    ] {
        let mut o = Opts::for_registry(env.addr());
        o.no_match = action;
        let (ev, _) = pipeline(&policy, &o);
        let resp = review_pod(&ev, &image).await;
        assert_eq!(allowed(&resp), want_allowed, "{action:?}");
        assert_eq!(warnings(&resp).len(), want_warnings, "{action:?}");
        if !want_allowed {
            assert!(
                message(&resp).contains("no ClusterImagePolicy matches this image"),
                "{}",
                message(&resp)
            );
        }
        if want_warnings == 1 {
            assert!(warnings(&resp)[0]
                .contains("no ClusterImagePolicy matches this image [mode no-match]"));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        env.registry.count_requests("/v2/other/app/"),
        before,
        "an unmatched image must not be looked up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_admits_with_warnings() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    env.push("team/app", "v1").await;
    let (ev, audit) = pipeline(
        &key_policy("soft", "**", &[&k], "  mode: warn\n"),
        &Opts::for_registry(env.addr()),
    );
    let resp = review_pod(&ev, &format!("{}/team/app:v1", env.addr())).await;
    assert!(allowed(&resp));
    let w = warnings(&resp);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("fails policy \"soft\": authority-0: no signatures found")
            && w[0].ends_with("[mode warn]"),
        "{w:?}"
    );
    assert_eq!(audit.records()[0].finding.decision, FindingDecision::Warned);
}

/// In audit mode a workload sigil cannot read, or will not read whole, is
/// admitted unchecked, and the audit log says so, with the reason; in
/// enforce mode the same is a deny naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_workloads_are_audited_unchecked_or_denied() {
    let k = key(TestKeyKind::P256);
    let mut o = Opts::for_registry("127.0.0.1:1");
    o.server_mode = ServerMode::Audit;
    let (audit_ev, audit) = pipeline(&key_policy("p", "**", &[&k], ""), &o);
    let (enforce_ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry("127.0.0.1:1"),
    );
    let mut malformed = pod_review("bad-uid", "shop", "bad", "x:1");
    malformed["request"]["object"]["spec"]["containers"] = json!("not a list");
    let mut too_many = pod_review("many-uid", "shop", "many", "x:1");
    too_many["request"]["object"]["spec"]["containers"] = json!((0..300)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("r.example/c{i}:v1")}))
        .collect::<Vec<_>>());
    for (body, field, says) in [
        (&malformed, "spec", "cannot read the pod spec of this Pod at spec"),
        (
            &too_many,
            "spec.containers",
            "spec.containers: this Pod has 300 images (containers of every kind and image volumes), over sigil's limit of 256 per workload",
        ),
    ] {
        let resp = review(&enforce_ev, body).await;
        assert!(!allowed(&resp));
        assert!(message(&resp).contains(says), "{}", message(&resp));
        let resp = review(&audit_ev, body).await;
        assert!(allowed(&resp), "{resp}");
        let records = audit.records();
        let r = serde_json::to_value(records.last().unwrap()).unwrap();
        assert_eq!(r["uid"], body["request"]["uid"]);
        assert_eq!(r["decision"], "audited");
        assert_eq!(r["mode"], "unchecked");
        assert_eq!(r["field"], field);
        assert!(
            r["reasons"][0].as_str().unwrap().starts_with("not checked: ")
                && r["reasons"][0].as_str().unwrap().contains(says),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_admits_and_writes_the_audit_record() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/app", "v1").await;
    let mut o = Opts::for_registry(env.addr());
    o.server_mode = ServerMode::Audit;
    let (ev, audit) = pipeline(&key_policy("p", "**", &[&k], ""), &o);
    let resp = review(
        &ev,
        &pod_review(
            "audit-uid",
            "shop",
            "web-1",
            &format!("{}/team/app:v1", env.addr()),
        ),
    )
    .await;
    assert!(allowed(&resp));
    assert!(message(&resp).is_empty());
    let records = audit.records();
    assert_eq!(records.len(), 1);
    let r = serde_json::to_value(&records[0]).unwrap();
    assert_eq!(r["target"], "audit");
    assert_eq!(r["uid"], "audit-uid");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["kind"], "Pod");
    assert_eq!(r["namespace"], "shop");
    assert_eq!(r["name"], "web-1");
    assert_eq!(r["user"], "demo-user");
    assert_eq!(r["digest"], json!(digest));
    assert_eq!(r["policy"], "p");
    assert_eq!(r["decision"], "audited");
    assert_eq!(r["authorities"][0]["name"], "authority-0");
    assert!(r["reasons"][0]
        .as_str()
        .unwrap()
        .contains("no signatures found"));

    // A policy in audit mode behaves the same inside an enforcing server.
    let (ev, audit) = pipeline(
        &key_policy("p", "**", &[&k], "  mode: audit\n"),
        &Opts::for_registry(env.addr()),
    );
    assert!(allowed(
        &review_pod(&ev, &format!("{}/team/app:v1", env.addr())).await
    ));
    assert_eq!(
        audit.records()[0].finding.decision,
        FindingDecision::Audited
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_denies_in_enforce_and_is_logged_in_audit() {
    let port = sigil_testkit::free_port().unwrap();
    let dead = format!("127.0.0.1:{port}");
    let k = key(TestKeyKind::P256);
    let image = format!("{dead}/team/app:v1");
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(&dead),
    );
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!("fails policy \"p\": cannot resolve digest: registry {dead} unreachable: connection refused")),
        "{}",
        message(&resp)
    );
    let mut o = Opts::for_registry(&dead);
    o.server_mode = ServerMode::Audit;
    let (ev, audit) = pipeline(&key_policy("p", "**", &[&k], ""), &o);
    assert!(allowed(&review_pod(&ev, &image).await));
    assert!(audit.records()[0].finding.reasons[0].contains("unreachable: connection refused"));
}

/// A TCP proxy that waits `delay` before forwarding each connection.
async fn slow_proxy(target: String, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_slower_than_the_deadline_is_denied_as_timeout() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k).await;
    let slow = slow_proxy(env.addr().to_string(), Duration::from_secs(20)).await;
    let mut o = Opts::for_registry(&slow);
    o.verify_timeout = Duration::from_millis(1500);
    let (ev, _) = pipeline(&key_policy("p", "**", &[&k], ""), &o);
    let started = std::time::Instant::now();
    let resp = review_pod(&ev, &format!("{slow}/team/app:v1")).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered at the deadline, long before the registry would have"
    );
    assert!(!allowed(&resp));
    assert!(
        message(&resp).ends_with("fails policy \"p\": timed out after 1.5s"),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_init_and_ephemeral_containers_are_all_checked() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    for repo in ["team/app", "team/init"] {
        let d = env.push(repo, "v1").await;
        env.sign(repo, &d, &k).await;
    }
    let debug_digest = env.push("team/debug", "v1").await;
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let a = env.addr();
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "dep-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web", "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"selector": {}, "template": {"spec": {
                    "initContainers": [{"name": "i", "image": format!("{a}/team/init:v1")}],
                    "containers": [{"name": "c", "image": format!("{a}/team/app:v1")}],
                    "ephemeralContainers": [{"name": "e", "image": format!("{a}/team/debug:v1")}]
                }}}}
        }
    });
    let resp = review(&ev, &body).await;
    assert!(!allowed(&resp));
    let msg = message(&resp);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.starts_with(&format!(
            "spec.template.spec.ephemeralContainers[0].image {a}/team/debug:v1 ({debug_digest})"
        )),
        "{msg}"
    );

    // Scale subresource and DELETE are not checked.
    let mut scale = body.clone();
    scale["request"]["subResource"] = json!("scale");
    assert!(allowed(&review(&ev, &scale).await));
    let mut delete = body.clone();
    delete["request"]["operation"] = json!("DELETE");
    assert!(allowed(&review(&ev, &delete).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_digest_is_what_gets_verified() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let amd = env.push("team/multi", "amd64").await;
    let arm = env.push("team/multi", "arm64").await;
    let index = push_index(
        &env.client,
        &env.reference("team/multi", "v1"),
        &[(amd.clone(), "amd64"), (arm, "arm64")],
    )
    .await
    .unwrap();
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let image = format!("{}/team/multi:v1", env.addr());
    // Signing only one platform does not sign the index.
    env.sign("team/multi", &amd, &k).await;
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!("({index})")),
        "{}",
        message(&resp)
    );
    env.sign("team/multi", &index, &k).await;
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    assert!(allowed(&review_pod(&ev, &image).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_in_another_repository_via_source_oci() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/app", "v1").await;
    env.sign("signatures/store", &digest, &k).await;
    let image = format!("{}/team/app:v1", env.addr());
    let policy = format!(
        "{}      source:\n        - oci: {}/signatures/store\n",
        key_policy("p", "**", &[&k], ""),
        env.addr()
    );
    let (ev, _) = pipeline(&policy, &Opts::for_registry(env.addr()));
    assert!(allowed(&review_pod(&ev, &image).await), "{policy}");
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp) && message(&resp).contains("no signatures found"));
}

/// `source[].tagPrefix`: the signature tag is `<prefix>sha256-<hex>.sig`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_tags_with_a_prefix_via_source_tag_prefix() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/app", "v1").await;
    let sig = SignatureToAttach::new(&k, &format!("{}/team/app", env.addr()), &digest);
    let tag = format!("signed-{}", sigil::image::cosign_tag(&digest, "sig"));
    sigil_testkit::attach_signatures_at(&env.client, env.addr(), "team/app", &tag, &[sig])
        .await
        .unwrap();
    let image = format!("{}/team/app:v1", env.addr());
    let with_prefix = format!(
        "{}      source:\n        - tagPrefix: signed-\n",
        key_policy("p", "**", &[&k], "")
    );
    let (ev, _) = pipeline(&with_prefix, &Opts::for_registry(env.addr()));
    let resp = review_pod(&ev, &image).await;
    assert!(allowed(&resp), "{}", message(&resp));
    // Without the prefix, the plain tag holds nothing.
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!(
            "no signatures found at {}/team/app:{}",
            env.addr(),
            sigil::image::cosign_tag(&digest, "sig")
        )),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_reviews_make_one_set_of_registry_requests() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/hot", "v1").await;
    env.sign("team/hot", &digest, &k).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sig_uri = format!("/v2/team/hot/manifests/{}", digest.replace(':', "-"));
    let base = env.registry.count_requests("/v2/team/hot/");
    let (tag_base, sig_base) = (
        env.registry.count_requests("/v2/team/hot/manifests/v1"),
        env.registry.count_requests(&sig_uri),
    );
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    // Room for all hundred at once in one namespace (the fair shares are
    // tests/tenants.rs's business): a namespace's slots past its first
    // leave a quarter of the total free, so 160 in all.
    let mut ev = std::sync::Arc::try_unwrap(ev).ok().expect("one owner");
    ev.gate = std::sync::Arc::new(sigil::gate::ReviewGate::new(160, 128));
    let ev = std::sync::Arc::new(ev);
    let image = format!("{}/team/hot:v1", env.addr());
    let responses = join_all((0..100).map(|i| {
        let ev = ev.clone();
        let image = image.clone();
        async move {
            review(
                &ev,
                &pod_review(&format!("uid-{i}"), "default", "p", &image),
            )
            .await
        }
    }))
    .await;
    assert!(responses.iter().all(allowed));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tag_lookups = env.registry.count_requests("/v2/team/hot/manifests/v1") - tag_base;
    let sig_manifests = env.registry.count_requests(&sig_uri) - sig_base;
    let total = env.registry.count_requests("/v2/team/hot/") - base;
    assert_eq!(tag_lookups, 1, "one tag resolution");
    assert_eq!(sig_manifests, 1, "one signature manifest fetch");
    // HEAD tag, GET .sig manifest, GET payload blob.
    assert_eq!(total, 3, "registry log:\n{}", env.registry.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_fails_closed_and_others_keep_working() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k).await;
    let broken = "---\napiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: broken\nspec:\n  images:\n    - glob: \"**/legacy/**\"\n  authorities:\n    - key:\n        data: not-a-key\n";
    let policies = format!(
        "{broken}{}",
        key_policy("good", &format!("{}/team/**", env.addr()), &[&k], "")
    );
    let (ev, _) = pipeline(&policies, &Opts::for_registry(env.addr()));
    assert!(allowed(
        &review_pod(&ev, &format!("{}/team/app:v1", env.addr())).await
    ));
    let resp = review_pod(&ev, &format!("{}/x/legacy/app:v1", env.addr())).await;
    assert!(!allowed(&resp));
    assert!(message(&resp).contains("(digest unresolved) fails policy \"broken\": policy is invalid: spec.authorities[0].key.data: not a PEM public key"), "{}", message(&resp));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        env.registry.count_requests("/legacy/"),
        0,
        "an invalid policy needs no registry lookup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_fields_fail_closed_naming_the_field() {
    let env = Env::start();
    let digest = env.push("team/app", "v1").await;
    let _ = digest;
    let policy = "---\napiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: kms\nspec:\n  images:\n    - glob: \"**\"\n  authorities:\n    - key:\n        kms: gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k\n";
    let (ev, _) = pipeline(policy, &Opts::for_registry(env.addr()));
    let resp = review_pod(&ev, &format!("{}/team/app:v1", env.addr())).await;
    assert!(!allowed(&resp));
    assert!(message(&resp).contains("authority-0: spec.authorities[0].key.kms is not supported yet by sigil; failing closed"), "{}", message(&resp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_containers_subresource_is_checked() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let app = env.push("team/app", "v1").await;
    env.sign("team/app", &app, &k).await;
    env.push("team/debug", "v1").await;
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(env.addr()),
    );
    let a = env.addr();
    // Kubernetes >= 1.22: the Pod itself, on UPDATE of pods/ephemeralcontainers.
    let mut body = pod_review("eph-1", "default", "p", &format!("{a}/team/app:v1"));
    body["request"]["operation"] = json!("UPDATE");
    body["request"]["subResource"] = json!("ephemeralcontainers");
    body["request"]["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "dbg", "image": format!("{a}/team/debug:v1")}]);
    let resp = review(&ev, &body).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).starts_with(&format!(
            "spec.ephemeralContainers[0].image {a}/team/debug:v1"
        )),
        "{}",
        message(&resp)
    );
    // Older servers send an EphemeralContainers object.
    body["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "EphemeralContainers"});
    body["request"]["object"] = json!({"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "p"},
        "ephemeralContainers": [{"name": "dbg", "image": format!("{a}/team/debug:v1")}]});
    let resp = review(&ev, &body).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("team/debug:v1"),
        "{}",
        message(&resp)
    );
    // The status subresource is not checked.
    body["request"]["subResource"] = json!("status");
    assert!(allowed(&review(&ev, &body).await));
}

/// A TCP proxy to `target` that drops connections while `down` is set.
async fn switchable_proxy(
    target: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_failures_are_not_cached() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k).await;
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let proxy = switchable_proxy(env.addr().to_string(), down.clone()).await;
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(&proxy),
    );
    let image = format!("{proxy}/team/app:v1");
    let resp = review_pod(&ev, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!("cannot resolve digest: registry {proxy}")),
        "{}",
        message(&resp)
    );
    // The registry is back: the very next review verifies and admits.
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let resp = review_pod(&ev, &image).await;
    assert!(allowed(&resp), "{}", message(&resp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_pins_policy_matched_tags_to_digests() {
    use base64::Engine as _;
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k).await;
    env.push("other/app", "v1").await;
    let a = env.addr();
    let (ev, _) = pipeline(
        &key_policy("p", &format!("{a}/team/**"), &[&k], ""),
        &Opts::for_registry(a),
    );
    let mut body = pod_review("m-1", "default", "p", &format!("{a}/team/app:v1"));
    body["request"]["object"]["spec"]["containers"] = json!([
        {"name": "a", "image": format!("{a}/team/app:v1")},
        {"name": "b", "image": format!("{a}/other/app:v1")},
        {"name": "c", "image": format!("{a}/team/app@{digest}")},
    ]);
    body["request"]["object"]["spec"]["initContainers"] =
        json!([{"name": "i", "image": format!("{a}/team/app:v1")}]);
    let bytes = ev
        .mutate(&serde_json::to_vec(&body).unwrap())
        .await
        .unwrap();
    let resp: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(resp["response"]["allowed"], true);
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(resp["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: serde_json::Value = serde_json::from_slice(&patch).unwrap();
    let pinned = format!("{a}/team/app:v1@{digest}");
    assert_eq!(
        patch,
        json!([
            {"op": "replace", "path": "/spec/initContainers/0/image", "value": pinned},
            {"op": "replace", "path": "/spec/containers/0/image", "value": pinned},
        ]),
        "only policy-matched tags are pinned"
    );
    // The validating call that follows is warm: no new tag lookup.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lookups = env.registry.count_requests("/v2/team/app/manifests/v1");
    body["request"]["object"]["spec"]["containers"] =
        json!([{"name": "a", "image": format!("{a}/team/app:v1")}]);
    assert!(allowed(&review(&ev, &body).await));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        env.registry.count_requests("/v2/team/app/manifests/v1"),
        lookups
    );
    // A pod with nothing to pin gets no patch.
    let plain = pod_review("m-2", "default", "p", &format!("{a}/other/app:v1"));
    let resp: serde_json::Value = serde_json::from_slice(
        &ev.mutate(&serde_json::to_vec(&plain).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(resp["response"]["patch"].is_null());
}

/// The chart's mutating webhook has `reinvocationPolicy: IfNeeded`: when a
/// later mutating webhook (a sidecar injector) adds an image by tag, the
/// apiserver calls sigil again with the object as it now is. That second
/// pass pins the added tag, leaves what the first pass pinned alone, and a
/// third pass has nothing left to change; the validating review of the
/// result admits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_mutating_pass_pins_a_tag_added_after_the_first() {
    use base64::Engine as _;
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let app = env.push("team/app", "v1").await;
    env.sign("team/app", &app, &k).await;
    let sidecar = env.push("team/sidecar", "v2").await;
    env.sign("team/sidecar", &sidecar, &k).await;
    let a = env.addr();
    let (ev, _) = pipeline(
        &key_policy("p", &format!("{a}/team/**"), &[&k], ""),
        &Opts::for_registry(a),
    );
    let mutate = |object: serde_json::Value| {
        let mut body = pod_review("r-1", "default", "p", "unused");
        body["request"]["object"] = object;
        let ev = &ev;
        async move {
            let bytes = ev
                .mutate(&serde_json::to_vec(&body).unwrap())
                .await
                .unwrap();
            let resp: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(resp["response"]["allowed"], true, "{resp}");
            resp["response"]["patch"].as_str().map(|p| {
                serde_json::from_slice::<json_patch::Patch>(
                    &base64::engine::general_purpose::STANDARD.decode(p).unwrap(),
                )
                .unwrap()
            })
        }
    };
    let mut object =
        pod_review("r-0", "default", "p", &format!("{a}/team/app:v1"))["request"]["object"].clone();
    // First pass: the app's tag is pinned.
    let first = mutate(object.clone()).await.expect("a patch");
    json_patch::patch(&mut object, &first).unwrap();
    assert_eq!(
        object["spec"]["containers"][0]["image"],
        format!("{a}/team/app:v1@{app}")
    );
    // A later webhook injects a sidecar by tag.
    object["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "proxy", "image": format!("{a}/team/sidecar:v2")}));
    // The reinvocation pins it, and only it.
    let second = mutate(object.clone())
        .await
        .expect("a patch for the sidecar");
    assert_eq!(
        serde_json::to_value(&second).unwrap(),
        json!([{"op": "replace", "path": "/spec/containers/1/image", "value": format!("{a}/team/sidecar:v2@{sidecar}")}])
    );
    json_patch::patch(&mut object, &second).unwrap();
    assert!(
        mutate(object.clone()).await.is_none(),
        "nothing left to pin"
    );
    let mut body = pod_review("r-2", "default", "p", "unused");
    body["request"]["object"] = object;
    let resp = review(&ev, &body).await;
    assert!(allowed(&resp), "{}", message(&resp));
}

/// The policies that claim an image are the same before and after
/// `/mutate` pins it: a round trip (`/mutate`, the patch applied,
/// `/validate`) under `--no-match-policy allow`, where a policy lost after
/// pinning would admit an unsigned image. Globs that name the implied tag
/// (`app:latest` for `app`) and globs that match only the reference as
/// written (`app`), over a Pod, a Deployment and a CronJob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_claims_an_image_still_claims_it_once_pinned() {
    use base64::Engine as _;
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    let a = env.addr();
    let signed = env.push("tagged/signed", "latest").await;
    env.sign("tagged/signed", &signed, &k).await;
    env.push("tagged/unsigned", "latest").await;
    let written_signed = env.push("written/signed", "latest").await;
    env.sign("written/signed", &written_signed, &k).await;
    env.push("written/unsigned", "latest").await;
    let policies = format!(
        "{}{}",
        key_policy("implied-tag", &format!("{a}/tagged/*:latest"), &[&k], ""),
        key_policy("as-written", &format!("{a}/written/*"), &[&k], ""),
    );
    let mut o = Opts::for_registry(a);
    o.no_match = NoMatchAction::Allow;
    let (ev, _) = pipeline(&policies, &o);
    let pod_spec = |image: &str| json!({"containers": [{"name": "c", "image": image}]});
    let objects = |image: &str| {
        vec![
            (
                json!({"group": "", "version": "v1", "kind": "Pod"}),
                json!({"group": "", "version": "v1", "resource": "pods"}),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}, "spec": pod_spec(image)}),
            ),
            (
                json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
                json!({"group": "apps", "version": "v1", "resource": "deployments"}),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                       "spec": {"selector": {}, "template": {"spec": pod_spec(image)}}}),
            ),
            (
                json!({"group": "batch", "version": "v1", "kind": "CronJob"}),
                json!({"group": "batch", "version": "v1", "resource": "cronjobs"}),
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "w"},
                       "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec(image)}}}}}),
            ),
        ]
    };
    let review_of = |kind: &serde_json::Value,
                     resource: &serde_json::Value,
                     object: &serde_json::Value| {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "rt", "kind": kind, "resource": resource, "name": "w", "namespace": "default",
                        "operation": "CREATE", "userInfo": {"username": "u"}, "object": object}
        })
    };
    for (written, admitted) in [
        (format!("{a}/tagged/signed"), true),
        (format!("{a}/tagged/unsigned"), false),
        (format!("{a}/written/signed"), true),
        (format!("{a}/written/unsigned"), false),
    ] {
        for (kind, resource, object) in objects(&written) {
            let before = review(&ev, &review_of(&kind, &resource, &object)).await;
            assert_eq!(
                allowed(&before),
                admitted,
                "{written} {kind} before pinning: {}",
                message(&before)
            );
            let bytes = ev
                .mutate(&serde_json::to_vec(&review_of(&kind, &resource, &object)).unwrap())
                .await
                .unwrap();
            let resp: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(
                        resp["response"]["patch"]
                            .as_str()
                            .expect("a patch pinning the tag"),
                    )
                    .unwrap(),
            )
            .unwrap();
            let mut pinned = object.clone();
            json_patch::patch(&mut pinned, &patch).unwrap();
            assert!(
                serde_json::to_string(&pinned)
                    .unwrap()
                    .contains(&format!("{written}@sha256:")),
                "{pinned}"
            );
            let after = review(&ev, &review_of(&kind, &resource, &pinned)).await;
            assert_eq!(
                allowed(&after),
                admitted,
                "{written} {kind} after pinning (a policy lost is an unsigned image admitted): {}",
                message(&after)
            );
            if !admitted {
                assert!(
                    message(&after).contains("fails policy"),
                    "{}",
                    message(&after)
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_match_selects_resources_and_labels() {
    let env = Env::start();
    let k = key(TestKeyKind::P256);
    env.push("team/app", "v1").await;
    let image = format!("{}/team/app:v1", env.addr());
    let extra = "  match:\n    - group: apps\n      version: v1\n      resource: deployments\n      selector:\n        matchLabels:\n          tier: prod\n";
    let mut o = Opts::for_registry(env.addr());
    o.no_match = NoMatchAction::Allow;
    let (ev, _) = pipeline(&key_policy("prod-deployments", "**", &[&k], extra), &o);
    let deployment = |labels: serde_json::Value| {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "d", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "web", "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"},
                "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
                    "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}
            }
        })
    };
    let resp = review(&ev, &deployment(json!({"tier": "prod"}))).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("fails policy \"prod-deployments\""),
        "{}",
        message(&resp)
    );
    assert!(
        allowed(&review(&ev, &deployment(json!({"tier": "dev"}))).await),
        "selector does not match"
    );
    assert!(
        allowed(&review_pod(&ev, &image).await),
        "pods are not selected"
    );
}
