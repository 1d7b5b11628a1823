//! The verifier: for one image, resolve its digest and evaluate each matching
//! policy, all under the request's deadline. Orchestration and the verdict
//! cache only: registry reads (and their caches) are [`super::fetch`], each
//! layout's verification a collector in [`super::collect`], the decision
//! [`super::judge`].
//!
//! The verdict cache keys (credentials, repository, digest, policy name,
//! policy fingerprint, trust generation) → policy outcome: passes live
//! `verify_ttl`, failures `resolve_ttl`, so a freshly signed image is
//! admitted soon after. A transient outcome ([`PolicyOutcome::is_transient`])
//! is never stored; concurrent misses for one key make one evaluation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use moka::future::Cache;
use moka::Expiry;
use tracing::Instrument;

use super::collect::{self, Sources};
use super::fetch::{weight, Fetcher};
use super::judge;
use super::outcome::{Failure, PolicyOutcome};
use crate::image::ImageRef;
use crate::metrics::{self, CacheName};
use crate::policy::{CompiledPolicy, LoadedPolicy, PolicyMode};
use crate::registry::{Coalesced, Credentials, RegistryClient, RegistryError};
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
pub use crate::limits::DEFAULT_CACHE_BYTES;

fn outcome_weight(o: &PolicyOutcome) -> usize {
    256 + o.policy.len()
        + o.reason().map_or(0, str::len)
        + o.authorities
            .iter()
            .map(|a| {
                128 + a.name.len()
                    + a.reason().len()
                    + a.result.as_ref().map_or(0, |v| v.matches.to_string().len())
                    + if a.signer().is_some() { 512 } else { 0 }
                    + a.result.as_ref().map_or(0, |v| {
                        v.statements
                            .values()
                            .flatten()
                            .map(|s| s.to_string().len())
                            .sum::<usize>()
                    })
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
    /// One outcome per matching policy (empty: no policy matched), shared
    /// with the verdict cache.
    pub policies: Vec<Arc<PolicyOutcome>>,
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

/// The registry credentials of one request.
#[derive(Debug, Clone, Default)]
pub struct RequestCredentials {
    /// For reading signatures, attestations and referrers.
    pub read: Credentials,
    /// For resolving a tag to its digest (the read ones, or only the
    /// workload's own with `--resolve-with-workload-credentials`).
    pub resolve: Credentials,
}

impl RequestCredentials {
    /// The same credentials for both.
    pub fn both(creds: Credentials) -> Self {
        RequestCredentials {
            resolve: creds.clone(),
            read: creds,
        }
    }
}

/// Most referrer artifacts of one type read for one image.
pub use crate::limits::MAX_REFERRER_ARTIFACTS;

/// Resolves and verifies images against compiled policies.
pub struct Verifier {
    fetch: Fetcher,
    verdicts: Cache<VerdictKey, Arc<PolicyOutcome>>,
    /// Who waits on each verdict being computed: its registry requests are
    /// charged to any of them, never to the first requester's share alone.
    computing: Coalesced<VerdictKey>,
    trust: Arc<TrustStore>,
    policy_timeout: Duration,
}

impl Verifier {
    /// A verifier over `registry` with the given cache settings.
    pub fn new(registry: Arc<RegistryClient>, settings: &VerifierSettings) -> Self {
        Verifier {
            fetch: Fetcher::new(registry, settings.cache_bytes, settings.resolve_ttl),
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
                .eviction_listener(|_, _, cause| {
                    metrics::global().cache_removal(CacheName::verdicts, cause)
                })
                .build(),
            computing: Coalesced::default(),
            trust: settings.trust.clone(),
            policy_timeout: settings.policy_timeout,
        }
    }

    /// The trusted roots in use.
    pub fn trust(&self) -> &Arc<TrustStore> {
        &self.trust
    }

    /// The time limit of one policy program (`--policy-timeout`).
    pub fn policy_timeout(&self) -> Duration {
        self.policy_timeout
    }

    /// The registry client.
    pub fn registry(&self) -> &Arc<RegistryClient> {
        self.fetch.registry()
    }

    /// The digest to verify: the pinned one, or what the registry serves for the tag.
    pub async fn resolve(
        &self,
        image: &ImageRef,
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        self.fetch.resolve(image, creds).await
    }

    /// Verifies one image against the policies that match it, using `creds`
    /// (the request namespace's pull secrets). Work past `deadline` is
    /// abandoned and reported as a timeout of `budget`.
    pub async fn verify_image(
        &self,
        image: ImageUse,
        parsed: Arc<ImageRef>,
        matches: Vec<LoadedPolicy>,
        deadline: tokio::time::Instant,
        budget: Duration,
        creds: &RequestCredentials,
    ) -> ImageReport {
        let work = self.verify_matches(&parsed, &matches, creds);
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
                policies: matches
                    .iter()
                    .map(|m| {
                        let (name, mode) = policy_name_mode(m);
                        Arc::new(PolicyOutcome::failed(
                            name,
                            mode,
                            Failure::Transient(format!(
                                "timed out after {}",
                                crate::duration::human(budget)
                            )),
                        ))
                    })
                    .collect(),
                invalid_reference: None,
            },
        }
    }

    async fn verify_matches(
        &self,
        image: &ImageRef,
        matches: &[LoadedPolicy],
        creds: &RequestCredentials,
    ) -> (Option<String>, Vec<Arc<PolicyOutcome>>) {
        // Invalid policies fail closed without any registry traffic.
        let mut outcomes = Vec::with_capacity(matches.len());
        let mut valid = Vec::new();
        for m in matches {
            match m {
                LoadedPolicy::Invalid(p) => outcomes.push(Arc::new(PolicyOutcome::failed(
                    &p.name,
                    PolicyMode::Enforce,
                    Failure::Verdict(format!("policy is invalid: {}", p.error)),
                ))),
                LoadedPolicy::Valid(p) => valid.push(p),
            }
        }
        if valid.is_empty() {
            return (image.digest.clone(), outcomes);
        }
        let resolved = match &image.digest {
            Some(d) => Ok(d.clone()),
            // Boxed, as the computation below: only tags get here.
            None => {
                Box::pin(self.resolve(image, &creds.resolve))
                    .instrument(image_span(image))
                    .await
            }
        };
        let digest = match resolved {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(image = %image.original, error = %e, "cannot resolve image");
                outcomes.extend(valid.iter().map(|p| {
                    Arc::new(PolicyOutcome::failed(
                        &p.name,
                        p.mode,
                        Failure::registry(format!("cannot resolve digest: {e}"), &e),
                    ))
                }));
                return (None, outcomes);
            }
        };
        let verified = join_all(
            valid
                .iter()
                .map(|p| self.evaluate_policy(image, &digest, p, &creds.read)),
        )
        .await;
        outcomes.extend(verified);
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
        // The warm path: a cached verdict, without the span and the
        // coalescing the computation needs.
        if let Some(cached) = self.verdicts.get(&key).await {
            metrics::global().cache_lookup(CacheName::verdicts, true);
            return cached;
        }
        let computed = AtomicBool::new(false);
        // Namespaces that join this computation while it runs lend it their
        // registry shares (and take them back when they stop waiting).
        let waiting = self.computing.waiting(&key);
        let (tenants, _joined) = match waiting {
            Some((tenants, joined)) => (Some(tenants), joined),
            None => (None, None),
        };
        let result = self
            .verdicts
            .try_get_with(
                key,
                crate::registry::charged_to(tenants, async {
                    computed.store(true, Ordering::Relaxed);
                    // Boxed: the computation's future is large (every
                    // collector's state), and inline it would make every
                    // future that awaits a verdict as large, to be copied
                    // on each move even when the verdict is cached.
                    let outcome =
                        Arc::new(Box::pin(self.compute_policy(image, digest, policy, creds)).await);
                    // By type: a transient failure is shared with the waiters
                    // of this evaluation, never stored.
                    if outcome.is_transient() {
                        Err(outcome)
                    } else {
                        Ok(outcome)
                    }
                })
                .instrument(image_span(image)),
            )
            .await;
        metrics::global().cache_lookup(CacheName::verdicts, !computed.load(Ordering::Relaxed));
        match result {
            Ok(o) => o,
            Err(e) => (*e).clone(),
        }
    }

    /// The OCI referrer artifacts of `image@digest` of `artifact_type`
    /// (Kyverno's `referrer` attestations) whose signature verifies under
    /// `policy` (a one-authority policy, evaluated for the artifact's own
    /// digest through the verdict cache) and whose manifest names `digest`
    /// as its subject: each one's first layer, parsed as JSON. At most
    /// [`MAX_REFERRER_ARTIFACTS`] are read, each layer within
    /// [`crate::limits::MAX_PAYLOAD_BYTES`].
    pub async fn signed_referrer_payloads(
        &self,
        image: &ImageRef,
        digest: &str,
        artifact_type: &str,
        policy: &Arc<CompiledPolicy>,
        creds: &Credentials,
    ) -> Result<Vec<serde_json::Value>, Failure> {
        let (registry, repository) = (&image.registry, &image.repository);
        let at = format!("{registry}/{repository}@{digest}");
        let listed = self
            .fetch
            .referrer_list(registry, repository, digest, creds)
            .await
            .map_err(|e| Failure::registry(format!("cannot fetch referrers of {at}: {e}"), &e))?;
        let candidates: Vec<String> = listed
            .iter()
            .filter(|e| e.artifact_type.as_deref() == Some(artifact_type))
            .take(MAX_REFERRER_ARTIFACTS)
            .map(|e| e.digest.clone())
            .collect();
        if candidates.is_empty() {
            return Err(Failure::Verdict(format!(
                "no referrer of artifact type {artifact_type} found for {at}"
            )));
        }
        let mut rejected = Vec::new();
        let mut payloads = Vec::new();
        for artifact in candidates {
            let outcome = self.evaluate_policy(image, &artifact, policy, creds).await;
            if !outcome.passed {
                let why = outcome.reasons().join("; ");
                if outcome.is_transient() {
                    return Err(Failure::Transient(format!("referrer {artifact}: {why}")));
                }
                rejected.push(format!("referrer {artifact}: {why}"));
                continue;
            }
            match self
                .referrer_layer(image, &artifact, digest, artifact_type, creds)
                .await
            {
                Ok(payload) => payloads.push(payload),
                Err(Failure::Verdict(why)) => rejected.push(format!("referrer {artifact}: {why}")),
                Err(transient) => return Err(transient),
            }
        }
        if payloads.is_empty() {
            return Err(Failure::Verdict(rejected.join("; ")));
        }
        Ok(payloads)
    }

    /// A referrer artifact's first layer as JSON, once its manifest says
    /// it is of `artifact_type` and about `subject`.
    async fn referrer_layer(
        &self,
        image: &ImageRef,
        artifact: &str,
        subject: &str,
        artifact_type: &str,
        creds: &Credentials,
    ) -> Result<serde_json::Value, Failure> {
        let (registry, repository) = (&image.registry, &image.repository);
        let read = |e: RegistryError| Failure::registry(format!("cannot read it: {e}"), &e);
        let bytes = self
            .fetch
            .manifest(registry, repository, artifact, creds)
            .await
            .map_err(read)?
            .ok_or_else(|| Failure::Verdict("its manifest is gone".into()))?;
        let manifest: oci_client::manifest::OciImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Verdict(format!("its manifest does not parse: {e}")))?;
        if manifest.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject) {
            return Err(Failure::Verdict(format!(
                "its manifest does not name {subject} as its subject"
            )));
        }
        if manifest.artifact_type.as_deref() != Some(artifact_type) {
            return Err(Failure::Verdict(format!(
                "its manifest is not of artifact type {artifact_type}"
            )));
        }
        let layer = manifest
            .layers
            .first()
            .ok_or_else(|| Failure::Verdict("it has no layer".into()))?;
        let blob = self
            .fetch
            .blob(
                registry,
                repository,
                layer,
                crate::limits::MAX_PAYLOAD_BYTES,
                creds,
            )
            .await
            .map_err(read)?;
        serde_json::from_slice(&blob)
            .map_err(|e| Failure::Verdict(format!("its layer is not JSON: {e}")))
    }

    /// What each of the verifier's caches holds now, weighed in bytes
    /// (after applying the caches' pending bookkeeping, without which
    /// their sizes lag behind).
    pub async fn cache_bytes(&self) -> Vec<(CacheName, u64)> {
        self.verdicts.run_pending_tasks().await;
        let mut sizes = vec![(CacheName::verdicts, self.verdicts.weighted_size())];
        sizes.extend(self.fetch.cache_bytes().await);
        sizes
    }

    /// Collects every authority's evidence, then has the judge decide (on
    /// a blocking thread when it runs policy programs).
    async fn compute_policy(
        &self,
        image: &ImageRef,
        digest: &str,
        policy: &Arc<CompiledPolicy>,
        creds: &Credentials,
    ) -> PolicyOutcome {
        let evidence = if judge::needs_evidence(policy) {
            let sources = Sources {
                fetch: &self.fetch,
                trust: &self.trust,
                creds,
            };
            join_all(
                policy
                    .authorities
                    .iter()
                    .map(|a| collect::collect(&sources, image, digest, a)),
            )
            .await
        } else {
            Vec::new()
        };
        let limit = self.policy_timeout;
        if !judge::runs_programs(policy) {
            return judge::judge(policy, digest, &evidence, limit);
        }
        let (policy, digest) = (policy.clone(), digest.to_string());
        let (name, mode) = (policy.name.clone(), policy.mode);
        tokio::task::spawn_blocking(move || judge::judge(&policy, &digest, &evidence, limit))
            .await
            .unwrap_or_else(|e| {
                PolicyOutcome::failed(
                    &name,
                    mode,
                    Failure::Verdict(format!("policy evaluation crashed: {e}")),
                )
            })
    }
}

fn policy_name_mode(m: &LoadedPolicy) -> (&str, PolicyMode) {
    match m {
        LoadedPolicy::Valid(p) => (&p.name, p.mode),
        LoadedPolicy::Invalid(p) => (&p.name, PolicyMode::Enforce),
    }
}

/// The span of an image's registry work and verification. Made only where
/// that work begins: a cached verdict logs nothing, and a span with a
/// formatted field costs an allocation and the formatting on every review.
fn image_span(image: &ImageRef) -> tracing::Span {
    tracing::info_span!("image", image = %image.original)
}
