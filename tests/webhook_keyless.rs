//! Keyless signatures through the webhook, against a real registry, with an
//! offline Sigstore built in the test (testkit::sigstore): a Fulcio-like CA
//! issuing short-lived certificates with the Fulcio extensions and an
//! embedded SCT, a Rekor key signing entry timestamps, a CT log key. Every
//! case asserts the decision and the message. Nothing reaches the internet.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use sigil::trust::types::TrustRootSpec;
use sigil::trust::{TrustMaterial, TrustStore};
use sigil_testkit::attach_signatures;
use sigil_testkit::sigstore::{CertRequest, IssuedCert, OfflineSigstore, San, SetMode};
use sigil_testkit::{SignatureToAttach, TestKey, TestKeyKind};

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Options whose default trust root is `sigstore`.
fn trusting(env: &Env, sigstore: &OfflineSigstore) -> Opts {
    let mut opts = Opts::for_registry(env.addr());
    let root = TrustMaterial::from_json("default", &sigstore.trusted_root_json(None)).unwrap();
    opts.trust = Some(Arc::new(TrustStore::new(root)));
    opts
}

/// A policy with one keyless authority; `identities` and `extra` are YAML
/// at the authority's indentation.
fn keyless_policy(
    name: &str,
    glob: &str,
    keyless_extra: &str,
    identities: &str,
    extra: &str,
) -> String {
    format!(
        "---\napiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: {name}\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n    - name: keyless\n      keyless:\n{keyless_extra}        identities:\n{identities}{extra}"
    )
}

fn exact(issuer: &str, subject: &str) -> String {
    format!("          - issuer: \"{issuer}\"\n            subject: \"{subject}\"\n")
}

/// Pushes an image and attaches `sigs`; returns the image reference.
async fn signed_image(
    env: &Env,
    repo: &str,
    sigs: impl FnOnce(&str, &str) -> Vec<SignatureToAttach>,
) -> String {
    let digest = env.push(repo, "v1").await;
    let full_repo = format!("{}/{repo}", env.addr());
    let s = sigs(&full_repo, &digest);
    attach_signatures(&env.client, env.addr(), repo, &digest, &s)
        .await
        .unwrap();
    format!("{}/{repo}:v1", env.addr())
}

/// `repo:v1` signed keyless by `cert` from `sigstore`, logged as `mode`
/// says, with a timestamp by `tsa`'s TSA `stamped` seconds ago when given.
async fn keyless_image(
    env: &Env,
    sigstore: &OfflineSigstore,
    cert: &IssuedCert,
    repo: &str,
    mode: SetMode,
    tsa: Option<(&OfflineSigstore, u64)>,
) -> String {
    signed_image(env, repo, |r, d| {
        let mut s = sigstore.sign_keyless(cert, r, d, ago(5), mode).unwrap();
        if let Some((tsa, stamped)) = tsa {
            tsa.timestamp_signature(&mut s, ago(stamped)).unwrap();
        }
        vec![s]
    })
    .await
}

async fn verdict(env: &Env, opts: &Opts, policy: &str, image: &str) -> (bool, String) {
    let _ = env;
    let (ev, _) = pipeline(policy, opts);
    let resp = review_pod(&ev, image).await;
    (allowed(&resp), message(&resp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_matched_exactly_or_by_anchored_regexp() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let opts = trusting(&env, &sigstore);
    let cert = sigstore
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB))
        .unwrap();
    let image = signed_image(&env, "acme/app", |repo, digest| {
        vec![sigstore
            .sign_keyless(&cert, repo, digest, ago(5), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let glob = format!("{}/acme/**", env.addr());

    // Right identity.
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "", &exact(GITHUB, WORKFLOW), ""),
        &image,
    )
    .await;
    assert!(ok, "{msg}");

    // Wrong subject: the message names the certificate's identity and the accepted ones.
    let other = "https://github.com/acme/other/.github/workflows/release.yml@refs/heads/main";
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "", &exact(GITHUB, other), ""),
        &image,
    )
    .await;
    assert!(!ok);
    assert!(
        msg.contains(&format!(
            "keyless: certificate identity {WORKFLOW} issued by {GITHUB} matches none of: {{subject {other}, issuer {GITHUB}}}"
        )),
        "{msg}"
    );
    assert!(msg.contains("fails policy \"p\""), "{msg}");

    // Wrong issuer.
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy(
            "p",
            &glob,
            "",
            &exact("https://accounts.google.com", WORKFLOW),
            "",
        ),
        &image,
    )
    .await;
    assert!(!ok);
    assert!(
        msg.contains(&format!(
            "certificate identity {WORKFLOW} issued by {GITHUB} matches none of"
        )),
        "{msg}"
    );

    // Regular expressions match the whole string.
    let re = |issuer: &str, subject: &str| {
        format!(
            "          - issuerRegExp: \"{issuer}\"\n            subjectRegExp: \"{subject}\"\n"
        )
    };
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy(
            "p",
            &glob,
            "",
            &re(
                "https://token\\\\.actions\\\\..*",
                "https://github\\\\.com/acme/.*",
            ),
            "",
        ),
        &image,
    )
    .await;
    assert!(ok, "{msg}");
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "", &re(".*", "acme/app"), ""),
        &image,
    )
    .await;
    assert!(!ok, "a regexp must match the whole subject");
    assert!(msg.contains("subjectRegExp acme/app"), "{msg}");
    // Several identities: any one matching is enough.
    let both = exact(GITHUB, other) + &exact(GITHUB, WORKFLOW);
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "", &both, ""),
        &image,
    )
    .await;
    assert!(ok, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_validity_is_judged_at_the_integrated_time() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let opts = trusting(&env, &sigstore);
    let glob = format!("{}/acme/**", env.addr());
    let policy = keyless_policy("p", &glob, "", &exact(GITHUB, WORKFLOW), "");

    // A 10-minute certificate that expired an hour ago, logged while valid.
    let mut req = CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB);
    req.not_before = ago(3900);
    req.not_after = ago(3300);
    let expired = sigstore.issue(&req).unwrap();
    let image = signed_image(&env, "acme/old", |repo, digest| {
        vec![sigstore
            .sign_keyless(&expired, repo, digest, ago(3600), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &image).await;
    assert!(ok, "expired now but valid when logged: {msg}");

    // The same certificate, logged after it expired.
    let image = signed_image(&env, "acme/late", |repo, digest| {
        vec![sigstore
            .sign_keyless(&expired, repo, digest, ago(60), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &image).await;
    assert!(!ok);
    assert!(
        msg.contains("keyless: certificate does not verify"),
        "{msg}"
    );
    assert!(msg.contains("Expired"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_entry_timestamps_must_verify_and_match_the_signature() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let opts = trusting(&env, &sigstore);
    let glob = format!("{}/acme/**", env.addr());
    let policy = keyless_policy("p", &glob, "", &exact(GITHUB, WORKFLOW), "");
    let cert = sigstore
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB))
        .unwrap();
    for (repo, mode, expected) in [
        (
            "acme/forged",
            SetMode::Forged,
            "keyless: Rekor SET does not verify",
        ),
        (
            "acme/unlogged",
            SetMode::Missing,
            "keyless: signature has no Rekor entry (dev.sigstore.cosign/bundle)",
        ),
        (
            "acme/swapped",
            SetMode::OtherSignature,
            "keyless: Rekor entry is not this signature",
        ),
    ] {
        let image = signed_image(&env, repo, |r, d| {
            vec![sigstore.sign_keyless(&cert, r, d, ago(5), mode).unwrap()]
        })
        .await;
        let (ok, msg) = verdict(&env, &opts, &policy, &image).await;
        assert!(!ok, "{mode:?}");
        assert!(msg.contains(expected), "{mode:?}: {msg}");
    }

    // A Rekor key trusted only for an earlier window does not vouch for a
    // signature logged now.
    let mut windowed = Opts::for_registry(env.addr());
    let root = sigstore.trusted_root_json(Some((ago(7200), ago(3600))));
    windowed.trust = Some(Arc::new(TrustStore::new(
        TrustMaterial::from_json("default", &root).unwrap(),
    )));
    let image = signed_image(&env, "acme/window", |r, d| {
        vec![sigstore
            .sign_keyless(&cert, r, d, ago(5), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let (ok, msg) = verdict(&env, &windowed, &policy, &image).await;
    assert!(!ok);
    assert!(msg.contains("keyless: Rekor SET does not verify"), "{msg}");
    assert!(msg.contains("No log key valid at integrated time"), "{msg}");
    // Inside the window the same key is fine.
    let (ok, msg) = verdict(&env, &opts, &policy, &image).await;
    assert!(ok, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scts_and_certificate_authorities_are_checked() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let opts = trusting(&env, &sigstore);
    let glob = format!("{}/acme/**", env.addr());
    let policy = keyless_policy("p", &glob, "", &exact(GITHUB, WORKFLOW), "");

    // No SCT: denied, unless insecureIgnoreSCT.
    let mut req = CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB);
    req.with_sct = false;
    let no_sct = sigstore.issue(&req).unwrap();
    let image = signed_image(&env, "acme/nosct", |r, d| {
        vec![sigstore
            .sign_keyless(&no_sct, r, d, ago(5), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &image).await;
    assert!(!ok);
    assert!(msg.contains("keyless: SCT does not verify"), "{msg}");
    let lax = keyless_policy(
        "p",
        &glob,
        "        insecureIgnoreSCT: true\n",
        &exact(GITHUB, WORKFLOW),
        "",
    );
    let (ok, msg) = verdict(&env, &opts, &lax, &image).await;
    assert!(ok, "{msg}");

    // A certificate from a CA the trust root does not hold (its Rekor entry
    // is signed by the trusted Rekor key, so only the chain is wrong).
    let rogue = OfflineSigstore::with_ca_name("rogue fulcio").unwrap();
    let rogue_cert = rogue
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB))
        .unwrap();
    let image = signed_image(&env, "acme/rogue", |r, d| {
        let mut s = rogue
            .sign_keyless(&rogue_cert, r, d, ago(5), SetMode::Missing)
            .unwrap();
        let bundle = sigstore
            .rekor_bundle(
                &s.payload,
                &s.signature_b64,
                &rogue_cert.pem(),
                ago(5),
                SetMode::Valid,
            )
            .unwrap();
        s.annotations
            .insert(sigil::verify::keyless::BUNDLE_ANNOTATION.into(), bundle);
        vec![s]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &image).await;
    assert!(!ok);
    assert!(
        msg.contains("keyless: certificate does not verify"),
        "{msg}"
    );

    // The embedded public-good root does not trust the offline CA either.
    let mut public = Opts::for_registry(env.addr());
    public.trust = None;
    let image_ok = signed_image(&env, "acme/ok", |r, d| {
        let c = sigstore
            .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB))
            .unwrap();
        vec![sigstore
            .sign_keyless(&c, r, d, ago(5), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let (ok, msg) = verdict(&env, &public, &policy, &image_ok).await;
    assert!(!ok);
    assert!(msg.contains("keyless:"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_root_ref_selects_a_trust_root_resource() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    // Default: the embedded public-good root; "offline" from a TrustRoot spec.
    let store = Arc::new(TrustStore::public_good());
    let spec: TrustRootSpec = serde_json::from_value(sigstore.trust_root_spec()).unwrap();
    store.set("offline", TrustMaterial::from_spec("offline", &spec));
    let bad: TrustRootSpec =
        serde_json::from_value(serde_json::json!({"sigstoreKeys": {"certificateAuthorities": [{"certChain": "bm90IHBlbQ=="}]}}))
            .unwrap();
    store.set("broken", TrustMaterial::from_spec("broken", &bad));
    let mut opts = Opts::for_registry(env.addr());
    opts.trust = Some(store);

    let cert = sigstore
        .issue(&CertRequest::new(
            San::Email("dev@acme.test".into()),
            "https://accounts.acme.test",
        ))
        .unwrap();
    let image = signed_image(&env, "acme/app", |r, d| {
        vec![sigstore
            .sign_keyless(&cert, r, d, ago(5), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let glob = format!("{}/acme/**", env.addr());
    let ids = exact("https://accounts.acme.test", "dev@acme.test");

    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "        trustRootRef: offline\n", &ids, ""),
        &image,
    )
    .await;
    assert!(ok, "{msg}");
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "", &ids, ""),
        &image,
    )
    .await;
    assert!(
        !ok,
        "the default root does not trust the offline CA or Rekor key"
    );
    assert!(
        msg.contains("keyless: Rekor SET does not verify: No log key valid at integrated time"),
        "{msg}"
    );
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "        trustRootRef: missing\n", &ids, ""),
        &image,
    )
    .await;
    assert!(!ok);
    assert!(
        msg.contains("keyless: TrustRoot missing does not exist"),
        "{msg}"
    );
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "        trustRootRef: broken\n", &ids, ""),
        &image,
    )
    .await;
    assert!(!ok);
    assert!(
        msg.contains("keyless: TrustRoot broken is not ready: spec.sigstoreKeys.certificateAuthorities[0].certChain"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_cert_authorities_and_key_authorities_with_ctlog() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let opts = trusting(&env, &sigstore);
    let glob = format!("{}/acme/**", env.addr());

    // A private CA: no SCT, no Rekor entry; the chain is what counts.
    let private = OfflineSigstore::with_ca_name("acme private ca").unwrap();
    let mut req = CertRequest::new(San::Email("build@acme.test".into()), "https://ci.acme.test");
    req.with_sct = false;
    let cert = private.issue(&req).unwrap();
    let image = signed_image(&env, "acme/private", |r, d| {
        vec![private
            .sign_keyless(&cert, r, d, ago(5), SetMode::Missing)
            .unwrap()]
    })
    .await;
    let ca_yaml = |pem: &str| {
        let body: String = pem.lines().map(|l| format!("            {l}\n")).collect();
        format!("        ca-cert:\n          data: |\n{body}")
    };
    let ids = exact("https://ci.acme.test", "build@acme.test");
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, &ca_yaml(&private.ca_pem()), &ids, ""),
        &image,
    )
    .await;
    assert!(ok, "{msg}");
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, &ca_yaml(&sigstore.ca_pem()), &ids, ""),
        &image,
    )
    .await;
    assert!(!ok);
    assert!(
        msg.contains("keyless: certificate does not chain to the ca-cert authority"),
        "{msg}"
    );
    // ctlog on a ca-cert authority: a Rekor entry becomes required.
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy(
            "p",
            &glob,
            &ca_yaml(&private.ca_pem()),
            &ids,
            "      ctlog:\n        url: https://rekor.test\n",
        ),
        &image,
    )
    .await;
    assert!(!ok);
    assert!(msg.contains("which ctlog requires"), "{msg}");

    // A key authority with ctlog: the signature's SET must verify.
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let key_policy_ctlog = key_policy("k", &glob, &[&k], "").replace(
        "    - key:\n",
        "    - ctlog:\n        url: https://rekor.test\n      key:\n",
    );
    let unlogged = signed_image(&env, "acme/key-unlogged", |r, d| {
        vec![SignatureToAttach::new(&k, r, d)]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &key_policy_ctlog, &unlogged).await;
    assert!(!ok);
    assert!(
        msg.contains(
            "signature has no Rekor entry (dev.sigstore.cosign/bundle), which ctlog requires"
        ),
        "{msg}"
    );
    // Without ctlog the same signature is enough.
    let (ok, msg) = verdict(&env, &opts, &key_policy("k", &glob, &[&k], ""), &unlogged).await;
    assert!(ok, "{msg}");
    let logged = signed_image(&env, "acme/key-logged", |r, d| {
        let mut s = SignatureToAttach::new(&k, r, d);
        sigstore
            .log_key_signature(&mut s, &k.public_pem, SetMode::Valid)
            .unwrap();
        vec![s]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &key_policy_ctlog, &logged).await;
    assert!(ok, "{msg}");
    let forged = signed_image(&env, "acme/key-forged", |r, d| {
        let mut s = SignatureToAttach::new(&k, r, d);
        sigstore
            .log_key_signature(&mut s, &k.public_pem, SetMode::Forged)
            .unwrap();
        vec![s]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &key_policy_ctlog, &forged).await;
    assert!(!ok);
    assert!(msg.contains("Rekor SET does not verify"), "{msg}");
}

/// `sigil check` with `--trust-root` and with a `TrustRoot` document in the
/// policy directory; the JSON output exposes the signer, including the
/// GitHub workflow extensions of its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_uses_trust_root_files_and_reports_the_signer() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let mut req = CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB);
    req.github = Some([
        "push".into(),
        "0123456789abcdef0123456789abcdef01234567".into(),
        "release".into(),
        "acme/app".into(),
        "refs/heads/main".into(),
    ]);
    let cert = sigstore.issue(&req).unwrap();
    let image = signed_image(&env, "acme/app", |r, d| {
        vec![sigstore
            .sign_keyless(&cert, r, d, ago(5), SetMode::Valid)
            .unwrap()]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let glob = format!("{}/acme/**", env.addr());
    std::fs::write(
        dir.path().join("policy.yaml"),
        keyless_policy("p", &glob, "", &exact(GITHUB, WORKFLOW), ""),
    )
    .unwrap();
    let root_file = dir.path().join("trusted_root.json");
    std::fs::write(&root_file, sigstore.trusted_root_json(None)).unwrap();

    let check = |extra: &[&str], policy_dir: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args([
                "check",
                "--output",
                "json",
                "--insecure-registry",
                env.addr(),
                "--image",
                &image,
            ])
            .arg("--policy-dir")
            .arg(policy_dir)
            .args(extra)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // The embedded public-good root does not trust the offline instance.
    let (code, v, _) = check(&[], dir.path());
    assert_eq!(code, Some(1), "{v}");
    // --trust-root replaces it.
    let (code, v, err) = check(&["--trust-root", root_file.to_str().unwrap()], dir.path());
    assert_eq!(code, Some(0), "{v} {err}");
    let signer = &v["images"][0]["policies"][0]["authorities"][0]["signer"];
    assert_eq!(signer["subject"], WORKFLOW);
    assert_eq!(signer["issuer"], GITHUB);
    assert_eq!(signer["githubWorkflow"]["trigger"], "push");
    assert_eq!(
        signer["githubWorkflow"]["sha"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(signer["githubWorkflow"]["name"], "release");
    assert_eq!(signer["githubWorkflow"]["repository"], "acme/app");
    assert_eq!(signer["githubWorkflow"]["ref"], "refs/heads/main");
    assert!(signer["integratedTime"].as_str().is_some(), "{signer}");
    // A bad --trust-root is a configuration error.
    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    let (code, _, err) = check(
        &[
            "--trust-root",
            dir.path().join("bad.json").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("trusted root default is unusable"), "{err}");

    // A TrustRoot document beside the policy, selected by trustRootRef.
    let dir2 = tempfile::tempdir().unwrap();
    let mut doc = serde_json::json!({
        "apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "offline"},
    });
    doc["spec"] = sigstore.trust_root_spec();
    std::fs::write(
        dir2.path().join("policy.yaml"),
        format!(
            "{}---\n{}\n",
            keyless_policy(
                "p",
                &glob,
                "        trustRootRef: offline\n",
                &exact(GITHUB, WORKFLOW),
                ""
            ),
            doc
        ),
    )
    .unwrap();
    let (code, v, err) = check(&[], dir2.path());
    assert_eq!(code, Some(0), "{v} {err}");
}

/// `rfc3161timestamp`: the signature must carry an RFC 3161 timestamp from a
/// TSA of the trust root (cosign's `dev.sigstore.cosign/rfc3161timestamp`
/// annotation), and the certificate must be valid at its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3161_timestamps_are_required_and_verified() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let opts = trusting(&env, &sigstore);
    let glob = format!("{}/acme/**", env.addr());
    let tsa = "      rfc3161timestamp: {}\n";
    let policy = keyless_policy("p", &glob, "", &exact(GITHUB, WORKFLOW), tsa);
    let cert = sigstore
        .issue(&CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB))
        .unwrap();

    let stamped = keyless_image(
        &env,
        &sigstore,
        &cert,
        "acme/stamped",
        SetMode::Valid,
        Some((&sigstore, 5)),
    )
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &stamped).await;
    assert!(ok, "{msg}");

    let unstamped = keyless_image(
        &env,
        &sigstore,
        &cert,
        "acme/unstamped",
        SetMode::Valid,
        None,
    )
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &unstamped).await;
    assert!(!ok);
    assert!(msg.contains("keyless: signature has no RFC 3161 timestamp (dev.sigstore.cosign/rfc3161timestamp), which rfc3161timestamp requires"), "{msg}");
    // Without the field, the same signature is enough.
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, "", &exact(GITHUB, WORKFLOW), ""),
        &unstamped,
    )
    .await;
    assert!(ok, "{msg}");

    // A timestamp adds to the Rekor entry, never replaces it, against a
    // root that has a log (as policy-controller): stamped but not logged
    // is denied. (A root with no log at all, GitHub's private instance, is
    // tests/policy_library.rs.)
    let unlogged = keyless_image(
        &env,
        &sigstore,
        &cert,
        "acme/stamped-unlogged",
        SetMode::Missing,
        Some((&sigstore, 5)),
    )
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &unlogged).await;
    assert!(!ok, "a TSA timestamp stood in for Rekor: {msg}");
    assert!(msg.contains("signature has no Rekor entry"), "{msg}");

    // A timestamp from a TSA the trust root does not hold.
    let rogue = OfflineSigstore::with_ca_name("rogue").unwrap();
    let rogue_stamp = keyless_image(
        &env,
        &sigstore,
        &cert,
        "acme/rogue-tsa",
        SetMode::Valid,
        Some((&rogue, 5)),
    )
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &rogue_stamp).await;
    assert!(!ok);
    // Refused before its signature is checked: it embeds the rogue TSA's
    // certificate, which is not the trust root's.
    assert!(
        msg.contains(
            "keyless: the RFC 3161 timestamp embeds a certificate that is not the trusted TSA's"
        ),
        "{msg}"
    );

    // A timestamp from before the certificate was valid.
    let early = keyless_image(
        &env,
        &sigstore,
        &cert,
        "acme/early",
        SetMode::Valid,
        Some((&sigstore, 7200)),
    )
    .await;
    let (ok, msg) = verdict(&env, &opts, &policy, &early).await;
    assert!(!ok);
    assert!(
        msg.contains("keyless: certificate does not verify"),
        "{msg}"
    );

    // Key authorities: the timestamp is the only evidence asked for.
    let k = TestKey::generate(TestKeyKind::P256).unwrap();
    let key_tsa = key_policy("k", &glob, &[&k], "")
        .replace("    - key:\n", "    - rfc3161timestamp: {}\n      key:\n");
    let key_stamped = signed_image(&env, "acme/key-stamped", |r, d| {
        let mut s = SignatureToAttach::new(&k, r, d);
        sigstore.timestamp_signature(&mut s, ago(5)).unwrap();
        vec![s]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &key_tsa, &key_stamped).await;
    assert!(ok, "{msg}");
    assert!(!msg.contains("deny"), "{msg}");
    let key_plain = signed_image(&env, "acme/key-plain", |r, d| {
        vec![SignatureToAttach::new(&k, r, d)]
    })
    .await;
    let (ok, msg) = verdict(&env, &opts, &key_tsa, &key_plain).await;
    assert!(!ok);
    assert!(msg.contains("which rfc3161timestamp requires"), "{msg}");

    // A private CA whose certificate has expired, stamped while it was valid.
    let private = OfflineSigstore::with_ca_name("acme private ca").unwrap();
    let mut req = CertRequest::new(San::Email("build@acme.test".into()), "https://ci.acme.test");
    req.with_sct = false;
    req.not_before = ago(3900);
    req.not_after = ago(3300);
    let old = private.issue(&req).unwrap();
    let old_image = signed_image(&env, "acme/private-old", |r, d| {
        let mut s = private
            .sign_keyless(&old, r, d, ago(3600), SetMode::Missing)
            .unwrap();
        sigstore.timestamp_signature(&mut s, ago(3600)).unwrap();
        vec![s]
    })
    .await;
    let body: String = private
        .ca_pem()
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect();
    let ca = format!("        ca-cert:\n          data: |\n{body}");
    let ids = exact("https://ci.acme.test", "build@acme.test");
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, &ca, &ids, tsa),
        &old_image,
    )
    .await;
    assert!(ok, "valid when stamped: {msg}");
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, &ca, &ids, ""),
        &old_image,
    )
    .await;
    assert!(
        ok,
        "without rfc3161timestamp a timestamp present is still verified and used: {msg}"
    );
    // Without any timestamp the expired certificate is judged now, and fails.
    let undated = signed_image(&env, "acme/private-undated", |r, d| {
        vec![private
            .sign_keyless(&old, r, d, ago(3600), SetMode::Missing)
            .unwrap()]
    })
    .await;
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy("p", &glob, &ca, &ids, ""),
        &undated,
    )
    .await;
    assert!(!ok);
    assert!(
        msg.contains("certificate does not chain to the ca-cert authority: CertExpired"),
        "{msg}"
    );
}

/// Fulcio's workflow claims in `keyless.identities[]`: every claim an
/// identity names must hold, exactly or by a whole-string pattern; one that
/// differs (or is absent) is denied naming the claim, the wanted and the
/// found value; the claims checked are in the audit record and in
/// `sigil check --output json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_claims_must_all_hold() {
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let opts = trusting(&env, &sigstore);
    let glob = format!("{}/acme/**", env.addr());
    let signed_by = |repo: &'static str, req: CertRequest| {
        let cert = sigstore.issue(&req).unwrap();
        let sigstore = &sigstore;
        let env = &env;
        async move {
            signed_image(env, repo, |r, d| {
                vec![sigstore
                    .sign_keyless(&cert, r, d, ago(5), SetMode::Valid)
                    .unwrap()]
            })
            .await
        }
    };
    let main = signed_by(
        "acme/main",
        CertRequest::github_actions("acme/app", "refs/heads/main", "github-hosted", "push"),
    )
    .await;
    let dev = signed_by(
        "acme/dev",
        CertRequest::github_actions("acme/app", "refs/heads/dev", "github-hosted", "push"),
    )
    .await;
    let self_hosted = signed_by(
        "acme/self-hosted",
        CertRequest::github_actions("acme/app", "refs/heads/main", "self-hosted", "push"),
    )
    .await;
    let fork = signed_by(
        "acme/fork",
        CertRequest::github_actions("evil/app", "refs/heads/main", "github-hosted", "push"),
    )
    .await;
    // The workflow identity by pattern (any repository's release.yml), the
    // repository, ref and runner by claim.
    let identity = format!(
        "          - issuer: {GITHUB}\n            subjectRegExp: \"https://github.com/.*/.github/workflows/release.yml@.*\"\n            sourceRepositoryURI: https://github.com/acme/app\n            sourceRepositoryRefRegExp: \"refs/(heads/main|tags/v.*)\"\n            runnerEnvironment: github-hosted\n            githubWorkflowRepository: acme/app\n"
    );
    let policy = keyless_policy("p", &glob, "", &identity, "");
    let (ok, msg) = verdict(&env, &opts, &policy, &main).await;
    assert!(ok, "{msg}");
    for (image, says) in [
        (&dev, "sourceRepositoryRef is refs/heads/dev, wanted one matching refs/(heads/main|tags/v.*)".to_string()),
        (&self_hosted, "runnerEnvironment is self-hosted, wanted github-hosted".to_string()),
        (&fork, "sourceRepositoryURI is https://github.com/evil/app, wanted https://github.com/acme/app, githubWorkflowRepository is evil/app, wanted acme/app".to_string()),
    ] {
        let (ok, msg) = verdict(&env, &opts, &policy, image).await;
        assert!(!ok, "{image} admitted");
        assert!(
            msg.contains("keyless: certificate of https://github.com/")
                && msg.contains(&format!("issued by {GITHUB}: {says}")),
            "{msg}"
        );
    }
    // A claim the certificate does not carry is a difference too.
    let (ok, msg) = verdict(
        &env,
        &opts,
        &keyless_policy(
            "p",
            &glob,
            "",
            &format!(
                "{}            buildTrigger: release\n",
                exact(GITHUB, WORKFLOW)
            ),
            "",
        ),
        &signed_by(
            "acme/no-claims",
            CertRequest::new(San::Uri(WORKFLOW.into()), GITHUB),
        )
        .await,
    )
    .await;
    assert!(!ok);
    assert!(
        msg.contains(
            "buildTrigger is absent from the certificate (1.3.6.1.4.1.57264.1.20), wanted release"
        ),
        "{msg}"
    );
    // The claims checked travel with the verdict: the audit record of a
    // warn-mode denial names them, and so does a pass's signer.
    let (ev, audit) = pipeline(
        &keyless_policy("p", &glob, "", &identity, "  mode: warn\n"),
        &opts,
    );
    let resp = review_pod(&ev, &dev).await;
    assert!(allowed(&resp));
    let records = audit.records();
    let record = serde_json::to_value(records.last().unwrap()).unwrap();
    assert_eq!(record["decision"], "warned");
    assert!(
        record["reasons"][0]
            .as_str()
            .unwrap()
            .contains("sourceRepositoryRef is refs/heads/dev"),
        "{record}"
    );
    let eval = ev
        .evaluate(
            &sigil::audit::RequestContext::default(),
            vec![sigil::workload::ImageUse {
                field: "spec.containers[0].image".into(),
                reference: main.clone(),
                pointer: String::new(),
            }],
        )
        .await;
    let signer =
        serde_json::to_value(eval.reports[0].policies[0].authorities[0].signer().unwrap()).unwrap();
    assert_eq!(
        signer["claims"],
        serde_json::json!({
            "sourceRepositoryURI": "https://github.com/acme/app",
            "sourceRepositoryRef": "refs/heads/main",
            "runnerEnvironment": "github-hosted",
            "githubWorkflowRepository": "acme/app",
        })
    );
}

/// `sigil verify-bundle` takes cosign's `--certificate-github-workflow-*`
/// flags and the same claims by their Fulcio names; a claim that differs
/// is a rejection naming it, the wanted and the found value.
#[test]
fn verify_bundle_checks_workflow_claims() {
    use sigil_testkit::sigstore::{BundleSigner, ProofMode};
    let sigstore = OfflineSigstore::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, sigstore.trusted_root_json(None)).unwrap();
    let artifact = dir.path().join("a.txt");
    std::fs::write(&artifact, b"release artifact\n").unwrap();
    let req = CertRequest::github_actions("acme/app", "refs/heads/main", "self-hosted", "push");
    let workflow = match &req.subject {
        San::Uri(u) => u.clone(),
        San::Email(e) => e.clone(),
    };
    let cert = sigstore.issue(&req).unwrap();
    let bundle = dir.path().join("a.sigstore.json");
    std::fs::write(
        &bundle,
        sigstore
            .message_bundle(
                BundleSigner::Certificate(&cert),
                b"release artifact\n",
                ProofMode::Valid,
            )
            .unwrap(),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .arg("verify-bundle")
            .arg("--bundle")
            .arg(&bundle)
            .args([
                "--certificate-identity",
                &workflow,
                "--certificate-oidc-issuer",
                GITHUB,
            ])
            .arg("--trusted-root")
            .arg(&root)
            .args(extra)
            .arg(&artifact)
            .output()
            .unwrap();
        (out.status.code(), common::kube::text(&out))
    };
    let (code, out) = run(&[
        "--certificate-github-workflow-repository",
        "acme/app",
        "--certificate-github-workflow-ref",
        "refs/heads/main",
        "--certificate-github-workflow-trigger",
        "push",
        "--certificate-source-repository-ref",
        "refs/heads/main",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("claims checked: githubWorkflowRef refs/heads/main, githubWorkflowRepository acme/app, githubWorkflowTrigger push, sourceRepositoryRef refs/heads/main"),
        "{out}"
    );
    // `gh attestation verify --deny-self-hosted-runners`, in Fulcio's name.
    let (code, out) = run(&["--certificate-runner-environment", "github-hosted"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("rejected: certificate of {workflow} issued by {GITHUB}: runnerEnvironment is self-hosted, wanted github-hosted")),
        "{out}"
    );
    let (code, out) = run(&["--certificate-github-workflow-sha", "deadbeef"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "githubWorkflowSha is 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c, wanted deadbeef"
        ),
        "{out}"
    );
}

/// `sigil verify-bundle` takes cosign's verify-blob flags with cosign's
/// meaning, so one command line works with both: identity and issuer as
/// regular expressions (a match anywhere, as Go's `MatchString`), and
/// `--insecure-ignore-sct`, `--insecure-ignore-tlog`,
/// `--use-signed-timestamps` for a deployment without CT or Rekor (GitHub's
/// instance for private repositories: a TSA timestamp instead). On a real
/// conformance bundle and on TSA-only bundles made here. (No real GitHub
/// private-repository bundle can be fetched on these machines.)
#[test]
fn verify_bundle_speaks_cosigns_flags() {
    use sigil_testkit::sigstore::{BundleSigner, ProofMode};
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .arg("verify-bundle")
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), common::kube::text(&out))
    };
    // A real bundle from the public-good instance (sigstore-conformance).
    let case = format!(
        "{}/tests/fixtures/conformance/bundle-verify/happy-path-v0.3",
        env!("CARGO_MANIFEST_DIR")
    );
    let artifact = format!(
        "{}/tests/fixtures/conformance/bundle-verify/a.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let real = |identity: &str, issuer: &str| {
        run(&[
            "--bundle",
            &format!("{case}/bundle.sigstore.json"),
            "--certificate-identity-regexp",
            identity,
            "--certificate-oidc-issuer-regexp",
            issuer,
            &artifact,
        ])
    };
    let (code, out) = real(
        r"^https://github\.com/sigstore-conformance/",
        "githubusercontent",
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = real(r"^https://github\.com/evil/", "githubusercontent");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rejected"), "{out}");
    let (code, out) = real("sigstore-conformance", "accounts\\.google\\.com");
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = real("(", "x");
    assert_eq!(
        code,
        Some(2),
        "an unparsable pattern is a usage error: {out}"
    );

    // GitHub's private-repository shape: no SCT, no Rekor, a TSA timestamp,
    // and a trust root without logs.
    let sigstore = OfflineSigstore::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, sigstore.trusted_root_json_without_logs()).unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"release artifact\n").unwrap();
    let mut req =
        CertRequest::github_actions("acme/app", "refs/heads/main", "github-hosted", "push");
    req.with_sct = false;
    let cert = sigstore.issue(&req).unwrap();
    let bundle = |mode: ProofMode, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            sigstore
                .message_bundle(
                    BundleSigner::Certificate(&cert),
                    b"release artifact\n",
                    mode,
                )
                .unwrap(),
        )
        .unwrap();
        path
    };
    let stamped = bundle(ProofMode::Timestamped, "stamped.json");
    let bare = bundle(ProofMode::Missing, "bare.json");
    let tsa_only = |b: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "--bundle",
            b.to_str().unwrap(),
            "--certificate-identity-regexp",
            "^https://github.com/acme/app/",
            "--certificate-oidc-issuer",
            GITHUB,
            "--trusted-root",
            root.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        run(&args)
    };
    // Without the flags: SCT and log are required, as cosign does.
    let (code, out) = tsa_only(&stamped, &[]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = tsa_only(&stamped, &["--insecure-ignore-tlog"]);
    assert_eq!(code, Some(1), "the SCT is still required: {out}");
    let flags = [
        "--insecure-ignore-sct",
        "--insecure-ignore-tlog",
        "--use-signed-timestamps",
    ];
    let (code, out) = tsa_only(&stamped, &flags);
    assert_eq!(code, Some(0), "{out}");
    // Nothing dates an unlogged, unstamped signature.
    let (code, out) = tsa_only(&bare, &flags[..2]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("nothing dates the signature"), "{out}");
    let (code, out) = tsa_only(&bare, &flags);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("which --use-signed-timestamps requires"),
        "{out}"
    );
}
