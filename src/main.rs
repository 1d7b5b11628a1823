//! The `sigil` binary.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use sigil::audit::StdoutAuditSink;
use sigil::cli::{Cli, Command, LogFormat, ServeArgs};
use sigil::policy::files;
use sigil::server::{self, AppState};
use sigil::{cluster, tls};

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(sigil::logs::colour_stderr())
            .fmt_fields(sigil::logs::escaped_fields())
            .init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let audit_key = match &args.audit_key_file {
        Some(path) => Some(
            sigil::audit::AuditKey::from_file(path)
                .map_err(|e| anyhow::anyhow!("--audit-key-file {e}"))?,
        ),
        None => None,
    };
    let audit = Arc::new(StdoutAuditSink::with_key(
        audit_key,
        usize::try_from(args.audit_queue_memory).unwrap_or(usize::MAX),
    ));
    {
        // Checkpoints of a quiet log: at most a minute behind its records.
        let audit = audit.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                audit.checkpoint_if_due();
            }
        });
    }
    // Before listening: the first review must not wait on one-time set-up.
    sigil::image::warm_up();
    let mut evaluator = args.verify.build(audit.clone())?;
    evaluator.gate = Arc::new(sigil::gate::ReviewGate::new(
        args.max_inflight_reviews,
        args.max_inflight_reviews_per_namespace,
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let cluster_mode =
        args.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let mut cluster_parts = None;
    if cluster_mode {
        let client = cluster::client(args.kubeconfig.as_deref()).await?;
        let state = Arc::new(cluster::ClusterState::new(ready.clone()));
        evaluator.cluster = Some(state.clone());
        let credentials = Arc::new(cluster::KubeCredentials::new(args.pull_secret_cache_memory));
        credentials.start(client.clone(), state.clone());
        evaluator.credentials = Some(credentials);
        // This replica's name in the Events it sends and in the Lease.
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "sigil".into());
        // Unique per process, even for two on one host.
        let mut suffix = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut suffix);
        let leadership = cluster::lead(
            client.clone(),
            &args.namespace,
            format!("{instance}-{}", hex::encode(suffix)),
            args.lease_duration,
        );
        let events = cluster::EventRecorder::start(client.clone(), instance);
        evaluator.violations = Some(events.clone());
        tokio::spawn(cluster::watch_namespaces(client.clone(), state.clone()));
        tokio::spawn(cluster::watch_trust_roots(
            client.clone(),
            evaluator.verifier.trust().clone(),
            Some(events.clone()),
            Some(leadership.clone()),
        ));
        if args.kyverno_policies {
            state.await_kyverno_policies();
            tokio::spawn(cluster::watch_kyverno_policies(
                client.clone(),
                evaluator.kyverno.clone(),
                state.clone(),
                Some(leadership.clone()),
            ));
        }
        tokio::spawn(cluster::watch_policies(
            client.clone(),
            evaluator.store.clone(),
            state,
            cluster::PolicyWatch {
                namespace: args.namespace.clone(),
                tls_secret: args.tls_secret.clone(),
                github_api_hosts: args.verify.github_api_hosts.clone(),
            },
            Some(events),
            Some(leadership.clone()),
        ));
        cluster_parts = Some((client, leadership));
    }
    let evaluator = Arc::new(evaluator);
    if let Some((client, leadership)) = &cluster_parts {
        if !args.audit_interval.is_zero() {
            tokio::spawn(cluster::background_audit(
                client.clone(),
                evaluator.clone(),
                cluster::BackgroundAuditSettings {
                    interval: args.audit_interval,
                    concurrency: args.audit_concurrency,
                },
                leadership.clone(),
            ));
        }
    }
    if let Some(dir) = args.verify.policy_dir.clone() {
        tokio::spawn(sigil::kyverno::files::watch_dir(
            dir.clone(),
            evaluator.kyverno.clone(),
            Duration::from_secs(2),
        ));
        tokio::spawn(files::watch_dir(
            dir,
            evaluator.store.clone(),
            // In a cluster, TrustRoots come from the API server.
            (!cluster_mode).then(|| evaluator.verifier.trust().clone()),
            Duration::from_secs(2),
        ));
    }
    if let Some(listen) = args.metrics_listen.0 {
        let addr = server::start_metrics(listen, evaluator.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {listen}: {e}"))?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
    }
    let client_ca = args.client_ca.clone();
    let client_ca_pem = match &client_ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?),
        None => None,
    };
    // Set once the serving certificate is one the apiserver trusts (with
    // --tls-secret, once the Secret has one); /readyz waits for it.
    let certificate_loaded = Arc::new(AtomicBool::new(true));
    let (tls_config, files_to_watch) = match (&args.tls_cert, &args.tls_key, args.self_signed) {
        (Some(cert), Some(key), false) => (
            RustlsConfig::from_config(tls::server_config_from_files(
                cert,
                key,
                client_ca.as_deref(),
            )?),
            Some((cert.clone(), key.clone())),
        ),
        (None, None, true) => {
            let mut names = tls::default_names();
            names.extend(args.self_signed_names.iter().cloned());
            let generated = tls::self_signed(&names)?;
            let (ca, _, _) = tls::write_self_signed(&args.self_signed_dir, &generated)?;
            tracing::info!(ca = %ca.display(), "self-signed CA written; put it (base64) in the webhook caBundle");
            tls::record_serving_expiry(generated.cert_pem.as_bytes());
            (
                RustlsConfig::from_config(tls::server_config(
                    generated.cert_pem.as_bytes(),
                    generated.key_pem.as_bytes(),
                    client_ca_pem.as_deref(),
                )?),
                None,
            )
        }
        (None, None, false) if args.tls_secret.is_some() => {
            let (Some(secret), Some((client, leadership))) = (&args.tls_secret, &cluster_parts)
            else {
                anyhow::bail!("--tls-secret needs a cluster (--kubeconfig, or in-cluster)");
            };
            let lifetimes = sigil::certificates::Lifetimes {
                ca: args.ca_lifetime,
                serving: args.cert_lifetime,
                renew_before: args.renew_before,
            };
            lifetimes.validate()?;
            // Served until the Secret's certificate is loaded; no client
            // trusts it, and /readyz says not ready meanwhile.
            let placeholder = tls::self_signed(&tls::default_names())?;
            let config = RustlsConfig::from_config(tls::server_config(
                placeholder.cert_pem.as_bytes(),
                placeholder.key_pem.as_bytes(),
                client_ca_pem.as_deref(),
            )?);
            certificate_loaded.store(false, Ordering::Release);
            tokio::spawn(cluster::serve_from_secret(
                client.clone(),
                args.namespace.clone(),
                secret.clone(),
                config.clone(),
                client_ca_pem.clone(),
                certificate_loaded.clone(),
            ));
            tokio::spawn(cluster::keep_certificates(
                client.clone(),
                cluster::SelfManagedCertificates {
                    namespace: args.namespace.clone(),
                    secret: secret.clone(),
                    names: sigil::certificates::service_names(&args.tls_service, &args.namespace),
                    webhooks: args.inject_ca_bundle.clone(),
                    lifetimes,
                },
                leadership.clone(),
            ));
            (config, None)
        }
        _ => anyhow::bail!("give --tls-cert and --tls-key, --tls-secret, or --self-signed"),
    };
    if client_ca.is_some() {
        tracing::info!("answering only clients with a certificate from --client-ca");
    }
    if let Some((cert, key)) = files_to_watch {
        tokio::spawn(tls::reload_on_change(
            tls_config.clone(),
            cert,
            key,
            client_ca,
            Duration::from_secs(2),
        ));
    }
    let terminating = Arc::new(AtomicBool::new(false));
    let running = server::start(
        args.listen,
        tls_config,
        AppState::new(evaluator, ready.clone())
            .with_body_memory(args.max_body_memory)
            .requiring_client_certificates(args.client_ca.is_some())
            .with_certificate_gate(certificate_loaded)
            .with_termination_flag(terminating.clone()),
    )
    .await?;
    // File policies were loaded before listening; with a cluster, readiness
    // follows the watchers' first full sync instead.
    if !cluster_mode {
        ready.store(true, Ordering::Release);
    }
    tracing::info!(addr = %running.addr, "sigil listening (HTTPS)");
    running
        .run_until_terminated(
            server::Termination {
                delay: args.shutdown_delay,
                drain: args.shutdown_drain,
            },
            &terminating,
        )
        .await;
    if let Some((_, leadership)) = &cluster_parts {
        leadership.release().await;
    }
    // The last records are still queued for stdout.
    if !audit.finish(Duration::from_secs(5)) {
        tracing::error!("audit records still queued at exit were lost");
    }
    Ok(())
}

/// Buffers of 256 KiB and more (request bodies of up to 4 MiB, list pages)
/// are mapped and unmapped on their own. glibc otherwise raises its mmap
/// threshold after the first large free and serves later bodies from its
/// heaps, where freed memory stays resident: a burst of large reviews
/// would then hold its peak for good.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_buffers() {
    // SAFETY: mallopt only sets an allocator parameter; it is called once,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        // Fixing the mmap threshold also fixes the trim threshold at its
        // 128 KiB default, and a warm review's frees then shrink and regrow
        // the worker's heap (an mprotect every other review, measured):
        // keep up to 8 MiB of free heap top instead.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers() {}

fn main() -> ExitCode {
    return_large_buffers();
    sigil::install_crypto_provider();
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sigil: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async {
        match cli.command {
            Command::Serve(args) => match serve(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sigil serve: {e:#}");
                    ExitCode::from(2)
                }
            },
            Command::Check(args) if args.cluster => {
                ExitCode::from(sigil::whatif::main(*args).await as u8)
            }
            Command::Check(args) => ExitCode::from(sigil::check::main(*args).await as u8),
            Command::VerifyBundle(args) => ExitCode::from(sigil::bundle_cli::main(&args)),
            Command::Crd => match sigil::crd::all_yaml() {
                Ok(y) => {
                    print!("{y}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sigil crd: {e}");
                    ExitCode::from(2)
                }
            },
            Command::Report(args) => ExitCode::from(sigil::report_cli::main(&args)),
            Command::Completions { shell } => {
                use clap::CommandFactory as _;
                clap_complete::generate(
                    shell,
                    &mut sigil::cli::Cli::command(),
                    "sigil",
                    &mut std::io::stdout(),
                );
                ExitCode::SUCCESS
            }
            Command::Certs(args) => match tls::self_signed(&args.names)
                .and_then(|c| tls::write_self_signed(&args.out, &c))
            {
                Ok((ca, crt, key)) => {
                    println!(
                        "CA: {}\ncertificate: {}\nkey: {}",
                        ca.display(),
                        crt.display(),
                        key.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sigil certs: {e}");
                    ExitCode::from(2)
                }
            },
        }
    })
}
