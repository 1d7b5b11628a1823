//! A strict reading of Sigstore bundle JSON, in front of `sigstore-verify`,
//! so that what sigil verifies is the only reading of the bytes and no
//! bundle passes that sigstore-go or sigstore-python refuses.
//!
//! [`read`] parses the bundle with a model of protobuf-specs' `Bundle` that
//! refuses duplicate keys, unknown fields, a oneof set twice, a missing or
//! unknown `mediaType`, bytes that are not standard base64 and hashes of
//! the wrong length (hex written where base64 belongs), more than one
//! transparency-log entry, an entry with neither inclusion proof nor
//! promise, and a DSSE envelope without exactly one signature; only then is
//! it handed to the crate's parser. [`check_against`] adds what the crate
//! leaves out against the trust root: the entry's `logId` names a log of
//! the root; its checkpoint is a well-formed C2SP signed note whose every
//! signature line by that log's key verifies, named as the log and at most
//! 100 lines; a Rekor v2 proof agrees with its checkpoint and entry and
//! comes with a TSA timestamp; no root certificate in the chain; the
//! entry's integrated time inside the certificate's validity; a timestamp
//! token with one SignerInfo, whose algorithm fits the TSA's key and whose
//! embedded certificates are the trusted TSA's.
//!
//! It owns no policy and no network; it runs once per bundle fetched (the
//! verdict cache keeps the warm path clear of it).

mod facts;
mod json;
mod model;
mod note;
mod root;

use sigstore_types::Bundle;

pub use facts::{EntryFacts, StrictFacts};
pub use json::unique_keys;
pub use note::{SignedNote, MAX_NOTE_SIGNATURES};
pub use root::{check_against, check_timestamp};

use model::{bytes, hash, JBundle, JEntry, JEnvelope};

/// The media types of the bundle versions sigil reads.
const MEDIA_TYPES: [(&str, Version); 4] = [
    (
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        Version::V01,
    ),
    (
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        Version::V02,
    ),
    (
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        Version::V03,
    ),
    (
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        Version::V03,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V01,
    V02,
    V03,
}

/// A bundle read strictly: the crate's model of it, and the facts.
pub struct StrictBundle {
    /// The crate's parse of the same bytes.
    pub bundle: Bundle,
    /// What the trust-root checks read.
    pub facts: StrictFacts,
}

/// Reads bundle JSON strictly, then with the crate; `Err` names what is
/// wrong.
pub fn read(json: &[u8]) -> Result<StrictBundle, String> {
    let model: JBundle = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let facts = facts_of(&model)?;
    let bundle: Bundle = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    Ok(StrictBundle { bundle, facts })
}

fn facts_of(b: &JBundle) -> Result<StrictFacts, String> {
    let media_type = b.media_type.as_deref().ok_or("mediaType is missing")?;
    let version = MEDIA_TYPES
        .iter()
        .find(|(m, _)| *m == media_type)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("mediaType {media_type:?} is not a bundle version sigil reads"))?;
    let m = b
        .verification_material
        .as_ref()
        .ok_or("verificationMaterial is missing")?;
    match (&b.message_signature, &b.dsse_envelope) {
        (Some(_), Some(_)) => {
            return Err("messageSignature and dsseEnvelope are both set (a oneof)".into())
        }
        (None, None) => return Err("neither messageSignature nor dsseEnvelope is set".into()),
        (Some(s), None) => {
            bytes("messageSignature.signature", &s.signature)?;
            if let Some(d) = &s.message_digest {
                let len = match d.algorithm.as_str() {
                    "SHA2_256" => 32,
                    "SHA2_384" => 48,
                    "SHA2_512" => 64,
                    other => {
                        return Err(format!(
                            "messageSignature.messageDigest.algorithm {other:?} is not one of SHA2_256, SHA2_384, SHA2_512"
                        ))
                    }
                };
                hash("messageSignature.messageDigest.digest", &d.digest, len)?;
            }
        }
        (None, Some(e)) => envelope(e, "dsseEnvelope")?,
    }
    let set = [
        m.public_key.is_some(),
        m.x509_certificate_chain.is_some(),
        m.certificate.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        return Err(format!(
            "verificationMaterial must set exactly one of publicKey, x509CertificateChain, certificate; {set} are set"
        ));
    }
    let mut facts = StrictFacts::default();
    if let Some(chain) = &m.x509_certificate_chain {
        if version >= Version::V03 {
            return Err(
                "x509CertificateChain is not allowed in a v0.3 bundle (certificate is)".into(),
            );
        }
        if chain.certificates.is_empty() {
            return Err("x509CertificateChain.certificates is empty".into());
        }
        for (i, c) in chain.certificates.iter().enumerate() {
            facts.certificates.push(bytes(
                &format!("x509CertificateChain.certificates[{i}].rawBytes"),
                &c.raw_bytes,
            )?);
        }
    }
    if let Some(c) = &m.certificate {
        facts
            .certificates
            .push(bytes("certificate.rawBytes", &c.raw_bytes)?);
    }
    let entries = m.tlog_entries.as_deref().unwrap_or_default();
    if entries.len() > 1 {
        return Err(format!(
            "{} transparency-log entries; a bundle has one (sigstore-go refuses duplicates)",
            entries.len()
        ));
    }
    if let Some(e) = entries.first() {
        facts.entry = Some(entry(e, version)?);
    }
    if let Some(t) = &m.timestamp_verification_data {
        for (i, ts) in t
            .rfc3161_timestamps
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            facts.timestamps.push(bytes(
                &format!("rfc3161Timestamps[{i}].signedTimestamp"),
                &ts.signed_timestamp,
            )?);
        }
    }
    Ok(facts)
}

fn entry(e: &JEntry, version: Version) -> Result<EntryFacts, String> {
    let f = "tlogEntries[0]";
    let kind = e
        .kind_version
        .as_ref()
        .ok_or_else(|| format!("{f}.kindVersion is missing"))?;
    let mut facts = EntryFacts {
        log_id: hash(
            &format!("{f}.logId.keyId"),
            &e.log_id
                .as_ref()
                .ok_or_else(|| format!("{f}.logId is missing"))?
                .key_id,
            32,
        )?,
        log_index: e
            .log_index
            .as_ref()
            .ok_or_else(|| format!("{f}.logIndex is missing"))?
            .unsigned(&format!("{f}.logIndex"))?,
        integrated_time: match &e.integrated_time {
            Some(t) => t.value(&format!("{f}.integratedTime"))?,
            None => 0,
        },
        kind: kind.kind.clone(),
        version: kind.version.clone(),
        proof: None,
    };
    if facts.integrated_time < 0 {
        return Err(format!("{f}.integratedTime is negative"));
    }
    bytes(
        &format!("{f}.canonicalizedBody"),
        e.canonicalized_body
            .as_deref()
            .ok_or_else(|| format!("{f}.canonicalizedBody is missing"))?,
    )?;
    if let Some(p) = &e.inclusion_promise {
        bytes(
            &format!("{f}.inclusionPromise.signedEntryTimestamp"),
            &p.signed_entry_timestamp,
        )?;
    }
    match (&e.inclusion_proof, &e.inclusion_promise) {
        (None, None) => {
            return Err(format!(
                "{f} has neither an inclusion proof nor an inclusion promise"
            ))
        }
        (None, Some(_)) if version >= Version::V02 => {
            return Err(format!(
                "{f} has no inclusion proof, which a v0.2 or later bundle must have"
            ))
        }
        (_, None) if version == Version::V01 => {
            return Err(format!(
                "{f} has no inclusion promise, which a v0.1 bundle must have"
            ))
        }
        _ => {}
    }
    if let Some(p) = &e.inclusion_proof {
        let pf = format!("{f}.inclusionProof");
        for (i, h) in p.hashes.as_deref().unwrap_or_default().iter().enumerate() {
            hash(&format!("{pf}.hashes[{i}]"), h, 32)?;
        }
        let root = hash(
            &format!("{pf}.rootHash"),
            p.root_hash
                .as_deref()
                .ok_or_else(|| format!("{pf}.rootHash is missing"))?,
            32,
        )?;
        let index = p
            .log_index
            .as_ref()
            .ok_or_else(|| format!("{pf}.logIndex is missing"))?
            .unsigned(&format!("{pf}.logIndex"))?;
        let size = p
            .tree_size
            .as_ref()
            .ok_or_else(|| format!("{pf}.treeSize is missing"))?
            .unsigned(&format!("{pf}.treeSize"))?;
        let checkpoint = p
            .checkpoint
            .as_ref()
            .ok_or_else(|| format!("{pf}.checkpoint is missing"))?
            .envelope
            .clone();
        facts.proof = Some((index, size, root, checkpoint));
    }
    Ok(facts)
}

fn envelope(e: &JEnvelope, at: &str) -> Result<(), String> {
    let payload = bytes(&format!("{at}.payload"), &e.payload)?;
    if e.payload_type == "application/vnd.in-toto+json" {
        unique_keys(&payload).map_err(|m| format!("{at}.payload: {m}"))?;
    }
    if e.payload_type.is_empty() {
        return Err(format!("{at}.payloadType is empty"));
    }
    if e.signatures.len() != 1 {
        return Err(format!(
            "{at} has {} signatures; a Sigstore DSSE envelope has exactly one",
            e.signatures.len()
        ));
    }
    bytes(&format!("{at}.signatures[0].sig"), &e.signatures[0].sig)?;
    Ok(())
}

/// Reads a DSSE envelope strictly (a `.att` layer, a bundle's envelope):
/// no unknown field, no key twice, bytes in standard base64, one signature.
pub fn check_envelope(json: &[u8]) -> Result<(), String> {
    let e: JEnvelope = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    envelope(&e, "envelope")
}
