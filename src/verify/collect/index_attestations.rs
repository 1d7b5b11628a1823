//! Collector of BuildKit's attestations inside an image index: reads the
//! admitted index, its attestation manifests and the Statement layers of
//! the predicate types the authority wants, each by digest (checked), and
//! keeps each Statement that names the platform manifest it is filed under
//! (`verify::index_attestations`). It is asked only once a signature of
//! the authority over the index verified; it verifies no signature itself.

use futures::future::join_all;

use super::sources::Sources;
use crate::image::ImageRef;
use crate::policy::CompiledAuthority;
use crate::verify::evidence::{IndexEvidence, VerifiedAttestation};
use crate::verify::index_attestations::{
    check_statement, index_layout, statement_layers, AttestationManifest, IndexLayout,
    MAX_STATEMENT_BYTES,
};
use crate::verify::keyless::SignerIdentity;
use crate::verify::outcome::Failure;

/// The admitted digest's index layout; `Ok(None)` when it is an image
/// manifest (or not in the registry: the signature collectors say so).
pub(super) async fn layout(
    sources: &Sources<'_>,
    image: &ImageRef,
    digest: &str,
) -> Result<Option<IndexLayout>, Failure> {
    let bytes = sources
        .fetch
        .manifest(&image.registry, &image.repository, digest, sources.creds)
        .await
        .map_err(|e| {
            Failure::registry(
                format!(
                    "cannot read the manifest of {}/{}@{digest}: {e}",
                    image.registry, image.repository
                ),
                &e,
            )
        })?;
    match bytes {
        None => Ok(None),
        Some(bytes) => index_layout(&bytes).map_err(|e| {
            Failure::Verdict(format!(
                "{}/{}@{digest}: {e}",
                image.registry, image.repository
            ))
        }),
    }
}

/// The Statements of `layout`'s attestation manifests that authority `a`
/// wants, vouched for by `signer` (who signed the index).
pub(super) async fn collect(
    sources: &Sources<'_>,
    image: &ImageRef,
    layout: IndexLayout,
    a: &CompiledAuthority,
    signer: Option<SignerIdentity>,
) -> Result<IndexEvidence, Failure> {
    let mut wanted: Vec<&str> = a
        .attestations
        .iter()
        .map(|w| w.predicate_type.as_str())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let read = join_all(
        layout
            .attestations
            .iter()
            .map(|entry| read_manifest(sources, image, entry, &wanted, a)),
    )
    .await;
    let mut evidence = IndexEvidence {
        platforms: layout.platforms,
        statements: Vec::new(),
        rejected: layout.rejected,
    };
    for found in read {
        let (statements, rejected) = found?;
        evidence.statements.extend(statements.into_iter().map(
            |(platform, predicate_type, statement)| VerifiedAttestation {
                digest: platform,
                statement,
                predicate_type,
                signer: signer.clone(),
            },
        ));
        evidence.rejected.extend(rejected);
    }
    Ok(evidence)
}

/// One attestation manifest's wanted Statements: (platform, predicate
/// type, Statement), and why the others did not count.
type Read = (Vec<(String, String, serde_json::Value)>, Vec<String>);

async fn read_manifest(
    sources: &Sources<'_>,
    image: &ImageRef,
    entry: &AttestationManifest,
    wanted: &[&str],
    a: &CompiledAuthority,
) -> Result<Read, Failure> {
    let transient = |what: String, e: &crate::registry::RegistryError| {
        Failure::registry(format!("cannot read {what}: {e}"), e)
    };
    let fetched = sources
        .fetch
        .manifest(
            &image.registry,
            &image.repository,
            &entry.digest,
            sources.creds,
        )
        .await;
    let bytes = match fetched {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Ok((
                Vec::new(),
                vec![format!(
                    "attestation manifest {} is not in the registry",
                    entry.digest
                )],
            ))
        }
        Err(e) if e.is_transient() => {
            return Err(transient(
                format!("attestation manifest {}", entry.digest),
                &e,
            ))
        }
        Err(e) => {
            return Ok((
                Vec::new(),
                vec![format!("attestation manifest {}: {e}", entry.digest)],
            ))
        }
    };
    let layers = match statement_layers(entry, &bytes, wanted) {
        Ok(l) => l,
        Err(why) => return Ok((Vec::new(), vec![why])),
    };
    // The Statements of one manifest are read at once.
    let blobs = join_all(layers.iter().map(|(descriptor, _)| {
        sources.fetch.blob(
            &image.registry,
            &image.repository,
            descriptor,
            MAX_STATEMENT_BYTES,
            sources.creds,
        )
    }))
    .await;
    let mut statements = Vec::new();
    let mut rejected = Vec::new();
    for ((descriptor, predicate_type), blob) in layers.into_iter().zip(blobs) {
        let bytes = match blob {
            Ok(b) => b,
            Err(e) if e.is_transient() => {
                return Err(transient(format!("Statement {}", descriptor.digest), &e))
            }
            Err(e) => {
                rejected.push(format!("Statement {}: {e}", descriptor.digest));
                continue;
            }
        };
        let keep = a
            .attestations
            .iter()
            .any(|w| w.predicate_type == predicate_type && w.policy.is_some());
        match check_statement(&bytes, &predicate_type, &entry.platform, keep) {
            Ok(statement) => statements.push((entry.platform.clone(), predicate_type, statement)),
            Err(why) => rejected.push(format!(
                "Statement {} in attestation manifest {}: {why}",
                descriptor.digest, entry.digest
            )),
        }
    }
    Ok((statements, rejected))
}
