//! An offline Sigstore for tests: a Fulcio-like CA issuing short-lived
//! certificates with the Fulcio extensions and an embedded SCT from a CT log
//! key, a Rekor key producing signed entry timestamps over canonical
//! `hashedrekord` entries, and the trusted-root JSON that trusts them.
//! Signatures come out in cosign's legacy keyless layout (certificate, chain
//! and bundle annotations), ready for [`super::attach_signatures`].
//!
//! Test code, and long (~980 lines) because it is a whole miniature
//! Sigstore (CA, CT log, Rekor, TSA, bundles) whose parts sign for each
//! other; it is never linked into the `sigil` binary.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
    SigningKey,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{simple_signing_payload, SignatureToAttach};
use sigil::verify::keyless::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION};

/// OID arc of Fulcio's extensions.
const FULCIO_ARC: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 0];
/// The embedded SCT list extension (RFC 6962).
const SCT_LIST_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

fn fulcio_oid(n: u64) -> Vec<u64> {
    let mut v = FULCIO_ARC.to_vec();
    v[8] = n;
    v
}

fn time_of(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::from_second(unix(t))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn der_length(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_length(content.len()));
    v.extend_from_slice(content);
    v
}

/// A DER INTEGER holding `v` in its minimal form.
fn der_uint(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    let mut content = bytes[first..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    der_wrap(0x02, &content)
}

/// A signing key of a log (Rekor or CT), P-256.
pub struct LogKey {
    key: KeyPair,
}

impl LogKey {
    fn generate() -> anyhow::Result<Self> {
        Ok(LogKey {
            key: KeyPair::generate()?,
        })
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    /// The log ID: sha256 of the DER public key.
    pub fn log_id(&self) -> [u8; 32] {
        Sha256::digest(self.spki_der()).into()
    }

    /// PEM public key.
    pub fn public_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.spki_der()))
    }

    fn sign(&self, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(self.key.sign(msg)?)
    }
}

/// A SAN identity.
#[derive(Debug, Clone)]
pub enum San {
    /// An email address.
    Email(String),
    /// A URI (CI workflow identities).
    Uri(String),
}

/// What a test certificate should say.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// The SAN.
    pub subject: San,
    /// The OIDC issuer (Fulcio extensions .1.1 and .1.8).
    pub issuer: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Embed an SCT from the CT log.
    pub with_sct: bool,
    /// GitHub workflow extensions (.1.2 trigger, .3 sha, .4 name, .5 repository, .6 ref).
    pub github: Option<[String; 5]>,
    /// Fulcio's provider-neutral claims (.1.9 – .1.22) as (arc, value),
    /// written as DER UTF8Strings as Fulcio writes them.
    pub claims: Vec<(u64, String)>,
}

impl CertRequest {
    /// A 10-minute certificate starting a minute ago, with an SCT.
    pub fn new(subject: San, issuer: &str) -> Self {
        let now = SystemTime::now();
        CertRequest {
            subject,
            issuer: issuer.to_string(),
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(540),
            with_sct: true,
            github: None,
            claims: Vec::new(),
        }
    }

    /// A certificate as Fulcio issues it to a GitHub Actions workflow
    /// (`release.yml`) of `repo` (`owner/name`) running at `git_ref` on a
    /// `runner` (`github-hosted` or `self-hosted`), started by `trigger`:
    /// the workflow as SAN, GitHub's issuer, every claim of the run.
    pub fn github_actions(repo: &str, git_ref: &str, runner: &str, trigger: &str) -> Self {
        let workflow = format!("https://github.com/{repo}/.github/workflows/release.yml@{git_ref}");
        let sha = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c".to_string();
        let owner = repo.split('/').next().unwrap_or_default();
        let mut req = CertRequest::new(
            San::Uri(workflow.clone()),
            "https://token.actions.githubusercontent.com",
        );
        req.github = Some([
            trigger.to_string(),
            sha.clone(),
            "Release".to_string(),
            repo.to_string(),
            git_ref.to_string(),
        ]);
        req.claims = vec![
            (9, workflow.clone()),
            (10, sha.clone()),
            (11, runner.to_string()),
            (12, format!("https://github.com/{repo}")),
            (13, sha.clone()),
            (14, git_ref.to_string()),
            (15, "123456".to_string()),
            (16, format!("https://github.com/{owner}")),
            (17, "654321".to_string()),
            (18, workflow),
            (19, sha),
            (20, trigger.to_string()),
            (
                21,
                format!("https://github.com/{repo}/actions/runs/1/attempts/1"),
            ),
            (22, "public".to_string()),
        ];
        req
    }
}

/// A certificate issued by the test CA, and its private key.
pub struct IssuedCert {
    /// DER certificate.
    pub der: Vec<u8>,
    key: KeyPair,
}

impl IssuedCert {
    /// PEM certificate.
    pub fn pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.der.clone()))
    }

    /// Signs `msg` (ECDSA P-256, SHA-256), as cosign does with its ephemeral key.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).unwrap_or_default()
    }
}

/// How the Rekor entry of a test signature is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// A correct SET over the entry of this signature.
    Valid,
    /// A SET whose signature is garbage.
    Forged,
    /// No bundle annotation at all.
    Missing,
    /// A correct SET, but over the entry of a different signature.
    OtherSignature,
}

/// An RFC 3161 timestamp authority: a root and a timeStamping leaf.
pub struct TestTsa {
    root: CertifiedIssuer<'static, KeyPair>,
    leaf_der: Vec<u8>,
    leaf_key: KeyPair,
    serial: std::sync::atomic::AtomicU64,
}

fn oid_der(oid: &str) -> Vec<u8> {
    const_oid::ObjectIdentifier::new_unwrap(oid)
        .to_der()
        .unwrap_or_default()
}

impl TestTsa {
    /// A root and a timeStamping leaf, valid from 30 days ago for a year.
    pub fn new() -> anyhow::Result<Self> {
        let now = SystemTime::now();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sigil test TSA root");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = time_of(now - Duration::from_secs(30 * 86400));
        params.not_after = time_of(now + Duration::from_secs(365 * 86400));
        let root = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "sigil test TSA");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::TimeStamping];
        params.not_before = time_of(now - Duration::from_secs(30 * 86400));
        params.not_after = time_of(now + Duration::from_secs(365 * 86400));
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&leaf_key, &root)?;
        Ok(TestTsa {
            root,
            leaf_der: leaf.der().to_vec(),
            leaf_key,
            serial: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// The TSA's root certificate, PEM (a Notation `tsaCertificates`).
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// A DER TimeStampToken (CMS ContentInfo) over `signature` at `at`.
    pub fn timestamp(&self, signature: &[u8], at: SystemTime) -> anyhow::Result<Vec<u8>> {
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sha256_alg = der_wrap(0x30, &oid_der("2.16.840.1.101.3.4.2.1"));
        let gen_time = jiff::Timestamp::from_second(unix(at))?
            .strftime("%Y%m%d%H%M%SZ")
            .to_string();
        let mut tst = vec![0x02, 0x01, 0x01];
        tst.extend(oid_der("1.3.6.1.4.1.57264.2"));
        tst.extend(der_wrap(
            0x30,
            &[
                sha256_alg.clone(),
                der_wrap(0x04, &Sha256::digest(signature)),
            ]
            .concat(),
        ));
        tst.extend(der_uint(serial));
        tst.extend(der_wrap(0x18, gen_time.as_bytes()));
        let tst_info = der_wrap(0x30, &tst);
        let tst_info_oid = oid_der("1.2.840.113549.1.9.16.1.4");
        let attr = |oid: &str, value: Vec<u8>| {
            der_wrap(0x30, &[oid_der(oid), der_wrap(0x31, &value)].concat())
        };
        // DER SET OF sorts by encoding: content-type (shorter) first.
        let attrs = [
            attr("1.2.840.113549.1.9.3", tst_info_oid.clone()),
            attr(
                "1.2.840.113549.1.9.4",
                der_wrap(0x04, &Sha256::digest(&tst_info)),
            ),
        ]
        .concat();
        let signature_value = self.leaf_key.sign(&der_wrap(0x31, &attrs))?;
        let leaf = x509_cert::Certificate::from_der(&self.leaf_der)?;
        let sid = der_wrap(
            0x30,
            &[
                leaf.tbs_certificate.issuer.to_der()?,
                leaf.tbs_certificate.serial_number.to_der()?,
            ]
            .concat(),
        );
        let signer_info = der_wrap(
            0x30,
            &[
                vec![0x02, 0x01, 0x01],
                sid,
                sha256_alg.clone(),
                der_wrap(0xa0, &attrs),
                der_wrap(0x30, &oid_der("1.2.840.10045.4.3.2")),
                der_wrap(0x04, &signature_value),
            ]
            .concat(),
        );
        let signed_data = der_wrap(
            0x30,
            &[
                vec![0x02, 0x01, 0x03],
                der_wrap(0x31, &sha256_alg),
                der_wrap(
                    0x30,
                    &[tst_info_oid, der_wrap(0xa0, &der_wrap(0x04, &tst_info))].concat(),
                ),
                der_wrap(0xa0, &self.leaf_der),
                der_wrap(0x31, &signer_info),
            ]
            .concat(),
        );
        Ok(der_wrap(
            0x30,
            &[
                oid_der("1.2.840.113549.1.7.2"),
                der_wrap(0xa0, &signed_data),
            ]
            .concat(),
        ))
    }
}

/// The offline Sigstore instance.
pub struct OfflineSigstore {
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The timestamp authority.
    pub tsa: TestTsa,
    /// The Rekor key.
    pub rekor: LogKey,
    /// The CT log key.
    pub ctlog: LogKey,
    next_index: std::sync::atomic::AtomicI64,
}

impl OfflineSigstore {
    /// A fresh CA, Rekor key and CT log key.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_ca_name("sigil test fulcio")
    }

    /// The same with a chosen CA common name.
    pub fn with_ca_name(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "sigil tests");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = time_of(now - Duration::from_secs(30 * 86400));
        params.not_after = time_of(now + Duration::from_secs(365 * 86400));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(OfflineSigstore {
            ca,
            rekor: LogKey::generate()?,
            ctlog: LogKey::generate()?,
            tsa: TestTsa::new()?,
            next_index: std::sync::atomic::AtomicI64::new(1000),
        })
    }

    /// The CA certificate, PEM (what `keyless.ca-cert.data` holds).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> Vec<u8> {
        self.ca.der().to_vec()
    }

    /// Trusted-root JSON trusting this CA, Rekor key and CT key; the Rekor
    /// key is trusted only inside `rekor_window` when given.
    pub fn trusted_root_json(&self, rekor_window: Option<(SystemTime, SystemTime)>) -> String {
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(86400);
        let log = |k: &LogKey, window: Option<(SystemTime, SystemTime)>, url: &str| {
            let mut valid = json!({ "start": rfc3339(long_ago) });
            if let Some((start, end)) = window {
                valid = json!({ "start": rfc3339(start), "end": rfc3339(end) });
            }
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": B64.encode(k.spki_der()),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid,
                },
                "logId": { "keyId": B64.encode(k.log_id()) },
            })
        };
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor, rekor_window, "https://rekor.test")],
            "certificateAuthorities": [{
                "subject": { "organization": "sigil tests", "commonName": "sigil test fulcio" },
                "uri": "https://fulcio.test",
                "certChain": { "certificates": [{ "rawBytes": B64.encode(self.ca_der()) }] },
                "validFor": { "start": rfc3339(long_ago) },
            }],
            "ctlogs": [log(&self.ctlog, None, "https://ctfe.test")],
            "timestampAuthorities": [{
                "subject": { "organization": "sigil tests", "commonName": "sigil test TSA" },
                "uri": "https://tsa.test",
                "certChain": { "certificates": [
                    { "rawBytes": B64.encode(&self.tsa.leaf_der) },
                    { "rawBytes": B64.encode(self.tsa.root.der()) },
                ] },
                "validFor": { "start": rfc3339(long_ago) },
            }],
        })
        .to_string()
    }

    /// Trusted-root JSON as GitHub's instance publishes it: the CA and the
    /// TSA, no transparency log and no CT log.
    pub fn trusted_root_json_without_logs(&self) -> String {
        let mut root: serde_json::Value =
            serde_json::from_str(&self.trusted_root_json(None)).unwrap_or_default();
        root["tlogs"] = json!([]);
        root["ctlogs"] = json!([]);
        root.to_string()
    }

    /// A `TrustRoot` spec (`sigstoreKeys`) trusting this instance.
    pub fn trust_root_spec(&self) -> serde_json::Value {
        let b64pem = |p: String| B64.encode(p);
        json!({
            "sigstoreKeys": {
                "certificateAuthorities": [{
                    "subject": { "organization": "sigil tests", "commonName": "sigil test fulcio" },
                    "uri": "https://fulcio.test",
                    "certChain": b64pem(self.ca_pem()),
                }],
                "tLogs": [{ "baseURL": "https://rekor.test", "hashAlgorithm": "sha-256", "publicKey": b64pem(self.rekor.public_pem()) }],
                "ctLogs": [{ "baseURL": "https://ctfe.test", "hashAlgorithm": "sha-256", "publicKey": b64pem(self.ctlog.public_pem()) }],
                "timestampAuthorities": [{
                    "subject": { "organization": "sigil tests", "commonName": "sigil test TSA" },
                    "uri": "https://tsa.test",
                    "certChain": b64pem(pem::encode(&pem::Pem::new("CERTIFICATE", self.tsa.leaf_der.clone())) + &self.tsa.root.pem()),
                }],
            }
        })
    }

    /// Issues a certificate as Fulcio would.
    pub fn issue(&self, req: &CertRequest) -> anyhow::Result<IssuedCert> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![match &req.subject {
            San::Email(e) => SanType::Rfc822Name(e.clone().try_into()?),
            San::Uri(u) => SanType::URI(u.clone().try_into()?),
        }];
        params.not_before = time_of(req.not_before);
        params.not_after = time_of(req.not_after);
        let serial: [u8; 16] = rand::random();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &fulcio_oid(1),
                req.issuer.as_bytes().to_vec(),
            ));
        if let Some(gh) = &req.github {
            for (i, v) in gh.iter().enumerate() {
                params
                    .custom_extensions
                    .push(CustomExtension::from_oid_content(
                        &fulcio_oid(2 + i as u64),
                        v.as_bytes().to_vec(),
                    ));
            }
        }
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &fulcio_oid(8),
                der_wrap(0x0c, req.issuer.as_bytes()),
            ));
        for (arc, value) in &req.claims {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &fulcio_oid(*arc),
                    der_wrap(0x0c, value.as_bytes()),
                ));
        }
        if req.with_sct {
            // RFC 6962 §3.2: the SCT signs the certificate's TBS as it is
            // without the SCT extension, so issue once, sign, and reissue
            // with the SCT as the last extension.
            let pre = params.signed_by(&key, &self.ca)?;
            let cert = x509_cert::Certificate::from_der(pre.der())?;
            let tbs = cert.tbs_certificate.to_der()?;
            let sct = self.sct_for(&tbs)?;
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(SCT_LIST_OID, sct));
        }
        let cert = params.signed_by(&key, &self.ca)?;
        Ok(IssuedCert {
            der: cert.der().to_vec(),
            key,
        })
    }

    /// The extension value (DER OCTET STRING of the TLS SCT list) for a
    /// precertificate TBS.
    fn sct_for(&self, tbs: &[u8]) -> anyhow::Result<Vec<u8>> {
        let timestamp = unix(SystemTime::now()) as u64 * 1000;
        let issuer_key_hash = Sha256::digest(self.ca.key().subject_public_key_info());
        let mut signed = vec![0u8, 0u8]; // v1, certificate_timestamp
        signed.extend(timestamp.to_be_bytes());
        signed.extend([0u8, 1u8]); // precert_entry
        signed.extend(issuer_key_hash);
        signed.extend(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend(tbs);
        signed.extend([0u8, 0u8]); // no extensions
        let sig = self.ctlog.sign(&signed)?;
        let mut sct = vec![0u8];
        sct.extend(self.ctlog.log_id());
        sct.extend(timestamp.to_be_bytes());
        sct.extend([0u8, 0u8]);
        sct.extend([4u8, 3u8]); // sha256, ecdsa
        sct.extend((sig.len() as u16).to_be_bytes());
        sct.extend(sig);
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend((sct.len() as u16).to_be_bytes());
        list.extend(sct);
        Ok(der_wrap(0x04, &list))
    }

    /// The cosign bundle annotation (Rekor entry + SET) for a signature.
    pub fn rekor_bundle(
        &self,
        payload: &[u8],
        signature_b64: &str,
        signer_pem: &str,
        integrated_time: SystemTime,
        mode: SetMode,
    ) -> anyhow::Result<String> {
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": { "hash": { "algorithm": "sha256", "value": hex::encode(Sha256::digest(payload)) } },
                "signature": {
                    "content": signature_b64,
                    "publicKey": { "content": B64.encode(signer_pem) },
                },
            },
        });
        self.rekor_entry(&body, integrated_time, mode)
    }

    /// The cosign bundle annotation for any Rekor entry body.
    fn rekor_entry(
        &self,
        body: &serde_json::Value,
        integrated_time: SystemTime,
        mode: SetMode,
    ) -> anyhow::Result<String> {
        let body_b64 = B64.encode(serde_json_canonicalizer::to_vec(body)?);
        let index = self
            .next_index
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = json!({
            "body": body_b64,
            "integratedTime": unix(integrated_time),
            "logID": hex::encode(self.rekor.log_id()),
            "logIndex": index,
        });
        let set = match mode {
            SetMode::Forged => B64.encode(b"not a signature"),
            _ => B64.encode(
                self.rekor
                    .sign(&serde_json_canonicalizer::to_vec(&entry)?)?,
            ),
        };
        Ok(json!({ "SignedEntryTimestamp": set, "Payload": entry }).to_string())
    }

    /// A keyless signature of `repo@digest` by `cert`, in cosign's legacy
    /// layout, logged at `integrated_time`.
    pub fn sign_keyless(
        &self,
        cert: &IssuedCert,
        repo: &str,
        digest: &str,
        integrated_time: SystemTime,
        mode: SetMode,
    ) -> anyhow::Result<SignatureToAttach> {
        let payload = simple_signing_payload(repo, digest);
        let signature_b64 = B64.encode(cert.sign(&payload));
        let mut annotations = BTreeMap::new();
        annotations.insert(CERTIFICATE_ANNOTATION.to_string(), cert.pem());
        annotations.insert(CHAIN_ANNOTATION.to_string(), self.ca_pem());
        let logged_signature = match mode {
            SetMode::OtherSignature => B64.encode(cert.sign(b"another payload")),
            _ => signature_b64.clone(),
        };
        if mode != SetMode::Missing {
            annotations.insert(
                BUNDLE_ANNOTATION.to_string(),
                self.rekor_bundle(
                    &payload,
                    &logged_signature,
                    &cert.pem(),
                    integrated_time,
                    mode,
                )?,
            );
        }
        Ok(SignatureToAttach {
            payload,
            signature_b64,
            annotations,
        })
    }

    /// A keyless attestation of `statement` by `cert`, in cosign's legacy
    /// `.att` layout, logged (as a Rekor `dsse` entry) at `integrated_time`.
    pub fn attest_keyless(
        &self,
        cert: &IssuedCert,
        statement: &[u8],
        integrated_time: SystemTime,
        mode: SetMode,
    ) -> anyhow::Result<super::AttestationToAttach> {
        let envelope = super::dsse_envelope(statement, |m| cert.sign(m));
        let env: serde_json::Value = serde_json::from_slice(&envelope)?;
        let sig = env["signatures"][0]["sig"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut annotations = BTreeMap::new();
        annotations.insert(CERTIFICATE_ANNOTATION.to_string(), cert.pem());
        annotations.insert(CHAIN_ANNOTATION.to_string(), self.ca_pem());
        if mode != SetMode::Missing {
            let logged_sig = match mode {
                SetMode::OtherSignature => B64.encode(cert.sign(b"another envelope")),
                _ => sig,
            };
            let body = dsse_rekor_body(&envelope, statement, &logged_sig, &cert.pem());
            annotations.insert(
                BUNDLE_ANNOTATION.to_string(),
                self.rekor_entry(&body, integrated_time, mode)?,
            );
        }
        Ok(super::AttestationToAttach {
            envelope,
            annotations,
        })
    }

    /// Adds cosign's RFC 3161 annotation: a timestamp over the signature
    /// made at `at`.
    pub fn timestamp_signature(
        &self,
        sig: &mut SignatureToAttach,
        at: SystemTime,
    ) -> anyhow::Result<()> {
        let raw = B64.decode(&sig.signature_b64)?;
        let token = self.tsa.timestamp(&raw, at)?;
        sig.annotations.insert(
            sigil::verify::keyless::RFC3161_ANNOTATION.to_string(),
            json!({ "SignedRFC3161Timestamp": B64.encode(token) }).to_string(),
        );
        Ok(())
    }

    /// Adds cosign's RFC 3161 annotation to a `.att` layer: a timestamp
    /// over its DSSE signature made at `at`.
    pub fn timestamp_attestation(
        &self,
        att: &mut super::AttestationToAttach,
        at: SystemTime,
    ) -> anyhow::Result<()> {
        let env: serde_json::Value = serde_json::from_slice(&att.envelope)?;
        let raw = B64.decode(env["signatures"][0]["sig"].as_str().unwrap_or_default())?;
        let token = self.tsa.timestamp(&raw, at)?;
        att.annotations.insert(
            sigil::verify::keyless::RFC3161_ANNOTATION.to_string(),
            json!({ "SignedRFC3161Timestamp": B64.encode(token) }).to_string(),
        );
        Ok(())
    }

    /// Adds a Rekor `dsse` entry for a key-made `.att` layer (`key_pem`)
    /// over `statement`, as `cosign attest --key --tlog-upload` does.
    pub fn log_key_attestation(
        &self,
        att: &mut super::AttestationToAttach,
        statement: &[u8],
        key_pem: &str,
    ) -> anyhow::Result<()> {
        let env: serde_json::Value = serde_json::from_slice(&att.envelope)?;
        let sig = env["signatures"][0]["sig"].as_str().unwrap_or_default();
        let body = dsse_rekor_body(&att.envelope, statement, sig, key_pem);
        att.annotations.insert(
            BUNDLE_ANNOTATION.to_string(),
            self.rekor_entry(
                &body,
                SystemTime::now() - Duration::from_secs(5),
                SetMode::Valid,
            )?,
        );
        Ok(())
    }

    /// Adds a Rekor entry for a key-made signature (`key_pem`) to `sig`.
    pub fn log_key_signature(
        &self,
        sig: &mut SignatureToAttach,
        key_pem: &str,
        mode: SetMode,
    ) -> anyhow::Result<()> {
        if mode == SetMode::Missing {
            return Ok(());
        }
        let b = self.rekor_bundle(
            &sig.payload,
            &sig.signature_b64,
            key_pem,
            SystemTime::now() - Duration::from_secs(5),
            mode,
        )?;
        sig.annotations.insert(BUNDLE_ANNOTATION.to_string(), b);
        Ok(())
    }
}

/// The Rekor `dsse` v0.0.1 entry body of an envelope and its signature.
fn dsse_rekor_body(
    envelope: &[u8],
    statement: &[u8],
    signature_b64: &str,
    verifier_pem: &str,
) -> serde_json::Value {
    json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": { "algorithm": "sha256", "value": hex::encode(Sha256::digest(envelope)) },
            "payloadHash": { "algorithm": "sha256", "value": hex::encode(Sha256::digest(statement)) },
            "signatures": [{ "signature": signature_b64, "verifier": B64.encode(verifier_pem) }],
        },
    })
}

/// How a bundle's transparency-log evidence is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofMode {
    /// A SET and an inclusion proof with a signed checkpoint.
    Valid,
    /// An inclusion proof whose root hash does not match the entry (the
    /// checkpoint is signed over that wrong root: only the Merkle check fails).
    ForgedProof,
    /// No transparency-log entry.
    Missing,
    /// No transparency-log entry; an RFC 3161 timestamp from the TSA over
    /// the signature instead (GitHub's instance for private repositories).
    Timestamped,
    /// A valid transparency-log entry and an RFC 3161 timestamp both.
    LoggedAndTimestamped,
}

/// Who signs a bundle.
pub enum BundleSigner<'a> {
    /// A certificate from the offline CA (keyless).
    Certificate(&'a IssuedCert),
    /// A key (what `cosign sign --key` makes in v3), with its PEM.
    Key(&'a super::TestKey),
}

impl OfflineSigstore {
    /// A Sigstore bundle v0.3 holding `statement` in a DSSE envelope signed by
    /// `signer`, logged as a Rekor `dsse` entry with a SET and an inclusion
    /// proof (tree of one leaf) under a checkpoint signed by the Rekor key.
    pub fn dsse_bundle(
        &self,
        signer: BundleSigner<'_>,
        statement: &[u8],
        mode: ProofMode,
    ) -> anyhow::Result<Vec<u8>> {
        let (envelope, verifier_pem, material) = match &signer {
            BundleSigner::Certificate(cert) => (
                super::dsse_envelope(statement, |m| cert.sign(m)),
                cert.pem(),
                json!({ "certificate": { "rawBytes": B64.encode(&cert.der) } }),
            ),
            BundleSigner::Key(key) => (
                super::dsse_envelope(statement, |m| key.sign(m)),
                key.public_pem.clone(),
                json!({ "publicKey": { "hint": "" } }),
            ),
        };
        let env: serde_json::Value = serde_json::from_slice(&envelope)?;
        let sig = env["signatures"][0]["sig"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let body = dsse_rekor_body(&envelope, statement, &sig, &verifier_pem);
        let mut material = material;
        material["tlogEntries"] = match mode {
            ProofMode::Missing | ProofMode::Timestamped => json!([]),
            ProofMode::LoggedAndTimestamped => {
                json!([self.tlog_entry(&body, ("dsse", "0.0.1"), ProofMode::Valid)?])
            }
            _ => json!([self.tlog_entry(&body, ("dsse", "0.0.1"), mode)?]),
        };
        if matches!(
            mode,
            ProofMode::Timestamped | ProofMode::LoggedAndTimestamped
        ) {
            material["timestampVerificationData"] = self.timestamp_data(&B64.decode(&sig)?)?;
        }
        Ok(serde_json::to_vec(&json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": material,
            "dsseEnvelope": env,
        }))?)
    }

    /// A Sigstore bundle v0.3 holding a message signature over `artifact`
    /// (for an image: its manifest bytes, so the digest is the image
    /// digest), logged as a Rekor `hashedrekord` entry.
    pub fn message_bundle(
        &self,
        signer: BundleSigner<'_>,
        artifact: &[u8],
        mode: ProofMode,
    ) -> anyhow::Result<Vec<u8>> {
        let (sig, verifier_pem, material) = match &signer {
            BundleSigner::Certificate(cert) => (
                cert.sign(artifact),
                cert.pem(),
                json!({ "certificate": { "rawBytes": B64.encode(&cert.der) } }),
            ),
            BundleSigner::Key(key) => (
                key.sign(artifact),
                key.public_pem.clone(),
                json!({ "publicKey": { "hint": "" } }),
            ),
        };
        let digest = Sha256::digest(artifact);
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": { "hash": { "algorithm": "sha256", "value": hex::encode(digest) } },
                "signature": { "content": B64.encode(&sig), "publicKey": { "content": B64.encode(verifier_pem) } },
            },
        });
        let mut material = material;
        material["tlogEntries"] = match mode {
            ProofMode::Missing | ProofMode::Timestamped => json!([]),
            ProofMode::LoggedAndTimestamped => {
                json!([self.tlog_entry(&body, ("hashedrekord", "0.0.1"), ProofMode::Valid)?])
            }
            _ => json!([self.tlog_entry(&body, ("hashedrekord", "0.0.1"), mode)?]),
        };
        if matches!(
            mode,
            ProofMode::Timestamped | ProofMode::LoggedAndTimestamped
        ) {
            material["timestampVerificationData"] = self.timestamp_data(&sig)?;
        }
        Ok(serde_json::to_vec(&json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": material,
            "messageSignature": {
                "messageDigest": { "algorithm": "SHA2_256", "digest": B64.encode(digest) },
                "signature": B64.encode(&sig),
            },
        }))?)
    }

    /// A bundle's `timestampVerificationData`: one TSA timestamp over
    /// `signature`, made five seconds ago.
    fn timestamp_data(&self, signature: &[u8]) -> anyhow::Result<serde_json::Value> {
        let token = self
            .tsa
            .timestamp(signature, SystemTime::now() - Duration::from_secs(5))?;
        Ok(json!({ "rfc3161Timestamps": [{ "signedTimestamp": B64.encode(token) }] }))
    }

    /// A bundle tlog entry for `body`: SET plus a one-leaf inclusion proof.
    fn tlog_entry(
        &self,
        body: &serde_json::Value,
        kind: (&str, &str),
        mode: ProofMode,
    ) -> anyhow::Result<serde_json::Value> {
        let canonical = serde_json_canonicalizer::to_vec(body)?;
        let body_b64 = B64.encode(&canonical);
        let index = self
            .next_index
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let integrated = unix(SystemTime::now() - Duration::from_secs(5));
        let entry = json!({
            "body": body_b64,
            "integratedTime": integrated,
            "logID": hex::encode(self.rekor.log_id()),
            "logIndex": index,
        });
        let set = B64.encode(
            self.rekor
                .sign(&serde_json_canonicalizer::to_vec(&entry)?)?,
        );
        // RFC 6962 leaf hash; a tree of one leaf has it as its root.
        let mut leaf = vec![0u8];
        leaf.extend(&canonical);
        let mut root: [u8; 32] = Sha256::digest(&leaf).into();
        if mode == ProofMode::ForgedProof {
            root[0] ^= 0xff;
        }
        let origin = "rekor.test - 1";
        let note = format!("{origin}\n1\n{}\n", B64.encode(root));
        let mut signed = self.rekor.log_id()[..4].to_vec();
        signed.extend(self.rekor.sign(note.as_bytes())?);
        let checkpoint = format!("{note}\n\u{2014} rekor.test {}\n", B64.encode(signed));
        Ok(json!({
            "logIndex": index.to_string(),
            "logId": { "keyId": B64.encode(self.rekor.log_id()) },
            "kindVersion": { "kind": kind.0, "version": kind.1 },
            "integratedTime": integrated.to_string(),
            "inclusionPromise": { "signedEntryTimestamp": set },
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": B64.encode(root),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": { "envelope": checkpoint },
            },
            "canonicalizedBody": body_b64,
        }))
    }
}

/// Pushes `blob` as an OCI 1.1 referrer of `repository@subject` (artifact
/// type `artifact_type`, one layer of `layer_media_type`), and adds it to
/// the `sha256-<hex>` referrers tag index (registries without the referrers
/// API, like distribution 2.8, are read through it).
#[allow(clippy::too_many_arguments)]
pub async fn push_referrer(
    client: &oci_client::Client,
    registry: &str,
    repository: &str,
    subject: &str,
    artifact_type: &str,
    layer_media_type: &str,
    blob: &[u8],
    annotations: BTreeMap<String, String>,
) -> anyhow::Result<String> {
    push_referrer_indexed_as(
        client,
        registry,
        repository,
        subject,
        artifact_type,
        layer_media_type,
        blob,
        annotations,
        artifact_type,
    )
    .await
}

/// [`push_referrer`], with `index_artifact_type` as the `artifactType` of
/// the entry in the referrers tag index. go-containerregistry (and so
/// cosign) writes the referrer manifest's *config* media type there
/// (`application/vnd.oci.empty.v1+json`), not its artifact type.
#[allow(clippy::too_many_arguments)]
pub async fn push_referrer_indexed_as(
    client: &oci_client::Client,
    registry: &str,
    repository: &str,
    subject: &str,
    artifact_type: &str,
    layer_media_type: &str,
    blob: &[u8],
    annotations: BTreeMap<String, String>,
    index_artifact_type: &str,
) -> anyhow::Result<String> {
    let held_at =
        oci_client::Reference::with_digest(registry.into(), repository.into(), subject.into());
    push_referrer_in(
        client,
        &held_at,
        registry,
        repository,
        (artifact_type, layer_media_type, index_artifact_type),
        blob,
        annotations,
        &oci_client::secrets::RegistryAuth::Anonymous,
    )
    .await
}

/// [`push_referrer`] into `registry/repository` (with `push_auth`) for
/// the subject `held_at` (read with `push_auth` in the same registry,
/// anonymously in another): signatures kept apart, as `source.oci` reads
/// them.
#[allow(clippy::too_many_arguments)]
pub async fn push_referrer_in(
    client: &oci_client::Client,
    held_at: &oci_client::Reference,
    registry: &str,
    repository: &str,
    (artifact_type, layer_media_type, index_artifact_type): (&str, &str, &str),
    blob: &[u8],
    annotations: BTreeMap<String, String>,
    push_auth: &oci_client::secrets::RegistryAuth,
) -> anyhow::Result<String> {
    use oci_client::Reference;
    let subject = held_at
        .digest()
        .ok_or_else(|| anyhow::anyhow!("{held_at} names no digest"))?;
    let auth = if held_at.registry() == registry {
        push_auth.clone()
    } else {
        oci_client::secrets::RegistryAuth::Anonymous
    };
    let subject_ref = Reference::with_digest(registry.into(), repository.into(), subject.into());
    client.store_auth_if_needed(registry, push_auth).await;
    if held_at.registry() != registry {
        client.store_auth_if_needed(held_at.registry(), &auth).await;
    }
    let (subject_manifest, _) = client
        .pull_manifest_raw(
            held_at,
            &auth,
            &[
                oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
                oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
            ],
        )
        .await?;
    let subject_media_type = serde_json::from_slice::<serde_json::Value>(&subject_manifest)?
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE)
        .to_string();
    let digest_of = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    let empty = b"{}".to_vec();
    client
        .push_blob(&subject_ref, empty.clone(), &digest_of(&empty))
        .await?;
    client
        .push_blob(&subject_ref, blob.to_vec(), &digest_of(blob))
        .await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(&empty), "size": 2 },
        "layers": [{
            "mediaType": layer_media_type,
            "digest": digest_of(blob),
            "size": blob.len(),
            "annotations": annotations,
        }],
        "subject": { "mediaType": subject_media_type, "digest": subject, "size": subject_manifest.len() },
    }))?;
    let manifest_digest = digest_of(&manifest);
    let by_digest =
        Reference::with_digest(registry.into(), repository.into(), manifest_digest.clone());
    client
        .push_manifest_raw(
            &by_digest,
            manifest.clone(),
            http::HeaderValue::from_static(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE),
        )
        .await?;
    // The referrers tag index: read, append, write back.
    let tag = Reference::with_tag(
        registry.into(),
        repository.into(),
        subject.replace(':', "-"),
    );
    let mut entries: Vec<serde_json::Value> = match client
        .pull_manifest_raw(
            &tag,
            push_auth,
            &[oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE],
        )
        .await
    {
        Ok((bytes, _)) => serde_json::from_slice::<serde_json::Value>(&bytes)?
            .get("manifests")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    entries.push(json!({
        "mediaType": oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
        "digest": manifest_digest,
        "size": manifest.len(),
        "artifactType": index_artifact_type,
    }));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": entries,
    }))?;
    client
        .push_manifest_raw(
            &tag,
            index,
            http::HeaderValue::from_static(oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE),
        )
        .await?;
    Ok(manifest_digest)
}
