use super::*;
use crate::audit::{AuditRecord, RequestContext};
use crate::decision::{Finding, FindingDecision};
use sha2::Digest as _;

/// Lines as the stdout sink writes them, from its own chaining code.
fn chained_lines(n: usize) -> Vec<String> {
    let mut chain = crate::audit::test_chain("s1");
    (0..n)
        .map(|i| {
            let ctx = RequestContext {
                uid: format!("u{i}"),
                namespace: if i % 2 == 0 { "shop" } else { "ops" }.into(),
                ..Default::default()
            };
            let finding = Finding {
                image: format!("registry.example/app:{}", i % 3),
                field: "spec.containers[0].image".into(),
                digest: None,
                policy: (i % 4 != 0).then(|| "signed".to_string()),
                mode: "enforce".into(),
                decision: if i % 2 == 0 {
                    FindingDecision::Denied
                } else {
                    FindingDecision::Audited
                },
                reasons: vec!["no signatures found".into()],
                authorities: Vec::new(),
                passed: false,
            };
            let time = format!("2026-11-2{}T10:00:00Z", i % 3);
            let record = AuditRecord::new(&ctx, &finding, time);
            crate::audit::test_chain_line(&mut chain, &record)
        })
        .collect()
}

/// A writer that blocks until told to go on, like a stalled log pipe.
struct Stalled {
    entered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    go: Go,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl std::io::Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.entered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (lock, cv) = &*self.go;
        let mut go = lock.lock().unwrap();
        while !*go {
            go = cv.wait(go).unwrap();
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Go = std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>;
type Written = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// A sink over a stalled writer (stalled on the stream's first
/// checkpoint once this returns), the switch that releases it, and
/// what it wrote.
fn stalled_sink(queue: usize) -> (crate::audit::StdoutAuditSink, Go, Written) {
    let go: Go = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let entered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = crate::audit::StdoutAuditSink::writing_to(
        Box::new(Stalled {
            entered: entered.clone(),
            go: go.clone(),
            out: out.clone(),
        }),
        queue,
        None,
    );
    // The writer takes the start checkpoint and stalls on it (a
    // signal, not a timing: nothing else lets it go on).
    while !entered.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::yield_now();
    }
    (sink, go, out)
}

fn release(go: &Go) {
    *go.0.lock().unwrap() = true;
    go.1.notify_all();
}

fn a_record(dry_run: bool, uid: &str) -> AuditRecord {
    AuditRecord::new(
        &RequestContext {
            uid: uid.into(),
            dry_run,
            ..Default::default()
        },
        &Finding {
            image: "r.example/app:v1".into(),
            field: "spec.containers[0].image".into(),
            digest: None,
            policy: None,
            mode: "enforce".into(),
            decision: FindingDecision::Denied,
            reasons: vec!["no policy".into()],
            authorities: Vec::new(),
            passed: false,
        },
        "2026-11-23T00:00:00Z".into(),
    )
}

#[test]
fn a_stalled_stdout_never_blocks_a_review_and_the_loss_shows_in_the_chain() {
    use crate::audit::AuditSink;
    // The smallest queue (two of the longest lines, about 33 KiB).
    let (sink, go, out) = stalled_sink(0);
    // record() never waits: what finds no room is dropped at once.
    for i in 0..1_000 {
        sink.record(&a_record(false, &format!("u{i}")));
    }
    release(&go);
    assert!(sink.flush(std::time::Duration::from_secs(30)));
    // Once drained, later records are written again.
    sink.record(&a_record(false, "later"));
    assert!(sink.flush(std::time::Duration::from_secs(30)));
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let v = verify(text.lines());
    let written = v.streams.values().next().unwrap().records as usize - 1;
    assert!(written > 10 && written < 1_000, "{written}");
    assert_eq!(v.breaks.len(), 1, "{:?}", v.breaks);
    assert!(
        v.breaks[0].reason.contains(&format!(
            "seq 1001 follows seq {written} ({} record(s) missing)",
            1_000 - written
        )),
        "{:?}",
        v.breaks
    );
    assert_eq!(v.checkpoints, 1, "the start checkpoint");
}

/// The queue counts bytes: a line's room is its size, so a few large
/// records take what many small ones would.
#[test]
fn the_queue_is_counted_in_bytes() {
    use crate::audit::AuditSink;
    let (sink, go, _out) = stalled_sink(0);
    let free = sink.free_bytes();
    let mut big = a_record(false, "big");
    big.finding.reasons = vec!["r".repeat(4_000); 3];
    sink.record(&big);
    let taken = free - sink.free_bytes();
    assert!(taken > 12_000 && taken < 16 << 10, "{taken}");
    release(&go);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_never_crowd_out_a_real_record_which_waits_for_room() {
    use crate::audit::AuditSink;
    let (sink, go, out) = stalled_sink(0);
    let sink = std::sync::Arc::new(sink);
    let far = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    // Dry-run records go in while more than half is free, then are shed.
    for i in 0..200 {
        sink.record_review(&[a_record(true, &format!("dry{i}"))], far)
            .await
            .unwrap();
    }
    // The real ones take the rest at once…
    let room = {
        let before = sink.free_bytes();
        sink.record_review(&[a_record(false, "real0")], far)
            .await
            .unwrap();
        before - sink.free_bytes()
    };
    let mut real = 1;
    while sink.free_bytes() >= room {
        sink.record_review(&[a_record(false, &format!("real{real}"))], far)
            .await
            .unwrap();
        real += 1;
    }
    // …and the next waits for room rather than being dropped.
    let waiting = {
        let sink = sink.clone();
        tokio::spawn(async move { sink.record_review(&[a_record(false, "waited")], far).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    release(&go);
    waiting.await.unwrap().unwrap();
    assert!(sink.flush(std::time::Duration::from_secs(30)));
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let uids: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["target"] == "audit")
        .map(|r| {
            let dry = r.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
            format!(
                "{}{}",
                r["uid"].as_str().unwrap(),
                if dry { "*" } else { "" }
            )
        })
        .collect();
    let dry = uids.iter().filter(|u| u.ends_with('*')).count();
    assert!(dry > 0 && dry < 200, "{uids:?}");
    let mut expected: Vec<String> = (0..dry).map(|i| format!("dry{i}*")).collect();
    expected.extend((0..real).map(|i| format!("real{i}")));
    expected.push("waited".into());
    assert_eq!(uids, expected);
    // Shed dry-run records are not links of the chain: it is whole.
    let v = verify(text.lines());
    assert!(v.whole(), "{:?}", v.breaks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_whose_records_find_no_room_by_its_deadline_is_refused_not_silent() {
    use crate::audit::AuditSink;
    let (sink, go, out) = stalled_sink(0);
    let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
    // Fill the queue.
    let mut n = 0;
    loop {
        let r = sink
            .record_review(&[a_record(false, &format!("r{n}"))], soon)
            .await;
        if let Err(refused) = r {
            assert!(
                refused
                    .to_string()
                    .contains("refused rather than answered without its audit record"),
                "{refused}"
            );
            break;
        }
        n += 1;
    }
    release(&go);
    assert!(sink.finish(std::time::Duration::from_secs(30)));
    // Everything linked was written: the chain is whole, and the refused
    // review left no link (its answer was a refusal, not a decision).
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let v = verify(text.lines());
    assert!(v.whole(), "{:?}", v.breaks);
    assert_eq!(v.streams.values().next().unwrap().records, n);
}

/// A record over the line cap is written cut, marked, and findable by
/// its image's hash; a reference a terminal would reorder is escaped.
#[test]
fn a_huge_record_is_written_cut_never_dropped() {
    use crate::audit::AuditSink;
    let (sink, go, out) = stalled_sink(0);
    release(&go);
    let mut r = a_record(false, "huge");
    r.finding.image = format!("{}{}", '\u{202e}', "\u{7f}".repeat(4_000));
    r.finding.reasons = vec!["x".repeat(10_000); 64];
    sink.record(&r);
    assert!(sink.flush(std::time::Duration::from_secs(30)));
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let line = text.lines().find(|l| l.contains("\"huge\"")).unwrap();
    assert!(
        line.len() <= crate::limits::MAX_AUDIT_LINE_BYTES,
        "{}",
        line.len()
    );
    assert!(
        !line.chars().any(crate::text::needs_escape),
        "escaped: {line}"
    );
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["truncated"]["imageBytes"], 4_003);
    assert_eq!(v["truncated"]["reasons"], 64);
    assert_eq!(v["reasons"].as_array().unwrap().len(), 4);
    let verified = verify(text.lines());
    assert!(verified.whole(), "{:?}", verified.breaks);
}

#[test]
fn a_whole_chain_verifies_and_names_its_head() {
    let lines = chained_lines(5);
    let mut with_logs: Vec<&str> = lines.iter().map(String::as_str).collect();
    with_logs.insert(
        2,
        "2026-11-23T10:00:00.123Z  INFO sigil::server: some other log line",
    );
    with_logs.insert(
        3,
        r#"{"timestamp":"2026-11-23T10:00:00Z","level":"INFO","fields":{"message":"x"},"target":"sigil"}"#,
    );
    let v = verify(with_logs);
    assert!(v.whole(), "{:?} {:?}", v.breaks, v.unreadable);
    assert_eq!(v.log_lines, 2);
    let s = &v.streams["s1"];
    assert_eq!((s.first, s.last, s.records), (1, 5, 5));
    assert_eq!(
        s.head,
        hex::encode(sha2::Sha256::digest(lines[4].as_bytes()))
    );
}

#[test]
fn every_break_is_named_not_only_the_first() {
    let lines = chained_lines(8);
    let v = |ls: Vec<String>| verify(ls.iter().map(String::as_str));

    // Deleted, then altered, then reordered, in one log.
    let mut ls = lines.clone();
    ls.remove(1); // seq 2
    ls[3] = ls[3].replace("denied", "audited"); // seq 5 altered: seq 6 breaks
    ls.swap(5, 6); // seq 7 and 8 swapped
    let got = v(ls);
    let reasons: Vec<String> = got.breaks.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        vec![
            "line 2: stream s1: seq 3 follows seq 1 (1 record(s) missing)",
            "line 5: stream s1: seq 6 does not follow the line of seq 5 (that line was altered, or this one's link was)",
            "line 6: stream s1: seq 8 follows seq 6 (1 record(s) missing)",
            "line 7: stream s1: seq 7 follows seq 8 (reordered or repeated)",
        ],
        "{reasons:#?}"
    );

    let got = v(lines[1..].to_vec());
    assert_eq!(got.breaks.len(), 1);
    assert!(
        got.breaks[0].reason.contains("begins at seq 2"),
        "{:?}",
        got.breaks
    );

    // A record without chain fields, and a line that is not one.
    let mut ls = lines.clone();
    ls.insert(
        3,
        r#"{"target":"audit","decision":"allowed","image":"x"}"#.into(),
    );
    ls.insert(5, "garbage".into());
    let got = v(ls);
    assert_eq!(got.breaks.len(), 1, "{:?}", got.breaks);
    assert!(got.breaks[0].reason.contains("without chain fields"));
    assert_eq!(got.unreadable, vec![6]);
    assert!(!got.whole());
}

fn numbered(ls: &[String]) -> Vec<(usize, std::borrow::Cow<'_, str>)> {
    ls.iter()
        .enumerate()
        .map(|(n, l)| (n + 1, l.as_str().into()))
        .collect()
}

#[test]
fn checkpoints_find_a_cut_tail_a_deleted_stream_and_an_injected_one() {
    let key = crate::audit::AuditKey::new(&[7u8; 32]).unwrap();
    let mut chain = crate::audit::test_chain("s1");
    let mut lines = vec![crate::audit::test_checkpoint_line(
        &chain,
        Some(&key),
        false,
    )];
    for i in 0..6 {
        let r = a_record(false, &format!("u{i}"));
        lines.push(crate::audit::test_chain_line(&mut chain, &r));
        if i == 2 {
            lines.push(crate::audit::test_checkpoint_line(
                &chain,
                Some(&key),
                false,
            ));
        }
    }
    let end = crate::audit::test_checkpoint_line(&chain, Some(&key), true);
    lines.push(end.clone());
    let run =
        |ls: &[String], key: Option<&crate::audit::AuditKey>| verify_lines(&numbered(ls), &[], key);
    let whole = run(&lines, Some(&key));
    assert!(whole.whole(), "{:?}", whole.breaks);
    assert_eq!(whole.streams["s1"].checkpointed, 6);
    assert!(whole.notes.is_empty(), "{:?}", whole.notes);

    // The tail cut, the last checkpoint kept.
    let mut cut: Vec<String> = lines[..5].to_vec();
    cut.push(end.clone());
    let got = run(&cut, Some(&key));
    assert!(
        got.breaks.iter().any(|b| {
            b.reason.contains(
            "the log ends at seq 3, but a checkpoint names seq 6: the last 3 record(s) were cut"
        )
        }),
        "{:?}",
        got.breaks
    );
    // The tail cut with its checkpoints, which an auditor holds apart.
    let extra = [(0usize, std::borrow::Cow::Borrowed(end.as_str()))];
    let got = verify_lines(&numbered(&lines[..5]), &extra, Some(&key));
    assert!(
        got.breaks.iter().any(|b| b.reason.contains("were cut")),
        "{:?}",
        got.breaks
    );

    // A deleted stream: only its checkpoint is left.
    let got = run(std::slice::from_ref(&end), Some(&key));
    assert!(
        got.breaks[0]
            .reason
            .contains("the log holds none of its records (the stream was deleted)"),
        "{:?}",
        got.breaks
    );

    // Injected: a whole stream made without the key, and a record
    // after a stream's end.
    let mut fake = crate::audit::test_chain("s2");
    let mut injected = lines.clone();
    injected.push(crate::audit::test_checkpoint_line(&fake, None, false));
    injected.push(crate::audit::test_chain_line(
        &mut fake,
        &a_record(false, "x"),
    ));
    injected.push(crate::audit::test_chain_line(
        &mut chain,
        &a_record(false, "late"),
    ));
    let got = run(&injected, Some(&key));
    let reasons: Vec<&str> = got.breaks.iter().map(|b| b.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("stream s2: the checkpoint of seq 0 has no MAC")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("stream s2: no checkpoint under the key")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("stream s1: records up to seq 7 come after its last checkpoint")),
        "{reasons:?}"
    );
    // Without the key, the made-up stream is whole: an unkeyed chain
    // proves order, not authorship.
    let got = run(&injected[..injected.len() - 1], None);
    assert!(got.whole(), "{:?}", got.breaks);
    assert!(got.notes.iter().any(|n| n.contains("--key-file")));

    // A forged MAC, and another key.
    let mut forged = lines.clone();
    forged[0] = forged[0].replace("\"mac\":\"", "\"mac\":\"00");
    let got = run(&forged, Some(&key));
    assert!(
        got.breaks[0]
            .reason
            .contains("does not verify under the key"),
        "{:?}",
        got.breaks
    );
    let other = crate::audit::AuditKey::new(&[8u8; 32]).unwrap();
    assert!(!run(&lines, Some(&other)).whole());
    assert!(crate::audit::AuditKey::new(b"short\n").is_err());
}

#[test]
fn kubectl_and_cri_captures_are_read_when_told() {
    let lines = chained_lines(3);
    let kubectl: String = lines
        .iter()
        .map(|l| format!("2026-11-23T10:00:00.123456789Z {l}\n"))
        .collect();
    // Not told: every line is unreadable, and the hint says why.
    let v = verify_lines(&unwrap_lines(&kubectl, InputFormat::Jsonl), &[], None);
    assert_eq!(v.unreadable, vec![1, 2, 3]);
    assert!(v
        .text(InputFormat::Jsonl)
        .contains("--format kubectl-timestamps"));
    let v = verify_lines(
        &unwrap_lines(&kubectl, InputFormat::KubectlTimestamps),
        &[],
        None,
    );
    assert!(v.whole(), "{:?} {:?}", v.breaks, v.unreadable);
    // CRI: a long record split into partial lines, stderr lines between.
    let (a, b) = lines[1].split_at(40);
    let cri = format!(
        "2026-11-23T10:00:00.1Z stdout F {}\n2026-11-23T10:00:00.2Z stdout P {a}\n2026-11-23T10:00:00.2Z stderr F 2026-11-23T10:00:00.2Z  WARN sigil: x\n2026-11-23T10:00:00.3Z stdout F {b}\n2026-11-23T10:00:00.4Z stdout F {}\n",
        lines[0], lines[2]
    );
    let v = verify_lines(&unwrap_lines(&cri, InputFormat::Cri), &[], None);
    assert!(v.whole(), "{:?} {:?}", v.breaks, v.unreadable);
    assert_eq!(v.streams["s1"].records, 3);
    assert_eq!(v.log_lines, 1);
    // A report over a CRI capture counts the same records.
    let r = report_lines(unwrap_lines(&cri, InputFormat::Cri), &Filter::default(), 10);
    assert_eq!(r.records, 3);
}

#[test]
fn images_are_counted_without_digests_and_reasons_with_digests_masked() {
    let d = "a".repeat(64);
    assert_eq!(
        without_digest(&format!("r.io/app:v1@sha256:{d}")),
        "r.io/app:v1"
    );
    assert_eq!(without_digest("r.io/app:v1"), "r.io/app:v1");
    assert_eq!(
        digests_masked(&format!(
            "no signatures found at r.io/app:sha256-{d}.sig (sha256:{d})"
        )),
        "no signatures found at r.io/app:sha256:….sig (sha256:…)"
    );
    assert_eq!(digests_masked("sha256 alone"), "sha256 alone");
}

#[test]
fn reports_count_and_filter() {
    let lines = chained_lines(8);
    let r = report(lines.iter().map(String::as_str), &Filter::default(), 10);
    assert_eq!(r.records, 8);
    assert_eq!(
        r.decisions,
        vec![
            Count {
                value: "audited".into(),
                count: 4
            },
            Count {
                value: "denied".into(),
                count: 4
            }
        ]
    );
    assert_eq!(
        r.policies[0],
        Count {
            value: "signed".into(),
            count: 6
        }
    );
    assert_eq!(
        r.reasons,
        vec![Count {
            value: "no signatures found".into(),
            count: 8
        }]
    );
    let only_shop = Filter {
        namespace: Some("shop".into()),
        since: Some("2026-11-21T00:00:00Z".parse().unwrap()),
        ..Default::default()
    };
    let r = report(lines.iter().map(String::as_str), &only_shop, 1);
    // shop: i = 0, 2, 4, 6 on days 20, 22, 21, 20 → after the 21st: 2.
    assert_eq!(r.records, 2);
    assert_eq!(r.images.len(), 1);
    assert!(r.table(&only_shop).contains("2 audit records from 2026-11-21T10:00:00Z to 2026-11-22T10:00:00Z (since 2026-11-21T00:00:00Z, namespace shop)"), "{}", r.table(&only_shop));
}
