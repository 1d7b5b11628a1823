//! Registry round trips per signature layout, counted in the real
//! registry's own log: a cold review asks for what it needs and nothing
//! more; behind distribution's token auth, one challenge per registry and
//! one token per repository.
//!
//! distribution 2.8 has no referrers API: its `GET /v2/<name>/referrers/<digest>`
//! answers 404 from its router, before its logging, so the probe is not in
//! its log. The bundle case goes through the fault proxy, which answers that
//! path 404 itself (as distribution would) and counts it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use std::sync::atomic::Ordering;

use common::faults::{Fault, FaultProxy};
use common::token_server::TokenServer;
use common::*;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use serde_json::json;
use sigil::trust::{TrustMaterial, TrustStore};
use sigil_testkit::sigstore::{push_referrer, BundleSigner, OfflineSigstore, ProofMode};
use sigil_testkit::{
    attach_attestations, attach_signatures_as, in_toto_statement, push_image_as,
    AttestationToAttach, LocalRegistry, RegistrySetup, SignatureToAttach, TestKey, TestKeyKind,
};

const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SLSA1: &str = "https://slsa.dev/provenance/v1";

/// The requests the registry completed after the first `mark` log lines,
/// as `METHOD path status`, with digests shortened to `<digest>` and
/// `sha256-<hex>` tags to `sha256-<hex>`, in log order.
fn requests_since(reg: &LocalRegistry, mark: usize) -> Vec<String> {
    let digest = regex::Regex::new("sha256[:-][0-9a-f]{64}").unwrap();
    let field = |line: &str, name: &str| -> String {
        let Some(at) = line.find(&format!("{name}=")) else {
            return String::new();
        };
        let rest = &line[at + name.len() + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.split('"').next().unwrap_or_default()
        } else {
            rest.split(' ').next().unwrap_or_default()
        };
        value.to_string()
    };
    reg.log()
        .lines()
        .filter(|l| l.contains("msg=\"response completed"))
        .skip(mark)
        .map(|l| {
            let uri = field(l, "http.request.uri");
            let uri = digest.replace_all(&uri, |c: &regex::Captures| {
                if c[0].starts_with("sha256-") {
                    "sha256-<hex>".to_string()
                } else {
                    "<digest>".to_string()
                }
            });
            format!(
                "{} {} {}",
                field(l, "http.request.method"),
                uri,
                field(l, "http.response.status")
            )
        })
        .collect()
}

/// The client addresses (host:port) of the requests completed after the
/// first `mark`: one per connection used.
fn connections_since(reg: &LocalRegistry, mark: usize) -> std::collections::BTreeSet<String> {
    reg.log()
        .lines()
        .filter(|l| l.contains("msg=\"response completed"))
        .skip(mark)
        .filter_map(|l| {
            let at = l.find("http.request.remoteaddr=")?;
            let rest = &l[at + "http.request.remoteaddr=".len()..];
            let rest = rest.trim_start_matches('"');
            Some(rest.split(['"', ' ']).next()?.to_string())
        })
        .collect()
}

fn completed(reg: &LocalRegistry) -> usize {
    reg.count_requests("")
}

fn key_bundle_policy(glob: &str, key: &TestKey) -> String {
    key_policy("bundles", glob, &[key], "").replace(
        "    - key:\n",
        "    - signatureFormat: bundle\n      key:\n",
    )
}

fn attestation_policy(glob: &str, key: &TestKey) -> String {
    key_policy("attested", glob, &[key], "").replace(
        "    - key:\n",
        "    - name: release\n      attestations:\n        - name: provenance\n          predicateType: https://slsa.dev/provenance/v1\n      key:\n",
    )
}

/// Reviews `image` with a fresh pipeline (cold caches) and returns the
/// requests it made.
async fn cold_review(env: &Env, opts: &Opts, policy: &str, image: &str) -> Vec<String> {
    let (eval, _) = pipeline(policy, opts);
    let mark = completed(&env.registry);
    let resp = review_pod(&eval, image).await;
    assert!(allowed(&resp), "{image}: {resp}");
    requests_since(&env.registry, mark)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_layout_costs_only_the_requests_it_needs() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let mut opts = Opts::for_registry(env.addr());
    opts.trust = Some(Arc::new(TrustStore::new(
        TrustMaterial::from_json("default", &sigstore.trusted_root_json(None)).unwrap(),
    )));
    let glob = format!("{}/acme/**", env.addr());
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let addr = env.addr().to_string();

    // Legacy `.sig`: by digest, the signature manifest and its layer; by
    // tag, one more request for the tag. No `/v2/` probe on an anonymous
    // registry.
    let digest = env.push("acme/sig", "v1").await;
    env.sign("acme/sig", &digest, &k).await;
    let policy = key_policy("signed", &glob, &[&k], "");
    let by_digest = cold_review(&env, &opts, &policy, &format!("{addr}/acme/sig@{digest}")).await;
    assert_eq!(
        by_digest,
        strings(&[
            "GET /v2/acme/sig/manifests/sha256-<hex>.sig 200",
            "GET /v2/acme/sig/blobs/<digest> 200",
        ])
    );
    let by_tag = cold_review(&env, &opts, &policy, &format!("{addr}/acme/sig:v1")).await;
    assert_eq!(
        by_tag,
        strings(&[
            "HEAD /v2/acme/sig/manifests/v1 200",
            "GET /v2/acme/sig/manifests/sha256-<hex>.sig 200",
            "GET /v2/acme/sig/blobs/<digest> 200",
        ])
    );

    // Legacy `.att`: the attestation manifest and its layer. The image is
    // signed too, but an authority with `attestations` judges attestations
    // (as policy-controller's does), so the `.sig` tag is not read.
    let digest = env.push("acme/att", "v1").await;
    env.sign("acme/att", &digest, &k).await;
    let statement = in_toto_statement(
        &format!("{addr}/acme/att"),
        &digest,
        SLSA1,
        json!({"builder": {"id": "ci"}}),
    );
    attach_attestations(
        &env.client,
        &addr,
        "acme/att",
        &digest,
        &[AttestationToAttach::new(&k, &statement)],
    )
    .await
    .unwrap();
    let made = cold_review(
        &env,
        &opts,
        &attestation_policy(&glob, &k),
        &format!("{addr}/acme/att@{digest}"),
    )
    .await;
    assert_eq!(
        made,
        strings(&[
            "GET /v2/acme/att/manifests/sha256-<hex>.att 200",
            "GET /v2/acme/att/blobs/<digest> 200",
        ])
    );

    // A bundle behind the referrers tag index: the referrers API probe
    // (404, counted by the proxy), then the index, the referrer manifest
    // and its layer (in the registry's log).
    let digest = env.push("acme/bundle", "v1").await;
    let bundle = sigstore
        .dsse_bundle(
            BundleSigner::Key(&k),
            &in_toto_statement(
                &format!("{addr}/acme/bundle"),
                &digest,
                "https://sigstore.dev/cosign/sign/v1",
                json!({}),
            ),
            ProofMode::Valid,
        )
        .unwrap();
    push_referrer(
        &env.client,
        &addr,
        "acme/bundle",
        &digest,
        BUNDLE_V03,
        BUNDLE_V03,
        &bundle,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(&addr).await;
    proxy.set("/referrers/", Fault::Status(404));
    let mut through_proxy = opts.clone();
    through_proxy.insecure.push(proxy.addr.clone());
    let made = cold_review(
        &env,
        &through_proxy,
        &key_bundle_policy(&format!("{}/acme/**", proxy.addr), &k),
        &format!("{}/acme/bundle@{digest}", proxy.addr),
    )
    .await;
    assert_eq!(proxy.faulted.load(Ordering::SeqCst), 1);
    assert_eq!(
        made,
        strings(&[
            "GET /v2/acme/bundle/manifests/sha256-<hex> 200",
            "GET /v2/acme/bundle/manifests/<digest> 200",
            "GET /v2/acme/bundle/blobs/<digest> 200",
        ])
    );
}

/// Requests the registry refused for want of credentials (distribution
/// logs them as this warning, not as completed).
fn unauthorized(reg: &LocalRegistry) -> usize {
    reg.log()
        .lines()
        .filter(|l| l.contains("msg=\"error authorizing context"))
        .count()
}

/// A cold review at a registry with distribution's token auth, behind a
/// real token server: the first request learns the challenge (one `401`),
/// one token is fetched per repository and reused for every image in it
/// until it expires, and a second repository costs its token but no `401`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_costs_one_token_per_repository_and_one_challenge() {
    sigil::install_crypto_provider();
    let tokens = TokenServer::start().await;
    let reg = LocalRegistry::start_with(&RegistrySetup {
        token: Some(tokens.setup.clone()),
        ..Default::default()
    })
    .unwrap();
    let addr = reg.addr.clone();
    let client = sigil_testkit::plain_http_client(std::slice::from_ref(&addr));
    let alice = RegistryAuth::Basic("alice".into(), "s3cret".into());
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let mut images = Vec::new();
    for (repo, tag) in [("team/app", "v1"), ("team/app", "v2"), ("team/other", "v1")] {
        let digest = push_image_as(
            &client,
            &Reference::with_tag(addr.clone(), repo.into(), tag.into()),
            &alice,
        )
        .await
        .unwrap();
        let sig = SignatureToAttach::new(&k, &format!("{addr}/{repo}"), &digest);
        attach_signatures_as(&client, &addr, repo, &digest, &[sig], &alice)
            .await
            .unwrap();
        images.push(format!("{addr}/{repo}@{digest}"));
    }

    // Without credentials the registry's refusal is the reason.
    let mut opts = Opts::for_registry(&addr);
    let (anonymous, _) = pipeline(&key_policy("p", "**", &[&k], ""), &opts);
    let resp = review_pod(&anonymous, &images[0]).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains(&format!("registry {addr} denied access to team/app")),
        "{}",
        message(&resp)
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{addr}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#),
    )
    .unwrap();
    opts.docker_config = Some(config);
    let (eval, _) = pipeline(&key_policy("p", "**", &[&k], ""), &opts);

    let mut steps = Vec::new();
    let first_mark = completed(&reg);
    for image in &images {
        let (mark, refused, issued) = (completed(&reg), unauthorized(&reg), tokens.issued().len());
        let resp = review_pod(&eval, image).await;
        assert!(allowed(&resp), "{image}: {resp}");
        steps.push((
            requests_since(&reg, mark),
            unauthorized(&reg) - refused,
            tokens.issued()[issued..].to_vec(),
        ));
    }
    let signature_reads = strings(&[
        "GET /v2/team/app/manifests/sha256-<hex>.sig 200",
        "GET /v2/team/app/blobs/<digest> 200",
    ]);
    // The first image: one 401 teaches the challenge, one token.
    assert_eq!(
        steps[0],
        (
            signature_reads.clone(),
            1,
            strings(&["repository:team/app:pull"])
        ),
        "{}",
        reg.log()
    );
    // Another image in the same repository: the token is reused.
    assert_eq!(steps[1], (signature_reads, 0, vec![]), "{}", reg.log());
    // Another repository: its own token, fetched before the first request.
    assert_eq!(
        steps[2],
        (
            strings(&[
                "GET /v2/team/other/manifests/sha256-<hex>.sig 200",
                "GET /v2/team/other/blobs/<digest> 200",
            ]),
            0,
            strings(&["repository:team/other:pull"])
        ),
        "{}",
        reg.log()
    );
    // One kept-alive connection served all three reviews' requests.
    let connections = connections_since(&reg, first_mark);
    assert_eq!(connections.len(), 1, "{connections:?}\n{}", reg.log());
}
