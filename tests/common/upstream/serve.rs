//! One connection (HTTP/1.1 with upgrades): each request recorded as a [`Seen`], then answered as
//! the current [`Behaviour`] says: the kubelet's routing, a hang, a fixed status, garbage, a big
//! body, slow headers, a 101 upgrade that echoes, or a close without an answer (every time, or
//! on a reused connection only).

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::routing::kubelet_response;
use super::streams::{BigBody, SharedTcp};
use super::{Behaviour, GARBAGE, Seen, State, TEXT_CONTENT_TYPE, lock};
use crate::common::serving::wait_stop;

pub(super) async fn serve_conn(tcp: TcpStream, peer: SocketAddr, state: Arc<State>, stop_rx: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let tcp = Arc::new(tcp);
    let io = TokioIo::new(SharedTcp(tcp.clone()));
    let requests = Arc::new(AtomicUsize::new(0));
    let svc = service_fn(move |req| {
        let nth = requests.fetch_add(1, Ordering::Relaxed);
        handle(req, peer, state.clone(), tcp.clone(), stop_rx.clone(), nth)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades()
        .await;
}

/// Ends the connection without an HTTP answer (after `Garbage` wrote its bytes).
#[derive(Debug)]
struct CloseConnection;

impl fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream stand-in closes the connection")
    }
}

impl std::error::Error for CloseConnection {}

pub(super) type RespBody = BoxBody<Bytes, Infallible>;

async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<State>,
    tcp: Arc<TcpStream>,
    mut stop_rx: watch::Receiver<bool>,
    // 0 for the connection's first request.
    nth: usize,
) -> Result<Response<RespBody>, CloseConnection> {
    let behaviour = match lock(&state.behaviour).clone() {
        Behaviour::CloseReused if nth == 0 => Behaviour::Kubelet,
        Behaviour::CloseReused => Behaviour::Close,
        b => b,
    };
    let upgrade = if behaviour == Behaviour::Upgrade101 {
        Some(hyper::upgrade::on(&mut req))
    } else {
        None
    };
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let seen = Seen {
        method: parts.method.as_str().to_string(),
        target: parts.uri.to_string(),
        version: parts.version,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        peer,
    };
    lock(&state.seen).push(seen);

    match behaviour {
        Behaviour::Kubelet => Ok(kubelet_response(&parts.method, &parts.uri)),
        Behaviour::SlowHeaders(d) => {
            tokio::time::sleep(d).await;
            Ok(kubelet_response(&parts.method, &parts.uri))
        }
        Behaviour::Hang => {
            wait_stop(&mut stop_rx).await;
            Err(CloseConnection)
        }
        Behaviour::Status(code, text) => {
            let status = StatusCode::from_u16(code).expect("valid status code");
            Ok(respond(status, text, Some(TEXT_CONTENT_TYPE), false))
        }
        // `Err` ends the connection; hyper writes nothing for it.
        Behaviour::Close | Behaviour::CloseReused => Err(CloseConnection),
        Behaviour::Garbage => {
            let mut rest = GARBAGE;
            while !rest.is_empty() {
                if tcp.writable().await.is_err() {
                    break;
                }
                match tcp.try_write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            drop(tcp);
            Err(CloseConnection)
        }
        Behaviour::BigBody { bytes } => Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(BigBody { remaining: bytes }.boxed())
            .expect("response")),
        Behaviour::Upgrade101 => {
            if let Some(on) = upgrade {
                tokio::spawn(async move {
                    tokio::select! {
                        _ = wait_stop(&mut stop_rx) => {}
                        _ = echo_upgraded(on) => {}
                    }
                });
            }
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "websocket")
                .body(Full::new(Bytes::new()).boxed())
                .expect("response"))
        }
    }
}

async fn echo_upgraded(on: hyper::upgrade::OnUpgrade) {
    if let Ok(up) = on.await {
        let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
        let _ = tokio::io::copy(&mut r, &mut w).await;
    }
}

pub(super) fn respond(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: Option<&str>,
    nosniff: bool,
) -> Response<RespBody> {
    let mut b = Response::builder().status(status);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    if nosniff {
        b = b.header("x-content-type-options", "nosniff");
    }
    b.body(Full::new(body.into()).boxed()).expect("response")
}
