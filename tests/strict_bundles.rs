//! Bundles read as strictly as sigstore-go and sigstore-python: mutants of
//! the sigstore-conformance cases (real bundles: public-good Rekor v1, a
//! private Rekor v2 log with a TSA), one group per family of laxness the
//! `sigstore-verify` crate shows, each refused by sigil with the reason
//! while the unmutated bundle verifies. Then a sweep of mutants generated
//! from every conformance bundle that must verify: an unknown field in
//! every object and every key written twice. Through the library functions
//! `verify-bundle` runs (`parse_bundle`, `verify_bundle`).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use sigil::model::identity::{IdentityRule, TextMatcher};
use sigil::trust::TrustMaterial;
use sigil::verify::bundle::{
    parse_bundle, verify_bundle, BundleArtifact, BundleChecks, BundleSigner,
};

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance/bundle-verify")
}

/// A conformance case: its bundle, trust root, artifact and signer.
struct Case {
    name: String,
    bundle: Value,
    trust: TrustMaterial,
    signer: BundleSigner,
    artifact: Vec<u8>,
}

fn trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

impl Case {
    fn load(name: &str) -> Case {
        let dir = cases().join(name);
        let root = match trimmed(&dir.join("trusted_root.json")) {
            Some(json) => TrustMaterial::from_json(name, &json).unwrap(),
            None => TrustMaterial::public_good(),
        };
        let signer = match std::fs::read_to_string(dir.join("key.pub")) {
            Ok(pem) => BundleSigner::Key(pem::parse(pem).unwrap().contents().to_vec()),
            Err(_) => BundleSigner::Identity(vec![IdentityRule {
                issuer: TextMatcher::Exact(
                    trimmed(&dir.join("issuer")).unwrap_or(DEFAULT_ISSUER.into()),
                ),
                subject: TextMatcher::Exact(
                    trimmed(&dir.join("identity")).unwrap_or(DEFAULT_IDENTITY.into()),
                ),
                claims: Vec::new(),
            }]),
        };
        let artifact = std::fs::read(dir.join("artifact"))
            .or_else(|_| std::fs::read(cases().join("a.txt")))
            .unwrap();
        let bundle =
            serde_json::from_slice(&std::fs::read(dir.join("bundle.sigstore.json")).unwrap())
                .unwrap();
        Case {
            name: name.into(),
            bundle,
            trust: root,
            signer,
            artifact,
        }
    }

    /// sigil's verdict on `text` in place of this case's bundle.
    fn verdict(&self, text: &str) -> Result<(), String> {
        let strict = parse_bundle(text.as_bytes()).map_err(|e| e.to_string())?;
        verify_bundle(
            &strict,
            &BundleArtifact::Bytes(self.artifact.clone()),
            &self.signer,
            &self.trust,
            BundleChecks::default(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// The case verifies unmutated, and each mutant of it is refused with
    /// the words given.
    fn refuses(&self, mutants: Vec<(&str, String, &str)>) {
        self.verdict(&self.bundle.to_string())
            .unwrap_or_else(|e| panic!("{} must verify unmutated: {e}", self.name));
        for (what, text, says) in mutants {
            match self.verdict(&text) {
                Ok(()) => panic!("{}: {what}: verified, must be refused", self.name),
                Err(e) => assert!(
                    e.contains(says),
                    "{}: {what}: refused, but with {e:?}, not {says:?}",
                    self.name
                ),
            }
        }
    }

    /// This case's bundle with `f` applied.
    fn with(&self, f: impl FnOnce(&mut Value)) -> String {
        let mut b = self.bundle.clone();
        f(&mut b);
        b.to_string()
    }

    fn checkpoint(&self) -> String {
        self.bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
            ["envelope"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// This case's bundle with its checkpoint note replaced by `f(note)`.
    fn note(&self, f: impl FnOnce(&str) -> String) -> String {
        let note = f(&self.checkpoint());
        self.with(|b| {
            b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
                ["envelope"] = json!(note)
        })
    }
}

fn entry(b: &mut Value) -> &mut Value {
    &mut b["verificationMaterial"]["tlogEntries"][0]
}

#[test]
fn the_log_id_names_a_log_of_the_trust_root() {
    let v2 = Case::load("rekor2-happy-path");
    let v1 = Case::load("happy-path-v0.3");
    let public_good = TrustMaterial::public_good();
    let other_log = public_good
        .root
        .tlogs
        .iter()
        .map(|t| B64.encode(t.log_id.key_id.as_bytes()))
        .find(|id| *id != v1.bundle["verificationMaterial"]["tlogEntries"][0]["logId"]["keyId"])
        .unwrap();
    v2.refuses(vec![
        (
            "another log's ID",
            v2.with(|b| entry(b)["logId"]["keyId"] = json!(other_log)),
            "names no log of the trust root",
        ),
        (
            "random bytes",
            v2.with(|b| entry(b)["logId"]["keyId"] = json!(B64.encode([7u8; 32]))),
            "names no log of the trust root",
        ),
        (
            "hex text",
            v2.with(|b| entry(b)["logId"]["keyId"] = json!("ab".repeat(32))),
            "logId.keyId is 48 bytes, not 32",
        ),
    ]);
    v1.refuses(vec![(
        "the public-good Rekor v2 log's ID on a v1 entry",
        v1.with(|b| entry(b)["logId"]["keyId"] = json!(other_log)),
        "the checkpoint carries no signature by the log",
    )]);
}

#[test]
fn checkpoints_are_signed_notes_as_c2sp_writes_them() {
    let v2 = Case::load("rekor2-happy-path");
    let note = v2.checkpoint();
    let origin = note.lines().next().unwrap().to_string();
    let sig_line = note.lines().last().unwrap().to_string();
    v2.refuses(vec![
        (
            "an extra section after the signatures",
            v2.note(|n| format!("{n}\nextra\n")),
            "not a well-formed signed note",
        ),
        (
            "no final newline",
            v2.note(|n| n.trim_end_matches('\n').to_string()),
            "do not end with a newline",
        ),
        (
            "CRLF ending the signature line",
            v2.note(|n| format!("{}\r\n", n.trim_end_matches('\n'))),
            "control character",
        ),
        (
            "a tab",
            v2.note(|n| n.replace("— ", "—\t")),
            "control character",
        ),
        (
            "two spaces",
            v2.note(|n| n.replace("— ", "—  ")),
            "is not valid",
        ),
        (
            "an extra token",
            v2.note(|n| format!("{} extra\n", n.trim_end_matches('\n'))),
            "not standard base64",
        ),
        (
            "a leading space",
            v2.note(|n| n.replace("\n— ", "\n — ")),
            "does not start with",
        ),
        (
            "the log's signature under another name",
            v2.note(|n| n.replace(&format!("— {origin} "), "— other.example ")),
            "under the name",
        ),
        (
            "another origin",
            v2.note(|n| n.replacen(&origin, "evil.example", 1)),
            "a checkpoint signature by the log's key does not verify",
        ),
    ]);
    assert!(sig_line.starts_with("— "));
}

#[test]
fn every_signature_by_the_log_must_verify_and_lines_are_capped() {
    let v2 = Case::load("rekor2-happy-path");
    let last = v2.checkpoint().lines().last().unwrap().to_string();
    let (name, b64) = last["— ".len()..].split_once(' ').unwrap();
    let mut sig = B64.decode(b64).unwrap();
    let n = sig.len();
    sig[n - 1] ^= 1;
    let bad = format!("— {name} {}", B64.encode(&sig));
    v2.refuses(vec![
        (
            "a bad signature by the log's key before a good one",
            v2.note(|n| n.replace(&last, &format!("{bad}\n{last}"))),
            "does not verify",
        ),
        (
            "101 signature lines",
            v2.note(|n| {
                let witness = format!("— witness.example {}\n", B64.encode([1u8; 68]));
                format!("{n}{}", witness.repeat(100))
            }),
            "more than 100 signature lines",
        ),
    ]);
}

#[test]
fn a_bundle_has_one_log_entry_with_a_proof_or_a_promise() {
    let v1 = Case::load("happy-path-v0.3");
    v1.refuses(vec![
        (
            "a duplicate entry",
            v1.with(|b| {
                let e = entry(b).clone();
                b["verificationMaterial"]["tlogEntries"]
                    .as_array_mut()
                    .unwrap()
                    .push(e);
            }),
            "2 transparency-log entries",
        ),
        (
            "an entry with neither proof nor promise",
            v1.with(|b| {
                let e = entry(b).as_object_mut().unwrap();
                e.remove("inclusionProof");
                e.remove("inclusionPromise");
            }),
            "neither an inclusion proof nor an inclusion promise",
        ),
    ]);
}

#[test]
fn encodings_are_protobuf_json_and_nothing_is_unknown() {
    let v2 = Case::load("rekor2-happy-path");
    let hex = |b64: &Value| hex::encode(B64.decode(b64.as_str().unwrap()).unwrap());
    v2.refuses(vec![
        (
            "the root hash in hex",
            v2.with(|b| {
                let h = hex(&entry(b)["inclusionProof"]["rootHash"]);
                entry(b)["inclusionProof"]["rootHash"] = json!(h);
            }),
            "rootHash is 48 bytes, not 32",
        ),
        (
            "a proof hash in hex",
            v2.with(|b| {
                let h = hex(&entry(b)["inclusionProof"]["hashes"][0]);
                entry(b)["inclusionProof"]["hashes"][0] = json!(h);
            }),
            "hashes[0] is 48 bytes, not 32",
        ),
        (
            "no mediaType",
            v2.with(|b| {
                b.as_object_mut().unwrap().remove("mediaType");
            }),
            "mediaType is missing",
        ),
        (
            "an unknown mediaType",
            v2.with(|b| b["mediaType"] = json!("application/vnd.dev.sigstore.bundle.v0.9+json")),
            "is not a bundle version sigil reads",
        ),
        (
            "an unknown field",
            v2.with(|b| b["verificationMaterial"]["extra"] = json!(1)),
            "unknown field `extra`",
        ),
        (
            "a snake_case field",
            v2.with(|b| {
                let m = b.as_object_mut().unwrap().remove("mediaType").unwrap();
                b["media_type"] = m;
            }),
            "unknown field `media_type`",
        ),
        (
            "URL-safe base64",
            v2.with(|b| {
                let s = b["messageSignature"]["signature"].as_str().unwrap();
                let url = s.replace('+', "-").replace('/', "_");
                b["messageSignature"]["signature"] =
                    json!(if url == s { format!("{s}-") } else { url });
            }),
            "not standard base64",
        ),
    ]);
}

/// `text` with `"key":` (the first at that spelling) written twice: once
/// with `value`, then the original.
fn duplicate_key(text: &str, key: &str, value: &Value) -> String {
    let at = text.find(&format!("\"{key}\":")).unwrap();
    format!("{}\"{key}\":{value},{}", &text[..at], &text[at..])
}

#[test]
fn a_oneof_is_set_once_and_no_key_is_written_twice() {
    let v2 = Case::load("rekor2-happy-path");
    let dsse = Case::load("rekor2-dsse-happy-path");
    let text = v2.bundle.to_string();
    let envelope = dsse.bundle["dsseEnvelope"].clone();
    let other_sig = json!({"messageDigest": v2.bundle["messageSignature"]["messageDigest"], "signature": B64.encode([9u8; 70])});
    let other_cert = json!({"rawBytes": B64.encode([1u8; 40])});
    v2.refuses(vec![
        (
            // After messageSignature in the text: a reader taking the first
            // of a oneof verifies the message signature and stops there.
            "messageSignature and then dsseEnvelope",
            format!(
                "{},\"dsseEnvelope\":{envelope}}}",
                text.trim_end().strip_suffix('}').unwrap()
            ),
            "both set",
        ),
        (
            "certificate and publicKey",
            v2.with(|b| b["verificationMaterial"]["publicKey"] = json!({"hint": "x"})),
            "exactly one of publicKey, x509CertificateChain, certificate",
        ),
        (
            "messageSignature written twice",
            duplicate_key(&text, "messageSignature", &other_sig),
            "duplicate field `messageSignature`",
        ),
        (
            "certificate written twice",
            duplicate_key(&text, "certificate", &other_cert),
            "duplicate field `certificate`",
        ),
    ]);
    // A Statement whose subject digest is written twice reads two ways.
    let payload: Value =
        serde_json::from_slice(&B64.decode(envelope["payload"].as_str().unwrap()).unwrap())
            .unwrap();
    let statement = payload.to_string();
    let twice = duplicate_key(&statement, "sha256", &json!("00".repeat(32)));
    dsse.refuses(vec![
        (
            "dsseEnvelope written twice",
            duplicate_key(&dsse.bundle.to_string(), "dsseEnvelope", &envelope),
            "duplicate field `dsseEnvelope`",
        ),
        (
            "a Statement with a key twice",
            dsse.with(|b| b["dsseEnvelope"]["payload"] = json!(B64.encode(twice.as_bytes()))),
            "written twice",
        ),
        (
            "a DSSE envelope with two signatures",
            dsse.with(|b| {
                let s = b["dsseEnvelope"]["signatures"][0].clone();
                b["dsseEnvelope"]["signatures"]
                    .as_array_mut()
                    .unwrap()
                    .push(s);
            }),
            "exactly one",
        ),
    ]);
}

/// The case's RFC 3161 token, re-encoded after `f` changed its SignedData.
fn with_token(c: &Case, f: impl FnOnce(&mut cms::signed_data::SignedData)) -> String {
    use der::{Decode, Encode};
    let der = B64
        .decode(
            c.bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
                ["signedTimestamp"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let mut resp = x509_tsp::TimeStampResp::from_der(&der).unwrap();
    let token = resp.time_stamp_token.as_mut().unwrap();
    let mut signed: cms::signed_data::SignedData = token.content.decode_as().unwrap();
    f(&mut signed);
    token.content = der::Any::encode_from(&signed).unwrap();
    let out = B64.encode(resp.to_der().unwrap());
    c.with(|b| {
        b["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
            ["signedTimestamp"] = json!(out)
    })
}

/// The case's token with its SignerInfo claiming signature algorithm `oid`.
fn claiming(c: &Case, oid: &str) -> String {
    with_token(c, |s| {
        let mut infos: Vec<_> = s.signer_infos.0.as_slice().to_vec();
        infos[0].signature_algorithm.oid = der::oid::ObjectIdentifier::new_unwrap(oid);
        s.signer_infos = cms::signed_data::SignerInfos(infos.try_into().unwrap());
    })
}

#[test]
fn every_signer_info_and_certificate_of_a_timestamp_is_checked() {
    use der::Decode;
    let c = Case::load("rekor2-timestamp-with-embedded-cert");
    let foreign = {
        let pem = rcgen::generate_simple_self_signed(vec!["tsa.evil.example".to_string()])
            .unwrap()
            .cert
            .der()
            .to_vec();
        x509_cert::Certificate::from_der(&pem).unwrap()
    };
    c.refuses(vec![
        (
            "a second, corrupted SignerInfo",
            with_token(&c, |s| {
                // Longer than the first, so it sorts after it in the SET:
                // a reader of the first SignerInfo only sees a good token.
                let mut second = s.signer_infos.0.as_slice()[0].clone();
                let mut sig = second.signature.as_bytes().to_vec();
                sig.extend_from_slice(&[0u8; 8]);
                second.signature = der::asn1::OctetString::new(sig).unwrap();
                s.signer_infos.0.insert(second).unwrap();
            }),
            "2 SignerInfos",
        ),
        (
            "RSA claimed on an ECDSA token",
            claiming(&c, "1.2.840.113549.1.1.13"),
            "claims signature algorithm 1.2.840.113549.1.1.13",
        ),
        (
            "SHA-512 claimed on a SHA-256 ECDSA token",
            claiming(&c, "1.2.840.10045.4.3.4"),
            "whose hash is not its digest algorithm",
        ),
        (
            "an embedded certificate that is not the TSA's",
            with_token(&c, |s| {
                let set = s.certificates.as_mut().unwrap();
                set.0
                    .insert(cms::cert::CertificateChoices::Certificate(foreign))
                    .unwrap();
            }),
            "not the trusted TSA's",
        ),
    ]);
}

#[test]
fn times_and_chains_as_sigstore_go() {
    let v2 = Case::load("rekor2-happy-path");
    let v01 = Case::load("happy-path-v0.1");
    let fulcio_root = TrustMaterial::public_good()
        .root
        .certificate_authorities
        .iter()
        .filter_map(|ca| ca.cert_chain.certificates.last())
        .map(|c| B64.encode(c.raw_bytes.as_bytes()))
        .next_back()
        .unwrap();
    v2.refuses(vec![(
        "an integrated time before the certificate",
        v2.with(|b| entry(b)["integratedTime"] = json!("1000000000")),
        "outside the certificate's validity",
    )]);
    v01.refuses(vec![(
        "the Fulcio root in the chain",
        v01.with(|b| {
            b["verificationMaterial"]["x509CertificateChain"]["certificates"]
                .as_array_mut()
                .unwrap()
                .push(json!({"rawBytes": fulcio_root}))
        }),
        "holds a root certificate",
    )]);
}

#[test]
fn a_rekor_v2_proof_agrees_with_its_entry_and_checkpoint() {
    let v2 = Case::load("rekor2-happy-path");
    v2.refuses(vec![
        (
            "another logIndex in the proof",
            v2.with(|b| {
                let i: u64 = entry(b)["logIndex"].as_str().unwrap().parse().unwrap();
                entry(b)["inclusionProof"]["logIndex"] = json!((i + 1).to_string());
            }),
            "is not the entry's",
        ),
        (
            "another treeSize in the proof",
            v2.with(|b| {
                let s: u64 = entry(b)["inclusionProof"]["treeSize"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                entry(b)["inclusionProof"]["treeSize"] = json!((s + 1).to_string());
            }),
            "tree size or root hash is not its checkpoint's",
        ),
        (
            "another rootHash in the proof",
            v2.with(|b| entry(b)["inclusionProof"]["rootHash"] = json!(B64.encode([3u8; 32]))),
            "is not its checkpoint's",
        ),
        (
            "no TSA timestamp beside a Rekor v2 entry",
            v2.with(|b| {
                b["verificationMaterial"]
                    .as_object_mut()
                    .unwrap()
                    .remove("timestampVerificationData");
            }),
            "a bundle with one needs an RFC 3161 timestamp",
        ),
    ]);
}

/// Every object of `v`, by its path of keys and indices.
fn objects(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            out.push(path.clone());
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                objects(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let mut p = path.clone();
                p.push(i.to_string());
                objects(child, p, out);
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

/// JSON text of `v` with the object at `path`'s key `key` written twice.
fn written_twice(v: &Value, path: &[String], key: &str) -> String {
    fn emit(v: &Value, path: &[String], key: &str, here: bool, out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push('{');
                let mut first = true;
                for (k, child) in m {
                    let mut reps = 1;
                    if here && path.is_empty() && k == key {
                        reps = 2;
                    }
                    for _ in 0..reps {
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push(':');
                        let descend = here && path.first() == Some(k);
                        emit(
                            child,
                            if descend { &path[1..] } else { &[] },
                            key,
                            descend,
                            out,
                        );
                    }
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, child) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let descend = here && path.first().map(String::as_str) == Some(&i.to_string());
                    emit(
                        child,
                        if descend { &path[1..] } else { &[] },
                        key,
                        descend,
                        out,
                    );
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    emit(v, path, key, true, &mut out);
    out
}

/// Mutants made here, beyond the families: for every conformance bundle
/// that must verify, an unknown field added to each of its objects and
/// each key of each object written twice (protobuf JSON refuses both).
/// Every one must be refused; the count is printed for the record.
#[test]
fn generated_mutants_of_every_conformance_bundle_are_refused() {
    let mut made = 0;
    let mut names: Vec<String> = std::fs::read_dir(cases())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("bundle.sigstore.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with("_fail"))
        .collect();
    names.sort();
    for name in &names {
        let c = Case::load(name);
        let mut paths = Vec::new();
        objects(&c.bundle, Vec::new(), &mut paths);
        for path in &paths {
            // Inside the DSSE payload's Statement nothing is an object
            // here (it is base64); every object is protobuf's.
            let mut unknown = c.bundle.clone();
            at(&mut unknown, path)["sigilMutant"] = json!(true);
            let e = c
                .verdict(&unknown.to_string())
                .expect_err(&format!("{name}: unknown field at {path:?} verified"));
            assert!(e.contains("unknown field"), "{name} {path:?}: {e}");
            made += 1;
            let keys: Vec<String> = at(&mut c.bundle.clone(), path)
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            for key in keys {
                let text = written_twice(&c.bundle, path, &key);
                let e = c
                    .verdict(&text)
                    .expect_err(&format!("{name}: {key} twice at {path:?} verified"));
                assert!(e.contains("duplicate field"), "{name} {path:?} {key}: {e}");
                made += 1;
            }
        }
    }
    eprintln!(
        "{made} generated mutants of {} conformance bundles, all refused",
        names.len()
    );
    assert!(made > 500, "only {made} mutants");
}

/// A timestamp carried by cosign's `.sig` annotation (no bundle around
/// it) is read as strictly as a bundle's.
#[test]
fn timestamps_on_cosign_layers_are_read_as_strictly() {
    use der::{Decode, Encode};
    use sigil::verify::cosign::{SignatureLayer, SIGNATURE_ANNOTATION};
    use sigil::verify::keyless::RFC3161_ANNOTATION;
    use sigil::verify::keys::{HashAlgorithm, VerificationKey};
    use sigil::verify::legacy_evidence::verify_key_evidence;
    use sigil_testkit::sigstore::OfflineSigstore;
    use sigil_testkit::{SignatureToAttach, TestKey, TestKeyKind};

    sigil::install_crypto_provider();
    let sigstore = OfflineSigstore::new().unwrap();
    let trust = TrustMaterial::from_json("test", &sigstore.trusted_root_json(None)).unwrap();
    let key = TestKey::generate(TestKeyKind::P256).unwrap();
    let verifying = VerificationKey::from_pem(&key.public_pem, HashAlgorithm::Sha256).unwrap();
    let mut sig = SignatureToAttach::new(
        &key,
        "registry.example/app",
        &format!("sha256:{}", "ab".repeat(32)),
    );
    sigstore
        .timestamp_signature(
            &mut sig,
            std::time::SystemTime::now() - std::time::Duration::from_secs(5),
        )
        .unwrap();
    let layer = |annotation: &str| {
        let mut annotations = sig.annotations.clone();
        annotations.insert(SIGNATURE_ANNOTATION.into(), sig.signature_b64.clone());
        annotations.insert(RFC3161_ANNOTATION.into(), annotation.into());
        SignatureLayer {
            payload: sig.payload.clone(),
            annotations,
        }
    };
    let original = sig.annotations[RFC3161_ANNOTATION].clone();
    verify_key_evidence(&layer(&original), &verifying, &trust, false, true)
        .unwrap_or_else(|e| panic!("the stamped signature must verify: {e}"));

    let token: Value = serde_json::from_str(&original).unwrap();
    let der = B64
        .decode(token["SignedRFC3161Timestamp"].as_str().unwrap())
        .unwrap();
    let mut info = cms::content_info::ContentInfo::from_der(&der).unwrap();
    let mut signed: cms::signed_data::SignedData = info.content.decode_as().unwrap();
    let mut second = signed.signer_infos.0.as_slice()[0].clone();
    let mut bytes = second.signature.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 8]);
    second.signature = der::asn1::OctetString::new(bytes).unwrap();
    signed.signer_infos.0.insert(second).unwrap();
    info.content = der::Any::encode_from(&signed).unwrap();
    let mutated = json!({"SignedRFC3161Timestamp": B64.encode(info.to_der().unwrap())}).to_string();
    let e = verify_key_evidence(&layer(&mutated), &verifying, &trust, false, true)
        .expect_err("a token with a second SignerInfo verified");
    assert!(e.to_string().contains("2 SignerInfos"), "{e}");
}
