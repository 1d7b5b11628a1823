//! The verifier: for one image, resolve its digest and evaluate each matching
//! policy, all under the request's deadline.
//!
//! Three moka caches sit on the registry path. Each uses `try_get_with`, so
//! concurrent misses for one key make one set of registry calls, and errors
//! are shared with the waiters but never stored:
//! - tag → digest (`resolve_ttl`);
//! - (signature repository, digest) → signature layers (`resolve_ttl`);
//! - (repository, digest, policy fingerprint) → policy outcome: passes for
//!   `verify_ttl`, failures only for `resolve_ttl` so a freshly signed image
//!   is admitted soon after. Registry failures are never cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use moka::future::Cache;
use moka::Expiry;
use oci_client::Reference;
use tracing::Instrument;

use super::attestation::{self, EnvelopeSigner, VerifiedStatement, DSSE_MEDIA_TYPE};
use super::cosign::{
    self, SignatureLayer, MAX_PAYLOAD_BYTES, MAX_SIGNATURE_LAYERS, SIMPLE_SIGNING_MEDIA_TYPE,
};
use super::referrers::{self, ReferrerSigner, VerifiedReferrer};
use super::{keyless, AuthorityOutcome, PolicyOutcome};
use crate::image::{cosign_tag, ImageRef};
use crate::policy::program::Language;
use crate::policy::{
    AuthorityCheck, CompiledAuthority, CompiledPolicy, KeyEvidence, LoadedPolicy, PolicyMode,
};
use crate::registry::{Credentials, RegistryClient, RegistryError};
use crate::trust::TrustStore;
use crate::workload::ImageUse;

/// Cache lifetimes and sizes.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// Tag → digest and signature-list lifetime; also how long a failed verdict is kept.
    pub resolve_ttl: Duration,
    /// How long a passing verdict is kept.
    pub verify_ttl: Duration,
    /// Bytes all verification caches may hold together (`--cache-memory`):
    /// signatures and referrers get 40% each, verdicts 15%, digests 5%.
    /// Entries are weighed by their size, so a few large signature sets
    /// cannot push the process past its memory limit.
    pub cache_bytes: u64,
    /// Trusted roots for keyless signatures and transparency logs.
    pub trust: Arc<TrustStore>,
    /// Time limit of one policy program evaluation.
    pub policy_timeout: Duration,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        VerifierSettings {
            resolve_ttl: Duration::from_secs(30),
            verify_ttl: Duration::from_secs(600),
            cache_bytes: DEFAULT_CACHE_BYTES,
            trust: Arc::new(TrustStore::public_good()),
            policy_timeout: crate::policy::program::DEFAULT_TIMEOUT,
        }
    }
}

/// Default of `--cache-memory`: 64 MiB, a quarter of the deployment's
/// 256 MiB limit.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// The weight of a cache entry, in bytes, as moka wants it.
fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn layers_weight(layers: &[SignatureLayer]) -> usize {
    layers
        .iter()
        .map(|l| {
            l.payload.len()
                + l.annotations
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                + 64
        })
        .sum()
}

fn referrers_weight(found: &[referrers::Referrer]) -> usize {
    found
        .iter()
        .map(|r| {
            r.blob.len()
                + r.digest.len()
                + r.annotations
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                + 96
        })
        .sum()
}

fn outcome_weight(o: &PolicyOutcome) -> usize {
    256 + o.policy.len()
        + o.reason.as_ref().map_or(0, String::len)
        + o.authorities
            .iter()
            .map(|a| {
                128 + a.name.len()
                    + a.reason.len()
                    + a.matches.as_ref().map_or(0, |m| m.to_string().len())
                    + if a.signer.is_some() { 512 } else { 0 }
            })
            .sum::<usize>()
}

/// Everything learned about one image of a request.
#[derive(Debug, Clone)]
pub struct ImageReport {
    /// Where the image was found and how it was written.
    pub image: ImageUse,
    /// The digest that was verified, once known.
    pub digest: Option<String>,
    /// One outcome per matching policy (empty: no policy matched).
    pub policies: Vec<PolicyOutcome>,
    /// The image reference could not be parsed.
    pub invalid_reference: Option<String>,
}

/// (credentials fingerprint, repository, digest, policy name, policy
/// fingerprint, trust store generation).
type VerdictKey = (String, String, String, String, String, u64);

struct VerdictExpiry {
    pass_ttl: Duration,
    fail_ttl: Duration,
}

impl Expiry<VerdictKey, Arc<PolicyOutcome>> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &VerdictKey,
        value: &Arc<PolicyOutcome>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(if value.passed {
            self.pass_ttl
        } else {
            self.fail_ttl
        })
    }
}

/// Resolves and verifies images against compiled policies.
pub struct Verifier {
    registry: Arc<RegistryClient>,
    clients: Cache<String, Arc<RegistryClient>>,
    digests: Cache<String, String>,
    signatures: Cache<(String, String), Arc<Vec<SignatureLayer>>>,
    referrers: Cache<(String, String), Arc<Vec<referrers::Referrer>>>,
    verdicts: Cache<VerdictKey, Arc<PolicyOutcome>>,
    trust: Arc<TrustStore>,
    policy_timeout: Duration,
}

impl Verifier {
    /// A verifier over `registry` with the given cache settings.
    pub fn new(registry: Arc<RegistryClient>, settings: &VerifierSettings) -> Self {
        Verifier {
            registry,
            clients: Cache::builder()
                .max_capacity(1_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            digests: Cache::builder()
                .max_capacity(settings.cache_bytes / 20)
                .weigher(|k: &String, v: &String| weight(k.len() + v.len() + 64))
                .time_to_live(settings.resolve_ttl)
                .build(),
            signatures: Cache::builder()
                .max_capacity(settings.cache_bytes / 5 * 2)
                .weigher(|k: &(String, String), v: &Arc<Vec<SignatureLayer>>| {
                    weight(k.0.len() + k.1.len() + layers_weight(v))
                })
                .time_to_live(settings.resolve_ttl)
                .build(),
            referrers: Cache::builder()
                .max_capacity(settings.cache_bytes / 5 * 2)
                .weigher(|k: &(String, String), v: &Arc<Vec<referrers::Referrer>>| {
                    weight(k.0.len() + k.1.len() + referrers_weight(v))
                })
                .time_to_live(settings.resolve_ttl)
                .build(),
            verdicts: Cache::builder()
                .max_capacity(settings.cache_bytes / 20 * 3)
                .weigher(|k: &VerdictKey, v: &Arc<PolicyOutcome>| {
                    weight(
                        k.0.len()
                            + k.1.len()
                            + k.2.len()
                            + k.3.len()
                            + k.4.len()
                            + outcome_weight(v),
                    )
                })
                .expire_after(VerdictExpiry {
                    pass_ttl: settings.verify_ttl,
                    fail_ttl: settings.resolve_ttl.min(settings.verify_ttl),
                })
                .build(),
            trust: settings.trust.clone(),
            policy_timeout: settings.policy_timeout,
        }
    }

    /// The trusted roots in use.
    pub fn trust(&self) -> &Arc<TrustStore> {
        &self.trust
    }

    /// The registry client.
    pub fn registry(&self) -> &Arc<RegistryClient> {
        &self.registry
    }

    /// The registry client for a credential set (one per set: oci-client
    /// keeps one credential per registry).
    async fn client_for(&self, creds: &Credentials) -> Result<Arc<RegistryClient>, RegistryError> {
        if creds.is_empty() {
            return Ok(self.registry.clone());
        }
        let base = self.registry.clone();
        let owned = creds.clone();
        self.clients
            .try_get_with(creds.fingerprint().to_string(), async move {
                base.with_credentials(&owned)
                    .map(Arc::new)
                    .map_err(|e| RegistryError::Protocol {
                        registry: "client".into(),
                        reason: format!("cannot use the pull-secret credentials: {e}"),
                    })
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// The digest to verify: the pinned one, or what the registry serves for the tag.
    pub async fn resolve(
        &self,
        image: &ImageRef,
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        let reference = image.to_reference();
        let registry = self.client_for(creds).await?;
        self.digests
            .try_get_with(
                format!("{}|{}", creds.fingerprint(), reference.whole()),
                async move { registry.resolve(&reference).await },
            )
            .await
            .map_err(|e| (*e).clone())
    }

    /// Verifies one image against the policies that match it, using `creds`
    /// (the request namespace's pull secrets). Work past `deadline` is
    /// abandoned and reported as a timeout of `budget`.
    pub async fn verify_image(
        &self,
        image: ImageUse,
        parsed: ImageRef,
        matches: Vec<LoadedPolicy>,
        deadline: tokio::time::Instant,
        budget: Duration,
        creds: &Credentials,
    ) -> ImageReport {
        let span = tracing::info_span!("image", image = %image.reference);
        let names: Vec<(String, PolicyMode)> = matches.iter().map(policy_name_mode).collect();
        let work = self
            .verify_matches(&parsed, matches, creds)
            .instrument(span);
        match tokio::time::timeout_at(deadline, work).await {
            Ok((digest, policies)) => ImageReport {
                image,
                digest,
                policies,
                invalid_reference: None,
            },
            Err(_) => ImageReport {
                image,
                digest: parsed.digest.clone(),
                policies: names
                    .into_iter()
                    .map(|(n, m)| {
                        PolicyOutcome::failed(
                            &n,
                            m,
                            format!("timed out after {}", crate::duration::human(budget)),
                            true,
                        )
                    })
                    .collect(),
                invalid_reference: None,
            },
        }
    }

    async fn verify_matches(
        &self,
        image: &ImageRef,
        matches: Vec<LoadedPolicy>,
        creds: &Credentials,
    ) -> (Option<String>, Vec<PolicyOutcome>) {
        // Invalid policies fail closed without any registry traffic.
        let mut outcomes = Vec::with_capacity(matches.len());
        let mut valid = Vec::new();
        for m in matches {
            match m {
                LoadedPolicy::Invalid(p) => outcomes.push(PolicyOutcome::failed(
                    &p.name,
                    PolicyMode::Enforce,
                    format!("policy is invalid: {}", p.error),
                    false,
                )),
                LoadedPolicy::Valid(p) => valid.push(p),
            }
        }
        if valid.is_empty() {
            return (image.digest.clone(), outcomes);
        }
        let digest = match self.resolve(image, creds).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve image");
                outcomes.extend(valid.iter().map(|p| {
                    PolicyOutcome::failed(
                        &p.name,
                        p.mode,
                        format!("cannot resolve digest: {e}"),
                        e.is_transient(),
                    )
                }));
                return (None, outcomes);
            }
        };
        let verified = join_all(
            valid
                .iter()
                .map(|p| self.evaluate_policy(image, &digest, p, creds)),
        )
        .await;
        outcomes.extend(verified.into_iter().map(|o| (*o).clone()));
        (Some(digest), outcomes)
    }

    /// Evaluates one policy for one digest, through the verdict cache.
    pub async fn evaluate_policy(
        &self,
        image: &ImageRef,
        digest: &str,
        policy: &Arc<CompiledPolicy>,
        creds: &Credentials,
    ) -> Arc<PolicyOutcome> {
        let key = (
            creds.fingerprint().to_string(),
            image.repository_name(),
            digest.to_string(),
            policy.name.clone(),
            policy.fingerprint.clone(),
            self.trust.generation(),
        );
        let result = self
            .verdicts
            .try_get_with(key, async {
                let outcome = Arc::new(self.compute_policy(image, digest, policy, creds).await);
                if outcome.transient {
                    Err(outcome)
                } else {
                    Ok(outcome)
                }
            })
            .await;
        match result {
            Ok(o) => o,
            Err(e) => (*e).clone(),
        }
    }

    async fn compute_policy(
        &self,
        image: &ImageRef,
        digest: &str,
        policy: &CompiledPolicy,
        creds: &Credentials,
    ) -> PolicyOutcome {
        if !policy.unsupported.is_empty() {
            return PolicyOutcome::failed(
                &policy.name,
                policy.mode,
                format!(
                    "uses {}, which this version of sigil does not verify",
                    policy.unsupported.join(", ")
                ),
                false,
            );
        }
        let authorities = join_all(
            policy
                .authorities
                .iter()
                .map(|a| self.check_authority(image, digest, a, creds)),
        )
        .await;
        if let Some(program) = &policy.program {
            return self.judge_spec_policy(policy, program, authorities).await;
        }
        let passed = authorities.iter().any(|a| a.passed);
        let transient = !passed && authorities.iter().any(|a| a.transient);
        PolicyOutcome {
            policy: policy.name.clone(),
            mode: policy.mode,
            passed,
            reason: None,
            authorities,
            transient,
        }
    }

    /// `spec.policy`: the program sees policy-controller's input,
    /// `{authorityMatches: {<name>: {signatures, attestations, static}}}`,
    /// holding only the authorities that verified, and decides.
    async fn judge_spec_policy(
        &self,
        policy: &CompiledPolicy,
        program: &crate::policy::program::Program,
        authorities: Vec<AuthorityOutcome>,
    ) -> PolicyOutcome {
        let matches: serde_json::Map<String, serde_json::Value> = authorities
            .iter()
            .filter(|a| a.passed)
            .filter_map(|a| a.matches.clone().map(|m| (a.name.clone(), m)))
            .collect();
        let input = serde_json::json!({ "authorityMatches": matches });
        let program = program.clone();
        let limit = self.policy_timeout;
        let result = tokio::task::spawn_blocking(move || program.evaluate(&input, limit))
            .await
            .unwrap_or_else(|e| Err(format!("policy evaluation crashed: {e}")));
        let transient = result.is_err() && authorities.iter().any(|a| a.transient);
        PolicyOutcome {
            policy: policy.name.clone(),
            mode: policy.mode,
            passed: result.is_ok(),
            reason: result.err().map(|m| format!("spec.policy failed: {m}")),
            authorities,
            transient,
        }
    }

    async fn check_authority(
        &self,
        image: &ImageRef,
        digest: &str,
        a: &CompiledAuthority,
        creds: &Credentials,
    ) -> AuthorityOutcome {
        let outcome = |passed: bool, reason: String, transient: bool| AuthorityOutcome {
            name: a.name.clone(),
            passed,
            reason,
            transient,
            signer: None,
            matches: None,
        };
        match &a.check {
            AuthorityCheck::Static { pass: true, .. } => AuthorityOutcome {
                matches: Some(
                    serde_json::json!({ "static": true, "signatures": [], "attestations": {} }),
                ),
                ..outcome(true, "static pass".into(), false)
            },
            AuthorityCheck::Static {
                pass: false,
                message,
            } => outcome(
                false,
                message
                    .clone()
                    .unwrap_or_else(|| "disallowed by static policy".into()),
                false,
            ),
            AuthorityCheck::Unsupported { field } => outcome(
                false,
                format!("{field} is not supported yet by sigil; failing closed"),
                false,
            ),
            AuthorityCheck::Key { .. } | AuthorityCheck::Keyless(_) if a.bundle_format => {
                self.check_bundle_authority(image, digest, a, creds).await
            }
            AuthorityCheck::Key { .. } | AuthorityCheck::Keyless(_)
                if !a.attestations.is_empty() =>
            {
                self.check_attestations(image, digest, a, creds).await
            }
            AuthorityCheck::Key { key, evidence } => {
                let layers = match self.signature_layers(image, digest, a, creds).await {
                    Ok(l) => l,
                    Err(o) => return o,
                };
                let trust = match evidence {
                    None => None,
                    Some(ev) => match self.trust.resolve(ev.trust_root_ref.as_deref()) {
                        Ok(t) => Some((ev, t)),
                        Err(e) => return outcome(false, e.to_string(), false),
                    },
                };
                let verified = cosign::first_verified(&layers, |l| {
                    cosign::verify_layer(l, digest, key, &a.name)?;
                    if let Some((ev, t)) = &trust {
                        keyless::verify_key_evidence(l, key, t, ev.tlog, ev.timestamp)?;
                    }
                    Ok(())
                });
                match verified {
                    Ok(()) => AuthorityOutcome {
                        matches: Some(serde_json::json!({
                            "signatures": [signature_match(None)],
                            "attestations": {},
                        })),
                        ..outcome(
                        true,
                        match evidence {
                            Some(KeyEvidence { tlog: true, timestamp: true, .. }) => format!(
                                "signature verified with key {}, its Rekor entry and its RFC 3161 timestamp",
                                a.name
                            ),
                            Some(KeyEvidence { tlog: true, .. }) => format!(
                                "signature verified with key {} and its Rekor entry",
                                a.name
                            ),
                            Some(_) => format!(
                                "signature verified with key {} and its RFC 3161 timestamp",
                                a.name
                            ),
                            None => format!("signature verified with key {}", a.name),
                        },
                        false,
                    )
                    },
                    Err(r) => outcome(false, r.to_string(), false),
                }
            }
            AuthorityCheck::Keyless(policy) => {
                let layers = match self.signature_layers(image, digest, a, creds).await {
                    Ok(l) => l,
                    Err(o) => return o,
                };
                let trust = match self.trust.resolve(policy.trust_root_ref.as_deref()) {
                    Ok(t) => t,
                    Err(e) => return outcome(false, e.to_string(), false),
                };
                match cosign::first_verified(&layers, |l| {
                    keyless::verify_keyless_layer(l, digest, policy, &trust)
                }) {
                    Ok(signer) => AuthorityOutcome {
                        matches: Some(serde_json::json!({
                            "signatures": [signature_match(Some(&signer))],
                            "attestations": {},
                        })),
                        signer: Some(signer.clone()),
                        ..outcome(
                            true,
                            format!(
                                "keyless signature by {} issued by {} verified",
                                signer.subject, signer.issuer
                            ),
                            false,
                        )
                    },
                    Err(r) => outcome(false, r.to_string(), false),
                }
            }
        }
    }

    /// An authority with `attestations`: every required attestation must be
    /// present among the verified `.att` layers (signed as the authority
    /// says, for this digest) and satisfy its policy.
    async fn check_attestations(
        &self,
        image: &ImageRef,
        digest: &str,
        a: &CompiledAuthority,
        creds: &Credentials,
    ) -> AuthorityOutcome {
        let fail =
            |reason: String, transient: bool| AuthorityOutcome::failed(&a.name, reason, transient);
        let layers = match self.cosign_layers(image, digest, a, creds, "att").await {
            Ok(l) => l,
            Err(o) => return o,
        };
        let (verified, rejected) = match &a.check {
            AuthorityCheck::Key { key, evidence } => {
                let trust = match evidence {
                    None => None,
                    Some(ev) => match self.trust.resolve(ev.trust_root_ref.as_deref()) {
                        Ok(t) => Some((ev, t)),
                        Err(e) => return fail(e.to_string(), false),
                    },
                };
                let signer = EnvelopeSigner::Key {
                    key,
                    evidence: trust.as_ref().map(|(ev, t)| (*ev, t.as_ref())),
                };
                attestation::verify_attestation_layers(&layers, digest, &signer)
            }
            AuthorityCheck::Keyless(policy) => {
                let trust = match self.trust.resolve(policy.trust_root_ref.as_deref()) {
                    Ok(t) => t,
                    Err(e) => return fail(e.to_string(), false),
                };
                let signer = EnvelopeSigner::Keyless {
                    policy,
                    trust: &trust,
                };
                attestation::verify_attestation_layers(&layers, digest, &signer)
            }
            _ => return fail("attestations need a key or keyless authority".into(), false),
        };
        let mut rejected = rejected;
        rejected.sort_by_key(|r| std::cmp::Reverse(r.rank()));
        let reasons: Vec<String> = rejected.iter().map(ToString::to_string).collect();
        self.judge_attestations(a, verified, &reasons).await
    }

    /// Whether the verified Statements satisfy every required attestation
    /// (and its policy). `unverified` are the reasons other candidates did
    /// not count, most informative first.
    async fn judge_attestations(
        &self,
        a: &CompiledAuthority,
        verified: Vec<VerifiedStatement>,
        unverified: &[String],
    ) -> AuthorityOutcome {
        let fail = |reason: String| AuthorityOutcome::failed(&a.name, reason, false);
        let why_not = || match unverified.first() {
            None => String::new(),
            Some(r) => format!(
                " ({} attestation{} did not verify: {r})",
                unverified.len(),
                if unverified.len() == 1 { "" } else { "s" }
            ),
        };
        for want in &a.attestations {
            let matching: Vec<&VerifiedStatement> = verified
                .iter()
                .filter(|v| v.predicate_type == want.predicate_type)
                .collect();
            if matching.is_empty() {
                return fail(format!(
                    "attestation {}: no matching attestations for predicate type {}{}",
                    want.name,
                    want.predicate_type,
                    why_not()
                ));
            }
            if let Some(program) = &want.policy {
                for m in matching {
                    let input = match program.language() {
                        Language::Rego => m.statement.clone(),
                        Language::Cel => serde_json::json!({
                            "statement": m.statement,
                            "predicate": m.statement.get("predicate").cloned().unwrap_or_default(),
                        }),
                    };
                    let program = program.clone();
                    let limit = self.policy_timeout;
                    let result =
                        tokio::task::spawn_blocking(move || program.evaluate(&input, limit))
                            .await
                            .unwrap_or_else(|e| Err(format!("policy evaluation crashed: {e}")));
                    if let Err(message) = result {
                        return fail(format!(
                            "attestation {}: policy failed: {message}",
                            want.name
                        ));
                    }
                }
            }
        }
        AuthorityOutcome {
            name: a.name.clone(),
            passed: true,
            reason: format!(
                "attestations {} verified",
                a.attestations
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            transient: false,
            signer: verified.iter().find_map(|v| v.signer.clone()),
            matches: Some(serde_json::json!({
                "signatures": [],
                "attestations": a.attestations.iter().map(|w| {
                    let found: Vec<serde_json::Value> = verified
                        .iter()
                        .filter(|v| v.predicate_type == w.predicate_type)
                        .map(|v| signature_match(v.signer.as_ref()))
                        .collect();
                    (w.name.clone(), serde_json::Value::Array(found))
                }).collect::<serde_json::Map<_, _>>(),
            })),
        }
    }

    /// An authority with `signatureFormat: bundle`: its signatures (or
    /// attestations) are the image's verified referrers.
    async fn check_bundle_authority(
        &self,
        image: &ImageRef,
        digest: &str,
        a: &CompiledAuthority,
        creds: &Credentials,
    ) -> AuthorityOutcome {
        let fail =
            |reason: String, transient: bool| AuthorityOutcome::failed(&a.name, reason, transient);
        let (registry, repository) = signature_home(image, a);
        let client = match self.client_for(creds).await {
            Ok(c) => c,
            Err(e) => return fail(e.to_string(), e.is_transient()),
        };
        let key = (
            format!("{}|{registry}/{repository}", creds.fingerprint()),
            format!("{digest}|referrers"),
        );
        let fetched = {
            let (registry, repository, digest) =
                (registry.clone(), repository.clone(), digest.to_string());
            self.referrers
                .try_get_with(key, async move {
                    referrers::fetch_referrers(&client, &registry, &repository, &digest).await
                })
                .await
                .map_err(|e| (*e).clone())
        };
        let found = match fetched {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    format!("cannot fetch referrers of {registry}/{repository}@{digest}: {e}"),
                    e.is_transient(),
                )
            }
        };
        if found.is_empty() {
            return fail(
                format!("no signature or attestation referrers found for {registry}/{repository}@{digest}"),
                false,
            );
        }
        let (signer_trust, evidence_tlog) = match &a.check {
            AuthorityCheck::Key { evidence, .. } => (
                evidence.as_ref().and_then(|e| e.trust_root_ref.clone()),
                evidence.as_ref().is_some_and(|e| e.tlog),
            ),
            AuthorityCheck::Keyless(p) => (p.trust_root_ref.clone(), false),
            _ => {
                return fail(
                    "signatureFormat: bundle needs a key or keyless authority".into(),
                    false,
                )
            }
        };
        let trust = match self.trust.resolve(signer_trust.as_deref()) {
            Ok(t) => t,
            Err(e) => return fail(e.to_string(), false),
        };
        let signer = match &a.check {
            AuthorityCheck::Key { key, .. } => ReferrerSigner::Key {
                key,
                require_tlog: evidence_tlog,
                trust: &trust,
            },
            AuthorityCheck::Keyless(policy) => ReferrerSigner::Keyless {
                policy,
                trust: &trust,
            },
            _ => {
                return fail(
                    "signatureFormat: bundle needs a key or keyless authority".into(),
                    false,
                )
            }
        };
        let mut signatures = Vec::new();
        let mut statements = Vec::new();
        let mut rejected = Vec::new();
        for r in found.iter() {
            match referrers::verify_referrer(r, digest, &signer) {
                Ok(VerifiedReferrer::Signature(s)) => signatures.push(s),
                Ok(VerifiedReferrer::Attestation(v)) => statements.push(v),
                Err(why) => rejected.push(format!("referrer {}: {why}", r.digest)),
            }
        }
        if !a.attestations.is_empty() {
            return self.judge_attestations(a, statements, &rejected).await;
        }
        let matches = serde_json::json!({
            "signatures": signatures.iter().map(|s| signature_match(s.as_ref())).collect::<Vec<_>>(),
            "attestations": {},
        });
        match signatures.into_iter().next() {
            Some(signer) => AuthorityOutcome {
                name: a.name.clone(),
                passed: true,
                reason: format!("signature bundle verified for {}", a.name),
                transient: false,
                signer,
                matches: Some(matches),
            },
            None => fail(
                format!(
                    "no verified signature among {} referrer{}{}",
                    found.len(),
                    if found.len() == 1 { "" } else { "s" },
                    if rejected.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", rejected.join("; "))
                    }
                ),
                false,
            ),
        }
    }

    /// The `.sig` layers for an authority, or the outcome to report when
    /// there are none or they cannot be fetched.
    async fn signature_layers(
        &self,
        image: &ImageRef,
        digest: &str,
        a: &CompiledAuthority,
        creds: &Credentials,
    ) -> Result<Arc<Vec<SignatureLayer>>, AuthorityOutcome> {
        self.cosign_layers(image, digest, a, creds, "sig").await
    }

    /// The layers of the cosign tag `sha256-<hex>.<suffix>` for an authority.
    async fn cosign_layers(
        &self,
        image: &ImageRef,
        digest: &str,
        a: &CompiledAuthority,
        creds: &Credentials,
        suffix: &str,
    ) -> Result<Arc<Vec<SignatureLayer>>, AuthorityOutcome> {
        let (registry, repository) = signature_home(image, a);
        let sig_ref = Reference::with_tag(
            registry,
            repository,
            format!("{}{}", a.signature_tag_prefix, cosign_tag(digest, suffix)),
        );
        let fail =
            |reason: String, transient: bool| AuthorityOutcome::failed(&a.name, reason, transient);
        match self.signatures(&sig_ref, creds).await {
            Err(e) => Err(fail(
                format!("cannot fetch signatures from {}: {e}", sig_ref.whole()),
                e.is_transient(),
            )),
            Ok(layers) if layers.is_empty() => Err(fail(
                format!(
                    "no {} found at {}",
                    if suffix == "att" {
                        "attestations"
                    } else {
                        "signatures"
                    },
                    sig_ref.whole()
                ),
                false,
            )),
            Ok(layers) => Ok(layers),
        }
    }

    /// The signature layers stored under `sig_ref` (empty when there is no
    /// signature tag), through the coalescing cache.
    async fn signatures(
        &self,
        sig_ref: &Reference,
        creds: &Credentials,
    ) -> Result<Arc<Vec<SignatureLayer>>, RegistryError> {
        let client = self.client_for(creds).await?;
        let key = (
            format!(
                "{}|{}/{}",
                creds.fingerprint(),
                sig_ref.registry(),
                sig_ref.repository()
            ),
            sig_ref.tag().unwrap_or_default().to_string(),
        );
        self.signatures
            .try_get_with(key, async move {
                fetch_signature_layers(&client, sig_ref).await
            })
            .await
            .map_err(|e| (*e).clone())
    }
}

/// Fetches the simple-signing layers of a `.sig` manifest.
pub async fn fetch_signature_layers(
    registry: &RegistryClient,
    sig_ref: &Reference,
) -> Result<Arc<Vec<SignatureLayer>>, RegistryError> {
    let Some((manifest, _)) = registry.image_manifest(sig_ref).await? else {
        return Ok(Arc::new(Vec::new()));
    };
    let wanted: Vec<_> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE || l.media_type == DSSE_MEDIA_TYPE)
        .take(MAX_SIGNATURE_LAYERS)
        .collect();
    let blobs = join_all(
        wanted
            .iter()
            .map(|l| registry.blob(sig_ref, l, MAX_PAYLOAD_BYTES)),
    )
    .await;
    let mut layers = Vec::with_capacity(wanted.len());
    for (desc, blob) in wanted.into_iter().zip(blobs) {
        layers.push(SignatureLayer {
            payload: blob?,
            annotations: desc
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        });
    }
    Ok(Arc::new(layers))
}

/// Where an authority's signatures live: `source[].oci`, else beside the image.
fn signature_home(image: &ImageRef, a: &CompiledAuthority) -> (String, String) {
    match &a.signature_repository {
        Some(r) => (r.registry.clone(), r.repository.clone()),
        None => (image.registry.clone(), image.repository.clone()),
    }
}

/// One entry of `authorityMatches.<name>.signatures` (or of an
/// attestation's list): policy-controller's `{id, subject, issuer}`.
fn signature_match(signer: Option<&keyless::SignerIdentity>) -> serde_json::Value {
    match signer {
        Some(s) => serde_json::json!({
            "id": format!("{}|{}", s.issuer, s.subject),
            "subject": s.subject,
            "issuer": s.issuer,
        }),
        None => serde_json::json!({ "id": "key", "subject": "", "issuer": "" }),
    }
}

fn policy_name_mode(m: &LoadedPolicy) -> (String, PolicyMode) {
    match m {
        LoadedPolicy::Valid(p) => (p.name.clone(), p.mode),
        LoadedPolicy::Invalid(p) => (p.name.clone(), PolicyMode::Enforce),
    }
}
