//! The audit log as the real `sigil serve` writes it, read back by
//! `sigil report`: counted, filtered, and its hash chain verified; a line
//! altered, deleted or moved is named.

mod common;

use std::process::Command;

use common::served::Served;
use common::*;
use sigil_testkit::{TestKey, TestKeyKind};

fn report(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_audit_log_is_counted_and_its_chain_verified() {
    let env = Env::start();
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let signed = env.push("acme/signed", "v1").await;
    env.sign("acme/signed", &signed, &k).await;
    let addr = env.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(dir.path(), &key_policy("release-signed", "**", &[&k], ""));
    let served = Served::start(dir.path(), &policies, &["--insecure-registry", &addr]);
    assert_eq!(
        served.review(&format!("{addr}/acme/signed@{signed}")).await["allowed"],
        true
    );
    for i in 0..5 {
        let image = format!("{addr}/acme/unsigned-{}@sha256:{:064x}", i % 2, i + 1);
        assert_eq!(served.review(&image).await["allowed"], false);
    }
    let log = served.stop_raw();
    let lines: Vec<&str> = log.lines().collect();
    // One line per denied image; the admitted one writes nothing.
    assert_eq!(lines.len(), 5, "{log}");
    let file = dir.path().join("audit.log");
    std::fs::write(&file, &log).unwrap();
    let file = file.to_str().unwrap();

    let (code, out) = report(&[file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("5 audit records from "), "{out}");
    assert!(out.contains("      5  denied\n"), "{out}");
    assert!(out.contains("      5  release-signed\n"), "{out}");
    // Images by name (not by digest), reasons with digests masked.
    assert!(
        out.contains(&format!("      3  {addr}/acme/unsigned-0\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "      3  authority-0: no signatures found at {addr}/acme/unsigned-0:sha256:….sig\n"
        )),
        "{out}"
    );
    let (code, out) = report(&[file, "--output", "json", "--namespace", "elsewhere"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["records"], 0, "{out}");
    let (code, out) = report(&[file, "--output", "json", "--since", "1h"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["records"], 5, "{out}");

    let (code, out) = report(&["--verify", file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("chain whole: 1 stream(s)"), "{out}");
    assert!(out.contains(": 5 records, head "), "{out}");

    let write = |name: &str, ls: &[String]| {
        let p = dir.path().join(name);
        std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        p.to_str().unwrap().to_string()
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    // An altered line: the next one no longer follows it.
    let mut altered = owned.clone();
    altered[2] = altered[2].replace("\"denied\"", "\"audited\"");
    assert_ne!(altered[2], owned[2]);
    let (code, out) = report(&["--verify", &write("altered.log", &altered)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("chain broken at line 4: stream "), "{out}");
    assert!(
        out.contains("seq 4 does not follow the line of seq 3"),
        "{out}"
    );
    // A deleted line.
    let mut deleted = owned.clone();
    deleted.remove(2);
    let (code, out) = report(&["--verify", &write("deleted.log", &deleted)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("chain broken at line 3: stream "), "{out}");
    assert!(
        out.contains("seq 4 follows seq 2 (1 record(s) missing)"),
        "{out}"
    );
    // The first line cut.
    let (code, out) = report(&["--verify", &write("cut.log", &owned[1..])]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("line 1: stream") && out.contains("begins at seq 2"),
        "{out}"
    );
    // Rotated in two files, read in order: whole.
    let first = write("audit.log.1", &owned[..2]);
    let second = write("audit.log.2", &owned[2..]);
    let (code, out) = report(&["--verify", &first, &second]);
    assert_eq!(code, 0, "{out}");
}
