//! Keyless cosign signatures in the legacy `.sig` layout: the layer carries
//! the signing certificate (`dev.sigstore.cosign/certificate`), its chain, and
//! the Rekor entry with its signed entry timestamp (`dev.sigstore.cosign/bundle`).
//!
//! The layer is rewritten as the Sigstore bundle (v0.1) it is equivalent to
//! ([`super::legacy_evidence`] reads and rewrites it),
//! and verified by `sigstore-verify` against a trusted root: the certificate
//! chains to a trusted CA and was valid at the Rekor integrated time, the SET
//! verifies with a trusted Rekor key valid at that time and its body is this
//! signature, the embedded SCT verifies with a trusted CT log key, and the
//! signature verifies over the payload. sigil then checks the payload names
//! the admitted digest and the certificate identity matches a policy
//! identity (regular expressions match the whole string).
//!
//! A private CA (`keyless.ca-cert`) is not Fulcio: it has no CT log, so no
//! SCT is asked for; its chain is checked with rustls-webpki, at the Rekor
//! integrated time when the signature carries a SET (required when the
//! authority sets `ctlog`), otherwise at admission time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use sigstore_types::{Artifact, DerCertificate, DsseEnvelope, Sha256Hash};
use sigstore_verify::VerificationPolicy;

use super::cosign::{check_payload, Rejection, SignatureLayer};
use super::legacy_evidence::{
    describe_verify_error, keyless_err, legacy_bundle, missing_timestamp, missing_tlog, read_layer,
    BundleSigner, Content, LegacyMaterial,
};
use crate::model::identity::{check_identity, Claim, Claims, IdentityMismatch};
use crate::model::keys::{HashAlgorithm, VerificationKey};
use crate::trust::TrustMaterial;

pub use super::legacy_evidence::{
    BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, RFC3161_ANNOTATION,
};
pub use crate::model::identity::{
    CertificateTrust, IdentityRule, KeylessPolicy, PrivateCa, TextMatcher,
};

/// The GitHub workflow extensions of a Fulcio certificate
/// (1.3.6.1.4.1.57264.1.2 – .6), for policies over signatures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GithubWorkflow {
    /// Event that triggered the workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Commit SHA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Workflow name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `owner/repo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Git ref.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

/// What a verified signing certificate says about its holder.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SignerIdentity {
    /// The SAN (email or URI).
    pub subject: String,
    /// The OIDC issuer (empty when the certificate has none).
    pub issuer: String,
    /// GitHub workflow extensions.
    #[serde(rename = "githubWorkflow")]
    pub github_workflow: GithubWorkflow,
    /// The Rekor integrated time, when the signature was logged.
    #[serde(rename = "integratedTime", skip_serializing_if = "Option::is_none")]
    pub integrated_time: Option<String>,
    /// Every Fulcio claim the certificate carries.
    #[serde(skip)]
    pub all_claims: Claims,
    /// The claims the accepting identity required, as the certificate has
    /// them (`sourceRepositoryRef` → `refs/heads/main`, …).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub claims: std::collections::BTreeMap<String, String>,
}

/// The Fulcio claims a parsed certificate carries.
pub fn claims_of(info: &sigstore_crypto::CertificateInfo) -> Claims {
    let ci = &info.ci_claims;
    let gh = &ci.deprecated_github;
    [
        (Claim::SourceRepositoryUri, &ci.source_repository_uri),
        (Claim::SourceRepositoryRef, &ci.source_repository_ref),
        (Claim::SourceRepositoryDigest, &ci.source_repository_digest),
        (
            Claim::SourceRepositoryOwnerUri,
            &ci.source_repository_owner_uri,
        ),
        (Claim::BuildSignerUri, &ci.build_signer_uri),
        (Claim::BuildSignerDigest, &ci.build_signer_digest),
        (Claim::BuildTrigger, &ci.build_trigger),
        (Claim::RunnerEnvironment, &ci.runner_environment),
        (Claim::BuildConfigUri, &ci.build_config_uri),
        (Claim::GithubWorkflowTrigger, &gh.workflow_trigger),
        (Claim::GithubWorkflowSha, &gh.workflow_sha),
        (Claim::GithubWorkflowName, &gh.workflow_name),
        (Claim::GithubWorkflowRepository, &gh.workflow_repository),
        (Claim::GithubWorkflowRef, &gh.workflow_ref),
    ]
    .into_iter()
    .filter_map(|(claim, value)| value.clone().map(|v| (claim, v)))
    .collect()
}

fn identity_from_certificate(
    der: &[u8],
    integrated_time: Option<jiff::Timestamp>,
) -> Result<SignerIdentity, Rejection> {
    let info = sigstore_crypto::x509::parse_certificate_info(&DerCertificate::new(der.to_vec()))
        .map_err(|e| keyless_err(format!("certificate is malformed: {e}")))?;
    let gh = &info.ci_claims.deprecated_github;
    Ok(SignerIdentity {
        subject: info
            .identity
            .as_ref()
            .map(|i| i.as_str().to_string())
            .unwrap_or_default(),
        issuer: info.issuer.clone().unwrap_or_default(),
        github_workflow: GithubWorkflow {
            trigger: gh.workflow_trigger.clone(),
            sha: gh.workflow_sha.clone(),
            name: gh.workflow_name.clone(),
            repository: gh.workflow_repository.clone(),
            git_ref: gh.workflow_ref.clone(),
        },
        integrated_time: integrated_time.map(|t| t.to_string()),
        all_claims: claims_of(&info),
        claims: Default::default(),
    })
}

/// Verifies one legacy layer as a keyless signature for `admitted_digest`.
pub fn verify_keyless_layer(
    layer: &SignatureLayer,
    admitted_digest: &str,
    policy: &KeylessPolicy,
    trust: &TrustMaterial,
) -> Result<SignerIdentity, Rejection> {
    let m = read_layer(layer, false)?;
    let signer = verify_certificate(
        &m,
        Content::Message(&layer.payload),
        Artifact::from(layer.payload.as_slice()),
        policy,
        trust,
    )?;
    check_payload(&layer.payload, admitted_digest)?;
    match_identity(policy, signer)
}

/// Verifies a legacy `.att` layer's DSSE envelope as a keyless attestation
/// whose in-toto subject includes `admitted_digest`.
pub fn verify_keyless_attestation(
    layer: &SignatureLayer,
    envelope: &DsseEnvelope,
    admitted_digest: &Sha256Hash,
    policy: &KeylessPolicy,
    trust: &TrustMaterial,
) -> Result<SignerIdentity, Rejection> {
    let m = read_layer(layer, true)?;
    let signer = verify_certificate(
        &m,
        Content::Dsse(envelope),
        Artifact::from(*admitted_digest),
        policy,
        trust,
    )?;
    match_identity(policy, signer)
}

pub(crate) fn match_identity(
    policy: &KeylessPolicy,
    mut signer: SignerIdentity,
) -> Result<SignerIdentity, Rejection> {
    match check_identity(
        &policy.identities,
        &signer.issuer,
        &signer.subject,
        &signer.all_claims,
    ) {
        Ok(checked) => {
            signer.claims = checked
                .into_iter()
                .map(|(c, v)| (c.field().to_string(), v))
                .collect();
            Ok(signer)
        }
        Err(IdentityMismatch::Identity(expected)) => Err(Rejection::IdentityMismatch {
            subject: signer.subject,
            issuer: signer.issuer,
            expected,
        }),
        Err(IdentityMismatch::Claims(differ)) => Err(Rejection::ClaimMismatch {
            subject: signer.subject,
            issuer: signer.issuer,
            differ,
        }),
    }
}

/// The certificate, chain, SET, SCT and timestamp checks of a keyless layer,
/// with the signature over `content`.
fn verify_certificate(
    m: &LegacyMaterial,
    content: Content<'_>,
    artifact: Artifact<'_>,
    policy: &KeylessPolicy,
    trust: &TrustMaterial,
) -> Result<SignerIdentity, Rejection> {
    let cert = m.certificate.as_deref().ok_or_else(|| {
        keyless_err(format!(
            "signature has no certificate ({CERTIFICATE_ANNOTATION}): it was not made keyless"
        ))
    })?;
    if policy.require_timestamp && m.rfc3161.is_none() {
        return Err(missing_timestamp());
    }
    match &policy.trust {
        CertificateTrust::TrustRoot => {
            if m.rekor.is_none() && policy.tlog_required(!trust.root.tlogs.is_empty()) {
                return Err(keyless_err(format!(
                    "signature has no Rekor entry ({BUNDLE_ANNOTATION}); a keyless signature needs a signed entry timestamp"
                )));
            }
            let bundle = legacy_bundle(content, m, BundleSigner::Certificate(cert), trust)?;
            let mut vp = VerificationPolicy::any_identity();
            if !policy.verify_sct {
                vp = vp.skip_sct();
            }
            if m.rekor.is_none() {
                // Allowed only with rfc3161timestamp, no ctlog and a trust
                // root without logs; the timestamp (required above) dates
                // the signature.
                vp = vp.skip_tlog_unsafe();
            }
            let result = trust
                .verifier
                .verify(artifact, &bundle, &vp)
                .map_err(|e| keyless_err(describe_verify_error(&e)))?;
            identity_from_certificate(cert, result.integrated_time())
        }
        CertificateTrust::PrivateCa(ca) => {
            if m.rekor.is_none() && policy.tlog_required(!trust.root.tlogs.is_empty()) {
                return Err(missing_tlog("ctlog"));
            }
            // The times the chain must hold at: those a SET or TSA vouches
            // for (verified here, with the signature), else admission time.
            let (times, integrated) = if m.rekor.is_some() || m.rfc3161.is_some() {
                let bundle = legacy_bundle(content, m, BundleSigner::Certificate(cert), trust)?;
                let mut vp = VerificationPolicy::any_identity().skip_certificate_chain();
                if m.rekor.is_none() {
                    vp = vp.skip_tlog_unsafe();
                }
                let result = trust
                    .verifier
                    .verify(artifact, &bundle, &vp)
                    .map_err(|e| keyless_err(describe_verify_error(&e)))?;
                (
                    result.verified_timestamps().to_vec(),
                    result.integrated_time(),
                )
            } else {
                match content {
                    Content::Message(payload) => {
                        verify_with_certificate_key(cert, payload, &m.signature_b64)?
                    }
                    Content::Dsse(envelope) => verify_with_certificate_key(
                        cert,
                        &envelope.pae(),
                        &B64.encode(envelope.signature.sig.as_bytes()),
                    )?,
                }
                (vec![jiff::Timestamp::now()], None)
            };
            for when in times {
                ca.verify_chain(cert, &m.chain, when).map_err(|e| {
                    keyless_err(format!(
                        "certificate does not chain to the ca-cert authority: {e}"
                    ))
                })?;
            }
            identity_from_certificate(cert, integrated)
        }
    }
}

fn verify_with_certificate_key(
    cert: &[u8],
    payload: &[u8],
    sig_b64: &str,
) -> Result<(), Rejection> {
    use der::{Decode, Encode};
    let parsed = x509_cert::Certificate::from_der(cert)
        .map_err(|e| keyless_err(format!("certificate is malformed: {e}")))?;
    let spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| keyless_err(format!("certificate key is malformed: {e}")))?;
    let key = VerificationKey::from_spki_der(&spki, HashAlgorithm::Sha256)
        .map_err(|e| keyless_err(format!("certificate key is unusable: {e}")))?;
    let sig = B64
        .decode(sig_b64)
        .map_err(|_| Rejection::MalformedSignature)?;
    if key.verify(payload, &sig) {
        Ok(())
    } else {
        Err(keyless_err(
            "signature does not verify with the certificate's key",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_identities_are_anchored() {
        let m = TextMatcher::new(None, Some("https://github.com/acme/.*")).unwrap();
        assert!(m.matches("https://github.com/acme/app/.github/workflows/x.yml@refs/heads/main"));
        assert!(!m.matches("evil https://github.com/acme/app"));
        let m = TextMatcher::new(None, Some("a|b")).unwrap();
        assert!(m.matches("a"));
        assert!(!m.matches("ab"));
        assert!(TextMatcher::new(Some("x"), None).unwrap().matches("x"));
        assert!(!TextMatcher::new(Some("x"), None).unwrap().matches("xx"));
    }
}
