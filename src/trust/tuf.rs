//! TUF-distributed trusted roots for `TrustRoot` resources: `repository` (an
//! air-gapped repository shipped as a base64 tar.gz, verified entirely
//! offline) and `remote` (a TUF mirror, the only case where sigil goes to the
//! network for trust). Both start from the `root.json` the resource pins and
//! run the full TUF client workflow of `sigstore-tuf` (root rotation,
//! timestamp → snapshot → targets, expiry, threshold signatures, target
//! hashes) before the `trusted_root.json` target is used.

use std::collections::BTreeMap;
use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sigstore_tuf::transport::FetchFuture;
use sigstore_tuf::{Repository, Updater};

/// The target that holds the protobuf-specs trusted root.
pub const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";

/// Largest unpacked repository accepted.
use crate::limits::MAX_TUF_REPOSITORY_BYTES as MAX_REPOSITORY_BYTES;

/// A TUF repository held in memory: metadata by file name, targets under
/// `targets_dir`.
#[derive(Debug, Clone, Default)]
pub struct MemoryRepository {
    files: BTreeMap<String, Vec<u8>>,
    targets_dir: String,
}

impl MemoryRepository {
    /// Unpacks `mirrorFS` (base64 of a tar.gz). The repository's top is the
    /// directory holding `root.json` (policy-controller's archives put it at
    /// the top or under one directory).
    pub fn from_mirror_fs(b64: &str, targets_dir: Option<&str>) -> Result<Self, String> {
        let compressed = B64
            .decode(b64.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        let decoder = flate2::read::GzDecoder::new(compressed.as_slice());
        let mut archive = tar::Archive::new(decoder.take(MAX_REPOSITORY_BYTES));
        let mut raw = BTreeMap::new();
        for entry in archive
            .entries()
            .map_err(|e| format!("not a tar.gz: {e}"))?
        {
            let mut entry = entry.map_err(|e| format!("not a tar.gz: {e}"))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| format!("bad path in archive: {e}"))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            raw.insert(path, bytes);
        }
        let top = raw
            .keys()
            .filter(|p| p.ends_with("root.json") && !p.contains("/targets/"))
            .map(|p| {
                p.rsplit_once('/')
                    .map(|(d, _)| format!("{d}/"))
                    .unwrap_or_default()
            })
            .min_by_key(|d| d.len())
            .ok_or("the archive holds no root.json")?;
        let files = raw
            .into_iter()
            .filter_map(|(p, b)| p.strip_prefix(&top).map(|p| (p.to_string(), b)))
            .collect();
        Ok(MemoryRepository {
            files,
            targets_dir: targets_dir
                .filter(|t| !t.is_empty())
                .unwrap_or("targets")
                .trim_matches('/')
                .to_string(),
        })
    }

    /// From files already in memory (tests, tools).
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> Self {
        MemoryRepository {
            files,
            targets_dir: "targets".into(),
        }
    }

    fn get(&self, name: &str, max_length: u64) -> sigstore_tuf::Result<Option<Vec<u8>>> {
        match self.files.get(name) {
            Some(b) if b.len() as u64 > max_length => Err(sigstore_tuf::Error::transport(format!(
                "{name} is larger than {max_length} bytes"
            ))),
            other => Ok(other.cloned()),
        }
    }
}

impl Repository for MemoryRepository {
    fn fetch_metadata<'a>(&'a self, name: &'a str, max_length: u64) -> FetchFuture<'a> {
        Box::pin(async move { self.get(name, max_length) })
    }

    fn fetch_target<'a>(&'a self, path: &'a str, max_length: u64) -> FetchFuture<'a> {
        Box::pin(async move { self.get(&format!("{}/{path}", self.targets_dir), max_length) })
    }
}

/// Runs the TUF client from `root_json` over `repo` and returns the verified
/// `trusted_root.json` target.
pub async fn fetch_trusted_root(
    repo: impl Repository + 'static,
    root_json: &[u8],
) -> Result<String, String> {
    let now = jiff::Timestamp::now();
    let mut updater = Updater::new(repo, root_json).map_err(|e| format!("root: {e}"))?;
    updater
        .refresh(now)
        .await
        .map_err(|e| format!("TUF metadata does not verify: {e}"))?;
    let bytes = updater
        .get_target(TRUSTED_ROOT_TARGET, now)
        .await
        .map_err(|e| format!("target {TRUSTED_ROOT_TARGET}: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("target {TRUSTED_ROOT_TARGET} is not text"))
}

/// Decodes a pinned `root` field (base64 of `root.json`).
pub fn decode_root(b64: &str) -> Result<Vec<u8>, String> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    sigstore_tuf::TrustedMetadataSet::from_root(&bytes)
        .map_err(|e| format!("not a valid TUF root: {e}"))?;
    Ok(bytes)
}

/// The air-gapped case: everything is in the resource, nothing is fetched.
pub fn trusted_root_from_repository(
    root_b64: &str,
    mirror_fs: &str,
    targets: Option<&str>,
) -> Result<String, (String, String)> {
    let root = decode_root(root_b64).map_err(|e| ("spec.repository.root".to_string(), e))?;
    let repo = MemoryRepository::from_mirror_fs(mirror_fs, targets)
        .map_err(|e| ("spec.repository.mirrorFS".to_string(), e))?;
    // The repository is in memory: these futures never wait on I/O.
    futures::executor::block_on(fetch_trusted_root(repo, &root))
        .map_err(|e| ("spec.repository".to_string(), e))
}

/// The remote case: the mirror is fetched over HTTPS.
pub async fn trusted_root_from_remote(
    root_b64: &str,
    mirror: &str,
    targets: Option<&str>,
) -> Result<String, (String, String)> {
    let root = decode_root(root_b64).map_err(|e| ("spec.remote.root".to_string(), e))?;
    let base = mirror.trim_end_matches('/');
    let targets = targets.filter(|t| !t.is_empty()).unwrap_or("targets");
    let repo = sigstore_tuf::HttpRepository::new(base)
        .and_then(|r| r.with_targets_base(&format!("{base}/{}", targets.trim_matches('/'))))
        .map_err(|e| ("spec.remote.mirror".to_string(), e.to_string()))?;
    fetch_trusted_root(repo, &root)
        .await
        .map_err(|e| ("spec.remote".to_string(), e))
}
