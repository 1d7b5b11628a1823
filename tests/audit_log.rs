//! The audit log as the real `sigil serve` writes it, read back by
//! `sigil report`: counted, filtered, and its hash chain verified against
//! its keyed checkpoints; every line altered, deleted, cut or injected is
//! named, and logs captured by `kubectl logs --timestamps` or the CRI log
//! files are read when told so.

mod common;

use std::process::Command;

use common::served::Served;
use common::*;
use sigil_testkit::{pod_review, TestKey, TestKeyKind};

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
    let key_file = dir.path().join("audit.key");
    std::fs::write(&key_file, "k".repeat(40) + "\n").unwrap();
    let key_arg = key_file.to_str().unwrap().to_string();
    let policies = policy_dir(dir.path(), &key_policy("release-signed", "**", &[&k], ""));
    let served = Served::start(
        dir.path(),
        &policies,
        &["--insecure-registry", &addr, "--audit-key-file", &key_arg],
    );
    assert_eq!(
        served.review(&format!("{addr}/acme/signed@{signed}")).await["allowed"],
        true
    );
    for i in 0..5 {
        let image = format!("{addr}/acme/unsigned-{}@sha256:{:064x}", i % 2, i + 1);
        assert_eq!(served.review(&image).await["allowed"], false);
    }
    // A dry run is audited too, and marked.
    let mut dry = pod_review(
        "uid-dry",
        "default",
        "p",
        &format!("{addr}/acme/unsigned-9@sha256:{:064x}", 9),
    );
    dry["request"]["dryRun"] = true.into();
    let answer: serde_json::Value = served
        .http
        .post(format!("{}/validate", served.base))
        .json(&dry)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    let log = served.stop_raw();
    let lines: Vec<&str> = log.lines().collect();
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The start checkpoint, one line per denied image (the admitted one
    // writes nothing), the last checkpoint at shutdown; each keyed.
    assert_eq!(lines.len(), 8, "{log}");
    assert_eq!(values[0]["target"], "audit-checkpoint");
    assert_eq!(values[7]["target"], "audit-checkpoint");
    assert_eq!(values[7]["last"], true);
    assert_eq!(values[7]["seq"], 6);
    assert!(values[7]["mac"].as_str().unwrap().len() == 64);
    assert_eq!(values[6]["dryRun"], true);
    assert!(values[1].get("dryRun").is_none(), "{}", values[1]);
    let write = |name: &str, ls: &[String]| {
        let p = dir.path().join(name);
        std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        p.to_str().unwrap().to_string()
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let file = write("audit.log", &owned);

    let (code, out) = report(&[&file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("6 audit records from "), "{out}");
    assert!(out.contains("      6  denied\n"), "{out}");
    assert!(out.contains("      6  release-signed\n"), "{out}");
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
    let (code, out) = report(&[&file, "--output", "json", "--namespace", "elsewhere"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["records"], 0, "{out}");
    let (code, out) = report(&[&file, "--output", "json", "--since", "1h"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["records"], 6, "{out}");

    // Whole, and written by a holder of the key.
    let (code, out) = report(&["--verify", &file, "--key-file", &key_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("chain whole: 1 stream(s), 6 record(s), 2 checkpoint(s)"),
        "{out}"
    );
    assert!(out.contains("records (seq 1..6), head "), "{out}");
    assert!(out.contains("checkpointed to seq 6"), "{out}");
    // Without the key: whole, with a note that it was not proven.
    let (code, out) = report(&["--verify", &file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("give --key-file"), "{out}");
    // Another key: nothing is proven.
    let other = write("other.key", &["o".repeat(40)]);
    let (code, out) = report(&["--verify", &file, "--key-file", &other]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not verify under the key"), "{out}");

    // An altered line and a deleted one, in one log: both named.
    let mut broken = owned.clone();
    broken[2] = broken[2].replace("\"denied\"", "\"audited\"");
    assert_ne!(broken[2], owned[2]);
    broken.remove(4);
    let (code, out) = report(&["--verify", &write("broken.log", &broken)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("chain broken: 2 break(s)"), "{out}");
    assert!(
        out.contains("broken at line 4: stream ")
            && out.contains("seq 3 does not follow the line of seq 2"),
        "{out}"
    );
    assert!(
        out.contains("broken at line 5: stream ")
            && out.contains("seq 5 follows seq 3 (1 record(s) missing)"),
        "{out}"
    );
    // The tail cut, its last checkpoint kept apart (as stderr would be).
    let cut = write("cut.log", &owned[..5]);
    let (code, out) = report(&["--verify", &cut]);
    assert_eq!(
        code, 0,
        "without a checkpoint a cut tail is not seen: {out}"
    );
    let kept = write("checkpoints.log", &owned[7..]);
    let (code, out) = report(&["--verify", &cut, "--checkpoints", &kept]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the log ends at seq 4, but a checkpoint names seq 6: the last 2 record(s) were cut"
        ),
        "{out}"
    );
    // A record written after the stream ended: injected.
    let mut injected = owned.clone();
    injected.push(owned[6].replace("uid-dry", "uid-late"));
    let (code, out) = report(&[
        "--verify",
        &write("injected.log", &injected),
        "--key-file",
        &key_arg,
    ]);
    assert_eq!(code, 1, "{out}");
    // Rotated in two files, read in order: whole.
    let first = write("audit.log.1", &owned[..3]);
    let second = write("audit.log.2", &owned[3..]);
    let (code, out) = report(&["--verify", &first, &second]);
    assert_eq!(code, 0, "{out}");

    // As `kubectl logs --timestamps` shows it: unreadable unless told.
    let kubectl: Vec<String> = owned
        .iter()
        .map(|l| format!("2026-12-03T10:00:00.000000001Z {l}"))
        .collect();
    let kubectl = write("kubectl.log", &kubectl);
    let (code, out) = report(&["--verify", &kubectl]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("8 line(s) could not be read"), "{out}");
    assert!(out.contains("--format kubectl-timestamps"), "{out}");
    let (code, out) = report(&["--verify", "--format", "kubectl-timestamps", &kubectl]);
    assert_eq!(code, 0, "{out}");
    // As the CRI log file holds it: a long line split in two, a stderr
    // line between.
    let mut cri = Vec::new();
    for (i, l) in owned.iter().enumerate() {
        if i == 3 {
            let (a, b) = l.split_at(100);
            cri.push(format!("2026-12-03T10:00:00.1Z stdout P {a}"));
            cri.push(
                "2026-12-03T10:00:00.1Z stderr F 2026-12-03T10:00:00.1Z  WARN sigil: a log line"
                    .into(),
            );
            cri.push(format!("2026-12-03T10:00:00.2Z stdout F {b}"));
        } else {
            cri.push(format!("2026-12-03T10:00:00.1Z stdout F {l}"));
        }
    }
    let cri = write("cri.log", &cri);
    let (code, out) = report(&["--verify", "--format", "cri", &cri, "--key-file", &key_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 log line(s) of sigil's skipped"), "{out}");
    let (code, out) = report(&["--format", "cri", &cri]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("6 audit records from "), "{out}");
}
