//! Container image references, normalised the way policy-controller (and
//! go-containerregistry) does: `docker.io` becomes `index.docker.io`, official
//! images get `library/`, and a reference without tag or digest means `:latest`.
//!
//! One registry has many spellings that the kubelet pulls from alike, so the
//! registry host is put in one canonical form before anything matches or
//! fetches ([`canonical_registry`]): host names are case-insensitive, `:443`
//! is the HTTPS default port, and Docker Hub answers to `docker.io`,
//! `index.docker.io` and `registry-1.docker.io`. Every glob sees only the
//! canonical name, so no spelling slips past a policy.

use std::sync::Arc;

use oci_client::Reference;

/// The Docker Hub host as policy-controller writes it in globs.
pub const DOCKER_HUB: &str = "index.docker.io";

/// An image reference as written in a pod spec, parsed and normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The reference exactly as the workload wrote it.
    pub original: String,
    /// Registry host (and port), with Docker Hub spelled `index.docker.io`.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/nginx`.
    pub repository: String,
    /// Tag, `latest` when neither tag nor digest was written.
    pub tag: Option<String>,
    /// Digest when the reference is pinned (`@sha256:…`).
    pub digest: Option<String>,
}

/// An image reference that cannot be parsed. Its text quotes the
/// reference as an escaped excerpt with its length, never whole: a review
/// of 256 such references must not answer with 256 copies of each.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid image reference \"{}\": {reason}", crate::text::excerpt(.reference, crate::limits::MAX_QUOTED_VALUE))]
pub struct ImageRefError {
    /// The reference as written.
    pub reference: String,
    /// Why it was rejected.
    pub reason: String,
}

/// References parsed recently. The warm path parses every image of every
/// review, and the reference grammar (oci-spec's regular expression, run by
/// a bounded backtracker that clears its visited set on every search) was a
/// quarter of a cached review's time; workloads repeat their references.
/// Bounded by bytes; only references up to [`MAX_CACHED_REFERENCE`] bytes
/// are kept, and only ones that parsed.
static PARSED: std::sync::LazyLock<moka::sync::Cache<String, Arc<ImageRef>>> =
    std::sync::LazyLock::new(|| {
        moka::sync::Cache::builder()
            .max_capacity(PARSED_CACHE_BYTES)
            .weigher(|k: &String, v: &Arc<ImageRef>| {
                u32::try_from(k.len() * 4 + v.original.len() + 256).unwrap_or(u32::MAX)
            })
            .time_to_idle(std::time::Duration::from_secs(600))
            .eviction_listener(|_, _, cause| {
                crate::metrics::global().cache_removal(crate::metrics::CacheName::references, cause)
            })
            .build()
    });

/// Builds what parsing a reference needs, once: oci-client compiles its
/// reference regex on first use, about 100 ms (release build) that the
/// first review after a start would otherwise wait on, before its first
/// registry request. `serve` calls this before it listens.
pub fn warm_up() {
    let _ = Reference::try_from("warm-up.invalid/sigil:warm-up");
}

/// What the parsed-reference cache holds now, weighed in bytes.
pub fn parse_cache_bytes() -> u64 {
    PARSED.run_pending_tasks();
    PARSED.weighted_size()
}

/// Longest reference kept in the parsed-reference cache.
use crate::limits::MAX_CACHED_REFERENCE;
/// Bytes the parsed-reference cache may hold (about 10,000 typical references).
use crate::limits::PARSED_REFERENCE_CACHE_BYTES as PARSED_CACHE_BYTES;

impl ImageRef {
    /// Parses and normalises an image reference (through a small cache of
    /// recent ones: the result is the same either way).
    pub fn parse(original: &str) -> Result<Self, ImageRefError> {
        Self::parse_shared(original).map(Arc::unwrap_or_clone)
    }

    /// [`ImageRef::parse`], shared with the cache instead of copied out of
    /// it (the warm path: five strings fewer to copy and free per image).
    pub fn parse_shared(original: &str) -> Result<Arc<Self>, ImageRefError> {
        if original.len() > MAX_CACHED_REFERENCE {
            return Self::parse_uncached(original).map(Arc::new);
        }
        let metrics = crate::metrics::global();
        if let Some(hit) = PARSED.get(original) {
            metrics.cache_lookup(crate::metrics::CacheName::references, true);
            return Ok(hit);
        }
        metrics.cache_lookup(crate::metrics::CacheName::references, false);
        let parsed = Arc::new(Self::parse_uncached(original)?);
        PARSED.insert(original.into(), parsed.clone());
        Ok(parsed)
    }

    /// [`ImageRef::parse`] without the cache.
    pub fn parse_uncached(original: &str) -> Result<Self, ImageRefError> {
        // Docker's rule (distribution/reference `splitDockerDomain`, which
        // containerd and so the kubelet follow): the first component is a
        // registry host if it has a `.` or `:`, is `localhost`, or has a
        // capital letter. oci-client's parser misses the last case and would
        // read `Evil/app` as Docker Hub's `evil/app`-like repository while
        // the kubelet pulls from host `evil`: that host is parsed here.
        let host_by_capitals = match original.split_once('/') {
            Some((first, rest))
                if !first.contains(['.', ':'])
                    && first != "localhost"
                    && first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                Some((first, rest))
            }
            _ => None,
        };
        let to_parse = match host_by_capitals {
            // A placeholder host that oci-client reads as a host; replaced below.
            Some((_, rest)) => format!("host.invalid/{rest}"),
            None => original.to_string(),
        };
        // A pinned reference ends in `@sha256:<64 hex>`. oci-client's
        // reference regex costs more than twice as much with the digest on
        // (the warm path parses every image), so a digest of exactly that
        // shape is split off here and only the name is parsed; anything
        // else (another algorithm, a malformed digest) goes to oci-client
        // whole and gets its verdict.
        let (name_part, pinned) = match to_parse.rsplit_once('@') {
            Some((name, d)) if is_sha256_digest(d) => (name, Some(d.to_string())),
            _ => (to_parse.as_str(), None),
        };
        let parsed = Reference::try_from(name_part).map_err(|e| ImageRefError {
            reference: original.to_string(),
            reason: e.to_string(),
        })?;
        // Whether a tag was written: oci-client may default one.
        let tag_written = name_part
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        let registry = match host_by_capitals {
            Some((host, _)) => canonical_registry(host),
            None => canonical_registry(parsed.registry()),
        };
        let digest = pinned.or_else(|| parsed.digest().map(str::to_string));
        let tag = match (parsed.tag(), &digest) {
            (Some(t), None) => Some(t.to_string()),
            (Some(t), Some(_)) if tag_written => Some(t.to_string()),
            (_, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            original: original.to_string(),
            repository: hub_repository(&registry, parsed.repository()),
            registry,
            tag,
            digest,
        })
    }

    /// `registry/repository`, e.g. `index.docker.io/library/nginx`.
    pub fn repository_name(&self) -> String {
        // Joined by hand (as below): these run for every image of every
        // review, and `format!` costs several times as much.
        [self.registry.as_str(), "/", &self.repository].concat()
    }

    /// The fully qualified name that policy globs are matched against:
    /// `registry/repository@digest` when pinned, else `registry/repository:tag`
    /// (go-containerregistry's `Name()`).
    pub fn glob_name(&self) -> String {
        let (registry, repository) = (self.registry.as_str(), self.repository.as_str());
        match (&self.digest, &self.tag) {
            (Some(d), _) => [registry, "/", repository, "@", d].concat(),
            (None, Some(t)) => [registry, "/", repository, ":", t].concat(),
            (None, None) => self.repository_name(),
        }
    }

    /// The names a pinned image is matched by besides its own, so that
    /// pinning (what `/mutate` writes: the reference as written, then
    /// `@digest`) never changes which policies claim it: its tagged name,
    /// `registry/repository:tag` with `latest` when no tag is written (as
    /// for the reference before pinning), and the reference as written
    /// without its digest (`busybox:latest`, `reg.example/app`). None for
    /// an image without a digest. More names can only make more policies
    /// apply, never fewer: every one that matches must pass.
    pub fn unpinned_names(&self) -> [Option<String>; 2] {
        let Some(digest) = self.digest.as_deref() else {
            return [None, None];
        };
        let tag = self.tag.as_deref().unwrap_or("latest");
        let tagged = [self.registry.as_str(), "/", &self.repository, ":", tag].concat();
        let written = self
            .original
            .strip_suffix(digest)
            .and_then(|s| s.strip_suffix('@'))
            .filter(|s| !s.is_empty() && *s != tagged)
            .map(str::to_string);
        [Some(tagged), written]
    }

    /// The reference as oci-client should fetch it (tag or digest as written).
    pub fn to_reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => {
                Reference::with_digest(self.registry.clone(), self.repository.clone(), d.clone())
            }
            (None, t) => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }
}

/// `sha256:` and 64 lowercase hex digits: the only digest sigil fetches by
/// or splits off a reference.
pub fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Docker Hub's official images live under `library/`: a one-component
/// repository on any spelling of Docker Hub gets it (oci-client adds it only
/// for the exact spelling `docker.io`; found by fuzzing).
fn hub_repository(registry: &str, repository: &str) -> String {
    if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_string()
    }
}

/// The one spelling of a registry host: lowercase (DNS names are
/// case-insensitive), without the HTTPS default port `:443`, and Docker
/// Hub's aliases as `index.docker.io`. IP addresses and other ports are kept
/// as written (`127.0.0.1` and `localhost` are different names; resolving
/// names is not sigil's business).
pub fn canonical_registry(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    let without_port = lower.strip_suffix(":443").unwrap_or(&lower);
    match without_port {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// The tag under which cosign stores signatures (`.sig`) or attestations
/// (`.att`) for `digest`: `sha256-<hex>.<suffix>`.
pub fn cosign_tag(digest: &str, suffix: &str) -> String {
    format!("{}.{}", digest.replacen(':', "-", 1), suffix)
}

#[cfg(test)]
mod bounded_error_tests {
    use super::*;

    /// The error quotes an escaped excerpt and the length, never the
    /// reference whole: 4,000 bytes of DEL make a short line.
    #[test]
    fn an_invalid_reference_is_quoted_short_and_escaped() {
        let reference = "\u{7f}".repeat(4_000);
        let e = ImageRef::parse(&reference).unwrap_err().to_string();
        assert!(e.len() < 200, "{} bytes: {e}", e.len());
        assert!(e.starts_with("invalid image reference \"\\u{7f}"), "{e}");
        assert!(e.contains("…(4,000 bytes)\""), "{e}");
        assert!(!e.chars().any(crate::text::needs_escape), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_docker_hub_and_default_tag() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.glob_name(), "index.docker.io/library/nginx:latest");
        let r = ImageRef::parse("docker.io/myuser/app:1.2").unwrap();
        assert_eq!(r.glob_name(), "index.docker.io/myuser/app:1.2");
        let r = ImageRef::parse("127.0.0.1:5000/team/app").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.glob_name(), "127.0.0.1:5000/team/app:latest");
    }

    #[test]
    fn digest_wins_over_tag_in_glob_name() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("ghcr.io/a/b:v1@{d}")).unwrap();
        assert_eq!(r.glob_name(), format!("ghcr.io/a/b@{d}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
    }

    #[test]
    fn pinned_references_parse_like_oci_client_says() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for (written, registry, repository, tag) in [
            (format!("ghcr.io/a/b@{d}"), "ghcr.io", "a/b", None),
            (format!("ghcr.io/a/b:v1@{d}"), "ghcr.io", "a/b", Some("v1")),
            (
                format!("127.0.0.1:5000/a:v1@{d}"),
                "127.0.0.1:5000",
                "a",
                Some("v1"),
            ),
            (format!("127.0.0.1:5000/a@{d}"), "127.0.0.1:5000", "a", None),
            (
                format!("nginx@{d}"),
                "index.docker.io",
                "library/nginx",
                None,
            ),
            (format!("Evil/app:1@{d}"), "evil", "app", Some("1")),
        ] {
            let r = ImageRef::parse(&written).unwrap();
            assert_eq!(
                (
                    r.registry.as_str(),
                    r.repository.as_str(),
                    r.tag.as_deref(),
                    r.digest.as_deref()
                ),
                (registry, repository, tag, Some(d.as_str())),
                "{written}"
            );
            // The same as oci-client's own reading of the whole reference.
            let whole = oci_client::Reference::try_from(written.as_str()).unwrap();
            assert_eq!(whole.digest(), Some(d.as_str()), "{written}");
        }
        // Not a sha256 digest of the right shape: oci-client decides.
        assert!(ImageRef::parse("ghcr.io/a/b@sha256:abc").is_err());
        assert!(ImageRef::parse(&format!("ghcr.io/a/b@{}", d.to_uppercase())).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(ImageRef::parse("invalid&name").is_err());
        assert!(ImageRef::parse("").is_err());
    }

    /// Every row of the README's registry-spelling table.
    #[test]
    fn every_spelling_of_a_registry_is_one_name() {
        let d = format!("sha256:{}", "c".repeat(64));
        let rows: &[(&str, &str)] = &[
            ("LOCALHOST:15000/team/app:v1", "localhost:15000/team/app:v1"),
            ("Localhost:15000/team/app:v1", "localhost:15000/team/app:v1"),
            ("GHCR.io/team/app:v1", "ghcr.io/team/app:v1"),
            ("ghcr.io:443/team/app:v1", "ghcr.io/team/app:v1"),
            ("GHCR.IO:443/team/app:v1", "ghcr.io/team/app:v1"),
            (
                "docker.io/library/nginx:1",
                "index.docker.io/library/nginx:1",
            ),
            (
                "Docker.IO/library/nginx:1",
                "index.docker.io/library/nginx:1",
            ),
            (
                "docker.io:443/library/nginx:1",
                "index.docker.io/library/nginx:1",
            ),
            (
                "registry-1.docker.io/library/nginx:1",
                "index.docker.io/library/nginx:1",
            ),
            (
                "index.docker.io/library/nginx:1",
                "index.docker.io/library/nginx:1",
            ),
            ("nginx:1", "index.docker.io/library/nginx:1"),
            ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app:v1"),
            (
                "reg.example:8443/team/app:v1",
                "reg.example:8443/team/app:v1",
            ),
        ];
        for (written, canonical) in rows {
            let r = ImageRef::parse(written).unwrap();
            assert_eq!(r.glob_name(), *canonical, "{written}");
        }
        let r = ImageRef::parse(&format!("REG.example:443/a/b@{d}")).unwrap();
        assert_eq!(r.glob_name(), format!("reg.example/a/b@{d}"));
        // A first component with capitals is a host by Docker's rules (the
        // kubelet pulls from it, case-insensitively), not a Docker Hub
        // namespace: found by fuzzing.
        for (written, canonical) in [
            ("docyHOSa/foo", "docyhosa/foo:latest"),
            ("Evil/app:v1", "evil/app:v1"),
            (
                &*format!("EVIL/team/app@{d}"),
                &*format!("evil/team/app@{d}"),
            ),
            ("evil/app:v1", "index.docker.io/evil/app:v1"),
        ] {
            let r = ImageRef::parse(written).unwrap();
            assert_eq!(r.glob_name(), canonical, "{written}");
        }
    }

    #[test]
    fn the_parse_cache_changes_nothing() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for r in [
            "nginx".to_string(),
            "Evil/app:v1".into(),
            "docker.io/library/nginx:1.25".into(),
            format!("GHCR.io:443/team/app:v1@{d}"),
            format!("localhost:5000/a@{d}"),
        ] {
            let fresh = ImageRef::parse_uncached(&r).unwrap();
            assert_eq!(ImageRef::parse(&r).unwrap(), fresh, "{r}");
            assert_eq!(ImageRef::parse(&r).unwrap(), fresh, "{r} (cached)");
        }
        assert!(ImageRef::parse("UPPER/../x:").is_err());
        assert!(ImageRef::parse("UPPER/../x:").is_err());
    }

    #[test]
    fn cosign_tags() {
        assert_eq!(cosign_tag("sha256:abc", "sig"), "sha256-abc.sig");
    }
}
