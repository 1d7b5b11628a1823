//! The ways around the gate (issue 9), each closed and shown against a real
//! docker-registry: tags instead of digests, other spellings of a registry
//! host, image volumes, `spec.policy` inputs sigil does not provide, an
//! invalid glob, and UPDATEs that change no image.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sigil::decision::{FindingDecision, NoMatchAction, ServerMode};
use sigil_testkit::{free_port, TestKey, TestKeyKind};

fn key() -> TestKey {
    TestKey::generate(TestKeyKind::P256).unwrap()
}

/// The product's defaults: digests required, unmatched images denied.
fn strict(addr: &str) -> Opts {
    let mut o = Opts::for_registry(addr);
    o.require_digest = true;
    o
}

fn review_body(operation: &str, object: Value, old: Option<Value>) -> Value {
    let mut body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "uid-g", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p", "namespace": "default", "operation": operation,
            "userInfo": {"username": "tenant"}, "object": object,
        }
    });
    if let Some(old) = old {
        body["request"]["oldObject"] = old;
    }
    body
}

fn pod(containers: &[&str], volumes: &[&str]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "containers": containers.iter().enumerate()
                .map(|(i, c)| json!({"name": format!("c{i}"), "image": c})).collect::<Vec<_>>(),
            "volumes": volumes.iter().enumerate()
                .map(|(i, r)| json!({"name": format!("v{i}"), "image": {"reference": r}})).collect::<Vec<_>>(),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_a_policy_matches_must_be_pinned_to_a_digest() {
    let env = Env::start();
    let k = key();
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &k).await;
    let policy = key_policy("signed", &format!("{}/team/**", env.addr()), &[&k], "");
    let (ev, audit) = pipeline(&policy, &strict(env.addr()));

    let tag = format!("{}/team/app:v1", env.addr());
    let before = env.registry.count_requests("/v2/team/app/");
    let resp = review_pod(&ev, &tag).await;
    assert!(!allowed(&resp));
    assert_eq!(
        message(&resp),
        format!(
            "spec.containers[0].image {tag} (digest unresolved) fails policy \"signed\": {}",
            sigil::service::unpinned_reason(&tag)
        )
    );
    assert!(message(&resp).contains("must be an image digest"));
    assert!(message(&resp).contains("/mutate"));
    assert_eq!(
        env.registry.count_requests("/v2/team/app/"),
        before,
        "a tag that will be denied costs no registry request"
    );
    assert_eq!(audit.records()[0].finding.decision, FindingDecision::Denied);

    // Pinned, by digest alone or tag@digest: verified and admitted.
    for image in [
        format!("{}/team/app@{digest}", env.addr()),
        format!("{}/team/app:v1@{digest}", env.addr()),
    ] {
        let resp = review_pod(&ev, &image).await;
        assert!(allowed(&resp), "{image}: {resp}");
    }

    // An image no policy matches is unaffected by the requirement.
    let mut opts = strict(env.addr());
    opts.no_match = NoMatchAction::Allow;
    let (ev2, _) = pipeline(&policy, &opts);
    let resp = review_pod(&ev2, "nginx:1.27").await;
    assert!(allowed(&resp), "{resp}");

    // A warn-mode policy warns; server audit mode audits.
    let warn = policy.replace("spec:\n", "spec:\n  mode: warn\n");
    let (ev3, _) = pipeline(&warn, &strict(env.addr()));
    let resp = review_pod(&ev3, &tag).await;
    assert!(allowed(&resp));
    assert!(
        warnings(&resp)[0].contains("must be an image digest"),
        "{resp}"
    );
    let mut audit_opts = strict(env.addr());
    audit_opts.server_mode = ServerMode::Audit;
    let (ev4, audit4) = pipeline(&policy, &audit_opts);
    assert!(allowed(&review_pod(&ev4, &tag).await));
    let r = &audit4.records()[0];
    assert_eq!(r.finding.decision, FindingDecision::Audited);
    assert!(r.finding.reasons[0].contains("must be an image digest"));

    // `--require-digest=false` (validating webhook only, risk accepted):
    // the tag is resolved and verified as before.
    let (ev5, _) = pipeline(&policy, &Opts::for_registry(env.addr()));
    assert!(allowed(&review_pod(&ev5, &tag).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_the_registry_host_meets_the_same_policy() {
    let env = Env::start();
    let k = key();
    let port = env.addr().rsplit(':').next().unwrap().to_string();
    let host = format!("localhost:{port}");
    let digest = env.push("team/unsigned", "v1").await;
    // A strict policy for the registry as `localhost:PORT`, and unmatched
    // images allowed: a spelling the glob misses would be admitted.
    let policy = key_policy("strict", &format!("{host}/team/**"), &[&k], "");
    let mut opts = strict(env.addr());
    opts.no_match = NoMatchAction::Allow;
    opts.insecure.push(host.clone());
    let (ev, _) = pipeline(&policy, &opts);
    for spelling in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("Localhost:{port}"),
        format!("LocalHost:{port}"),
    ] {
        let image = format!("{spelling}/team/unsigned@{digest}");
        let resp = review_pod(&ev, &image).await;
        assert!(
            !allowed(&resp),
            "{image} must meet policy \"strict\": {resp}"
        );
        assert!(
            message(&resp).contains(
                "fails policy \"strict\": authority-0: no signatures found at localhost:"
            ),
            "{image}: {}",
            message(&resp)
        );
    }
    // Another port is another registry: not this policy's business.
    let other = format!("localhost:{}/team/unsigned@{digest}", free_port().unwrap());
    assert!(allowed(&review_pod(&ev, &other).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_are_verified_and_pinned_like_containers() {
    let env = Env::start();
    let k = key();
    let app = env.push("team/app", "v1").await;
    env.sign("team/app", &app, &k).await;
    let model = env.push("team/model", "v1").await;
    let signed_model = env.push("team/signed-model", "v1").await;
    env.sign("team/signed-model", &signed_model, &k).await;
    let policy = key_policy("signed", &format!("{}/team/**", env.addr()), &[&k], "");
    let (ev, audit) = pipeline(&policy, &strict(env.addr()));
    let a = env.addr();

    let body = review_body(
        "CREATE",
        pod(
            &[&format!("{a}/team/app@{app}")],
            &[&format!("{a}/team/model@{model}")],
        ),
        None,
    );
    let resp = review(&ev, &body).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).starts_with(&format!(
            "spec.volumes[0].image.reference {a}/team/model@{model} ({model}) fails policy \"signed\": authority-0: no signatures found"
        )),
        "{}",
        message(&resp)
    );
    assert_eq!(
        audit.records()[0].finding.field,
        "spec.volumes[0].image.reference"
    );

    let body = review_body(
        "CREATE",
        pod(
            &[&format!("{a}/team/app@{app}")],
            &[&format!("{a}/team/signed-model@{signed_model}")],
        ),
        None,
    );
    assert!(allowed(&review(&ev, &body).await));

    // /mutate pins an image volume written by tag, at its own path.
    let body = review_body(
        "CREATE",
        pod(
            &[&format!("{a}/team/app@{app}")],
            &[&format!("{a}/team/model:v1")],
        ),
        None,
    );
    let out: Value = serde_json::from_slice(
        &ev.mutate(&serde_json::to_vec(&body).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    let patch = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        out["response"]["patch"].as_str().expect("a patch"),
    )
    .unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(
        patch,
        json!([{"op": "replace", "path": "/spec/volumes/0/image/reference", "value": format!("{a}/team/model:v1@{model}")}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_inputs_sigil_does_not_provide_fail_closed_naming_the_field() {
    let env = Env::start();
    let digest = env.push("team/app", "v1").await;
    for field in [
        "includeSpec",
        "includeObjectMeta",
        "includeTypeMeta",
        "fetchConfigFile",
    ] {
        let policy = format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: no-hostpid\nspec:\n  images: [{{glob: \"{}/team/**\"}}]\n  authorities: [{{name: any, static: {{action: pass}}}}]\n  policy:\n    type: rego\n    {field}: true\n    data: |\n      package sigstore\n      isCompliant {{ not input.spec.hostPID }}\n",
            env.addr()
        );
        let (ev, _) = pipeline(&policy, &strict(env.addr()));
        let resp = review_pod(&ev, &format!("{}/team/app@{digest}", env.addr())).await;
        assert!(
            !allowed(&resp),
            "{field}: a program over missing data must not pass"
        );
        assert!(
            message(&resp).contains(&format!(
                "uses spec.policy.{field}, which this version of sigil does not verify"
            )),
            "{field}: {}",
            message(&resp)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_glob_does_not_release_the_policys_other_images() {
    let env = Env::start();
    let k = key();
    let digest = env.push("team/app", "v1").await;
    let policy = key_policy("strict", &format!("{}/team/**", env.addr()), &[&k], "")
        .replace("  images:\n", "  images:\n    - glob: \"team/[a-z]*\"\n");
    let mut opts = strict(env.addr());
    opts.no_match = NoMatchAction::Allow;
    let (ev, _) = pipeline(&policy, &opts);
    let resp = review_pod(&ev, &format!("{}/team/app@{digest}", env.addr())).await;
    assert!(!allowed(&resp), "{resp}");
    assert!(
        message(&resp).contains(
            "fails policy \"strict\": policy is invalid: spec.images[0].glob: invalid glob"
        ),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_that_change_no_image_need_no_registry() {
    // A registry that is down: anything that needs it fails closed.
    let down = format!("127.0.0.1:{}", free_port().unwrap());
    let k = key();
    let policy = key_policy("signed", &format!("{down}/**"), &[&k], "");
    let mut opts = strict(&down);
    opts.verify_timeout = Duration::from_secs(3);
    let (ev, audit) = pipeline(&policy, &opts);
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let running = pod(
        &[&format!("{down}/team/app@{}", d('a'))],
        &[&format!("{down}/team/m@{}", d('b'))],
    );

    // Labels, finalizers, annotations: admitted, no registry needed.
    let mut relabelled = running.clone();
    relabelled["metadata"]["labels"] = json!({"release": "2"});
    let resp = review(
        &ev,
        &review_body("UPDATE", relabelled, Some(running.clone())),
    )
    .await;
    assert!(allowed(&resp), "{resp}");
    assert!(audit.records().is_empty());

    // A finalizer removed from an object being deleted: admitted.
    let mut deleting = running.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-23T10:00:00Z");
    deleting["metadata"]["finalizers"] = json!([]);
    let resp = review(&ev, &review_body("UPDATE", deleting, Some(running.clone()))).await;
    assert!(allowed(&resp), "{resp}");

    // One image changed: exactly that one is verified (and fails closed).
    let changed = pod(
        &[&format!("{down}/team/app@{}", d('c'))],
        &[&format!("{down}/team/m@{}", d('b'))],
    );
    let resp = review(&ev, &review_body("UPDATE", changed, Some(running.clone()))).await;
    assert!(!allowed(&resp));
    let msg = message(&resp);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.starts_with(&format!(
            "spec.containers[0].image {down}/team/app@{}",
            d('c')
        )),
        "{msg}"
    );
    assert!(msg.contains("unreachable: connection refused"), "{msg}");

    // /mutate leaves a running pod's images alone.
    let mut tagged = pod(&[&format!("{down}/team/app:v1")], &[]);
    let old = tagged.clone();
    tagged["metadata"]["labels"] = json!({"x": "y"});
    let out: Value = serde_json::from_slice(
        &ev.mutate(&serde_json::to_vec(&review_body("UPDATE", tagged, Some(old))).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(out["response"]["patch"].is_null(), "{out}");
    assert_eq!(out["response"]["allowed"], true);
}

/// `/mutate` reaches no more registries than `/validate` may: a Pod naming
/// tags on ten registries has the first eight resolved (here they refuse
/// the connection) and the last two not contacted, each said in a warning
/// (the validating webhook then denies them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_reaches_no_more_registries_than_validate() {
    // Ten ports nothing listens on: ten registries that refuse. Ten
    // different ones: a free port may be handed out twice.
    let mut hosts: Vec<String> = Vec::new();
    while hosts.len() < 10 {
        let host = format!("127.0.0.1:{}", sigil_testkit::free_port().unwrap());
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    let k = key();
    let mut opts = Opts::for_registry(&hosts[0]);
    opts.insecure = hosts.clone();
    let (ev, _) = pipeline(&key_policy("signed", "**", &[&k], ""), &opts);
    let tags: Vec<String> = hosts.iter().map(|h| format!("{h}/team/app:v1")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let body = review_body("CREATE", pod(&refs, &[]), None);
    let out: Value = serde_json::from_slice(
        &ev.mutate(&serde_json::to_vec(&body).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"]["patch"].is_null(), "{out}");
    let warnings: Vec<String> = out["response"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let over: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("this workload names 10 registries, over sigil's limit of 8 per review (--max-registries-per-review); not contacted"))
        .collect();
    assert_eq!(over.len(), 2, "{warnings:#?}");
    assert!(
        over[0].starts_with("spec.containers[8].image"),
        "{}",
        over[0]
    );
    assert!(
        over[1].starts_with("spec.containers[9].image"),
        "{}",
        over[1]
    );
    assert_eq!(warnings.len(), 10, "{warnings:#?}");
}
