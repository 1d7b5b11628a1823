//! Every bound sigil keeps on what a request, a tenant or a registry can
//! make it hold, wait for or write, in one table: the value, the flag that
//! changes it (if any) and why it is what it is. `docs/operations.md`
//! shows [`TABLE`] (generated from it and checked by `tests/docs.rs`), and
//! a unit test fails on a constant here that the table leaves out.
//!
//! The modules that apply a bound import it from here; none defines its
//! own. A leaf module: it imports nothing of sigil's.
//!
//! What one review may cost, end to end (the defaults):
//! - its body: at most [`BODY_LIMIT`], charged to `--max-body-memory`
//!   while it is read and decoded;
//! - what the workload reader keeps of it: [`MAX_IMAGES`] references of at
//!   most [`MAX_REFERENCE_BYTES`], [`MAX_PULL_SECRETS`], [`MAX_LABELS`];
//! - registry answers being read for it: its namespace's share of
//!   `--registry-read-memory` ([`DEFAULT_REGISTRY_READ_MEMORY`] /
//!   [`REGISTRY_READ_SHARE_DIVISOR`]), and signature layers held while
//!   they are checked: [`SIGNATURES_CHECKED_AT_ONCE`] ×
//!   [`MAX_PAYLOAD_BYTES`] per authority;
//! - its answer: at most [`MAX_ANSWER_BYTES`], whatever the request says;
//! - its audit records: at most [`MAX_AUDIT_LINE_BYTES`] each, queued in
//!   `--audit-queue-memory` ([`DEFAULT_AUDIT_QUEUE_BYTES`]);
//! - its Events: rate-limited per object and per namespace, each note at
//!   most [`EVENT_NOTE_BYTES`].

use std::time::Duration;

// ---- Requests and reviews --------------------------------------------

/// Largest AdmissionReview accepted.
pub const BODY_LIMIT: usize = 4 << 20;
/// A request body must have arrived whole within this long.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--max-body-memory`: request bodies held at once.
pub const DEFAULT_BODY_MEMORY: u64 = 64 << 20;
/// Longest string kept from the AdmissionReview envelope (uid, user, names).
pub const MAX_ENVELOPE_STRING: usize = 4_096;
/// Most image references read from one workload.
pub const MAX_IMAGES: usize = 256;
/// Most `imagePullSecrets` read from one workload.
pub const MAX_PULL_SECRETS: usize = 32;
/// Most labels read from one workload.
pub const MAX_LABELS: usize = 1_024;
/// Most bytes of labels read from one workload.
pub const MAX_LABEL_BYTES: usize = 256 << 10;
/// Longest image reference read.
pub const MAX_REFERENCE_BYTES: usize = 4_096;
/// Longest name (service account, pull secret) read.
pub const MAX_NAME_BYTES: usize = 253;
/// Images of one review verified at once.
pub const IMAGES_IN_PARALLEL: usize = 16;
/// Default of `--max-registries-per-review`.
pub const DEFAULT_MAX_REGISTRIES_PER_REVIEW: usize = 8;
/// Default of `--max-inflight-reviews`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default of `--max-inflight-reviews-per-namespace`: a quarter of the total.
pub const DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE: usize = 16;
/// Review slots a namespace may take whatever the others hold (while any
/// is free); past it, a namespace takes a slot only while a
/// [`GATE_RESERVE_DIVISOR`]th of the total stays free for the others.
pub const GATE_GUARANTEED: usize = 1;
/// The part of the review slots (a quarter) kept for namespaces under
/// their guaranteed slots.
pub const GATE_RESERVE_DIVISOR: usize = 4;

// ---- Answers and what is written for a review ------------------------

/// Largest AdmissionReview answer sigil writes, whatever the request.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;
/// Largest deny message.
pub const MAX_DENY_MESSAGE_BYTES: usize = 16 << 10;
/// Most admission warnings in one answer.
pub const MAX_WARNINGS: usize = 24;
/// Longest admission warning.
pub const MAX_WARNING_BYTES: usize = 512;
/// Largest JSON patch of one `/mutate` answer; images past it are not
/// pinned (the validating webhook denies them) and a warning says so.
pub const MAX_PATCH_BYTES: usize = 16 << 10;
/// Longest excerpt of a tenant's value quoted in a reason.
pub const MAX_QUOTED_VALUE: usize = 64;
/// Longest image reference written in a message or an Event (longer
/// ones are excerpted with their length).
pub const MAX_IMAGE_IN_TEXT: usize = 256;
/// Longest single reason in a message.
pub const MAX_REASON_BYTES: usize = 1 << 10;
/// Longest audit line; a longer record is written with its tenant text
/// excerpted and its authorities summarised.
pub const MAX_AUDIT_LINE_BYTES: usize = 16 << 10;
/// Default of `--audit-queue-memory`: audit lines waiting for stdout.
pub const DEFAULT_AUDIT_QUEUE_BYTES: u64 = 16 << 20;
/// At most this many queued audit lines go out in one write.
pub const AUDIT_WRITE_BATCH_LINES: usize = 256;
/// The audit writer's buffer is given back past this size.
pub const AUDIT_WRITE_BATCH_KEEP: usize = 256 << 10;

// ---- Events ----------------------------------------------------------

/// Events waiting to be sent; more are dropped (and counted).
pub const EVENT_QUEUE: usize = 1_024;
/// Longest Event note (the apiserver's limit).
pub const EVENT_NOTE_BYTES: usize = 1_024;
/// A repeat within this long is counted into the first Event's series.
pub const EVENT_SERIES_WINDOW: Duration = Duration::from_secs(600);
/// Distinct Events remembered for aggregation and rate limits.
pub const EVENT_REMEMBERED: usize = 4_096;
/// Events about one object and reason sent at once before the rate
/// applies (client-go's spam filter burst).
pub const EVENT_BURST_PER_OBJECT: u32 = 25;
/// Then one more per this long (client-go's 1/300 per second).
pub const EVENT_REFILL_PER_OBJECT: Duration = Duration::from_secs(300);
/// Events about one namespace's objects sent at once before its rate
/// applies (a tenant naming a new object each time).
pub const EVENT_BURST_PER_NAMESPACE: u32 = 50;
/// Then one more per this long.
pub const EVENT_REFILL_PER_NAMESPACE: Duration = Duration::from_secs(6);
/// Events that differ only in their note: after this many in
/// [`EVENT_SERIES_WINDOW`], further ones are counted into one combined
/// Event (client-go's aggregator).
pub const EVENT_SIMILAR: usize = 10;

// ---- Registries --------------------------------------------------------

/// Largest manifest, image index or referrers list read.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Most descriptors accepted in one manifest or index.
pub const MAX_DESCRIPTORS: usize = 1_000;
/// Largest error body read to explain a failure.
pub const MAX_ERROR_BODY_BYTES: usize = 16 << 10;
/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Largest token-server answer read.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;
/// Bytes the token cache, and separately the challenge cache, may hold.
pub const AUTH_CACHE_BYTES: u64 = 4 << 20;
/// A request unanswered this long counts as a failure of its registry
/// (without `--registry-connect-timeout`).
pub const DEFAULT_HANG_AFTER: Duration = Duration::from_secs(3);
/// Default of `--registry-concurrency`.
pub const DEFAULT_MAX_REQUESTS: usize = 64;
/// Default of `--registry-concurrency-per-namespace`.
pub const DEFAULT_MAX_REQUESTS_PER_TENANT: usize = 16;
/// Default of `--registry-concurrency-per-host`.
pub const DEFAULT_MAX_REQUESTS_PER_REGISTRY: usize = 16;
/// Default of `--registry-read-memory`: registry answers being read at
/// once, all namespaces.
pub const DEFAULT_REGISTRY_READ_MEMORY: u64 = 32 << 20;
/// One namespace's share of `--registry-read-memory`: a quarter.
pub const REGISTRY_READ_SHARE_DIVISOR: u64 = 4;
/// Default of `--registry-max-retry-wait`.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(2);
/// Default of `--registry-breaker-failures`.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default of `--registry-breaker-cooldown`.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(10);
/// Registry hosts whose breaker is remembered; closed ones are forgotten
/// first, open ones never for a new host.
pub const MAX_BREAKER_HOSTS: usize = 4_096;
/// Largest page of GitHub's attestation API read.
pub const GITHUB_MAX_PAGE_BYTES: usize = 4 << 20;
/// Most pages of GitHub's attestation API read for one digest.
pub const GITHUB_MAX_PAGES: usize = 4;
/// Attestations asked for per page.
pub const GITHUB_PER_PAGE: usize = 30;
/// Calls to GitHub's attestation API one namespace's reviews may make at
/// once (answers are cached, nothing listed too; only misses count).
pub const GITHUB_CALLS_BURST_PER_NAMESPACE: u32 = 30;
/// Then one more per this long: 30 a minute, so 20 busy namespaces stay
/// under an authenticated token's 5,000 an hour with room to spare.
pub const GITHUB_CALL_REFILL_PER_NAMESPACE: Duration = Duration::from_secs(2);
/// Namespaces whose GitHub budgets are remembered (full ones go first).
pub const GITHUB_BUDGETS_REMEMBERED: usize = 4_096;

// ---- Verification -------------------------------------------------------

/// Largest signature, attestation or referrer payload read.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Largest review an `ImageValidatingPolicy` reads whole (its CEL sees the
/// object): etcd stores objects of at most 1.5 MiB, and a review carries
/// the object and the old one. A larger review fails those policies
/// (their `failurePolicy` decides), never grows the process.
pub const MAX_KYVERNO_REVIEW_BYTES: usize = 3 << 20;

/// Most referrer artifacts of one type (an `ImageValidatingPolicy`'s
/// `referrer` attestation) read for one image.
pub const MAX_REFERRER_ARTIFACTS: usize = 8;
/// Most layers read from one cosign signature or attestation manifest.
pub const MAX_SIGNATURE_LAYERS: usize = 64;
/// Most referrers (or GitHub attestations) read for one image.
pub const MAX_REFERRERS: usize = 64;
/// Signature layers or referrers fetched at once for one authority; each
/// is checked as it arrives and dropped unless it verifies.
pub const SIGNATURES_CHECKED_AT_ONCE: usize = 4;
/// Bytes of layers read from one cosign signature tag (its layers'
/// declared sizes); layers past it are not read, and the verdict says so.
pub const MAX_SIGNATURE_TAG_BYTES: usize = 4 << 20;
/// Bytes of layers read from one cosign attestation tag.
pub const MAX_ATTESTATION_TAG_BYTES: usize = 16 << 20;
/// Bytes of referrer payloads read for one image and authority.
pub const MAX_REFERRER_BYTES: usize = 16 << 20;
/// Blobs over 1 MiB (BuildKit SBOMs) read at once, all reviews together.
pub const LARGE_BLOBS_AT_ONCE: usize = 4;
/// Most BuildKit attestation manifests read from one index.
pub const MAX_ATTESTATION_MANIFESTS: usize = 64;
/// Most in-toto Statements read from one attestation manifest.
pub const MAX_STATEMENTS_PER_MANIFEST: usize = 16;
/// Largest in-toto Statement read from an attestation manifest.
pub const MAX_STATEMENT_BYTES: usize = 8 << 20;
/// Default of `--cache-memory`: every verification cache together.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
/// Most certificates in a Notation signature's chain.
pub const MAX_NOTATION_CHAIN: usize = 10;
/// Most certificates in an RFC 3161 token.
pub const MAX_TOKEN_CERTIFICATES: usize = 10;

// ---- Policies and trust roots -----------------------------------------

/// Largest remote policy program or ConfigMap program read.
pub const MAX_REMOTE_BYTES: usize = 1 << 20;
/// Largest DFA one policy glob may compile to.
pub const MAX_GLOB_DFA_BYTES: usize = 1 << 20;
/// Policy program evaluations waiting for a worker.
pub const PROGRAM_QUEUE: usize = 256;
/// Policy program workers, at most.
pub const PROGRAM_WORKERS: usize = 4;
/// Default of `--policy-timeout`: one program evaluation.
pub const DEFAULT_PROGRAM_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest air-gapped TUF repository archive read.
pub const MAX_TUF_REPOSITORY_BYTES: u64 = 64 << 20;

// ---- Caches and the cluster ---------------------------------------------

/// Bytes the parsed-reference cache may hold.
pub const PARSED_REFERENCE_CACHE_BYTES: u64 = 4 << 20;
/// Longest reference kept in the parsed-reference cache.
pub const MAX_CACHED_REFERENCE: usize = 512;
/// Default of `--pull-secret-cache-memory`.
pub const DEFAULT_PULL_SECRET_CACHE_BYTES: u64 = 32 << 20;
/// One namespace's share of the pull-secret cache: a thirty-second
/// (secrets and service accounts together).
pub const PULL_SECRET_SHARE_DIVISOR: u64 = 32;
/// A pull secret's docker config larger than this is not used.
pub const MAX_SECRET_BYTES: usize = 64 << 10;
/// Registries read from one pull secret.
pub const MAX_REGISTRIES_PER_SECRET: usize = 64;
/// Largest page of a list of workloads read (background audit, what-if).
pub const LIST_PAGE_BYTES: usize = 32 << 20;
/// Registry hosts given a label value of their own in metrics.
pub const MAX_METRIC_REGISTRY_HOSTS: usize = 32;
/// CAs kept in the self-managed serving certificate's bundle.
pub const MAX_CAS: usize = 4;

/// What a bound counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// Bytes.
    Bytes(u64),
    /// Things (requests, lines, entries).
    Count(u64),
    /// Time.
    Time(Duration),
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Amount::Bytes(b) if b >= 1 << 20 && b % (1 << 20) == 0 => write!(f, "{} MiB", b >> 20),
            Amount::Bytes(b) if b >= 1 << 10 && b % (1 << 10) == 0 => write!(f, "{} KiB", b >> 10),
            Amount::Bytes(b) => write!(f, "{b} bytes"),
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Time(d) if d.as_secs() > 0 && d.subsec_nanos() == 0 => {
                write!(f, "{} s", d.as_secs())
            }
            Amount::Time(d) => write!(f, "{} ms", d.as_millis()),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// The constant's name.
    pub name: &'static str,
    /// Its value.
    pub value: Amount,
    /// The flag that changes it, if any.
    pub flag: Option<&'static str>,
    /// Why it is what it is.
    pub why: &'static str,
}

const fn bytes(
    name: &'static str,
    value: u64,
    flag: Option<&'static str>,
    why: &'static str,
) -> Limit {
    Limit {
        name,
        value: Amount::Bytes(value),
        flag,
        why,
    }
}

const fn count(
    name: &'static str,
    value: u64,
    flag: Option<&'static str>,
    why: &'static str,
) -> Limit {
    Limit {
        name,
        value: Amount::Count(value),
        flag,
        why,
    }
}

const fn time(
    name: &'static str,
    value: Duration,
    flag: Option<&'static str>,
    why: &'static str,
) -> Limit {
    Limit {
        name,
        value: Amount::Time(value),
        flag,
        why,
    }
}

/// Every limit, in the order the docs list them.
pub const TABLE: &[Limit] = &[
    bytes("BODY_LIMIT", BODY_LIMIT as u64, None, "about what the apiserver sends (its own request limit is 3 MiB)"),
    time("BODY_READ_TIMEOUT", BODY_READ_TIMEOUT, None, "the apiserver's webhook timeout is at most 30 s and usually 10 s; a slow sender holds only what it sent"),
    bytes("DEFAULT_BODY_MEMORY", DEFAULT_BODY_MEMORY, Some("--max-body-memory"), "request bodies held at once while read and decoded: sixteen of the largest"),
    bytes("MAX_ENVELOPE_STRING", MAX_ENVELOPE_STRING as u64, None, "a uid, user or name longer than any Kubernetes allows"),
    count("MAX_IMAGES", MAX_IMAGES as u64, None, "more containers than any real Pod; the review is denied naming the cap"),
    count("MAX_PULL_SECRETS", MAX_PULL_SECRETS as u64, None, "pull secrets read per workload; more are denied naming the cap"),
    count("MAX_LABELS", MAX_LABELS as u64, None, "labels kept for `spec.match`"),
    bytes("MAX_LABEL_BYTES", MAX_LABEL_BYTES as u64, None, "the apiserver's own limit on a label set"),
    bytes("MAX_REFERENCE_BYTES", MAX_REFERENCE_BYTES as u64, None, "ten times the longest real reference"),
    bytes("MAX_NAME_BYTES", MAX_NAME_BYTES as u64, None, "a DNS subdomain, the longest Kubernetes name"),
    count("IMAGES_IN_PARALLEL", IMAGES_IN_PARALLEL as u64, None, "images of one review verified at once; the rest wait under the same deadline"),
    count("DEFAULT_MAX_REGISTRIES_PER_REVIEW", DEFAULT_MAX_REGISTRIES_PER_REVIEW as u64, Some("--max-registries-per-review"), "registry hosts one review (validating or mutating) may reach; images on more fail without a request"),
    count("DEFAULT_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT as u64, Some("--max-inflight-reviews"), "reviews answered at once; more are refused (HTTP 503) rather than queued"),
    count("DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE", DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE as u64, Some("--max-inflight-reviews-per-namespace"), "one namespace's most; its further reviews wait within their deadline"),
    count("GATE_GUARANTEED", GATE_GUARANTEED as u64, None, "slots a namespace gets whatever others hold: with the reserve, sixteen flooding namespaces cannot keep a seventeenth out"),
    count("GATE_RESERVE_DIVISOR", GATE_RESERVE_DIVISOR as u64, None, "a quarter of the slots is kept for namespaces under their guaranteed slots"),
    bytes("MAX_ANSWER_BYTES", MAX_ANSWER_BYTES as u64, None, "an answer never multiplies its request: the message, warnings and patch caps below add to less"),
    bytes("MAX_DENY_MESSAGE_BYTES", MAX_DENY_MESSAGE_BYTES as u64, None, "identical failures are said once with a count; past this, the message says how many images it leaves out"),
    count("MAX_WARNINGS", MAX_WARNINGS as u64, None, "the apiserver shows at most 4 KiB of warnings; the last one counts those left out"),
    bytes("MAX_WARNING_BYTES", MAX_WARNING_BYTES as u64, None, "the apiserver cuts each warning at 256 characters"),
    bytes("MAX_PATCH_BYTES", MAX_PATCH_BYTES as u64, None, "hundreds of pins; images past it stay unpinned with a warning and the validating webhook denies them"),
    bytes("MAX_QUOTED_VALUE", MAX_QUOTED_VALUE as u64, None, "a tenant's value quoted in a reason: an escaped prefix and its length"),
    bytes("MAX_IMAGE_IN_TEXT", MAX_IMAGE_IN_TEXT as u64, None, "an image reference in a message or Event; longer ones are excerpted with their length"),
    bytes("MAX_REASON_BYTES", MAX_REASON_BYTES as u64, None, "one reason in a message; registries' error texts are cut here"),
    bytes("MAX_AUDIT_LINE_BYTES", MAX_AUDIT_LINE_BYTES as u64, None, "a record over it is written with its tenant text excerpted and marked `truncated`, never dropped"),
    bytes("DEFAULT_AUDIT_QUEUE_BYTES", DEFAULT_AUDIT_QUEUE_BYTES, Some("--audit-queue-memory"), "audit lines waiting for stdout; dry-run records are shed past half, a real request waits within its deadline and is refused (HTTP 503) rather than answered without its record"),
    count("AUDIT_WRITE_BATCH_LINES", AUDIT_WRITE_BATCH_LINES as u64, None, "lines written in one system call"),
    bytes("AUDIT_WRITE_BATCH_KEEP", AUDIT_WRITE_BATCH_KEEP as u64, None, "the writer's buffer kept between bursts"),
    count("EVENT_QUEUE", EVENT_QUEUE as u64, None, "Events waiting for the apiserver; a full queue drops (counted), never delays an answer"),
    bytes("EVENT_NOTE_BYTES", EVENT_NOTE_BYTES as u64, None, "the apiserver's limit on `note`"),
    time("EVENT_SERIES_WINDOW", EVENT_SERIES_WINDOW, None, "repeats within it update one Event's series"),
    count("EVENT_REMEMBERED", EVENT_REMEMBERED as u64, None, "Events and rate buckets remembered"),
    count("EVENT_BURST_PER_OBJECT", EVENT_BURST_PER_OBJECT as u64, None, "client-go's spam filter: a burst per object and reason"),
    time("EVENT_REFILL_PER_OBJECT", EVENT_REFILL_PER_OBJECT, None, "client-go's spam filter: then one per five minutes"),
    count("EVENT_BURST_PER_NAMESPACE", EVENT_BURST_PER_NAMESPACE as u64, None, "a tenant naming a new object each time still shares one namespace's rate"),
    time("EVENT_REFILL_PER_NAMESPACE", EVENT_REFILL_PER_NAMESPACE, None, "ten Events a minute per namespace after its burst"),
    count("EVENT_SIMILAR", EVENT_SIMILAR as u64, None, "client-go's aggregator: further Events differing only in their note are counted into one"),
    bytes("MAX_MANIFEST_BYTES", MAX_MANIFEST_BYTES as u64, None, "signature manifests with dozens of keyless signatures stay under 500 KiB"),
    count("MAX_DESCRIPTORS", MAX_DESCRIPTORS as u64, None, "descriptors in one manifest or index"),
    bytes("MAX_ERROR_BODY_BYTES", MAX_ERROR_BODY_BYTES as u64, None, "a registry's error body read to explain a failure"),
    count("MAX_REDIRECTS", MAX_REDIRECTS as u64, None, "redirects followed for one request"),
    bytes("MAX_TOKEN_BYTES", MAX_TOKEN_BYTES as u64, None, "a token server's answer"),
    bytes("AUTH_CACHE_BYTES", AUTH_CACHE_BYTES, None, "tokens, and separately challenges, kept for hosts a tenant can name"),
    time("DEFAULT_HANG_AFTER", DEFAULT_HANG_AFTER, Some("--registry-connect-timeout"), "a request unanswered this long counts against its registry's breaker"),
    count("DEFAULT_MAX_REQUESTS", DEFAULT_MAX_REQUESTS as u64, Some("--registry-concurrency"), "registry requests in flight, all namespaces"),
    count("DEFAULT_MAX_REQUESTS_PER_TENANT", DEFAULT_MAX_REQUESTS_PER_TENANT as u64, Some("--registry-concurrency-per-namespace"), "one namespace's share; work coalesced across namespaces may use the share of any namespace waiting on it"),
    count("DEFAULT_MAX_REQUESTS_PER_REGISTRY", DEFAULT_MAX_REQUESTS_PER_REGISTRY as u64, Some("--registry-concurrency-per-host"), "one registry host's share"),
    bytes("DEFAULT_REGISTRY_READ_MEMORY", DEFAULT_REGISTRY_READ_MEMORY, Some("--registry-read-memory"), "registry answers being read at once, charged to the namespace whose review asked"),
    count("REGISTRY_READ_SHARE_DIVISOR", REGISTRY_READ_SHARE_DIVISOR, None, "one namespace may read a quarter of it at once"),
    time("DEFAULT_MAX_RETRY_WAIT", DEFAULT_MAX_RETRY_WAIT, Some("--registry-max-retry-wait"), "a `Retry-After` waited for once, within the review's deadline"),
    count("DEFAULT_BREAKER_FAILURES", DEFAULT_BREAKER_FAILURES as u64, Some("--registry-breaker-failures"), "failures in a row that open a registry's breaker"),
    time("DEFAULT_BREAKER_COOLDOWN", DEFAULT_BREAKER_COOLDOWN, Some("--registry-breaker-cooldown"), "how long an open breaker refuses"),
    count("MAX_BREAKER_HOSTS", MAX_BREAKER_HOSTS as u64, None, "hosts remembered; a flood of new hosts never closes an open breaker"),
    bytes("GITHUB_MAX_PAGE_BYTES", GITHUB_MAX_PAGE_BYTES as u64, None, "one page of GitHub's attestation API"),
    count("GITHUB_MAX_PAGES", GITHUB_MAX_PAGES as u64, None, "pages read for one digest"),
    count("GITHUB_PER_PAGE", GITHUB_PER_PAGE as u64, None, "attestations asked for per page"),
    count("GITHUB_CALLS_BURST_PER_NAMESPACE", GITHUB_CALLS_BURST_PER_NAMESPACE as u64, None, "GitHub API calls one namespace's reviews make at once (cache misses only): one tenant cannot spend the token's quota for everyone"),
    time("GITHUB_CALL_REFILL_PER_NAMESPACE", GITHUB_CALL_REFILL_PER_NAMESPACE, None, "then one more per two seconds; past it the image is denied with the reason, other namespaces unaffected"),
    count("GITHUB_BUDGETS_REMEMBERED", GITHUB_BUDGETS_REMEMBERED as u64, None, "namespaces' GitHub budgets remembered"),
    bytes("MAX_PAYLOAD_BYTES", MAX_PAYLOAD_BYTES as u64, None, "one signature, attestation or referrer payload"),
    bytes("MAX_KYVERNO_REVIEW_BYTES", MAX_KYVERNO_REVIEW_BYTES as u64, None, "a review an ImageValidatingPolicy reads whole (objects are at most 1.5 MiB in etcd, a review holds two); larger fails those policies"),
    count("MAX_REFERRER_ARTIFACTS", MAX_REFERRER_ARTIFACTS as u64, None, "referrer artifacts of one type read for one image (an ImageValidatingPolicy's referrer attestation)"),
    count("MAX_SIGNATURE_LAYERS", MAX_SIGNATURE_LAYERS as u64, None, "layers read from one cosign signature or attestation manifest"),
    count("MAX_REFERRERS", MAX_REFERRERS as u64, None, "referrers (or GitHub attestations) read for one image"),
    count("SIGNATURES_CHECKED_AT_ONCE", SIGNATURES_CHECKED_AT_ONCE as u64, None, "layers or referrers in flight for one authority; each is verified as it arrives and dropped unless it verifies"),
    bytes("MAX_SIGNATURE_TAG_BYTES", MAX_SIGNATURE_TAG_BYTES as u64, None, "simple-signing payloads are a few hundred bytes each; past it, the rest of the tag's layers are not read and the reason says so"),
    bytes("MAX_ATTESTATION_TAG_BYTES", MAX_ATTESTATION_TAG_BYTES as u64, None, "sixteen SBOM-sized attestations; past it, the rest are not read and the reason says so"),
    bytes("MAX_REFERRER_BYTES", MAX_REFERRER_BYTES as u64, None, "referrer payloads read for one image and authority; past it, the rest are not read and the reason says so"),
    count("LARGE_BLOBS_AT_ONCE", LARGE_BLOBS_AT_ONCE as u64, None, "blobs over 1 MiB (BuildKit SBOMs) read at once, all reviews"),
    count("MAX_ATTESTATION_MANIFESTS", MAX_ATTESTATION_MANIFESTS as u64, None, "BuildKit attestation manifests read from one index"),
    count("MAX_STATEMENTS_PER_MANIFEST", MAX_STATEMENTS_PER_MANIFEST as u64, None, "in-toto Statements read from one attestation manifest"),
    bytes("MAX_STATEMENT_BYTES", MAX_STATEMENT_BYTES as u64, None, "one in-toto Statement of an attestation manifest (SBOMs)"),
    bytes("DEFAULT_CACHE_BYTES", DEFAULT_CACHE_BYTES, Some("--cache-memory"), "verification caches together: verdicts, digests, referrer lists"),
    count("MAX_NOTATION_CHAIN", MAX_NOTATION_CHAIN as u64, None, "certificates in a Notation signature's chain"),
    count("MAX_TOKEN_CERTIFICATES", MAX_TOKEN_CERTIFICATES as u64, None, "certificates in an RFC 3161 token"),
    bytes("MAX_REMOTE_BYTES", MAX_REMOTE_BYTES as u64, None, "a remote or ConfigMap policy program"),
    bytes("MAX_GLOB_DFA_BYTES", MAX_GLOB_DFA_BYTES as u64, None, "one compiled policy glob"),
    count("PROGRAM_QUEUE", PROGRAM_QUEUE as u64, None, "program evaluations waiting for a worker"),
    count("PROGRAM_WORKERS", PROGRAM_WORKERS as u64, None, "program workers, at most"),
    time("DEFAULT_PROGRAM_TIMEOUT", DEFAULT_PROGRAM_TIMEOUT, Some("--policy-timeout"), "one program evaluation"),
    bytes("MAX_TUF_REPOSITORY_BYTES", MAX_TUF_REPOSITORY_BYTES, None, "an air-gapped TUF repository archive"),
    bytes("PARSED_REFERENCE_CACHE_BYTES", PARSED_REFERENCE_CACHE_BYTES, None, "about 10,000 parsed references"),
    bytes("MAX_CACHED_REFERENCE", MAX_CACHED_REFERENCE as u64, None, "longer references are parsed each time"),
    bytes("DEFAULT_PULL_SECRET_CACHE_BYTES", DEFAULT_PULL_SECRET_CACHE_BYTES, Some("--pull-secret-cache-memory"), "parsed pull secrets and service accounts' pull-secret names"),
    count("PULL_SECRET_SHARE_DIVISOR", PULL_SECRET_SHARE_DIVISOR, None, "one namespace holds at most a thirty-second of it, unusable secrets and service accounts included"),
    bytes("MAX_SECRET_BYTES", MAX_SECRET_BYTES as u64, None, "a pull secret's docker config"),
    count("MAX_REGISTRIES_PER_SECRET", MAX_REGISTRIES_PER_SECRET as u64, None, "registries read from one pull secret"),
    bytes("LIST_PAGE_BYTES", LIST_PAGE_BYTES as u64, None, "one page of workloads listed by the background audit or the what-if"),
    count("MAX_METRIC_REGISTRY_HOSTS", MAX_METRIC_REGISTRY_HOSTS as u64, None, "registry label values; further hosts are `other`"),
    count("MAX_CAS", MAX_CAS as u64, None, "CAs in the self-managed certificate bundle"),
];

/// The table as `docs/operations.md` shows it (Markdown).
pub fn markdown() -> String {
    let mut out = String::from("| limit | value | flag | why |\n|---|---|---|---|\n");
    for l in TABLE {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            l.name,
            l.value,
            l.flag.map_or_else(|| "—".to_string(), |f| format!("`{f}`")),
            l.why
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every constant of this file has its row, and no row names a
    /// constant that is gone.
    #[test]
    fn every_constant_is_in_the_table() {
        let source = include_str!("limits.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub const "))
            .filter_map(|l| l.split(':').next())
            .filter(|name| *name != "TABLE")
            .collect();
        let listed: Vec<&str> = TABLE.iter().map(|l| l.name).collect();
        for name in &declared {
            assert!(listed.contains(name), "{name} is not in limits::TABLE");
        }
        for name in &listed {
            assert!(
                declared.contains(name),
                "TABLE lists {name}, which is not declared"
            );
        }
        assert_eq!(declared.len(), listed.len(), "a row is listed twice");
    }

    /// The answer's parts fit the answer's cap with room for the envelope.
    #[test]
    fn the_answer_caps_add_up() {
        let parts = MAX_DENY_MESSAGE_BYTES
            + MAX_WARNINGS * (MAX_WARNING_BYTES + 8)
            // base64 of the patch.
            + MAX_PATCH_BYTES * 4 / 3
            + 2 * MAX_ENVELOPE_STRING;
        assert!(parts < MAX_ANSWER_BYTES, "{parts}");
    }

    #[test]
    fn amounts_read_as_people_write_them() {
        assert_eq!(Amount::Bytes(4 << 20).to_string(), "4 MiB");
        assert_eq!(Amount::Bytes(16 << 10).to_string(), "16 KiB");
        assert_eq!(Amount::Bytes(253).to_string(), "253 bytes");
        assert_eq!(Amount::Time(Duration::from_secs(10)).to_string(), "10 s");
        assert_eq!(
            Amount::Time(Duration::from_millis(250)).to_string(),
            "250 ms"
        );
        assert!(markdown().contains("| `BODY_LIMIT` | 4 MiB | — |"));
    }
}
