//! Answering a registry's `401`: parsing its `WWW-Authenticate` challenge,
//! basic credentials, and the bearer token exchange with the token server it
//! names (docker's flow: `GET realm?service&scope` with basic credentials or
//! anonymously, or an OAuth2 refresh with an identity token).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;

use super::error::{transport_error, RegistryError};
use super::options::MAX_TOKEN_BYTES;

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(super) struct Token {
    pub(super) value: String,
    pub(super) expires: Instant,
}

/// Gets a token from the token server named in a `Bearer` challenge.
pub(super) async fn fetch_token(
    http: &reqwest::Client,
    auth: Option<&RegistryAuth>,
    registry: &str,
    repository: &str,
    params: &BTreeMap<String, String>,
) -> Result<Token, RegistryError> {
    let fail = |reason: String| RegistryError::Unauthorized {
        registry: registry.to_string(),
        repository: repository.to_string(),
        reason,
    };
    let realm = params
        .get("realm")
        .ok_or_else(|| fail("token challenge without a realm".into()))?;
    let service = params.get("service").cloned().unwrap_or_default();
    let scope = format!("repository:{repository}:pull");
    let req = match auth {
        // An identity token is an OAuth2 refresh token (docker's flow).
        Some(RegistryAuth::Bearer(refresh)) => http.post(realm).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", service.as_str()),
            ("scope", scope.as_str()),
            ("client_id", "sigil"),
        ]),
        _ => {
            let req = http
                .get(realm)
                .query(&[("service", service.as_str()), ("scope", scope.as_str())]);
            match auth {
                Some(RegistryAuth::Basic(u, p)) => req.header(AUTHORIZATION, basic(u, p)),
                _ => req,
            }
        }
    };
    // Counted under the registry the token is for, operation `token`.
    let metrics = crate::metrics::global();
    let sent = std::time::Instant::now();
    let mut resp = req.send().await.map_err(|e| {
        metrics.registry_request(registry, "token", "error", Some(sent.elapsed()));
        transport_error(registry, &e)
    })?;
    metrics.registry_request(
        registry,
        "token",
        crate::metrics::status_class(resp.status().as_u16()),
        Some(sent.elapsed()),
    );
    if !resp.status().is_success() {
        return Err(fail(format!(
            "token server {realm} answered HTTP {}",
            resp.status().as_u16()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(registry, &e))?
    {
        if body.len() + chunk.len() > MAX_TOKEN_BYTES {
            return Err(fail(format!("token server {realm} sent too much")));
        }
        body.extend_from_slice(&chunk);
    }
    #[derive(Deserialize)]
    struct TokenAnswer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
        fail(format!(
            "token server {realm} sent an unreadable answer: {e}"
        ))
    })?;
    let value = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail(format!("token server {realm} sent no token")))?;
    // Docker's default lifetime is 60 s; renew a little early.
    let lifetime = answer.expires_in.unwrap_or(60).clamp(10, 3_600);
    Ok(Token {
        value,
        expires: Instant::now() + Duration::from_secs(lifetime - 5),
    })
}

pub(super) fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    Basic,
    Bearer(BTreeMap<String, String>),
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub(super) fn parse_challenge(header: &str) -> Challenge {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::Basic;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    Challenge::Bearer(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        let Challenge::Bearer(p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        ) else {
            panic!("bearer");
        };
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
        let Challenge::Bearer(p) =
            parse_challenge("bearer realm=https://t.example/token, service=reg")
        else {
            panic!("bearer");
        };
        assert_eq!(p["realm"], "https://t.example/token");
        assert_eq!(p["service"], "reg");
        // Garbage is no panic.
        let _ = parse_challenge("Bearer =,,\"");
    }
}
