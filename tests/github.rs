//! GitHub's supply chain, end to end against the real registry.
//!
//! The objects that the `trust-policies` chart of
//! github/artifact-attestations-helm-charts renders
//! (`tests/fixtures/github/trust-policies.yaml`, see the fixtures README) are
//! applied unchanged except for the TrustRoot's `mirror` and `root`: the test
//! kit plays GitHub's Sigstore instance, with its own TUF repository served
//! as the mirror, a Fulcio-like CA issuing GitHub Actions certificates
//! without SCTs, a TSA, and no Rekor. SLSA v1 provenance is signed as
//! `actions/attest-build-provenance` signs it for a private repository
//! (Sigstore bundle v0.3, DSSE, an RFC 3161 timestamp, no log entry) and
//! pushed as an OCI referrer of the image.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::json;
use sigil_testkit::buildkit::{SLSA_V02, SLSA_V1};
use sigil_testkit::in_toto_statement;
use sigil_testkit::sigstore::{
    push_referrer, BundleSigner, CertRequest, OfflineSigstore, ProofMode,
};
use sigil_testkit::tuf::TestTufRepo;

const CHART_OBJECTS: &str = include_str!("fixtures/github/trust-policies.yaml");
const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The test kit as GitHub's Sigstore instance, its TUF repository served.
struct GitHubInstance {
    sigstore: OfflineSigstore,
    repo: TestTufRepo,
    mirror: String,
}

impl GitHubInstance {
    async fn start() -> GitHubInstance {
        let sigstore = OfflineSigstore::with_ca_name("sigstore-intermediate").unwrap();
        let repo = TestTufRepo::new(
            &sigstore.trusted_root_json_without_logs(),
            jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24),
        )
        .unwrap();
        let mirror = serve_files(repo.files.clone()).await;
        GitHubInstance {
            sigstore,
            repo,
            mirror,
        }
    }

    /// The chart's objects with this instance's mirror and root in the
    /// TrustRoot; the ClusterImagePolicy is byte for byte as rendered.
    fn chart_objects(&self) -> String {
        let mut out = String::new();
        let mut lines = CHART_OBJECTS.lines();
        while let Some(line) = lines.next() {
            if line.trim() == "mirror: https://tuf-repo.github.com/" {
                out.push_str(&format!("    mirror: {}\n", self.mirror));
            } else if line.trim() == "root: |-" {
                out.push_str(&format!("{line}\n      {}\n", self.repo.root_b64()));
                lines.next();
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// A provenance bundle as `attest-build-provenance` makes it for a
    /// workflow of `workflow_repo`, whose Statement names `subject`.
    fn provenance(
        &self,
        workflow_repo: &str,
        subject: &str,
        predicate_type: &str,
        mode: ProofMode,
    ) -> Vec<u8> {
        let mut req =
            CertRequest::github_actions(workflow_repo, "refs/heads/main", "github-hosted", "push");
        // fulcio.githubapp.com logs no certificates: no SCT.
        req.with_sct = false;
        let cert = self.sigstore.issue(&req).unwrap();
        let statement = in_toto_statement(
            "ghcr.io/acme/app",
            subject,
            predicate_type,
            json!({"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"}}),
        );
        self.sigstore
            .dsse_bundle(BundleSigner::Certificate(&cert), &statement, mode)
            .unwrap()
    }
}

async fn push_bundle(env: &Env, repo: &str, digest: &str, bundle: &[u8]) {
    push_referrer(
        &env.client,
        env.addr(),
        repo,
        digest,
        BUNDLE_V03,
        BUNDLE_V03,
        bundle,
        BTreeMap::new(),
    )
    .await
    .unwrap();
}

/// `sigil check` over `dir` for one image: (exit code, stdout + stderr).
async fn check(env: &Env, dir: &Path, image: &str) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["check", "--insecure-registry", env.addr(), "--image", image])
        .arg("--policy-dir")
        .arg(dir)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_rendered_chart_loads_unchanged() {
    let defs = sigil::policy::files::parse_documents(CHART_OBJECTS).unwrap();
    assert_eq!(defs.len(), 1, "one ClusterImagePolicy beside the TrustRoot");
    match sigil::policy::store::load(&defs[0]) {
        sigil::policy::store::LoadedPolicy::Valid(p) => {
            assert_eq!(p.name, "github-policy");
            assert_eq!(p.authorities.len(), 2);
        }
        sigil::policy::store::LoadedPolicy::Invalid(p) => {
            panic!("{}: {}", p.error.field, p.error.message)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_private_repository_attestations_verify_under_the_chart_policy() {
    let env = Env::start();
    let github = GitHubInstance::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("github.yaml"), github.chart_objects()).unwrap();

    // Provenance from a workflow of the organisation, timestamped, no log entry.
    let digest = env.push("acme/app", "v1").await;
    let bundle = github.provenance("acme/app", &digest, SLSA_V1, ProofMode::Timestamped);
    push_bundle(&env, "acme/app", &digest, &bundle).await;
    let (code, out) = check(&env, dir.path(), &format!("{}/acme/app:v1", env.addr())).await;
    assert_eq!(code, Some(0), "{out}");

    // Each of these is denied, and says why.
    let cases: [(&str, Box<dyn Fn(&str) -> Vec<u8>>, &str); 5] = [
        (
            "acme/untimestamped",
            Box::new(|d: &str| github.provenance("acme/app", d, SLSA_V1, ProofMode::Missing)),
            "bundle has no RFC 3161 timestamp, which rfc3161timestamp requires",
        ),
        (
            "acme/fork",
            Box::new(|d: &str| {
                github.provenance("evil/app", d, SLSA_V1, ProofMode::Timestamped)
            }),
            "certificate identity https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main",
        ),
        (
            "acme/old-provenance",
            Box::new(|d: &str| github.provenance("acme/app", d, SLSA_V02, ProofMode::Timestamped)),
            "attestation require-attestation: no matching attestations for predicate type https://slsa.dev/provenance/v1\n",
        ),
        (
            "acme/other-digest",
            Box::new(|_: &str| {
                github.provenance(
                    "acme/app",
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    SLSA_V1,
                    ProofMode::Timestamped,
                )
            }),
            "the bundle is not about this image: artifact hash does not match any subject",
        ),
        (
            "acme/tampered",
            Box::new(|d: &str| {
                let bundle = github.provenance("acme/app", d, SLSA_V1, ProofMode::Timestamped);
                let mut b: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
                let statement = in_toto_statement(
                    "ghcr.io/acme/app",
                    d,
                    SLSA_V1,
                    json!({"buildDefinition": {"buildType": "https://evil.test/anything"}}),
                );
                b["dsseEnvelope"]["payload"] = json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    statement
                ));
                serde_json::to_vec(&b).unwrap()
            }),
            "signature does not verify: DSSE signature verification failed",
        ),
    ];
    for (repo, bundle, reason) in cases {
        let digest = env.push(repo, "v1").await;
        push_bundle(&env, repo, &digest, &bundle(&digest)).await;
        let (code, out) = check(&env, dir.path(), &format!("{}/{repo}:v1", env.addr())).await;
        assert_eq!(code, Some(1), "{repo}: {out}");
        assert!(out.contains(reason), "{repo}: wanted {reason:?} in {out}");
    }

    // The same bundle with the SCT check on (the chart sets
    // insecureIgnoreSCT because GitHub's CA logs nothing) is denied.
    let strict = github
        .chart_objects()
        .replace("      insecureIgnoreSCT: true\n", "");
    let strict_dir = tempfile::tempdir().unwrap();
    std::fs::write(strict_dir.path().join("github.yaml"), strict).unwrap();
    let (code, out) = check(
        &env,
        strict_dir.path(),
        &format!("{}/acme/app:v1", env.addr()),
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.to_lowercase().contains("sct"), "{out}");

    // A TrustRoot whose mirror is unreachable leaves the policy failing
    // closed, naming the TrustRoot.
    let unreachable = github
        .chart_objects()
        .replace(&github.mirror, "http://127.0.0.1:9/");
    let dead_dir = tempfile::tempdir().unwrap();
    std::fs::write(dead_dir.path().join("github.yaml"), unreachable).unwrap();
    let (code, out) = check(
        &env,
        dead_dir.path(),
        &format!("{}/acme/app:v1", env.addr()),
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TrustRoot github"), "{out}");
}
