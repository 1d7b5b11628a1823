//! The policy library (`policies/`): each ClusterImagePolicy there, as
//! shipped, with only its placeholders filled in (the registry host, keys,
//! certificates, and for the GitHub ones the TrustRoot and the API's
//! address), admits an image made the way the policy describes and denies
//! one that is not, against the real registry.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use sigil::trust::{TrustMaterial, TrustStore};
use sigil_testkit::buildkit::{push_buildkit_index, PlatformSpec, SLSA_V1};
use sigil_testkit::sigstore::{
    push_referrer, BundleSigner, CertRequest, OfflineSigstore, ProofMode, SetMode,
};
use sigil_testkit::{
    attach_attestations, in_toto_statement, AttestationToAttach, TestKey, TestKeyKind,
};

const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const KEY_PLACEHOLDER: &str = "          -----BEGIN PUBLIC KEY-----\n          PASTE THE CONTENTS OF cosign.pub HERE\n          -----END PUBLIC KEY-----\n";
const CA_PLACEHOLDER: &str = "            -----BEGIN CERTIFICATE-----\n            PASTE THE COMPANY CA CERTIFICATE HERE\n            -----END CERTIFICATE-----\n";

/// Every file of the library, each exercised below.
const LIBRARY: &[&str] = &[
    "buildkit-provenance.yaml",
    "exemptions.yaml",
    "github-actions-keyless.yaml",
    "github-artifact-attestations.yaml",
    "github-attestations-api.yaml",
    "github-trustroot.yaml",
    "notation.yaml",
    "signed-by-key.yaml",
    "slsa-source.yaml",
    "vulnerability-scan.yaml",
];

fn library(name: &str) -> String {
    std::fs::read_to_string(format!("{}/policies/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

/// The policy with the example hosts pointed at the test registry and the
/// key placeholder replaced by `key`.
fn filled(name: &str, env: &Env, key: Option<&TestKey>) -> String {
    let mut text = library(name)
        .replace("registry.example.com", env.addr())
        .replace("ghcr.io", env.addr());
    if let Some(k) = key {
        assert!(text.contains(KEY_PLACEHOLDER), "{name}");
        text = text.replace(KEY_PLACEHOLDER, &indent(&k.public_pem, 10));
    }
    text
}

async fn verdict(policy: &str, opts: &Opts, image: &str) -> (bool, String) {
    let (ev, _) = pipeline(policy, opts);
    let resp = review_pod(&ev, image).await;
    (allowed(&resp), message(&resp))
}

async fn admits(policy: &str, opts: &Opts, image: &str) {
    let (ok, msg) = verdict(policy, opts, image).await;
    assert!(ok, "{image}: {msg}");
}

async fn denies(policy: &str, opts: &Opts, image: &str, says: &str) {
    let (ok, msg) = verdict(policy, opts, image).await;
    assert!(!ok, "{image} admitted");
    assert!(msg.contains(says), "{image}: wanted {says:?} in {msg}");
}

/// Options trusting `public` as the default root (Sigstore's public-good
/// instance) and `github` as the TrustRoot `github`.
fn trusting(env: &Env, public: &OfflineSigstore, github: Option<&OfflineSigstore>) -> Opts {
    let mut opts = Opts::for_registry(env.addr());
    let store = TrustStore::new(
        TrustMaterial::from_json("default", &public.trusted_root_json(None)).unwrap(),
    );
    if let Some(g) = github {
        store.set(
            "github",
            TrustMaterial::from_json("github", &g.trusted_root_json_without_logs()),
        );
    }
    opts.trust = Some(Arc::new(store));
    opts
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

#[test]
fn every_policy_is_listed_tested_and_loads_once_filled_in() {
    let mut files: Vec<String> =
        std::fs::read_dir(format!("{}/policies", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|f| f.ends_with(".yaml"))
            .collect();
    files.sort();
    assert_eq!(files, LIBRARY, "a new policy needs a test here");
    let readme = library("README.md");
    for f in LIBRARY {
        assert!(readme.contains(&format!("]({f})")), "README lists {f}");
    }
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    for f in LIBRARY {
        let text = library(f)
            .replace(KEY_PLACEHOLDER, &indent(&key.public_pem, 10))
            .replace(
                CA_PLACEHOLDER,
                &indent(
                    &sigil_testkit::notation::NotationCa::new("ca")
                        .unwrap()
                        .pem(),
                    12,
                ),
            );
        let defs = sigil::policy::files::parse_documents(&text).unwrap();
        for d in &defs {
            match sigil::policy::store::load(d) {
                sigil::policy::store::LoadedPolicy::Valid(_) => {}
                sigil::policy::store::LoadedPolicy::Invalid(p) => {
                    panic!("{f}: {}: {}", p.error.field, p.error.message)
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_by_key() {
    let env = Env::start();
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    let policy = filled("signed-by-key.yaml", &env, Some(&key));
    let opts = Opts::for_registry(env.addr());
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, &key).await;
    admits(&policy, &opts, &format!("{}/team/app:v1", env.addr())).await;
    env.push("team/unsigned", "v1").await;
    denies(
        &policy,
        &opts,
        &format!("{}/team/unsigned:v1", env.addr()),
        "team-key: no signatures found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_keyless() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let policy = filled("github-actions-keyless.yaml", &env, None);
    let opts = trusting(&env, &sigstore, None);
    let sign = |repo: &'static str, req: CertRequest| {
        let env = &env;
        let sigstore = &sigstore;
        async move {
            let digest = env.push(repo, "v1").await;
            let cert = sigstore.issue(&req).unwrap();
            let sig = sigstore
                .sign_keyless(
                    &cert,
                    &format!("{}/{repo}", env.addr()),
                    &digest,
                    ago(5),
                    SetMode::Valid,
                )
                .unwrap();
            sigil_testkit::attach_signatures(&env.client, env.addr(), repo, &digest, &[sig])
                .await
                .unwrap();
            format!("{}/{repo}:v1", env.addr())
        }
    };
    let main = sign(
        "acme/app",
        CertRequest::github_actions("acme/app", "refs/heads/main", "github-hosted", "push"),
    )
    .await;
    admits(&policy, &opts, &main).await;
    let self_hosted = sign(
        "acme/self-hosted",
        CertRequest::github_actions("acme/app", "refs/heads/main", "self-hosted", "push"),
    )
    .await;
    denies(&policy, &opts, &self_hosted, "runnerEnvironment").await;
    let branch = sign(
        "acme/branch",
        CertRequest::github_actions("acme/app", "refs/heads/feature", "github-hosted", "push"),
    )
    .await;
    denies(&policy, &opts, &branch, "matches none of").await;
    let fork = sign(
        "acme/fork",
        CertRequest::github_actions("evil/app", "refs/heads/main", "github-hosted", "push"),
    )
    .await;
    denies(&policy, &opts, &fork, "https://github.com/evil/app/").await;
}

/// A bundle of SLSA v1 provenance about `digest`, by a workflow of
/// `workflow_repo`, from `instance`.
fn provenance_bundle(
    instance: &OfflineSigstore,
    workflow_repo: &str,
    digest: &str,
    predicate: serde_json::Value,
    mode: ProofMode,
) -> Vec<u8> {
    let mut req =
        CertRequest::github_actions(workflow_repo, "refs/heads/main", "github-hosted", "push");
    req.with_sct = mode != ProofMode::Timestamped;
    let cert = instance.issue(&req).unwrap();
    let statement = in_toto_statement("ghcr.io/acme/app", digest, SLSA_V1, predicate);
    instance
        .dsse_bundle(BundleSigner::Certificate(&cert), &statement, mode)
        .unwrap()
}

async fn with_referrer(env: &Env, repo: &str, bundle: impl FnOnce(&str) -> Vec<u8>) -> String {
    let digest = env.push(repo, "v1").await;
    push_referrer(
        &env.client,
        env.addr(),
        repo,
        &digest,
        BUNDLE_V03,
        BUNDLE_V03,
        &bundle(&digest),
        Default::default(),
    )
    .await
    .unwrap();
    format!("{}/{repo}:v1", env.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_artifact_attestations() {
    let env = Env::start();
    let public = OfflineSigstore::new().unwrap();
    let github = OfflineSigstore::with_ca_name("sigstore-intermediate").unwrap();
    let policy = filled("github-artifact-attestations.yaml", &env, None);
    let opts = trusting(&env, &public, Some(&github));
    let private = with_referrer(&env, "acme/private", |d| {
        provenance_bundle(
            &github,
            "acme/private",
            d,
            json!({}),
            ProofMode::Timestamped,
        )
    })
    .await;
    admits(&policy, &opts, &private).await;
    let open = with_referrer(&env, "acme/public", |d| {
        provenance_bundle(&public, "acme/public", d, json!({}), ProofMode::Valid)
    })
    .await;
    admits(&policy, &opts, &open).await;
    // Public-good bundles must be logged.
    let unlogged = with_referrer(&env, "acme/unlogged", |d| {
        provenance_bundle(&public, "acme/public", d, json!({}), ProofMode::Missing)
    })
    .await;
    denies(
        &policy,
        &opts,
        &unlogged,
        "public-repositories: attestation provenance: no matching attestations",
    )
    .await;
    let fork = with_referrer(&env, "acme/fork", |d| {
        provenance_bundle(&github, "evil/app", d, json!({}), ProofMode::Timestamped)
    })
    .await;
    denies(&policy, &opts, &fork, "https://github.com/evil/app/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_attestations_api() {
    use common::github_api::{Answer, Api, TOKEN};
    let env = Env::start();
    let public = OfflineSigstore::new().unwrap();
    let github = OfflineSigstore::with_ca_name("sigstore-intermediate").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::default();
    let (base, ca) = api.serve(dir.path()).await;
    let mut opts = trusting(&env, &public, Some(&github));
    opts.ca_files = vec![ca];
    let library = filled("github-attestations-api.yaml", &env, None);
    // The narrow form: one repository's release workflow on main.
    assert_eq!(
        library
            .matches("subject: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main\n")
            .count(),
        2,
        "{library}"
    );
    assert!(!library.contains("            subjectRegExp:"), "{library}");
    let text = library.replace("acme/app/", "acme/private/").replace(
        "            owner: acme\n",
        &format!("            owner: acme\n            url: {base}\n"),
    );
    // The token, as the cluster watch reads it from the Secret.
    let mut defs = sigil::policy::files::parse_documents(&text).unwrap();
    for a in &mut defs[0].spec.as_mut().unwrap().authorities {
        a.sources[0].github_attestations.as_mut().unwrap().token = Some(TOKEN.into());
    }
    let (ev, _) = pipeline_of(&defs, &opts);
    let private = env.push("acme/private", "v1").await;
    let bundle = provenance_bundle(
        &github,
        "acme/private",
        &private,
        json!({}),
        ProofMode::Timestamped,
    );
    api.answers.lock().unwrap().insert(
        private,
        Answer::Bundles(vec![serde_json::from_slice(&bundle).unwrap()]),
    );
    let resp = review_pod(&ev, &format!("{}/acme/private:v1", env.addr())).await;
    assert!(allowed(&resp), "{}", message(&resp));
    env.push("acme/none", "v1").await;
    let resp = review_pod(&ev, &format!("{}/acme/none:v1", env.addr())).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("GitHub lists no attestations of"),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildkit_provenance() {
    let env = Env::start();
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    let policy = filled("buildkit-provenance.yaml", &env, Some(&key));
    let opts = Opts::for_registry(env.addr());
    let build = |repo: &'static str, platforms: Vec<PlatformSpec>| {
        let env = &env;
        let key = &key;
        async move {
            let ix = push_buildkit_index(&env.client, &env.reference(repo, "v1"), &platforms)
                .await
                .unwrap();
            env.sign(repo, &ix.digest, key).await;
            format!("{}/{repo}@{}", env.addr(), ix.digest)
        }
    };
    let ci = "https://github.com/acme/app/actions/runs/1";
    let good = build(
        "apps/web",
        vec![
            PlatformSpec::with_provenance_and_sbom("amd64", ci),
            PlatformSpec::with_provenance_and_sbom("arm64", ci),
        ],
    )
    .await;
    admits(&policy, &opts, &good).await;
    let laptop = build(
        "apps/laptop",
        vec![
            PlatformSpec::with_provenance_and_sbom("amd64", ci),
            PlatformSpec::with_provenance_and_sbom("arm64", "https://laptop.example/buildx"),
        ],
    )
    .await;
    denies(&policy, &opts, &laptop, "ci: attestation provenance").await;
    let mut no_sbom = PlatformSpec::with_provenance_and_sbom("amd64", ci);
    no_sbom.statements.truncate(1);
    let unsbommed = build("apps/no-sbom", vec![no_sbom]).await;
    denies(&policy, &opts, &unsbommed, "ci: attestation sbom").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slsa_source() {
    let env = Env::start();
    let public = OfflineSigstore::new().unwrap();
    let policy = filled("slsa-source.yaml", &env, None);
    let opts = trusting(&env, &public, None);
    let built_from = |git_ref: &str| {
        json!({
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": git_ref, "repository": "https://github.com/acme/app", "path": ".github/workflows/release.yml"}},
            },
            "runDetails": {"builder": {"id": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"}},
        })
    };
    let main = with_referrer(&env, "acme/app", |d| {
        provenance_bundle(
            &public,
            "acme/app",
            d,
            built_from("refs/heads/main"),
            ProofMode::Valid,
        )
    })
    .await;
    admits(&policy, &opts, &main).await;
    let branch = with_referrer(&env, "acme/app-feature", |d| {
        provenance_bundle(
            &public,
            "acme/app",
            d,
            built_from("refs/heads/feature"),
            ProofMode::Valid,
        )
    })
    .await;
    denies(
        &policy,
        &opts,
        &branch,
        "built from https://github.com/acme/app at refs/heads/feature, not https://github.com/acme/app at refs/heads/main",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerability_scan() {
    let env = Env::start();
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    let policy = filled("vulnerability-scan.yaml", &env, Some(&key));
    let opts = Opts::for_registry(env.addr());
    let scanned = |repo: &'static str,
                   finished: SystemTime,
                   severities: &'static [&'static str]| {
        let env = &env;
        let key = &key;
        async move {
            let digest = env.push(repo, "v1").await;
            let finished = jiff::Timestamp::try_from(finished).unwrap().to_string();
            let vulns: Vec<_> = severities
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"VulnerabilityID": format!("CVE-2026-{i:04}"), "Severity": s}))
                .collect();
            let statement = in_toto_statement(
                &format!("{}/{repo}", env.addr()),
                &digest,
                "https://cosign.sigstore.dev/attestation/vuln/v1",
                json!({
                    "invocation": {"uri": "https://ci.acme.test/scan/1"},
                    "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.58.0", "version": "0.58.0", "result": {"SchemaVersion": 2, "Results": [{"Target": "app", "Vulnerabilities": vulns}]}},
                    "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished},
                }),
            );
            attach_attestations(
                &env.client,
                env.addr(),
                repo,
                &digest,
                &[AttestationToAttach::new(key, &statement)],
            )
            .await
            .unwrap();
            format!("{}/{repo}:v1", env.addr())
        }
    };
    let fresh = scanned("apps/fresh", ago(3600), &["HIGH", "LOW"]).await;
    admits(&policy, &opts, &fresh).await;
    let critical = scanned("apps/critical", ago(3600), &["HIGH", "CRITICAL"]).await;
    denies(
        &policy,
        &opts,
        &critical,
        "critical vulnerabilities: CVE-2026-0001",
    )
    .await;
    let stale = scanned("apps/stale", ago(8 * 86400), &[]).await;
    denies(&policy, &opts, &stale, "is older than 7 days").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation() {
    use sigil_testkit::notation::{attach, descriptor, NotationCa, JWS};
    let env = Env::start();
    let ca = NotationCa::new("Acme release CA").unwrap();
    let policy = filled("notation.yaml", &env, None)
        .replace(CA_PLACEHOLDER, &indent(&ca.pem(), 12))
        // The test CA names its signers O=Notary.
        .replace("O=Acme, CN=release", "O=Notary, CN=release");
    let opts = Opts::for_registry(env.addr());
    let signed = |repo: &'static str, cn: &'static str| {
        let env = &env;
        let ca = &ca;
        async move {
            let digest = env.push(repo, "v1").await;
            let d = descriptor(&env.client, env.addr(), repo, &digest)
                .await
                .unwrap();
            let signer = ca.issue_valid(cn).unwrap();
            let envelope = signer.jws(&d.payload(), ago(5), None).unwrap();
            attach(&env.client, env.addr(), repo, &digest, JWS, &envelope)
                .await
                .unwrap();
            format!("{}/{repo}:v1", env.addr())
        }
    };
    let release = signed("notary/app", "release").await;
    admits(&policy, &opts, &release).await;
    let dev = signed("notary/dev", "dev").await;
    denies(
        &policy,
        &opts,
        &dev,
        "matches none of the trusted identities",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemptions() {
    let env = Env::start();
    let policy = filled("exemptions.yaml", &env, None);
    let opts = Opts::for_registry(env.addr());
    env.push("debug/shell", "v1").await;
    admits(&policy, &opts, &format!("{}/debug/shell:v1", env.addr())).await;
    env.push("apps/unlisted", "v1").await;
    denies(
        &policy,
        &opts,
        &format!("{}/apps/unlisted:v1", env.addr()),
        "no ClusterImagePolicy matches",
    )
    .await;
}
