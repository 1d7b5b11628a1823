//! Warm path: one AdmissionReview of a 3-container Pod whose images and
//! verdicts are cached, from JSON bytes to response bytes. The images live in
//! a real Debian docker-registry started for the benchmark; the first review
//! fills the caches, then only cached work is measured.
//!
//! Run: `cargo bench --bench warm_path`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use oci_client::Reference;
use sigil::audit::NullAuditSink;
use sigil::decision::{DecisionSettings, NoMatchAction, ServerMode};
use sigil::policy::{files, PolicyStore};
use sigil::registry::{RegistryClient, RegistryOptions};
use sigil::service::{Evaluator, EvaluatorSettings};
use sigil::verify::{Verifier, VerifierSettings};
use sigil_testkit::{
    plain_http_client, push_image, sign_image, LocalRegistry, TestKey, TestKeyKind,
};

fn warm_path(c: &mut Criterion) {
    sigil::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = LocalRegistry::start().expect("docker-registry");
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    let addr = registry.addr.clone();
    let images: Vec<String> = rt.block_on(async {
        let client = plain_http_client(std::slice::from_ref(&addr));
        let mut out = Vec::new();
        for repo in ["bench/web", "bench/sidecar", "bench/init"] {
            let d = push_image(
                &client,
                &Reference::with_tag(addr.clone(), repo.into(), "v1".into()),
            )
            .await
            .unwrap();
            sign_image(&client, &addr, repo, &d, &key).await.unwrap();
            out.push(format!("{addr}/{repo}:v1@{d}"));
        }
        out
    });
    let policy = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: bench\nspec:\n  images: [{{glob: \"{addr}/bench/**\"}}]\n  authorities:\n    - key:\n        data: |\n{}",
        key.public_pem.lines().map(|l| format!("          {l}\n")).collect::<String>()
    );
    let store = Arc::new(PolicyStore::new());
    store.replace_source("bench", &files::parse_documents(&policy).unwrap());
    let reg = RegistryClient::new(&RegistryOptions {
        insecure: vec![addr.clone()],
        ..Default::default()
    })
    .unwrap();
    let evaluator = Evaluator::new(
        store,
        Arc::new(Verifier::new(Arc::new(reg), &VerifierSettings::default())),
        EvaluatorSettings {
            decision: DecisionSettings {
                server_mode: ServerMode::Enforce,
                no_match: NoMatchAction::Deny,
            },
            verify_timeout: Duration::from_secs(8),
            require_digest: true,
            ..Default::default()
        },
        Arc::new(NullAuditSink),
    );
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p", "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
                "initContainers": [{"name": "i", "image": images[2]}],
                "containers": [{"name": "w", "image": images[0]}, {"name": "s", "image": images[1]}]
            }}
        }
    }))
    .unwrap();
    let first = rt.block_on(evaluator.review(&body)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(v["response"]["allowed"], true, "warm-up must admit: {v}");

    c.bench_function("warm_review_3_containers", |b| {
        b.to_async(&rt)
            .iter(|| async { evaluator.review(&body).await.unwrap() })
    });
    drop(registry);
}

criterion_group!(benches, warm_path);
criterion_main!(benches);
