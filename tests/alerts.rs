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
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_alert_rules_load_and_each_alert_fires_only_when_it_should() {
    let (ok, out) = promtool(&["check", "rules", "charts/sigil/alerts/rules.yaml"]);
    assert!(ok && out.contains("SUCCESS: 9 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "tests/alerts/sigil_test.yaml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    // Every alert has a firing and a quiet case.
    let rules: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("charts/sigil/alerts/rules.yaml")).unwrap(),
    )
    .unwrap();
    let tests =
        std::fs::read_to_string(Path::new(ROOT).join("tests/alerts/sigil_test.yaml")).unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        let cases = tests.matches(&format!("alertname: {name}\n")).count();
        assert_eq!(cases, 2, "{name}: a firing and a quiet case");
    }
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
