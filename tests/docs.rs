//! The documentation holds: the command-line reference is what the code
//! says (regenerate with `SIGIL_BLESS=1 cargo test --test docs`), every
//! relative link and anchor in the Markdown resolves, no user document
//! cites an internal issue number, and output written to a pipe carries no
//! ANSI colour codes.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The command-line reference, generated from the clap definitions.
fn cli_reference() -> String {
    let body = clap_markdown::help_markdown::<sigil::cli::Cli>();
    // The version line names the commit, which changes with every commit.
    let body: String = body
        .lines()
        .filter(|l| !l.starts_with("**Version:**"))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "<!-- Generated from src/cli.rs by `SIGIL_BLESS=1 cargo test --test docs`; do not edit. -->\n\n{}",
        body.trim_start()
    )
}

#[test]
fn the_cli_reference_is_what_the_code_says() {
    let path = Path::new(ROOT).join("docs/cli.md");
    let wanted = cli_reference();
    if std::env::var_os("SIGIL_BLESS").is_some() {
        std::fs::write(&path, &wanted).unwrap();
    }
    let held = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        held == wanted,
        "docs/cli.md is not what src/cli.rs says; regenerate it with `SIGIL_BLESS=1 cargo test --test docs`"
    );
    for command in [
        "sigil serve",
        "sigil check",
        "sigil report",
        "sigil completions",
    ] {
        assert!(held.contains(command), "{command}");
    }
}

/// The generated section of `doc` between the `start` marker and `end` is
/// `body` (rewritten when `SIGIL_BLESS` is set), or the test fails naming
/// `what` and `source`.
fn generated_section(doc: &str, start: &str, end: &str, body: &str, what: &str, source: &str) {
    let path = Path::new(ROOT).join(doc);
    let held = std::fs::read_to_string(&path).unwrap();
    let (Some(from), Some(to)) = (held.find(start), held.find(end)) else {
        panic!("{doc} has no generated {what}");
    };
    let wanted = format!("{start}\n{body}\n");
    if std::env::var_os("SIGIL_BLESS").is_some() {
        let text = format!("{}{wanted}{}", &held[..from], &held[to..]);
        std::fs::write(&path, text).unwrap();
        return;
    }
    assert!(
        held[from..to] == wanted,
        "{doc}'s {what} is not {source}'s; regenerate it with `SIGIL_BLESS=1 cargo test --test docs`"
    );
}

/// The limits table of `docs/operations.md`, between its markers, is
/// `sigil::limits::TABLE` (regenerate with `SIGIL_BLESS=1`).
#[test]
fn the_limits_table_is_what_the_code_says() {
    generated_section(
        "docs/operations.md",
        "<!-- limits: generated from src/limits.rs by `SIGIL_BLESS=1 cargo test --test docs`; do not edit. -->\n",
        "<!-- end of limits -->",
        &sigil::limits::markdown(),
        "limits table",
        "src/limits.rs",
    );
}

/// The promise table of `docs/policies.md`, between its markers, is
/// `sigil::policy::promises::markdown()` (regenerate with `SIGIL_BLESS=1`).
#[test]
fn the_promise_table_is_what_the_code_says() {
    generated_section(
        "docs/policies.md",
        "<!-- promises: generated from src/policy/promises.rs by `SIGIL_BLESS=1 cargo test --test docs`; do not edit. -->\n",
        "<!-- end of promises -->",
        &sigil::policy::promises::markdown(),
        "promise table",
        "src/policy/promises.rs",
    );
}

/// Every test the promise table names exists: a `#[test]` or
/// `#[tokio::test]` function of that name in `tests/<file>.rs`.
#[test]
fn every_enforced_promise_names_a_test_that_exists() {
    use sigil::policy::promises::{promise, AuthorityOption, EvidenceLayout, Promise};
    for o in AuthorityOption::ALL {
        for l in EvidenceLayout::ALL {
            let Promise::Enforced { pass, fail } = promise(o, l) else {
                continue;
            };
            for test in [pass, fail] {
                let (file, function) = test.split_once("::").unwrap();
                let source =
                    std::fs::read_to_string(Path::new(ROOT).join(format!("tests/{file}.rs")))
                        .unwrap_or_else(|e| panic!("{o:?} in {l:?} names {test}: {e}"));
                let at = source.find(&format!("fn {function}()")).unwrap_or_else(|| {
                    panic!("{o:?} in {l:?} names {test}, which tests/{file}.rs lacks")
                });
                let before = &source[..at];
                let attribute = before.rfind("#[").map(|i| &before[i..]).unwrap_or("");
                assert!(
                    attribute.starts_with("#[test]") || attribute.starts_with("#[tokio::test"),
                    "{o:?} in {l:?} names {test}, which is not a test"
                );
            }
        }
    }
}

/// Every Markdown file a user or developer reads.
fn markdown_files() -> Vec<PathBuf> {
    let mut out = vec![
        Path::new(ROOT).join("README.md"),
        Path::new(ROOT).join("policies/README.md"),
        Path::new(ROOT).join("tests/fixtures/README.md"),
    ];
    for dir in ["docs", "charts/sigil"] {
        for e in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped except
/// `-` and `_`, spaces as `-`; repeats get `-1`, `-2`, ….
fn anchors(markdown: &str) -> Vec<String> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut out: Vec<String> = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let text = heading.take().unwrap_or_default();
                let base: String = text
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                let n = out
                    .iter()
                    .filter(|a| {
                        **a == base
                            || a.strip_prefix(&format!("{base}-"))
                                .is_some_and(|n| n.parse::<u32>().is_ok())
                    })
                    .count();
                out.push(if n == 0 { base } else { format!("{base}-{n}") });
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    use pulldown_cmark::{Event, Parser, Tag};
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for event in Parser::new(&text) {
            let Event::Start(Tag::Link { dest_url, .. }) = event else {
                continue;
            };
            let dest = dest_url.to_string();
            if dest.contains("://") || dest.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match dest.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (dest.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {dest}: no such file", file.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let held = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&held).iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {dest}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} links found");
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_a_broken_anchor() {
    let md = "# Two words\n## Two words\n### `code` and more!\n";
    assert_eq!(anchors(md), ["two-words", "two-words-1", "code-and-more"]);
}

#[test]
fn user_documents_cite_no_internal_issue_numbers() {
    let pattern = regex::Regex::new(r"(?i)\bissues? \d+\b").unwrap();
    let mut found = Vec::new();
    let mut files = markdown_files();
    for e in std::fs::read_dir(Path::new(ROOT).join("policies")).unwrap() {
        files.push(e.unwrap().path());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            if pattern.is_match(line) {
                found.push(format!("{}:{}: {line}", file.display(), i + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn piped_output_carries_no_ansi_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: everything\nspec:\n  images:\n    - glob: \"**\"\n  authorities:\n    - static:\n        action: pass\n",
    )
    .unwrap();
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n    - name: app\n      image: registry.invalid/app@sha256:{}\n", "0".repeat(64)),
    )
    .unwrap();
    for colour in [None, Some("1")] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"));
        cmd.args(["--log-level", "debug", "check", "--policy-dir"])
            .arg(dir.path())
            .arg("-f")
            .arg(&pod);
        // Neither a pipe nor FORCE-like variables bring colour back.
        if let Some(v) = colour {
            cmd.env("CLICOLOR_FORCE", v);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stderr.contains("policy loaded"), "{stderr}");
        assert!(stdout.contains("everything"), "{stdout}");
        assert!(
            !stdout.contains('\x1b') && !stderr.contains('\x1b'),
            "{stdout}{stderr}"
        );
    }
}

#[test]
fn the_binary_answers_as_a_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-sigil");
    // A symlink, not a copy: a copy is a file this process writes, and a
    // child forked by another test meanwhile can hold it open for writing,
    // so executing it fails with "Text file busy" (ETXTBSY).
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sigil"), &plugin).unwrap();
    let out = std::process::Command::new(&plugin)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("sigil {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let out = std::process::Command::new(&plugin)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("complete -F _sigil"));
}
