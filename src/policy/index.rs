//! Which policies' globs may match a name, without trying every glob: each
//! glob is filed under its literal prefix (the canonical glob up to its
//! first `*`, which every name it matches starts with), so a lookup tries
//! only the prefixes of the name that some glob has, and then runs only
//! those globs. With 10,000 policies on distinct registries and
//! repositories, an image meets a handful of candidates instead of 10,000
//! regular expressions.
//!
//! It narrows, never decides: every candidate is still matched by its own
//! glob, so the semantics are the globs' exactly.

use std::collections::HashMap;

use super::glob::ImageGlob;

/// Globs by literal prefix; an entry is (policy position, glob position).
#[derive(Debug, Default)]
pub struct GlobIndex {
    by_prefix: HashMap<Box<str>, Vec<(u32, u32)>>,
    /// The distinct prefix lengths, ascending (0 for globs starting with `*`).
    lengths: Vec<usize>,
}

impl GlobIndex {
    /// Indexes the globs of each policy, in order.
    pub fn new<'a>(policies: impl Iterator<Item = &'a [ImageGlob]>) -> Self {
        let mut by_prefix: HashMap<Box<str>, Vec<(u32, u32)>> = HashMap::new();
        for (p, globs) in policies.enumerate() {
            for (g, glob) in globs.iter().enumerate() {
                // More than 4 billion policies or globs cannot be loaded.
                let (p, g) = (
                    u32::try_from(p).unwrap_or(u32::MAX),
                    u32::try_from(g).unwrap_or(u32::MAX),
                );
                by_prefix
                    .entry(glob.literal_prefix().into())
                    .or_default()
                    .push((p, g));
            }
        }
        let mut lengths: Vec<usize> = by_prefix.keys().map(|k| k.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        GlobIndex { by_prefix, lengths }
    }

    /// Adds to `out` every (policy, glob) whose literal prefix starts
    /// `name`: the only globs that can match it.
    pub fn candidates(&self, name: &str, out: &mut Vec<(u32, u32)>) {
        for &len in &self.lengths {
            if len > name.len() {
                break;
            }
            let Some(prefix) = name.get(..len) else {
                continue;
            };
            if let Some(found) = self.by_prefix.get(prefix) {
                out.extend_from_slice(found);
            }
        }
    }
}
