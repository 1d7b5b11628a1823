//! The real `sigil serve` binary, started with a self-signed certificate
//! on free loopback ports (HTTPS and metrics), read through its answers,
//! its audit records (stdout) and its `/metrics`.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sigil_testkit::{free_port, pod_review};

/// A running `sigil serve`.
pub struct Served {
    pub child: Child,
    /// `https://localhost:<port>`.
    pub base: String,
    /// `http://127.0.0.1:<port>/metrics`.
    pub metrics_url: String,
    pub http: reqwest::Client,
    /// stdout (the audit log), read as it comes: a pipe nobody reads
    /// fills and then blocks the server's writes.
    audit: Option<std::thread::JoinHandle<String>>,
}

impl Served {
    pub fn start(dir: &Path, policy_dir: &Path, extra: &[&str]) -> Served {
        let port = free_port().unwrap();
        let metrics_port = free_port().unwrap();
        let certs = dir.join(format!("certs-{port}"));
        let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["--log-level", "warn", "serve", "--self-signed"])
            .arg("--self-signed-dir")
            .arg(&certs)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--policy-dir")
            .arg(policy_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("sigil-{port}.log"))).unwrap())
            .spawn()
            .unwrap();
        let mut child = child;
        let mut stdout = child.stdout.take().unwrap();
        let audit = Some(std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        }));
        let start = Instant::now();
        while !certs.join("ca.pem").exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "sigil did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The CA is written before the listener is bound: wait for it (a
        // busy machine can take longer than any fixed pause).
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sigil did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let ca = std::fs::read(certs.join("ca.pem")).unwrap();
        Served {
            child,
            audit,
            base: format!("https://localhost:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap(),
        }
    }

    pub async fn review(&self, image: &str) -> Value {
        let body = pod_review("uid-f", "default", "p", image);
        let v: Value = self
            .http
            .post(format!("{}/validate", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["response"].clone()
    }

    /// Peak resident set size so far (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident set size now (`VmRSS`), KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Starts the peak (`VmHWM`) again from the resident set size now
    /// (Linux's `clear_refs` 5), so that the next peak is what comes after.
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }

    /// CPU time sigil has used so far (user + system), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Stops the server; returns its audit records (not its checkpoints).
    pub fn stop(self) -> Vec<Value> {
        self.stop_raw()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["target"] == "audit")
            .collect()
    }

    /// Stops the server; returns its stdout (the audit log) as written.
    pub fn stop_raw(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.audit
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Served {
    /// A test that fails midway must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
