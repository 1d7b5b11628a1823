//! Registry access settings against real registries: basic auth from a docker
//! config.json, and a TLS registry signed by a private CA (`--registry-ca`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sigil::audit::MemoryAuditSink;
use sigil::decision::{DecisionSettings, NoMatchAction, ServerMode};
use sigil::policy::{files, PolicyStore};
use sigil::registry::{RegistryClient, RegistryOptions};
use sigil::service::{Evaluator, EvaluatorSettings};
use sigil::verify::{Verifier, VerifierSettings};
use sigil_testkit::{
    attach_signatures_as, push_image_as, LocalRegistry, RegistrySetup, SignatureToAttach, TestKey,
    TestKeyKind,
};

fn evaluator(policy: &str, opts: RegistryOptions) -> Evaluator {
    let store = Arc::new(PolicyStore::new());
    store.replace_source("test", &files::parse_documents(policy).unwrap());
    Evaluator::new(
        store,
        Arc::new(Verifier::new(
            Arc::new(RegistryClient::new(&opts).unwrap()),
            &VerifierSettings::default(),
        )),
        EvaluatorSettings {
            decision: DecisionSettings {
                server_mode: ServerMode::Enforce,
                no_match: NoMatchAction::Deny,
            },
            verify_timeout: Duration::from_secs(8),
            require_digest: false,
            ..Default::default()
        },
        Arc::new(MemoryAuditSink::default()),
    )
}

/// A docker `config.json` with alice's credentials for `registry`.
fn docker_config(dir: &std::path::Path, registry: &str) -> std::path::PathBuf {
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{registry}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_docker_config() {
    let private = private_registry();
    let reg = &private.registry;
    let auth = private.auth.clone();
    let dir = tempfile::tempdir().unwrap();
    let client = sigil_testkit::plain_http_client(std::slice::from_ref(&reg.addr));
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let digest = push_image_as(
        &client,
        &Reference::with_tag(reg.addr.clone(), "private/app".into(), "v1".into()),
        &auth,
    )
    .await
    .unwrap();
    let sig = SignatureToAttach::new(&k, &format!("{}/private/app", reg.addr), &digest);
    attach_signatures_as(&client, &reg.addr, "private/app", &digest, &[sig], &auth)
        .await
        .unwrap();
    let policy = key_policy("p", "**", &[&k], "");
    let image = format!("{}/private/app:v1", reg.addr);

    let without = evaluator(
        &policy,
        RegistryOptions {
            insecure: vec![reg.addr.clone()],
            ..Default::default()
        },
    );
    let resp = review_pod(&without, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!(
            "cannot resolve digest: registry {} denied access to private/app",
            reg.addr
        )),
        "{}",
        message(&resp)
    );

    let config = docker_config(dir.path(), &reg.addr);
    let with = evaluator(
        &policy,
        RegistryOptions {
            insecure: vec![reg.addr.clone()],
            docker_config: Some(config),
            ..Default::default()
        },
    );
    let resp = review_pod(&with, &image).await;
    assert!(allowed(&resp), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_registry_with_a_private_ca() {
    sigil::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let certs = sigil::tls::self_signed(&["127.0.0.1".to_string()]).unwrap();
    let (ca, crt, key) = sigil::tls::write_self_signed(dir.path(), &certs).unwrap();
    let reg = LocalRegistry::start_with(&RegistrySetup {
        htpasswd: None,
        tls: Some((crt, key)),
        token: None,
    })
    .unwrap();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: certs.ca_pem.clone().into_bytes(),
        }],
        ..Default::default()
    });
    let k = TestKey::generate(TestKeyKind::Ed25519).unwrap();
    let anon = RegistryAuth::Anonymous;
    let digest = push_image_as(
        &client,
        &Reference::with_tag(reg.addr.clone(), "tls/app".into(), "v1".into()),
        &anon,
    )
    .await
    .unwrap();
    let sig = SignatureToAttach::new(&k, &format!("{}/tls/app", reg.addr), &digest);
    attach_signatures_as(&client, &reg.addr, "tls/app", &digest, &[sig], &anon)
        .await
        .unwrap();
    let policy = key_policy("p", "**", &[&k], "");
    let image = format!("{}/tls/app:v1", reg.addr);

    let untrusted = evaluator(&policy, RegistryOptions::default());
    let resp = review_pod(&untrusted, &image).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!("cannot resolve digest: registry {}", reg.addr)),
        "{}",
        message(&resp)
    );

    let trusted = evaluator(
        &policy,
        RegistryOptions {
            ca_files: vec![ca],
            ..Default::default()
        },
    );
    assert!(allowed(&review_pod(&trusted, &image).await));
}

/// A cold review by tag of a key-signed image behind basic auth makes
/// exactly the requests it needs: the tag lookup, the signature manifest
/// and its layer. The registry's challenge is learned once per registry and
/// credential set; later requests carry the credentials up front instead of
/// collecting a `401` each (counted in the registry's own log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_review_makes_only_the_requests_it_needs() {
    let private = private_registry();
    let reg = &private.registry;
    let auth = private.auth.clone();
    let dir = tempfile::tempdir().unwrap();
    let client = sigil_testkit::plain_http_client(std::slice::from_ref(&reg.addr));
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    for repo in ["private/first", "private/second"] {
        let digest = push_image_as(
            &client,
            &Reference::with_tag(reg.addr.clone(), repo.into(), "v1".into()),
            &auth,
        )
        .await
        .unwrap();
        let sig = SignatureToAttach::new(&k, &format!("{}/{repo}", reg.addr), &digest);
        attach_signatures_as(&client, &reg.addr, repo, &digest, &[sig], &auth)
            .await
            .unwrap();
    }
    let config = docker_config(dir.path(), &reg.addr);
    let eval = evaluator(
        &key_policy("p", "**", &[&k], ""),
        RegistryOptions {
            insecure: vec![reg.addr.clone()],
            docker_config: Some(config),
            ..Default::default()
        },
    );
    let unauthorized = |repo: &str| {
        reg.log()
            .lines()
            // distribution logs a refused request as this warning, not
            // as "response completed".
            .filter(|l| l.contains("msg=\"error authorizing context") && l.contains(repo))
            .count()
    };
    let requests = |needle: &str| reg.count_requests(needle) + unauthorized(needle);
    let resp = review_pod(&eval, &format!("{}/private/first:v1", reg.addr)).await;
    assert!(allowed(&resp), "{resp}");
    // The first request to the registry learns its challenge.
    assert!(unauthorized("/v2/private/first/") <= 1, "{}", reg.log());

    // The pushes above are in the log too: count from here.
    let needles = [
        "/v2/private/second/manifests/v1",
        "/v2/private/second/manifests/sha256-",
        "/v2/private/second/blobs/",
        "/v2/private/second/",
    ];
    let before: Vec<usize> = needles.iter().map(|n| requests(n)).collect();
    let denied_before = unauthorized("/v2/private/second/");
    let resp = review_pod(&eval, &format!("{}/private/second:v1", reg.addr)).await;
    assert!(allowed(&resp), "{resp}");
    let made: Vec<usize> = needles
        .iter()
        .zip(&before)
        .map(|(n, b)| requests(n) - b)
        .collect();
    assert_eq!(
        unauthorized("/v2/private/second/"),
        denied_before,
        "{}",
        reg.log()
    );
    // Tag lookup, signature manifest, signature layer: 3 in all.
    assert_eq!(made, vec![1, 1, 1, 3], "{}", reg.log());
}

/// `/mutate` resolves a matched tag with sigil's own `--registry-config`
/// under the workload's pull secrets, so by default a tenant learns the
/// digest of a tag only sigil may read; with
/// `--resolve-with-workload-credentials` it is resolved with the
/// workload's own credentials only, and left unpinned (a warning) when they
/// cannot read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_resolve_with_the_workloads_own_credentials_when_told() {
    let private = private_registry();
    let reg = &private.registry;
    let dir = tempfile::tempdir().unwrap();
    let client = sigil_testkit::plain_http_client(std::slice::from_ref(&reg.addr));
    let digest = push_image_as(
        &client,
        &Reference::with_tag(reg.addr.clone(), "private/app".into(), "v1".into()),
        &private.auth,
    )
    .await
    .unwrap();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let policy = key_policy("p", "**", &[&k], "");
    let opts = RegistryOptions {
        insecure: vec![reg.addr.clone()],
        docker_config: Some(docker_config(dir.path(), &reg.addr)),
        ..Default::default()
    };
    let body = serde_json::to_vec(&pod_review(
        "u",
        "shop",
        "p",
        &format!("{}/private/app:v1", reg.addr),
    ))
    .unwrap();
    let mutate = |ev: Evaluator| {
        let body = body.clone();
        async move {
            let out = ev.mutate(body).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            v["response"].clone()
        }
    };
    // By default: pinned, with sigil's own credentials.
    let resp = mutate(evaluator(&policy, opts.clone())).await;
    assert_eq!(resp["patchType"], "JSONPatch", "{resp}");
    let patch = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        resp["patch"].as_str().unwrap(),
    )
    .unwrap();
    assert!(String::from_utf8(patch).unwrap().contains(&digest));
    // Told: the workload has no pull secret for it, so it is not pinned.
    let mut ev = evaluator(&policy, opts);
    ev.settings.resolve_with_workload_credentials = true;
    let resp = mutate(ev).await;
    assert!(resp.get("patch").is_none(), "{resp}");
    let warning = resp["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("not pinned to a digest")
            && warning.contains(&format!("registry {} denied access", reg.addr)),
        "{warning}"
    );
}
