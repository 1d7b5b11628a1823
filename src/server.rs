//! The HTTPS server: routes, request bodies (a size limit, a read deadline
//! and a budget of bytes held at once), client certificates, readiness,
//! termination (not ready at SIGTERM, still answering through the
//! shutdown delay, then a drain). It must not know what a policy is; the fair shares of
//! the reviews in flight are the pipeline's (`gate`), since they need the
//! namespace a review is for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;

use crate::service::Evaluator;

/// Largest AdmissionReview accepted.
pub use crate::limits::BODY_LIMIT;
/// A request body must have arrived whole within this long (the
/// apiserver's webhook timeout is at most 30 s and usually 10 s).
pub use crate::limits::BODY_READ_TIMEOUT;
/// Default of `--max-body-memory`.
pub use crate::limits::DEFAULT_BODY_MEMORY;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The pipeline.
    pub evaluator: Arc<Evaluator>,
    /// Set once policies are loaded.
    pub ready: Arc<AtomicBool>,
    /// One permit per byte of request body held (being read or decoded).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Its size, for the refusal message.
    pub body_budget_bytes: u64,
    /// `--client-ca`: reviews are answered only on connections whose client
    /// certificate verified against it (probes need none).
    pub require_client_cert: bool,
    /// Whether the serving certificate is one clients trust yet (false
    /// while `--tls-secret` has not delivered one).
    pub certificate_loaded: Arc<AtomicBool>,
    /// Set on SIGTERM: `/readyz` says not ready (so the endpoint is taken
    /// out of the Service) while reviews are still answered.
    pub terminating: Arc<AtomicBool>,
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
    /// State serving `evaluator`, ready when `ready` is set.
    pub fn new(evaluator: Arc<Evaluator>, ready: Arc<AtomicBool>) -> Self {
        AppState {
            evaluator,
            ready,
            body_budget: Arc::new(tokio::sync::Semaphore::new(DEFAULT_BODY_MEMORY as usize)),
            body_budget_bytes: DEFAULT_BODY_MEMORY,
            require_client_cert: false,
            certificate_loaded: Arc::new(AtomicBool::new(true)),
            terminating: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Not ready once `terminating` is set; reviews are still answered.
    pub fn with_termination_flag(mut self, terminating: Arc<AtomicBool>) -> Self {
        self.terminating = terminating;
        self
    }

    /// At most `bytes` of request bodies held at once (at least one
    /// whole review's worth).
    pub fn with_body_memory(mut self, bytes: u64) -> Self {
        let bytes = bytes.clamp(BODY_LIMIT as u64, (usize::MAX >> 4) as u64);
        self.body_budget = Arc::new(tokio::sync::Semaphore::new(bytes as usize));
        self.body_budget_bytes = bytes;
        self
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

/// Answers reviews only for clients with a verified certificate (with
/// `--client-ca`): the refusal, if this request gets one. Called first by
/// [`read_body`], which every review handler starts with (a function, not
/// a middleware layer: a layer boxes one more future per request).
fn refuse_without_client_certificate(
    state: &AppState,
    request: &axum::extract::Request,
) -> Option<Response> {
    if state.require_client_cert
        && !request
            .extensions()
            .get::<ClientCertificate>()
            .is_some_and(|c| c.0)
    {
        tracing::warn!("refusing a review from a client without a certificate from --client-ca");
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                "a client certificate issued by sigil's --client-ca is required",
            )
                .into_response(),
        );
    }
    None
}

/// A request body held, with its share of the body budget.
pub struct HeldBody {
    bytes: Vec<u8>,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for HeldBody {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads a review's body, once its client is let in: at most [`BODY_LIMIT`] bytes, whole within
/// [`BODY_READ_TIMEOUT`], each chunk charged to the body budget as it
/// arrives (a slow sender holds only what it sent). The buffer is sized
/// from `Content-Length` once, so a body is never copied while it grows.
async fn read_body(
    state: &AppState,
    request: axum::extract::Request,
) -> Result<HeldBody, Response> {
    use futures::StreamExt as _;
    if let Some(refused) = refuse_without_client_certificate(state, &request) {
        return Err(refused);
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an AdmissionReview may be at most {BODY_LIMIT} bytes"),
        )
            .into_response()
    };
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(declared.map_or(16 << 10, |n| n as usize));
    let mut budget: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut chunks = request.into_body().into_data_stream();
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                )
                    .into_response())
            }
            Err(_) => {
                return Err((
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body did not arrive within {}",
                        crate::duration::human(BODY_READ_TIMEOUT)
                    ),
                )
                    .into_response())
            }
        };
        if bytes.len() + chunk.len() > BODY_LIMIT {
            return Err(too_large());
        }
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        let Ok(more) = state.body_budget.clone().try_acquire_many_owned(n) else {
            tracing::warn!(
                budget = state.body_budget_bytes,
                "refusing a review: request bodies over their memory budget"
            );
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "sigil is holding its limit of {} bytes of request bodies (--max-body-memory); refused rather than queued, retry",
                    state.body_budget_bytes
                ),
            )
                .into_response());
        };
        match &mut budget {
            Some(held) => held.merge(more),
            None => budget = Some(more),
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(HeldBody {
        bytes,
        _budget: budget,
    })
}

/// The HTTP answer to a review the pipeline answered, or did not.
fn answered(result: Result<crate::service::Answered, crate::service::Unanswered>) -> Response {
    use crate::service::Unanswered;
    match result {
        Ok(answer) => (
            [(header::CONTENT_TYPE, "application/json")],
            axum::body::Body::new(HeldAnswer::from(answer)),
        )
            .into_response(),
        Err(Unanswered::Invalid(e)) => {
            tracing::warn!(error = %e, "rejecting malformed AdmissionReview");
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
        Err(e @ (Unanswered::Refused(_) | Unanswered::Unrecorded(_))) => {
            tracing::warn!(reason = %e, "refusing a review");
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}

/// An answer's body, holding its review's slot in the gate until the
/// connection has taken the bytes (hyper drops the body then): a review
/// counts against its namespace's share until its answer is written.
struct HeldAnswer {
    bytes: Option<bytes::Bytes>,
    _ticket: Option<crate::gate::Ticket>,
}

impl From<crate::service::Answered> for HeldAnswer {
    fn from(a: crate::service::Answered) -> Self {
        HeldAnswer {
            bytes: Some(a.bytes.into()),
            _ticket: a.ticket,
        }
    }
}

impl http_body::Body for HeldAnswer {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.bytes.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// The router: `POST /validate`, `POST /mutate`, `POST /validate-policy`,
/// `GET /healthz`, `GET /readyz`.
pub fn router(state: AppState) -> Router {
    // The review routes check the client certificate in `read_body`.
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/validate-policy", post(validate_policy))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn validate(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let version = request.version();
    let response = match read_body(&state, request).await {
        Ok(body) => answered(state.evaluator.review_held(body).await),
        Err(refused) => refused,
    };
    closing_when_terminating(&state, version, response)
}

async fn mutate(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let version = request.version();
    let response = match read_body(&state, request).await {
        Ok(body) => answered(state.evaluator.mutate_held(body).await),
        Err(refused) => refused,
    };
    closing_when_terminating(&state, version, response)
}

async fn validate_policy(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    let version = request.version();
    let body = match read_body(&state, request).await {
        Ok(body) => body,
        Err(refused) => return closing_when_terminating(&state, version, refused),
    };
    let response = match crate::service::validate_policy(body.as_ref()) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    closing_when_terminating(&state, version, response)
}

/// Once terminating, an HTTP/1.1 answer closes its connection
/// (`Connection: close`). A client such as the apiserver reuses kept-alive
/// connections whatever the Service's endpoints now say; closed after an
/// answer, a connection is never closed under a request the client is
/// sending, and the next one is dialled to a replica that stays. (HTTP/2
/// connections get a GOAWAY when the delay ends, which clients retry
/// under.)
fn closing_when_terminating(
    state: &AppState,
    version: axum::http::Version,
    mut response: Response,
) -> Response {
    if version < axum::http::Version::HTTP_2 && state.terminating.load(Ordering::Acquire) {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.terminating.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: still answering reviews until endpoints are updated",
        )
            .into_response();
    }
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

/// How `sigil serve` ends on SIGTERM (a rollout, a drain): not ready at
/// once, still accepting and answering for `delay` (the time the endpoint
/// takes to leave every apiserver's view of the Service), then no new
/// connections and `drain` for the reviews in flight. A second SIGTERM or
/// Ctrl-C cuts the delay short.
#[derive(Debug, Clone, Copy)]
pub struct Termination {
    /// Answering while not ready.
    pub delay: Duration,
    /// For in-flight reviews once no more are accepted.
    pub drain: Duration,
}

impl RunningServer {
    /// Waits for SIGTERM (or Ctrl-C), then stops as `termination` says;
    /// `terminating` is set at the signal.
    pub async fn run_until_terminated(self, termination: Termination, terminating: &AtomicBool) {
        shutdown_signal().await;
        terminating.store(true, Ordering::Release);
        tracing::info!(
            delay_seconds = termination.delay.as_secs_f64(),
            "terminating: not ready, still answering while endpoints are updated"
        );
        tokio::select! {
            _ = tokio::time::sleep(termination.delay) => {}
            _ = shutdown_signal() => {
                tracing::info!("second signal: not waiting out the delay");
            }
        }
        tracing::info!(
            drain_seconds = termination.drain.as_secs_f64(),
            "no longer accepting; finishing the reviews in flight"
        );
        self.shutdown(termination.drain).await;
    }
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
