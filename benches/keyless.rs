//! Cold keyless verification of one legacy signature layer (what a verdict
//! cache miss costs after the registry round trips): certificate chain at
//! the integrated time, SCT, Rekor SET and entry consistency, signature,
//! payload digest and identity, against an offline Sigstore's trust root.
//!
//! Run: `cargo bench --bench keyless`

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use sigil::trust::TrustMaterial;
use sigil::verify::cosign::{SignatureLayer, SIGNATURE_ANNOTATION};
use sigil::verify::keyless::{
    verify_keyless_layer, CertificateTrust, IdentityRule, KeylessPolicy, TextMatcher,
};
use sigil_testkit::sigstore::{CertRequest, OfflineSigstore, San, SetMode};

fn keyless(c: &mut Criterion) {
    let sigstore = OfflineSigstore::new().unwrap();
    let issuer = "https://token.actions.githubusercontent.com";
    let subject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";
    let cert = sigstore
        .issue(&CertRequest::new(San::Uri(subject.into()), issuer))
        .unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let sig = sigstore
        .sign_keyless(
            &cert,
            "reg.example/acme/app",
            &digest,
            SystemTime::now() - Duration::from_secs(5),
            SetMode::Valid,
        )
        .unwrap();
    let mut annotations = sig.annotations.clone();
    annotations.insert(SIGNATURE_ANNOTATION.into(), sig.signature_b64.clone());
    let layer = SignatureLayer {
        payload: sig.payload.clone(),
        annotations,
    };
    let trust = TrustMaterial::from_json("bench", &sigstore.trusted_root_json(None)).unwrap();
    let policy = KeylessPolicy {
        identities: vec![IdentityRule::new(
            TextMatcher::new(Some(issuer), None).unwrap(),
            TextMatcher::new(None, Some("https://github\\.com/acme/.*")).unwrap(),
        )],
        trust: CertificateTrust::TrustRoot,
        trust_root_ref: None,
        verify_sct: true,
        require_tlog: true,
        timestamp_without_log: false,
        require_timestamp: false,
    };
    verify_keyless_layer(&layer, &digest, &policy, &trust).expect("verifies");
    c.bench_function("keyless legacy signature, cold", |b| {
        b.iter(|| verify_keyless_layer(&layer, &digest, &policy, &trust).unwrap())
    });
}

criterion_group!(benches, keyless);
criterion_main!(benches);
