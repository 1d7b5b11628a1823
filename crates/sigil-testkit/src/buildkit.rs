//! Image indexes as `docker buildx build --provenance=true --sbom=true
//! --platform linux/amd64,linux/arm64 --push` writes them: a platform
//! manifest per platform and, beside each, an attestation manifest
//! (`vnd.docker.reference.type: attestation-manifest`,
//! `vnd.docker.reference.digest: <platform manifest>`, platform
//! `unknown/unknown`) whose layers are in-toto Statements v0.1
//! (`application/vnd.in-toto+json`, annotated `in-toto.io/predicate-type`)
//! about that platform manifest (subject `pkg:docker/<repo>@<tag>?platform=…`).
//! Every part can be bent for the tampering cases.

use std::collections::BTreeMap;

use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// SLSA provenance v0.2, BuildKit's default.
pub const SLSA_V02: &str = "https://slsa.dev/provenance/v0.2";
/// SLSA provenance v1 (`--provenance=mode=max,version=v1`).
pub const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
/// SPDX, BuildKit's SBOM format.
pub const SPDX: &str = "https://spdx.dev/Document";

/// One Statement to file in a platform's attestation manifest.
#[derive(Debug, Clone)]
pub struct InIndexStatement {
    /// Its predicate type (also the layer's annotation, unless bent).
    pub predicate_type: String,
    /// Its predicate.
    pub predicate: Value,
    /// The subject digest; `None`: the platform manifest's (as BuildKit).
    pub subject: Option<String>,
    /// The layer's `in-toto.io/predicate-type`; `None`: `predicate_type`.
    pub annotated_type: Option<String>,
}

impl InIndexStatement {
    /// A Statement as BuildKit writes it.
    pub fn new(predicate_type: &str, predicate: Value) -> Self {
        InIndexStatement {
            predicate_type: predicate_type.to_string(),
            predicate,
            subject: None,
            annotated_type: None,
        }
    }
}

/// One platform of the index.
#[derive(Debug, Clone)]
pub struct PlatformSpec {
    /// `amd64`, `arm64`, …
    pub arch: String,
    /// Its Statements (none: no attestation manifest for it).
    pub statements: Vec<InIndexStatement>,
    /// What its attestation manifest's `vnd.docker.reference.digest`
    /// names; `None`: the platform manifest (as BuildKit).
    pub refers_to: Option<String>,
}

impl PlatformSpec {
    /// A platform with BuildKit's default attestations: SLSA provenance
    /// v0.2 by `builder` and an SPDX SBOM.
    pub fn with_provenance_and_sbom(arch: &str, builder: &str) -> Self {
        PlatformSpec {
            arch: arch.to_string(),
            statements: vec![
                InIndexStatement::new(SLSA_V02, provenance_v02(builder)),
                InIndexStatement::new(SPDX, spdx(arch)),
            ],
            refers_to: None,
        }
    }
}

/// SLSA provenance v0.2 as BuildKit writes it (the parts policies read).
pub fn provenance_v02(builder: &str) -> Value {
    json!({
        "builder": {"id": builder},
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": [{"uri": "pkg:docker/docker/dockerfile@1", "digest": {"sha256": "0".repeat(64)}}],
        "invocation": {"configSource": {"entryPoint": "Dockerfile"}, "parameters": {"frontend": "dockerfile.v0"}},
        "metadata": {"buildInvocationID": "q2w3e4", "completeness": {"parameters": true, "environment": true, "materials": false}, "reproducible": false},
    })
}

/// SLSA provenance v1 as BuildKit writes it.
pub fn provenance_v1(builder: &str) -> Value {
    json!({
        "buildDefinition": {"buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md", "externalParameters": {"request": {"frontend": "dockerfile.v0"}}, "resolvedDependencies": []},
        "runDetails": {"builder": {"id": builder}, "metadata": {"invocationID": "q2w3e4"}},
    })
}

/// A small SPDX document as BuildKit's SBOM generator writes it.
pub fn spdx(arch: &str) -> Value {
    json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("sbom-{arch}"),
        "creationInfo": {"creators": ["Tool: buildkit-syft-scanner"], "created": "2026-12-01T00:00:00Z"},
        "packages": [{"name": "busybox", "SPDXID": "SPDXRef-busybox", "versionInfo": "1.36.1"}],
    })
}

/// What was pushed.
#[derive(Debug, Clone)]
pub struct BuildkitIndex {
    /// The index's digest (what is signed and admitted).
    pub digest: String,
    /// (arch, platform manifest digest).
    pub platforms: Vec<(String, String)>,
    /// The attestation manifests' digests.
    pub attestation_manifests: Vec<String>,
}

/// Pushes an index at `reference` (a tag) over `platforms`.
pub async fn push_buildkit_index(
    client: &Client,
    reference: &Reference,
    platforms: &[PlatformSpec],
) -> anyhow::Result<BuildkitIndex> {
    let auth = RegistryAuth::Anonymous;
    let (registry, repository) = (reference.registry(), reference.repository());
    let tag = reference.tag().unwrap_or("latest");
    let mut entries = Vec::new();
    let mut pushed = BuildkitIndex {
        digest: String::new(),
        platforms: Vec::new(),
        attestation_manifests: Vec::new(),
    };
    let mut platform_entries = Vec::new();
    for p in platforms {
        let at = Reference::with_tag(
            registry.into(),
            repository.into(),
            format!("{tag}-{}", p.arch),
        );
        let digest = crate::push_image(client, &at).await?;
        let by_digest = Reference::with_digest(registry.into(), repository.into(), digest.clone());
        let (raw, _) = client
            .pull_manifest_raw(&by_digest, &auth, &[OCI_IMAGE_MEDIA_TYPE])
            .await?;
        platform_entries.push(json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": digest, "size": raw.len(),
            "platform": {"architecture": p.arch, "os": "linux"},
        }));
        pushed.platforms.push((p.arch.clone(), digest));
    }
    entries.extend(platform_entries);
    for (p, (arch, digest)) in platforms.iter().zip(pushed.platforms.clone()) {
        if p.statements.is_empty() {
            continue;
        }
        let layers: Vec<(Vec<u8>, BTreeMap<String, String>)> = p
            .statements
            .iter()
            .map(|s| {
                let subject = s.subject.clone().unwrap_or_else(|| digest.clone());
                let statement = json!({
                    "_type": "https://in-toto.io/Statement/v0.1",
                    "predicateType": s.predicate_type,
                    "subject": [{
                        "name": format!("pkg:docker/{registry}/{repository}@{tag}?platform=linux%2F{arch}"),
                        "digest": {"sha256": subject.trim_start_matches("sha256:")},
                    }],
                    "predicate": s.predicate,
                });
                let annotations = BTreeMap::from([(
                    "in-toto.io/predicate-type".to_string(),
                    s.annotated_type.clone().unwrap_or_else(|| s.predicate_type.clone()),
                )]);
                (serde_json::to_vec(&statement).unwrap_or_default(), annotations)
            })
            .collect();
        let (manifest_digest, size) =
            push_attestation_manifest(client, registry, repository, layers).await?;
        entries.push(json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": manifest_digest, "size": size,
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {
                "vnd.docker.reference.digest": p.refers_to.clone().unwrap_or_else(|| digest.clone()),
                "vnd.docker.reference.type": "attestation-manifest",
            },
        }));
        pushed.attestation_manifests.push(manifest_digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": entries,
    }))?;
    pushed.digest = format!("sha256:{}", hex::encode(Sha256::digest(&index)));
    client
        .push_manifest_raw(
            reference,
            index,
            http::HeaderValue::from_static(OCI_IMAGE_INDEX_MEDIA_TYPE),
        )
        .await?;
    Ok(pushed)
}

/// Pushes an attestation manifest (a config BuildKit writes for
/// compatibility, then the Statement layers) by digest; returns its digest
/// and size.
async fn push_attestation_manifest(
    client: &Client,
    registry: &str,
    repository: &str,
    layers: Vec<(Vec<u8>, BTreeMap<String, String>)>,
) -> anyhow::Result<(String, usize)> {
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|(data, ann)| {
            ImageLayer::new(data, "application/vnd.in-toto+json".to_string(), Some(ann))
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.sha256_digest()).collect();
    let config = json!({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let config = Config::oci_v1(serde_json::to_vec(&config)?, None);
    let manifest = OciImageManifest::build(&layers, &config, None);
    let somewhere = Reference::with_tag(registry.into(), repository.into(), "unused".into());
    for (layer, desc) in layers.iter().zip(&manifest.layers) {
        client
            .push_blob(&somewhere, layer.data.clone(), &desc.digest)
            .await?;
    }
    client
        .push_blob(&somewhere, config.data.clone(), &manifest.config.digest)
        .await?;
    let bytes = serde_json::to_vec(&manifest)?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let size = bytes.len();
    let by_digest = Reference::with_digest(registry.into(), repository.into(), digest.clone());
    client
        .push_manifest_raw(
            &by_digest,
            bytes,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await?;
    Ok((digest, size))
}
