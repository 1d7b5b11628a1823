//! Image globs with policy-controller's semantics: `*` matches within one path
//! segment (no `/`), `**` matches across segments, the whole name must match,
//! `.` is literal, and the bare globs `*` and `*/*` mean Docker Hub's
//! `index.docker.io/library/*` and `index.docker.io/*/*`.
//!
//! globset's `**` only works as a whole path component, which is not what
//! policy-controller accepts (`ghcr.io/foo**`), so globs are translated to an
//! anchored regular expression once, when the policy is compiled, and that
//! to a sparse DFA (regex-automata) over bytes: a glob uses only ASCII
//! literals, `[^/]*` and `.*`, so its DFA has about as many states as the
//! glob has characters and takes about 1 KiB, shared by every thread with no
//! per-thread cache. (A
//! `regex::Regex` grows a ~12 KiB lazy-DFA cache per glob once used: 12 MB
//! for 1,000 policies; measured with
//! `cargo run --release --example policy_memory`.)

use regex_automata::dfa::dense;
use regex_automata::dfa::sparse::DFA;
use regex_automata::dfa::{Automaton, StartKind};
use regex_automata::{nfa::thompson, util::syntax, Anchored, Input};

/// Largest DFA one glob may compile to; a glob beyond it is refused as
/// invalid (real globs are far below).
use crate::limits::MAX_GLOB_DFA_BYTES;

use crate::image::ImageRef;

/// A compiled image glob.
#[derive(Debug, Clone)]
pub struct ImageGlob {
    source: String,
    dfa: DFA<Vec<u8>>,
    /// What every name the glob matches starts with: the canonical glob up
    /// to its first `*` (its characters match only themselves). The
    /// policy set indexes globs by it.
    literal_prefix: String,
}

/// A glob that policy-controller would reject.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid glob {glob:?}: {reason}")]
pub struct GlobError {
    /// The glob as written.
    pub glob: String,
    /// Why it is invalid.
    pub reason: String,
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '/' | '*' | '.')
}

impl ImageGlob {
    /// Compiles a glob, applying policy-controller's Docker Hub shorthands.
    pub fn compile(glob: &str) -> Result<Self, GlobError> {
        let expanded = match glob {
            "*" => "index.docker.io/library/*",
            "*/*" => "index.docker.io/*/*",
            g => g,
        };
        if expanded.is_empty() || !expanded.chars().all(allowed_char) {
            return Err(GlobError {
                glob: glob.to_string(),
                reason: "only letters, digits and - _ : / * . are allowed".into(),
            });
        }
        let expanded = canonical_host_segment(expanded);
        let literal_prefix = expanded.split('*').next().unwrap_or_default().to_string();
        let mut pattern = String::with_capacity(expanded.len() * 2 + 2);
        pattern.push('^');
        let mut chars = expanded.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    pattern.push_str(".*");
                }
                '*' => pattern.push_str("[^/]*"),
                '.' => pattern.push_str(r"\."),
                c => pattern.push(c),
            }
        }
        pattern.push('$');
        let dfa = dense::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(MAX_GLOB_DFA_BYTES))
                    .determinize_size_limit(Some(MAX_GLOB_DFA_BYTES)),
            )
            .build(&pattern)
            .map_err(|e| e.to_string())
            .and_then(|dense| dense.to_sparse().map_err(|e| e.to_string()))
            .map_err(|reason| GlobError {
                glob: glob.to_string(),
                reason,
            })?;
        Ok(ImageGlob {
            source: glob.to_string(),
            dfa,
            literal_prefix,
        })
    }

    /// The glob as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// What every name this glob matches starts with.
    pub fn literal_prefix(&self) -> &str {
        &self.literal_prefix
    }

    /// Whether the image matches: its normalised name first, then (as
    /// policy-controller still does, deprecated) the reference as written.
    pub fn matches(&self, image: &ImageRef) -> bool {
        self.matches_names(&image.glob_name(), &image.original)
    }

    /// Whether the whole of `name` matches (the pattern is anchored at both
    /// ends). A search error cannot happen with an anchored start and no
    /// quit bytes; if it did, the glob would not match.
    fn is_match(&self, name: &str) -> bool {
        let input = Input::new(name).anchored(Anchored::Yes);
        matches!(self.dfa.try_search_fwd(&input), Ok(Some(_)))
    }

    /// [`ImageGlob::matches`] with the normalised name computed once by the caller.
    pub fn matches_names(&self, glob_name: &str, original: &str) -> bool {
        self.is_match(glob_name) || self.is_match(original)
    }
}

/// The glob with its registry segment spelled as images are
/// ([`crate::image::canonical_registry`]): images are matched by their
/// canonical name, so `GHCR.io:443/team/**` must mean `ghcr.io/team/**`.
/// A segment with wildcards is only lowercased.
fn canonical_host_segment(glob: &str) -> String {
    match glob.split_once('/') {
        Some((host, rest)) if host.contains('*') => {
            format!("{}/{rest}", host.to_ascii_lowercase())
        }
        Some((host, rest)) => format!("{}/{rest}", crate::image::canonical_registry(host)),
        None => glob.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capitalised first component is a registry host (Docker's rule), so
    /// Docker Hub globs do not claim `Evil/app`.
    #[test]
    fn hub_globs_do_not_claim_capitalised_hosts() {
        let hub = ImageGlob::compile("*/*").unwrap();
        assert!(!hub.matches(&ImageRef::parse("Evil/app").unwrap()));
        assert!(hub.matches(&ImageRef::parse("evil/app").unwrap()));
    }

    /// policy-controller's own glob table (pkg/apis/glob/glob_test.go).
    #[test]
    fn policy_controller_glob_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "index.docker.io/library/foo:latest", true),
            ("foo", "index.docker.io/library/foo:*", true),
            ("foo", "index.docker.io/library/*", true),
            ("foo", "index.docker.io/library/*:latest", true),
            ("foo", "index.docker.io/*/*", true),
            ("foo", "index.docker.io/**", true),
            ("foo", "index.docker.**", true),
            ("foo", "inde**", true),
            ("foo", "**", true),
            ("foo", "foo", true),
            ("foo", "foo*", true),
            ("foo", "foo**", true),
            ("myuser/myapp", "index.docker.io/myuser/myapp:latest", true),
            ("myuser/myapp", "index.docker.io/myuser/myapp:*", true),
            ("myuser/myapp", "index.docker.io/myuser/*", true),
            ("myuser/myapp", "index.docker.io/myuser/*:latest", true),
            ("myuser/myapp", "index.docker.io/*/*", true),
            ("myuser/myapp", "index.docker.io/**", true),
            ("myuser/myapp", "myuser/myapp", true),
            ("myuser/myapp", "myuser/myapp*", true),
            ("ghcr.io/foo/bar", "ghcr.io/*/*", true),
            ("ghcr.io/foo/bar", "ghcr.io/**", true),
            ("ghcr.io/foo", "ghcr.io/*/*", false),
            ("ghcr.io/foo", "ghcr.io/**", true),
            ("ghcr.io/foo", "ghc**", true),
            ("ghcr.io/foo", "*/**", true),
            ("ghcr.io/foo", "ghcr.io/foo*", true),
            ("prefix-ghcr.io/foo", "ghcr.io/foo", false),
            ("ghcr.io/foo-suffix", "ghcr.io/foo", false),
            ("ghcrxio/foo", "ghcr.io/**", false),
            ("foo", "*", true),
            ("myuser/myapp", "*/*", true),
            ("myuser/myapp", "*", false),
            ("ghcr.io/foo/bar", "*/*", false),
            (
                "docker.io/library/foo",
                "index.docker.io/library/foo",
                false,
            ),
            (
                "docker.io/library/foo",
                "index.docker.io/library/foo:latest",
                true,
            ),
        ];
        for (image, glob, want) in cases {
            let g = ImageGlob::compile(glob).unwrap();
            let img = ImageRef::parse(image).unwrap();
            assert_eq!(g.matches(&img), *want, "image {image} glob {glob}");
        }
    }

    /// A policy names a registry once; every spelling of it is caught.
    #[test]
    fn globs_match_every_spelling_of_their_registry() {
        for (glob, image) in [
            ("localhost:15000/team/**", "LOCALHOST:15000/team/app"),
            ("localhost:15000/team/**", "Localhost:15000/team/app:v1"),
            ("LOCALHOST:15000/team/**", "localhost:15000/team/app"),
            ("ghcr.io/team/**", "ghcr.io:443/team/app"),
            ("ghcr.io:443/team/**", "GHCR.IO/team/app"),
            ("docker.io/library/*", "nginx"),
            ("index.docker.io/library/*", "Docker.io/library/nginx"),
            ("*.example/**", "REG.EXAMPLE/app"),
        ] {
            let g = ImageGlob::compile(glob).unwrap();
            let img = ImageRef::parse(image).unwrap();
            assert!(g.matches(&img), "glob {glob} must match {image}");
        }
        // Another port is another registry.
        let g = ImageGlob::compile("localhost:15000/team/**").unwrap();
        assert!(!g.matches(&ImageRef::parse("localhost:15001/team/app").unwrap()));
    }

    #[test]
    fn invalid_globs_are_rejected() {
        for g in [".+", "[a-z]*", "", "foo@sha256:abc", "a b"] {
            let err = ImageGlob::compile(g).unwrap_err();
            assert!(err.to_string().contains("invalid glob"), "{g}: {err}");
        }
    }

    #[test]
    fn digest_refs_match_repository_globs() {
        let d = format!("sha256:{}", "b".repeat(64));
        let img = ImageRef::parse(&format!("127.0.0.1:5000/app@{d}")).unwrap();
        assert!(ImageGlob::compile("127.0.0.1:5000/app**")
            .unwrap()
            .matches(&img));
        assert!(!ImageGlob::compile("127.0.0.1:5000/app:*")
            .unwrap()
            .matches(&img));
    }
}
