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
        LogFormat::Text => builder.init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let audit = Arc::new(StdoutAuditSink::new());
    let mut evaluator = args.verify.build(audit.clone())?;
    let ready = Arc::new(AtomicBool::new(false));
    let cluster_mode =
        args.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if cluster_mode {
        let client = cluster::client(args.kubeconfig.as_deref()).await?;
        let state = Arc::new(cluster::ClusterState::new(ready.clone()));
        evaluator.cluster = Some(state.clone());
        evaluator.credentials = Some(Arc::new(cluster::KubeCredentials::new(client.clone())));
        // This replica's name in the Events it sends.
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "sigil".into());
        let events = cluster::EventRecorder::start(client.clone(), instance);
        evaluator.violations = Some(events.clone());
        tokio::spawn(cluster::watch_namespaces(client.clone(), state.clone()));
        tokio::spawn(cluster::watch_trust_roots(
            client.clone(),
            evaluator.verifier.trust().clone(),
            Some(events.clone()),
        ));
        tokio::spawn(cluster::watch_policies(
            client,
            evaluator.store.clone(),
            state,
            args.namespace.clone(),
            Some(events),
        ));
    }
    let evaluator = Arc::new(evaluator);
    if cluster_mode && !args.audit_interval.is_zero() {
        let client = cluster::client(args.kubeconfig.as_deref()).await?;
        // Unique per process, even for two on one host.
        let mut suffix = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut suffix);
        let identity = format!(
            "{}-{}",
            std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "sigil".into()),
            hex::encode(suffix)
        );
        let leadership = cluster::lead(
            client.clone(),
            &args.namespace,
            identity,
            args.audit_lease_duration,
        );
        tokio::spawn(cluster::background_audit(
            client,
            evaluator.clone(),
            cluster::BackgroundAuditSettings {
                interval: args.audit_interval,
                concurrency: args.audit_concurrency,
            },
            leadership,
        ));
    }
    if let Some(dir) = args.verify.policy_dir.clone() {
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
            let client_ca_pem = match &client_ca {
                Some(p) => {
                    Some(std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?)
                }
                None => None,
            };
            (
                RustlsConfig::from_config(tls::server_config(
                    generated.cert_pem.as_bytes(),
                    generated.key_pem.as_bytes(),
                    client_ca_pem.as_deref(),
                )?),
                None,
            )
        }
        _ => anyhow::bail!("give either --tls-cert and --tls-key, or --self-signed"),
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
    let running = server::start(
        args.listen,
        tls_config,
        AppState::new(evaluator, ready.clone(), args.max_inflight_reviews)
            .requiring_client_certificates(args.client_ca.is_some()),
    )
    .await?;
    // File policies were loaded before listening; with a cluster, readiness
    // follows the watchers' first full sync instead.
    if !cluster_mode {
        ready.store(true, Ordering::Release);
    }
    tracing::info!(addr = %running.addr, "sigil listening (HTTPS)");
    server::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown(Duration::from_secs(10)).await;
    // The last records are still queued for stdout.
    if !audit.flush(Duration::from_secs(5)) {
        tracing::error!("audit records still queued at exit were lost");
    }
    Ok(())
}

fn main() -> ExitCode {
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
            Command::Serve(args) => match serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sigil serve: {e:#}");
                    ExitCode::from(2)
                }
            },
            Command::Check(args) if args.cluster => {
                ExitCode::from(sigil::whatif::main(args).await as u8)
            }
            Command::Check(args) => ExitCode::from(sigil::check::main(args).await as u8),
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
            Command::Report(args) => ExitCode::from(sigil::report::main(&args)),
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
