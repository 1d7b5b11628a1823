//! Warm path: one AdmissionReview of a 3-container Pod whose images and
//! verdicts are cached, from JSON bytes to response bytes. The images live in
//! a real Debian docker-registry started for the benchmark; the first review
//! fills the caches, then only cached work is measured.
//!
//! Run: `cargo bench --bench warm_path`

mod common;

use criterion::{criterion_group, criterion_main, Criterion};

fn warm_path(c: &mut Criterion) {
    sigil::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let signed = common::signed_images(&rt);
    let addr = signed.registry.addr.clone();
    let policy = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: bench\nspec:\n  images: [{{glob: \"{addr}/bench/**\"}}]\n  authorities:\n    - key:\n        data: |\n{}",
        common::indented(&signed.key.public_pem, 10)
    );
    let evaluator = common::evaluator(&addr, &policy);
    let body = common::pod_review(&signed.images);
    let first = rt.block_on(evaluator.review(&body)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(v["response"]["allowed"], true, "warm-up must admit: {v}");

    c.bench_function("warm_review_3_containers", |b| {
        b.to_async(&rt)
            .iter(|| async { evaluator.review(&body).await.unwrap() })
    });
}

criterion_group!(benches, warm_path);
criterion_main!(benches);
