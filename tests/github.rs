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

use common::*;
use serde_json::json;
use sigil_testkit::buildkit::{SLSA_V02, SLSA_V1};
use sigil_testkit::in_toto_statement;
use sigil_testkit::sigstore::{
    push_referrer, BundleSigner, CertRequest, OfflineSigstore, ProofMode,
};
use sigil_testkit::tuf::TestTufRepo;

/// Makes a bundle for an image digest.
type MakeBundle<'a> = Box<dyn Fn(&str) -> Vec<u8> + 'a>;
/// Makes the API's answer for an image digest.
type AnswerFor<'a> = Box<dyn Fn(&str) -> common::github_api::Answer + 'a>;

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
        github_chart_objects(&self.mirror, &self.repo.root_b64())
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

/// `sigil check` of one image under `policies` (written to a fresh
/// directory): (exit code, stdout + stderr).
async fn check(env: &Env, policies: &str, image: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yaml"), policies).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["check", "--insecure-registry", env.addr(), "--image", image])
        .arg("--policy-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    (out.status.code(), common::kube::text(&out))
}

#[test]
fn the_rendered_chart_loads_unchanged() {
    let defs = sigil::policy::files::parse_documents(GITHUB_CHART_OBJECTS).unwrap();
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
    let chart = github.chart_objects();

    // Provenance from a workflow of the organisation, timestamped, no log entry.
    let digest = env.push("acme/app", "v1").await;
    let bundle = github.provenance("acme/app", &digest, SLSA_V1, ProofMode::Timestamped);
    push_bundle(&env, "acme/app", &digest, &bundle).await;
    let (code, out) = check(&env, &chart, &format!("{}/acme/app:v1", env.addr())).await;
    assert_eq!(code, Some(0), "{out}");

    // Each of these is denied, and says why.
    let cases: [(&str, MakeBundle<'_>, &str); 5] = [
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
        let (code, out) = check(&env, &chart, &format!("{}/{repo}:v1", env.addr())).await;
        assert_eq!(code, Some(1), "{repo}: {out}");
        assert!(out.contains(reason), "{repo}: wanted {reason:?} in {out}");
    }

    // The same bundle with the SCT check on (the chart sets
    // insecureIgnoreSCT because GitHub's CA logs nothing) is denied.
    let strict = chart.replace("      insecureIgnoreSCT: true\n", "");
    let (code, out) = check(&env, &strict, &format!("{}/acme/app:v1", env.addr())).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.to_lowercase().contains("sct"), "{out}");

    // A TrustRoot whose mirror is unreachable leaves the policy failing
    // closed, naming the TrustRoot.
    let unreachable = chart.replace(&github.mirror, "http://127.0.0.1:9/");
    let (code, out) = check(&env, &unreachable, &format!("{}/acme/app:v1", env.addr())).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TrustRoot github"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_attestation_api_is_a_source_for_attestations_never_pushed() {
    use common::github_api::{self as api, Answer};

    let env = Env::start();
    let (github, api, base, opts, _dir) = github_api_setup(&env).await;

    // The policy as an admin writes it; the token is what the cluster
    // watch reads from the Secret `tokenSecretRef` names.
    let policy = |name: &str, source: &str| {
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: {name}\nspec:\n  images:\n    - glob: \"{}/**\"\n  authorities:\n    - name: github\n      keyless:\n        identities:\n          - issuer: https://token.actions.githubusercontent.com\n            subjectRegExp: ^https://github\\.com/acme/.*/\\.github/workflows/.*$\n      source:\n        - githubAttestations:\n{source}            url: {base}\n            tokenSecretRef:\n              name: github-token\n      attestations:\n        - name: provenance\n          predicateType: https://slsa.dev/provenance/v1\n",
            env.addr()
        )
    };
    let defs_with_token = |yaml: &str, token: &str| {
        let mut defs = sigil::policy::files::parse_documents(yaml).unwrap();
        for d in &mut defs {
            let spec = d.spec.as_mut().unwrap();
            spec.authorities[0].sources[0]
                .github_attestations
                .as_mut()
                .unwrap()
                .token = Some(token.to_string());
        }
        defs
    };
    let org = policy("org", "            owner: acme\n");
    // Without the cluster to read the Secret, the source is unusable and
    // the policy says so.
    let loaded =
        sigil::policy::store::load(&sigil::policy::files::parse_documents(&org).unwrap()[0]);
    match loaded {
        sigil::policy::store::LoadedPolicy::Valid(p) => assert!(
            format!("{:?}", p.authorities[0].check).contains(
                "githubAttestations.tokenSecretRef (only resolved when sigil watches a cluster)"
            ),
            "{:?}",
            p.authorities[0].check
        ),
        sigil::policy::store::LoadedPolicy::Invalid(p) => panic!("{}", p.error.message),
    }
    let (evaluator, _) = pipeline_of(&defs_with_token(&org, api::TOKEN), &opts);

    let bundle = |subject: &str, workflow_repo: &str| -> serde_json::Value {
        let cert = github
            .issue(&CertRequest::github_actions(
                workflow_repo,
                "refs/heads/main",
                "github-hosted",
                "push",
            ))
            .unwrap();
        let statement = in_toto_statement("ghcr.io/acme/app", subject, SLSA_V1, json!({}));
        serde_json::from_slice(
            &github
                .dsse_bundle(
                    BundleSigner::Certificate(&cert),
                    &statement,
                    ProofMode::Valid,
                )
                .unwrap(),
        )
        .unwrap()
    };
    let image = |repo: &str| format!("{}/{repo}:v1", env.addr());

    // Listed (never pushed: the registry holds no referrer) and verified.
    let good = env.push("acme/app", "v1").await;
    api.answers.lock().unwrap().insert(
        good.clone(),
        Answer::Bundles(vec![bundle(&good, "acme/app")]),
    );
    let resp = review_pod(&evaluator, &image("acme/app")).await;
    assert!(allowed(&resp), "{}", message(&resp));
    // Cached like referrers: a second review asks GitHub nothing.
    let asked = api.asked.lock().unwrap().len();
    let resp = review_pod(&evaluator, &image("acme/app")).await;
    assert!(allowed(&resp), "{}", message(&resp));
    assert_eq!(api.asked.lock().unwrap().len(), asked);

    // A second page, linked on the same origin, is read.
    let paged = env.push("acme/paged", "v1").await;
    api.answers.lock().unwrap().insert(
        paged.clone(),
        Answer::Paged(vec![bundle(&paged, "acme/app")]),
    );
    let resp = review_pod(&evaluator, &image("acme/paged")).await;
    assert!(allowed(&resp), "{}", message(&resp));
    assert!(api
        .asked
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.contains(&paged) && p.contains("after=Y3Vyc29y")));

    let other = env.push("acme/other", "v1").await;
    // Each answer is made for the digest of the image it is about.
    let denied: Vec<(&str, AnswerFor<'_>, &str)> = vec![
        (
            "acme/another-digest",
            Box::new(|_| Answer::Bundles(vec![bundle(&other, "acme/app")])),
            "the bundle is not about this image",
        ),
        (
            "acme/tampered",
            // Signed for another image, its Statement swapped for one
            // naming this image.
            Box::new(|d| {
                let mut b = bundle(&good, "acme/app");
                b["dsseEnvelope"]["payload"] = bundle(d, "acme/app")["dsseEnvelope"]["payload"].clone();
                Answer::Bundles(vec![b])
            }),
            "signature does not verify",
        ),
        (
            "acme/fork",
            // Signed for this digest, by a workflow of another owner.
            Box::new(|d| Answer::Bundles(vec![bundle(d, "evil/app")])),
            "certificate identity https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main",
        ),
        ("acme/oversized", Box::new(|_| Answer::Oversized), "sent more than 4194304 bytes"),
        (
            "acme/forbidden",
            Box::new(|_| Answer::Forbidden),
            "denied access to attestations: HTTP 403 Forbidden: Resource not accessible by integration",
        ),
        ("acme/elsewhere", Box::new(|_| Answer::LinkElsewhere), "is not on https://127.0.0.1"),
    ];
    for (repo, answer, reason) in denied {
        let digest = env.push(repo, "v1").await;
        api.answers
            .lock()
            .unwrap()
            .insert(digest.clone(), answer(&digest));
        let resp = review_pod(&evaluator, &image(repo)).await;
        assert!(!allowed(&resp), "{repo} admitted");
        assert!(
            message(&resp).contains(reason),
            "{repo}: wanted {reason:?} in {}",
            message(&resp)
        );
    }

    // No attestations at all (GitHub's 404) is a deny naming the source.
    let _ = env.push("acme/unattested", "v1").await;
    let resp = review_pod(&evaluator, &image("acme/unattested")).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("GitHub lists no attestations of sha256:")
            && message(&resp).contains("for acme on 127.0.0.1:"),
        "{}",
        message(&resp)
    );

    // A wrong token: GitHub's 403, a deny with the reason.
    let (wrong, _) = pipeline_of(&defs_with_token(&org, "ghs_wrong"), &opts);
    let resp = review_pod(&wrong, &image("acme/app")).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("HTTP 403 Forbidden"),
        "{}",
        message(&resp)
    );

    // The repository form asks the repository endpoint.
    let repo_policy = policy(
        "repo",
        "            owner: acme\n            repository: app\n",
    );
    let (by_repo, _) = pipeline_of(&defs_with_token(&repo_policy, api::TOKEN), &opts);
    let resp = review_pod(&by_repo, &image("acme/app")).await;
    assert!(allowed(&resp), "{}", message(&resp));
    assert!(api
        .asked
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.starts_with(&format!("/repos/acme/app/attestations/{good}"))));
}

/// One namespace cannot spend the token's quota for everyone: past its
/// budget of calls (cache misses) its images are denied with that reason
/// and no call is made, while another namespace's reviews still reach
/// GitHub. GitHub's `x-ratelimit-remaining` is exposed as a gauge. (The
/// API here is a test server keeping GitHub's documented contract; no
/// real GitHub is reachable from these machines.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_namespace_cannot_spend_the_github_quota_for_everyone() {
    use common::github_api as api;
    use sigil_testkit::pod_review;

    let env = Env::start();
    let (_github, api, base, opts, _dir) = github_api_setup(&env).await;
    let yaml = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: gh\nspec:\n  images:\n    - glob: \"{}/**\"\n  authorities:\n    - name: github\n      keyless:\n        identities:\n          - issuer: https://token.actions.githubusercontent.com\n            subject: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main\n      source:\n        - githubAttestations:\n            owner: acme\n            url: {base}\n            tokenSecretRef:\n              name: github-token\n      attestations:\n        - name: provenance\n          predicateType: https://slsa.dev/provenance/v1\n",
        env.addr()
    );
    let mut defs = sigil::policy::files::parse_documents(&yaml).unwrap();
    defs[0].spec.as_mut().unwrap().authorities[0].sources[0]
        .github_attestations
        .as_mut()
        .unwrap()
        .token = Some(api::TOKEN.to_string());
    let (evaluator, _) = pipeline_of(&defs, &opts);
    let budget = sigil::limits::GITHUB_CALLS_BURST_PER_NAMESPACE as usize;
    let mut images = Vec::new();
    for i in 0..budget + 2 {
        env.push(&format!("acme/b{i}"), "v1").await;
        images.push(format!("{}/acme/b{i}:v1", env.addr()));
    }
    let in_namespace = |ns: &'static str, image: String| {
        let evaluator = &evaluator;
        async move {
            review(
                evaluator,
                &pod_review(&format!("u-{image}"), ns, "p", &image),
            )
            .await
        }
    };
    for image in &images[..budget] {
        let resp = in_namespace("flood", image.clone()).await;
        assert!(
            message(&resp).contains("GitHub lists no attestations"),
            "{}",
            message(&resp)
        );
    }
    let asked = api.asked.lock().unwrap().len();
    let resp = in_namespace("flood", images[budget].clone()).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("namespace flood has used its budget of calls"),
        "{}",
        message(&resp)
    );
    assert_eq!(api.asked.lock().unwrap().len(), asked, "no call was made");
    // Another namespace is not held to the first one's budget.
    let resp = in_namespace("shop", images[budget + 1].clone()).await;
    assert!(
        message(&resp).contains("GitHub lists no attestations"),
        "{}",
        message(&resp)
    );
    let scrape = sigil::metrics::global().encode();
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("sigil_github_api_rate_limit_remaining{")
                && l.ends_with(&format!(" {}", 5_000 - api.asked.lock().unwrap().len()))),
        "{scrape}"
    );
    assert!(
        scrape.contains("sigil_github_budget_refusals_total 1"),
        "{scrape}"
    );
}

/// The test API server (GitHub's documented contract), its signing
/// instance trusted as the default root, and options reaching both.
async fn github_api_setup(
    env: &Env,
) -> (
    OfflineSigstore,
    common::github_api::Api,
    String,
    Opts,
    tempfile::TempDir,
) {
    use sigil::trust::{TrustMaterial, TrustStore};
    let github = OfflineSigstore::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = common::github_api::Api::default();
    let (base, ca) = api.serve(dir.path()).await;
    let mut opts = Opts::for_registry(env.addr());
    let root = TrustMaterial::from_json("default", &github.trusted_root_json(None)).unwrap();
    opts.trust = Some(std::sync::Arc::new(TrustStore::new(root)));
    opts.ca_files = vec![ca];
    (github, api, base, opts, dir)
}
