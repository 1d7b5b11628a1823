//! GitHub's attestation API as one more place Sigstore bundles live:
//! `GET /orgs/{org}/attestations/{digest}` or
//! `GET /repos/{owner}/{repo}/attestations/{digest}`, answered with
//! `{"attestations": [{"bundle": {…}, "repository_id": …}]}`.
//!
//! Owns the HTTP exchange only: every page is size-capped, the pages
//! followed are bounded and must stay on the API's own origin, and the
//! bundles are returned as bytes, unverified. Verifying them (exactly like
//! a referrer bundle) is the collector's. Requests go through the registry
//! client's connection pool, request limits and circuit breaker, so a slow
//! GitHub is one more host among the registries, with the same bounds.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LINK};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::client::read_capped;
use super::{RegistryClient, RegistryError};

/// Pages followed for one digest.
pub use crate::limits::GITHUB_MAX_PAGES as MAX_PAGES;
/// Bytes read of one page of the answer.
pub use crate::limits::GITHUB_MAX_PAGE_BYTES as MAX_PAGE_BYTES;
/// Attestations asked for per page.
pub use crate::limits::GITHUB_PER_PAGE as PER_PAGE;
/// Bundles kept for one digest, all pages together (as for referrers).
pub use crate::limits::MAX_REFERRERS as MAX_BUNDLES;

/// What to ask GitHub.
#[derive(Debug, Clone, Copy)]
pub struct AttestationQuery<'a> {
    /// The API's base URL, e.g. `https://api.github.com` or a GitHub
    /// Enterprise Server's `https://HOST/api/v3`, without a trailing `/`.
    pub api: &'a str,
    /// The organisation or user.
    pub owner: &'a str,
    /// A repository of the owner, to ask the repository endpoint instead.
    pub repository: Option<&'a str>,
    /// The token sent as `Authorization: Bearer`.
    pub token: Option<&'a str>,
}

impl AttestationQuery<'_> {
    /// The first page's URL for `digest`.
    pub fn url(&self, digest: &str) -> String {
        let scope = match self.repository {
            Some(repo) => format!("repos/{}/{repo}", self.owner),
            None => format!("orgs/{}", self.owner),
        };
        format!(
            "{}/{scope}/attestations/{digest}?per_page={PER_PAGE}",
            self.api
        )
    }
}

/// One attestation the API listed: its bundle, raw, and where it came from.
#[derive(Debug, Clone)]
pub struct ListedAttestation {
    /// The Sigstore bundle JSON.
    pub bundle: Vec<u8>,
    /// `repository_id`, for messages.
    pub repository_id: Option<u64>,
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow, default)]
    attestations: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    bundle: Option<&'a RawValue>,
    #[serde(default)]
    repository_id: Option<u64>,
}

impl RegistryClient {
    /// The attestations GitHub lists for `digest` (a checked sha256
    /// digest). Nothing listed (an empty list, or `404`) is an empty
    /// answer; any other failure is an error naming the API.
    pub async fn github_attestations(
        &self,
        query: &AttestationQuery<'_>,
        digest: &str,
    ) -> Result<Vec<ListedAttestation>, RegistryError> {
        let origin = origin_of(query.api).ok_or_else(|| RegistryError::Protocol {
            registry: query.api.to_string(),
            reason: "the GitHub API URL must be https://HOST[:PORT][/PATH]".into(),
        })?;
        let host = origin.trim_start_matches("https://").to_string();
        if !crate::image::is_sha256_digest(digest) {
            return Err(RegistryError::Protocol {
                registry: host,
                reason: format!("unusable digest {digest:?}"),
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "X-GitHub-Api-Version",
            HeaderValue::from_static("2022-11-28"),
        );
        if let Some(token) = query.token {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                    RegistryError::Protocol {
                        registry: host.clone(),
                        reason: "the GitHub token is not a valid header value".into(),
                    }
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut url = query.url(digest);
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let (status, resp) = self.send_api(&host, &url, headers.clone()).await?;
            if let Some(remaining) = resp
                .headers()
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                crate::metrics::global().github_quota(&host, remaining);
            }
            if status == StatusCode::NOT_FOUND && page == 1 {
                return Ok(Vec::new());
            }
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(str::to_string);
            let what = format!("GitHub attestations of {digest} (page {page})");
            let body = read_capped(resp, &host, &what, MAX_PAGE_BYTES).await?;
            if !status.is_success() {
                return Err(api_error(&host, status, &body));
            }
            let parsed: Page<'_> =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                    registry: host.clone(),
                    reason: format!("{what} is not an attestation list: {e}"),
                })?;
            for entry in parsed.attestations {
                if out.len() >= MAX_BUNDLES {
                    return Ok(out);
                }
                // An entry with only a `bundle_url` (a bundle too large to
                // inline) carries nothing verifiable here.
                if let Some(bundle) = entry.bundle {
                    out.push(ListedAttestation {
                        bundle: bundle.get().as_bytes().to_vec(),
                        repository_id: entry.repository_id,
                    });
                }
            }
            match next {
                // Pages are followed only on the API's own origin: a
                // hostile answer must not send the token elsewhere.
                Some(n) if origin_of(&n).as_deref() == Some(origin.as_str()) => url = n,
                Some(n) => {
                    return Err(RegistryError::Protocol {
                        registry: host,
                        reason: format!("{what}: next page {n:?} is not on {origin}"),
                    })
                }
                None => return Ok(out),
            }
        }
        Ok(out)
    }
}

/// `https://host[:port]` of an https URL.
fn origin_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if parsed.scheme() != "https" || !parsed.username().is_empty() || parsed.password().is_some() {
        return None;
    }
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(p) => format!("https://{host}:{p}"),
        None => format!("https://{host}"),
    })
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| target.trim().strip_prefix('<')?.strip_suffix('>'))
            .flatten()
    })
}

/// A failed answer, with GitHub's own `message` when it sent one.
fn api_error(host: &str, status: StatusCode, body: &[u8]) -> RegistryError {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let detail = serde_json::from_slice::<Message>(body)
        .map(|m| {
            let m: String = m
                .message
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            format!(": {m}")
        })
        .unwrap_or_default();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
            registry: host.to_string(),
            repository: "attestations".into(),
            reason: format!("HTTP {status}{detail}"),
        },
        StatusCode::TOO_MANY_REQUESTS => RegistryError::Throttled {
            registry: host.to_string(),
            retry_after: None,
        },
        _ => RegistryError::Protocol {
            registry: host.to_string(),
            reason: format!("GitHub API answered HTTP {status}{detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let h = r#"<https://api.github.com/orgs/acme/attestations/sha256:ab?per_page=30&after=Y3Vy>; rel="next", <https://api.github.com/orgs/acme/attestations/sha256:ab?per_page=30>; rel="first""#;
        assert_eq!(
            next_link(h),
            Some("https://api.github.com/orgs/acme/attestations/sha256:ab?per_page=30&after=Y3Vy")
        );
        assert_eq!(next_link(r#"<https://x/>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn only_https_origins_count() {
        assert_eq!(
            origin_of("https://api.github.com").as_deref(),
            Some("https://api.github.com")
        );
        assert_eq!(
            origin_of("https://ghe.acme.test:8443/api/v3").as_deref(),
            Some("https://ghe.acme.test:8443")
        );
        assert_eq!(origin_of("http://api.github.com"), None);
        assert_eq!(origin_of("https://user:pw@api.github.com"), None);
        assert_eq!(origin_of("not a url"), None);
    }

    #[test]
    fn the_query_names_the_org_or_the_repository() {
        let mut q = AttestationQuery {
            api: "https://api.github.com",
            owner: "acme",
            repository: None,
            token: None,
        };
        assert_eq!(
            q.url("sha256:ab"),
            "https://api.github.com/orgs/acme/attestations/sha256:ab?per_page=30"
        );
        q.repository = Some("app");
        assert_eq!(
            q.url("sha256:ab"),
            "https://api.github.com/repos/acme/app/attestations/sha256:ab?per_page=30"
        );
    }

    #[test]
    fn refusals_name_the_status_and_githubs_message() {
        let e = api_error(
            "api.github.com",
            StatusCode::FORBIDDEN,
            br#"{"message":"Resource not accessible by integration\n"}"#,
        );
        assert_eq!(
            e.to_string(),
            "registry api.github.com denied access to attestations: HTTP 403 Forbidden: Resource not accessible by integration"
        );
    }
}
