//! How much memory compiled policies take: loads N ClusterImagePolicies
//! (distinct globs, one shared public key, a mix of key, keyless and
//! attestation authorities) into the policy store, as the file loader and
//! the cluster watcher do, and prints the resident set before and after.
//!
//! Run: `cargo run --release --example policy_memory -- 1000 [key|keyless|both]`.

use sigil::policy::files::parse_documents;
use sigil::policy::PolicyStore;

const KEY: &str = include_str!("../tests/fixtures/containers-image/cosign.pub");

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn policy_yaml(i: usize, kinds: &str) -> String {
    let key: String = KEY.lines().map(|l| format!("          {l}\n")).collect();
    let host = format!("registry-{}.example.com", i % 20);
    let glob = match i % 3 {
        0 => format!("{host}/team-{i}/**"),
        1 => format!("{host}/team-{i}/*"),
        _ => format!("{host}/team-{i}/app"),
    };
    let mut yaml = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: team-{i}\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n"
    );
    if kinds != "keyless" {
        yaml.push_str(&format!("    - key:\n        data: |\n{key}"));
    }
    if kinds != "key" {
        yaml.push_str(&format!("    - keyless:\n        identities:\n          - issuer: https://token.actions.githubusercontent.com\n            subjectRegExp: \"^https://github.com/team-{i}/.*$\"\n"));
    }
    yaml
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000);
    // `key`, `keyless` or `both` (default) authorities per policy.
    let kinds = std::env::args().nth(2).unwrap_or_else(|| "both".into());
    let text: String = (0..n).map(|i| policy_yaml(i, &kinds) + "---\n").collect();
    let defs = parse_documents(&text).expect("policies parse");
    // Reference parsing compiles oci-client's reference regex on first
    // use (a fixed cost every sigil pays); pay it before measuring.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let _ = sigil::image::ImageRef::parse(&format!("registry-0.example.com/warm/up@{digest}"));
    let before = rss_kib("VmRSS:");
    let store = PolicyStore::new();
    store.replace_source("bench", &defs);
    drop(defs);
    drop(text);
    let set = store.current();
    let invalid = set
        .policies()
        .iter()
        .filter(|p| p.error().is_some())
        .count();
    assert_eq!(invalid, 0, "every policy compiles");
    let after = rss_kib("VmRSS:");
    // Match an image of every policy once, as a busy cluster would: a
    // glob's regex allocates its matching cache on first use.
    let mut hits = 0;
    for i in 0..n {
        let image = sigil::image::ImageRef::parse(&format!(
            "registry-{}.example.com/team-{i}/app@{digest}",
            i % 20
        ))
        .expect("image");
        hits += set.matching(&image).len();
    }
    assert!(hits >= n / 2, "{hits} of {n} images matched their policy");
    let matched = rss_kib("VmRSS:");
    println!(
        "{n} policies ({kinds}): RSS {before} KiB before loading, {after} KiB loaded ({} KiB per policy), {matched} KiB after matching an image of each; peak {} KiB",
        (after.saturating_sub(before)) / n.max(1) as u64,
        rss_kib("VmHWM:")
    );
}
