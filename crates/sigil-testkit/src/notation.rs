//! Notation (Notary Project) signatures made the way `notation sign` makes
//! them: a CA and code-signing certificates (rcgen), JWS and COSE_Sign1
//! envelopes over a Notary payload naming the image manifest, optionally
//! countersigned by an RFC 3161 TSA, attached as OCI referrers of artifact
//! type `application/vnd.cncf.notary.signature`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use coset::cbor::value::Value;
use coset::{iana, TaggedCborSerializable as _};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::json;

use crate::sigstore::TestTsa;

/// Notation's signature artifact type.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
/// JWS envelope media type.
pub const JWS: &str = "application/jose+json";
/// COSE envelope media type.
pub const COSE: &str = "application/cose";

fn time_of(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

/// `C=US, ST=WA, L=Seattle, O=Notary, CN=<cn>`, the shape Notation's
/// trusted identities name.
fn notary_dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::LocalityName, "Seattle");
    dn.push(DnType::OrganizationName, "Notary");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A root CA for Notation signing certificates.
pub struct NotationCa {
    ca: CertifiedIssuer<'static, KeyPair>,
    serial: std::sync::atomic::AtomicU64,
}

/// A code-signing certificate and its key.
pub struct NotationSigner {
    key: EcdsaKeyPair,
    chain: Vec<Vec<u8>>,
    serial: u64,
}

impl NotationCa {
    /// A CA named `cn`, valid from a year ago for ten years.
    pub fn new(cn: &str) -> anyhow::Result<Self> {
        let now = SystemTime::now();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = notary_dn(cn);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = time_of(now - Duration::from_secs(365 * 86400));
        params.not_after = time_of(now + Duration::from_secs(3650 * 86400));
        Ok(NotationCa {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
            serial: std::sync::atomic::AtomicU64::new(1000),
        })
    }

    /// The CA certificate, PEM (a policy's `trustStore.certificates`).
    pub fn pem(&self) -> String {
        self.ca.pem()
    }

    /// A code-signing certificate for `cn`, valid over `[not_before, not_after]`.
    pub fn issue(
        &self,
        cn: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> anyhow::Result<NotationSigner> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = notary_dn(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.not_before = time_of(not_before);
        params.not_after = time_of(not_after);
        params.use_authority_key_identifier_extension = true;
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let leaf = params.signed_by(&key, &self.ca)?;
        let signing =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
                .map_err(|e| anyhow::anyhow!("key: {e}"))?;
        Ok(NotationSigner {
            key: signing,
            chain: vec![leaf.der().to_vec(), self.ca.der().to_vec()],
            serial,
        })
    }

    /// A valid code-signing certificate whose subject is exactly
    /// `subject` (RFC 4514, last RDN first, as `x509-cert` reads it), for
    /// subjects rcgen cannot make: an attribute twice (`OU=Release,OU=Dev`),
    /// a multi-valued RDN (`CN=dev+OU=Release`), a value of another type
    /// than a string (`OU=#0403…`, an OCTET STRING). rcgen issues the
    /// certificate; its subject is then replaced and it is signed again by
    /// this CA.
    pub fn issue_with_subject(&self, subject: &str) -> anyhow::Result<NotationSigner> {
        use der::{Decode as _, Encode as _};
        use rcgen::SigningKey as _;
        let mut signer = self.issue_valid("placeholder")?;
        let mut cert = x509_cert::Certificate::from_der(&signer.chain[0])?;
        cert.tbs_certificate.subject = subject
            .parse::<x509_cert::name::Name>()
            .map_err(|e| anyhow::anyhow!("subject {subject:?}: {e}"))?;
        let tbs = cert.tbs_certificate.to_der()?;
        let signature = self.ca.key().sign(&tbs)?;
        cert.signature = der::asn1::BitString::from_bytes(&signature)?;
        signer.chain[0] = cert.to_der()?;
        Ok(signer)
    }

    /// A CRL of this CA revoking `revoked`, PEM (a `trustStore.crls`).
    pub fn crl(&self, revoked: &[&NotationSigner]) -> anyhow::Result<String> {
        let now = SystemTime::now();
        let params = rcgen::CertificateRevocationListParams {
            this_update: time_of(now - Duration::from_secs(3600)),
            next_update: time_of(now + Duration::from_secs(7 * 86400)),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(s.serial),
                    revocation_time: time_of(now - Duration::from_secs(1800)),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.ca)?.pem()?)
    }

    /// A code-signing certificate for `cn`, valid from a day ago for a year.
    pub fn issue_valid(&self, cn: &str) -> anyhow::Result<NotationSigner> {
        let now = SystemTime::now();
        self.issue(
            cn,
            now - Duration::from_secs(86400),
            now + Duration::from_secs(365 * 86400),
        )
    }
}

/// What an envelope signs: the image manifest's descriptor.
#[derive(Debug, Clone)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size.
    pub size: u64,
}

impl Descriptor {
    /// The Notary payload naming it.
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "targetArtifact": {
                "mediaType": self.media_type,
                "digest": self.digest,
                "size": self.size,
            }
        }))
        .unwrap_or_default()
    }
}

impl NotationSigner {
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key
            .sign(&SystemRandom::new(), msg)
            .map(|s| s.as_ref().to_vec())
            .unwrap_or_default()
    }

    /// A JWS envelope over `payload`, signed at `signed_at`, countersigned
    /// by `tsa` at that time when given.
    pub fn jws(
        &self,
        payload: &[u8],
        signed_at: SystemTime,
        tsa: Option<&TestTsa>,
    ) -> anyhow::Result<Vec<u8>> {
        self.jws_expiring(payload, signed_at, None, tsa)
    }

    /// [`NotationSigner::jws`], with the signature's own expiry
    /// (`io.cncf.notary.expiry`, marked critical) when given.
    pub fn jws_expiring(
        &self,
        payload: &[u8],
        signed_at: SystemTime,
        expiry: Option<SystemTime>,
        tsa: Option<&TestTsa>,
    ) -> anyhow::Result<Vec<u8>> {
        let rfc3339 = |t: SystemTime| -> anyhow::Result<String> {
            Ok(jiff::Timestamp::try_from(t)?
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string())
        };
        let mut protected = json!({
            "alg": "ES256",
            "crit": ["io.cncf.notary.signingScheme"],
            "cty": "application/vnd.cncf.notary.payload.v1+json",
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": rfc3339(signed_at)?,
        });
        if let Some(expiry) = expiry {
            protected["io.cncf.notary.expiry"] = rfc3339(expiry)?.into();
            protected["crit"] = json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]);
        }
        let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&protected)?);
        let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
        let signature = self.sign(format!("{protected}.{payload_b64}").as_bytes());
        let mut header = json!({
            "x5c": self.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
            "io.cncf.notary.signingAgent": "sigil-testkit",
        });
        if let Some(tsa) = tsa {
            header["io.cncf.notary.timestampSignature"] = STANDARD
                .encode(tsa.timestamp(&signature, signed_at)?)
                .into();
        }
        Ok(serde_json::to_vec(&json!({
            "payload": payload_b64,
            "protected": protected,
            "header": header,
            "signature": URL_SAFE_NO_PAD.encode(&signature),
        }))?)
    }

    /// A COSE_Sign1 envelope over `payload`, as [`NotationSigner::jws`].
    pub fn cose(
        &self,
        payload: &[u8],
        signed_at: SystemTime,
        tsa: Option<&TestTsa>,
    ) -> anyhow::Result<Vec<u8>> {
        let seconds = signed_at.duration_since(SystemTime::UNIX_EPOCH)?.as_secs() as i64;
        let protected = coset::HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .add_critical_label(coset::RegisteredLabelWithPrivate::Text(
                "io.cncf.notary.signingScheme".into(),
            ))
            .content_type("application/vnd.cncf.notary.payload.v1+json".into())
            .text_value(
                "io.cncf.notary.signingScheme".into(),
                Value::Text("notary.x509".into()),
            )
            .text_value(
                "io.cncf.notary.signingTime".into(),
                Value::Tag(1, Box::new(Value::Integer(seconds.into()))),
            )
            .build();
        let unprotected = coset::HeaderBuilder::new()
            .value(
                33,
                Value::Array(self.chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
            )
            .text_value(
                "io.cncf.notary.signingAgent".into(),
                Value::Text("sigil-testkit".into()),
            )
            .build();
        let mut sign1 = coset::CoseSign1Builder::new()
            .protected(protected)
            .unprotected(unprotected)
            .payload(payload.to_vec())
            .create_signature(b"", |data| self.sign(data))
            .build();
        if let Some(tsa) = tsa {
            let token = tsa.timestamp(&sign1.signature, signed_at)?;
            sign1.unprotected.rest.push((
                coset::Label::Text("io.cncf.notary.timestampSignature".into()),
                Value::Bytes(token),
            ));
        }
        sign1
            .to_tagged_vec()
            .map_err(|e| anyhow::anyhow!("COSE: {e:?}"))
    }
}

/// The descriptor of `repository@digest` as the registry serves it.
pub async fn descriptor(
    client: &oci_client::Client,
    registry: &str,
    repository: &str,
    digest: &str,
) -> anyhow::Result<Descriptor> {
    let reference =
        oci_client::Reference::with_digest(registry.into(), repository.into(), digest.into());
    let (bytes, _) = client
        .pull_manifest_raw(
            &reference,
            &oci_client::secrets::RegistryAuth::Anonymous,
            &[
                oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
                oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
            ],
        )
        .await?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)?
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE)
        .to_string();
    Ok(Descriptor {
        media_type,
        digest: digest.to_string(),
        size: bytes.len() as u64,
    })
}

/// Attaches `envelope` (of `media_type`, [`JWS`] or [`COSE`]) to
/// `repository@subject` as a Notation signature referrer.
pub async fn attach(
    client: &oci_client::Client,
    registry: &str,
    repository: &str,
    subject: &str,
    media_type: &str,
    envelope: &[u8],
) -> anyhow::Result<String> {
    crate::sigstore::push_referrer(
        client,
        registry,
        repository,
        subject,
        SIGNATURE_ARTIFACT,
        media_type,
        envelope,
        BTreeMap::new(),
    )
    .await
}
