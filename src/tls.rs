//! Serving certificates: PEM files reloaded when they change on disk, or a
//! self-signed CA and serving certificate generated with rcgen.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A generated CA and the serving certificate it signed, all PEM.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// CA certificate (what a webhook `caBundle` holds, base64-encoded).
    pub ca_pem: String,
    /// Serving certificate.
    pub cert_pem: String,
    /// Serving key.
    pub key_pem: String,
}

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Generates a CA and a serving certificate for `names` (DNS names or IPs).
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sigil self-signed CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("sigil"),
    );
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(SelfSigned {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The default names of a self-signed serving certificate.
pub fn default_names() -> Vec<String> {
    let mut v = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "sigil".to_string(),
        "sigil.sigil-system.svc".to_string(),
    ];
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.is_empty() && h.parse::<IpAddr>().is_err() {
            v.push(h);
        }
    }
    v
}

/// Writes the generated PEMs to `dir` (`ca.pem`, `tls.crt`, `tls.key`).
pub fn write_self_signed(
    dir: &Path,
    s: &SelfSigned,
) -> Result<(PathBuf, PathBuf, PathBuf), TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca = dir.join("ca.pem");
    let crt = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&ca, &s.ca_pem).map_err(io(&ca))?;
    std::fs::write(&crt, &s.cert_pem).map_err(io(&crt))?;
    std::fs::write(&key, &s.key_pem).map_err(io(&key))?;
    Ok((ca, crt, key))
}

fn mtimes(paths: &[&Path]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Reloads `config` from `cert`/`key` whenever either file changes. A bad
/// pair is logged and the previous certificate stays in use.
pub async fn reload_on_change(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
) {
    let mut last = mtimes(&[&cert, &key]);
    loop {
        tokio::time::sleep(interval).await;
        let now = mtimes(&[&cert, &key]);
        if now == last {
            continue;
        }
        last = now;
        match config.reload_from_pem_file(&cert, &key).await {
            Ok(()) => tracing::info!(cert = %cert.display(), "serving certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "cannot reload serving certificate; keeping the previous one")
            }
        }
    }
}
