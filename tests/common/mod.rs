//! Test harness: a real Debian docker-registry on loopback, images and cosign
//! signatures pushed into it, and the sigil pipeline built around it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use oci_client::{Client, Reference};
use serde_json::Value;
use sigil::audit::MemoryAuditSink;
use sigil::decision::{DecisionSettings, NoMatchAction, ServerMode};
use sigil::policy::{files, PolicyStore};
use sigil::registry::{RegistryClient, RegistryOptions};
use sigil::service::{Evaluator, EvaluatorSettings};
use sigil::verify::{Verifier, VerifierSettings};
use sigil_testkit::{plain_http_client, push_image, LocalRegistry, TestKey};

pub use sigil_testkit::pod_review;

pub mod faults;
pub mod github_api;
pub mod kube;
pub mod served;
pub mod sigil_proc;
pub mod token_server;

/// One registry plus a client that pushes to it.
pub struct Env {
    pub registry: LocalRegistry,
    pub client: Client,
}

impl Env {
    pub fn start() -> Env {
        sigil::install_crypto_provider();
        let registry = LocalRegistry::start().expect("start docker-registry");
        let client = plain_http_client(std::slice::from_ref(&registry.addr));
        Env { registry, client }
    }

    pub fn addr(&self) -> &str {
        &self.registry.addr
    }

    pub fn reference(&self, repo: &str, tag: &str) -> Reference {
        Reference::with_tag(self.addr().into(), repo.into(), tag.into())
    }

    /// Pushes a fresh image at `repo:tag`, returns its digest.
    pub async fn push(&self, repo: &str, tag: &str) -> String {
        push_image(&self.client, &self.reference(repo, tag))
            .await
            .expect("push image")
    }

    /// Signs `repo@digest` with `key` in cosign's legacy layout.
    pub async fn sign(&self, repo: &str, digest: &str, key: &TestKey) {
        sigil_testkit::sign_image(&self.client, self.addr(), repo, digest, key)
            .await
            .expect("sign image")
    }
}

/// A registry that requires basic auth (`alice` / `s3cret`).
pub struct PrivateRegistry {
    pub registry: LocalRegistry,
    pub auth: oci_client::secrets::RegistryAuth,
    _htpasswd_dir: tempfile::TempDir,
}

/// Starts a [`PrivateRegistry`].
pub fn private_registry() -> PrivateRegistry {
    sigil::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    let registry = LocalRegistry::start_with(&sigil_testkit::RegistrySetup {
        htpasswd: Some(htpasswd),
        tls: None,
        token: None,
    })
    .expect("start docker-registry with basic auth");
    PrivateRegistry {
        registry,
        auth: oci_client::secrets::RegistryAuth::Basic("alice".into(), "s3cret".into()),
        _htpasswd_dir: dir,
    }
}

/// Options for building the pipeline under test.
#[derive(Clone)]
pub struct Opts {
    pub server_mode: ServerMode,
    pub no_match: NoMatchAction,
    pub verify_timeout: Duration,
    pub insecure: Vec<String>,
    /// Trusted roots (default: the embedded public-good root).
    pub trust: Option<Arc<sigil::trust::TrustStore>>,
    /// `--require-digest`. Off in the harness by default: most tests are
    /// about verifying what a tag resolves to (as `/mutate` and `check
    /// --image` do); tests/gate.rs covers the requirement itself, and the
    /// cluster and server tests run the binary with its default (on).
    pub require_digest: bool,
    /// A docker `config.json` with registry credentials.
    pub docker_config: Option<std::path::PathBuf>,
    /// Extra CA files trusted for registries (and GitHub's API).
    pub ca_files: Vec<std::path::PathBuf>,
}

impl Opts {
    pub fn for_registry(addr: &str) -> Opts {
        Opts {
            server_mode: ServerMode::Enforce,
            no_match: NoMatchAction::Deny,
            verify_timeout: Duration::from_secs(8),
            insecure: vec![addr.to_string()],
            trust: None,
            require_digest: false,
            docker_config: None,
            ca_files: Vec::new(),
        }
    }
}

/// Builds the pipeline with `policies_yaml` loaded; returns it and its audit log.
pub fn pipeline(policies_yaml: &str, opts: &Opts) -> (Arc<Evaluator>, Arc<MemoryAuditSink>) {
    let defs = files::parse_documents(policies_yaml).expect("policies parse");
    pipeline_of(&defs, opts)
}

/// [`pipeline`] with policy definitions made elsewhere (e.g. by the
/// cluster watch's reading of an object and its Secrets).
pub fn pipeline_of(
    defs: &[sigil::policy::store::PolicyDefinition],
    opts: &Opts,
) -> (Arc<Evaluator>, Arc<MemoryAuditSink>) {
    let store = Arc::new(PolicyStore::new());
    store.replace_source("test", defs);
    let registry = RegistryClient::new(&RegistryOptions {
        insecure: opts.insecure.clone(),
        docker_config: opts.docker_config.clone(),
        ca_files: opts.ca_files.clone(),
        connect_timeout: Some(Duration::from_secs(2)),
        read_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    })
    .expect("registry client");
    let mut settings = VerifierSettings::default();
    if let Some(t) = &opts.trust {
        settings.trust = t.clone();
    }
    let verifier = Arc::new(Verifier::new(Arc::new(registry), &settings));
    let audit = Arc::new(MemoryAuditSink::default());
    let evaluator = Arc::new(Evaluator::new(
        store,
        verifier,
        EvaluatorSettings {
            decision: DecisionSettings {
                server_mode: opts.server_mode,
                no_match: opts.no_match,
            },
            verify_timeout: opts.verify_timeout,
            require_digest: opts.require_digest,
            ..Default::default()
        },
        audit.clone(),
    ));
    (evaluator, audit)
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

/// A ClusterImagePolicy YAML document with key authorities.
pub fn key_policy(name: &str, glob: &str, keys: &[&TestKey], extra_spec: &str) -> String {
    let mut auth = String::new();
    for k in keys {
        auth.push_str(&format!(
            "    - key:\n        data: |\n{}",
            indent(&k.public_pem, 10)
        ));
    }
    format!(
        "---\napiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: {name}\nspec:\n  images:\n    - glob: \"{glob}\"\n{extra_spec}  authorities:\n{auth}"
    )
}

/// A ClusterImagePolicy with a static authority.
pub fn static_policy(name: &str, glob: &str, action: &str, message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("\n        message: \"{m}\""))
        .unwrap_or_default();
    format!(
        "---\napiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: {name}\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n    - static:\n        action: {action}{msg}\n"
    )
}

/// Sends an AdmissionReview body through the webhook handler; returns the `response`.
pub async fn review(evaluator: &Evaluator, body: &Value) -> Value {
    let bytes = evaluator
        .review(&serde_json::to_vec(body).unwrap())
        .await
        .expect("review accepted");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], body["request"]["uid"], "uid echoed");
    v["response"].clone()
}

/// Reviews a one-container Pod with `image`.
pub async fn review_pod(evaluator: &Evaluator, image: &str) -> Value {
    review(evaluator, &pod_review("uid-1", "default", "p", image)).await
}

pub fn allowed(resp: &Value) -> bool {
    resp["allowed"].as_bool().expect("allowed is a bool")
}

pub fn message(resp: &Value) -> String {
    resp["status"]["message"].as_str().unwrap_or("").to_string()
}

pub fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The Python that runs Helm's Go SDK (helm-python-sdk): `$SIGIL_HELM_PYTHON`,
/// or the venv scripts/setup.sh makes under ~/.cache/sigil.
pub fn helm_python() -> String {
    std::env::var("SIGIL_HELM_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/sigil/helm-venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

/// `dir/policies` holding `yaml` as its one policy file.
pub fn policy_dir(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("p.yaml"), yaml).unwrap();
    policies
}

/// Serves `files` over HTTP on loopback; returns the base URL.
pub async fn serve_files(files: std::collections::BTreeMap<String, Vec<u8>>) -> String {
    let files = std::sync::Arc::new(files);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let files = files.clone();
        async move {
            match files.get(uri.path().trim_start_matches('/')) {
                Some(b) => (axum::http::StatusCode::OK, b.clone()),
                None => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The objects GitHub's trust-policies chart renders (see the fixtures
/// README).
pub const GITHUB_CHART_OBJECTS: &str = include_str!("../fixtures/github/trust-policies.yaml");

/// [`GITHUB_CHART_OBJECTS`] with the TrustRoot's mirror and root replaced
/// (the test kit's own instance); the ClusterImagePolicy byte for byte as
/// rendered.
pub fn github_chart_objects(mirror: &str, root_b64: &str) -> String {
    let mut out = String::new();
    let mut lines = GITHUB_CHART_OBJECTS.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "mirror: https://tuf-repo.github.com/" {
            out.push_str(&format!("    mirror: {mirror}\n"));
        } else if line.trim() == "root: |-" {
            out.push_str(&format!("{line}\n      {root_b64}\n"));
            lines.next();
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `n` listeners on 127.0.0.`first`, … that accept connections and never
/// answer (a registry behind wildcard DNS pointing at a black hole).
pub async fn black_holes(first: u8, n: u8) -> Vec<String> {
    let mut addrs = Vec::new();
    for i in 0..n {
        let listener = tokio::net::TcpListener::bind((format!("127.0.0.{}", first + i), 0))
            .await
            .unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
    }
    addrs
}
