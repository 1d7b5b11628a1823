//! The promise table's enforced cells (`src/policy/promises.rs`), proven
//! layout by layout: for each option, evidence that meets it is admitted
//! and evidence that does not is denied with the reason, in every layout
//! the table marks ✓ — cosign's `.sig` and `.att` tags, cosign's OCI 1.1
//! signature, Sigstore bundle referrers, BuildKit's attestations inside a
//! signed index, and bundles listed by GitHub's attestation API (a test
//! server keeping GitHub's documented contract; no real GitHub is
//! reachable here). Signatures are made here with the testkit's Sigstore
//! (CA, Rekor, CT log, TSA), the registry is Debian's docker-registry.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::github_api::{self as api, Answer};
use common::*;
use serde_json::{json, Value};
use sigil::trust::{TrustMaterial, TrustStore};
use sigil_testkit::buildkit::{push_buildkit_index, InIndexStatement, PlatformSpec};
use sigil_testkit::sigstore::{
    push_referrer_in, BundleSigner, CertRequest, IssuedCert, OfflineSigstore, ProofMode, San,
    SetMode,
};
use sigil_testkit::{
    attach_attestations_at, attach_signatures_at, in_toto_statement, AttestationToAttach,
    SignatureToAttach, TestKey, TestKeyKind,
};

const SLSA1: &str = "https://slsa.dev/provenance/v1";
const SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The layouts of the table's Sigstore columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L {
    Sig,
    Att,
    Oci11,
    Bundle,
    Buildkit,
    Github,
}

const ALL: [L; 6] = [L::Sig, L::Att, L::Oci11, L::Bundle, L::Buildkit, L::Github];
/// The layouts a key authority reads (GitHub's API is keyless only).
const KEY_LAYOUTS: [L; 5] = [L::Sig, L::Att, L::Oci11, L::Bundle, L::Buildkit];

/// Who signs.
#[derive(Clone, Copy)]
enum Who<'a> {
    Key(&'a TestKey),
    Cert(&'a IssuedCert),
}

/// What is published: a signer, the Sigstore instance that logs and
/// stamps for it, whether it is logged and stamped.
#[derive(Clone, Copy)]
struct Ev<'a> {
    who: Who<'a>,
    by: &'a OfflineSigstore,
    tlog: bool,
    tsa: bool,
}

/// Where the signatures go: beside the image or in another repository,
/// under cosign's tags or a prefix of them.
#[derive(Clone, Copy, Default)]
struct Home<'a> {
    repo: Option<&'a str>,
    prefix: &'a str,
}

struct Lab {
    env: Env,
    /// The default trust root's instance.
    sigstore: OfflineSigstore,
    /// The instance of the TrustRoot named `other`.
    other: OfflineSigstore,
    api: api::Api,
    base: String,
    opts: Opts,
    _dir: tempfile::TempDir,
    n: AtomicUsize,
}

fn ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(5)
}

impl Lab {
    async fn new() -> Lab {
        let env = Env::start();
        let sigstore = OfflineSigstore::new().unwrap();
        let other = OfflineSigstore::with_ca_name("other").unwrap();
        let store = TrustStore::new(
            TrustMaterial::from_json("default", &sigstore.trusted_root_json(None)).unwrap(),
        );
        store.set(
            "other",
            TrustMaterial::from_json("other", &other.trusted_root_json(None)),
        );
        let dir = tempfile::tempdir().unwrap();
        let api = api::Api::default();
        let (base, ca) = api.serve(dir.path()).await;
        let mut opts = Opts::for_registry(env.addr());
        opts.trust = Some(Arc::new(store));
        opts.ca_files = vec![ca];
        Lab {
            env,
            sigstore,
            other,
            api,
            base,
            opts,
            _dir: dir,
            n: AtomicUsize::new(0),
        }
    }

    fn ev<'a>(&'a self, who: Who<'a>) -> Ev<'a> {
        Ev {
            who,
            by: &self.sigstore,
            tlog: true,
            tsa: false,
        }
    }

    /// A GitHub Actions certificate of `acme/app`'s release workflow (or
    /// of `repo`), started by `trigger`, from `by`.
    fn workflow_cert(&self, by: &OfflineSigstore, repo: &str, trigger: &str) -> IssuedCert {
        by.issue(&CertRequest::github_actions(
            repo,
            "refs/heads/main",
            "github-hosted",
            trigger,
        ))
        .unwrap()
    }

    /// Pushes a fresh image (a BuildKit index holding an SLSA v1
    /// Statement for `Buildkit`) and publishes `ev`'s evidence for it in
    /// layout `l`: a signature, or an SLSA v1 attestation where the layout
    /// carries attestations (`.att`, GitHub). Returns the image.
    async fn publish(&self, l: L, ev: Ev<'_>, home: Home<'_>) -> String {
        let repo = format!("acme/{l:?}-{}", self.n.fetch_add(1, Ordering::Relaxed)).to_lowercase();
        let full = format!("{}/{repo}", self.env.addr());
        let digest = match l {
            L::Buildkit => {
                push_buildkit_index(
                    &self.env.client,
                    &self.env.reference(&repo, "v1"),
                    &[PlatformSpec {
                        arch: "amd64".into(),
                        statements: vec![InIndexStatement::new(SLSA1, json!({"builder": "ci"}))],
                        refers_to: None,
                    }],
                )
                .await
                .unwrap()
                .digest
            }
            _ => self.env.push(&repo, "v1").await,
        };
        let sig_repo = home.repo.unwrap_or(&repo);
        let tag = |suffix: &str| format!("{}{}.{suffix}", home.prefix, digest.replace(':', "-"));
        let client = &self.env.client;
        let addr = self.env.addr();
        let anonymous = oci_client::secrets::RegistryAuth::Anonymous;
        let held_at = oci_client::Reference::with_digest(addr.into(), repo.clone(), digest.clone());
        match l {
            L::Sig | L::Buildkit => {
                let sig = signature(ev, &full, &digest);
                attach_signatures_at(client, addr, sig_repo, &tag("sig"), &[sig])
                    .await
                    .unwrap();
            }
            L::Att => {
                let statement = in_toto_statement(&full, &digest, SLSA1, json!({"builder": "ci"}));
                let att = attestation(ev, &statement);
                attach_attestations_at(client, addr, sig_repo, &tag("att"), &[att], &anonymous)
                    .await
                    .unwrap();
            }
            L::Oci11 => {
                let sig = signature(ev, &full, &digest);
                let mut ann = sig.annotations.clone();
                ann.insert(
                    sigil::verify::cosign::SIGNATURE_ANNOTATION.to_string(),
                    sig.signature_b64.clone(),
                );
                push_referrer_in(
                    client,
                    &held_at,
                    addr,
                    sig_repo,
                    (
                        sigil::verify::referrers::COSIGN_SIGNATURE_ARTIFACT,
                        sigil::verify::cosign::SIMPLE_SIGNING_MEDIA_TYPE,
                        sigil::verify::referrers::COSIGN_SIGNATURE_ARTIFACT,
                    ),
                    &sig.payload,
                    ann,
                    &anonymous,
                )
                .await
                .unwrap();
            }
            L::Bundle => {
                // What cosign v3 writes for `sign` and `attest`: two bundles.
                for (predicate_type, predicate) in
                    [(SIGN, json!({})), (SLSA1, json!({"builder": "ci"}))]
                {
                    let statement = in_toto_statement(&full, &digest, predicate_type, predicate);
                    push_referrer_in(
                        client,
                        &held_at,
                        addr,
                        sig_repo,
                        (BUNDLE_V03, BUNDLE_V03, BUNDLE_V03),
                        &bundle(ev, &statement),
                        BTreeMap::new(),
                        &anonymous,
                    )
                    .await
                    .unwrap();
                }
            }
            L::Github => {
                let statement = in_toto_statement(&full, &digest, SLSA1, json!({"builder": "ci"}));
                let b: Value = serde_json::from_slice(&bundle(ev, &statement)).unwrap();
                self.api
                    .answers
                    .lock()
                    .unwrap()
                    .insert(digest.clone(), Answer::Bundles(vec![b]));
            }
        }
        format!("{full}:v1")
    }

    /// `signer` (a key or keyless authority's own fields) in layout `l`,
    /// with `extra` fields merged in.
    fn authority(&self, l: L, signer: Value, extra: Value) -> Value {
        let mut a = signer;
        let attestations = json!([{"name": "provenance", "predicateType": SLSA1}]);
        match l {
            L::Sig => {}
            L::Att | L::Buildkit => a["attestations"] = attestations,
            L::Oci11 | L::Bundle => a["signatureFormat"] = json!("bundle"),
            L::Github => {
                a["source"] = json!([{"githubAttestations": {"owner": "acme", "url": self.base}}]);
                a["attestations"] = attestations;
            }
        }
        if let Value::Object(fields) = extra {
            for (k, v) in fields {
                a[k] = v;
            }
        }
        a
    }

    /// The decision on `image` under one policy holding `authority`:
    /// admitted, or denied with `says` in the message.
    async fn decide(&self, authority: &Value, image: &str) -> (bool, String) {
        let doc = json!({
            "apiVersion": "policy.sigstore.dev/v1beta1",
            "kind": "ClusterImagePolicy",
            "metadata": {"name": "promise"},
            "spec": {"images": [{"glob": format!("{}/acme/**", self.env.addr())}], "authorities": [authority]},
        });
        let mut defs =
            sigil::policy::files::parse_documents(&serde_json::to_string(&doc).unwrap()).unwrap();
        for d in &mut defs {
            for a in &mut d.spec.as_mut().unwrap().authorities {
                for s in &mut a.sources {
                    if let Some(g) = s.github_attestations.as_mut() {
                        // What the cluster watch reads from the token's Secret.
                        g.token = Some(api::TOKEN.to_string());
                    }
                }
            }
        }
        let (evaluator, _) = pipeline_of(&defs, &self.opts);
        let resp = review_pod(&evaluator, image).await;
        (allowed(&resp), message(&resp))
    }

    async fn admitted(&self, l: L, authority: &Value, image: &str) {
        let (ok, why) = self.decide(authority, image).await;
        assert!(
            ok,
            "{l:?}: {image} should be admitted under {authority}: {why}"
        );
    }

    async fn denied(&self, l: L, authority: &Value, image: &str, says: &str) {
        let (ok, why) = self.decide(authority, image).await;
        assert!(!ok, "{l:?}: {image} should be denied under {authority}");
        assert!(
            why.contains(says),
            "{l:?}: the deny of {image} should say {says:?}: {why}"
        );
    }
}

/// A signature over `full@digest` (simple signing), logged and stamped as `ev` says.
fn signature(ev: Ev<'_>, full: &str, digest: &str) -> SignatureToAttach {
    let mut sig = match ev.who {
        Who::Key(k) => {
            let mut s = SignatureToAttach::new(k, full, digest);
            if ev.tlog {
                ev.by
                    .log_key_signature(&mut s, &k.public_pem, SetMode::Valid)
                    .unwrap();
            }
            s
        }
        Who::Cert(c) => ev
            .by
            .sign_keyless(c, full, digest, ago(), set_mode(ev))
            .unwrap(),
    };
    if ev.tsa {
        ev.by.timestamp_signature(&mut sig, ago()).unwrap();
    }
    sig
}

fn set_mode(ev: Ev<'_>) -> SetMode {
    if ev.tlog {
        SetMode::Valid
    } else {
        SetMode::Missing
    }
}

/// A `.att` layer over `statement`, logged and stamped as `ev` says.
fn attestation(ev: Ev<'_>, statement: &[u8]) -> AttestationToAttach {
    let mut att = match ev.who {
        Who::Key(k) => {
            let mut a = AttestationToAttach::new(k, statement);
            if ev.tlog {
                ev.by
                    .log_key_attestation(&mut a, statement, &k.public_pem)
                    .unwrap();
            }
            a
        }
        Who::Cert(c) => ev
            .by
            .attest_keyless(c, statement, ago(), set_mode(ev))
            .unwrap(),
    };
    if ev.tsa {
        ev.by.timestamp_attestation(&mut att, ago()).unwrap();
    }
    att
}

/// A v0.3 bundle of `statement` in DSSE, logged and stamped as `ev` says.
fn bundle(ev: Ev<'_>, statement: &[u8]) -> Vec<u8> {
    let signer = match ev.who {
        Who::Key(k) => BundleSigner::Key(k),
        Who::Cert(c) => BundleSigner::Certificate(c),
    };
    let mode = match (ev.tlog, ev.tsa) {
        (true, false) => ProofMode::Valid,
        (true, true) => ProofMode::LoggedAndTimestamped,
        (false, true) => ProofMode::Timestamped,
        (false, false) => ProofMode::Missing,
    };
    ev.by.dsse_bundle(signer, statement, mode).unwrap()
}

fn key_authority(k: &TestKey) -> Value {
    json!({"key": {"data": k.public_pem}})
}

/// A keyless authority for `acme/app`'s release workflow on GitHub.
fn workflow_authority() -> Value {
    json!({"keyless": {"identities": [{
        "issuer": GITHUB_ISSUER,
        "subject": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
    }]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_in_every_layout() {
    let lab = Lab::new().await;
    let (k, other) = (key(), key());
    for l in KEY_LAYOUTS {
        let a = lab.authority(l, key_authority(&k), json!({}));
        let signed = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        lab.admitted(l, &a, &signed).await;
        let by_other = lab
            .publish(l, lab.ev(Who::Key(&other)), Home::default())
            .await;
        lab.denied(l, &a, &by_other, "does not verify").await;
    }
}

fn key() -> TestKey {
    TestKey::generate(TestKeyKind::P256).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_algorithm_in_every_layout() {
    let lab = Lab::new().await;
    let k = TestKey::generate(TestKeyKind::RsaSha512).unwrap();
    for l in [L::Sig, L::Att, L::Buildkit] {
        let image = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        let sha512 = lab.authority(
            l,
            json!({"key": {"data": k.public_pem, "hashAlgorithm": "sha512"}}),
            json!({}),
        );
        lab.admitted(l, &sha512, &image).await;
        // The same key read as sha256 (the default) is another promise.
        let sha256 = lab.authority(l, key_authority(&k), json!({}));
        lab.denied(l, &sha256, &image, "does not verify").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_identities_in_every_layout() {
    let lab = Lab::new().await;
    let ours = lab.workflow_cert(&lab.sigstore, "acme/app", "push");
    let theirs = lab.workflow_cert(&lab.sigstore, "evil/app", "push");
    for l in ALL {
        let a = lab.authority(l, workflow_authority(), json!({}));
        let image = lab
            .publish(l, lab.ev(Who::Cert(&ours)), Home::default())
            .await;
        lab.admitted(l, &a, &image).await;
        let image = lab
            .publish(l, lab.ev(Who::Cert(&theirs)), Home::default())
            .await;
        lab.denied(l, &a, &image, "evil/app").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_claims_in_every_layout() {
    let lab = Lab::new().await;
    let pushed = lab.workflow_cert(&lab.sigstore, "acme/app", "push");
    let pull_request = lab.workflow_cert(&lab.sigstore, "acme/app", "pull_request");
    for l in ALL {
        let a = lab.authority(
            l,
            json!({"keyless": {"identities": [{
                "issuer": GITHUB_ISSUER,
                "subjectRegExp": "^https://github\\.com/acme/.*$",
                "sourceRepositoryURI": "https://github.com/acme/app",
                "buildTrigger": "push",
            }]}}),
            json!({}),
        );
        let image = lab
            .publish(l, lab.ev(Who::Cert(&pushed)), Home::default())
            .await;
        lab.admitted(l, &a, &image).await;
        let image = lab
            .publish(l, lab.ev(Who::Cert(&pull_request)), Home::default())
            .await;
        lab.denied(l, &a, &image, "pull_request").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_cert_in_every_layout() {
    let lab = Lab::new().await;
    let private = OfflineSigstore::with_ca_name("private ca").unwrap();
    let identity = json!([{"issuer": "https://issuer.example", "subject": "dev@acme.example"}]);
    let request = CertRequest::new(
        San::Email("dev@acme.example".into()),
        "https://issuer.example",
    );
    let inside = private.issue(&request).unwrap();
    let outside = lab.sigstore.issue(&request).unwrap();
    for l in [L::Sig, L::Att, L::Buildkit] {
        let a = lab.authority(
            l,
            json!({"keyless": {"ca-cert": {"data": private.ca_pem()}, "identities": identity}}),
            json!({}),
        );
        let ev = Ev {
            who: Who::Cert(&inside),
            by: &private,
            tlog: false,
            tsa: false,
        };
        let image = lab.publish(l, ev, Home::default()).await;
        lab.admitted(l, &a, &image).await;
        let ev = Ev {
            who: Who::Cert(&outside),
            ..lab.ev(Who::Cert(&outside))
        };
        let image = lab.publish(l, ev, Home::default()).await;
        lab.denied(l, &a, &image, "ca-cert").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sct_in_every_layout() {
    let lab = Lab::new().await;
    let mut request =
        CertRequest::github_actions("acme/app", "refs/heads/main", "github-hosted", "push");
    request.with_sct = false;
    let without_sct = lab.sigstore.issue(&request).unwrap();
    for l in ALL {
        let image = lab
            .publish(l, lab.ev(Who::Cert(&without_sct)), Home::default())
            .await;
        let strict = lab.authority(l, workflow_authority(), json!({}));
        lab.denied(l, &strict, &image, "SCT").await;
        let mut lax = workflow_authority();
        lax["keyless"]["insecureIgnoreSCT"] = json!(true);
        let lax = lab.authority(l, lax, json!({}));
        lab.admitted(l, &lax, &image).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctlog_in_every_layout() {
    let lab = Lab::new().await;
    let k = key();
    for l in KEY_LAYOUTS {
        let a = lab.authority(l, key_authority(&k), json!({"ctlog": {}}));
        let logged = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        lab.admitted(l, &a, &logged).await;
        let unlogged = Ev {
            tlog: false,
            ..lab.ev(Who::Key(&k))
        };
        let unlogged = lab.publish(l, unlogged, Home::default()).await;
        lab.denied(l, &a, &unlogged, "ctlog requires").await;
        // Without ctlog, a key signature needs no log; a bundle always
        // needs a log entry or a timestamp (Sigstore's bundle spec).
        let plain = lab.authority(l, key_authority(&k), json!({}));
        if l == L::Bundle {
            lab.denied(l, &plain, &unlogged, "at least one tlog entry or timestamp")
                .await;
        } else {
            lab.admitted(l, &plain, &unlogged).await;
        }
    }
    // Keyless signatures need a log entry, ctlog or not.
    let cert = lab.workflow_cert(&lab.sigstore, "acme/app", "push");
    for l in ALL {
        let a = lab.authority(l, workflow_authority(), json!({"ctlog": {}}));
        let unlogged = Ev {
            tlog: false,
            ..lab.ev(Who::Cert(&cert))
        };
        let image = lab.publish(l, unlogged, Home::default()).await;
        let says = match l {
            L::Bundle | L::Github => "no transparency log entry",
            _ => "no Rekor entry",
        };
        lab.denied(l, &a, &image, says).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3161timestamp_in_every_layout() {
    let lab = Lab::new().await;
    let k = key();
    for l in KEY_LAYOUTS {
        let a = lab.authority(l, key_authority(&k), json!({"rfc3161timestamp": {}}));
        let stamped = Ev {
            tsa: true,
            ..lab.ev(Who::Key(&k))
        };
        let image = lab.publish(l, stamped, Home::default()).await;
        lab.admitted(l, &a, &image).await;
        let image = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        lab.denied(l, &a, &image, "rfc3161timestamp requires").await;
        // A stamp from a TSA the root does not name is no stamp.
        let rogue = Ev {
            tsa: true,
            by: &lab.other,
            tlog: false,
            ..lab.ev(Who::Key(&k))
        };
        let image = lab.publish(l, rogue, Home::default()).await;
        lab.denied(l, &a, &image, "timestamp").await;
    }
    let cert = lab.workflow_cert(&lab.sigstore, "acme/app", "push");
    for l in ALL {
        let a = lab.authority(l, workflow_authority(), json!({"rfc3161timestamp": {}}));
        let stamped = Ev {
            tsa: true,
            ..lab.ev(Who::Cert(&cert))
        };
        let image = lab.publish(l, stamped, Home::default()).await;
        lab.admitted(l, &a, &image).await;
        let image = lab
            .publish(l, lab.ev(Who::Cert(&cert)), Home::default())
            .await;
        lab.denied(l, &a, &image, "rfc3161timestamp requires").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_root_ref_in_every_layout() {
    let lab = Lab::new().await;
    let cert = lab.workflow_cert(&lab.other, "acme/app", "push");
    for l in ALL {
        let ev = Ev {
            by: &lab.other,
            ..lab.ev(Who::Cert(&cert))
        };
        let image = lab.publish(l, ev, Home::default()).await;
        let mut named = workflow_authority();
        named["keyless"]["trustRootRef"] = json!("other");
        let named = lab.authority(l, named, json!({}));
        lab.admitted(l, &named, &image).await;
        let default = lab.authority(l, workflow_authority(), json!({}));
        let says = match l {
            // A bundle's log entry is refused first: its log is not the root's.
            L::Bundle | L::Github => "names no log of the trust root",
            _ => "does not verify",
        };
        lab.denied(l, &default, &image, says).await;
    }
    // A key authority's log and timestamp are the named root's too.
    let k = key();
    for l in KEY_LAYOUTS {
        let ev = Ev {
            by: &lab.other,
            ..lab.ev(Who::Key(&k))
        };
        let image = lab.publish(l, ev, Home::default()).await;
        let named = lab.authority(
            l,
            key_authority(&k),
            json!({"ctlog": {"trustRootRef": "other"}}),
        );
        lab.admitted(l, &named, &image).await;
        let default = lab.authority(l, key_authority(&k), json!({"ctlog": {}}));
        let says = match l {
            L::Bundle => "names no log of the trust root",
            _ => "Rekor",
        };
        lab.denied(l, &default, &image, says).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_oci_in_every_layout() {
    let lab = Lab::new().await;
    let k = key();
    let store = format!("{}/acme/signature-store", lab.env.addr());
    for l in KEY_LAYOUTS {
        let a = lab.authority(l, key_authority(&k), json!({"source": [{"oci": store}]}));
        let home = Home {
            repo: Some("acme/signature-store"),
            prefix: "",
        };
        let elsewhere = lab.publish(l, lab.ev(Who::Key(&k)), home).await;
        lab.admitted(l, &a, &elsewhere).await;
        // Signatures beside the image are not where the policy looks.
        let beside = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        lab.denied(l, &a, &beside, "signature-store").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_prefix_in_every_layout() {
    let lab = Lab::new().await;
    let k = key();
    for l in [L::Sig, L::Att, L::Buildkit] {
        let a = lab.authority(
            l,
            key_authority(&k),
            json!({"source": [{"tagPrefix": "sigs-"}]}),
        );
        let home = Home {
            repo: None,
            prefix: "sigs-",
        };
        let prefixed = lab.publish(l, lab.ev(Who::Key(&k)), home).await;
        lab.admitted(l, &a, &prefixed).await;
        let plain = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        lab.denied(l, &a, &plain, "sigs-sha256-").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_source_replaces_the_registry() {
    let lab = Lab::new().await;
    let cert = lab.workflow_cert(&lab.sigstore, "acme/app", "push");
    let github = lab.authority(L::Github, workflow_authority(), json!({}));
    let listed = lab
        .publish(L::Github, lab.ev(Who::Cert(&cert)), Home::default())
        .await;
    lab.admitted(L::Github, &github, &listed).await;
    // Verified bundles in the registry, listed by no one: GitHub's 404.
    for l in [L::Oci11, L::Bundle, L::Buildkit] {
        let image = lab
            .publish(l, lab.ev(Who::Cert(&cert)), Home::default())
            .await;
        let registry = lab.authority(l, workflow_authority(), json!({}));
        lab.admitted(l, &registry, &image).await;
        lab.denied(l, &github, &image, "GitHub lists no attestations")
            .await;
    }
    // A BuildKit index whose signature GitHub lists: its in-index
    // Statements count, as the index's signature vouches for them.
    let image = lab
        .publish(L::Buildkit, lab.ev(Who::Cert(&cert)), Home::default())
        .await;
    let digest = image_digest(&lab, &image).await;
    let statement = in_toto_statement(&image, &digest, SIGN, json!({}));
    let b: Value = serde_json::from_slice(&bundle(lab.ev(Who::Cert(&cert)), &statement)).unwrap();
    lab.api
        .answers
        .lock()
        .unwrap()
        .insert(digest, Answer::Bundles(vec![b]));
    lab.admitted(L::Buildkit, &github, &image).await;
}

/// The digest `image` (a tag) names in the registry.
async fn image_digest(lab: &Lab, image: &str) -> String {
    let tagged: oci_client::Reference = image.parse().unwrap();
    lab.env
        .client
        .fetch_manifest_digest(&tagged, &oci_client::secrets::RegistryAuth::Anonymous)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_format_selects_the_layout() {
    let lab = Lab::new().await;
    let k = key();
    let legacy = json!({"signatureFormat": "legacy"});
    let bundle = json!({"signatureFormat": "bundle"});
    for l in [L::Sig, L::Att, L::Buildkit] {
        let image = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        lab.admitted(
            l,
            &lab.authority(l, key_authority(&k), legacy.clone()),
            &image,
        )
        .await;
        lab.denied(
            l,
            &lab.authority(l, key_authority(&k), bundle.clone()),
            &image,
            "referrers",
        )
        .await;
    }
    for l in [L::Oci11, L::Bundle] {
        let image = lab.publish(l, lab.ev(Who::Key(&k)), Home::default()).await;
        lab.admitted(
            l,
            &lab.authority(l, key_authority(&k), bundle.clone()),
            &image,
        )
        .await;
        let mut as_legacy = lab.authority(l, key_authority(&k), legacy.clone());
        as_legacy["signatureFormat"] = json!("legacy");
        lab.denied(l, &as_legacy, &image, ".sig").await;
    }
    // GitHub's API lists bundles: `bundle` is what it reads (`legacy`
    // beside it is refused when the policy loads).
    let cert = lab.workflow_cert(&lab.sigstore, "acme/app", "push");
    let image = lab
        .publish(L::Github, lab.ev(Who::Cert(&cert)), Home::default())
        .await;
    let github = lab.authority(L::Github, workflow_authority(), bundle.clone());
    lab.admitted(L::Github, &github, &image).await;
    let (ok, why) = lab
        .decide(
            &lab.authority(L::Github, workflow_authority(), legacy.clone()),
            &image,
        )
        .await;
    assert!(!ok && why.contains("signatureFormat"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_in_every_layout() {
    let lab = Lab::new().await;
    let cert = lab.workflow_cert(&lab.sigstore, "acme/app", "push");
    let cel = |expr: &str| {
        json!([{"name": "provenance", "predicateType": SLSA1,
                "policy": {"type": "cel", "data": expr}}])
    };
    for l in [L::Att, L::Bundle, L::Buildkit, L::Github] {
        let image = lab
            .publish(l, lab.ev(Who::Cert(&cert)), Home::default())
            .await;
        let with = |attestations: Value| {
            let mut a = lab.authority(l, workflow_authority(), json!({}));
            a["attestations"] = attestations;
            a
        };
        lab.admitted(l, &with(cel("predicate.builder == 'ci'")), &image)
            .await;
        lab.denied(
            l,
            &with(cel("predicate.builder == 'elsewhere'")),
            &image,
            "provenance",
        )
        .await;
        let spdx = json!([{"name": "sbom", "predicateType": "spdxjson"}]);
        lab.denied(l, &with(spdx), &image, "sbom").await;
    }
    // A signature never stands in for a required attestation.
    for l in [L::Sig, L::Oci11] {
        let image = lab
            .publish(l, lab.ev(Who::Cert(&cert)), Home::default())
            .await;
        let mut a = lab.authority(l, workflow_authority(), json!({}));
        a["attestations"] = cel("true");
        lab.denied(l, &a, &image, "attestation").await;
    }
}
