//! BuildKit's attestations inside an image index, read as data (pure: no
//! I/O). `docker buildx build --provenance --sbom` stores, beside each
//! platform manifest of the index, an attestation manifest
//! (`vnd.docker.reference.type: attestation-manifest`,
//! `vnd.docker.reference.digest: <the platform manifest>`) whose layers are
//! in-toto Statements (`application/vnd.in-toto+json`, annotated
//! `in-toto.io/predicate-type`).
//!
//! Why they may count: a signature over the index binds the index's bytes,
//! which name each attestation manifest by digest and size, which names
//! each Statement layer by digest and size. Every one of those is fetched by
//! digest and checked against it (the registry client does), so a Statement
//! read this way is exactly what the signer signed, transitively. It counts
//! only for the platform manifest its attestation manifest is for, which
//! must be a platform manifest of the same index, and only when the
//! Statement's own subject names that platform manifest.
//!
//! This module decides what is what; it fetches nothing (that is
//! `collect::index_attestations`) and decides no policy (the judge).

use oci_client::manifest::{OciDescriptor, OciImageIndex, OciImageManifest};
use serde::Deserialize;
use serde_json::Value;

/// The annotation naming what an index entry is.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Its value on an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// The annotation naming the manifest an attestation manifest is for.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The media type of an in-toto Statement layer.
pub const IN_TOTO_LAYER: &str = "application/vnd.in-toto+json";
/// The annotation naming a layer's predicate type.
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// Attestation manifests read from one index.
pub use crate::limits::MAX_ATTESTATION_MANIFESTS;
/// Statement layers read from one attestation manifest.
pub use crate::limits::MAX_STATEMENTS_PER_MANIFEST;
/// Largest Statement read (BuildKit's SPDX documents can be megabytes).
pub use crate::limits::MAX_STATEMENT_BYTES;

/// What an index holds, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexLayout {
    /// The digests of its platform manifests (every entry that is not an
    /// attestation manifest).
    pub platforms: Vec<String>,
    /// Its attestation manifests that are for one of those platforms.
    pub attestations: Vec<AttestationManifest>,
    /// Entries that do not count, and why.
    pub rejected: Vec<String>,
}

/// One attestation manifest of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationManifest {
    /// Its digest.
    pub digest: String,
    /// Its size, as the index states it (the bytes read must have it).
    pub size: u64,
    /// The platform manifest it is for.
    pub platform: String,
}

/// Whether `manifest` (its bytes) is an image index, and if so what it
/// holds. `Ok(None)`: an image manifest. A manifest that is not JSON is an
/// error (the registry served it for this digest).
pub fn index_layout(manifest: &[u8]) -> Result<Option<IndexLayout>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let shape: Shape =
        serde_json::from_slice(manifest).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let is_index = match shape.media_type.as_deref() {
        Some(t) => {
            t == oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE
                || t == oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE
        }
        None => shape.manifests.is_some(),
    };
    if !is_index {
        return Ok(None);
    }
    let index: OciImageIndex = serde_json::from_slice(manifest)
        .map_err(|e| format!("the image index is unreadable: {e}"))?;
    let mut layout = IndexLayout::default();
    let mut candidates = Vec::new();
    for entry in &index.manifests {
        let annotations = entry.annotations.as_ref();
        let kind = annotations.and_then(|a| a.get(REFERENCE_TYPE));
        // An entry is an attestation by its shape, not only its word: a
        // platform a node could run (anything but BuildKit's
        // `unknown/unknown`, or none) is a platform manifest and must
        // verify like every other, whatever its annotations say.
        let runnable = entry
            .platform
            .as_ref()
            .is_some_and(|p| p.os != "unknown".into() || p.architecture != "unknown".into());
        if kind.map(String::as_str) == Some(ATTESTATION_MANIFEST) && runnable {
            layout.platforms.push(entry.digest.clone());
            layout.rejected.push(format!(
                "index entry {} is annotated as an attestation manifest but names a platform ({}); it is checked as a platform manifest",
                entry.digest,
                entry.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)).unwrap_or_default()
            ));
        } else if kind.map(String::as_str) == Some(ATTESTATION_MANIFEST) {
            candidates.push((
                entry.digest.clone(),
                entry.size,
                annotations.and_then(|a| a.get(REFERENCE_DIGEST)).cloned(),
            ));
        } else {
            layout.platforms.push(entry.digest.clone());
        }
    }
    for (digest, size, platform) in candidates {
        match platform {
            None => layout.rejected.push(format!(
                "attestation manifest {digest} names no {REFERENCE_DIGEST}"
            )),
            Some(p) if !layout.platforms.contains(&p) => layout.rejected.push(format!(
                "attestation manifest {digest} is for {p}, which is not a platform manifest of this index"
            )),
            Some(_) if size < 0 => layout
                .rejected
                .push(format!("attestation manifest {digest} has a negative size")),
            Some(p) if layout.attestations.len() >= MAX_ATTESTATION_MANIFESTS => {
                layout.rejected.push(format!(
                    "attestation manifest {digest} for {p} is past sigil's limit of {MAX_ATTESTATION_MANIFESTS} per index"
                ))
            }
            Some(p) => layout.attestations.push(AttestationManifest {
                digest,
                size: size as u64,
                platform: p,
            }),
        }
    }
    Ok(Some(layout))
}

/// The Statement layers of an attestation manifest (its bytes, already
/// checked against its digest) whose annotated predicate type is one of
/// `wanted`; `Err` when the bytes are not the size the index states, or
/// not a manifest.
pub fn statement_layers(
    entry: &AttestationManifest,
    bytes: &[u8],
    wanted: &[&str],
) -> Result<Vec<(OciDescriptor, String)>, String> {
    if bytes.len() as u64 != entry.size {
        return Err(format!(
            "attestation manifest {} is {} bytes, the index says {}",
            entry.digest,
            bytes.len(),
            entry.size
        ));
    }
    let manifest: OciImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("attestation manifest {} is unreadable: {e}", entry.digest))?;
    // The attestation shape: in-toto Statements only, nothing a runtime
    // would unpack.
    if let Some(other) = manifest
        .layers
        .iter()
        .find(|l| l.media_type != IN_TOTO_LAYER)
    {
        return Err(format!(
            "attestation manifest {} has a layer of type {:?}, not an in-toto Statement: it is not an attestation",
            entry.digest,
            crate::text::excerpt(&other.media_type, crate::limits::MAX_QUOTED_VALUE)
        ));
    }
    let layers: Vec<(OciDescriptor, String)> = manifest
        .layers
        .into_iter()
        .filter(|l| l.media_type == IN_TOTO_LAYER)
        .filter_map(|l| {
            let predicate = l.annotations.as_ref()?.get(PREDICATE_TYPE)?.clone();
            wanted
                .contains(&predicate.as_str())
                .then_some((l, predicate))
        })
        .collect();
    // Never a silent cut: a policy could look for a Statement past the cap,
    // or for the absence of one. The manifest counts for nothing, and says
    // why.
    if layers.len() > MAX_STATEMENTS_PER_MANIFEST {
        return Err(format!(
            "attestation manifest {} holds {} Statements of the predicate types the policy asks for, past sigil's limit of {MAX_STATEMENTS_PER_MANIFEST}: none of them is read",
            entry.digest,
            layers.len()
        ));
    }
    Ok(layers)
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementHead {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(default)]
    subject: Vec<Subject>,
    predicate_type: String,
}

/// The in-toto Statement types BuildKit and cosign write.
const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v0.1",
    "https://in-toto.io/Statement/v1",
];

/// A Statement read from an attestation manifest's layer (its bytes,
/// already checked against the layer's digest) as it counts for
/// `platform`: its predicate type must be the layer's annotated one and
/// one of its subjects must name `platform`. With `keep_predicate` the
/// whole Statement is returned (a policy will read it); otherwise only
/// `_type`, `subject` and `predicateType`, so a large SBOM is never built
/// into a JSON tree.
pub fn check_statement(
    bytes: &[u8],
    annotated_type: &str,
    platform: &str,
    keep_predicate: bool,
) -> Result<Value, String> {
    // One reading only: a key written twice (a second subject digest)
    // would read differently in Go or Python.
    super::strict_bundle::unique_keys(bytes)
        .map_err(|e| format!("the Statement is unreadable: {e}"))?;
    let head: StatementHead =
        serde_json::from_slice(bytes).map_err(|e| format!("the Statement is unreadable: {e}"))?;
    if !STATEMENT_TYPES.contains(&head.kind.as_str()) {
        return Err(format!("{:?} is not an in-toto Statement", head.kind));
    }
    if head.predicate_type != annotated_type {
        return Err(format!(
            "its predicate type is {}, the layer says {annotated_type}",
            head.predicate_type
        ));
    }
    let wanted = platform.strip_prefix("sha256:").unwrap_or(platform);
    if !head
        .subject
        .iter()
        .any(|s| s.digest.get("sha256").is_some_and(|d| d == wanted))
    {
        let named: Vec<String> = head
            .subject
            .iter()
            .filter_map(|s| s.digest.get("sha256").map(|d| format!("sha256:{d}")))
            .collect();
        return Err(format!(
            "its subject is {}, not the platform manifest {platform} its attestation manifest is for",
            if named.is_empty() {
                "empty".to_string()
            } else {
                named.join(", ")
            }
        ));
    }
    if keep_predicate {
        serde_json::from_slice(bytes).map_err(|e| format!("the Statement is unreadable: {e}"))
    } else {
        Ok(serde_json::json!({
            "_type": head.kind,
            "subject": head.subject.iter().map(|s| serde_json::json!({"digest": s.digest})).collect::<Vec<_>>(),
            "predicateType": head.predicate_type,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn index(entries: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }))
        .unwrap()
    }

    fn platform(n: u8, arch: &str) -> Value {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d(n), "size": 500,
               "platform": {"architecture": arch, "os": "linux"}})
    }

    fn attestation(n: u8, for_: &str) -> Value {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d(n), "size": 700,
               "platform": {"architecture": "unknown", "os": "unknown"},
               "annotations": {REFERENCE_TYPE: ATTESTATION_MANIFEST, REFERENCE_DIGEST: for_}})
    }

    /// The annotation alone does not make an entry an attestation: one
    /// with a platform a node could run is a platform manifest (it must
    /// verify), and an attestation manifest with a layer that is not an
    /// in-toto Statement is refused.
    #[test]
    fn an_entry_is_an_attestation_by_its_shape_not_its_annotation() {
        let mut disguised = attestation(3, &d(1));
        disguised["platform"] = json!({"architecture": "amd64", "os": "linux"});
        let bytes = index(vec![platform(1, "arm64"), disguised, attestation(4, &d(1))]);
        let layout = index_layout(&bytes).unwrap().unwrap();
        assert_eq!(layout.platforms, vec![d(1), d(3)]);
        assert_eq!(layout.attestations.len(), 1);
        assert_eq!(layout.attestations[0].digest, d(4));
        assert!(
            layout.rejected[0].contains(
                "annotated as an attestation manifest but names a platform (linux/amd64)"
            ),
            "{:?}",
            layout.rejected
        );
        // No platform at all: BuildKit's shape is unknown/unknown; an entry
        // without one is taken at its word (no node runs it).
        let mut bare = attestation(5, &d(1));
        bare.as_object_mut().unwrap().remove("platform");
        let layout = index_layout(&index(vec![platform(1, "arm64"), bare]))
            .unwrap()
            .unwrap();
        assert_eq!(layout.platforms, vec![d(1)]);
        assert_eq!(layout.attestations.len(), 1);

        let entry = AttestationManifest {
            digest: d(4),
            size: 0,
            platform: d(1),
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(7), "size": 2},
            "layers": [
                {"mediaType": IN_TOTO_LAYER, "digest": d(8), "size": 10, "annotations": {PREDICATE_TYPE: "https://slsa.dev/provenance/v1"}},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d(9), "size": 10},
            ],
        }))
        .unwrap();
        let entry = AttestationManifest {
            size: manifest.len() as u64,
            ..entry
        };
        let err =
            statement_layers(&entry, &manifest, &["https://slsa.dev/provenance/v1"]).unwrap_err();
        assert!(err.contains("not an in-toto Statement"), "{err}");
    }

    /// Past the cap of Statements per manifest, none is read and the
    /// reason names the cap; at the cap, all are.
    #[test]
    fn statements_past_the_cap_are_never_cut_silently() {
        let manifest = |n: usize| {
            let layers: Vec<Value> = (0..n)
                .map(|i| json!({"mediaType": IN_TOTO_LAYER, "digest": format!("sha256:{:064x}", i), "size": 10,
                                "annotations": {PREDICATE_TYPE: "https://slsa.dev/provenance/v1"}}))
                .collect();
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(7), "size": 2},
                "layers": layers,
            }))
            .unwrap()
        };
        let wanted = ["https://slsa.dev/provenance/v1"];
        let at = manifest(MAX_STATEMENTS_PER_MANIFEST);
        let entry = AttestationManifest {
            digest: d(4),
            size: at.len() as u64,
            platform: d(1),
        };
        assert_eq!(
            statement_layers(&entry, &at, &wanted).unwrap().len(),
            MAX_STATEMENTS_PER_MANIFEST
        );
        let past = manifest(MAX_STATEMENTS_PER_MANIFEST + 1);
        let entry = AttestationManifest {
            size: past.len() as u64,
            ..entry
        };
        let err = statement_layers(&entry, &past, &wanted).unwrap_err();
        assert!(
            err.contains(&format!(
                "past sigil's limit of {MAX_STATEMENTS_PER_MANIFEST}"
            )),
            "{err}"
        );
    }

    #[test]
    fn an_index_is_split_into_platforms_and_their_attestation_manifests() {
        let bytes = index(vec![
            platform(1, "amd64"),
            platform(2, "arm64"),
            attestation(3, &d(1)),
            attestation(4, &d(2)),
            attestation(5, &d(9)),
        ]);
        let layout = index_layout(&bytes).unwrap().unwrap();
        assert_eq!(layout.platforms, vec![d(1), d(2)]);
        assert_eq!(
            layout.attestations,
            vec![
                AttestationManifest {
                    digest: d(3),
                    size: 700,
                    platform: d(1)
                },
                AttestationManifest {
                    digest: d(4),
                    size: 700,
                    platform: d(2)
                },
            ]
        );
        assert_eq!(
            layout.rejected,
            vec![format!(
                "attestation manifest {} is for {}, which is not a platform manifest of this index",
                d(5),
                d(9)
            )]
        );
        // An attestation manifest naming another attestation manifest.
        let bytes = index(vec![
            platform(1, "amd64"),
            attestation(3, &d(1)),
            attestation(4, &d(3)),
        ]);
        let layout = index_layout(&bytes).unwrap().unwrap();
        assert_eq!(layout.attestations.len(), 1);
        assert_eq!(layout.rejected.len(), 1);
        // An image manifest is no index.
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "x", "digest": d(7), "size": 1}, "layers": []});
        assert_eq!(
            index_layout(&serde_json::to_vec(&manifest).unwrap()).unwrap(),
            None
        );
        assert!(index_layout(b"garbage").is_err());
    }

    #[test]
    fn only_wanted_statements_of_the_stated_size_are_read() {
        let layer = |t: &str, media: &str| json!({"mediaType": media, "digest": d(8), "size": 10, "annotations": {PREDICATE_TYPE: t}});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(7), "size": 2},
            "layers": [layer("https://spdx.dev/Document", IN_TOTO_LAYER),
                       layer("https://slsa.dev/provenance/v0.2", IN_TOTO_LAYER)],
        }))
        .unwrap();
        let entry = AttestationManifest {
            digest: d(3),
            size: manifest.len() as u64,
            platform: d(1),
        };
        let got =
            statement_layers(&entry, &manifest, &["https://slsa.dev/provenance/v0.2"]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, "https://slsa.dev/provenance/v0.2");
        let wrong_size = AttestationManifest { size: 1, ..entry };
        assert!(statement_layers(&wrong_size, &manifest, &[])
            .unwrap_err()
            .contains("the index says 1"));
    }

    #[test]
    fn a_statement_with_a_key_written_twice_counts_for_nothing() {
        let twice = format!(
            r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"digest":{{"sha256":"{}","sha256":"{}"}}}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{{}}}}"#,
            "ab".repeat(32),
            "cd".repeat(32)
        );
        let e = check_statement(
            twice.as_bytes(),
            "https://slsa.dev/provenance/v1",
            &format!("sha256:{}", "ab".repeat(32)),
            false,
        )
        .unwrap_err();
        assert!(e.contains("written twice"), "{e}");
    }

    #[test]
    fn a_statement_counts_only_for_the_platform_it_names() {
        let statement = |subject: &str, t: &str| {
            serde_json::to_vec(&json!({
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": t,
                "subject": [{"name": "pkg:docker/app@v1?platform=linux%2Famd64",
                             "digest": {"sha256": subject.trim_start_matches("sha256:")}}],
                "predicate": {"builder": {"id": "https://github.com/acme/ci"}},
            }))
            .unwrap()
        };
        let slsa = "https://slsa.dev/provenance/v0.2";
        let kept = check_statement(&statement(&d(1), slsa), slsa, &d(1), true).unwrap();
        assert_eq!(
            kept["predicate"]["builder"]["id"],
            "https://github.com/acme/ci"
        );
        let head = check_statement(&statement(&d(1), slsa), slsa, &d(1), false).unwrap();
        assert!(head.get("predicate").is_none());
        assert_eq!(head["predicateType"], slsa);
        let e = check_statement(&statement(&d(2), slsa), slsa, &d(1), true).unwrap_err();
        assert_eq!(
            e,
            format!(
                "its subject is {}, not the platform manifest {} its attestation manifest is for",
                d(2),
                d(1)
            )
        );
        let e = check_statement(
            &statement(&d(1), slsa),
            "https://spdx.dev/Document",
            &d(1),
            true,
        )
        .unwrap_err();
        assert!(
            e.contains("the layer says https://spdx.dev/Document"),
            "{e}"
        );
        let not_a_statement =
            serde_json::to_vec(&json!({"_type": "x", "predicateType": slsa, "subject": []}))
                .unwrap();
        assert!(check_statement(&not_a_statement, slsa, &d(1), true).is_err());
    }
}
