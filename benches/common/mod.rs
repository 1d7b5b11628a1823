//! What the warm-path benchmarks share: three key-signed images on a real
//! Debian docker-registry, the pipeline over them, and the review of a Pod
//! running all three.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use oci_client::Reference;
use sigil::audit::NullAuditSink;
use sigil::decision::{DecisionSettings, NoMatchAction, ServerMode};
use sigil::policy::{files, PolicyStore};
use sigil::registry::{RegistryClient, RegistryOptions};
use sigil::service::{Evaluator, EvaluatorSettings};
use sigil::verify::{Verifier, VerifierSettings};
use sigil_testkit::{plain_http_client, push_image, sign_image, LocalRegistry, TestKey};

/// The registry, the key and the three images (`repo:v1@digest`).
pub struct SignedImages {
    pub registry: LocalRegistry,
    pub key: TestKey,
    pub images: Vec<String>,
}

/// Pushes `bench/web`, `bench/sidecar` and `bench/init`, each signed with
/// a new P-256 key in cosign's layout.
pub fn signed_images(rt: &tokio::runtime::Runtime) -> SignedImages {
    let registry = LocalRegistry::start().expect("docker-registry");
    let key = TestKey::generate(sigil_testkit::TestKeyKind::P256).unwrap();
    let addr = registry.addr.clone();
    let images = rt.block_on(async {
        let client = plain_http_client(std::slice::from_ref(&addr));
        let mut out = Vec::new();
        for repo in ["bench/web", "bench/sidecar", "bench/init"] {
            let reference = Reference::with_tag(addr.clone(), repo.into(), "v1".into());
            let d = push_image(&client, &reference).await.unwrap();
            sign_image(&client, &addr, repo, &d, &key).await.unwrap();
            out.push(format!("{addr}/{repo}:v1@{d}"));
        }
        out
    });
    SignedImages {
        registry,
        key,
        images,
    }
}

/// The pipeline with `policies` (ClusterImagePolicy YAML) loaded, reading
/// `addr` over plain HTTP, enforcing, unmatched images denied.
pub fn evaluator(addr: &str, policies: &str) -> Evaluator {
    let store = Arc::new(PolicyStore::new());
    store.replace_source("bench", &files::parse_documents(policies).unwrap());
    let reg = RegistryClient::new(&RegistryOptions {
        insecure: vec![addr.to_string()],
        ..Default::default()
    })
    .unwrap();
    Evaluator::new(
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
    )
}

/// The AdmissionReview of a Pod with `images[2]` as init container and the
/// others as containers.
pub fn pod_review(images: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
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
    .unwrap()
}

/// `pem`, each line indented by `by` spaces (for YAML block scalars).
pub fn indented(pem: &str, by: usize) -> String {
    pem.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}
