//! Operations: the gateway's own listener for `/healthz`, `/readyz` and `/metrics` (plain
//! HTTP on a local address, never on 10250, so the gateway's own endpoints are never exposed
//! where the kubelet's are, the CVE-2019-11248 mistake), the metrics the request path
//! counts, and the audit log.

pub mod audit;
pub mod health;
pub mod log_format;
pub mod metrics;
pub mod observer;
pub mod redact;
pub mod throttle;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// An ops client must send its request headers within this time: the listener is loopback
/// and plain HTTP, but a stuck scraper must not hold a connection for ever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub use health::Readiness;

/// What the ops listener serves from.
pub struct Ops {
    pub registry: Registry,
    pub readiness: Readiness,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Ops {
    pub async fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into());
        }
        match request.uri().path() {
            "/healthz" | "/livez" => match self.readiness.liveness() {
                Ok(()) => text(StatusCode::OK, "ok\n".into()),
                Err(why) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("[-]serving-certificate failed: {why}\nhealthz check failed\n"),
                ),
            },
            "/readyz" => {
                let report = self.readiness.check().await;
                let status = if report.ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                text(status, report.to_string())
            }
            "/metrics" => {
                let mut body = String::new();
                if prometheus_client::encoding::text::encode(&mut body, &self.registry).is_err() {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n".into());
                }
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
                r
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Serves the ops endpoints over HTTP/1.1 until `shutdown` resolves.
pub async fn serve(listener: TcpListener, ops: Arc<Ops>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "ops listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ops = ops.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let ops = ops.clone();
                async move { Ok::<_, Infallible>(ops.answer(&request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
