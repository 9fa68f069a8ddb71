//! The two HTTP servers: admission (`/mutate`, `/validate`) over TLS, and the probes and
//! metrics (`/healthz`, `/readyz`, `/metrics`) in plain HTTP on a port of their own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kube::core::admission::AdmissionResponse;
use rustls::ServerConfig;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, info, warn};

use crate::handlers;
use crate::metrics::Metrics;
use crate::review::{self, BadReview};
use crate::tls::ServingCert;

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the request headers may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections are given to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The two admission endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /mutate`: writes the defaults in.
    Mutate,
    /// `POST /validate`: refuses invalid resources.
    Validate,
}

impl Endpoint {
    /// The endpoint's name in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// What the admission endpoints share.
#[derive(Debug)]
pub struct AdmissionState {
    /// Where answers are counted.
    pub metrics: Arc<Metrics>,
    /// Largest body read, in bytes.
    pub max_body_bytes: usize,
}

/// An HTTP answer to a review body: the status, the body, and the outcome for metrics.
#[derive(Debug)]
pub struct Answer {
    /// 200 with a review, or 400 with the reason the body is refused.
    pub status: StatusCode,
    /// The response body.
    pub body: Vec<u8>,
    /// `allowed`, `patched`, `denied` or `bad_request`.
    pub outcome: &'static str,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let content_type = if self.status == StatusCode::OK {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        (
            self.status,
            [(header::CONTENT_TYPE, content_type)],
            self.body,
        )
            .into_response()
    }
}

fn bad_request(reason: &BadReview) -> Answer {
    Answer {
        status: StatusCode::BAD_REQUEST,
        body: format!("{reason}\n").into_bytes(),
        outcome: "bad_request",
    }
}

/// Answers a review body read whole: never panics, whatever the bytes.
pub fn answer(endpoint: Endpoint, body: &[u8]) -> Answer {
    let request = match review::parse(body) {
        Ok(request) => request,
        Err(reason) => {
            debug!(endpoint = endpoint.label(), %reason, "bad admission request");
            return bad_request(&reason);
        }
    };
    let decision = match endpoint {
        Endpoint::Mutate => handlers::mutate(&request),
        Endpoint::Validate => handlers::validate(&request),
    };
    let outcome = decision.outcome.label();
    debug!(
        endpoint = endpoint.label(),
        uid = %request.uid,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name = %request.name,
        outcome,
        "admission review answered"
    );
    match review_body(decision.response) {
        Ok(body) => Answer {
            status: StatusCode::OK,
            body,
            outcome,
        },
        Err(e) => Answer {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: format!("serialising the admission response: {e}\n").into_bytes(),
            outcome: "error",
        },
    }
}

/// The review sent back. kube's type writes the patch as an array of numbers; the API
/// documents it as base64 (a Go `[]byte`), so it is written that way.
fn review_body(mut response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    let patch = response.patch.take();
    let mut review = serde_json::to_value(response.into_review())?;
    if let (Some(patch), Some(fields)) = (patch, review["response"].as_object_mut()) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(patch);
        fields.insert("patch".into(), Value::String(encoded));
    }
    serde_json::to_vec(&review)
}

async fn read_and_answer(state: &AdmissionState, endpoint: Endpoint, body: Body) -> Answer {
    let started = Instant::now();
    let answer = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(bytes) => answer(endpoint, &bytes),
        Err(e) => bad_request(&BadReview::Unreadable {
            limit: state.max_body_bytes,
            reason: e.to_string(),
        }),
    };
    state
        .metrics
        .observe(endpoint.label(), answer.outcome, started.elapsed());
    answer
}

async fn mutate(State(state): State<Arc<AdmissionState>>, body: Body) -> Answer {
    read_and_answer(&state, Endpoint::Mutate, body).await
}

async fn validate(State(state): State<Arc<AdmissionState>>, body: Body) -> Answer {
    read_and_answer(&state, Endpoint::Validate, body).await
}

/// `POST /mutate` and `POST /validate`, each bounded by `request_timeout` (body included).
pub fn admission_router(state: Arc<AdmissionState>, request_timeout: Duration) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

/// What the probe endpoints look at.
#[derive(Clone, Debug)]
pub struct ProbeState {
    /// The metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Ready once it holds a certificate.
    pub serving: Arc<ServingCert>,
}

/// `GET /healthz`, `GET /readyz` and `GET /metrics`.
pub fn probe_router(state: ProbeState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<ProbeState>) -> (StatusCode, &'static str) {
    if state.serving.is_loaded() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no serving certificate loaded yet\n",
        )
    }
}

async fn metrics(State(state): State<ProbeState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then gives open
/// connections a grace period to finish.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return debug!(%peer, "TLS handshake timed out"),
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection).await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    info!("admission server stopping");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("connections still open at shutdown"),
    }
}

/// Serves `router` in plain HTTP on `listener` until `shutdown` completes.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
