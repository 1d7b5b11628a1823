//! `sigil serve` as a process beside a real kube-apiserver
//! ([`super::kube::KubeCluster`]): started with `--kubeconfig`, called by
//! the apiserver through the webhook configurations made here.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sigil_testkit::free_port;

use super::kube::{apply, ok, KubeCluster};

pub struct Sigil {
    pub child: Child,
    pub url: String,
    pub ca_pem: String,
    /// Its stderr.
    pub log: std::path::PathBuf,
    /// `http://127.0.0.1:<port>/metrics`.
    pub metrics_url: String,
}

impl Sigil {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sigil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sigil {
    /// Stops sigil and returns what it wrote to stdout (the audit log).
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }
}

pub fn start_sigil(cluster: &KubeCluster, registries: &[&str]) -> Sigil {
    start_sigil_with(cluster, registries, &[])
}

pub fn start_sigil_with(cluster: &KubeCluster, registries: &[&str], extra: &[&str]) -> Sigil {
    // Its namespace holds the leader Lease, without which it writes no
    // status; a short Lease, so that a sigil started after another was
    // killed leads soon.
    let _ = cluster.kubectl(&["create", "namespace", "sigil-system"]);
    let lease: &[&str] = if extra.contains(&"--lease-duration") {
        &[]
    } else {
        &["--lease-duration", "2s"]
    };
    let port = free_port().unwrap();
    let metrics_port = free_port().unwrap();
    let log = cluster.dir.path().join(format!("sigil-{port}.log"));
    let certs = cluster.dir.path().join(format!("sigil-certs-{port}"));
    let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--self-signed",
        ])
        .args(registries.iter().flat_map(|r| ["--insecure-registry", r]))
        .args(extra)
        .args(lease)
        // Every review comes from the apiserver, authenticated by the client
        // certificate of its admission configuration (common/kube.rs).
        .arg("--client-ca")
        .arg(&cluster.webhook_client_ca)
        .arg("--self-signed-dir")
        .arg(&certs)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !certs.join("ca.pem").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sigil did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    Sigil {
        child,
        url: format!("https://127.0.0.1:{port}"),
        ca_pem: std::fs::read_to_string(certs.join("ca.pem")).unwrap(),
        log,
        metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
    }
}

pub fn webhook_config(sigil: &Sigil) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&sigil.ca_pem);
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: sigil
webhooks:
  - name: mutate.sigil.dev
    clientConfig:
      url: {url}/mutate
      caBundle: {ca}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["pods", "replicationcontrollers"]
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
      - apiGroups: ["batch"]
        apiVersions: ["v1", "v1beta1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["jobs", "cronjobs"]
    failurePolicy: Fail
    sideEffects: None
    timeoutSeconds: 10
    admissionReviewVersions: ["v1"]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: sigil
webhooks:
  - name: validate.sigil.dev
    clientConfig:
      url: {url}/validate
      caBundle: {ca}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["pods", "pods/ephemeralcontainers", "replicationcontrollers"]
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
      - apiGroups: ["batch"]
        apiVersions: ["v1", "v1beta1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["jobs", "cronjobs"]
    failurePolicy: Fail
    sideEffects: NoneOnDryRun
    timeoutSeconds: 10
    admissionReviewVersions: ["v1"]
"#,
        url = sigil.url
    )
}

/// Waits until `sigil` is ready, then has the apiserver call it (its
/// webhook configurations); returns a client trusting its certificate.
pub async fn ready_behind_the_apiserver(c: &KubeCluster, sigil: &Sigil) -> reqwest::Client {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sigil.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{}/readyz", sigil.url)).send().await {
            if r.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "sigil not ready; its log:\n{}", sigil.log());
    assert!(ok(&apply(c, &webhook_config(sigil))));
    http
}
