//! ClusterImagePolicy: the resource types, their compiled form, the store that
//! the file loader (and later the Kubernetes watcher) feeds, and matching.

pub mod compile;
pub mod files;
pub mod glob;
pub mod index;
pub mod kms;
pub mod kms_ref;
pub mod program;
pub mod program_pool;
pub mod promises;
pub mod sources;
pub mod store;
pub mod types;
pub mod validate;

pub use crate::model::error::PolicyError;
pub use compile::{
    AuthorityCheck, CompiledAttestation, CompiledAuthority, CompiledPolicy, GithubSource,
    KeyEvidence, PolicyMode, ResourceRef,
};
pub use store::{InvalidPolicy, LoadedPolicy, PolicySet, PolicyStore};
pub use types::{ClusterImagePolicy, ClusterImagePolicySpec};
