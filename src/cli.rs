//! Command-line arguments and the wiring they drive. Holds no logic the
//! webhook also needs: it builds the same [`Evaluator`] for every command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::AuditSink;
use crate::decision::{DecisionSettings, NoMatchAction, ServerMode};
use crate::policy::{files, PolicyStore};
use crate::registry::{RegistryClient, RegistryOptions};
use crate::service::{Evaluator, EvaluatorSettings};
use crate::trust::{TrustMaterial, TrustStore};
use crate::verify::{Verifier, VerifierSettings};

/// The version and the commit the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SIGIL_COMMIT"),
    ")"
);

/// sigil: admit only images whose cosign signatures satisfy ClusterImagePolicies.
#[derive(Debug, Parser)]
#[command(name = "sigil", version = VERSION, about)]
pub struct Cli {
    /// Log format (logs go to stderr; the audit log goes to stdout).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `sigil=debug`.
    #[arg(long, global = true, env = "SIGIL_LOG", default_value = "info")]
    pub log_level: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS).
    Serve(Box<ServeArgs>),
    /// Evaluate manifests or images offline, exactly as the webhook would.
    Check(Box<CheckArgs>),
    /// Verify a Sigstore bundle over a file or digest (the sigstore-conformance
    /// client protocol), on the webhook's verification core.
    VerifyBundle(Box<VerifyBundleArgs>),
    /// Print the CustomResourceDefinitions sigil serves (YAML).
    Crd,
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(CertsArgs),
    /// Count what an audit log holds (by decision, policy, namespace,
    /// image; the most frequent reasons), or check its hash chain.
    Report(ReportArgs),
    /// Print shell completions (e.g. `sigil completions bash >
    /// /etc/bash_completion.d/sigil`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `sigil report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Audit log files, read in order (rotated files oldest first); none
    /// reads stdin. Lines that are not audit records are skipped.
    pub files: Vec<PathBuf>,
    /// Only records at or after this time: RFC 3339 (`2026-11-16T00:00:00Z`)
    /// or a span before now (`7d`, `24h`).
    #[arg(long, value_parser = time_or_span_ago)]
    pub since: Option<jiff::Timestamp>,
    /// Only records before this time (same forms as --since).
    #[arg(long, value_parser = time_or_span_ago)]
    pub until: Option<jiff::Timestamp>,
    /// Only records of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// How many namespaces, images and reasons to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Check the hash chain instead of counting: exit 0 when every stream
    /// is whole and every line was read (its heads printed), 1 naming every
    /// break and every line that could not be read.
    #[arg(long)]
    pub verify: bool,
    /// How the lines were captured: as sigil wrote them (`jsonl`), by
    /// `kubectl logs --timestamps`, or in the container runtime's CRI log
    /// files (`/var/log/pods/…`).
    #[arg(long, value_enum, default_value_t = crate::report::InputFormat::Jsonl)]
    pub format: crate::report::InputFormat,
    /// With --verify: the audit key (`--audit-key-file` of `sigil serve`):
    /// only checkpoints whose HMAC verifies count, and every stream must
    /// have one.
    #[arg(long, requires = "verify")]
    pub key_file: Option<PathBuf>,
    /// With --verify: more files to take checkpoints from (sigil's stderr
    /// log kept apart from the audit log); repeatable.
    #[arg(long, requires = "verify")]
    pub checkpoints: Vec<PathBuf>,
}

/// An RFC 3339 time, or a span before now (`7d`).
fn time_or_span_ago(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let span = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a span like 7d or 24h"))?;
    let span = jiff::SignedDuration::try_from(span).map_err(|e| e.to_string())?;
    jiff::Timestamp::now()
        .checked_sub(span)
        .map_err(|e| format!("{s:?}: {e}"))
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Settings shared by `serve` and `check`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Directory of ClusterImagePolicy YAML files (multi-document), reloaded on change.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// A host (`host` or `host:port`) that a cluster's
    /// `githubAttestations.url` may name, with or without a token
    /// (`tokenSecretRef`); repeatable. A policy naming another host is
    /// refused, naming the field, and its token is never read. Giving it
    /// replaces the default: name `api.github.com` too to keep GitHub's
    /// public API.
    #[arg(long = "github-api-host", default_value = "api.github.com")]
    pub github_api_hosts: Vec<String>,
    /// How long a KMS public key (`key.kms: awskms://…`) is used before it
    /// is fetched again (a rotated alias is picked up within this).
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub kms_refresh: Duration,
    /// Trusted root (protobuf-specs `trusted_root.json`) replacing the
    /// embedded Sigstore public-good root.
    #[arg(long)]
    pub trust_root: Option<PathBuf>,
    /// docker `config.json` with registry credentials.
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// Registry reached over plain HTTP (host[:port]); repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificate (PEM) trusted for registries; repeatable.
    #[arg(long = "registry-ca")]
    pub registry_cas: Vec<PathBuf>,
    /// Deadline for verifying all images of one request.
    #[arg(long, value_parser = duration, default_value = "8s")]
    pub verify_timeout: Duration,
    /// Registry connect timeout.
    #[arg(long, value_parser = duration, default_value = "3s")]
    pub registry_connect_timeout: Duration,
    /// Registry read timeout.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub registry_read_timeout: Duration,
    /// How long tag→digest answers (and failing verdicts) are cached.
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub resolve_ttl: Duration,
    /// Time limit of one policy program (rego, cel) evaluation.
    #[arg(long, value_parser = duration, default_value = "1s")]
    pub policy_timeout: Duration,
    /// How long passing verification verdicts are cached.
    #[arg(long, value_parser = duration, default_value = "10m")]
    pub verify_ttl: Duration,
    /// What to do with an image no policy matches.
    #[arg(long, value_enum, default_value_t = NoMatchAction::Deny)]
    pub no_match_policy: NoMatchAction,
    /// `audit` never denies; it only writes the audit log.
    #[arg(long, value_enum, default_value_t = ServerMode::Enforce)]
    pub mode: ServerMode,
    /// Require every image some policy matches to be pinned to a digest in
    /// the workload itself (`--require-digest=false` turns it off: only for
    /// clusters without the mutating webhook that accept that a tag can move
    /// between verification and pull).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub require_digest: bool,
    /// Registry requests in flight at once, all registries together.
    #[arg(long, default_value_t = crate::registry::DEFAULT_MAX_REQUESTS)]
    pub registry_concurrency: usize,
    /// Registry requests in flight at once to one registry.
    #[arg(long, default_value_t = crate::registry::DEFAULT_MAX_REQUESTS_PER_REGISTRY)]
    pub registry_concurrency_per_host: usize,
    /// Registry requests in flight at once for the reviews of one
    /// namespace: its share of --registry-concurrency, so that one
    /// namespace's slow or hanging registries cannot hold every request slot.
    #[arg(long, default_value_t = crate::registry::DEFAULT_MAX_REQUESTS_PER_TENANT)]
    pub registry_concurrency_per_namespace: usize,
    /// Distinct registry hosts one review may reach; images on further
    /// hosts are denied without a request, naming the field.
    #[arg(long, default_value_t = crate::service::DEFAULT_MAX_REGISTRIES_PER_REVIEW)]
    pub max_registries_per_review: usize,
    /// Resolve tags (`/mutate`, and `/validate` with --require-digest=false)
    /// with the workload's own pull secrets only, never with
    /// --registry-config: a tenant then learns nothing of a registry that
    /// only sigil may read.
    #[arg(long)]
    pub resolve_with_workload_credentials: bool,
    /// A registry's `429`/`503` whose `Retry-After` is at most this long is
    /// retried once after waiting, within the review's deadline (`0s`: never).
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub registry_max_retry_wait: Duration,
    /// Failures in a row (unreachable, timeout, reset, 5xx) after which a
    /// registry is not contacted for `--registry-breaker-cooldown` and its
    /// images are denied at once with that reason (`0`: never).
    #[arg(long, default_value_t = crate::registry::DEFAULT_BREAKER_FAILURES)]
    pub registry_breaker_failures: u32,
    /// How long an open breaker refuses before one probe request goes through.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub registry_breaker_cooldown: Duration,
    /// Memory all verification caches may hold together (e.g. `64MiB`,
    /// `512KiB`, `1GiB`); entries are weighed by their size.
    #[arg(long, value_parser = byte_size, default_value = "64MiB")]
    pub cache_memory: u64,
    /// Bytes of registry answers (manifests, signature layers, referrers)
    /// being read at once, all namespaces; each read is charged to the
    /// namespace whose review asked, which may use a quarter of it.
    #[arg(long, value_parser = byte_size, default_value = "32MiB")]
    pub registry_read_memory: u64,
}

/// `64MiB`, `512KiB`, `1GiB`, `1000` (bytes); `Mi`/`Ki`/`Gi` too.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" | "K" | "KB" => 1 << 10,
        "MiB" | "Mi" | "M" | "MB" => 1 << 20,
        "GiB" | "Gi" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Where the metrics listener listens, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

fn parse_metrics_listen(s: &str) -> Result<MetricsListen, String> {
    if s == "off" {
        return Ok(MetricsListen(None));
    }
    s.parse()
        .map(|a| MetricsListen(Some(a)))
        .map_err(|e| format!("{s:?} is not an address (host:port) or `off`: {e}"))
}

/// `sigil serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Verification settings.
    #[command(flatten)]
    pub verify: VerifyArgs,
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP Prometheus listener (`GET /metrics`), or
    /// `off`.
    #[arg(long, default_value = "0.0.0.0:9090", value_parser = parse_metrics_listen)]
    pub metrics_listen: MetricsListen,
    /// Serving certificate (PEM); reloaded when it changes.
    #[arg(long, requires = "tls_key", conflicts_with_all = ["self_signed", "tls_secret"])]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM); reloaded when it changes.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a CA and serving certificate; the CA is written to --self-signed-dir.
    #[arg(long)]
    pub self_signed: bool,
    /// Where --self-signed writes ca.pem, tls.crt and tls.key.
    #[arg(long, default_value = "sigil-certs")]
    pub self_signed_dir: PathBuf,
    /// Extra DNS name or IP for the self-signed certificate; repeatable.
    #[arg(long = "self-signed-name")]
    pub self_signed_names: Vec<String>,
    /// With a cluster: keep the serving certificate in this Secret of
    /// `--namespace` (the chart's `certificates.mode: self`). The Lease
    /// holder creates and renews a CA and serving certificate there and puts
    /// every valid CA into the caBundle of the `--inject-ca-bundle`
    /// webhook configurations; every replica serves from the Secret.
    #[arg(long, conflicts_with = "self_signed")]
    pub tls_secret: Option<String>,
    /// The Service whose DNS names (`NAME.NAMESPACE.svc`, …) the
    /// `--tls-secret` certificate carries.
    #[arg(long, default_value = "sigil")]
    pub tls_service: String,
    /// A webhook configuration whose caBundle `--tls-secret` keeps:
    /// `validating/NAME` or `mutating/NAME`; repeatable.
    #[arg(long = "inject-ca-bundle", requires = "tls_secret")]
    pub inject_ca_bundle: Vec<crate::certificates::WebhookConfigRef>,
    /// `--tls-secret`: the CA's lifetime.
    #[arg(long, default_value = "365d", value_parser = duration)]
    pub ca_lifetime: Duration,
    /// `--tls-secret`: the serving certificate's lifetime.
    #[arg(long, default_value = "150d", value_parser = duration)]
    pub cert_lifetime: Duration,
    /// `--tls-secret`: renew the CA or the serving certificate once it has
    /// less than this left.
    #[arg(long, default_value = "15d", value_parser = duration)]
    pub renew_before: Duration,
    /// Watch ClusterImagePolicies and Namespaces through this kubeconfig
    /// (in-cluster configuration is used when KUBERNETES_SERVICE_HOST is set).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// sigil's own namespace: Secrets named by `key.secretRef` live here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "sigil-system")]
    pub namespace: String,
    /// Answer only clients presenting a certificate that chains to this CA
    /// (PEM): the kube-apiserver, configured with a client certificate in its
    /// admission configuration. Without it every client that reaches the
    /// port is answered.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Reviews answered at once; one more is refused at once with HTTP 503
    /// and the reason (the apiserver then applies the webhook's
    /// failurePolicy), never queued.
    #[arg(long, default_value_t = crate::gate::DEFAULT_MAX_IN_FLIGHT)]
    pub max_inflight_reviews: usize,
    /// Reviews of one namespace answered at once (its share of
    /// --max-inflight-reviews); its further reviews wait their turn within
    /// their deadline, a bounded number of them, instead of taking other
    /// namespaces' places.
    #[arg(long, default_value_t = crate::gate::DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE)]
    pub max_inflight_reviews_per_namespace: usize,
    /// Bytes of request bodies held at once, being read or decoded; a
    /// body arriving when they are taken is refused with HTTP 503.
    #[arg(long, value_parser = byte_size, default_value = "64MiB")]
    pub max_body_memory: u64,
    /// With a cluster: memory the pull-secret cache may hold (parsed
    /// credentials of every `kubernetes.io/dockerconfigjson` and
    /// `kubernetes.io/dockercfg` Secret); one namespace may hold a 32nd of it.
    #[arg(long, value_parser = byte_size, default_value = "32MiB")]
    pub pull_secret_cache_memory: u64,
    /// Bytes of audit lines waiting for stdout. Past half of it, dry-run
    /// requests' records are shed (counted); past all of it, a request's
    /// records wait within its review's deadline, and a review whose
    /// records still find no room is refused with HTTP 503 rather than
    /// answered without them.
    #[arg(long, value_parser = byte_size, default_value = "16MiB")]
    pub audit_queue_memory: u64,
    /// A file holding the audit key (at least 32 bytes): every checkpoint
    /// of the audit log then carries an HMAC-SHA256 under it, and
    /// `sigil report --verify --key-file` proves the log was written by a
    /// holder of the key.
    #[arg(long)]
    pub audit_key_file: Option<PathBuf>,
    /// With a cluster: time between background audits of the workloads
    /// running in enforced and audited namespaces (a PolicyReport each,
    /// counts on each policy's status); a change of policies starts one at
    /// once. `0s` turns the background audit off.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub audit_interval: Duration,
    /// Read Kyverno's `ImageValidatingPolicy` and
    /// `NamespacedImageValidatingPolicy` from the cluster (a kind whose CRD
    /// is not installed has none; it is looked for again every 30 s).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub kyverno_policies: bool,
    /// Workloads the background audit evaluates at once.
    #[arg(long, default_value_t = 4)]
    pub audit_concurrency: usize,
    /// How long the leader Lease (cluster-wide writes: status conditions,
    /// certificates, the background audit) holds without renewal; it is
    /// renewed every third of that, and after it another replica takes over.
    #[arg(long, alias = "audit-lease-duration", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// On SIGTERM: how long `/readyz` says not ready while reviews are
    /// still accepted and answered, so that every apiserver stops sending
    /// to this replica before it stops listening (the chart sets 5s; a
    /// second SIGTERM cuts it short).
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub shutdown_delay: Duration,
    /// After the shutdown delay: how long the reviews in flight have to
    /// finish once no new connection is accepted.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub shutdown_drain: Duration,
}

/// Output format of `sigil check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable.
    Text,
    /// One JSON document.
    Json,
}

/// `sigil check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Verification settings.
    #[command(flatten)]
    pub verify: VerifyArgs,
    /// Namespace for objects that do not name one (default `default`);
    /// with --cluster, the only namespace listed.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Manifest file (YAML, multi-document); repeatable.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Image reference to check as a one-container Pod; repeatable.
    #[arg(long = "image")]
    pub images: Vec<String>,
    /// The what-if: every workload the cluster runs, evaluated as if the
    /// policies of --policy-dir were applied (besides the cluster's own
    /// ClusterImagePolicies; a file policy replaces the cluster's of the
    /// same name) and every namespace were enforced. Reads the cluster,
    /// never writes to it. Exit 0 when nothing would be denied, 1 otherwise.
    #[arg(long, conflicts_with_all = ["files", "images"])]
    pub cluster: bool,
    /// kubeconfig for --cluster (in-cluster configuration when absent and
    /// KUBERNETES_SERVICE_HOST is set).
    #[arg(long, requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// With --cluster: only the namespaces enforced now
    /// (`policy.sigstore.dev/include=true`).
    #[arg(long, requires = "cluster")]
    pub respect_namespace_labels: bool,
    /// sigil's namespace, where `key.secretRef` Secrets live (--cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "sigil-system")]
    pub sigil_namespace: String,
}

/// `sigil verify-bundle`.
#[derive(Debug, Clone, Args)]
pub struct VerifyBundleArgs {
    /// Use Sigstore's staging instance (not embedded: refused offline).
    #[arg(long)]
    pub staging: bool,
    /// The bundle (`.sigstore.json`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Expected certificate SAN (keyless bundles).
    #[arg(long, conflicts_with_all = ["key", "certificate_identity_regexp"])]
    pub certificate_identity: Option<String>,
    /// A regular expression the certificate SAN must match, as cosign's
    /// flag: a match anywhere in the SAN (anchor it with `^…$`).
    #[arg(long, conflicts_with = "key")]
    pub certificate_identity_regexp: Option<String>,
    /// Expected OIDC issuer (keyless bundles).
    #[arg(long, conflicts_with = "certificate_oidc_issuer_regexp")]
    pub certificate_oidc_issuer: Option<String>,
    /// A regular expression the OIDC issuer must match, as cosign's flag.
    #[arg(long)]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// PEM public key (managed-key bundles).
    #[arg(long, required_unless_present_any = ["certificate_identity", "certificate_identity_regexp"])]
    pub key: Option<PathBuf>,
    /// Do not require the certificate's embedded SCT (a private deployment
    /// without certificate transparency), as cosign's flag.
    #[arg(long)]
    pub insecure_ignore_sct: bool,
    /// Do not require a transparency-log entry (a deployment without
    /// Rekor, e.g. GitHub's for private repositories), as cosign's flag;
    /// a TSA timestamp, when the bundle has one, still dates the signature.
    #[arg(long)]
    pub insecure_ignore_tlog: bool,
    /// Require and verify the bundle's RFC 3161 timestamps, as cosign's
    /// flag: a bundle without one is rejected.
    #[arg(long)]
    pub use_signed_timestamps: bool,
    /// Trusted root replacing the embedded public-good one.
    #[arg(long, alias = "trust-root")]
    pub trusted_root: Option<PathBuf>,
    /// Required `sourceRepositoryURI` claim (Fulcio 1.3.6.1.4.1.57264.1.12).
    #[arg(long)]
    pub certificate_source_repository_uri: Option<String>,
    /// Required `sourceRepositoryRef` claim (.1.14), e.g. `refs/heads/main`.
    #[arg(long)]
    pub certificate_source_repository_ref: Option<String>,
    /// Required `sourceRepositoryDigest` claim (.1.13), the commit.
    #[arg(long)]
    pub certificate_source_repository_digest: Option<String>,
    /// Required `sourceRepositoryOwnerURI` claim (.1.16).
    #[arg(long)]
    pub certificate_source_repository_owner_uri: Option<String>,
    /// Required `buildSignerURI` claim (.1.9).
    #[arg(long)]
    pub certificate_build_signer_uri: Option<String>,
    /// Required `buildSignerDigest` claim (.1.10).
    #[arg(long)]
    pub certificate_build_signer_digest: Option<String>,
    /// Required `buildTrigger` claim (.1.20), e.g. `push`.
    #[arg(long)]
    pub certificate_build_trigger: Option<String>,
    /// Required `runnerEnvironment` claim (.1.11): `github-hosted` refuses
    /// self-hosted runners.
    #[arg(long)]
    pub certificate_runner_environment: Option<String>,
    /// Required `buildConfigURI` claim (.1.18).
    #[arg(long)]
    pub certificate_build_config_uri: Option<String>,
    /// Required GitHub workflow trigger (.1.2), as cosign's flag.
    #[arg(long)]
    pub certificate_github_workflow_trigger: Option<String>,
    /// Required GitHub workflow commit (.1.3), as cosign's flag.
    #[arg(long)]
    pub certificate_github_workflow_sha: Option<String>,
    /// Required GitHub workflow name (.1.4), as cosign's flag.
    #[arg(long)]
    pub certificate_github_workflow_name: Option<String>,
    /// Required GitHub `owner/repository` (.1.5), as cosign's flag.
    #[arg(long)]
    pub certificate_github_workflow_repository: Option<String>,
    /// Required GitHub ref (.1.6), as cosign's flag.
    #[arg(long)]
    pub certificate_github_workflow_ref: Option<String>,
    /// The artifact file, or `sha256:<hex>` of it.
    pub file_or_digest: String,
}

/// `sigil certs`.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Directory for ca.pem, tls.crt and tls.key.
    #[arg(long, default_value = "sigil-certs")]
    pub out: PathBuf,
    /// DNS name or IP of the serving certificate; repeatable.
    #[arg(long = "name", default_values_t = ["sigil.sigil-system.svc".to_string(), "sigil.sigil-system.svc.cluster.local".to_string()])]
    pub names: Vec<String>,
}

/// A configuration error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl VerifyBundleArgs {
    /// The claims the flags require.
    pub fn claims(&self) -> Vec<(crate::model::identity::Claim, String)> {
        use crate::model::identity::Claim;
        [
            (
                Claim::SourceRepositoryUri,
                &self.certificate_source_repository_uri,
            ),
            (
                Claim::SourceRepositoryRef,
                &self.certificate_source_repository_ref,
            ),
            (
                Claim::SourceRepositoryDigest,
                &self.certificate_source_repository_digest,
            ),
            (
                Claim::SourceRepositoryOwnerUri,
                &self.certificate_source_repository_owner_uri,
            ),
            (Claim::BuildSignerUri, &self.certificate_build_signer_uri),
            (
                Claim::BuildSignerDigest,
                &self.certificate_build_signer_digest,
            ),
            (Claim::BuildTrigger, &self.certificate_build_trigger),
            (
                Claim::RunnerEnvironment,
                &self.certificate_runner_environment,
            ),
            (Claim::BuildConfigUri, &self.certificate_build_config_uri),
            (
                Claim::GithubWorkflowTrigger,
                &self.certificate_github_workflow_trigger,
            ),
            (
                Claim::GithubWorkflowSha,
                &self.certificate_github_workflow_sha,
            ),
            (
                Claim::GithubWorkflowName,
                &self.certificate_github_workflow_name,
            ),
            (
                Claim::GithubWorkflowRepository,
                &self.certificate_github_workflow_repository,
            ),
            (
                Claim::GithubWorkflowRef,
                &self.certificate_github_workflow_ref,
            ),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.clone().map(|v| (c, v)))
        .collect()
    }
}

impl VerifyArgs {
    /// Registry options from the flags.
    pub fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure_registries.clone(),
            ca_files: self.registry_cas.clone(),
            docker_config: self.registry_config.clone(),
            connect_timeout: Some(self.registry_connect_timeout),
            read_timeout: Some(self.registry_read_timeout),
            max_requests: self.registry_concurrency,
            max_requests_per_registry: self.registry_concurrency_per_host,
            max_requests_per_tenant: self.registry_concurrency_per_namespace,
            read_memory: self.registry_read_memory,
            max_retry_wait: self.registry_max_retry_wait,
            breaker_failures: self.registry_breaker_failures,
            breaker_cooldown: self.registry_breaker_cooldown,
        }
    }

    /// The default trust root: `--trust-root` or the embedded public-good one.
    pub fn trust_material(&self) -> Result<TrustMaterial, ConfigError> {
        match &self.trust_root {
            Some(path) => TrustMaterial::from_file(path).map_err(|e| ConfigError(e.to_string())),
            None => Ok(TrustMaterial::public_good()),
        }
    }

    /// Loads policies and builds the pipeline.
    pub fn build(&self, audit: Arc<dyn AuditSink>) -> Result<Evaluator, ConfigError> {
        crate::policy::kms::configure(self.kms_refresh);
        let store = Arc::new(PolicyStore::new());
        if let Some(dir) = &self.policy_dir {
            let defs = files::load_dir(dir)
                .map_err(|e| ConfigError(format!("cannot load policies: {e}")))?;
            store.replace_source(files::SOURCE, &defs);
        }
        let registry = Arc::new(
            RegistryClient::new(&self.registry_options())
                .map_err(|e| ConfigError(format!("registry configuration: {e}")))?,
        );
        let trust = Arc::new(TrustStore::new(self.trust_material()?));
        if let Some(dir) = &self.policy_dir {
            trust.replace_all(files::load_trust_roots(dir));
        }
        let verifier = Arc::new(Verifier::new(
            registry,
            &VerifierSettings {
                resolve_ttl: self.resolve_ttl,
                verify_ttl: self.verify_ttl,
                trust,
                policy_timeout: self.policy_timeout,
                cache_bytes: self.cache_memory,
            },
        ));
        let kyverno = Arc::new(crate::kyverno::IvpStore::new());
        if let Some(dir) = &self.policy_dir {
            let docs = crate::kyverno::files::load_dir(dir)
                .map_err(|e| ConfigError(format!("cannot load policies: {e}")))?;
            kyverno.replace_source(crate::kyverno::files::SOURCE, &docs);
        }
        let mut evaluator = Evaluator::new(
            store,
            verifier,
            EvaluatorSettings {
                decision: DecisionSettings {
                    server_mode: self.mode,
                    no_match: self.no_match_policy,
                },
                verify_timeout: self.verify_timeout,
                require_digest: self.require_digest,
                max_registries_per_review: self.max_registries_per_review.max(1),
                resolve_with_workload_credentials: self.resolve_with_workload_credentials,
            },
            audit,
        );
        evaluator.kyverno = kyverno;
        Ok(evaluator)
    }
}
