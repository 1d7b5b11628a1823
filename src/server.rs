//! The HTTPS server: routes, body limit, the in-flight review limit,
//! readiness, graceful shutdown. It must not know what a policy is.

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
/// Default of `--max-inflight-reviews`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The pipeline.
    pub evaluator: Arc<Evaluator>,
    /// Set once policies are loaded.
    pub ready: Arc<AtomicBool>,
    /// One permit per review being answered.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The number of permits, for the refusal message.
    pub max_in_flight: usize,
    /// `--client-ca`: reviews are answered only on connections whose client
    /// certificate verified against it (probes need none).
    pub require_client_cert: bool,
    /// Whether the serving certificate is one clients trust yet (false
    /// while `--tls-secret` has not delivered one).
    pub certificate_loaded: Arc<AtomicBool>,
}

/// Set on every request: whether its connection presented a client
/// certificate that rustls verified against `--client-ca`.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate(pub bool);

/// Wraps the TLS acceptor to tell handlers whether the connection carried
/// a verified client certificate. rustls verifies any certificate offered
/// (a bad one fails the handshake) and lets clients without one through,
/// so that the kubelet's HTTPS probes still reach `/healthz` and `/readyz`.
#[derive(Clone)]
pub struct ClientCertAcceptor {
    inner: axum_server::tls_rustls::RustlsAcceptor,
}

impl<I, S> axum_server::accept::Accept<I, S> for ClientCertAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, ClientCertificate>;
    type Future =
        futures::future::BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let verified = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let service =
                tower::Layer::layer(&axum::Extension(ClientCertificate(verified)), service);
            Ok((stream, service))
        })
    }
}

impl AppState {
    /// State answering at most `max_in_flight` reviews at once.
    pub fn new(evaluator: Arc<Evaluator>, ready: Arc<AtomicBool>, max_in_flight: usize) -> Self {
        let max_in_flight = max_in_flight.max(1);
        AppState {
            evaluator,
            ready,
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            max_in_flight,
            require_client_cert: false,
            certificate_loaded: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Not ready until `loaded` is set.
    pub fn with_certificate_gate(mut self, loaded: Arc<AtomicBool>) -> Self {
        self.certificate_loaded = loaded;
        self
    }

    /// Answers reviews only for clients with a verified certificate.
    pub fn requiring_client_certificates(mut self, on: bool) -> Self {
        self.require_client_cert = on;
        self
    }
}

/// Refuses a request at once when `max_in_flight` reviews are being
/// answered: HTTP 503 with the reason, which the apiserver reports (and
/// treats by the webhook's failurePolicy, `Fail` by default). Queueing would
/// hold memory without bound and answer after the apiserver gave up.
async fn limit_in_flight(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.require_client_cert
        && !request
            .extensions()
            .get::<ClientCertificate>()
            .is_some_and(|c| c.0)
    {
        tracing::warn!("refusing a review from a client without a certificate from --client-ca");
        return (
            StatusCode::UNAUTHORIZED,
            "a client certificate issued by sigil's --client-ca is required",
        )
            .into_response();
    }
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = state.max_in_flight,
            "refusing a review: too many in flight"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "sigil is answering its limit of {} reviews at once (--max-inflight-reviews); refused rather than queued, retry",
                state.max_in_flight
            ),
        )
            .into_response();
    };
    next.run(request).await
}

/// The router: `POST /validate`, `POST /mutate`, `POST /validate-policy`,
/// `GET /healthz`, `GET /readyz`.
pub fn router(state: AppState) -> Router {
    let reviews = Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/validate-policy", post(validate_policy))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_in_flight,
        ));
    Router::new()
        .merge(reviews)
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
    if !state.certificate_loaded.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "serving certificate not loaded from its Secret yet",
        )
            .into_response();
    }
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
    let acceptor = ClientCertAcceptor {
        inner: axum_server::tls_rustls::RustlsAcceptor::new(tls),
    };
    let server = axum_server::bind(listen)
        .acceptor(acceptor)
        .handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let addr = handle
        .listening()
        .await
        .ok_or_else(|| std::io::Error::other(format!("cannot listen on {listen}")))?;
    Ok(RunningServer { addr, handle, task })
}

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics router: `GET /metrics` (sampled gauges refreshed first).
pub fn metrics_router(evaluator: Arc<Evaluator>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let evaluator = evaluator.clone();
            async move {
                evaluator.sample_metrics().await;
                (
                    [(header::CONTENT_TYPE, OPENMETRICS)],
                    crate::metrics::global().encode(),
                )
            }
        }),
    )
}

/// Starts the plain-HTTP metrics listener on `listen` (port 0 picks a free
/// port); returns where it listens. It runs until the process ends: it
/// holds no state worth draining.
pub async fn start_metrics(
    listen: SocketAddr,
    evaluator: Arc<Evaluator>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = metrics_router(evaluator);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(addr)
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
