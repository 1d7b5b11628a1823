//! A small real token server for distribution's token auth (the Docker
//! registry token protocol): `GET /token?service=…&scope=…` with alice's
//! basic credentials answers a JWT (ES256, its certificate in `x5c`) that
//! grants the scopes asked for; without them it grants nothing. The
//! registry checks the token's signature, issuer, audience and expiry
//! against the certificate bundle it is given, as in production.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sigil_testkit::TokenAuthSetup;

/// alice:s3cret, as a basic `Authorization` header.
const ALICE: &str = "Basic YWxpY2U6czNjcmV0";
const SERVICE: &str = "sigil-test-registry";
const ISSUER: &str = "sigil-test-token-issuer";

/// A running token server.
pub struct TokenServer {
    /// What the registry needs to trust it.
    pub setup: TokenAuthSetup,
    issued: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

struct Signer {
    key: EncodingKey,
    leaf_der_b64: String,
    issued: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    /// Starts on a free loopback port with a fresh signing certificate.
    pub async fn start() -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let certs = sigil::tls::self_signed(&["token-issuer.test".to_string()]).unwrap();
        let (ca, _, _) = sigil::tls::write_self_signed(dir.path(), &certs).unwrap();
        let leaf = pem::parse(&certs.cert_pem).unwrap();
        let issued = Arc::new(Mutex::new(Vec::new()));
        let signer = Arc::new(Signer {
            key: EncodingKey::from_ec_pem(certs.key_pem.as_bytes()).unwrap(),
            leaf_der_b64: base64::engine::general_purpose::STANDARD.encode(leaf.contents()),
            issued: issued.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/token", get(token)).with_state(signer);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenServer {
            setup: TokenAuthSetup {
                realm: format!("http://{addr}/token"),
                service: SERVICE.into(),
                issuer: ISSUER.into(),
                root_cert_bundle: ca,
            },
            issued,
            _dir: dir,
        }
    }

    /// The scopes of every token request so far (space-joined per request;
    /// empty when a request asked for none), in order.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

async fn token(
    State(signer): State<Arc<Signer>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Json<Value> {
    let query = query.unwrap_or_default();
    let scopes: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    signer.issued.lock().unwrap().push(scopes.join(" "));
    let authenticated = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(ALICE);
    let access: Vec<Value> = if authenticated {
        scopes
            .iter()
            .filter_map(|scope| {
                // `repository:<name>:<actions>`; names may hold no colon
                // here (no port in a repository name).
                let (kind, rest) = scope.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect()
    } else {
        Vec::new()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER,
        "sub": if authenticated { "alice" } else { "" },
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", signer.issued.lock().unwrap().len()),
        "access": access,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.x5c = Some(vec![signer.leaf_der_b64.clone()]);
    let jwt = jsonwebtoken::encode(&header, &claims, &signer.key).unwrap();
    Json(json!({"token": jwt, "access_token": jwt, "expires_in": 300}))
}
