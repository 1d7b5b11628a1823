//! Attestation programs: one AdmissionReview of a Pod whose image carries a
//! key-signed vulnerability attestation, judged by a CEL and by a Rego
//! attestation policy. The image lives in a real Debian docker-registry.
//!
//! - `warm`: the verdict is cached (the common case).
//! - `cold`: passing verdicts are not kept (`verify_ttl` of 1 ns), so every
//!   review verifies the attestation's signature and runs the program; the
//!   registry reads stay cached, so no network time is measured.
//!
//! Run: `cargo bench --bench programs`

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
    attach_attestations, in_toto_statement, plain_http_client, pod_review, push_image,
    AttestationToAttach, LocalRegistry, TestKey, TestKeyKind,
};

const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

const CEL: &str = "          policy:\n            type: cel\n            data: \"predicate.scanner.result.summary.critical == 0 && statement.predicateType == 'https://cosign.sigstore.dev/attestation/vuln/v1'\"\n";

const REGO: &str = "          policy:\n            type: rego\n            data: |\n              package sigstore\n              default isCompliant = false\n              isCompliant {\n                input.predicateType == \"https://cosign.sigstore.dev/attestation/vuln/v1\"\n                input.predicate.scanner.result.summary.critical == 0\n              }\n";

fn policy(glob: &str, key: &TestKey, program: &str) -> String {
    format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: scanned\nspec:\n  images: [{{glob: \"{glob}\"}}]\n  authorities:\n    - name: scan\n      attestations:\n        - name: vuln\n          predicateType: {VULN}\n{program}      key:\n        data: |\n{}",
        key.public_pem
            .lines()
            .map(|l| format!("          {l}\n"))
            .collect::<String>()
    )
}

fn programs(c: &mut Criterion) {
    sigil::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = LocalRegistry::start().expect("docker-registry");
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    let addr = registry.addr.clone();
    let image = rt.block_on(async {
        let client = plain_http_client(std::slice::from_ref(&addr));
        let repo = "bench/scanned";
        let digest = push_image(
            &client,
            &Reference::with_tag(addr.clone(), repo.into(), "v1".into()),
        )
        .await
        .unwrap();
        let statement = in_toto_statement(
            &format!("{addr}/{repo}"),
            &digest,
            VULN,
            serde_json::json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": {"summary": {"critical": 0, "high": 2}}}}),
        );
        attach_attestations(
            &client,
            &addr,
            repo,
            &digest,
            &[AttestationToAttach::new(&key, &statement)],
        )
        .await
        .unwrap();
        format!("{addr}/{repo}:v1@{digest}")
    });
    let body = serde_json::to_vec(&pod_review("bench", "default", "p", &image)).unwrap();
    let glob = format!("{addr}/bench/**");

    for (language, program) in [("cel", CEL), ("rego", REGO)] {
        for (temperature, verify_ttl) in [
            ("warm", Duration::from_secs(600)),
            ("cold", Duration::from_nanos(1)),
        ] {
            let store = Arc::new(PolicyStore::new());
            store.replace_source(
                "bench",
                &files::parse_documents(&policy(&glob, &key, program)).unwrap(),
            );
            let reg = RegistryClient::new(&RegistryOptions {
                insecure: vec![addr.clone()],
                ..Default::default()
            })
            .unwrap();
            let evaluator = Evaluator::new(
                store,
                Arc::new(Verifier::new(
                    Arc::new(reg),
                    &VerifierSettings {
                        verify_ttl,
                        ..Default::default()
                    },
                )),
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
            let first = rt.block_on(evaluator.review(&body)).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
            assert_eq!(v["response"]["allowed"], true, "warm-up must admit: {v}");
            c.bench_function(&format!("attestation_{language}_{temperature}"), |b| {
                b.to_async(&rt)
                    .iter(|| async { evaluator.review(&body).await.unwrap() })
            });
        }
    }
    drop(registry);
}

criterion_group!(benches, programs);
criterion_main!(benches);
