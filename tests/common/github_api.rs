//! A GitHub attestation API over HTTPS, speaking the documented shape
//! (`GET /orgs/{org}/attestations/{digest}` and the repository form,
//! answering `{"attestations": [{"bundle": {…}, "repository_id": …}]}`,
//! pages linked by `Link: <…>; rel="next"`), refusing any request without
//! its token as GitHub does (403 with a `message`).
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

pub const TOKEN: &str = "ghs_t0ken";

/// What the API answers for one digest.
#[derive(Clone)]
pub enum Answer {
    /// These bundles, in one page.
    Bundles(Vec<serde_json::Value>),
    /// An empty first page linking to a second holding these.
    Paged(Vec<serde_json::Value>),
    /// A first page linking to a page on another origin.
    LinkElsewhere,
    /// A 6 MiB answer.
    Oversized,
    /// 403, whatever the token.
    Forbidden,
}

#[derive(Clone, Default)]
pub struct Api {
    pub answers: Arc<Mutex<BTreeMap<String, Answer>>>,
    /// Every path asked, in order.
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl Api {
    /// Serves over HTTPS on loopback; returns the base URL and the CA
    /// file that trusts it.
    pub async fn serve(&self, dir: &std::path::Path) -> (String, std::path::PathBuf) {
        let tls = sigil::tls::self_signed(&["127.0.0.1".to_string()]).unwrap();
        let ca = dir.join("github-ca.pem");
        std::fs::write(&ca, &tls.ca_pem).unwrap();
        let config =
            sigil::tls::server_config(tls.cert_pem.as_bytes(), tls.key_pem.as_bytes(), None)
                .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("https://{addr}");
        let api = self.clone();
        let base2 = base.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let api = api.clone();
            let base = base2.clone();
            async move {
                // GitHub's documented rate-limit header, on every answer:
                // the calls left, one fewer per call made.
                let mut answer = api.answer(&base, &uri, &headers);
                let left = 5_000usize.saturating_sub(api.asked.lock().unwrap().len());
                answer.headers_mut().insert(
                    "x-ratelimit-remaining",
                    axum::http::HeaderValue::from(left as u64),
                );
                answer
            }
        });
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(config),
        )
        .unwrap();
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        (base, ca)
    }

    fn answer(&self, base: &str, uri: &Uri, headers: &HeaderMap) -> axum::response::Response {
        self.asked.lock().unwrap().push(uri.to_string());
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"));
        let forbidden = (
            StatusCode::FORBIDDEN,
            r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}"#,
        );
        if !authorized
            || headers.get("accept").and_then(|v| v.to_str().ok())
                != Some("application/vnd.github+json")
        {
            return forbidden.into_response();
        }
        let path = uri.path();
        let Some(digest) = path
            .strip_prefix("/orgs/acme/attestations/")
            .or_else(|| path.strip_prefix("/repos/acme/app/attestations/"))
        else {
            return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
        };
        let second_page = uri.query().unwrap_or_default().contains("after=");
        let list = |bundles: &[serde_json::Value]| {
            serde_json::json!({"attestations": bundles.iter().map(|b| serde_json::json!({"bundle": b, "repository_id": 4242})).collect::<Vec<_>>()}).to_string()
        };
        let answer = self.answers.lock().unwrap().get(digest).cloned();
        match answer {
            None => (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response(),
            Some(Answer::Bundles(b)) => list(&b).into_response(),
            Some(Answer::Paged(b)) if second_page => list(&b).into_response(),
            Some(Answer::Paged(_)) => (
                [(
                    "link",
                    format!("<{base}{path}?per_page=30&after=Y3Vyc29y>; rel=\"next\""),
                )],
                list(&[]),
            )
                .into_response(),
            Some(Answer::LinkElsewhere) => (
                [(
                    "link",
                    format!("<https://attacker.test{path}?after=x>; rel=\"next\""),
                )],
                list(&[]),
            )
                .into_response(),
            Some(Answer::Oversized) => {
                let filler = "x".repeat(6 << 20);
                format!("{{\"attestations\":[],\"filler\":\"{filler}\"}}").into_response()
            }
            Some(Answer::Forbidden) => forbidden.into_response(),
        }
    }
}
