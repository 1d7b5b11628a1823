//! TrustRoots distributed by TUF: `repository` (an air-gapped repository in
//! the resource, verified offline) and `remote` (a mirror, here served over
//! loopback HTTP by the test). Both run the full TUF client before the
//! `trusted_root.json` target is trusted; tampering, expiry and a foreign
//! root all leave the TrustRoot not ready, naming why.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use sigil::trust::{material_from_spec_value, TrustError, TrustStore};
use sigil_testkit::attach_signatures;
use sigil_testkit::sigstore::{CertRequest, OfflineSigstore, San, SetMode};
use sigil_testkit::tuf::TestTufRepo;

const ISSUER: &str = "https://accounts.acme.test";
const SUBJECT: &str = "release@acme.test";

fn in_a_year() -> jiff::Timestamp {
    jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365)
}

fn not_ready_reason(r: Result<sigil::trust::TrustMaterial, TrustError>) -> String {
    match r {
        Err(TrustError::NotReady { error, .. }) => error.to_string(),
        Err(other) => panic!("expected not ready, got {other}"),
        Ok(_) => panic!("expected not ready, got a usable root"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn air_gapped_tuf_repository_is_verified_and_used() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let repo = TestTufRepo::new(&sigstore.trusted_root_json(None), in_a_year()).unwrap();
    let spec =
        |root: String, mirror: String| json!({"repository": {"root": root, "mirrorFS": mirror}});

    let store = Arc::new(TrustStore::public_good());
    store.set(
        "airgap",
        material_from_spec_value(
            "airgap",
            spec(repo.root_b64(), repo.mirror_fs_b64().unwrap()),
        ),
    );
    let mut opts = Opts::for_registry(env.addr());
    opts.trust = Some(store);
    let digest = env.push("acme/app", "v1").await;
    let cert = sigstore
        .issue(&CertRequest::new(San::Email(SUBJECT.into()), ISSUER))
        .unwrap();
    let sig = sigstore
        .sign_keyless(
            &cert,
            &format!("{}/acme/app", env.addr()),
            &digest,
            SystemTime::now() - Duration::from_secs(5),
            SetMode::Valid,
        )
        .unwrap();
    attach_signatures(&env.client, env.addr(), "acme/app", &digest, &[sig])
        .await
        .unwrap();
    let policy = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\nspec:\n  images:\n    - glob: \"{}/acme/**\"\n  authorities:\n    - keyless:\n        trustRootRef: airgap\n        identities:\n          - issuer: {ISSUER}\n            subject: {SUBJECT}\n",
        env.addr()
    );
    let (ev, _) = pipeline(&policy, &opts);
    let resp = review_pod(&ev, &format!("{}/acme/app:v1", env.addr())).await;
    assert!(allowed(&resp), "{}", message(&resp));

    // A target that does not match its signed hash.
    let mut tampered = TestTufRepo::new(&sigstore.trusted_root_json(None), in_a_year()).unwrap();
    let root = tampered.root_b64();
    tampered.files.insert(
        "targets/trusted_root.json".into(),
        sigstore
            .trusted_root_json(Some((SystemTime::UNIX_EPOCH, SystemTime::now())))
            .into_bytes(),
    );
    let reason = not_ready_reason(material_from_spec_value(
        "t",
        spec(root, tampered.mirror_fs_b64().unwrap()),
    ));
    assert!(
        reason.starts_with("spec.repository: target trusted_root.json"),
        "{reason}"
    );

    // Expired metadata.
    let expired = TestTufRepo::new(
        &sigstore.trusted_root_json(None),
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
    )
    .unwrap();
    let reason = not_ready_reason(material_from_spec_value(
        "t",
        spec(expired.root_b64(), expired.mirror_fs_b64().unwrap()),
    ));
    assert!(
        reason.starts_with("spec.repository: TUF metadata does not verify"),
        "{reason}"
    );
    assert!(reason.to_lowercase().contains("expired"), "{reason}");

    // A repository signed by keys the pinned root does not name.
    let other = TestTufRepo::new(&sigstore.trusted_root_json(None), in_a_year()).unwrap();
    let reason = not_ready_reason(material_from_spec_value(
        "t",
        spec(other.root_b64(), repo.mirror_fs_b64().unwrap()),
    ));
    assert!(
        reason.starts_with("spec.repository: TUF metadata does not verify"),
        "{reason}"
    );

    // Not a tar.gz / not a root.
    let reason = not_ready_reason(material_from_spec_value(
        "t",
        spec(repo.root_b64(), "bm90IGEgdGFy".into()),
    ));
    assert!(
        reason.starts_with("spec.repository.mirrorFS: not a tar.gz"),
        "{reason}"
    );
    let reason = not_ready_reason(material_from_spec_value(
        "t",
        spec("e30=".into(), repo.mirror_fs_b64().unwrap()),
    ));
    assert!(
        reason.starts_with("spec.repository.root: not a valid TUF root"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tuf_mirror_is_read_by_sigil_check() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let repo = TestTufRepo::new(&sigstore.trusted_root_json(None), in_a_year()).unwrap();
    let mirror = serve_files(repo.files.clone()).await;

    // Without the network the root is pending (and fails closed).
    let spec = json!({"remote": {"root": repo.root_b64(), "mirror": mirror}});
    assert!(matches!(
        material_from_spec_value("r", spec.clone()),
        Err(TrustError::Pending(_))
    ));
    let fetched = sigil::trust::material_from_spec_value_fetching("r", spec).await;
    assert!(fetched.is_ok(), "{:?}", fetched.err());
    let bad = sigil::trust::material_from_spec_value_fetching(
        "r",
        json!({"remote": {"root": repo.root_b64(), "mirror": format!("{mirror}/nothing-here")}}),
    )
    .await;
    assert!(not_ready_reason(bad).starts_with("spec.remote: TUF metadata does not verify"));

    let digest = env.push("acme/app", "v1").await;
    let cert = sigstore
        .issue(&CertRequest::new(San::Email(SUBJECT.into()), ISSUER))
        .unwrap();
    let sig = sigstore
        .sign_keyless(
            &cert,
            &format!("{}/acme/app", env.addr()),
            &digest,
            SystemTime::now() - Duration::from_secs(5),
            SetMode::Valid,
        )
        .unwrap();
    attach_signatures(&env.client, env.addr(), "acme/app", &digest, &[sig])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\nspec:\n  images:\n    - glob: \"{}/acme/**\"\n  authorities:\n    - keyless:\n        trustRootRef: mirrored\n        identities:\n          - issuer: {ISSUER}\n            subject: {SUBJECT}\n---\napiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata:\n  name: mirrored\nspec:\n  remote:\n    root: {}\n    mirror: {mirror}\n",
            env.addr(),
            repo.root_b64()
        ),
    )
    .unwrap();
    let image = format!("{}/acme/app:v1", env.addr());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "check",
            "--insecure-registry",
            env.addr(),
            "--image",
            &image,
            "--policy-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
