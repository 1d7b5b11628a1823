//! The policy store: named sources (a directory, the cluster) each replace
//! their own set of policies; readers get an immutable, compiled snapshot
//! swapped atomically, so a request never sees a half-applied change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::compile::{compile, parseable_globs, CompiledPolicy};
use super::glob::ImageGlob;
use super::index::GlobIndex;
use super::types::ClusterImagePolicySpec;
use crate::image::ImageRef;
use crate::model::error::PolicyError;

/// A policy that failed validation. It still claims the images its globs
/// name (when they compile), and those images fail closed with its error.
#[derive(Debug)]
pub struct InvalidPolicy {
    /// `metadata.name`.
    pub name: String,
    /// What is wrong.
    pub error: PolicyError,
    /// Globs, when they could be compiled.
    pub globs: Vec<ImageGlob>,
}

/// A policy definition as a source supplies it.
#[derive(Debug, Clone)]
pub struct PolicyDefinition {
    /// `metadata.name`.
    pub name: String,
    /// The spec, or the reason it could not be read plus any globs found.
    pub spec: Result<ClusterImagePolicySpec, (PolicyError, Vec<String>)>,
}

/// The outcome of loading one definition.
#[derive(Debug, Clone)]
pub enum LoadedPolicy {
    /// Compiled and in force.
    Valid(Arc<CompiledPolicy>),
    /// Rejected; fails closed for its images.
    Invalid(Arc<InvalidPolicy>),
}

impl LoadedPolicy {
    /// The policy's name.
    pub fn name(&self) -> &str {
        match self {
            LoadedPolicy::Valid(p) => &p.name,
            LoadedPolicy::Invalid(p) => &p.name,
        }
    }

    /// Whether the policy applies to the resource being admitted (`spec.match`).
    /// An invalid policy applies everywhere its globs reach (fail closed).
    pub fn applies_to(&self, r: &super::compile::ResourceRef) -> bool {
        match self {
            LoadedPolicy::Valid(p) => p.applies_to(r),
            LoadedPolicy::Invalid(_) => true,
        }
    }

    /// The image globs (an invalid policy keeps those that parse).
    pub fn globs(&self) -> &[ImageGlob] {
        match self {
            LoadedPolicy::Valid(p) => &p.globs,
            LoadedPolicy::Invalid(p) => &p.globs,
        }
    }

    /// The validation error, if any.
    pub fn error(&self) -> Option<&PolicyError> {
        match self {
            LoadedPolicy::Valid(_) => None,
            LoadedPolicy::Invalid(p) => Some(&p.error),
        }
    }
}

/// An immutable snapshot of every policy in force.
#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<LoadedPolicy>,
    index: GlobIndex,
}

impl PolicySet {
    /// Builds a set from loaded policies.
    pub fn new(policies: Vec<LoadedPolicy>) -> Self {
        let index = GlobIndex::new(policies.iter().map(LoadedPolicy::globs));
        PolicySet { policies, index }
    }

    /// All policies, valid and invalid.
    pub fn policies(&self) -> &[LoadedPolicy] {
        &self.policies
    }

    /// The policies whose globs match `image`.
    ///
    /// A pinned image is also matched by the names of the reference it
    /// pins ([`ImageRef::unpinned_names`]: its tagged name, `latest` when no
    /// tag is written, and the reference as written without its digest), so
    /// the policies that claim an image are the same before and after
    /// `/mutate` pins it: more policies can only make the check stricter,
    /// never skip one.
    pub fn matching(&self, image: &ImageRef) -> Vec<LoadedPolicy> {
        let name = image.glob_name();
        let unpinned = image.unpinned_names();
        let unpinned = unpinned.iter().flatten();
        // Only globs whose literal prefix starts one of the names can
        // match; each is then tried as before.
        let mut candidates = Vec::new();
        self.index.candidates(&name, &mut candidates);
        self.index.candidates(&image.original, &mut candidates);
        for n in unpinned.clone() {
            self.index.candidates(n, &mut candidates);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut matched: Vec<usize> = Vec::new();
        for (p, g) in candidates {
            let p = p as usize;
            if matched.last() == Some(&p) {
                continue;
            }
            let Some(glob) = self.policies.get(p).and_then(|x| x.globs().get(g as usize)) else {
                continue;
            };
            if glob.matches_names(&name, &image.original)
                || unpinned.clone().any(|n| glob.matches_names(n, n))
            {
                matched.push(p);
            }
        }
        matched
            .into_iter()
            .filter_map(|p| self.policies.get(p).cloned())
            .collect()
    }

    /// [`PolicySet::matching`] by trying every glob of every policy: the
    /// reference the index is tested against.
    #[cfg(test)]
    fn matching_by_scan(&self, image: &ImageRef) -> Vec<LoadedPolicy> {
        let name = image.glob_name();
        let unpinned = image.unpinned_names();
        self.policies
            .iter()
            .filter(|p| {
                p.globs().iter().any(|g| {
                    g.matches_names(&name, &image.original)
                        || unpinned.iter().flatten().any(|n| g.matches_names(n, n))
                })
            })
            .cloned()
            .collect()
    }
}

/// Compiles one definition.
pub fn load(def: &PolicyDefinition) -> LoadedPolicy {
    match &def.spec {
        Ok(spec) => match compile(&def.name, spec) {
            Ok(p) => LoadedPolicy::Valid(Arc::new(p)),
            Err(error) => LoadedPolicy::Invalid(Arc::new(InvalidPolicy {
                name: def.name.clone(),
                error,
                globs: parseable_globs(spec),
            })),
        },
        Err((error, globs)) => LoadedPolicy::Invalid(Arc::new(InvalidPolicy {
            name: def.name.clone(),
            error: error.clone(),
            globs: globs
                .iter()
                .filter_map(|g| ImageGlob::compile(g).ok())
                .collect(),
        })),
    }
}

/// Holds the policies of every source and publishes compiled snapshots.
#[derive(Default)]
pub struct PolicyStore {
    sources: Mutex<BTreeMap<String, Vec<LoadedPolicy>>>,
    current: ArcSwap<PolicySet>,
}

impl PolicyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The snapshot in force now.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Replaces everything `source` supplied with `defs`, and returns what
    /// each definition compiled to (for status reporting and logs).
    pub fn replace_source(&self, source: &str, defs: &[PolicyDefinition]) -> Vec<LoadedPolicy> {
        let loaded: Vec<LoadedPolicy> = defs.iter().map(load).collect();
        for p in &loaded {
            match p.error() {
                None => tracing::info!(source, policy = p.name(), "policy loaded"),
                Some(e) => {
                    tracing::error!(source, policy = p.name(), error = %e, "policy invalid; images it names fail closed")
                }
            }
        }
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.insert(source.to_string(), loaded.clone());
        let all = sources.values().flatten().cloned().collect();
        self.current.store(Arc::new(PolicySet::new(all)));
        loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One bad glob must not make the others claim nothing (they would fall
    /// through to the no-match rule, or to a weaker policy).
    #[test]
    fn an_invalid_glob_leaves_the_other_globs_claiming_their_images() {
        let defs = crate::policy::files::parse_documents(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: strict}\nspec:\n  images: [{glob: \"reg.example/team/**\"}, {glob: \"reg.example/[a-z]*\"}]\n  authorities: [{static: {action: pass}}]\n",
        )
        .unwrap();
        let set = PolicySet::new(defs.iter().map(load).collect());
        let m = set.matching(&ImageRef::parse("reg.example/team/app:v1").unwrap());
        assert_eq!(m.len(), 1);
        let err = m[0].error().expect("invalid");
        assert_eq!(err.field, "spec.images[1].glob");
    }

    /// The policies that claim an image are the same before and after it is
    /// pinned the way `/mutate` pins it (the reference as written, then
    /// `@digest`): globs that name a tag, the implied `latest`, the
    /// reference as written, and short Docker Hub names.
    #[test]
    fn pinning_never_changes_which_policies_match() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let globs = [
            "reg.example/app:latest",
            "reg.example/app",
            "reg.example/app:v1",
            "reg.example/app*",
            "reg.example/**",
            "busybox:latest",
            "busybox",
            "index.docker.io/library/busybox:latest",
            "index.docker.io/library/busybox*",
            "*",
            "library/busybox",
            "team/app:1.2",
        ];
        let policies: Vec<LoadedPolicy> = globs
            .iter()
            .map(|g| {
                LoadedPolicy::Invalid(Arc::new(InvalidPolicy {
                    name: g.to_string(),
                    error: PolicyError {
                        field: "f".into(),
                        message: g.to_string(),
                    },
                    globs: vec![ImageGlob::compile(g).unwrap()],
                }))
            })
            .collect();
        let set = PolicySet::new(policies);
        let names = |image: &str| -> Vec<String> {
            let image = ImageRef::parse(image).unwrap();
            let by_index: Vec<String> = set
                .matching(&image)
                .iter()
                .map(|p| p.name().to_string())
                .collect();
            let by_scan: Vec<String> = set
                .matching_by_scan(&image)
                .iter()
                .map(|p| p.name().to_string())
                .collect();
            assert_eq!(by_index, by_scan, "{}", image.original);
            by_index
        };
        for written in [
            "reg.example/app",
            "reg.example/app:latest",
            "reg.example/app:v1",
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox",
            "library/busybox:latest",
            "team/app:1.2",
        ] {
            let before = names(written);
            assert!(!before.is_empty(), "{written}: no glob claims it");
            let after = names(&format!("{written}@{digest}"));
            assert_eq!(
                before, after,
                "{written}: pinned, it is claimed by other policies"
            );
        }
        // A tag-naming glob does not claim another tag, pinned or not.
        assert!(!names(&format!("reg.example/app:v2@{digest}"))
            .contains(&"reg.example/app:v1".to_string()));
    }

    /// The index narrows, never decides: over a mix of globs (Docker Hub
    /// shorthands, host spellings, `*` and `**` anywhere, literals, tags)
    /// and references (every host spelling, tags, digests, both), it
    /// matches exactly the policies that trying every glob matches.
    #[test]
    fn the_index_matches_exactly_what_a_scan_matches() {
        let hosts = [
            "ghcr.io",
            "GHCR.io:443",
            "index.docker.io",
            "docker.io",
            "reg.example:5000",
            "127.0.0.1:5000",
            "*",
            "reg*",
            "",
        ];
        let paths = [
            "team/app",
            "team/*",
            "team/**",
            "**",
            "*",
            "*/*",
            "team-1/app:v1",
            "team/app@sha256:*",
            "te*m/app",
            "library/nginx",
            "nginx",
            "a**",
            "team/app:*",
        ];
        let mut policies = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            for (j, p) in paths.iter().enumerate() {
                let glob = if h.is_empty() {
                    p.to_string()
                } else {
                    format!("{h}/{p}")
                };
                let Ok(g) = ImageGlob::compile(&glob) else {
                    continue;
                };
                policies.push(LoadedPolicy::Invalid(Arc::new(InvalidPolicy {
                    name: format!("p{i}-{j}"),
                    error: PolicyError {
                        field: "f".into(),
                        message: glob,
                    },
                    globs: vec![g],
                })));
            }
        }
        for g in ["*", "*/*", "**", "ghcr.io/foo**"] {
            policies.push(LoadedPolicy::Invalid(Arc::new(InvalidPolicy {
                name: g.into(),
                error: PolicyError {
                    field: "f".into(),
                    message: g.into(),
                },
                globs: vec![ImageGlob::compile(g).unwrap()],
            })));
        }
        let set = PolicySet::new(policies);
        let digest = format!("sha256:{}", "ab".repeat(32));
        let mut checked = 0;
        for h in [
            "ghcr.io/",
            "GHCR.io:443/",
            "docker.io/",
            "index.docker.io/",
            "reg.example:5000/",
            "127.0.0.1:5000/",
            "regx/",
            "",
        ] {
            for r in [
                "team/app",
                "team-1/app",
                "nginx",
                "library/nginx",
                "foo/bar/baz",
                "team/app/sub",
                "teem/app",
            ] {
                for suffix in [
                    String::new(),
                    ":v1".into(),
                    format!("@{digest}"),
                    format!(":v1@{digest}"),
                ] {
                    let Ok(image) = ImageRef::parse(&format!("{h}{r}{suffix}")) else {
                        continue;
                    };
                    let names = |v: Vec<LoadedPolicy>| {
                        v.iter().map(|p| p.name().to_string()).collect::<Vec<_>>()
                    };
                    assert_eq!(
                        names(set.matching(&image)),
                        names(set.matching_by_scan(&image)),
                        "{}",
                        image.original
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 150, "{checked}");
        // And it matched something: the comparison is not vacuous.
        assert!(
            set.matching(&ImageRef::parse("ghcr.io/team/app:v1").unwrap())
                .len()
                > 5
        );
    }
}
