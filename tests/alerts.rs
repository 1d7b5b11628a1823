//! The chart's alerts and dashboard, checked with Prometheus's own tool
//! (`promtool`, Debian's `prometheus` package, installed by
//! scripts/setup.sh): the rules load, each alert fires on a series made
//! for it and stays quiet on a healthy one (tests/alerts/sigil_test.yaml),
//! every PromQL expression of the dashboard parses, and every metric it
//! reads is one the real `sigil serve` exposes.

mod common;

use std::path::Path;
use std::process::Command;

use common::served::Served;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const METRICS_SOURCE: &str = include_str!("../src/metrics.rs");
const CLUSTER_OR_FAULT_ONLY: &[&str] = &[
    "sigil_events",
    "sigil_background_audit_violations",
    "sigil_registry_hangs",
];

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/setup.sh installs it)");
    (out.status.success(), common::kube::text(&out))
}

#[test]
fn the_alert_rules_load_and_each_alert_fires_only_when_it_should() {
    let (ok, out) = promtool(&["check", "rules", "deploy/sigil-alerts.yaml"]);
    assert!(ok && out.contains("SUCCESS: 10 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "tests/alerts/sigil_test.yaml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    // Every alert has a firing and a quiet case.
    let rules: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/sigil-alerts.yaml")).unwrap(),
    )
    .unwrap();
    let tests =
        std::fs::read_to_string(Path::new(ROOT).join("tests/alerts/sigil_test.yaml")).unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        let firing = tests
            .split("alertname: ")
            .skip(1)
            .filter(|case| case.starts_with(&format!("{name}\n")))
            .map(|case| !case.contains("exp_alerts: []"))
            .collect::<Vec<_>>();
        assert!(
            firing.contains(&true) && firing.contains(&false),
            "{name}: a firing and a quiet case"
        );
    }
}

/// The chart's alert rules rendered for `values` (JSON), as a rule file
/// in `dir` (tests/chart.py --rules, Helm's own Go SDK).
fn rendered_rules(dir: &Path, name: &str, values: &str) -> std::path::PathBuf {
    let out = Command::new(common::helm_python())
        .arg(Path::new(ROOT).join("tests/chart.py"))
        .arg(Path::new(ROOT).join("charts/sigil"))
        .args(["--rules", values])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// One promtool unit test of `rules`: `alert` evaluated 20 minutes into a
/// series of `series` holding `value`, expected to fire or not.
fn promtool_case(rules: &Path, series: &str, value: f64, alert: &str, fires: bool) -> String {
    let dir = rules.parent().unwrap();
    let test = dir.join(format!("{alert}-{}.test.yaml", fires));
    let expected = if fires {
        "    exp_alerts:\n    - exp_labels: {severity: critical, job: sigil-metrics, namespace: sigil-system, instance: a}\n      exp_annotations: {summary: \"sigil's serving certificate expires within 7 days.\"}\n".to_string()
    } else {
        "    exp_alerts: []\n".to_string()
    };
    std::fs::write(
        &test,
        format!(
            "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  input_series:\n  - series: '{series}'\n    values: '{value}x30'\n  alert_rule_test:\n  - eval_time: 20m\n    alertname: {alert}\n{expected}",
            rules.file_name().unwrap().to_str().unwrap()
        ),
    )
    .unwrap();
    let (ok, out) = promtool(&["test", "rules", test.to_str().unwrap()]);
    assert!(ok, "{alert} (fires: {fires}, value {value}): {out}");
    out
}

/// The expiry gauge of a real `sigil serve` started with `args`, and the
/// server (to stop).
fn served_expiry(dir: &Path, args: &[&str]) -> f64 {
    let port = sigil_testkit::free_port().unwrap();
    let metrics = sigil_testkit::free_port().unwrap();
    let policies = dir.join("no-policies");
    std::fs::create_dir_all(&policies).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["--log-level", "warn", "serve"])
        .args(args)
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{metrics}"))
        .arg("--policy-dir")
        .arg(&policies)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let gauge = loop {
        let scrape = scrape_plain(metrics);
        if let Some(v) = scrape
            .lines()
            .find_map(|l| l.strip_prefix("sigil_serving_certificate_expiry_timestamp_seconds "))
        {
            break v.trim().parse::<f64>().unwrap();
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no metrics"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    gauge
}

/// `GET /metrics` over plain HTTP/1.0 (empty while nothing listens).
fn scrape_plain(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// A certificate for localhost ending `days` from now (at midnight UTC).
fn certificate_ending_in(dir: &Path, days: i64) -> (std::path::PathBuf, std::path::PathBuf, f64) {
    let end = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(end.year().into(), end.month() as u8, end.day() as u8);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, pem) = (
        dir.join(format!("{days}.crt")),
        dir.join(format!("{days}.key")),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    let not_after = jiff::civil::date(end.year(), end.month(), end.day())
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second() as f64;
    (crt, pem, not_after)
}

/// Every way sigil gets its serving certificate sets the expiry gauge to
/// that certificate's end (the chart's `secret` and `certManager` modes
/// run `--tls-cert`; `self` runs `--tls-secret`, checked by
/// tests/install.rs; `--self-signed` outside the chart), and the alert
/// rendered for each chart mode is quiet for a certificate with time left
/// and fires for one about to end. A gauge left at 0 would have fired it
/// from the start; the rule now leaves 0 (nothing served yet) alone.
#[test]
fn the_certificate_alert_tells_the_truth_in_every_certificate_mode() {
    let dir = tempfile::tempdir().unwrap();
    let series = r#"sigil_serving_certificate_expiry_timestamp_seconds{job="sigil-metrics",namespace="sigil-system",instance="a"}"#;
    // promtool's clock starts at 0: a gauge is fed as the seconds it has
    // left at the time it was scraped.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let (long_crt, long_key, long_end) = certificate_ending_in(dir.path(), 90);
    let (short_crt, short_key, short_end) = certificate_ending_in(dir.path(), 3);
    let long = served_expiry(
        dir.path(),
        &[
            "--tls-cert",
            long_crt.to_str().unwrap(),
            "--tls-key",
            long_key.to_str().unwrap(),
        ],
    );
    assert_eq!(
        long, long_end,
        "--tls-cert: the gauge is the certificate's end"
    );
    let short = served_expiry(
        dir.path(),
        &[
            "--tls-cert",
            short_crt.to_str().unwrap(),
            "--tls-key",
            short_key.to_str().unwrap(),
        ],
    );
    assert_eq!(short, short_end);
    let self_signed = served_expiry(dir.path(), &["--self-signed", "--self-signed-dir", "certs"]);
    assert!(
        self_signed > now() + 365.0 * 86400.0,
        "--self-signed: {self_signed}"
    );
    for (mode, values) in [
        ("self", r#"{}"#),
        (
            "secret",
            r#"{"certificates": {"mode": "secret", "secret": {"caBundle": "Q0E="}}}"#,
        ),
        (
            "certManager",
            r#"{"certificates": {"mode": "certManager"}}"#,
        ),
    ] {
        let rules = rendered_rules(dir.path(), mode, values);
        let alert = "SigilCertificateExpiringSoon";
        promtool_case(&rules, series, long - now(), alert, false);
        promtool_case(&rules, series, self_signed - now(), alert, false);
        promtool_case(&rules, series, short - now(), alert, true);
        promtool_case(&rules, series, 0.0, alert, false);
    }
}

/// With `sigil.auditInterval: 0s` the background audit never runs, and
/// no staleness alert is rendered to fire forever; with 30m it fires after
/// an hour without a run, not before.
#[test]
fn the_audit_staleness_alert_follows_the_audit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let off = rendered_rules(dir.path(), "off", r#"{"sigil": {"auditInterval": "0s"}}"#);
    let (ok, out) = promtool(&["check", "rules", off.to_str().unwrap()]);
    assert!(ok && out.contains("SUCCESS: 9 rules found"), "{out}");
    assert!(!std::fs::read_to_string(&off)
        .unwrap()
        .contains("SigilBackgroundAuditStale"));
    let half_hour = rendered_rules(dir.path(), "half", r#"{"sigil": {"auditInterval": "30m"}}"#);
    let text = std::fs::read_to_string(&half_hour).unwrap();
    assert!(text.contains("> 3600"), "{text}");
    let test = dir.path().join("stale.test.yaml");
    std::fs::write(
        &test,
        "rule_files: [half.yaml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  input_series:\n  - series: 'sigil_background_audit_last_run_timestamp_seconds{job=\"sigil-metrics\",namespace=\"sigil-system\",instance=\"a\"}'\n    values: '0x200'\n  alert_rule_test:\n  - eval_time: 65m\n    alertname: SigilBackgroundAuditStale\n    exp_alerts: []\n  - eval_time: 75m\n    alertname: SigilBackgroundAuditStale\n    exp_alerts:\n    - exp_labels: {severity: warning}\n      exp_annotations: {summary: \"The background audit (30m) has not run for two intervals; PolicyReports are getting old.\"}\n",
    )
    .unwrap();
    let (ok, out) = promtool(&["test", "rules", test.to_str().unwrap()]);
    assert!(ok, "{out}");
}

#[test]
fn a_broken_rule_is_refused_by_the_same_check() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(sigil_admission_reviews_total[5m]) > \n",
    )
    .unwrap();
    let (ok, out) = promtool(&["check", "rules", bad.to_str().unwrap()]);
    assert!(!ok, "{out}");
}

/// The dashboard's PromQL expressions.
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("charts/sigil/dashboards/sigil.json"))
            .unwrap(),
    )
    .unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_expression_parses_and_reads_real_metrics() {
    let exprs = dashboard_expressions();
    assert!(exprs.len() >= 15);
    // promtool parses each as a recording rule.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("dashboard.yaml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        text.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    std::fs::write(&rules, text).unwrap();
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "{out}");

    // Every sigil metric they name is in a real scrape of sigil serve,
    // after it reviewed a key-signed image and an unsigned one from the
    // real registry (a family shows only once it has a series).
    let env = common::Env::start();
    let key = sigil_testkit::TestKey::generate(sigil_testkit::TestKeyKind::P256).unwrap();
    let signed = env.push("team/app", "v1").await;
    env.sign("team/app", &signed, &key).await;
    let unsigned = env.push("team/other", "v1").await;
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        common::key_policy("p", &format!("{}/team/**", env.addr()), &[&key], ""),
    )
    .unwrap();
    let served = Served::start(dir.path(), &policies, &["--insecure-registry", env.addr()]);
    for image in [
        format!("{}/team/app@{signed}", env.addr()),
        format!("{}/team/other@{unsigned}", env.addr()),
    ] {
        served.review(&image).await;
    }
    let scrape = served
        .http
        .get(&served.metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exposed: std::collections::BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let name = regex::Regex::new(r"\bsigil_[a-z0-9_]+").unwrap();
    let mut missing = Vec::new();
    for e in &exprs {
        for m in name.find_iter(e) {
            let metric = m.as_str();
            let family = ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|s| metric.strip_suffix(s))
                .unwrap_or(metric);
            if exposed.contains(family) || exposed.contains(metric) {
                continue;
            }
            // Families only a cluster (Events, the background audit) or a
            // hanging registry fills; their registration is checked here,
            // their values by tests/cluster.rs and tests/faults.rs.
            if CLUSTER_OR_FAULT_ONLY.contains(&family)
                && METRICS_SOURCE.contains(&format!("\"{}\"", family.trim_start_matches("sigil_")))
            {
                continue;
            }
            missing.push(metric.to_string());
        }
    }
    assert!(missing.is_empty(), "not exposed: {missing:?}\n{scrape}");
    drop(served);
}
