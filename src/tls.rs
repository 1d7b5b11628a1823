//! Serving certificates: PEM files reloaded when they change on disk, or a
//! self-signed CA and serving certificate generated with rcgen; and, with
//! `--client-ca`, client-certificate authentication of the apiserver.

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
    /// A certificate, key or CA that rustls cannot use.
    #[error("{what}: {reason}")]
    Unusable {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
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

/// The rustls configuration of the HTTPS server: the serving certificate
/// (and chain) and key, HTTP/2 and HTTP/1.1 by ALPN, and — with
/// `client_ca_pem` — client certificates verified against that CA: a
/// certificate that does not chain to it fails the handshake; a client
/// with none gets through TLS (the kubelet's probes) and the server answers
/// it nothing but `/healthz` and `/readyz`.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<std::sync::Arc<rustls::ServerConfig>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let unusable = |what: &str, reason: String| TlsError::Unusable {
        what: what.to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable("serving certificate", e.to_string()))?;
    if certs.is_empty() {
        return Err(unusable(
            "serving certificate",
            "no PEM certificate found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| unusable("serving key", e.to_string()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|e| unusable("client CA", e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| unusable("client CA", e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(unusable("client CA", "no PEM certificate found".into()));
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| unusable("client CA", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| unusable("serving certificate and key", e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// [`server_config`] from files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<std::sync::Arc<rustls::ServerConfig>, TlsError> {
    let ca = client_ca.map(read).transpose()?;
    let cert_pem = read(cert)?;
    let config = server_config(&cert_pem, &read(key)?, ca.as_deref())?;
    record_serving_expiry(&cert_pem);
    Ok(config)
}

/// Sets `sigil_serving_certificate_expiry_timestamp_seconds` to the end of
/// `cert_pem`'s first certificate: called wherever a certificate starts
/// being served (`--tls-cert` at start and on reload, `--self-signed`,
/// `--tls-secret` when the Secret's is loaded), never for a placeholder.
pub fn record_serving_expiry(cert_pem: &[u8]) {
    let Ok(pem) = std::str::from_utf8(cert_pem) else {
        return;
    };
    if let Some(not_after) = crate::certificates::not_after_of(pem) {
        crate::metrics::global().serving_certificate(not_after);
    }
}

fn mtimes(paths: &[&Path]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Reloads `config` from `cert`/`key` (and the client CA) whenever one of
/// the files changes. A bad set is logged and the previous one stays in use.
pub async fn reload_on_change(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    interval: Duration,
) {
    let mut files = vec![cert.clone(), key.clone()];
    files.extend(client_ca.iter().cloned());
    let stamp = || mtimes(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let mut last = stamp();
    loop {
        tokio::time::sleep(interval).await;
        let now = stamp();
        if now == last {
            continue;
        }
        last = now;
        match server_config_from_files(&cert, &key, client_ca.as_deref()) {
            Ok(c) => {
                config.reload_from_config(c);
                tracing::info!(cert = %cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload serving certificate; keeping the previous one")
            }
        }
    }
}
