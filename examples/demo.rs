//! The demo (`cargo run --release --example demo`, what `scripts/demo.sh`
//! runs): the whole product on one machine with no cluster. Starts
//! Debian's docker-registry on loopback, pushes a signed and an unsigned
//! image (throwaway P-256 key, cosign's legacy layout), writes a policy,
//! serves the webhook with a self-signed certificate and posts
//! AdmissionReviews to it over HTTPS the way the apiserver does: each Pod to
//! `/mutate` first (tags pinned to digests), then the pinned Pod to
//! `/validate`; and one unpinned Pod straight to `/validate`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use oci_client::Reference;

use sigil::audit::StdoutAuditSink;
use sigil::cli::VerifyArgs;
use sigil::decision::{NoMatchAction, ServerMode};
use sigil::server::{self, AppState};
use sigil::tls;
use sigil_testkit::{
    plain_http_client, pod_review, push_image, sign_image, LocalRegistry, TestKey, TestKeyKind,
};

/// The image of a one-container Pod review after `/mutate`'s JSON patch.
fn pinned_image(review: &serde_json::Value, mutated: &serde_json::Value) -> Option<String> {
    use base64::Engine as _;
    let patch = mutated.pointer("/response/patch")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .ok()?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).ok()?;
    let mut object = review.pointer("/request/object")?.clone();
    json_patch::patch(&mut object, &patch).ok()?;
    object
        .pointer("/spec/containers/0/image")?
        .as_str()
        .map(str::to_string)
}

/// The policy the demo installs: images under `registry/demo/**` must be
/// signed with `public_pem`.
pub fn demo_policy(registry: &str, public_pem: &str) -> String {
    let indented: String = public_pem
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect();
    format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: demo-signed-by-release-key\nspec:\n  images:\n    - glob: \"{registry}/demo/**\"\n  authorities:\n    - name: release-key\n      key:\n        data: |\n{indented}"
    )
}

fn main() -> std::process::ExitCode {
    sigil::install_crypto_provider();
    let keep_running = std::env::args().any(|a| a == "--keep-running");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(keep_running)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the demo; with `keep_running`, serves until Ctrl-C afterwards.
async fn run(keep_running: bool) -> anyhow::Result<()> {
    println!("== sigil demo: starting a local registry (Debian docker-registry)");
    let registry = LocalRegistry::start()?;
    let client = plain_http_client(std::slice::from_ref(&registry.addr));
    let key = TestKey::generate(TestKeyKind::P256)?;

    let signed = Reference::with_tag(registry.addr.clone(), "demo/signed".into(), "v1".into());
    let signed_digest = push_image(&client, &signed).await?;
    sign_image(&client, &registry.addr, "demo/signed", &signed_digest, &key).await?;
    let unsigned = Reference::with_tag(registry.addr.clone(), "demo/unsigned".into(), "v1".into());
    push_image(&client, &unsigned).await?;
    println!("   pushed {} (signed, {signed_digest})", signed.whole());
    println!("   pushed {} (not signed)", unsigned.whole());
    println!("   registry log: {}", registry.log_path.display());

    let work = tempfile::tempdir()?;
    let policy_dir = work.path().join("policies");
    std::fs::create_dir_all(&policy_dir)?;
    std::fs::write(
        policy_dir.join("demo.yaml"),
        demo_policy(&registry.addr, &key.public_pem),
    )?;
    println!(
        "== policy written to {}",
        policy_dir.join("demo.yaml").display()
    );
    // scripts/policy-scale.sh: N more policies that match none of the
    // demo's images (distinct registries and teams, a third each `**`, `*`
    // and literal globs), all with the demo key.
    let extra: usize = std::env::var("SIGIL_DEMO_EXTRA_POLICIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if extra > 0 {
        let key_block: String = key
            .public_pem
            .lines()
            .map(|l| format!("          {l}\n"))
            .collect();
        let docs: String = (0..extra)
            .map(|i| {
                let host = format!("registry-{}.example.com", i % 20);
                let glob = match i % 3 {
                    0 => format!("{host}/team-{i}/**"),
                    1 => format!("{host}/team-{i}/*"),
                    _ => format!("{host}/team-{i}/app"),
                };
                format!(
                    "---\napiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: team-{i}\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n    - key:\n        data: |\n{key_block}"
                )
            })
            .collect();
        std::fs::write(policy_dir.join("extra.yaml"), docs)?;
        println!("== {extra} more policies matching none of the demo's images");
    }

    // scripts/verdict-memory.sh: N more signatures in demo/signed, each
    // over a distinct digest with no image behind it (a review pinned by
    // digest reads only the signature), listed one per line in a file.
    let signed_digests: usize = std::env::var("SIGIL_DEMO_SIGNED_DIGESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if signed_digests > 0 {
        use futures::StreamExt as _;
        use sha2::Digest as _;
        let digests: Vec<String> = (0..signed_digests)
            .map(|i| {
                format!(
                    "sha256:{}",
                    hex::encode(sha2::Sha256::digest(format!("sigil-demo-{i}")))
                )
            })
            .collect();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(digests.iter())
            .map(|d| sign_image(&client, &registry.addr, "demo/signed", d, &key))
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        if let Some(file) = std::env::var_os("SIGIL_DEMO_DIGESTS_FILE") {
            std::fs::write(file, digests.join("\n") + "\n")?;
        }
        println!("== {signed_digests} more signed digests in demo/signed");
    }

    let verify = VerifyArgs {
        kms_refresh: sigil::policy::kms::DEFAULT_REFRESH,
        policy_dir: Some(policy_dir),
        github_api_hosts: vec!["api.github.com".into()],
        trust_root: None,
        registry_config: None,
        insecure_registries: vec![registry.addr.clone()],
        registry_cas: vec![],
        verify_timeout: Duration::from_secs(8),
        registry_connect_timeout: Duration::from_secs(3),
        registry_read_timeout: Duration::from_secs(5),
        resolve_ttl: Duration::from_secs(30),
        verify_ttl: Duration::from_secs(600),
        policy_timeout: Duration::from_secs(1),
        no_match_policy: NoMatchAction::Deny,
        mode: ServerMode::Enforce,
        require_digest: true,
        registry_concurrency: sigil::registry::DEFAULT_MAX_REQUESTS,
        registry_concurrency_per_host: sigil::registry::DEFAULT_MAX_REQUESTS_PER_REGISTRY,
        registry_concurrency_per_namespace: sigil::registry::DEFAULT_MAX_REQUESTS_PER_TENANT,
        max_registries_per_review: sigil::service::DEFAULT_MAX_REGISTRIES_PER_REVIEW,
        resolve_with_workload_credentials: false,
        registry_max_retry_wait: sigil::registry::DEFAULT_MAX_RETRY_WAIT,
        registry_breaker_failures: sigil::registry::DEFAULT_BREAKER_FAILURES,
        registry_breaker_cooldown: sigil::registry::DEFAULT_BREAKER_COOLDOWN,
        cache_memory: sigil::verify::engine::DEFAULT_CACHE_BYTES,
        registry_read_memory: sigil::limits::DEFAULT_REGISTRY_READ_MEMORY,
    };
    let evaluator = Arc::new(verify.build(Arc::new(StdoutAuditSink::new()))?);
    let certs = tls::self_signed(&tls::default_names())?;
    // scripts/tls-yardstick.sh serves nginx with the same certificate.
    if let Some(dir) = std::env::var_os("SIGIL_DEMO_CERT_DIR") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("tls.crt"), &certs.cert_pem)?;
        std::fs::write(dir.join("tls.key"), &certs.key_pem)?;
    }
    let tls_config = RustlsConfig::from_pem(
        certs.cert_pem.clone().into_bytes(),
        certs.key_pem.clone().into_bytes(),
    )
    .await?;
    let running = server::start(
        "127.0.0.1:0".parse()?,
        tls_config,
        AppState::new(evaluator, Arc::new(AtomicBool::new(true))),
    )
    .await?;
    let url = format!("https://localhost:{}/validate", running.addr.port());
    println!(
        "== sigil serve --self-signed listening on https://127.0.0.1:{}",
        running.addr.port()
    );

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes())?)
        .build()?;
    let base = format!("https://localhost:{}", running.addr.port());
    let post = |path: &'static str, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            http.post(&url)
                .json(&body)
                .send()
                .await?
                .error_for_status()?
                .json::<serde_json::Value>()
                .await
        }
    };
    let show = |resp: &serde_json::Value| {
        let allowed = resp
            .pointer("/response/allowed")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if allowed {
            println!("   ALLOWED");
        } else {
            let msg = resp
                .pointer("/response/status/message")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            println!("   DENIED: {msg}");
        }
    };
    for (uid, image) in [("demo-1", signed.whole()), ("demo-2", unsigned.whole())] {
        println!("\n== POST /mutate: Pod with image {image}");
        let body = pod_review(uid, "default", uid, &image);
        let mutated = post("/mutate", body.clone()).await?;
        let pinned = pinned_image(&body, &mutated).unwrap_or_else(|| image.clone());
        println!("   pinned to {pinned}");
        println!("== POST /validate: Pod with image {pinned}");
        show(&post("/validate", pod_review(uid, "default", uid, &pinned)).await?);
    }
    let image = signed.whole();
    println!("\n== POST /validate (no /mutate first): Pod with image {image}");
    show(
        &post(
            "/validate",
            pod_review("demo-3", "default", "demo-3", &image),
        )
        .await?,
    );
    if keep_running {
        println!("\nserving on {url} until Ctrl-C");
        server::shutdown_signal().await;
    }
    running.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
