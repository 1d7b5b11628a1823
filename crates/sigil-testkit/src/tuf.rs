//! A TUF repository for tests: one ECDSA P-256 key signs every top-level
//! role, and the single target is a `trusted_root.json`. Packs as the
//! base64 tar.gz a `TrustRoot`'s `repository.mirrorFS` holds.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rcgen::{KeyPair, PublicKeyData, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A signed repository's files, by path.
pub struct TestTufRepo {
    /// `root.json`, `1.root.json`, `timestamp.json`, `snapshot.json`,
    /// `targets.json`, `targets/trusted_root.json`.
    pub files: BTreeMap<String, Vec<u8>>,
}

fn signed(key: &KeyPair, keyid: &str, body: Value) -> anyhow::Result<Vec<u8>> {
    let canonical = sigstore_tuf::canonical_json::to_canonical_bytes(&body)?;
    let sig = hex::encode(key.sign(&canonical)?);
    Ok(serde_json::to_vec_pretty(
        &json!({ "signed": body, "signatures": [{ "keyid": keyid, "sig": sig }] }),
    )?)
}

impl TestTufRepo {
    /// A repository serving `trusted_root` whose metadata expires at `expires`.
    pub fn new(trusted_root: &str, expires: jiff::Timestamp) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let public = pem::encode(&pem::Pem::new("PUBLIC KEY", key.subject_public_key_info()));
        let key_json: sigstore_tuf::Key = serde_json::from_value(json!({
            "keytype": "ecdsa",
            "scheme": "ecdsa-sha2-nistp256",
            "keyval": { "public": public },
        }))?;
        let keyid = key_json.key_id()?;
        let expires = expires.to_string();
        let role = json!({ "keyids": [keyid], "threshold": 1 });
        let root = signed(
            &key,
            &keyid,
            json!({
                "_type": "root", "spec_version": "1.0", "version": 1, "expires": expires,
                "consistent_snapshot": false,
                "keys": { keyid.clone(): key_json },
                "roles": { "root": role, "targets": role, "snapshot": role, "timestamp": role },
            }),
        )?;
        let target = trusted_root.as_bytes().to_vec();
        let targets = signed(
            &key,
            &keyid,
            json!({
                "_type": "targets", "spec_version": "1.0", "version": 1, "expires": expires,
                "targets": { "trusted_root.json": {
                    "length": target.len(),
                    "hashes": { "sha256": hex::encode(Sha256::digest(&target)) },
                } },
            }),
        )?;
        let snapshot = signed(
            &key,
            &keyid,
            json!({
                "_type": "snapshot", "spec_version": "1.0", "version": 1, "expires": expires,
                "meta": { "targets.json": { "version": 1 } },
            }),
        )?;
        let timestamp = signed(
            &key,
            &keyid,
            json!({
                "_type": "timestamp", "spec_version": "1.0", "version": 1, "expires": expires,
                "meta": { "snapshot.json": { "version": 1 } },
            }),
        )?;
        let mut files = BTreeMap::new();
        files.insert("root.json".to_string(), root.clone());
        files.insert("1.root.json".to_string(), root);
        files.insert("targets.json".to_string(), targets);
        files.insert("snapshot.json".to_string(), snapshot);
        files.insert("timestamp.json".to_string(), timestamp);
        files.insert("targets/trusted_root.json".to_string(), target);
        Ok(TestTufRepo { files })
    }

    /// base64 of `root.json` (a TrustRoot's `root`).
    pub fn root_b64(&self) -> String {
        B64.encode(&self.files["root.json"])
    }

    /// base64 of a tar.gz of the repository under `repository/` (a
    /// TrustRoot's `mirrorFS`).
    pub fn mirror_fs_b64(&self) -> anyhow::Result<String> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, bytes) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, format!("repository/{path}"), bytes.as_slice())?;
        }
        let gz = builder.into_inner()?.finish()?;
        Ok(B64.encode(gz))
    }
}
