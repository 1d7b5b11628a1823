//! Records the commit sigil is built from (`sigil --version`): `git
//! rev-parse` when built from a checkout, else `SIGIL_COMMIT` from the
//! environment (an image build without `.git`), else `unknown`.

fn main() {
    println!("cargo:rerun-if-env-changed=SIGIL_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let from_git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let commit = from_git
        .or_else(|| std::env::var("SIGIL_COMMIT").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SIGIL_COMMIT={commit}");
}
