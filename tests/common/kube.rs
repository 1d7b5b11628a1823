//! A real Kubernetes control plane for tests: Debian's etcd and a
//! kube-apiserver v1.20.2 built from Debian's `kubernetes` source package
//! (scripts/kube-apiserver.sh), both on loopback. No kubelet, scheduler or
//! controller-manager: admission happens when an object is created.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sigil_testkit::free_port;

/// etcd + kube-apiserver processes, stopped on drop.
pub struct KubeCluster {
    pub url: String,
    pub token: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    /// The CA of the client certificate the apiserver presents to
    /// webhooks (its admission configuration names it): `sigil serve
    /// --client-ca` takes this file.
    pub webhook_client_ca: PathBuf,
    etcd: Child,
    apiserver: Child,
    args: Vec<String>,
}

/// The apiserver binary: `$SIGIL_KUBE_APISERVER`, or where scripts/kube-apiserver.sh caches it.
pub fn apiserver_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SIGIL_KUBE_APISERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/sigil/kube-apiserver-v1.20.2-go119-empty-strings/kube-apiserver")
}

fn wait_port(addr: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).expect("log file")
}

impl KubeCluster {
    pub fn start() -> KubeCluster {
        let bin = apiserver_binary();
        assert!(
            bin.exists(),
            "{} missing: run scripts/kube-apiserver.sh (scripts/test.sh does)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let (client_port, peer_port) = (free_port().unwrap(), free_port().unwrap());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Command::new("etcd")
            .args(["--name", "sigil-test", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("sigil-test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "etcd.log"))
            .spawn()
            .expect("etcd (Debian etcd-server)");
        assert!(
            wait_port(&format!("127.0.0.1:{client_port}"), Duration::from_secs(20)),
            "etcd did not start"
        );

        let token = "sigil-test-admin-token".to_string();
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{token},admin,admin,\"system:masters\"\n"),
        )
        .unwrap();
        let sa_key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("sa.key"), sa_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("sa.pub"), sa_key.public_key_pem()).unwrap();
        let port = free_port().unwrap();
        let webhook_client_ca = webhook_client_identity(dir.path());
        let d = |p: &str| dir.path().join(p).display().to_string();
        let args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", d("certs")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // A webhook's Service is reached through its Endpoints (which a
            // test writes: no controller-manager, no kube-proxy here), not its
            // ClusterIP; the TLS name stays `NAME.NAMESPACE.svc`.
            "--enable-aggregator-routing=true".into(),
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            format!("--admission-control-config-file={}", d("admission.yaml")),
        ];
        let apiserver = spawn_apiserver(&bin, &args, dir.path());
        let url = format!("https://127.0.0.1:{port}");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n"
            ),
        )
        .unwrap();
        let cluster = KubeCluster {
            url,
            token,
            kubeconfig,
            dir,
            webhook_client_ca,
            etcd,
            apiserver,
            args,
        };
        cluster.wait_ready();
        cluster
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "kube-apiserver not ready: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops and restarts the apiserver (same etcd, same port).
    pub fn restart_apiserver(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        self.apiserver = spawn_apiserver(&apiserver_binary(), &self.args, self.dir.path());
        self.wait_ready();
    }

    /// The tail of the apiserver's log.
    pub fn apiserver_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
        let _ = std::fs::write(std::env::temp_dir().join("sigil-apiserver-last.log"), &log);
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl (Debian kubernetes-client)")
    }

    /// Runs kubectl with `stdin` as input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// A CA and a client certificate it issued, and the apiserver's admission
/// configuration presenting that certificate to every webhook (the
/// kubeconfig user `*` matches any webhook host). Returns the CA's path.
fn webhook_client_identity(dir: &Path) -> PathBuf {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "webhook client CA (test)");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver-webhook-client");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let ca_path = dir.join("webhook-client-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(
        dir.join("webhook-client.kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: \"*\"\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&cert.pem()),
            b64(&key.serialize_pem())
        ),
    )
    .unwrap();
    let plugin = |name: &str| {
        format!(
            "- name: {name}\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {}\n",
            dir.join("webhook-client.kubeconfig").display()
        )
    };
    std::fs::write(
        dir.join("admission.yaml"),
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
            plugin("ValidatingAdmissionWebhook"),
            plugin("MutatingAdmissionWebhook")
        ),
    )
    .unwrap();
    ca_path
}

fn spawn_apiserver(bin: &Path, args: &[String], dir: &Path) -> Child {
    Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log_file(dir, "apiserver.log"))
        .spawn()
        .expect("kube-apiserver")
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

pub fn ok(out: &std::process::Output) -> bool {
    out.status.success()
}

pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `f` until it returns true, for at most `limit`; returns the time it took.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

pub fn namespace(c: &KubeCluster, name: &str, label: Option<&str>) {
    assert!(ok(&c.kubectl(&["create", "namespace", name])));
    if let Some(v) = label {
        assert!(ok(&c.kubectl(&[
            "label",
            "namespace",
            name,
            &format!("policy.sigstore.dev/include={v}")
        ])));
    }
}

/// Applies `crds/{name}.yaml` for each name and waits until each is served.
pub fn install_crds(c: &KubeCluster, names: &[&str]) {
    for name in names {
        let yaml =
            std::fs::read_to_string(format!("{}/crds/{name}.yaml", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let out = apply(c, &yaml);
        assert!(ok(&out), "{name}: {}", text(&out));
        assert!(ok(&c.kubectl(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=120s",
            &format!("crd/{name}")
        ])));
    }
}

pub fn apply(c: &KubeCluster, yaml: &str) -> std::process::Output {
    c.kubectl_stdin(&["apply", "-f", "-"], yaml)
}

/// Writes the apiserver has served for `resources` (create, update, patch,
/// apply, delete), from its own `apiserver_request_total`.
pub fn apiserver_writes(c: &KubeCluster, resources: &[&str]) -> u64 {
    let metrics = text(&c.kubectl(&["get", "--raw", "/metrics"]));
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            ["POST", "PUT", "PATCH", "APPLY", "DELETE"]
                .iter()
                .any(|v| l.contains(&format!("verb=\"{v}\"")))
                && resources
                    .iter()
                    .any(|r| l.contains(&format!("resource=\"{r}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
