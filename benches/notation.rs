//! Cold verification of one Notation signature (what a verdict cache miss
//! costs after the registry round trips): envelope, signature, chain to
//! the trust store, identity, and for the timestamped one the RFC 3161
//! token and its TSA chain. notation-go's own envelopes (RSA-3072 PS256
//! signing certificates, a GlobalSign TSA) and a COSE ES256 envelope from
//! the test kit's CA.
//!
//! Run: `cargo bench --bench notation`

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use sigil::model::notation::{anchors, pem_certificates, Level, NotationPolicy, TrustedIdentity};
use sigil::verify::notation::envelope::{self, COSE_MEDIA_TYPE, JWS_MEDIA_TYPE};
use sigil::verify::notation::{verify, Target};
use sigil_testkit::notation::{Descriptor, NotationCa};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/notation-go");

fn policy(trusted: &str, tsa: Option<&str>) -> NotationPolicy {
    let certificates = pem_certificates(trusted).unwrap();
    NotationPolicy {
        anchors: anchors(&certificates).unwrap(),
        tsa_anchors: tsa
            .map(|t| anchors(&pem_certificates(t).unwrap()).unwrap())
            .unwrap_or_default(),
        crls: Vec::new(),
        identities: vec![TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Notary").unwrap()],
        level: Level::Strict,
    }
}

fn target_of(media_type: &str, bytes: &[u8]) -> Target {
    let info = envelope::open(media_type, bytes).unwrap();
    let t = envelope::target_artifact(&info.payload).unwrap();
    Target {
        digest: t.digest,
        media_type: t.media_type,
        size: t.size,
    }
}

fn notation(c: &mut Criterion) {
    let read = |p: &str| std::fs::read(format!("{FIXTURES}/{p}")).unwrap();
    let text = |p: &str| String::from_utf8(read(p)).unwrap();
    let now = jiff::Timestamp::now();
    let trusted = text("truststore/TestTimestamp.crt");
    let tsa = text("truststore/globalsignRoot.pem");

    let stamped = read("timestamp/sigEnv/jwsWithTimestamp.sig");
    let with_tsa = policy(&trusted, Some(&tsa));
    let target = target_of(JWS_MEDIA_TYPE, &stamped);
    verify(&with_tsa, JWS_MEDIA_TYPE, &stamped, &target, now).expect("verifies");
    c.bench_function("notation JWS PS256 + RFC 3161 timestamp, cold", |b| {
        b.iter(|| verify(&with_tsa, JWS_MEDIA_TYPE, &stamped, &target, now).unwrap())
    });

    let bare = read("timestamp/sigEnv/withoutTimestamp.sig");
    let without = policy(&trusted, None);
    let target = target_of(JWS_MEDIA_TYPE, &bare);
    verify(&without, JWS_MEDIA_TYPE, &bare, &target, now).expect("verifies");
    c.bench_function("notation JWS PS256, cold", |b| {
        b.iter(|| verify(&without, JWS_MEDIA_TYPE, &bare, &target, now).unwrap())
    });

    let ca = NotationCa::new("bench CA").unwrap();
    let signer = ca.issue_valid("release").unwrap();
    let descriptor = Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
        size: 1234,
    };
    let cose = signer
        .cose(
            &descriptor.payload(),
            SystemTime::now() - Duration::from_secs(5),
            None,
        )
        .unwrap();
    let by_ca = policy(&ca.pem(), None);
    let target = target_of(COSE_MEDIA_TYPE, &cose);
    verify(&by_ca, COSE_MEDIA_TYPE, &cose, &target, now).expect("verifies");
    c.bench_function("notation COSE ES256, CA chain, cold", |b| {
        b.iter(|| verify(&by_ca, COSE_MEDIA_TYPE, &cose, &target, now).unwrap())
    });
}

criterion_group!(benches, notation);
criterion_main!(benches);
