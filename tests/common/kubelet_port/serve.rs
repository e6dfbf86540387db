//! The stand-in's server: TLS that requests a client certificate and verifies it against the
//! kubelet's client CA (a chain from elsewhere fails the handshake; none at all gets the
//! kubelet's `401 Unauthorized`), HTTP/1.1 with upgrades, the kubelet's routes, and the stream
//! tasks behind each `101`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws_lc_rs::digest;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Behaviour, Seen, State, StreamMode, StreamSeen, lock, pattern};
use crate::common::pki::Leaf;
use crate::common::serving::Running;

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(super) fn spawn(listener: TcpListener, serving: Leaf, state: Arc<State>) -> Running {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(state.client_ca.clone()).expect("client CA");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .expect("verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(serving.chain.clone(), serving.key.clone_key())
        .expect("serving pair");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    Running::spawn(listener, move |tcp, _stop| {
        let (acceptor, state) = (acceptor.clone(), state.clone());
        async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(_) => {
                    state.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            state.handshakes.fetch_add(1, Ordering::Relaxed);
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            let identity = leaf.as_ref().map(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der).expect("verified certificate parses");
                let cn = cert
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let sha: String = digest::digest(&digest::SHA256, der)
                    .as_ref()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (cn, sha)
            });
            let svc = service_fn(move |req| {
                let (state, identity) = (state.clone(), identity.clone());
                async move { Ok::<_, Infallible>(handle(req, state, identity)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        }
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("upgrade")))
}

fn handle(mut req: Request<Incoming>, state: Arc<State>, identity: Option<(String, String)>) -> Response<Full<Bytes>> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let path = req.uri().path().to_owned();
    lock(&state.seen).push(Seen {
        method: req.method().to_string(),
        target: target.clone(),
        version: req.version(),
        headers: req.headers().clone(),
        client_cn: identity.as_ref().map(|(cn, _)| cn.clone()),
        client_sha256: identity.as_ref().map(|(_, sha)| sha.clone()),
    });
    // The kubelet's x509 authenticator: no (verified) certificate, no identity, 401.
    if identity.is_none() {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let behaviour = *lock(&state.behaviour);
    let streaming = ["/exec/", "/attach/", "/portForward/"]
        .iter()
        .any(|p| path.starts_with(p));
    if behaviour == Behaviour::SwitchEverything || (streaming && is_upgrade(&req)) {
        if let Behaviour::RefuseUpgrade(code) = behaviour {
            let mut r = text(
                StatusCode::from_u16(code).expect("status"),
                "upgrade refused by the stand-in",
            );
            *r.status_mut() = StatusCode::from_u16(code).expect("status");
            return r;
        }
        return switch(&mut req, &state, path);
    }
    match path.as_str() {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/pods" | "/pods/" => text(
            StatusCode::OK,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#,
        ),
        "/metrics" | "/metrics/cadvisor" => text(StatusCode::OK, "# from the kubelet's own port\n"),
        "/configz" => text(StatusCode::OK, r#"{"kubeletconfig":{"enableServer":true}}"#),
        "/runningpods/" => text(
            StatusCode::OK,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#,
        ),
        p if p.starts_with("/checkpoint/") => text(
            StatusCode::OK,
            r#"{"items":["/var/lib/kubelet/checkpoints/checkpoint-web.tar"]}"#,
        ),
        p if p.starts_with("/debug/pprof/") => text(StatusCode::OK, "pprof\n"),
        p if p.starts_with("/run/") => text(StatusCode::OK, "ran\n"),
        // A plain (not upgraded) streaming request: remotecommand's NewOptions refuses one that
        // selects no stream (400); one that does reaches the kubelet's UpgradeAwareHandler with
        // upgradeRequired, whose responder answers with Go's http.Error and status 500
        // (pkg/kubelet/server/server.go `responder.Error`; apimachinery
        // pkg/util/proxy/upgradeaware.go: `errors.NewBadRequest("Upgrade request required")`).
        _ if streaming => {
            let q = req.uri().query().unwrap_or("");
            if ["input=1", "output=1", "error=1"].iter().any(|s| q.contains(s)) || path.starts_with("/portForward/") {
                let mut r = text(StatusCode::INTERNAL_SERVER_ERROR, "Upgrade request required\n");
                r.headers_mut()
                    .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
                r
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    "you must specify at least 1 of stdin, stdout, stderr",
                )
            }
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// The `101`, then the stream on the upgraded connection.
fn switch(req: &mut Request<Incoming>, state: &Arc<State>, path: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if websocket {
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) {
            let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(key.as_bytes());
            ctx.update(WEBSOCKET_GUID.as_bytes());
            let accept = base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref());
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64"),
            );
        }
        // The first protocol offered (the kubelet picks its newest it knows among them).
        let first = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| !p.is_empty())
            .map(str::to_owned);
        if let Some(p) = first {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(&p).expect("protocol"),
            );
        }
    } else {
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        if let Some(v) = req.headers().get("x-stream-protocol-version") {
            let first = v
                .to_str()
                .unwrap_or("")
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            h.insert(
                "x-stream-protocol-version",
                HeaderValue::from_str(&first).expect("version"),
            );
        }
    }
    let upgrade = hyper::upgrade::on(req);
    let mode = *lock(&state.mode);
    let index = {
        let mut streams = lock(&state.streams);
        streams.push(StreamSeen {
            path,
            ..StreamSeen::default()
        });
        streams.len() - 1
    };
    let state = state.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        if websocket && mode == StreamMode::Echo {
            return websocket_echo(TokioIo::new(upgraded), &state, index).await;
        }
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let record = |f: &dyn Fn(&mut StreamSeen)| f(&mut lock(&state.streams)[index]);
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        match mode {
            StreamMode::Echo => loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        record(&|s| s.client_closed = true);
                        break;
                    }
                    Ok(n) => {
                        hash.update(&buf[..n]);
                        record(&|s| s.received += n as u64);
                        if wr.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        record(&|s| s.sent += n as u64);
                    }
                }
            },
            StreamMode::Send { bytes, seed } => {
                let writer = async {
                    let (mut left, mut x, mut chunk) = (bytes, 0u64, vec![0u8; 64 * 1024]);
                    while left > 0 {
                        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        pattern(seed, &mut chunk[..n], &mut x);
                        if wr.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = wr.shutdown().await;
                };
                let reader = async {
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                hash.update(&buf[..n]);
                                record(&|s| s.received += n as u64);
                            }
                        }
                    }
                    record(&|s| s.client_closed = true);
                };
                tokio::join!(writer, reader);
                record(&|s| s.sent = bytes);
            }
        }
        let sha: String = hash.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
        record(&|s| {
            s.received_sha256 = sha.clone();
            s.ended = true;
        });
    });
    r
}

/// A WebSocket echo: every message back as it came (the kubelet's channel protocol frames its
/// streams in binary messages), counting and hashing the payloads.
async fn websocket_echo(io: TokioIo<hyper::upgrade::Upgraded>, state: &Arc<State>, index: usize) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let mut hash = digest::Context::new(&digest::SHA256);
    while let Some(Ok(message)) = ws.next().await {
        let payload = match &message {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        hash.update(&payload);
        lock(&state.streams)[index].received += payload.len() as u64;
        if ws.send(message).await.is_err() {
            break;
        }
        lock(&state.streams)[index].sent += payload.len() as u64;
    }
    let sha: String = hash.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let mut streams = lock(&state.streams);
    streams[index].received_sha256 = sha;
    streams[index].client_closed = true;
    streams[index].ended = true;
}
