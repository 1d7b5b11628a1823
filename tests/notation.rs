//! Notation signatures end to end, through the real docker-registry: images
//! signed in Notation's format (JWS and COSE envelopes, certificates from a
//! CA made in the test, RFC 3161 countersignatures from the test TSA),
//! attached as OCI referrers (found through the referrers tag index, as
//! distribution 2.8 has no referrers API), and judged by `/validate`'s
//! pipeline and `sigil check`, with the audit record and `check --output
//! json` showing who signed, at which level, and which checks were skipped.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use sigil_testkit::notation::{attach, descriptor, NotationCa, NotationSigner, COSE, JWS};
use sigil_testkit::sigstore::TestTsa;
use sigil_testkit::{TestKey, TestKeyKind};

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

/// A `notation` authority (as YAML list item, indented for `authorities:`).
fn notation_authority(ca_pem: &str, tsa_pem: Option<&str>, identity: &str, level: &str) -> String {
    notation_authority_with_crls(ca_pem, tsa_pem, None, identity, level)
}

fn notation_authority_with_crls(
    ca_pem: &str,
    tsa_pem: Option<&str>,
    crls: Option<&str>,
    identity: &str,
    level: &str,
) -> String {
    let mut tsa = tsa_pem
        .map(|p| format!("          tsaCertificates: |\n{}", indent(p, 12)))
        .unwrap_or_default();
    if let Some(crls) = crls {
        tsa.push_str(&format!("          crls: |\n{}", indent(crls, 12)));
    }
    format!(
        "    - name: notary\n      notation:\n        trustStore:\n          certificates: |\n{}{tsa}        trustedIdentities: [\"{identity}\"]\n        verificationLevel: {level}\n",
        indent(ca_pem, 12)
    )
}

fn policy(glob: &str, authorities: &str) -> String {
    format!(
        "---\napiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: notation\nspec:\n  images:\n    - glob: \"{glob}\"\n  authorities:\n{authorities}"
    )
}

struct Case {
    env: Env,
    ca: NotationCa,
    tsa: TestTsa,
    glob: String,
}

enum Sign<'a> {
    Jws(&'a NotationSigner),
    Cose(&'a NotationSigner),
}

impl Case {
    fn new() -> Case {
        let env = Env::start();
        let glob = format!("{}/notary/**", env.addr());
        Case {
            env,
            ca: NotationCa::new("sigil test notation CA").unwrap(),
            tsa: TestTsa::new().unwrap(),
            glob,
        }
    }

    /// Pushes `repo:v1` and attaches the envelopes `envelopes(payload)`
    /// returns, given the Notary payload naming it.
    async fn image(
        &self,
        repo: &str,
        envelopes: impl FnOnce(&[u8]) -> Vec<(&'static str, Vec<u8>)>,
    ) -> (String, String) {
        let digest = self.env.push(repo, "v1").await;
        let d = descriptor(&self.env.client, self.env.addr(), repo, &digest)
            .await
            .unwrap();
        for (media_type, envelope) in envelopes(&d.payload()) {
            attach(
                &self.env.client,
                self.env.addr(),
                repo,
                &digest,
                media_type,
                &envelope,
            )
            .await
            .unwrap();
        }
        (format!("{}/{repo}:v1", self.env.addr()), digest)
    }

    /// Pushes `repo:v1` with one Notation signature over its own payload.
    async fn signed(
        &self,
        repo: &str,
        how: Sign<'_>,
        at: SystemTime,
        tsa: Option<&TestTsa>,
    ) -> (String, String) {
        self.image(repo, |p| vec![sign(how, p, at, tsa)]).await
    }

    /// Asserts `image` is denied under `policy` with a message saying `says`.
    async fn denied(&self, policy: &str, image: &str, says: &str) {
        let (ok, msg, _) = self.verdict(policy, image).await;
        assert!(!ok, "{image} was admitted");
        assert!(msg.contains(says), "wanted {says:?} in: {msg}");
    }

    async fn verdict(&self, policy: &str, image: &str) -> (bool, String, Vec<String>) {
        let (ev, _) = pipeline(policy, &Opts::for_registry(self.env.addr()));
        let resp = review_pod(&ev, image).await;
        (allowed(&resp), message(&resp), warnings(&resp))
    }
}

fn sign(
    how: Sign<'_>,
    payload: &[u8],
    at: SystemTime,
    tsa: Option<&TestTsa>,
) -> (&'static str, Vec<u8>) {
    match how {
        Sign::Jws(s) => (JWS, s.jws(payload, at, tsa).unwrap()),
        Sign::Cose(s) => (COSE, s.cose(payload, at, tsa).unwrap()),
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86400)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signatures_are_admitted_only_when_they_verify() {
    let c = Case::new();
    let now = SystemTime::now();
    let signer = c.ca.issue_valid("release").unwrap();
    let expired =
        c.ca.issue("old-release", now - days(10), now - days(5))
            .unwrap();
    let other_ca = NotationCa::new("another CA").unwrap();
    let trusted = notation_authority(&c.ca.pem(), None, "*", "strict");
    let strict = policy(&c.glob, &trusted);

    // JWS and COSE, each alone, are admitted.
    let (jws, _) = c.signed("notary/jws", Sign::Jws(&signer), now, None).await;
    let (cose, _) = c
        .signed("notary/cose", Sign::Cose(&signer), now, None)
        .await;
    for image in [&jws, &cose] {
        let (ok, msg, warned) = c.verdict(&strict, image).await;
        assert!(ok, "{image}: {msg}");
        assert!(warned.is_empty(), "{warned:?}");
    }

    // The identity: the right x509.subject admits, another denies.
    let identity = |dn: &str| {
        policy(
            &c.glob,
            &notation_authority(&c.ca.pem(), None, dn, "strict"),
        )
    };
    let (ok, msg, _) = c
        .verdict(
            &identity("x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=release"),
            &jws,
        )
        .await;
    assert!(ok, "{msg}");
    c.denied(&identity("x509.subject: C=US, ST=WA, O=Notary, CN=someone-else"), &jws, "authenticity check failed: signing certificate subject \"C=US, ST=WA, L=Seattle, O=Notary, CN=release\" matches none of the trusted identities: x509.subject: C=US, ST=WA, O=Notary, CN=someone-else").await;

    // Another CA's trust store.
    let (ok, msg, _) = c
        .verdict(
            &policy(
                &c.glob,
                &notation_authority(&other_ca.pem(), None, "*", "strict"),
            ),
            &cose,
        )
        .await;
    assert!(!ok);
    assert!(
        msg.contains("fails policy \"notation\": notary: no Notation signature verified among 1 (Notation signature sha256:")
            && msg.contains("authenticity check failed: the certificate chain does not lead to a certificate of the trust store"),
        "{msg}"
    );

    // A CA of the very same name but another key signs for nobody here:
    // a certificate it issued is refused, and trusting it admits nothing.
    let impostor = NotationCa::new("sigil test notation CA").unwrap();
    let forged = impostor.issue_valid("release").unwrap();
    let (by_impostor, _) = c
        .signed("notary/impostor", Sign::Jws(&forged), now, None)
        .await;
    for (p, image) in [
        (strict.clone(), &by_impostor),
        (
            policy(
                &c.glob,
                &notation_authority(&impostor.pem(), None, "*", "strict"),
            ),
            &jws,
        ),
    ] {
        let (ok, msg, _) = c.verdict(&p, image).await;
        assert!(!ok, "{image}");
        assert!(
            msg.contains("authenticity check failed: the certificate chain does not lead to a certificate of the trust store"),
            "{msg}"
        );
    }

    // A tampered payload: the signature no longer covers it.
    let (tampered, _) = c
        .image("notary/tampered", |p| {
            let (mt, env) = sign(Sign::Jws(&signer), p, now, None);
            let mut v: serde_json::Value = serde_json::from_slice(&env).unwrap();
            let forged = String::from_utf8(p.to_vec())
                .unwrap()
                .replace("\"size\":", "\"size\":1");
            v["payload"] = base64_url(forged.as_bytes()).into();
            vec![(mt, serde_json::to_vec(&v).unwrap())]
        })
        .await;
    c.denied(
        &strict,
        &tampered,
        "integrity check failed: the signature does not verify with the signing certificate's key",
    )
    .await;

    // A good signature of another image, attached to this one.
    let other_digest = c.env.push("notary/elsewhere", "v1").await;
    let elsewhere = descriptor(
        &c.env.client,
        c.env.addr(),
        "notary/elsewhere",
        &other_digest,
    )
    .await
    .unwrap();
    let (moved, digest) = c
        .image("notary/moved", |_| {
            vec![sign(Sign::Cose(&signer), &elsewhere.payload(), now, None)]
        })
        .await;
    c.denied(
        &strict,
        &moved,
        &format!("signature is for {other_digest}, image is {digest}"),
    )
    .await;

    // An expired certificate without a timestamp: denied under strict.
    let (old, _) = c
        .signed("notary/expired", Sign::Jws(&expired), now - days(7), None)
        .await;
    c.denied(&strict, &old, "authentic timestamp check failed: certificate \"C=US, ST=WA, L=Seattle, O=Notary, CN=old-release\" expired at").await;

    // Unsigned: nothing to verify.
    let (unsigned, _) = c.image("notary/unsigned", |_| Vec::new()).await;
    c.denied(&strict, &unsigned, "no Notation signature found for")
        .await;
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_and_levels_decide_expired_certificates() {
    let c = Case::new();
    let now = SystemTime::now();
    let expired =
        c.ca.issue("old-release", now - days(10), now - days(5))
            .unwrap();
    let with_tsa = policy(
        &c.glob,
        &notation_authority(&c.ca.pem(), Some(&c.tsa.root_pem()), "*", "strict"),
    );

    // Timestamped by a trusted TSA while the certificate was valid: admitted.
    let (stamped, _) = c
        .image("notary/stamped", |p| {
            vec![
                sign(Sign::Jws(&expired), p, now - days(7), Some(&c.tsa)),
                sign(Sign::Cose(&expired), p, now - days(7), Some(&c.tsa)),
            ]
        })
        .await;
    let (ok, msg, _) = c.verdict(&with_tsa, &stamped).await;
    assert!(ok, "{msg}");

    // Timestamped after it expired: denied, with the times.
    let (late, _) = c
        .signed(
            "notary/late",
            Sign::Cose(&expired),
            now - days(1),
            Some(&c.tsa),
        )
        .await;
    let (ok, msg, _) = c.verdict(&with_tsa, &late).await;
    assert!(!ok);
    assert!(
        msg.contains("authentic timestamp check failed: certificate \"C=US, ST=WA, L=Seattle, O=Notary, CN=old-release\" expired at")
            && msg.contains("before the timestamp"),
        "{msg}"
    );

    // With TSA certificates, a countersignature is required.
    let (bare, _) = c
        .signed("notary/bare", Sign::Jws(&expired), now - days(7), None)
        .await;
    c.denied(
        &with_tsa,
        &bare,
        "no timestamp countersignature was found in the signature envelope",
    )
    .await;

    // A timestamp from a TSA the policy does not trust.
    let stranger = TestTsa::new().unwrap();
    let (strange, _) = c
        .signed(
            "notary/strange-tsa",
            Sign::Jws(&expired),
            now - days(7),
            Some(&stranger),
        )
        .await;
    c.denied(
        &with_tsa,
        &strange,
        "the timestamp's TSA does not lead to a trusted TSA certificate",
    )
    .await;

    // permissive logs the authentic timestamp: admitted with a warning,
    // which the audit log records as a warn of a passing policy.
    let permissive = policy(
        &c.glob,
        &notation_authority(&c.ca.pem(), None, "*", "permissive"),
    );
    let (ev, audit) = pipeline(&permissive, &Opts::for_registry(c.env.addr()));
    let resp = review_pod(&ev, &bare).await;
    assert!(allowed(&resp), "{}", message(&resp));
    let warned = warnings(&resp);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("passes policy \"notation\" with logged failures: notary: authentic timestamp: certificate \"C=US, ST=WA, L=Seattle, O=Notary, CN=old-release\" expired at"),
        "{warned:?}"
    );
    let records = audit.records();
    assert_eq!(records.len(), 1);
    let record = serde_json::to_value(&records[0]).unwrap();
    assert_eq!(record["decision"], "warned");
    assert_eq!(record["passed"], true);
    let notation = &record["authorities"][0]["notation"];
    assert_eq!(notation["level"], "permissive");
    assert_eq!(notation["envelope"], "jws");
    assert_eq!(
        notation["subject"],
        "C=US, ST=WA, L=Seattle, O=Notary, CN=old-release"
    );
    assert_eq!(notation["checks"]["authenticTimestamp"], "logged");
    assert_eq!(notation["checks"]["integrity"], "passed");
    assert_eq!(notation["checks"]["revocation"], "skipped");

    // audit level: authenticity is logged too (another CA admits, warned).
    let other_ca = NotationCa::new("another CA").unwrap();
    let audit_level = policy(
        &c.glob,
        &notation_authority(&other_ca.pem(), None, "*", "audit"),
    );
    let (ok, msg, warned) = c.verdict(&audit_level, &bare).await;
    assert!(ok, "{msg}");
    assert!(
        warned[0].contains("authenticity: the certificate chain does not lead"),
        "{warned:?}"
    );
    // ... but never integrity: another image's signature is still denied.
    let (moved, _) = c
        .image("notary/moved", |_| {
            vec![sign(Sign::Jws(&expired), b"{\"targetArtifact\":{\"mediaType\":\"x\",\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\",\"size\":1}}", now, None)]
        })
        .await;
    c.denied(&audit_level, &moved, "signature is for sha256:0000")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_policy_admits_either_signer_alone() {
    let c = Case::new();
    let now = SystemTime::now();
    let signer = c.ca.issue_valid("release").unwrap();
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    let cosign = format!(
        "    - name: cosign\n      key:\n        data: |\n{}",
        indent(&key.public_pem, 10)
    );
    let mixed = policy(
        &c.glob,
        &format!(
            "{cosign}{}",
            notation_authority(&c.ca.pem(), None, "*", "strict")
        ),
    );

    let (notary_only, _) = c
        .signed("notary/notation-only", Sign::Cose(&signer), now, None)
        .await;
    let cosign_digest = c.env.push("notary/cosign-only", "v1").await;
    c.env.sign("notary/cosign-only", &cosign_digest, &key).await;
    let cosign_only = format!("{}/notary/cosign-only:v1", c.env.addr());
    let (unsigned, _) = c.image("notary/neither", |_| Vec::new()).await;

    let (ok, msg, _) = c.verdict(&mixed, &notary_only).await;
    assert!(ok, "{msg}");
    let (ok, msg, _) = c.verdict(&mixed, &cosign_only).await;
    assert!(ok, "{msg}");
    let (ok, msg, _) = c.verdict(&mixed, &unsigned).await;
    assert!(!ok);
    assert!(
        msg.contains("cosign: no signatures found at")
            && msg.contains("notary: no Notation signature found for"),
        "{msg}"
    );

    // Through `sigil check --output json`: who signed, at which level,
    // which checks were skipped; and the exit code of a deny.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), &mixed).unwrap();
    for (image, code) in [(notary_only.as_str(), 0), (unsigned.as_str(), 1)] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args([
                "check",
                "--insecure-registry",
                c.env.addr(),
                "--output",
                "json",
                "--image",
                image,
                "--policy-dir",
            ])
            .arg(dir.path())
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{image}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let authorities = &v["images"][0]["policies"][0]["authorities"];
        let notary = authorities
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "notary")
            .unwrap();
        if code == 0 {
            assert_eq!(notary["passed"], true, "{notary}");
            assert_eq!(
                notary["notation"]["subject"],
                "C=US, ST=WA, L=Seattle, O=Notary, CN=release"
            );
            assert_eq!(
                notary["notation"]["issuer"],
                "C=US, ST=WA, L=Seattle, O=Notary, CN=sigil test notation CA"
            );
            assert_eq!(notary["notation"]["level"], "strict");
            assert_eq!(notary["notation"]["envelope"], "cose");
            assert_eq!(notary["notation"]["checks"]["revocation"], "skipped");
            assert_eq!(notary["notation"]["checks"]["authenticity"], "passed");
            assert!(notary["reason"].as_str().unwrap().starts_with("Notation COSE signature by \"C=US, ST=WA, L=Seattle, O=Notary, CN=release\" verified (strict"), "{notary}");
        } else {
            assert_eq!(notary["passed"], false);
            assert!(
                v["denied"][0]
                    .as_str()
                    .unwrap()
                    .contains("no Notation signature found"),
                "{v}"
            );
        }
    }
    // The text form names the level and each check's result.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "check",
            "--insecure-registry",
            c.env.addr(),
            "--image",
            &notary_only,
            "--policy-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("notation level strict: integrity passed, authenticity passed, authentic timestamp passed, expiry passed, revocation skipped"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_checked_against_inline_crls_only() {
    let c = Case::new();
    let now = SystemTime::now();
    let revoked = c.ca.issue_valid("compromised").unwrap();
    let fine = c.ca.issue_valid("release").unwrap();
    let crl = c.ca.crl(&[&revoked]).unwrap();
    let with_crl = |level: &str| {
        policy(
            &c.glob,
            &notation_authority_with_crls(&c.ca.pem(), None, Some(&crl), "*", level),
        )
    };
    let (bad, _) = c
        .signed("notary/revoked", Sign::Jws(&revoked), now, None)
        .await;
    let (good, _) = c.signed("notary/fine", Sign::Cose(&fine), now, None).await;

    // strict: the revoked certificate is refused; the other one is not.
    c.denied(
        &with_crl("strict"),
        &bad,
        "revocation check failed: a certificate of the chain is revoked",
    )
    .await;
    let (ev, _) = pipeline(&with_crl("strict"), &Opts::for_registry(c.env.addr()));
    let eval = ev
        .evaluate_with(
            &Default::default(),
            vec![sigil::workload::ImageUse {
                field: "spec.containers[0].image".into(),
                reference: good.clone(),
                pointer: String::new(),
            }],
            &ev.settings.decision,
            false,
        )
        .await;
    assert!(eval.verdict.allowed, "{:?}", eval.verdict.message);
    let notary = eval.reports[0].policies[0].authorities[0]
        .notation()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&notary.checks).unwrap()["revocation"],
        "passed"
    );
    // permissive logs it: admitted with the reason as a warning.
    let (ok, msg, warned) = c.verdict(&with_crl("permissive"), &bad).await;
    assert!(ok, "{msg}");
    assert!(
        warned[0].contains("notary: revocation: a certificate of the chain is revoked"),
        "{warned:?}"
    );
    // Without CRLs, revocation is skipped: the same signature is admitted.
    let strict = policy(
        &c.glob,
        &notation_authority(&c.ca.pem(), None, "*", "strict"),
    );
    let (ok, msg, _) = c.verdict(&strict, &bad).await;
    assert!(ok, "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_server_answers_validate_for_notation_signatures() {
    let c = Case::new();
    let now = SystemTime::now();
    let signer = c.ca.issue_valid("release").unwrap();
    let expired =
        c.ca.issue("old-release", now - days(10), now - days(5))
            .unwrap();
    let (good, good_digest) = c
        .signed("notary/served-good", Sign::Jws(&signer), now, None)
        .await;
    let (old, old_digest) = c
        .signed(
            "notary/served-old",
            Sign::Cose(&expired),
            now - days(7),
            None,
        )
        .await;
    let pinned = |image: &str, digest: &str| format!("{}@{digest}", image.trim_end_matches(":v1"));
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(
        dir.path(),
        &policy(
            &c.glob,
            &notation_authority(&c.ca.pem(), None, "*", "permissive"),
        ),
    );
    let served = served::Served::start(
        dir.path(),
        &policies,
        &["--insecure-registry", c.env.addr()],
    );

    let resp = served.review(&pinned(&good, &good_digest)).await;
    assert!(allowed(&resp), "{resp}");
    assert!(warnings(&resp).is_empty(), "{resp}");
    let resp = served.review(&pinned(&old, &old_digest)).await;
    assert!(allowed(&resp), "{resp}");
    assert!(
        warnings(&resp)[0].contains("passes policy \"notation\" with logged failures: notary: authentic timestamp: certificate"),
        "{resp}"
    );
    // Written by tag: the webhook admits only pinned digests.
    let resp = served.review(&good).await;
    assert!(!allowed(&resp));
    assert!(message(&resp).contains("must be an image digest"), "{resp}");

    let records = served.stop();
    let warned: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "warned")
        .collect();
    assert_eq!(warned.len(), 1, "{records:?}");
    assert_eq!(warned[0]["passed"], true);
    assert_eq!(warned[0]["digest"], old_digest);
    assert_eq!(
        warned[0]["authorities"][0]["notation"]["level"],
        "permissive"
    );
    assert_eq!(warned[0]["authorities"][0]["notation"]["envelope"], "cose");
    assert_eq!(
        warned[0]["authorities"][0]["notation"]["checks"]["authenticTimestamp"],
        "logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signatures_own_expiry_is_checked() {
    let c = Case::new();
    let now = SystemTime::now();
    let signer = c.ca.issue_valid("release").unwrap();
    let (lapsed, _) = c
        .image("notary/lapsed", |p| {
            vec![(
                JWS,
                signer
                    .jws_expiring(p, now - days(2), Some(now - days(1)), None)
                    .unwrap(),
            )]
        })
        .await;
    let (current, _) = c
        .image("notary/current", |p| {
            vec![(
                JWS,
                signer
                    .jws_expiring(p, now, Some(now + days(30)), None)
                    .unwrap(),
            )]
        })
        .await;
    let at = |level: &str| policy(&c.glob, &notation_authority(&c.ca.pem(), None, "*", level));
    c.denied(
        &at("strict"),
        &lapsed,
        "expiry check failed: the signature expired at",
    )
    .await;
    let (ok, msg, _) = c.verdict(&at("strict"), &current).await;
    assert!(ok, "{msg}");
    let (ok, msg, warned) = c.verdict(&at("permissive"), &lapsed).await;
    assert!(ok, "{msg}");
    assert!(
        warned[0].contains("notary: expiry: the signature expired at"),
        "{warned:?}"
    );
}

/// A trusted identity names attributes a leaf must have; a leaf whose
/// subject repeats an attribute or puts several in one RDN is refused, as
/// notation-go refuses it, whatever its attributes would match: any team
/// that can get a certificate with an extra `OU` from the same CA must not
/// sign as `OU=Release`. Values of other than string types match nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_are_read_as_notation_go_reads_them() {
    let c = Case::new();
    let now = SystemTime::now();
    let release = policy(
        &c.glob,
        &notation_authority(
            &c.ca.pem(),
            None,
            "x509.subject: C=US, ST=WA, O=Acme, OU=Release",
            "strict",
        ),
    );
    // RFC 4514 strings: the last RDN first.
    let cases = [
        (
            "honest",
            "CN=release,OU=Release,O=Acme,ST=WA,C=US",
            None,
        ),
        (
            "two-ous",
            "CN=dev,OU=Release,OU=Dev,O=Acme,ST=WA,C=US",
            Some("authenticity check failed: signing certificate subject \"C=US, ST=WA, O=Acme, OU=Dev, OU=Release, CN=dev\" has OU more than once; Notation refuses subjects with repeated attributes"),
        ),
        (
            "multi-valued",
            "CN=dev+OU=Release,O=Acme,ST=WA,C=US",
            Some("authenticity check failed: signing certificate subject \"C=US, ST=WA, O=Acme, CN=dev, OU=Release\" has a multi-valued RDN (CN+OU); Notation refuses subjects with multi-valued RDNs"),
        ),
        (
            // OU as an OCTET STRING holding the bytes of "Release".
            "not-a-string",
            "CN=dev,OU=#040752656c65617365,O=Acme,ST=WA,C=US",
            Some("authenticity check failed: signing certificate subject \"C=US, ST=WA, O=Acme, OU=#040752656c65617365, CN=dev\" matches none of the trusted identities: x509.subject: C=US, ST=WA, O=Acme, OU=Release"),
        ),
    ];
    for (name, subject, refused) in cases {
        let signer = c.ca.issue_with_subject(subject).unwrap();
        let (image, _) = c
            .signed(&format!("notary/{name}"), Sign::Jws(&signer), now, None)
            .await;
        match refused {
            None => {
                let (ok, msg, _) = c.verdict(&release, &image).await;
                assert!(ok, "{name}: {msg}");
            }
            Some(says) => c.denied(&release, &image, says).await,
        }
    }
    // Under the `*` identity the same leaves are refused too: the subject
    // itself is unreadable as Notation reads it.
    let any = policy(
        &c.glob,
        &notation_authority(&c.ca.pem(), None, "*", "strict"),
    );
    let signer =
        c.ca.issue_with_subject("CN=dev,OU=Release,OU=Dev,O=Acme,ST=WA,C=US")
            .unwrap();
    let (image, _) = c
        .signed("notary/any-two-ous", Sign::Jws(&signer), now, None)
        .await;
    c.denied(&any, &image, "has OU more than once").await;
}
