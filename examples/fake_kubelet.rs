//! A stand-in for the kubelet's read-only port (10255) so the quick start has something to
//! forward to on a machine without a kubelet: `cargo run --example fake_kubelet`.
//! It answers the read-only endpoints with small fixed bodies and everything else as the
//! read-only port does.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn answer(path: &str) -> (StatusCode, &'static str, &'static str) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" | "/healthz/ping" | "/healthz/log" | "/healthz/syncloop" => (StatusCode::OK, TEXT, "ok"),
        "/pods" | "/pods/" => (
            StatusCode::OK,
            "application/json",
            "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{},\"items\":[]}",
        ),
        "/stats/summary" => (
            StatusCode::OK,
            "application/json",
            "{\"node\":{\"nodeName\":\"quickstart-node\"},\"pods\":[]}",
        ),
        p if p == "/metrics" || p.starts_with("/metrics/") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            "# HELP up fake kubelet\n# TYPE up gauge\nup 1\n",
        ),
        p if [
            "/run/",
            "/exec/",
            "/attach/",
            "/portForward/",
            "/containerLogs/",
            "/runningpods/",
            "/debug/pprof/",
            "/logs/",
        ]
        .iter()
        .any(|r| p.starts_with(r)) =>
        {
            (StatusCode::METHOD_NOT_ALLOWED, TEXT, "Debug endpoints are disabled.\n")
        }
        _ => (StatusCode::NOT_FOUND, TEXT, "404 page not found\n"),
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = answer(request.uri().path());
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:10255").await?;
    eprintln!("fake kubelet read-only port on http://127.0.0.1:10255");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle));
            let _ = conn.await;
        });
    }
}
