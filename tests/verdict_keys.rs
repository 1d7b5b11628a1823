//! The verdict cache must never serve a pass once something it was
//! computed from has changed. Each test fills the cache with a pass through
//! the real registry, then breaks the registry (every `.sig` read answers
//! 503, so a fresh evaluation can only fail): the same review still passes,
//! which shows the cache answers it; then one input changes — a policy's
//! key data, a `secretRef` Secret's content, a TrustRoot's content, the
//! pull credentials (and, in tests/kms.rs, a KMS key) — and the review must
//! be evaluated afresh, and denied: with the new input's own reason once
//! the registry is mended (signature layers are not cached as fetched;
//! only verdicts are, so a fresh evaluation reads them again), or with the
//! registry's 503 while it stays broken (credentials). A verdict key that
//! stopped covering the input would admit it from the cache.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::faults::{Fault, FaultProxy};
use common::*;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use sigil::policy::files;
use sigil::registry::Credentials;
use sigil::service::{CredentialSource, Evaluator};
use sigil::trust::{TrustMaterial, TrustStore};
use sigil_testkit::sigstore::{CertRequest, OfflineSigstore, San, SetMode};
use sigil_testkit::{attach_signatures, TestKey, TestKeyKind};

/// Reviews `image`: a pass; then with every signature read failing, a
/// pass again, from the cache.
async fn cached_pass(ev: &Evaluator, proxy: &FaultProxy, image: &str) {
    let resp = review_pod(ev, image).await;
    assert!(allowed(&resp), "{}", message(&resp));
    proxy.set(".sig", Fault::Status(503));
    let resp = review_pod(ev, image).await;
    assert!(
        allowed(&resp),
        "the cache answers while nothing changed: {}",
        message(&resp)
    );
}

/// After the change: evaluated afresh, denied for `reason`.
async fn evaluated_afresh(ev: &Evaluator, image: &str, reason: &str) {
    let resp = review_pod(ev, image).await;
    assert!(
        !allowed(&resp),
        "a cached pass was reused after its input changed"
    );
    assert!(message(&resp).contains(reason), "{}", message(&resp));
}

/// An image signed with `k` behind a fault proxy.
async fn signed_behind_proxy(env: &Env, k: &TestKey) -> (FaultProxy, String) {
    let proxy = FaultProxy::start(env.addr()).await;
    let digest = env.push("team/app", "v1").await;
    env.sign("team/app", &digest, k).await;
    let image = format!("{}/team/app@{digest}", proxy.addr);
    (proxy, image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policys_key_data() {
    let env = Env::start();
    let (a, b) = (
        TestKey::generate(TestKeyKind::P256).unwrap(),
        TestKey::generate(TestKeyKind::P256).unwrap(),
    );
    let (proxy, image) = signed_behind_proxy(&env, &a).await;
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&a], ""),
        &Opts::for_registry(&proxy.addr),
    );
    cached_pass(&ev, &proxy, &image).await;
    // The same policy name, another key.
    ev.store.replace_source(
        "test",
        &files::parse_documents(&key_policy("p", "**", &[&b], "")).unwrap(),
    );
    proxy.clear();
    evaluated_afresh(
        &ev,
        &image,
        "signature does not verify with key authority-0",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_refs_secret_content() {
    use k8s_openapi::api::core::v1::Secret;
    let env = Env::start();
    let (a, b) = (
        TestKey::generate(TestKeyKind::P256).unwrap(),
        TestKey::generate(TestKeyKind::P256).unwrap(),
    );
    let (proxy, image) = signed_behind_proxy(&env, &a).await;
    let (ev, _) = pipeline("", &Opts::for_registry(&proxy.addr));
    let object: ::kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
        "metadata": {"name": "p"},
        "spec": {"images": [{"glob": "**"}], "authorities": [{"key": {"secretRef": {"name": "release-key"}}}]}
    }))
    .unwrap();
    // What the cluster watch does when the Secret changes: the policy is
    // defined again from the object and the Secret's content.
    let define = |key: &TestKey| {
        let secret = Secret {
            data: Some(
                [(
                    "cosign.pub".to_string(),
                    k8s_openapi::ByteString(key.public_pem.clone().into_bytes()),
                )]
                .into(),
            ),
            ..Secret::default()
        };
        let secrets = BTreeMap::from([("release-key".to_string(), secret)]);
        vec![sigil::cluster::definition(
            &object,
            &secrets,
            "sigil-system",
            &["api.github.com".to_string()],
        )]
    };
    ev.store.replace_source(sigil::cluster::SOURCE, &define(&a));
    cached_pass(&ev, &proxy, &image).await;
    ev.store.replace_source(sigil::cluster::SOURCE, &define(&b));
    proxy.clear();
    evaluated_afresh(
        &ev,
        &image,
        "signature does not verify with key authority-0",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_roots_content() {
    const ISSUER: &str = "https://accounts.acme.test";
    const SUBJECT: &str = "release@acme.test";
    let env = Env::start();
    let proxy = FaultProxy::start(env.addr()).await;
    let (first, second) = (
        OfflineSigstore::new().unwrap(),
        OfflineSigstore::new().unwrap(),
    );
    let digest = env.push("team/app", "v1").await;
    let cert = first
        .issue(&CertRequest::new(San::Email(SUBJECT.into()), ISSUER))
        .unwrap();
    let sig = first
        .sign_keyless(
            &cert,
            &format!("{}/team/app", env.addr()),
            &digest,
            SystemTime::now() - Duration::from_secs(5),
            SetMode::Valid,
        )
        .unwrap();
    attach_signatures(&env.client, env.addr(), "team/app", &digest, &[sig])
        .await
        .unwrap();
    let image = format!("{}/team/app@{digest}", proxy.addr);
    let trust = Arc::new(TrustStore::public_good());
    trust.set(
        "corp",
        TrustMaterial::from_json("corp", &first.trusted_root_json(None)),
    );
    let mut opts = Opts::for_registry(&proxy.addr);
    opts.trust = Some(trust.clone());
    let policy = format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\nspec:\n  images:\n    - glob: \"**\"\n  authorities:\n    - keyless:\n        trustRootRef: corp\n        identities:\n          - issuer: {ISSUER}\n            subject: {SUBJECT}\n"
    );
    let (ev, _) = pipeline(&policy, &opts);
    cached_pass(&ev, &proxy, &image).await;
    // The TrustRoot `corp` now holds another Sigstore's keys.
    trust.set(
        "corp",
        TrustMaterial::from_json("corp", &second.trusted_root_json(None)),
    );
    proxy.clear();
    evaluated_afresh(&ev, &image, "Rekor SET does not verify").await;
}

/// Pull credentials as the cluster would give them, changeable.
struct Changeable(Mutex<Credentials>);

#[async_trait::async_trait]
impl CredentialSource for Changeable {
    async fn credentials(
        &self,
        _namespace: &str,
        _names: &[String],
        _service_account: Option<&str>,
    ) -> Result<Credentials, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_credentials() {
    let private = private_registry();
    let reg = &private.registry;
    let client = sigil_testkit::plain_http_client(std::slice::from_ref(&reg.addr));
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let digest = sigil_testkit::push_image_as(
        &client,
        &Reference::with_tag(reg.addr.clone(), "private/app".into(), "v1".into()),
        &private.auth,
    )
    .await
    .unwrap();
    let sig =
        sigil_testkit::SignatureToAttach::new(&k, &format!("{}/private/app", reg.addr), &digest);
    sigil_testkit::attach_signatures_as(
        &client,
        &reg.addr,
        "private/app",
        &digest,
        &[sig],
        &private.auth,
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(&reg.addr).await;
    let image = format!("{}/private/app@{digest}", proxy.addr);
    let creds = |password: &str| {
        Credentials::from_auths(HashMap::from([(
            proxy.addr.clone(),
            RegistryAuth::Basic("alice".into(), password.into()),
        )]))
    };
    let source = Arc::new(Changeable(Mutex::new(creds("s3cret"))));
    let (ev, _) = pipeline(
        &key_policy("p", "**", &[&k], ""),
        &Opts::for_registry(&proxy.addr),
    );
    let mut ev = Arc::try_unwrap(ev).ok().expect("one owner");
    ev.credentials = Some(source.clone());
    cached_pass(&ev, &proxy, &image).await;
    // Another namespace's, or rotated, credentials: another key.
    *source.0.lock().unwrap() = creds("rotated");
    // Reads are keyed by credentials too: the broken registry answers.
    evaluated_afresh(&ev, &image, "HTTP 503").await;
}
