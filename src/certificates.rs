//! The decisions of `self` certificate mode, pure: given what sigil's TLS
//! Secret holds, the `caBundle`s its webhook configurations hold now and the
//! time, what the Secret and the bundles must hold next. The I/O (reading
//! and writing the Secret and the webhook configurations, the Lease, the
//! clock) is `cluster::certificates`; this module must not do any.
//!
//! The order is what keeps every request succeeding across renewals:
//! - a new CA joins the bundle *beside* the old ones, which stay until they
//!   expire, so a replica still serving a certificate from an old CA is
//!   trusted;
//! - a serving certificate from a new CA is issued only once the bundle
//!   holding that CA has been in every webhook configuration for the
//!   propagation delay (the apiserver picks it up from its informer), except
//!   on a fresh install, where nothing is trusted yet and nothing is lost;
//! - no serving certificate outlives the CA that signed it, and the CA is
//!   renewed `renew_before` its end, so the rollover has that long.
//!
//! After the Secret is deleted, CAs still in the webhook configurations are
//! kept in the new bundle, so replicas serving the old certificate from
//! memory stay trusted until the new one has propagated. Only then: while
//! the Secret holds a bundle, the webhooks get exactly that bundle back.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

/// Secret key of the current CA certificate (the one new serving
/// certificates are issued from).
pub const CA_CERT: &str = "ca.crt";
/// Secret key of the current CA's private key.
pub const CA_KEY: &str = "ca.key";
/// Secret key of every CA still trusted (PEM, newest first): what the
/// webhook configurations' `caBundle` holds.
pub const CA_BUNDLE: &str = "ca-bundle.crt";
/// Secret key of the serving certificate.
pub const TLS_CERT: &str = "tls.crt";
/// Secret key of the serving key.
pub const TLS_KEY: &str = "tls.key";
/// Secret annotation: sha256 of the bundle last seen in every webhook
/// configuration.
pub const INJECTED_BUNDLE: &str = "sigil.dev/injected-ca-bundle";
/// Secret annotation: since when (RFC 3339) that bundle has been there.
pub const INJECTED_AT: &str = "sigil.dev/injected-at";

/// At most this many CAs in a bundle: an old CA leaves when it expires,
/// or when it is older than the newest four.
pub use crate::limits::MAX_CAS;
/// Certificates start this long before they are made, for clock skew
/// between sigil and the apiservers.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// How long certificates live and when they are renewed.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// The CA's lifetime.
    pub ca: Duration,
    /// The serving certificate's lifetime (capped at its CA's end).
    pub serving: Duration,
    /// Either is renewed once it has less than this left.
    pub renew_before: Duration,
}

impl Lifetimes {
    /// How long a new bundle must have been in every webhook configuration
    /// before a serving certificate from its newest CA is used: a quarter of
    /// `renew_before`, at most 30 s.
    pub fn propagation(&self) -> Duration {
        (self.renew_before / 4).min(Duration::from_secs(30))
    }

    /// How often the Lease holder looks: an eighth of `renew_before`,
    /// between 1 s and 30 s.
    pub fn check_interval(&self) -> Duration {
        (self.renew_before / 8).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// Refuses lifetimes that cannot work: renewal must leave a serving
    /// certificate time to be used, and a CA time to sign several.
    pub fn validate(&self) -> Result<(), CertError> {
        if self.renew_before.is_zero() || self.serving <= self.renew_before {
            return Err(CertError::Lifetimes(format!(
                "--cert-lifetime ({}) must be longer than --renew-before ({})",
                humantime::format_duration(self.serving),
                humantime::format_duration(self.renew_before)
            )));
        }
        if self.ca <= self.serving + self.renew_before {
            return Err(CertError::Lifetimes(format!(
                "--ca-lifetime ({}) must be longer than --cert-lifetime plus --renew-before ({})",
                humantime::format_duration(self.ca),
                humantime::format_duration(self.serving + self.renew_before)
            )));
        }
        Ok(())
    }
}

/// A webhook configuration whose `caBundle` sigil keeps:
/// `validating/NAME` or `mutating/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookConfigRef {
    /// A ValidatingWebhookConfiguration.
    Validating(String),
    /// A MutatingWebhookConfiguration.
    Mutating(String),
}

impl std::str::FromStr for WebhookConfigRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some(("validating", name)) if !name.is_empty() => Ok(Self::Validating(name.into())),
            Some(("mutating", name)) if !name.is_empty() => Ok(Self::Mutating(name.into())),
            _ => Err(format!("{s:?}: expected validating/NAME or mutating/NAME")),
        }
    }
}

impl std::fmt::Display for WebhookConfigRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Validating(n) => write!(f, "validating/{n}"),
            Self::Mutating(n) => write!(f, "mutating/{n}"),
        }
    }
}

/// The names a serving certificate for Service `service` in `namespace`
/// carries: what the apiserver dials (`service.namespace.svc`) and the
/// longer forms.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ]
}

/// Why certificate material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen failed.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Lifetimes that cannot work.
    #[error("{0}")]
    Lifetimes(String),
}

/// What sigil's TLS Secret holds (its data entries and annotations), as
/// text; anything missing or unreadable is `None` and gets replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// [`CA_CERT`].
    pub ca_cert: Option<String>,
    /// [`CA_KEY`].
    pub ca_key: Option<String>,
    /// [`CA_BUNDLE`].
    pub ca_bundle: Option<String>,
    /// [`TLS_CERT`].
    pub tls_cert: Option<String>,
    /// [`TLS_KEY`].
    pub tls_key: Option<String>,
    /// [`INJECTED_BUNDLE`].
    pub injected_bundle: Option<String>,
    /// [`INJECTED_AT`], RFC 3339.
    pub injected_at: Option<String>,
}

/// What the Lease holder must do now.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the Secret must hold (write it when it differs).
    pub stored: Stored,
    /// What every webhook's `caBundle` must hold (PEM).
    pub bundle: String,
    /// Some webhook does not hold `bundle` yet: patch them.
    pub inject: bool,
    /// What changed, for the log (empty: nothing).
    pub changes: Vec<&'static str>,
}

/// One parsed certificate.
#[derive(Debug, Clone)]
struct Cert {
    pem: String,
    der: Vec<u8>,
    not_after: SystemTime,
}

fn parse_certs(pem: &str) -> Vec<Cert> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|der| {
            let not_after = not_after(&der)?;
            Some(Cert {
                pem: pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())),
                der: der.to_vec(),
                not_after,
            })
        })
        .collect()
}

fn not_after(der: &[u8]) -> Option<SystemTime> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.validity.not_after.to_system_time())
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn left(not_after: SystemTime, now: SystemTime) -> Duration {
    not_after.duration_since(now).unwrap_or(Duration::ZERO)
}

/// The current CA when it is whole (certificate and matching key) and has
/// more than `renew_before` left.
fn current_ca(stored: &Stored, now: SystemTime, l: &Lifetimes) -> Option<(Cert, String)> {
    let cert = parse_certs(stored.ca_cert.as_deref()?).into_iter().next()?;
    let key_pem = stored.ca_key.clone()?;
    let key = KeyPair::from_pem(&key_pem).ok()?;
    let issuer = Issuer::from_ca_cert_pem(&cert.pem, key).ok()?;
    // The key must be the certificate's.
    let probe = KeyPair::generate().ok()?;
    let signed = CertificateParams::new(vec!["probe".to_string()])
        .ok()?
        .signed_by(&probe, &issuer)
        .ok()?;
    if !chains_to(signed.der(), std::slice::from_ref(&cert), now) {
        return None;
    }
    (left(cert.not_after, now) > l.renew_before).then_some((cert, key_pem))
}

/// Whether `leaf` verifies, at `now`, against one of `cas`.
fn chains_to(leaf: &[u8], cas: &[Cert], now: SystemTime) -> bool {
    let leaf = CertificateDer::from(leaf);
    let Ok(end_entity) = webpki::EndEntityCert::try_from(&leaf) else {
        return false;
    };
    let ders: Vec<CertificateDer<'_>> = cas
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let anchors: Vec<_> = ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let Ok(since_epoch) = now.duration_since(SystemTime::UNIX_EPOCH) else {
        return false;
    };
    let algorithms = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    end_entity
        .verify_for_usage(
            algorithms,
            &anchors,
            &[],
            UnixTime::since_unix_epoch(since_epoch),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .is_ok()
}

/// The serving certificate and key when whole: the key is the
/// certificate's, it names exactly `names`, and it verifies now against one
/// of `cas`. Returns the certificate.
fn usable_serving(
    stored: &Stored,
    names: &[String],
    cas: &[Cert],
    now: SystemTime,
) -> Option<Cert> {
    use der::Decode;
    let cert = parse_certs(stored.tls_cert.as_deref()?)
        .into_iter()
        .next()?;
    let key = KeyPair::from_pem(stored.tls_key.as_deref()?).ok()?;
    let parsed = x509_cert::Certificate::from_der(&cert.der).ok()?;
    let spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    if spki != key.public_key_raw() {
        return None;
    }
    let has = san_names(&parsed);
    let want: BTreeSet<String> = names.iter().cloned().collect();
    if has != want {
        return None;
    }
    chains_to(&cert.der, cas, now).then_some(cert)
}

/// The DNS names and IP addresses of a certificate's subjectAltName.
fn san_names(cert: &x509_cert::Certificate) -> BTreeSet<String> {
    use der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let mut names = BTreeSet::new();
    let extensions = cert.tbs_certificate.extensions.iter().flatten();
    for ext in extensions.filter(|e| e.extn_id == <SubjectAltName as der::oid::AssociatedOid>::OID)
    {
        let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) else {
            continue;
        };
        for name in san.0 {
            match name {
                GeneralName::DnsName(d) => {
                    names.insert(d.to_string());
                }
                GeneralName::IpAddress(ip) => {
                    let b = ip.as_bytes();
                    let addr = match b.len() {
                        4 => <[u8; 4]>::try_from(b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.insert(addr.map_or_else(|| hex::encode(b), |a| a.to_string()));
                }
                _ => {}
            }
        }
    }
    names
}

fn new_ca(now: SystemTime, l: &Lifetimes) -> Result<(Cert, String), CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let made = humantime::format_rfc3339_seconds(now).to_string();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("sigil webhook CA {made}"));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + l.ca).into();
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    let parsed = parse_certs(&pem).into_iter().next().ok_or_else(|| {
        CertError::Lifetimes("the generated CA certificate does not parse".into())
    })?;
    Ok((parsed, key.serialize_pem()))
}

fn new_serving(
    names: &[String],
    ca: &Cert,
    ca_key: &str,
    now: SystemTime,
    l: &Lifetimes,
) -> Result<(String, String), CertError> {
    let issuer = Issuer::from_ca_cert_pem(&ca.pem, KeyPair::from_pem(ca_key)?)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("sigil"),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = (now - BACKDATE).into();
    // Never past the CA's end.
    params.not_after = (now + l.serving).min(ca.not_after).into();
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What the Secret and the webhook configurations must hold next.
///
/// `live` is the `caBundle` (PEM text, empty when unset) of every webhook in
/// the configurations sigil keeps; `names` the DNS names the serving
/// certificate must carry.
pub fn plan(
    stored: &Stored,
    live: &[String],
    names: &[String],
    now: SystemTime,
    l: &Lifetimes,
) -> Result<Plan, CertError> {
    let mut next = stored.clone();
    let mut changes = Vec::new();

    // 1. The CA.
    let (ca, ca_key) = match current_ca(stored, now, l) {
        Some(ca) => ca,
        None => {
            changes.push("new CA");
            let (cert, key) = new_ca(now, l)?;
            next.ca_cert = Some(cert.pem.clone());
            next.ca_key = Some(key.clone());
            (cert, key)
        }
    };

    // 2. The bundle: the current CA first, then every other CA still valid
    //    from the Secret's bundle and the webhooks' (newest first).
    //    The webhooks' CAs are adopted only when the Secret has lost its
    //    bundle (deleted): otherwise a CA someone else put into a webhook
    //    would be kept, and re-injected, for as long as it lives.
    let kept = parse_certs(stored.ca_bundle.as_deref().unwrap_or_default());
    let adopted: Vec<Cert> = if kept.is_empty() {
        live.iter().flat_map(|b| parse_certs(b)).collect()
    } else {
        Vec::new()
    };
    let mut others: Vec<Cert> = kept
        .into_iter()
        .chain(adopted)
        .filter(|c| c.not_after > now && c.der != ca.der)
        .collect();
    others.sort_by(|a, b| b.not_after.cmp(&a.not_after).then(a.der.cmp(&b.der)));
    others.dedup_by(|a, b| a.der == b.der);
    let mut cas = vec![ca.clone()];
    cas.extend(others.into_iter().take(MAX_CAS - 1));
    let bundle: String = cas.iter().map(|c| c.pem.as_str()).collect();
    if next.ca_bundle.as_deref() != Some(bundle.as_str()) {
        changes.push("CA bundle");
        next.ca_bundle = Some(bundle.clone());
    }

    // 3. Injection: since when has every webhook held this bundle?
    let everywhere = !live.is_empty() && live.iter().all(|b| *b == bundle);
    let hash = sha256_hex(&bundle);
    let since: Option<SystemTime> = if everywhere {
        let recorded = (stored.injected_bundle.as_deref() == Some(hash.as_str()))
            .then_some(stored.injected_at.as_deref())
            .flatten()
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        Some(recorded.unwrap_or(now))
    } else {
        None
    };
    next.injected_bundle = since.map(|_| hash);
    next.injected_at = since.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let propagated =
        since.is_some_and(|t| now.duration_since(t).unwrap_or_default() >= l.propagation());

    // 4. The serving certificate.
    let serving = usable_serving(stored, names, &cas, now);
    let from_current = serving
        .as_ref()
        .is_some_and(|s| chains_to(&s.der, std::slice::from_ref(&ca), now));
    let due = match &serving {
        None => true,
        Some(s) => left(s.not_after, now) <= l.renew_before || (!from_current && propagated),
    };
    // Nothing trusted anywhere yet (a fresh install): nobody can be relying
    // on a certificate, so waiting would only delay the first one.
    let nothing_trusted = live
        .iter()
        .flat_map(|b| parse_certs(b))
        .all(|c| c.not_after <= now);
    if due && (propagated || (serving.is_none() && nothing_trusted)) {
        changes.push("serving certificate");
        let (cert, key) = new_serving(names, &ca, &ca_key, now, l)?;
        next.tls_cert = Some(cert);
        next.tls_key = Some(key);
    }
    Ok(Plan {
        stored: next,
        inject: !everywhere,
        bundle,
        changes,
    })
}

/// When the first certificate of `pem` expires.
pub fn not_after_of(pem: &str) -> Option<SystemTime> {
    parse_certs(pem).first().map(|c| c.not_after)
}

/// The serving certificate and key a replica should serve from `stored`:
/// present, parseable and not expired (whether the apiserver trusts it is
/// the Lease holder's business).
pub fn servable(stored: &Stored, now: SystemTime) -> Option<(String, String)> {
    let cert_pem = stored.tls_cert.clone()?;
    let key_pem = stored.tls_key.clone()?;
    let cert = parse_certs(&cert_pem).into_iter().next()?;
    KeyPair::from_pem(&key_pem).ok()?;
    (cert.not_after > now).then_some((cert_pem, key_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes() -> Lifetimes {
        Lifetimes {
            ca: Duration::from_secs(3600),
            serving: Duration::from_secs(1200),
            renew_before: Duration::from_secs(400),
        }
    }

    fn names() -> Vec<String> {
        vec!["sigil.sigil-system.svc".into()]
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn at(secs: u64) -> SystemTime {
        t0() + Duration::from_secs(secs)
    }

    /// Plans at `now`, then applies it as the Lease holder would: the
    /// Secret is written and, when asked, every webhook gets the bundle.
    fn step(stored: &Stored, live: &mut [String], now: SystemTime) -> Plan {
        let p = plan(stored, live, &names(), now, &lifetimes()).unwrap();
        if p.inject {
            for b in live.iter_mut() {
                *b = p.bundle.clone();
            }
        }
        p
    }

    fn trusted(serving: &str, bundle: &str, now: SystemTime) -> bool {
        let leaf = parse_certs(serving).remove(0);
        chains_to(&leaf.der, &parse_certs(bundle), now)
    }

    #[test]
    fn a_fresh_install_gets_a_ca_and_a_serving_certificate_at_once() {
        let mut live = vec![String::new(), String::new()];
        let p = step(&Stored::default(), &mut live, at(0));
        assert!(p.inject);
        assert_eq!(p.changes, ["new CA", "CA bundle", "serving certificate"]);
        let cert = p.stored.tls_cert.clone().unwrap();
        assert!(trusted(&cert, &p.bundle, at(0)));
        assert!(usable_serving(&p.stored, &names(), &parse_certs(&p.bundle), at(0)).is_some());
        // Next look: the bundle is everywhere; nothing else changes.
        let q = step(&p.stored, &mut live, at(10));
        assert!(!q.inject);
        assert!(q.changes.is_empty(), "{:?}", q.changes);
        assert_eq!(q.stored.tls_cert, p.stored.tls_cert);
        assert!(q.stored.injected_at.is_some());
        assert!(servable(&q.stored, at(10)).is_some());
    }

    #[test]
    fn every_certificate_served_stays_trusted_through_renewals_and_a_ca_rollover() {
        // Steps of 20 s over 2.5 CA lifetimes. At every step, every serving
        // certificate issued so far and not yet expired (some replica may
        // still serve it) verifies against what the webhooks hold.
        let mut live = vec![String::new()];
        let mut stored = Stored::default();
        let mut issued: Vec<String> = Vec::new();
        let mut cas_seen = BTreeSet::new();
        for s in (0..9000).step_by(20) {
            let now = at(s);
            let p = step(&stored, &mut live, now);
            stored = p.stored;
            let cert = stored.tls_cert.clone().unwrap();
            if issued.last() != Some(&cert) {
                issued.push(cert);
            }
            cas_seen.insert(stored.ca_cert.clone().unwrap());
            for cert in &issued {
                let leaf = parse_certs(cert).remove(0);
                if leaf.not_after > now {
                    assert!(
                        trusted(cert, &live[0], now),
                        "a served certificate is not trusted at +{s}s"
                    );
                }
            }
            assert!(parse_certs(&live[0]).len() <= MAX_CAS);
        }
        assert!(issued.len() >= 10, "{} serving certificates", issued.len());
        assert!(cas_seen.len() >= 3, "{} CAs", cas_seen.len());
    }

    #[test]
    fn a_serving_certificate_from_a_new_ca_waits_for_the_bundle_to_propagate() {
        let mut live = vec![String::new()];
        let first = step(&Stored::default(), &mut live, at(0)).stored;
        // The CA is due at 3600 - 400 s; the serving certificate too.
        let now = at(3300);
        let p = step(&first, &mut live, now);
        assert!(p.changes.contains(&"new CA"));
        assert!(
            !p.changes.contains(&"serving certificate"),
            "{:?}",
            p.changes
        );
        assert_eq!(p.stored.tls_cert, first.tls_cert);
        assert_eq!(parse_certs(&p.bundle).len(), 2, "old and new CA");
        // Seen everywhere now; still less than the propagation delay.
        let q = step(&p.stored, &mut live, at(3301));
        assert!(q.changes.is_empty(), "{:?}", q.changes);
        let r = step(&q.stored, &mut live, at(3301 + 100));
        assert_eq!(r.changes, ["serving certificate"]);
        let cert = r.stored.tls_cert.clone().unwrap();
        let new_ca = parse_certs(r.stored.ca_cert.as_deref().unwrap());
        assert!(chains_to(&parse_certs(&cert)[0].der, &new_ca, at(3401)));
    }

    #[test]
    fn a_deleted_secret_keeps_the_cas_the_webhooks_still_trust() {
        let mut live = vec![String::new()];
        let first = step(&Stored::default(), &mut live, at(0)).stored;
        let _ = step(&first, &mut live, at(1));
        let old_cert = first.tls_cert.clone().unwrap();
        // The Secret is gone; the webhooks still hold the old CA.
        let p = step(&Stored::default(), &mut live, at(100));
        assert!(p.changes.contains(&"new CA"));
        assert!(
            !p.changes.contains(&"serving certificate"),
            "the new certificate waits for its CA to reach the webhooks"
        );
        assert!(
            trusted(&old_cert, &live[0], at(100)),
            "old certificate still trusted"
        );
        let q = step(&p.stored, &mut live, at(101));
        let r = step(&q.stored, &mut live, at(300));
        assert!(
            r.changes.contains(&"serving certificate"),
            "{:?}",
            r.changes
        );
        let new_cert = r.stored.tls_cert.clone().unwrap();
        assert!(trusted(&new_cert, &live[0], at(300)));
        assert!(trusted(&old_cert, &live[0], at(300)));
    }

    #[test]
    fn a_reinstall_over_an_old_secret_reinjects_and_keeps_the_certificate() {
        let mut live = vec![String::new()];
        let first = step(&Stored::default(), &mut live, at(0)).stored;
        let settled = step(&first, &mut live, at(5)).stored;
        // New webhook configurations, empty bundles; the old Secret stays.
        let mut fresh = vec![String::new(), String::new()];
        let p = step(&settled, &mut fresh, at(50));
        assert!(p.inject);
        assert_eq!(p.stored.tls_cert, settled.tls_cert);
        assert_eq!(p.stored.injected_at, None, "not everywhere yet");
        assert!(fresh.iter().all(|b| *b == p.bundle));
    }

    #[test]
    fn a_ca_someone_else_put_into_a_webhook_is_not_adopted() {
        let mut live = vec![String::new()];
        let first = step(&Stored::default(), &mut live, at(0)).stored;
        let settled = step(&first, &mut live, at(1)).stored;
        let (foreign, _) = new_ca(at(1), &lifetimes()).unwrap();
        let mut tampered = vec![format!("{}{}", live[0], foreign.pem)];
        let p = step(&settled, &mut tampered, at(2));
        assert!(p.inject, "the webhook gets sigil's bundle back");
        assert!(!p.bundle.contains(&foreign.pem));
        assert!(!tampered[0].contains(&foreign.pem));
        assert_eq!(parse_certs(&p.bundle).len(), 1);
    }

    #[test]
    fn garbage_in_the_secret_is_replaced() {
        let junk = Stored {
            ca_cert: Some("not a certificate".into()),
            ca_key: Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into()),
            ca_bundle: Some("junk".into()),
            tls_cert: Some("junk".into()),
            tls_key: Some("junk".into()),
            injected_bundle: Some("x".into()),
            injected_at: Some("yesterday".into()),
        };
        let mut live = vec!["also junk".to_string()];
        let p = step(&junk, &mut live, at(0));
        assert_eq!(p.changes, ["new CA", "CA bundle", "serving certificate"]);
        assert!(trusted(
            p.stored.tls_cert.as_deref().unwrap(),
            &p.bundle,
            at(0)
        ));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_replaced() {
        let mut live = vec![String::new()];
        let first = step(&Stored::default(), &mut live, at(0)).stored;
        let mut other = first.clone();
        other.tls_key = Some(KeyPair::generate().unwrap().serialize_pem());
        assert!(usable_serving(
            &other,
            &names(),
            &parse_certs(first.ca_bundle.as_deref().unwrap()),
            at(1)
        )
        .is_none());
        let mut wrong_ca_key = first.clone();
        wrong_ca_key.ca_key = Some(KeyPair::generate().unwrap().serialize_pem());
        assert!(current_ca(&wrong_ca_key, at(1), &lifetimes()).is_none());
    }

    #[test]
    fn other_names_get_a_new_certificate() {
        let mut live = vec![String::new()];
        let first = step(&Stored::default(), &mut live, at(0)).stored;
        let settled = step(&first, &mut live, at(1)).stored;
        let p = plan(
            &settled,
            &live,
            &["sigil.other.svc".to_string()],
            at(200),
            &lifetimes(),
        )
        .unwrap();
        assert_eq!(p.changes, ["serving certificate"]);
    }

    #[test]
    fn webhook_configuration_references_parse() {
        assert_eq!(
            "validating/sigil".parse::<WebhookConfigRef>(),
            Ok(WebhookConfigRef::Validating("sigil".into()))
        );
        assert_eq!(
            "mutating/x"
                .parse::<WebhookConfigRef>()
                .unwrap()
                .to_string(),
            "mutating/x"
        );
        for bad in ["sigil", "validating/", "other/sigil"] {
            assert!(bad.parse::<WebhookConfigRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn impossible_lifetimes_are_refused() {
        let l = Lifetimes {
            ca: Duration::from_secs(100),
            serving: Duration::from_secs(90),
            renew_before: Duration::from_secs(20),
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--ca-lifetime"));
        let l = Lifetimes {
            serving: Duration::from_secs(10),
            ..lifetimes()
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--cert-lifetime"));
        assert!(lifetimes().validate().is_ok());
    }
}
