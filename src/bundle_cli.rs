//! `sigil verify-bundle`: the sigstore-conformance verification protocol.
//! Exit 0 when the bundle verifies, 1 when it is rejected (reason on
//! stderr), 2 when the inputs cannot be read.

use sha2::{Digest, Sha256};

use crate::cli::VerifyBundleArgs;
use crate::model::identity::{IdentityRule, TextMatcher};
use crate::trust::TrustMaterial;
use crate::verify::bundle::{
    parse_bundle, verify_bundle, BundleArtifact, BundleChecks, BundleSigner,
};

/// Reads `sha256:<64 hex>` (when it is not a file on disk) as a digest,
/// anything else as a path, as the protocol says.
pub fn artifact_of(arg: &str) -> Result<BundleArtifact, String> {
    if let Some(hex_part) = arg.strip_prefix("sha256:") {
        if hex_part.len() == 64 && !std::path::Path::new(arg).exists() {
            if let Ok(bytes) = hex::decode(hex_part) {
                let mut d = [0u8; 32];
                d.copy_from_slice(&bytes);
                return Ok(BundleArtifact::Sha256(d));
            }
        }
    }
    std::fs::read(arg)
        .map(BundleArtifact::Bytes)
        .map_err(|e| format!("cannot read {arg}: {e}"))
}

/// Runs the command; returns the exit code.
pub fn main(args: &VerifyBundleArgs) -> u8 {
    match run(args) {
        Ok(Ok(summary)) => {
            println!("OK: {summary}");
            0
        }
        Ok(Err(reason)) => {
            eprintln!("sigil verify-bundle: rejected: {reason}");
            1
        }
        Err(e) => {
            eprintln!("sigil verify-bundle: {e}");
            2
        }
    }
}

fn run(args: &VerifyBundleArgs) -> Result<Result<String, String>, String> {
    if args.staging {
        return Err("--staging: no staging trusted root is embedded; pass --trusted-root".into());
    }
    let trust = match &args.trusted_root {
        Some(p) => TrustMaterial::from_file(p).map_err(|e| e.to_string())?,
        None => TrustMaterial::public_good(),
    };
    // As cosign: a regular expression matches anywhere in the value.
    let matcher =
        |exact: &Option<String>, pattern: &Option<String>, flag: &str| match (exact, pattern) {
            (Some(e), _) => Ok(Some(TextMatcher::Exact(e.clone()))),
            (None, Some(p)) => regex::Regex::new(p)
                .map(|r| Some(TextMatcher::Regex(p.clone(), r)))
                .map_err(|e| format!("{flag}: {e}")),
            (None, None) => Ok(None),
        };
    let identity = matcher(
        &args.certificate_identity,
        &args.certificate_identity_regexp,
        "--certificate-identity-regexp",
    )?;
    let issuer = matcher(
        &args.certificate_oidc_issuer,
        &args.certificate_oidc_issuer_regexp,
        "--certificate-oidc-issuer-regexp",
    )?;
    let signer = match (&args.key, identity, issuer) {
        (Some(path), _, _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let der = match pem::parse(text.trim()) {
                Ok(p) if p.tag() == "PUBLIC KEY" => p.into_contents(),
                // A malformed key rejects the bundle (nothing can verify
                // with it) rather than being a usage error.
                Ok(p) => {
                    return Ok(Err(format!(
                        "{} is a {}, not a PUBLIC KEY",
                        path.display(),
                        p.tag()
                    )))
                }
                Err(e) => {
                    return Ok(Err(format!(
                        "{} is not a PEM public key: {e}",
                        path.display()
                    )))
                }
            };
            BundleSigner::Key(der)
        }
        (None, Some(identity), Some(issuer)) => BundleSigner::Identity(vec![IdentityRule {
            issuer,
            subject: identity,
            claims: args
                .claims()
                .into_iter()
                .map(|(c, v)| (c, TextMatcher::Exact(v)))
                .collect(),
        }]),
        _ => {
            return Err("give --key, or --certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp]".into())
        }
    };
    let bundle_bytes = std::fs::read(&args.bundle)
        .map_err(|e| format!("cannot read {}: {e}", args.bundle.display()))?;
    let artifact = artifact_of(&args.file_or_digest)?;
    let bundle = match parse_bundle(&bundle_bytes) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let checks = BundleChecks {
        skip_sct: args.insecure_ignore_sct,
        skip_tlog: args.insecure_ignore_tlog,
        require_timestamp: args.use_signed_timestamps,
    };
    Ok(verify_bundle(&bundle, &artifact, &signer, &trust, checks)
        .map(|v| match (v.subject, v.issuer) {
            (Some(s), Some(i)) if v.claims.is_empty() => format!("signed by {s} ({i})"),
            (Some(s), Some(i)) => format!(
                "signed by {s} ({i}); claims checked: {}",
                v.claims
                    .iter()
                    .map(|(c, v)| format!("{c} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!(
                "signed by the given key over sha256:{}",
                match &artifact {
                    BundleArtifact::Bytes(b) => hex::encode(Sha256::digest(b)),
                    BundleArtifact::Sha256(d) => hex::encode(d),
                }
            ),
        })
        .map_err(|e| e.to_string()))
}
