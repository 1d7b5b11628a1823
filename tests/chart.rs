//! The Helm chart, rendered and linted by Helm v4's own Go SDK (the PyPI
//! package helm-python-sdk, which scripts/setup.sh installs into a venv
//! under ~/.cache/sigil; no helm binary): defaults and the value sets that
//! change what is rendered, clean lint, and schema typos refused. The
//! checks are in tests/chart.py.

mod common;

use std::process::Command;

#[test]
fn the_chart_renders_lints_clean_and_refuses_typos() {
    let python = common::helm_python();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&python)
        .arg(format!("{root}/tests/chart.py"))
        .arg(format!("{root}/charts/sigil"))
        .output()
        .unwrap_or_else(|e| {
            panic!("{python}: {e} (scripts/setup.sh installs helm-python-sdk there)")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("chart: ok"), "{text}");
}

/// The chart's CRDs are the project's: the same files, byte for byte
/// (scripts/gen-crds.sh writes both): sigil's in the chart's `crds/`,
/// Kyverno's kinds in `files/kyverno-crds/` (installed by a template).
#[test]
fn the_charts_crds_are_the_projects() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = |dir: &str| {
        let mut names: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        names
    };
    for (ours, chart) in [
        ("crds", "charts/sigil/crds"),
        ("crds/kyverno", "charts/sigil/files/kyverno-crds"),
    ] {
        let names = files(ours);
        assert!(!names.is_empty());
        assert_eq!(names, files(chart));
        for name in names {
            assert_eq!(
                std::fs::read(root.join(ours).join(&name)).unwrap(),
                std::fs::read(root.join(chart).join(&name)).unwrap(),
                "{chart}/{name:?} is stale: run scripts/gen-crds.sh"
            );
        }
    }
}

/// deploy/sigil.yaml and deploy/sigil-alerts.yaml are the chart's defaults
/// as rendered now (scripts/gen-deploy.sh), never hand-kept.
#[test]
fn the_manual_install_is_the_charts_rendered_defaults() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("sigil.yaml");
    let fresh_alerts = dir.path().join("sigil-alerts.yaml");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/gen-deploy.sh"))
        .arg(&fresh)
        .arg(&fresh_alerts)
        .env("SIGIL_HELM_PYTHON", common::helm_python())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = std::fs::read_to_string(format!("{root}/deploy/sigil.yaml")).unwrap();
    assert!(
        std::fs::read_to_string(&fresh).unwrap() == kept,
        "deploy/sigil.yaml differs from the chart's rendered defaults: run scripts/gen-deploy.sh"
    );
    assert!(kept.contains("--tls-secret=sigil-webhook-tls"), "{kept}");
    assert!(
        std::fs::read_to_string(&fresh_alerts).unwrap()
            == std::fs::read_to_string(format!("{root}/deploy/sigil-alerts.yaml")).unwrap(),
        "deploy/sigil-alerts.yaml differs from the chart's alerts: run scripts/gen-deploy.sh"
    );
}
