//! The checks `sigstore-verify` leaves out, against the trust root: the
//! entry's log is the root's and signs its checkpoint, a Rekor v2 proof
//! agrees with its entry, times, chains and timestamp tokens. Reads the
//! facts [`super::read`] gathered against the root's, prepared once
//! when the root loads ([`RootFacts`]); no I/O.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::facts::StrictFacts;
use super::note::SignedNote;
use crate::trust::RootFacts;

/// The checks the crate leaves out, against the trust root's facts.
pub fn check_against(facts: &StrictFacts, root: &RootFacts) -> Result<(), String> {
    if let Some(e) = &facts.entry {
        let log = root
            .logs
            .iter()
            .find(|l| l.key_id == e.log_id)
            .ok_or_else(|| {
                format!(
                    "the transparency-log entry's logId {} names no log of the trust root",
                    B64.encode(&e.log_id)
                )
            })?;
        if let Some((index, size, proof_root, checkpoint)) = &e.proof {
            let note = SignedNote::parse(checkpoint)?;
            note.verify_by(log)?;
            let (origin, note_size, note_root) = note.checkpoint()?;
            if origin != log.name && !origin.starts_with(&format!("{} - ", log.name)) {
                return Err(format!(
                    "the checkpoint's origin {origin:?} is not the log {:?}",
                    log.name
                ));
            }
            // Rekor v1 shards its log: the proof's index is in the shard's
            // tree, the entry's across shards. Rekor v2 has one tree, and
            // its proof must agree with the entry (as sigstore-python asks;
            // sigstore-go ignores the proof's copy).
            if e.is_rekor_v2() && *index != e.log_index {
                return Err(format!(
                    "the inclusion proof's logIndex {index} is not the entry's {}",
                    e.log_index
                ));
            }
            if *size != note_size || *proof_root != note_root {
                return Err(
                    "the inclusion proof's tree size or root hash is not its checkpoint's".into(),
                );
            }
            if *index >= *size {
                return Err(format!(
                    "the inclusion proof's logIndex {index} is outside its tree of {size}"
                ));
            }
        }
        if e.is_rekor_v2() && facts.timestamps.is_empty() {
            return Err("a Rekor v2 entry carries no signed time; a bundle with one needs an RFC 3161 timestamp".into());
        }
        if e.integrated_time > 0 {
            if let Some(leaf) = facts.certificates.first() {
                within_validity(leaf, e.integrated_time)?;
            }
        }
    }
    for (i, der) in facts.certificates.iter().enumerate().skip(1) {
        if self_signed(der) {
            return Err(format!(
                "the certificate chain holds a root certificate (certificate {i}); a bundle's chain stops below the root"
            ));
        }
    }
    for token in &facts.timestamps {
        check_token(token, &root.tsa_certificates)?;
    }
    Ok(())
}

fn within_validity(leaf: &[u8], at: i64) -> Result<(), String> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(leaf)
        .map_err(|e| format!("the certificate is not DER: {e}"))?;
    let v = &cert.tbs_certificate.validity;
    let from = v.not_before.to_unix_duration().as_secs() as i64;
    let to = v.not_after.to_unix_duration().as_secs() as i64;
    if at < from || at > to {
        return Err(format!(
            "the transparency-log entry's integrated time {at} is outside the certificate's validity ({from} to {to})"
        ));
    }
    Ok(())
}

fn self_signed(der: &[u8]) -> bool {
    use der::Decode;
    x509_cert::Certificate::from_der(der)
        .map(|c| c.tbs_certificate.issuer == c.tbs_certificate.subject)
        .unwrap_or(false)
}

/// An RFC 3161 timestamp (a TimeStampResp or a bare token) against the
/// trust root's TSAs: for timestamps carried outside a bundle (cosign's
/// `.sig`/`.att` annotation).
pub fn check_timestamp(token: &[u8], root: &RootFacts) -> Result<(), String> {
    check_token(token, &root.tsa_certificates)
}

/// An RFC 3161 token: one SignerInfo, an algorithm that fits the TSA key,
/// and embedded certificates that are the trusted TSA's own.
fn check_token(token: &[u8], trusted: &[Vec<u8>]) -> Result<(), String> {
    use cms::content_info::ContentInfo;
    use cms::signed_data::SignedData;
    use der::{Decode, Encode};
    // A bundle holds the TSA's whole TimeStampResp (as sigstore-go reads
    // it); a bare token (ContentInfo) is read too.
    let info = match x509_tsp::TimeStampResp::from_der(token) {
        Ok(resp) => resp
            .time_stamp_token
            .ok_or("the RFC 3161 timestamp response holds no token")?,
        Err(_) => ContentInfo::from_der(token)
            .map_err(|e| format!("the RFC 3161 timestamp is not DER: {e}"))?,
    };
    let signed: SignedData = info
        .content
        .decode_as()
        .map_err(|e| format!("the RFC 3161 timestamp is not SignedData: {e}"))?;
    let signers = signed.signer_infos.0.len();
    if signers != 1 {
        return Err(format!(
            "the RFC 3161 timestamp has {signers} SignerInfos; a TSA signs with one"
        ));
    }
    let mut embedded = Vec::new();
    if let Some(set) = &signed.certificates {
        for c in set.0.iter() {
            match c {
                cms::cert::CertificateChoices::Certificate(cert) => embedded.push(
                    cert.to_der()
                        .map_err(|e| format!("an embedded TSA certificate: {e}"))?,
                ),
                _ => return Err("the RFC 3161 timestamp embeds a non-X.509 certificate".into()),
            }
        }
    }
    for c in &embedded {
        if !trusted.iter().any(|t| t == c) {
            return Err(
                "the RFC 3161 timestamp embeds a certificate that is not the trusted TSA's".into(),
            );
        }
    }
    let signer = &signed.signer_infos.0.as_slice()[0];
    let algorithm = signer.signature_algorithm.oid.to_string();
    // A signature algorithm that names its hash must name the SignerInfo's
    // digest algorithm: a verifier using the declared one (sigstore-go)
    // and one using the digest (or the key's default) then agree.
    let named_hash = match algorithm.as_str() {
        "1.2.840.10045.4.3.2" | "1.2.840.113549.1.1.11" => Some("2.16.840.1.101.3.4.2.1"),
        "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" => Some("2.16.840.1.101.3.4.2.2"),
        "1.2.840.10045.4.3.4" | "1.2.840.113549.1.1.13" => Some("2.16.840.1.101.3.4.2.3"),
        _ => None,
    };
    let digest = signer.digest_alg.oid.to_string();
    if let Some(hash) = named_hash {
        if digest != hash {
            return Err(format!(
                "the RFC 3161 timestamp claims signature algorithm {algorithm}, whose hash is not its digest algorithm {digest}"
            ));
        }
    }
    // The TSA's key type: the trusted leaf's (the first certificate of a
    // chain whose key the embedded leaf, if any, repeats).
    let leaf = embedded.first().or_else(|| trusted.first());
    if let Some(leaf) = leaf {
        let cert = x509_cert::Certificate::from_der(leaf)
            .map_err(|e| format!("the TSA certificate is not DER: {e}"))?;
        let key = cert
            .tbs_certificate
            .subject_public_key_info
            .algorithm
            .oid
            .to_string();
        let fits = match key.as_str() {
            // id-ecPublicKey: ecdsa-with-SHA256/384/512.
            "1.2.840.10045.2.1" => {
                algorithm.starts_with("1.2.840.10045.4.3.") || algorithm == "1.2.840.10045.2.1"
            }
            // rsaEncryption: it, or sha*WithRSAEncryption, or RSASSA-PSS.
            "1.2.840.113549.1.1.1" => algorithm.starts_with("1.2.840.113549.1.1."),
            // Ed25519.
            "1.3.101.112" => algorithm == "1.3.101.112",
            _ => true,
        };
        if !fits {
            return Err(format!(
                "the RFC 3161 timestamp claims signature algorithm {algorithm}, which a {key} key does not make"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::KnownLog;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use sha2::Digest;

    /// A Rekor v2 entry whose checkpoint (origin, size 1, a zero root) the
    /// log `log.example` signs under `name`; a TSA timestamp beside it.
    fn signed(origin: &str, name: &str) -> (StrictFacts, RootFacts) {
        let key = Ed25519KeyPair::generate().unwrap();
        let der = key.public_key().as_der().unwrap().as_ref().to_vec();
        let key_id = sha2::Sha256::digest(&der).to_vec();
        let root = [0u8; 32];
        let text = format!("{origin}\n1\n{}\n", B64.encode(root));
        let mut sig = key_id[..4].to_vec();
        sig.extend_from_slice(key.sign(text.as_bytes()).as_ref());
        let note = format!("{text}\n— {name} {}\n", B64.encode(sig));
        let entry = crate::verify::strict_bundle::EntryFacts {
            log_id: key_id.clone(),
            log_index: 0,
            integrated_time: 0,
            kind: "hashedrekord".into(),
            version: "0.0.2".into(),
            proof: Some((0, 1, root.to_vec(), note)),
        };
        let facts = StrictFacts {
            entry: Some(entry),
            certificates: Vec::new(),
            timestamps: Vec::new(),
        };
        let logs = vec![KnownLog {
            key_id,
            name: "log.example".into(),
            key_der: der,
        }];
        (
            facts,
            RootFacts {
                logs,
                tsa_certificates: Vec::new(),
            },
        )
    }

    #[test]
    fn the_checkpoint_is_the_named_logs_and_by_its_origin() {
        // Signed right, it passes as far as the missing TSA timestamp.
        let (facts, root) = signed("log.example", "log.example");
        let e = check_against(&facts, &root).unwrap_err();
        assert!(e.contains("needs an RFC 3161 timestamp"), "{e}");
        // The log's key under another name.
        let (facts, root) = signed("log.example", "other.example");
        let e = check_against(&facts, &root).unwrap_err();
        assert!(e.contains("under the name \"other.example\""), "{e}");
        // Another origin, signed by the log's own key.
        let (facts, root) = signed("evil.example", "log.example");
        let e = check_against(&facts, &root).unwrap_err();
        assert!(e.contains("origin \"evil.example\" is not the log"), "{e}");
        // Rekor v1's origin form is the log's.
        let (facts, root) = signed("log.example - 1234", "log.example");
        let e = check_against(&facts, &root).unwrap_err();
        assert!(e.contains("needs an RFC 3161 timestamp"), "{e}");
    }
}
