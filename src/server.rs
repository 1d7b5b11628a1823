//! The HTTPS server: routes, body limit, readiness, graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;

use crate::service::Evaluator;

/// Largest AdmissionReview accepted.
pub const BODY_LIMIT: usize = 4 << 20;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The pipeline.
    pub evaluator: Arc<Evaluator>,
    /// Set once policies are loaded.
    pub ready: Arc<AtomicBool>,
}

/// The router: `POST /validate`, `POST /mutate`, `POST /validate-policy`,
/// `GET /healthz`, `GET /readyz`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/validate-policy", post(validate_policy))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn validate(State(state): State<AppState>, body: Bytes) -> Response {
    match state.evaluator.review(&body).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "rejecting malformed AdmissionReview");
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}

async fn mutate(State(state): State<AppState>, body: Bytes) -> Response {
    match state.evaluator.mutate(&body).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "rejecting malformed AdmissionReview");
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}

async fn validate_policy(body: Bytes) -> Response {
    match crate::service::validate_policy(&body) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "policies not loaded yet").into_response()
    }
}

/// A running server.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Stops it.
    pub handle: Handle<SocketAddr>,
    /// Completes when it has stopped.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish for up to `grace`.
    pub async fn shutdown(self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        let _ = self.task.await;
    }
}

/// Starts serving HTTPS on `listen` (port 0 picks a free port).
pub async fn start(
    listen: SocketAddr,
    tls: RustlsConfig,
    state: AppState,
) -> std::io::Result<RunningServer> {
    let handle: Handle<SocketAddr> = Handle::new();
    let app = router(state);
    let server = axum_server::bind_rustls(listen, tls).handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let addr = handle
        .listening()
        .await
        .ok_or_else(|| std::io::Error::other(format!("cannot listen on {listen}")))?;
    Ok(RunningServer { addr, handle, task })
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
