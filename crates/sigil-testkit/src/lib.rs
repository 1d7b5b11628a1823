//! Real artifacts for tests and the demo: a Debian `docker-registry` process
//! on loopback, images pushed with oci-client, and cosign-format signatures
//! (legacy `.sig` layout) made with freshly generated keys.
//!
//! Nothing here is used on the admission path, and none of it is linked
//! into the `sigil` binary (a dev-dependency only); at ~620 lines it keeps
//! the registry launcher and the image/signature pushers together because
//! every integration test uses them as one kit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    RSA_PKCS1_SHA256, RSA_PKCS1_SHA512,
};
use base64::Engine as _;
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OciImageIndex, OciImageManifest, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};

pub mod buildkit;
pub mod notation;
pub mod sigstore;
pub mod tuf;

use sigil::image::cosign_tag;
use sigil::verify::cosign::{
    COSIGN_SIGNATURE_TYPE, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};

/// A Debian `docker-registry` (distribution v2) serving on 127.0.0.1.
pub struct LocalRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The registry's log (one `response completed` line per request).
    pub log_path: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Options of a test registry.
#[derive(Debug, Clone, Default)]
pub struct RegistrySetup {
    /// An htpasswd file (bcrypt): turns on basic auth.
    pub htpasswd: Option<PathBuf>,
    /// Serving certificate and key (PEM files): turns on TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Distribution's token auth: clients get bearer tokens from a token
    /// server, whose JWTs the registry checks against a certificate bundle.
    pub token: Option<TokenAuthSetup>,
}

/// distribution's `auth.token` settings.
#[derive(Debug, Clone)]
pub struct TokenAuthSetup {
    /// The token server's URL, sent in the `WWW-Authenticate` challenge.
    pub realm: String,
    /// This registry's name in tokens (their audience).
    pub service: String,
    /// Who must have issued the tokens.
    pub issuer: String,
    /// PEM certificates one of which must anchor the token's `x5c` chain.
    pub root_cert_bundle: PathBuf,
}

/// The registry binary: `$SIGIL_REGISTRY_BIN` or Debian's `/usr/bin/docker-registry`.
pub fn registry_binary() -> PathBuf {
    std::env::var_os("SIGIL_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalRegistry {
    /// Starts a registry with its own storage and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&RegistrySetup::default())
    }

    /// Starts a registry with basic auth and/or TLS.
    pub fn start_with(setup: &RegistrySetup) -> anyhow::Result<Self> {
        let bin = registry_binary();
        anyhow::ensure!(bin.exists(), "{} not found: install Debian's docker-registry package (apt-get install docker-registry)", bin.display());
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let auth = setup
            .htpasswd
            .as_ref()
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: sigil-test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let auth = auth
            + &setup
                .token
                .as_ref()
                .map(|t| {
                    format!(
                        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                        t.realm,
                        t.service,
                        t.issuer,
                        t.root_cert_bundle.display()
                    )
                })
                .unwrap_or_default();
        let tls = setup
            .tls
            .as_ref()
            .map(|(c, k)| {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    c.display(),
                    k.display()
                )
            })
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls}{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        let reg = LocalRegistry {
            addr,
            log_path,
            child,
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(15),
                "docker-registry did not start; log:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(reg)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many requests whose URI contains `needle` the registry completed.
    pub fn count_requests(&self, needle: &str) -> usize {
        let Ok(f) = std::fs::File::open(&self.log_path) else {
            return 0;
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("msg=\"response completed") && l.contains(needle))
            .count()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An oci-client that talks plain HTTP to `insecure` hosts.
pub fn plain_http_client(insecure: &[String]) -> Client {
    Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(insecure.to_vec()),
        ..Default::default()
    })
}

/// A key type for test signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKeyKind {
    /// ECDSA P-256 with SHA-256 (cosign's default key).
    P256,
    /// ECDSA P-384 with SHA-256 (what cosign does with a P-384 key).
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048, PKCS#1 v1.5, SHA-256.
    Rsa,
    /// RSA 2048, PKCS#1 v1.5, SHA-512 (`cosign sign --key` of a key a
    /// policy names with `hashAlgorithm: sha512`).
    RsaSha512,
}

enum Signer {
    P256(EcdsaKeyPair),
    P384(Box<p384::ecdsa::SigningKey>),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn aws_lc_rs::signature::RsaEncoding),
}

/// A throwaway signing key and its public PEM.
pub struct TestKey {
    /// `-----BEGIN PUBLIC KEY-----` PEM, as a policy's `key.data` holds it.
    pub public_pem: String,
    signer: Signer,
}

fn spki_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PUBLIC KEY", der.to_vec()))
}

impl TestKey {
    /// Generates a key.
    pub fn generate(kind: TestKeyKind) -> anyhow::Result<Self> {
        let fail = |_| anyhow::anyhow!("key generation failed");
        Ok(match kind {
            TestKeyKind::P256 => {
                let k = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(fail)?;
                let der = k.public_key().as_der().map_err(fail)?;
                TestKey {
                    public_pem: spki_pem(der.as_ref()),
                    signer: Signer::P256(k),
                }
            }
            TestKeyKind::P384 => {
                let k =
                    p384::ecdsa::SigningKey::random(&mut p384::elliptic_curve::rand_core::OsRng);
                let der = k
                    .verifying_key()
                    .to_public_key_der()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                TestKey {
                    public_pem: spki_pem(der.as_bytes()),
                    signer: Signer::P384(Box::new(k)),
                }
            }
            TestKeyKind::Ed25519 => {
                let k = Ed25519KeyPair::generate().map_err(fail)?;
                let der = k.public_key().as_der().map_err(fail)?;
                TestKey {
                    public_pem: spki_pem(der.as_ref()),
                    signer: Signer::Ed25519(k),
                }
            }
            TestKeyKind::Rsa | TestKeyKind::RsaSha512 => {
                let k = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(fail)?;
                let der = k.public_key().as_der().map_err(fail)?;
                let encoding = if kind == TestKeyKind::RsaSha512 {
                    &RSA_PKCS1_SHA512
                } else {
                    &RSA_PKCS1_SHA256
                };
                TestKey {
                    public_pem: spki_pem(der.as_ref()),
                    signer: Signer::Rsa(k, encoding),
                }
            }
        })
    }

    /// Signs `msg` the way cosign does for this key type.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::P256(k) => k
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Signer::P384(k) => {
                let digest = Sha256::digest(msg);
                let sig: p384::ecdsa::Signature = k
                    .sign_prehash(&digest)
                    .unwrap_or_else(|_| unreachable!("sha256 prehash is a valid length"));
                sig.to_der().as_bytes().to_vec()
            }
            Signer::Ed25519(k) => k.sign(msg).as_ref().to_vec(),
            Signer::Rsa(k, encoding) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                let _ = k.sign(*encoding, &SystemRandom::new(), msg, &mut sig);
                sig
            }
        }
    }
}

/// The simple-signing payload cosign writes for `docker_reference@digest`.
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_SIGNATURE_TYPE,
        },
        "optional": null,
    }))
    .unwrap_or_default()
}

/// One signature layer to attach: payload and base64 signature.
#[derive(Debug, Clone)]
pub struct SignatureToAttach {
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Base64 signature.
    pub signature_b64: String,
    /// Other layer annotations (certificate, chain, Rekor bundle).
    pub annotations: BTreeMap<String, String>,
}

impl SignatureToAttach {
    /// Signs a cosign payload for `repo@digest` with `key`.
    pub fn new(key: &TestKey, repo: &str, digest: &str) -> Self {
        let payload = simple_signing_payload(repo, digest);
        let signature_b64 = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
        SignatureToAttach {
            payload,
            signature_b64,
            annotations: BTreeMap::new(),
        }
    }
}

/// Pushes a small random single-platform image; returns its digest.
pub async fn push_image(client: &Client, reference: &Reference) -> anyhow::Result<String> {
    push_image_as(client, reference, &RegistryAuth::Anonymous).await
}

/// [`push_image`] with credentials.
pub async fn push_image_as(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
) -> anyhow::Result<String> {
    let layer_bytes: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer_bytes)));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    });
    let layers = vec![ImageLayer::oci_v1(layer_bytes, None)];
    let resp = client
        .push(
            reference,
            &layers,
            Config::oci_v1(serde_json::to_vec(&config)?, None),
            auth,
            None,
        )
        .await?;
    let digest = client.fetch_manifest_digest(reference, auth).await?;
    tracing::debug!(url = %resp.manifest_url, %digest, "pushed image");
    Ok(digest)
}

/// Pushes an OCI image index over `platform_digests` (amd64, arm64, …) at `reference`.
pub async fn push_index(
    client: &Client,
    reference: &Reference,
    platform_digests: &[(String, &str)],
) -> anyhow::Result<String> {
    let mut manifests = Vec::new();
    for (digest, arch) in platform_digests {
        let by_digest = Reference::with_digest(
            reference.registry().into(),
            reference.repository().into(),
            digest.clone(),
        );
        let (raw, _) = client
            .pull_manifest_raw(
                &by_digest,
                &RegistryAuth::Anonymous,
                &[OCI_IMAGE_MEDIA_TYPE],
            )
            .await?;
        manifests.push(ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
            digest: digest.clone(),
            size: raw.len() as i64,
            platform: Some(oci_client::manifest::Platform {
                architecture: serde_json::from_value(serde_json::json!(arch))?,
                os: serde_json::from_value(serde_json::json!("linux"))?,
                os_version: None,
                os_features: None,
                variant: None,
                features: None,
            }),
            annotations: None,
            artifact_type: None,
        });
    }
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests,
        artifact_type: None,
        annotations: None,
    };
    client
        .push_manifest_list(reference, &RegistryAuth::Anonymous, index)
        .await?;
    Ok(client
        .fetch_manifest_digest(reference, &RegistryAuth::Anonymous)
        .await?)
}

/// Writes the cosign `.sig` manifest for `digest` into `registry/repository`
/// with the given layers (replacing any previous one, as a fresh `cosign sign`
/// of an unsigned image would).
pub async fn attach_signatures(
    client: &Client,
    registry: &str,
    repository: &str,
    digest: &str,
    signatures: &[SignatureToAttach],
) -> anyhow::Result<()> {
    attach_signatures_as(
        client,
        registry,
        repository,
        digest,
        signatures,
        &RegistryAuth::Anonymous,
    )
    .await
}

/// [`attach_signatures`] with credentials.
pub async fn attach_signatures_as(
    client: &Client,
    registry: &str,
    repository: &str,
    digest: &str,
    signatures: &[SignatureToAttach],
    auth: &RegistryAuth,
) -> anyhow::Result<()> {
    let tag = cosign_tag(digest, "sig");
    push_signature_layers(client, registry, repository, &tag, signatures, auth).await
}

/// [`attach_signatures`] under another tag (e.g. with a `tagPrefix`).
pub async fn attach_signatures_at(
    client: &Client,
    registry: &str,
    repository: &str,
    tag: &str,
    signatures: &[SignatureToAttach],
) -> anyhow::Result<()> {
    let auth = RegistryAuth::Anonymous;
    push_signature_layers(client, registry, repository, tag, signatures, &auth).await
}

/// Pushes simple-signing layers (signature in the annotation) under `tag`.
async fn push_signature_layers(
    client: &Client,
    registry: &str,
    repository: &str,
    tag: &str,
    signatures: &[SignatureToAttach],
    auth: &RegistryAuth,
) -> anyhow::Result<()> {
    let layers = signatures
        .iter()
        .map(|s| {
            let mut ann = s.annotations.clone();
            ann.insert(SIGNATURE_ANNOTATION.to_string(), s.signature_b64.clone());
            (s.payload.clone(), SIMPLE_SIGNING_MEDIA_TYPE, ann)
        })
        .collect();
    push_cosign_tag(client, registry, repository, tag, layers, auth).await
}

/// One attestation layer to attach: a DSSE envelope and its annotations.
#[derive(Debug, Clone)]
pub struct AttestationToAttach {
    /// The DSSE envelope JSON.
    pub envelope: Vec<u8>,
    /// Layer annotations (certificate, chain, Rekor bundle for keyless).
    pub annotations: BTreeMap<String, String>,
}

/// An in-toto Statement (v1) about `repo@digest`.
pub fn in_toto_statement(
    repo: &str,
    digest: &str,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repo, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .unwrap_or_default()
}

/// A DSSE envelope around `statement`, signed by `sign` over the PAE.
pub fn dsse_envelope(statement: &[u8], sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let pae =
        sigstore_types::dsse::pae(sigil::verify::attestation::IN_TOTO_PAYLOAD_TYPE, statement);
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&serde_json::json!({
        "payloadType": sigil::verify::attestation::IN_TOTO_PAYLOAD_TYPE,
        "payload": b64.encode(statement),
        "signatures": [{"keyid": "", "sig": b64.encode(sign(&pae))}],
    }))
    .unwrap_or_default()
}

impl AttestationToAttach {
    /// A statement signed with `key`, as `cosign attest --key` writes it.
    pub fn new(key: &TestKey, statement: &[u8]) -> Self {
        AttestationToAttach {
            envelope: dsse_envelope(statement, |m| key.sign(m)),
            annotations: BTreeMap::new(),
        }
    }
}

/// Writes the cosign `.att` manifest for `digest` (replacing any previous one).
pub async fn attach_attestations(
    client: &Client,
    registry: &str,
    repository: &str,
    digest: &str,
    attestations: &[AttestationToAttach],
) -> anyhow::Result<()> {
    let tag = cosign_tag(digest, "att");
    let auth = RegistryAuth::Anonymous;
    attach_attestations_at(client, registry, repository, &tag, attestations, &auth).await
}

/// [`attach_attestations`] under another tag (e.g. with a `tagPrefix`),
/// with credentials.
pub async fn attach_attestations_at(
    client: &Client,
    registry: &str,
    repository: &str,
    tag: &str,
    attestations: &[AttestationToAttach],
    auth: &RegistryAuth,
) -> anyhow::Result<()> {
    let layers = attestations
        .iter()
        .map(|a| {
            let mut ann = a.annotations.clone();
            // cosign leaves the signature annotation empty on DSSE layers.
            ann.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&a.envelope) {
                if let Some(t) = v
                    .get("payload")
                    .and_then(|p| p.as_str())
                    .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
                    .and_then(|st| {
                        st.get("predicateType")
                            .and_then(|t| t.as_str())
                            .map(str::to_string)
                    })
                {
                    ann.insert("predicateType".to_string(), t);
                }
            }
            (
                a.envelope.clone(),
                sigil::verify::attestation::DSSE_MEDIA_TYPE,
                ann,
            )
        })
        .collect();
    push_cosign_tag(client, registry, repository, tag, layers, auth).await
}

/// Pushes a cosign-style manifest (`tag`) whose layers are `layers`.
async fn push_cosign_tag(
    client: &Client,
    registry: &str,
    repository: &str,
    tag: &str,
    layers: Vec<(Vec<u8>, &str, BTreeMap<String, String>)>,
    auth: &RegistryAuth,
) -> anyhow::Result<()> {
    let sig_ref = Reference::with_tag(registry.into(), repository.into(), tag.to_string());
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|(data, media_type, ann)| ImageLayer::new(data, media_type.to_string(), Some(ann)))
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.sha256_digest()).collect();
    let config = serde_json::json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let config = Config::oci_v1(serde_json::to_vec(&config)?, None);
    // oci-client's own manifest push writes OLPC canonical JSON, which leaves
    // the line breaks of PEM annotations unescaped (invalid JSON to the
    // registry); push the blobs with it, the manifest as standard JSON.
    let manifest = OciImageManifest::build(&layers, &config, None);
    client
        .store_auth_if_needed(sig_ref.resolve_registry(), auth)
        .await;
    for (layer, desc) in layers.iter().zip(&manifest.layers) {
        client
            .push_blob(&sig_ref, layer.data.clone(), &desc.digest)
            .await?;
    }
    client
        .push_blob(&sig_ref, config.data.clone(), &manifest.config.digest)
        .await?;
    client
        .push_manifest_raw(
            &sig_ref,
            serde_json::to_vec(&manifest)?,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await?;
    Ok(())
}

/// Signs `digest` with `key` and stores the signature beside the image.
pub async fn sign_image(
    client: &Client,
    registry: &str,
    repository: &str,
    digest: &str,
    key: &TestKey,
) -> anyhow::Result<()> {
    let sig = SignatureToAttach::new(key, &format!("{registry}/{repository}"), digest);
    attach_signatures(client, registry, repository, digest, &[sig]).await
}
/// An AdmissionReview for a one-container Pod.
pub fn pod_review(uid: &str, namespace: &str, name: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "demo-user"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": image}]}
            },
            "dryRun": false
        }
    })
}
