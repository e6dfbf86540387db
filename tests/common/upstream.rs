#![allow(dead_code)]
//! A stand-in for the kubelet's plain-HTTP read-only port (10255): hyper 1, HTTP/1.1 only, on
//! 127.0.0.1:0, answering like the real port (spec sections 3.1, 3.2, 8: Go ServeMux redirects
//! and 404s, go-restful 404/405, debug stubs) and recording every request it receives.

use super::serving::{Running, wait_stop};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The Go ServeMux redirect status (301 up to Go 1.25; Go 1.26 uses 307).
pub const REDIRECT_STATUS: u16 = 301;
/// What `Behaviour::Garbage` writes before closing.
pub const GARBAGE: &[u8] = b"NOT HTTP AT ALL\r\n\r\n";
/// Body of `/pods`.
pub const PODS_JSON: &str = r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#;
/// Body of `/stats/summary`.
pub const SUMMARY_JSON: &str = r#"{"node":{"nodeName":"node-a"},"pods":[]}"#;
/// Body of the `/metrics*` endpoints.
pub const METRICS_TEXT: &str = "# HELP up stand-in\n# TYPE up gauge\nup 1\n";
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
pub const DEBUG_DISABLED_BODY: &str = "Debug endpoints are disabled.\n";
pub const NOT_FOUND_BODY: &str = "404 page not found\n";
pub const STATUSZ_TEXT: &str = "\nkubelet statusz\nWarning: This endpoint is not meant to be machine parseable, has no formatting compatibility guarantees and is for debugging purposes only.\n\nStarted: stand-in\nUp: stand-in\nGo version: stand-in\nBinary version: stand-in\n";

/// One request as the stand-in received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The request-target as received (path + query for origin-form).
    pub target: String,
    pub version: Version,
    /// Names lower-case, duplicates kept. Order: names in order of first appearance, the
    /// values of a repeated name together in received order (hyper's HeaderMap grouping).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Seen {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The target up to the `?`.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// The raw query (after the first `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

/// How the stand-in answers the requests that follow `set_behaviour`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// The read-only port's routing (the default).
    Kubelet,
    /// Read the request (body included), never answer (until stopped).
    Hang,
    /// Always this status and body (`text/plain; charset=utf-8`).
    Status(u16, &'static str),
    /// Write [`GARBAGE`] then close the connection.
    Garbage,
    /// 200 with a streamed body of this many `x` bytes (64 KiB chunks, Content-Length set).
    BigBody { bytes: u64 },
    /// Sleep this long, then answer as `Kubelet`.
    SlowHeaders(Duration),
    /// 101 Switching Protocols, `Upgrade: websocket`; the upgraded connection then echoes
    /// whatever it receives until EOF.
    Upgrade101,
}

struct State {
    seen: Mutex<Vec<Seen>>,
    behaviour: Mutex<Behaviour>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Dropping the last `Upstream` clone drops this, which closes `stop_tx` and stops the server.
struct Handle {
    addr: SocketAddr,
    running: Running,
}

/// The stand-in server. Clones share it; it serves until all clones are dropped or `stop()`.
#[derive(Clone)]
pub struct Upstream {
    state: Arc<State>,
    handle: Arc<Handle>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream").field("addr", &self.handle.addr).finish()
    }
}

impl Upstream {
    /// Binds 127.0.0.1:0 and serves in the background.
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream stand-in on 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream local addr");
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Kubelet),
        });
        let served = state.clone();
        let running = Running::spawn(listener, move |tcp, stop_rx| {
            let peer = tcp.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            serve_conn(tcp, peer, served.clone(), stop_rx)
        });
        Upstream {
            state,
            handle: Arc::new(Handle { addr, running }),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }

    /// A snapshot of every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    pub fn count(&self) -> usize {
        lock(&self.state.seen).len()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<Seen> {
        lock(&self.state.seen).last().cloned()
    }

    pub fn clear(&self) {
        lock(&self.state.seen).clear();
    }

    /// Applies to requests arriving after this call (also on already open connections).
    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.state.behaviour) = b;
    }

    /// Closes the listener and every live connection; the port then refuses connections.
    pub async fn stop(&self) {
        self.handle.running.stop().await;
    }
}

async fn serve_conn(tcp: TcpStream, peer: SocketAddr, state: Arc<State>, stop_rx: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let tcp = Arc::new(tcp);
    let io = TokioIo::new(SharedTcp(tcp.clone()));
    let svc = service_fn(move |req| handle(req, peer, state.clone(), tcp.clone(), stop_rx.clone()));
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

type RespBody = BoxBody<Bytes, Infallible>;

async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<State>,
    tcp: Arc<TcpStream>,
    mut stop_rx: watch::Receiver<bool>,
) -> Result<Response<RespBody>, CloseConnection> {
    let behaviour = lock(&state.behaviour).clone();
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

fn respond(
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

// ---------------------------------------------------------------------------------------
// The read-only port's routing: Go 1.22+ ServeMux in front of go-restful (spec 3.1, 3.2).

const HEALTHZ: &[&str] = &["/healthz", "/healthz/ping", "/healthz/log", "/healthz/syncloop"];
const METRICS: &[&str] = &[
    "/metrics",
    "/metrics/cadvisor",
    "/metrics/resource",
    "/metrics/probes",
    "/metrics/slis",
];
/// Exact (non-subtree) ServeMux patterns.
const EXACT: &[&str] = &[
    "/healthz",
    "/healthz/ping",
    "/healthz/log",
    "/healthz/syncloop",
    "/metrics",
    "/metrics/cadvisor",
    "/metrics/resource",
    "/metrics/probes",
    "/metrics/slis",
    "/statusz",
    "/pods",
];
/// "Debug endpoints are disabled" stubs (subtree patterns).
const DISABLED: &[&str] = &[
    "/run/",
    "/exec/",
    "/attach/",
    "/portForward/",
    "/containerLogs/",
    "/runningpods/",
    "/debug/pprof/",
    "/logs/",
];
/// go-restful web service roots registered as subtrees.
const RESTFUL: &[&str] = &["/pods/", "/stats/"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(&'static str),
    Subtree(&'static str),
}

fn segments(pattern: &str) -> Vec<String> {
    pattern[1..].split('/').map(str::to_string).collect()
}

/// Go ServeMux matching on unescaped segments; exact patterns first, then the longest subtree.
fn mux_match(segs: &[String]) -> Option<Pattern> {
    for p in EXACT {
        if segments(p) == segs {
            return Some(Pattern::Exact(p));
        }
    }
    let mut best: Option<(&'static str, usize)> = None;
    for p in DISABLED.iter().chain(RESTFUL) {
        let ps = segments(p); // ends with "" (trailing slash)
        let prefix = &ps[..ps.len() - 1];
        if segs.len() > prefix.len() && segs[..prefix.len()] == *prefix && best.is_none_or(|(_, n)| prefix.len() > n) {
            best = Some((p, prefix.len()));
        }
    }
    best.map(|(p, _)| Pattern::Subtree(p))
}

fn is_subtree_root(segs: &[String]) -> bool {
    DISABLED.iter().chain(RESTFUL).any(|p| segments(p) == segs)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; None on a malformed escape (Go answers 400 then).
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex_val(*b.get(i + 1)?)?;
            let lo = hex_val(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `net/url` escaping of a path (encodePath mode).
fn escape_path(p: &str) -> String {
    let mut out = String::new();
    for &c in p.as_bytes() {
        let keep = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
            );
        if keep {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Go's `path.Clean` for a rooted path.
fn path_clean(p: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    format!("/{}", stack.join("/"))
}

/// net/http's `cleanPath`: path.Clean, keeping a trailing slash.
fn go_clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_string();
    }
    let p = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    let mut np = path_clean(&p);
    if p.ends_with('/') && np != "/" {
        np.push('/');
    }
    np
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// `http.Redirect` as Go writes it.
fn go_redirect(method: &Method, location: String) -> Response<RespBody> {
    let status = StatusCode::from_u16(REDIRECT_STATUS).expect("redirect status");
    let mut b = Response::builder()
        .status(status)
        .header(header::LOCATION, location.as_str());
    if method == Method::GET || method == Method::HEAD {
        b = b.header(header::CONTENT_TYPE, "text/html; charset=utf-8");
    }
    let body = if method == Method::GET {
        format!(
            "<a href=\"{}\">{}</a>.\n\n",
            html_escape(&location),
            status.canonical_reason().unwrap_or("")
        )
    } else {
        String::new()
    };
    b.body(Full::new(Bytes::from(body)).boxed()).expect("response")
}

fn with_query(path: String, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    }
}

/// What the read-only port answers for this request.
fn kubelet_response(method: &Method, uri: &http::Uri) -> Response<RespBody> {
    if uri.path() == "*" {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::new()).boxed())
            .expect("response");
    }
    let escaped = uri.path();
    let query = uri.query();
    let Some(decoded) = unescape(escaped) else {
        // net/http rejects an unparsable request-target before any handler.
        let mut r = respond(
            StatusCode::BAD_REQUEST,
            "400 Bad Request",
            Some(TEXT_CONTENT_TYPE),
            false,
        );
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return r;
    };
    // Go 1.22+ ServeMux: clean the escaped path, match on unescaped segments.
    let clean = go_clean_path(escaped);
    let segs: Vec<String> = clean[1..].split('/').map(|s| unescape(s).unwrap_or_default()).collect();
    let matched = mux_match(&segs);
    let exact = matches!(matched, Some(Pattern::Exact(_)))
        || matches!(matched, Some(Pattern::Subtree(p)) if segments(p) == segs);
    if !exact && !clean.ends_with('/') {
        let mut slashed = segs.clone();
        slashed.push(String::new());
        if is_subtree_root(&slashed) {
            let target = escape_path(&format!("{}/", go_clean_path(&decoded)));
            return go_redirect(method, with_query(target, query));
        }
    }
    if clean != escaped {
        return go_redirect(method, with_query(escape_path(&clean), query));
    }
    let text = |status: StatusCode, body: &'static str| respond(status, body, Some(TEXT_CONTENT_TYPE), true);
    match matched {
        None => text(StatusCode::NOT_FOUND, NOT_FOUND_BODY),
        Some(Pattern::Exact(p)) if HEALTHZ.contains(&p) => {
            let verbose = query.is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some("verbose")));
            if p == "/healthz" && verbose {
                text(
                    StatusCode::OK,
                    "[+]ping ok\n[+]log ok\n[+]syncloop ok\nhealthz check passed\n",
                )
            } else {
                text(StatusCode::OK, "ok")
            }
        }
        Some(Pattern::Exact(p)) if METRICS.contains(&p) => {
            respond(StatusCode::OK, METRICS_TEXT, Some(METRICS_CONTENT_TYPE), false)
        }
        Some(Pattern::Exact("/statusz")) => text(StatusCode::OK, STATUSZ_TEXT),
        Some(Pattern::Exact("/pods")) | Some(Pattern::Subtree("/pods/")) => {
            restful(method, &decoded, "/pods", &["GET"], PODS_JSON)
        }
        Some(Pattern::Subtree("/stats/")) => {
            restful(method, &decoded, "/stats/summary", &["GET", "POST"], SUMMARY_JSON)
        }
        Some(Pattern::Subtree(_)) => text(StatusCode::METHOD_NOT_ALLOWED, DEBUG_DISABLED_BODY),
        Some(Pattern::Exact(_)) => text(StatusCode::NOT_FOUND, NOT_FOUND_BODY),
    }
}

/// A go-restful web service with one JSON route (a trailing slash also matches it).
fn restful(
    method: &Method,
    decoded_path: &str,
    route: &str,
    methods: &[&str],
    json: &'static str,
) -> Response<RespBody> {
    let trimmed = decoded_path.strip_suffix('/').unwrap_or(decoded_path);
    if trimmed != route {
        return respond(
            StatusCode::NOT_FOUND,
            "404: Page Not Found",
            Some(TEXT_CONTENT_TYPE),
            false,
        );
    }
    if !methods.contains(&method.as_str()) {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "405: Method Not Allowed",
            Some(TEXT_CONTENT_TYPE),
            false,
        );
        r.headers_mut().insert(
            header::ALLOW,
            http::HeaderValue::from_str(&methods.join(", ")).expect("allow header"),
        );
        return r;
    }
    respond(StatusCode::OK, json, Some("application/json"), false)
}

// ---------------------------------------------------------------------------------------

/// A streamed body of `remaining` bytes of `x`, 64 KiB per frame, never buffered whole.
struct BigBody {
    remaining: u64,
}

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl Body for BigBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A TcpStream shared between hyper and the handler (which may write raw bytes for
/// `Behaviour::Garbage`). The socket closes when the last clone is dropped.
struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match self.0.try_read(unfilled) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(data) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // The socket closes when hyper drops its connection (the last clone goes with it).
        Poll::Ready(Ok(()))
    }
}
