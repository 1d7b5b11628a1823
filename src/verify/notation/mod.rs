//! Verification of one Notation (Notary Project) signature for one admitted
//! manifest, under an authority's trust policy: the Notary Project's
//! checks in its order, each enforced, logged or skipped as the policy's
//! verification level says (`crate::model::notation`), and the payload's
//! `targetArtifact` matched with the admitted manifest.
//!
//! Pure: the envelope bytes, the admitted manifest's descriptor and the
//! time come from the caller (the collector), so every rule is unit-tested
//! on notation-go's own envelopes.

pub mod chain;
pub mod envelope;
pub mod timestamp;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::notation::{Action, Check, Level, NotationPolicy};
use envelope::{EnvelopeFormat, SCHEME_SIGNING_AUTHORITY, SCHEME_X509};

/// The admitted manifest, as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    /// Made, and it held.
    Passed,
    /// Made, it failed, and the level only logs it (a warning).
    Logged,
    /// Not made (the level skips it, or sigil has nothing to check with:
    /// revocation without CRLs).
    Skipped,
}

/// A Notation signature that counts, and how it was verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotationSigner {
    /// `jws` or `cose`.
    pub envelope: EnvelopeFormat,
    /// The signing certificate's subject, `C=US, ST=WA, …`.
    pub subject: String,
    /// The signing certificate's issuer.
    pub issuer: String,
    /// The signing time the signer claims (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<String>,
    /// The RFC 3161 timestamp's time, when one was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The verification level applied.
    pub level: Level,
    /// Each check's result.
    pub checks: BTreeMap<Check, CheckResult>,
    /// The failures the level only logs, as people read them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logged: Vec<String>,
    /// The signing tool, as it names itself (unsigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_agent: Option<String>,
}

/// Applies the level's action to a check's outcome.
struct Checks {
    level: Level,
    results: BTreeMap<Check, CheckResult>,
    logged: Vec<String>,
}

impl Checks {
    /// Records `outcome` of `check`; `Err` when the level enforces it and
    /// it failed.
    fn record(&mut self, check: Check, outcome: Result<(), String>) -> Result<(), String> {
        let action = self.level.action(check);
        let result = match (action, outcome) {
            (Action::Skip, _) => CheckResult::Skipped,
            (_, Ok(())) => CheckResult::Passed,
            (Action::Enforce, Err(e)) => return Err(format!("{} check failed: {e}", check.name())),
            (Action::Log, Err(e)) => {
                self.logged.push(format!("{}: {e}", check.name()));
                CheckResult::Logged
            }
        };
        self.results.insert(check, result);
        Ok(())
    }
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Verifies one envelope of `media_type` for `target` under `policy` at
/// `now`. `Err` says why the signature does not count. A `skip` level
/// verifies nothing (the judge vouches without evidence), so it is refused
/// here.
pub fn verify(
    policy: &NotationPolicy,
    media_type: &str,
    envelope_bytes: &[u8],
    target: &Target,
    now: jiff::Timestamp,
) -> Result<NotationSigner, String> {
    if policy.level == Level::Skip {
        return Err("verificationLevel skip verifies no signature".into());
    }
    let mut checks = Checks {
        level: policy.level,
        results: BTreeMap::new(),
        logged: Vec::new(),
    };

    // Integrity: the envelope, its signature, and what it signs.
    let opened = envelope::open(media_type, envelope_bytes);
    let info = match opened {
        Ok(info) => info,
        Err(e) => return Err(format!("integrity check failed: {e}")),
    };
    checks.record(Check::Integrity, Ok(()))?;
    match info.signing_scheme.as_str() {
        SCHEME_X509 => {}
        SCHEME_SIGNING_AUTHORITY => {
            return Err(format!(
                "signing scheme {SCHEME_SIGNING_AUTHORITY} (signing authorities such as AWS Signer) is not supported by sigil yet"
            ))
        }
        other => return Err(format!("unknown signing scheme {other:?}")),
    }
    let artifact = envelope::target_artifact(&info.payload)
        .map_err(|e| format!("integrity check failed: {e}"))?;
    // The payload must name exactly the admitted manifest, whatever the level.
    if artifact.digest != target.digest {
        return Err(format!(
            "signature is for {}, image is {}",
            artifact.digest, target.digest
        ));
    }
    if artifact.size != target.size || artifact.media_type != target.media_type {
        return Err(format!(
            "signature is for {} of {} bytes ({}), the registry serves {} bytes ({})",
            artifact.digest, artifact.size, artifact.media_type, target.size, target.media_type
        ));
    }

    // Authenticity: the chain leads to the trust store; a trusted identity.
    let chain =
        chain::parse_chain(&info.chain).map_err(|e| format!("integrity check failed: {e}"))?;
    let leaf = &chain[0].cert;
    let subject = chain::dn_string(&chain::subject_attributes(&leaf.tbs_certificate.subject));
    let issuer = chain::dn_string(&chain::subject_attributes(&leaf.tbs_certificate.issuer));
    let identity = chain::identity_attributes(&leaf.tbs_certificate.subject);
    let authenticity = chain::verify_code_signing_chain(&chain, &policy.anchors).and_then(|()| {
        let attributes = identity
            .as_ref()
            .map_err(|why| format!("signing certificate subject \"{subject}\" {why}"))?;
        if policy.identities.iter().any(|id| id.matches(attributes)) {
            Ok(())
        } else {
            Err(format!(
                "signing certificate subject \"{subject}\" matches none of the trusted identities: {}",
                policy
                    .identities
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        }
    });
    checks.record(Check::Authenticity, authenticity)?;

    // Expiry: the signature's own.
    let expiry = match info.expiry {
        Some(expiry) if now > expiry => {
            Err(format!("the signature expired at {}", rfc3339(expiry)))
        }
        _ => Ok(()),
    };
    checks.record(Check::Expiry, expiry)?;

    // Authentic timestamp: the chain was valid when it signed. With TSA
    // certificates, that is the time of the RFC 3161 countersignature, which
    // must then be there (as notation-go's default `verifyTimestamp:
    // always`); without, it is now.
    let mut stamped = None;
    let authentic = match (&info.timestamp_token, policy.tsa_anchors.is_empty()) {
        (_, true) => chain::check_validity(&chain, now, now, "verification time"),
        (None, false) => {
            Err("no timestamp countersignature was found in the signature envelope".to_string())
        }
        (Some(token), false) => timestamp::verify(token, &info.signature, &policy.tsa_anchors)
            .and_then(|at| {
                stamped = Some(at.time);
                chain::check_validity(&chain, at.earliest(), at.latest(), "the timestamp")
            }),
    };
    checks.record(Check::AuthenticTimestamp, authentic)?;

    // Revocation: only against the CRLs the authority holds.
    if policy.crls.is_empty() || policy.level.action(Check::Revocation) == Action::Skip {
        checks
            .results
            .insert(Check::Revocation, CheckResult::Skipped);
    } else {
        checks.record(
            Check::Revocation,
            chain::check_revocation(&chain, &policy.anchors, &policy.crls),
        )?;
    }

    Ok(NotationSigner {
        envelope: info.format,
        subject,
        issuer,
        signing_time: info.signing_time.map(rfc3339),
        timestamp: stamped.map(rfc3339),
        level: policy.level,
        checks: checks.results,
        logged: checks.logged,
        signing_agent: info.signing_agent,
    })
}

#[cfg(test)]
mod tests;
