#![allow(dead_code)]
//! A stand-in for the kubelet's plain-HTTP read-only port (10255): hyper 1, HTTP/1.1 only, on
//! 127.0.0.1:0, answering like the real port (spec sections 3.1, 3.2, 8: Go ServeMux redirects
//! and 404s, go-restful 404/405, debug stubs) and recording every request it receives.
//!
//! Layout: this file is the handle ([`ReadOnlyStandIn`]), what it records ([`Seen`]) and how it
//! answers ([`Behaviour`]); `serve.rs` serves a connection and applies the behaviour,
//! `routing.rs` is the read-only port's routing, `streams.rs` holds the streamed body and the
//! shared socket the behaviours need.

mod routing;
mod serve;
mod streams;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Version;
use tokio::net::TcpListener;

use super::serving::{Restartable, Running};
use serve::serve_conn;

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
    /// Read the request, then close the connection without a byte of answer.
    Close,
    /// As `Kubelet` for the first request of a connection; every later one is read, then the
    /// connection is closed without a byte of answer: a server closing an idle keep-alive
    /// connection at the moment the client reuses it.
    CloseReused,
}

struct State {
    seen: Mutex<Vec<Seen>>,
    behaviour: Mutex<Behaviour>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stand-in server. Clones share it; it serves until all clones are dropped or `stop()`.
#[derive(Clone)]
pub struct ReadOnlyStandIn {
    state: Arc<State>,
    /// Dropping the last clone drops this, which stops the server.
    handle: Arc<Restartable>,
}

impl fmt::Debug for ReadOnlyStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOnlyStandIn")
            .field("addr", &self.handle.addr())
            .finish()
    }
}

impl ReadOnlyStandIn {
    /// Binds 127.0.0.1:0 and serves in the background.
    pub async fn start() -> ReadOnlyStandIn {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream stand-in on 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream local addr");
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Kubelet),
        });
        let running = Self::spawn(listener, state.clone());
        ReadOnlyStandIn {
            state,
            handle: Arc::new(Restartable::new(addr, running)),
        }
    }

    fn spawn(listener: TcpListener, state: Arc<State>) -> Running {
        Running::spawn(listener, move |tcp, stop_rx| {
            let peer = tcp.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            serve_conn(tcp, peer, state.clone(), stop_rx)
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("http://{}", self.handle.addr())
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
        self.handle.stop().await;
    }

    /// Listens again on the same port (stopping first if running), keeping what was seen.
    pub async fn restart(&self) {
        let state = self.state.clone();
        self.handle.restart(move |listener| Self::spawn(listener, state)).await;
    }
}
