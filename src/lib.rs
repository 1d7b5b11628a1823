//! sigil: a Kubernetes validating admission webhook that admits a workload only
//! when every image in it is pinned to a digest whose cosign signatures satisfy
//! the cluster's `ClusterImagePolicy` resources.
//!
//! The modules follow the data: an admission request ([`admission`]) names a
//! workload ([`workload`]) whose images ([`image`]) are matched against
//! policies ([`policy`]); each match is verified ([`verify`], which talks to
//! registries through [`registry`]); the results are combined into a verdict by
//! pure code ([`decision`]) and answered and logged ([`admission`], [`audit`]).
//! [`service`] wires the steps together for both the webhook ([`server`]) and
//! the offline tester ([`check`]).

pub mod admission;
pub mod audit;
pub mod bundle_cli;
pub mod certificates;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod crd;
pub mod decision;
pub mod duration;
pub mod gate;
pub mod image;
pub mod kyverno;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod rate;
pub mod registry;
pub mod report;
pub mod report_cli;
pub mod server;
pub mod service;
pub mod text;
pub mod tls;
pub mod trust;
pub mod verify;
pub mod whatif;
pub mod workload;

/// Installs aws-lc-rs as the process-wide rustls crypto provider. Must run
/// before any TLS client or server is built; calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
