//! A stand-in for the kubelet's own authenticated port (`upstream.secure`), on 127.0.0.1:0 as
//! the deployment moves it to loopback: HTTPS (HTTP/1.1 only, as the kubelet
//! streams) that verifies the gateway's client certificate against its own client CA, records
//! every request with the identity that sent it, answers the private endpoints as the kubelet
//! does, and upgrades exec, attach and port-forward requests (SPDY/3.1 or WebSocket) with a
//! `101` and then a scripted stream: an echo by default, or a deterministic byte stream for
//! the large transfers. Faults: refuse an upgrade and keep the connection open (CVE-2018-1002105's
//! shape), answer a plain request with `101`.
//!
//! Layout: this file is the handle and what it records; `serve.rs` is the server.
#![allow(dead_code)]

mod serve;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::HeaderMap;
use rustls_pki_types::CertificateDer;

use crate::common::pki::{Ca, ClientSpec, Leaf};
use crate::common::serving::Running;

/// The gateway's identity towards the kubelet (the DaemonSet's example CN).
pub const GATEWAY_CN: &str = "kubelet-gate";

/// What a request looked like when it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    /// The CN of the client certificate the connection presented (verified), if any.
    pub client_cn: Option<String>,
    /// The SHA-256 of that certificate, to tell two certificates with one CN apart.
    pub client_sha256: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What an upgraded stream does once spliced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// Writes back everything it reads, until the client closes.
    Echo,
    /// Writes `bytes` bytes of [`pattern`] from `seed` and closes its write side, counting and
    /// hashing what it reads meanwhile.
    Send { bytes: u64, seed: u64 },
}

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Upgrade requests get this status (a body of its own) and the connection stays open, so
    /// any byte the client sends after its request would be read as another request.
    RefuseUpgrade(u16),
    /// Every request, upgrade or not, gets a `101`.
    SwitchEverything,
}

/// What one stream saw.
#[derive(Debug, Clone, Default)]
pub struct StreamSeen {
    pub path: String,
    pub received: u64,
    /// SHA-256 of everything received, hex.
    pub received_sha256: String,
    pub sent: u64,
    /// The client closed its write side (EOF seen).
    pub client_closed: bool,
    pub ended: bool,
}

pub(super) struct State {
    pub(super) seen: Mutex<Vec<Seen>>,
    pub(super) streams: Mutex<Vec<StreamSeen>>,
    pub(super) behaviour: Mutex<Behaviour>,
    pub(super) mode: Mutex<StreamMode>,
    pub(super) handshakes: AtomicU64,
    pub(super) failed_handshakes: AtomicU64,
    /// The CA the gateway's client certificate must chain to.
    pub(super) client_ca: CertificateDer<'static>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The PKI [`KubeletPortStandIn::start`] makes for itself: its serving CA (for `caFile`), and
/// the gateway's client pair its client CA issued (for `certFile`/`keyFile`).
pub struct StandInPki {
    pub serving_ca: Ca,
    pub client_ca: Ca,
    pub gateway: Leaf,
}

/// The stand-in: its address, what it records, and the PKI it made (if it made its own).
pub struct KubeletPortStandIn {
    addr: SocketAddr,
    pki: Option<StandInPki>,
    state: Arc<State>,
    _running: Running,
}

impl KubeletPortStandIn {
    /// On its own PKI: a serving certificate for 127.0.0.1 and localhost, and a client CA that
    /// issued the gateway's certificate (CN [`GATEWAY_CN`]).
    pub async fn start() -> KubeletPortStandIn {
        let serving_ca = Ca::new("kubelet-serving-ca");
        let serving = serving_ca.server(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let client_ca = Ca::new("kubelet-client-ca");
        let gateway = client_ca.client(ClientSpec::new(GATEWAY_CN));
        let roots = client_ca.cert_der();
        let pki = StandInPki {
            serving_ca,
            client_ca,
            gateway,
        };
        KubeletPortStandIn::launch(serving, roots, Some(pki)).await
    }

    /// On a node's PKI made elsewhere (the deployment's node-local CA): `serving` is the
    /// kubelet's serving pair, `client_ca` the `authentication.x509.clientCAFile` it trusts.
    pub async fn start_with(serving: Leaf, client_ca: CertificateDer<'static>) -> KubeletPortStandIn {
        KubeletPortStandIn::launch(serving, client_ca, None).await
    }

    async fn launch(serving: Leaf, client_ca: CertificateDer<'static>, pki: Option<StandInPki>) -> KubeletPortStandIn {
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Normal),
            mode: Mutex::new(StreamMode::Echo),
            handshakes: AtomicU64::new(0),
            failed_handshakes: AtomicU64::new(0),
            client_ca,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let running = serve::spawn(listener, serving, state.clone());
        KubeletPortStandIn {
            addr,
            pki,
            state,
            _running: running,
        }
    }

    /// The PKI [`KubeletPortStandIn::start`] made.
    pub fn pki(&self) -> &StandInPki {
        self.pki.as_ref().expect("a stand-in started on its own PKI")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`, as `upstream.secure.url`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Writes `kubelet-ca.crt`, `gateway.crt` and `gateway.key` into `dir` and returns the
    /// `upstream.secure` block for them.
    pub fn write_files(&self, dir: &Path) -> String {
        self.pki().serving_ca.write_pem(&dir.join("kubelet-ca.crt"));
        self.pki()
            .gateway
            .write(&dir.join("gateway.crt"), &dir.join("gateway.key"));
        let d = dir.display();
        format!(
            "  secure: {{url: \"{}\", caFile: \"{d}/kubelet-ca.crt\", certFile: \"{d}/gateway.crt\", keyFile: \"{d}/gateway.key\"}}\n",
            self.url()
        )
    }

    pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("gateway.crt"), dir.join("gateway.key"))
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.state.behaviour) = b;
    }

    pub fn set_stream_mode(&self, m: StreamMode) {
        *lock(&self.state.mode) = m;
    }

    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    pub fn count(&self) -> usize {
        lock(&self.state.seen).len()
    }

    pub fn streams(&self) -> Vec<StreamSeen> {
        lock(&self.state.streams).clone()
    }

    /// TLS handshakes that completed, and those that failed (e.g. a client that does not
    /// trust this server's certificate).
    pub fn handshakes(&self) -> (u64, u64) {
        (
            self.state.handshakes.load(Ordering::Relaxed),
            self.state.failed_handshakes.load(Ordering::Relaxed),
        )
    }
}

/// The deterministic bytes of [`StreamMode::Send`]: an xorshift stream from `seed`.
pub fn pattern(seed: u64, out: &mut [u8], state: &mut u64) {
    if *state == 0 {
        *state = seed | 1;
    }
    for chunk in out.chunks_mut(8) {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}
