//! The warm path with a Kyverno `ImageValidatingPolicy` beside the same
//! policy written as a ClusterImagePolicy, in one run: a 3-container Pod
//! whose images (on a real Debian docker-registry, key-signed in cosign's
//! layout) and verdicts are cached, from AdmissionReview bytes to answer
//! bytes. The ImageValidatingPolicy's cost over the ClusterImagePolicy is
//! what CEL adds: the request read whole, its bindings, the validation.
//!
//! Run: `cargo bench --bench kyverno`

mod common;

use criterion::{criterion_group, criterion_main, Criterion};

fn kyverno(c: &mut Criterion) {
    sigil::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let signed = common::signed_images(&rt);
    let addr = signed.registry.addr.clone();
    let pem = &signed.key.public_pem;
    let cip = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: bench\nspec:\n  images: [{{glob: \"{addr}/bench/**\"}}]\n  authorities:\n    - key:\n        data: |\n{}",
        common::indented(pem, 10)
    );
    let ivp = format!(
        "apiVersion: policies.kyverno.io/v1\nkind: ImageValidatingPolicy\nmetadata:\n  name: bench\nspec:\n  matchConstraints:\n    resourceRules:\n      - apiGroups: [\"\"]\n        apiVersions: [v1]\n        operations: [CREATE]\n        resources: [pods]\n  matchImageReferences:\n    - glob: \"{addr}/bench/*\"\n  attestors:\n    - name: key\n      cosign:\n        key:\n          data: |\n{}  validations:\n    - expression: >-\n        (images.containers + images.initContainers).map(image, verifyImageSignatures(image, [attestors.key])).all(e, e > 0)\n      message: unsigned\n",
        common::indented(pem, 12)
    );
    let as_cip = common::evaluator(&addr, &cip);
    let as_ivp = common::evaluator(&addr, "");
    let docs = sigil::kyverno::files::parse_documents(&ivp).unwrap();
    let loaded = as_ivp.kyverno.replace_source("bench", &docs);
    assert!(loaded[0].error().is_none(), "{:?}", loaded[0].error());
    let body = common::pod_review(&signed.images);
    for (name, ev) in [("cip", &as_cip), ("ivp", &as_ivp)] {
        let first = rt.block_on(ev.review(&body)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(
            v["response"]["allowed"], true,
            "{name}: warm-up must admit: {v}"
        );
    }
    let mut group = c.benchmark_group("warm_review_3_containers");
    group.bench_function("cluster_image_policy", |b| {
        b.to_async(&rt)
            .iter(|| async { as_cip.review(&body).await.unwrap() })
    });
    group.bench_function("image_validating_policy", |b| {
        b.to_async(&rt)
            .iter(|| async { as_ivp.review(&body).await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, kyverno);
criterion_main!(benches);
