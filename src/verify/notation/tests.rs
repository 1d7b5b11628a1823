//! notation-go's own envelopes and trust stores (tests/fixtures/notation-go),
//! each with notation-go's expected outcome (its `verifier/timestamp_test.go`:
//! trust stores `ca:valid-trust-store` and `tsa:test-timestamp`, identities
//! `*`), through the whole verification.

use super::*;
use crate::model::notation::{anchors, pem_certificates, TrustedIdentity};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/notation-go");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
}

fn pem(path: &str) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    pem_certificates(&String::from_utf8(read(path)).unwrap()).unwrap()
}

fn policy(
    trusted: Vec<rustls_pki_types::CertificateDer<'static>>,
    tsa: Option<&str>,
    level: Level,
) -> NotationPolicy {
    NotationPolicy {
        anchors: anchors(&trusted).unwrap(),
        tsa_anchors: tsa.map(|t| anchors(&pem(t)).unwrap()).unwrap_or_default(),
        crls: Vec::new(),
        identities: vec![TrustedIdentity::Any],
        level,
    }
}

fn media_type(file: &str) -> &'static str {
    let bytes = read(&format!("timestamp/sigEnv/{file}"));
    if bytes.first() == Some(&b'{') {
        envelope::JWS_MEDIA_TYPE
    } else {
        envelope::COSE_MEDIA_TYPE
    }
}

/// The envelope's own signing certificate (for envelopes whose signer no
/// notation-go trust store holds).
fn own_certificate(file: &str) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    let bytes = read(&format!("timestamp/sigEnv/{file}"));
    envelope::open(media_type(file), &bytes).unwrap().chain
}

/// The manifest the envelope signs, as a registry would serve it.
fn target_of(file: &str) -> Target {
    let bytes = read(&format!("timestamp/sigEnv/{file}"));
    let info = envelope::open(media_type(file), &bytes).unwrap();
    let t = envelope::target_artifact(&info.payload).unwrap();
    Target {
        digest: t.digest,
        media_type: t.media_type,
        size: t.size,
    }
}

fn now() -> jiff::Timestamp {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

fn run(file: &str, p: &NotationPolicy) -> Result<NotationSigner, String> {
    let bytes = read(&format!("timestamp/sigEnv/{file}"));
    verify(p, media_type(file), &bytes, &target_of(file), now())
}

const TSA: Option<&str> = Some("truststore/globalsignRoot.pem");

#[test]
fn timestamped_envelopes_verify_with_the_tsa_time() {
    for file in ["jwsWithTimestamp.sig", "coseWithTimestamp.sig"] {
        let p = policy(pem("truststore/TestTimestamp.crt"), TSA, Level::Strict);
        let signer = run(file, &p).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            signer.subject, "C=US, ST=WA, L=Seattle, O=Notary, CN=alpine",
            "{file}"
        );
        assert!(signer.timestamp.is_some(), "{file}");
        assert_eq!(
            signer.checks[&Check::AuthenticTimestamp],
            CheckResult::Passed
        );
        assert_eq!(signer.checks[&Check::Revocation], CheckResult::Skipped);
        assert!(signer.logged.is_empty());
    }
}

#[test]
fn an_expired_signing_certificate_verifies_when_timestamped_while_valid() {
    for file in [
        "jwsExpiredWithTimestamp.sig",
        "coseExpiredWithTimestamp.sig",
    ] {
        let p = policy(own_certificate(file), TSA, Level::Strict);
        let signer = run(file, &p).unwrap_or_else(|e| panic!("{file}: {e}"));
        let at = signer.timestamp.clone().unwrap();
        assert!(at.starts_with("2024-06-18T07:2"), "{file}: {at}");
        // Without TSA certificates the chain must be valid now: it is not.
        let p = policy(own_certificate(file), None, Level::Strict);
        let e = run(file, &p).unwrap_err();
        assert!(
            e.starts_with("authentic timestamp check failed: certificate \"C=US, ST=WA, L=Seattle, O=Notary, CN=testTSA\" expired at 2024-06-18T07:30:31Z"),
            "{file}: {e}"
        );
        // permissive only logs the authentic timestamp: admitted, with the reason.
        let p = policy(own_certificate(file), None, Level::Permissive);
        let signer = run(file, &p).unwrap();
        assert_eq!(
            signer.checks[&Check::AuthenticTimestamp],
            CheckResult::Logged
        );
        assert_eq!(signer.logged.len(), 1);
        assert!(signer.logged[0].starts_with("authentic timestamp: certificate"));
    }
}

#[test]
fn with_tsa_certificates_a_countersignature_is_required() {
    // notation-go: "no timestamp countersignature was found in the signature envelope".
    let p = policy(pem("truststore/TestTimestamp.crt"), TSA, Level::Strict);
    let e = run("withoutTimestamp.sig", &p).unwrap_err();
    assert_eq!(
        e,
        "authentic timestamp check failed: no timestamp countersignature was found in the signature envelope"
    );
    // Without TSA certificates its (valid) chain is checked at the current time.
    let p = policy(pem("truststore/TestTimestamp.crt"), None, Level::Strict);
    let signer = run("withoutTimestamp.sig", &p).unwrap();
    assert_eq!(signer.timestamp, None);
}

#[test]
fn a_timestamp_outside_the_certificate_validity_fails() {
    let p = policy(
        pem("truststore/TestTimestampNotYetValid.crt"),
        TSA,
        Level::Strict,
    );
    let e = run("timestampBeforeNotBefore.sig", &p).unwrap_err();
    assert!(
        e.starts_with("authentic timestamp check failed: the timestamp 2024-06-19T09:30:13")
            && e.contains("is before certificate \"C=US, ST=WA, L=Seattle, O=Notary, CN=testTSA\" is valid (from 2099-09-18T11:54:34Z)"),
        "{e}"
    );
    let file = "timestampAfterNotAfter.sig";
    let p = policy(own_certificate(file), TSA, Level::Strict);
    let e = run(file, &p).unwrap_err();
    assert!(
        e.contains("expired at 2001-09-18T11:54:34Z, before the timestamp 2024-06-19T09:35:59"),
        "{e}"
    );
}

#[test]
fn a_timestamp_from_an_untrusted_tsa_fails() {
    // notation-go's tsa:test-mismatch store.
    let p = policy(
        pem("truststore/TestTimestamp.crt"),
        Some("truststore/DigiCertTSARootSHA384.pem"),
        Level::Strict,
    );
    let e = run("coseWithTimestamp.sig", &p).unwrap_err();
    assert!(
        e.contains("the timestamp's TSA does not lead to a trusted TSA certificate"),
        "{e}"
    );
}

#[test]
fn notation_go_countersignature_tokens_fail_as_notation_go_says() {
    let p = policy(pem("truststore/TestTimestamp.crt"), TSA, Level::Strict);
    let tsa = &p.tsa_anchors;
    for (token, signature, says) in [
        (
            "TimeStampTokenWithInvalideContentType.p7s",
            &b"notation"[..],
            "does not hold a TSTInfo",
        ),
        (
            "TimeStampTokenWithInvalidTSTInfo.p7s",
            &b"notation"[..],
            "TSTInfo is malformed",
        ),
        (
            "TimeStampToken.p7s",
            &b"mismatch"[..],
            "message imprint differs",
        ),
        (
            "TimeStampTokenWithoutCertificate.p7s",
            &b"notation"[..],
            "does not carry its signer's certificate",
        ),
    ] {
        let bytes = read(&format!("timestamp/countersignature/{token}"));
        let e = timestamp::verify(&bytes, signature, tsa).unwrap_err();
        assert!(e.contains(says), "{token}: {e}");
    }
    // The one good token, over what it stamps.
    let good = read("timestamp/countersignature/TimeStampToken.p7s");
    assert!(timestamp::verify(&good, b"notation", tsa).is_ok());
}

#[test]
fn the_trust_store_and_identity_decide_authenticity() {
    // Another store: the chain leads nowhere.
    let p = policy(
        pem("truststore/TestTimestampNotYetValid.crt"),
        TSA,
        Level::Strict,
    );
    let e = run("jwsWithTimestamp.sig", &p).unwrap_err();
    assert_eq!(
        e,
        "authenticity check failed: the certificate chain does not lead to a certificate of the trust store"
    );
    // audit logs authenticity: admitted, with the reason.
    let p = policy(
        pem("truststore/TestTimestampNotYetValid.crt"),
        TSA,
        Level::Audit,
    );
    let signer = run("jwsWithTimestamp.sig", &p).unwrap();
    assert_eq!(signer.checks[&Check::Authenticity], CheckResult::Logged);
    // The right store, another identity.
    let mut p = policy(pem("truststore/TestTimestamp.crt"), TSA, Level::Strict);
    p.identities =
        vec![TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Notary, CN=e2e").unwrap()];
    let e = run("jwsWithTimestamp.sig", &p).unwrap_err();
    assert!(
        e.contains("subject \"C=US, ST=WA, L=Seattle, O=Notary, CN=alpine\" matches none of the trusted identities: x509.subject: C=US, ST=WA, O=Notary, CN=e2e"),
        "{e}"
    );
    p.identities =
        vec![TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Notary, CN=alpine").unwrap()];
    assert!(run("jwsWithTimestamp.sig", &p).is_ok());
}

#[test]
fn the_payload_must_name_the_admitted_manifest_exactly() {
    let p = policy(pem("truststore/TestTimestamp.crt"), TSA, Level::Audit);
    let bytes = read("timestamp/sigEnv/jwsWithTimestamp.sig");
    let right = target_of("jwsWithTimestamp.sig");
    let other_digest = Target {
        digest: format!("sha256:{}", "a".repeat(64)),
        ..right.clone()
    };
    let e = verify(&p, envelope::JWS_MEDIA_TYPE, &bytes, &other_digest, now()).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "signature is for {}, image is sha256:aaaa",
            right.digest
        )),
        "{e}"
    );
    let other_size = Target {
        size: right.size + 1,
        ..right.clone()
    };
    let e = verify(&p, envelope::JWS_MEDIA_TYPE, &bytes, &other_size, now()).unwrap_err();
    assert!(e.contains("the registry serves 529 bytes"), "{e}");
    let other_type = Target {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        ..right
    };
    assert!(verify(&p, envelope::JWS_MEDIA_TYPE, &bytes, &other_type, now()).is_err());
}
