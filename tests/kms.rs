//! `key.kms: awskms://…` against a real AWS KMS API server: moto's
//! (`moto_server` from PyPI, which scripts/setup.sh installs into the venv
//! under ~/.cache/sigil), on loopback. Keys are created there (ECC_NIST_P256)
//! and an image's cosign payload is signed there with KMS `Sign`; sigil
//! reaches it through the AWS SDK's standard settings (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, access keys), with `awskms:///…` references as cosign takes
//! them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use base64::Engine as _;
use common::Env;
use sigil_testkit::{free_port, SignatureToAttach, TestKey, TestKeyKind};

/// A moto server on 127.0.0.1.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    let python = PathBuf::from(common::helm_python());
    python.with_file_name("moto_server")
}

fn start_moto() -> Moto {
    let port = free_port().unwrap();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/setup.sh installs moto[server])",
                moto_server().display()
            )
        });
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn kms_client(url: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(url)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// A new ECC_NIST_P256 signing key; returns (key ID, key ARN).
async fn create_key(kms: &aws_sdk_kms::Client) -> (String, String) {
    let made = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let meta = made.key_metadata().unwrap();
    (meta.key_id().to_string(), meta.arn().unwrap().to_string())
}

/// `payload` signed by the KMS key (ECDSA P-256 over SHA-256), DER.
async fn kms_sign(kms: &aws_sdk_kms::Client, key_id: &str, payload: &[u8]) -> Vec<u8> {
    let signed = kms
        .sign()
        .key_id(key_id)
        .message(Blob::new(payload))
        .message_type(MessageType::Raw)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    signed.signature().unwrap().as_ref().to_vec()
}

fn policy(dir: &Path, reference: &str, glob: &str) {
    std::fs::write(
        dir.join("kms.yaml"),
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: kms-signed\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n    - name: release\n      key:\n        kms: \"{reference}\"\n"
        ),
    )
    .unwrap();
}

/// `sigil check --image` with the AWS settings pointing at `endpoint`;
/// returns (exit code, stdout + stderr).
fn check(dir: &Path, registry: &str, image: &str, endpoint: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["check", "--policy-dir"])
        .arg(dir)
        .args(["--insecure-registry", registry, "--image", image])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_keys_verify_like_inline_keys_and_fail_closed_without_kms() {
    let moto = start_moto();
    let kms = kms_client(&moto.url);
    let (key_id, key_arn) = create_key(&kms).await;
    kms.create_alias()
        .alias_name("alias/release")
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap();

    let env = Env::start();
    let repo = format!("{}/team/app", env.addr());
    // Signed in KMS: the cosign `.sig` layout, as `cosign sign --key awskms://…` writes it.
    let signed_digest = env.push("team/app", "v1").await;
    let payload = sigil_testkit::simple_signing_payload(&repo, &signed_digest);
    let signature = kms_sign(&kms, &key_id, &payload).await;
    sigil_testkit::attach_signatures(
        &env.client,
        env.addr(),
        "team/app",
        &signed_digest,
        &[SignatureToAttach {
            payload,
            signature_b64: base64::engine::general_purpose::STANDARD.encode(signature),
            annotations: Default::default(),
        }],
    )
    .await
    .unwrap();
    // Signed by another key.
    let other_digest = env.push("team/other", "v1").await;
    env.sign(
        "team/other",
        &other_digest,
        &TestKey::generate(TestKeyKind::P256).unwrap(),
    )
    .await;
    // Signed by a second KMS key than the one the policy names.
    let (second_key, _) = create_key(&kms).await;
    let second_digest = env.push("team/second", "v1").await;
    let second_repo = format!("{}/team/second", env.addr());
    let payload = sigil_testkit::simple_signing_payload(&second_repo, &second_digest);
    let signature = kms_sign(&kms, &second_key, &payload).await;
    sigil_testkit::attach_signatures(
        &env.client,
        env.addr(),
        "team/second",
        &second_digest,
        &[SignatureToAttach {
            payload,
            signature_b64: base64::engine::general_purpose::STANDARD.encode(signature),
            annotations: Default::default(),
        }],
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let glob = format!("{}/team/**", env.addr());
    let signed = format!("{repo}@{signed_digest}");
    // Each of cosign's forms, with the endpoint from AWS_ENDPOINT_URL.
    for reference in [
        "awskms:///alias/release".to_string(),
        format!("awskms:///{key_id}"),
        format!("awskms:///{key_arn}"),
        format!(
            "awskms:///{}",
            key_arn.replace(&format!("key/{key_id}"), "alias/release")
        ),
    ] {
        policy(dir.path(), &reference, &glob);
        let (code, out) = check(dir.path(), env.addr(), &signed, &moto.url);
        assert_eq!(code, Some(0), "{reference}: {out}");
        assert!(out.contains("result: admitted"), "{reference}: {out}");
    }

    policy(dir.path(), "awskms:///alias/release", &glob);
    let (code, out) = check(
        dir.path(),
        env.addr(),
        &format!("{}/team/other@{other_digest}", env.addr()),
        &moto.url,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "fails policy \"kms-signed\": release: signature does not verify with key release"
        ),
        "another key's signature is refused: {out}"
    );
    let (code, out) = check(
        dir.path(),
        env.addr(),
        &format!("{second_repo}@{second_digest}"),
        &moto.url,
    );
    assert_eq!(
        code,
        Some(1),
        "another KMS key's signature is refused: {out}"
    );

    // The KMS endpoint is down: denied, with the field and the reason.
    let nowhere = format!("http://127.0.0.1:{}", free_port().unwrap());
    let (code, out) = check(dir.path(), env.addr(), &signed, &nowhere);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("spec.authorities[0].key.kms")
            && out.contains("cannot fetch the public key of awskms:///alias/release from AWS KMS"),
        "{out}"
    );
    assert!(!out.contains("result: admitted"), "{out}");
}

/// A rotated alias is picked up at the next refresh; until then the cached
/// key is used without asking KMS again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_alias_is_picked_up_at_the_next_refresh() {
    use sigil::policy::kms::KmsKeys;
    let moto = start_moto();
    let kms = kms_client(&moto.url);
    let (first, _) = create_key(&kms).await;
    let (second, _) = create_key(&kms).await;
    kms.create_alias()
        .alias_name("alias/rotating")
        .target_key_id(&first)
        .send()
        .await
        .unwrap();
    let public = |key: String| {
        let kms = kms.clone();
        async move {
            let der = kms.get_public_key().key_id(key).send().await.unwrap();
            pem::encode(&pem::Pem::new(
                "PUBLIC KEY",
                der.public_key().unwrap().as_ref().to_vec(),
            ))
        }
    };
    let (first_pem, second_pem) = (public(first.clone()).await, public(second.clone()).await);
    assert_ne!(first_pem, second_pem);

    // In this process, the SDK's standard settings from the environment
    // (the other test passes its own to the processes it starts).
    for (name, value) in [
        ("AWS_ENDPOINT_URL", moto.url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        std::env::set_var(name, value);
    }
    let keys = KmsKeys::new(Duration::from_secs(2));
    let reference = "awskms:///alias/rotating";
    assert_eq!(keys.public_key(reference).await.unwrap(), first_pem);
    // What the policy sources do: the key inlined as key.data.
    let definitions = || {
        let spec = sigil::policy::files::spec_from_value(serde_json::json!({
            "images": [{"glob": "**"}],
            "authorities": [{"key": {"kms": reference}}],
        }))
        .unwrap();
        vec![sigil::policy::store::PolicyDefinition {
            name: "p".into(),
            spec: Ok(spec),
        }]
    };
    let mut before = definitions();
    keys.resolve(&mut before).await;
    kms.update_alias()
        .alias_name("alias/rotating")
        .target_key_id(&second)
        .send()
        .await
        .unwrap();
    // Cached: the old key until the refresh interval has passed.
    assert!(!keys.refresh_due());
    assert_eq!(keys.public_key(reference).await.unwrap(), first_pem);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(keys.refresh_due(), "the policy sources resolve again");
    let mut defs = definitions();
    keys.resolve(&mut defs).await;
    let key = defs[0].spec.as_ref().unwrap().authorities[0]
        .key
        .clone()
        .unwrap();
    assert_eq!(
        key.data.as_deref(),
        Some(second_pem.as_str()),
        "the new key"
    );
    assert_eq!(key.kms, None);
    assert!(!keys.refresh_due());

    // A pass cached under the old key is not reused under the new one
    // (tests/verdict_keys.rs does the same for the other inputs): signed
    // by the first key in KMS, admitted and cached; with every signature
    // read failing, still admitted from the cache; under the rotated key,
    // evaluated afresh and denied.
    use common::faults::{Fault, FaultProxy};
    let env = Env::start();
    let proxy = FaultProxy::start(env.addr()).await;
    let digest = env.push("team/app", "v1").await;
    let payload =
        sigil_testkit::simple_signing_payload(&format!("{}/team/app", env.addr()), &digest);
    let signature = kms_sign(&kms, &first, &payload).await;
    sigil_testkit::attach_signatures(
        &env.client,
        env.addr(),
        "team/app",
        &digest,
        &[SignatureToAttach {
            payload,
            signature_b64: base64::engine::general_purpose::STANDARD.encode(signature),
            annotations: Default::default(),
        }],
    )
    .await
    .unwrap();
    let image = format!("{}/team/app@{digest}", proxy.addr);
    let (ev, _) = common::pipeline("", &common::Opts::for_registry(&proxy.addr));
    ev.store.replace_source("kms", &before);
    let resp = common::review_pod(&ev, &image).await;
    assert!(common::allowed(&resp), "{}", common::message(&resp));
    proxy.set(".sig", Fault::Status(503));
    let resp = common::review_pod(&ev, &image).await;
    assert!(common::allowed(&resp), "cached: {}", common::message(&resp));
    ev.store.replace_source("kms", &defs);
    // Mended: a fresh evaluation reads the signatures again (only verdicts
    // are cached) and fails on the key, not on the registry.
    proxy.clear();
    let resp = common::review_pod(&ev, &image).await;
    assert!(
        !common::allowed(&resp),
        "a pass under the old KMS key was reused"
    );
    assert!(
        common::message(&resp).contains("signature does not verify with key authority-0"),
        "{}",
        common::message(&resp)
    );
}
