//! Kubernetes integration: watchers (kube-runtime) for ClusterImagePolicies
//! with the Secrets and ConfigMaps they name (`policies`), Namespaces
//! (`namespaces`) and TrustRoots (`trust_roots`); the sync state that
//! readiness follows (`sync`); the one routine that writes `Ready`
//! conditions (`status`); pull-secret credentials (`credentials`); the
//! leader Lease (`lease`) and self-managed serving certificates
//! (`certificates`). It feeds
//! the same [`crate::policy::PolicyStore`] as the policy directory and
//! implements the small traits the pipeline asks for
//! ([`crate::service::NamespaceLookup`], [`crate::service::CredentialSource`]);
//! the pipeline never depends on this module. It must not verify anything.
//!
//! Fail closed: until both watches have listed everything once, and while
//! any of them is re-listing (the watcher starts a re-list when its watch
//! cannot resume, e.g. after `410 Gone`), the cluster is "not synced" and
//! enforced reviews are denied with that reason. A watch error that the
//! watcher recovers from by resuming where it stopped (no re-list; nothing
//! was missed) does not change readiness: not-ready means a re-list is
//! really under way.

mod background;
mod certificates;
mod credentials;
mod events;
mod inventory;
mod kyverno;
mod lease;
mod namespaces;
mod pages;
mod policies;
mod status;
mod sync;
mod trust_roots;
mod watch;

pub use crate::service::{NamespaceLookup, NamespaceMode};
pub use background::{audit_once, background_audit, report_json, BackgroundAuditSettings};
pub use certificates::{
    keep_certificates, look as look_after_certificates, serve_from_secret, stored_of,
    CertificatesError, SelfManagedCertificates,
};
pub use credentials::{KubeCredentials, DEFAULT_CACHE_BYTES as DEFAULT_PULL_SECRET_CACHE_BYTES};
pub use events::{not_ready_record, violation_record, EventRecord, EventRecorder};
pub use inventory::{read_inventory, Inventory};
pub use kyverno::watch_kyverno_policies;
pub use lease::{lead, Leadership, LEASE_NAME};
pub use namespaces::{mode_from_label, watch_namespaces};
pub use policies::{definition, watch_policies, PolicyWatch};
pub use status::status_json;
pub use sync::ClusterState;
pub use trust_roots::watch_trust_roots;
pub use watch::{client, INCLUDE_LABEL, SOURCE};
