//! The sigstore-conformance verification suite (tests/fixtures/conformance):
//! `sigil verify-bundle` is called exactly as the suite calls a client, once
//! per case folder. Folders ending in `_fail` must be refused (exit 1: the
//! bundle is rejected; exit 2: an input such as the trusted root is unusable),
//! all others must verify (exit 0); cases without their own `trusted_root.json`
//! use the embedded public-good root. No case is marked expected-to-differ.

use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance/bundle-verify")
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The protocol's argument list for one case.
fn arguments(case: &Path, artifact: &str) -> Vec<String> {
    let mut args = vec![
        "verify-bundle".to_string(),
        "--bundle".into(),
        case.join("bundle.sigstore.json").display().to_string(),
    ];
    if case.join("key.pub").exists() {
        args.extend(["--key".into(), case.join("key.pub").display().to_string()]);
    } else {
        args.extend([
            "--certificate-identity".into(),
            read_trimmed(&case.join("identity")).unwrap_or(DEFAULT_IDENTITY.into()),
            "--certificate-oidc-issuer".into(),
            read_trimmed(&case.join("issuer")).unwrap_or(DEFAULT_ISSUER.into()),
        ]);
    }
    if case.join("trusted_root.json").exists() {
        args.extend([
            "--trusted-root".into(),
            case.join("trusted_root.json").display().to_string(),
        ]);
    }
    args.push(artifact.to_string());
    args
}

fn run(args: &[String]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .output()
        .expect("run sigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn every_conformance_case_gives_the_expected_verdict() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 70, "the suite has 70 cases");
    let mut wrong = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let artifact = if case.join("artifact").exists() {
            case.join("artifact")
        } else {
            cases_dir().join("a.txt")
        };
        let (code, output) = run(&arguments(case, &artifact.display().to_string()));
        let ok = if name.ends_with("_fail") {
            (code == 1 || code == 2) && !output.trim().is_empty()
        } else {
            code == 0
        };
        if !ok {
            wrong.push(format!("{name}: exit {code}: {output}"));
        }
    }
    println!(
        "conformance: {}/{} cases pass",
        cases.len() - wrong.len(),
        cases.len()
    );
    assert!(
        wrong.is_empty(),
        "{} cases differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The artifact may be given as its digest instead of a file.
#[test]
fn artifact_may_be_given_as_a_digest() {
    use sha2::{Digest, Sha256};
    let case = cases_dir().join("happy-path-v0.3");
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(
            std::fs::read(cases_dir().join("a.txt")).unwrap()
        ))
    );
    let (code, out) = run(&arguments(&case, &digest));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK: signed by https://github.com/sigstore-conformance/"),
        "{out}"
    );
    let (code, out) = run(&arguments(&case, &format!("sha256:{}", "0".repeat(64))));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rejected"), "{out}");
    // The wrong identity is named.
    let mut args = arguments(&case, &digest);
    let i = args
        .iter()
        .position(|a| a == "--certificate-identity")
        .unwrap();
    args[i + 1] = "https://github.com/someone/else".into();
    let (code, out) = run(&args);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("matches none of: {subject https://github.com/someone/else"),
        "{out}"
    );
}
