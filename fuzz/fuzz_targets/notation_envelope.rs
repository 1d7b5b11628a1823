//! Notation signature envelopes (JWS and COSE, from a registry's
//! referrers) opened and verified under a trust policy: parse, signature,
//! chain, timestamp. Must never panic, and nothing forged verifies (the
//! trust store holds a certificate whose key nobody has).
#![no_main]
use libfuzzer_sys::fuzz_target;

use sigil::model::notation::{anchors, pem_certificates, Level, NotationPolicy, TrustedIdentity};
use sigil::verify::notation::envelope::{COSE_MEDIA_TYPE, JWS_MEDIA_TYPE};
use sigil::verify::notation::{verify, Target};

const TRUSTED: &str = include_str!("../../tests/fixtures/notation-go/truststore/TestTimestampNotYetValid.crt");
const TSA: &str = include_str!("../../tests/fixtures/notation-go/truststore/globalsignRoot.pem");

fuzz_target!(|data: &[u8]| {
    let certificates = pem_certificates(TRUSTED).unwrap_or_default();
    let policy = NotationPolicy {
        anchors: anchors(&certificates).unwrap_or_default(),
        tsa_anchors: pem_certificates(TSA)
            .and_then(|c| anchors(&c))
            .unwrap_or_default(),
        crls: Vec::new(),
        identities: vec![TrustedIdentity::Any],
        level: Level::Strict,
    };
    let target = Target {
        digest: format!("sha256:{}", "0".repeat(64)),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 1,
    };
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default();
    for media_type in [JWS_MEDIA_TYPE, COSE_MEDIA_TYPE] {
        assert!(verify(&policy, media_type, data, &target, now).is_err());
    }
});
