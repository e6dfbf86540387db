#![allow(dead_code)]
//! A TLS test client for the gateway: one request per fresh connection over hyper's
//! `client::conn` (h2 or HTTP/1.1 as ALPN decides), raw bytes over TLS or TCP, bare
//! handshakes, the server's chain, and a parser for raw HTTP/1.1 responses.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::pki::Leaf;

/// Default limit for one `send`/`handshake`/`peer_chain` (connect + TLS + request + body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `handshake` waits at most, after a TLS 1.3 handshake, for the server's verdict
/// (TLS 1.3 servers judge the client certificate after the client considers itself done).
/// It returns as soon as the server sends a session ticket or data (accepted) or an alert /
/// EOF (refused); only a server sending none of these costs the whole wait.
pub const TLS13_ALERT_WAIT: Duration = Duration::from_secs(2);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

type Identity = Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>;

/// A TLS client configuration plus connection helpers. Cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    trust: Arc<Vec<CertificateDer<'static>>>,
    insecure: bool,
    identity: Option<Identity>,
    alpn: Vec<Vec<u8>>,
    versions: Option<Vec<&'static rustls::SupportedProtocolVersion>>,
    server_name: String,
    timeout: Duration,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("trust", &self.trust.len())
            .field("insecure", &self.insecure)
            .field("identity", &self.identity.is_some())
            .field("alpn", &self.alpn)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsClient {
    /// Trusts exactly these roots; ALPN `["h2", "http/1.1"]`; server name "localhost".
    pub fn new(trust: &[CertificateDer<'static>]) -> TlsClient {
        Self::build(Arc::new(trust.to_vec()), false)
    }

    /// Accepts any server certificate (handshake signatures are still checked). For looking
    /// at a gateway's self-signed serving certificate.
    pub fn insecure() -> TlsClient {
        Self::build(Arc::new(Vec::new()), true)
    }

    fn build(trust: Arc<Vec<CertificateDer<'static>>>, insecure: bool) -> TlsClient {
        let mut c = TlsClient {
            trust,
            insecure,
            identity: None,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions: None,
            server_name: "localhost".to_string(),
            timeout: DEFAULT_TIMEOUT,
            config: Arc::new(placeholder_config()),
        };
        c.rebuild();
        c
    }

    /// Presents this chain and key.
    pub fn with_identity(mut self, leaf: &Leaf) -> TlsClient {
        self.identity = Some(Arc::new((leaf.chain.clone(), leaf.key.clone_key())));
        self.rebuild();
        self
    }

    /// Presents this chain and key (for chains that a `Leaf` can't express).
    pub fn with_raw_identity(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> TlsClient {
        self.identity = Some(Arc::new((chain, key)));
        self.rebuild();
        self
    }

    /// ALPN protocols to offer, e.g. `&[b"http/1.1"]`, or `&[]` for no ALPN extension.
    pub fn with_alpn(mut self, protocols: &[&[u8]]) -> TlsClient {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self.rebuild();
        self
    }

    /// Restricts the TLS versions offered, e.g. `&[&rustls::version::TLS12]`.
    pub fn with_versions(mut self, versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsClient {
        self.versions = Some(versions.to_vec());
        self.rebuild();
        self
    }

    /// The SNI / verification name (a DNS name or an IP literal). Default "localhost".
    pub fn server_name(mut self, name: &str) -> TlsClient {
        ServerName::try_from(name.to_string()).expect("valid server name");
        self.server_name = name.to_string();
        self
    }

    /// Overall limit for `send`, `handshake`, `peer_chain` (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> TlsClient {
        self.timeout = timeout;
        self
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    fn rebuild(&mut self) {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone());
        let builder = match &self.versions {
            Some(v) => builder.with_protocol_versions(v),
            None => builder.with_safe_default_protocol_versions(),
        }
        .expect("protocol versions supported by aws-lc-rs");
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            for c in self.trust.iter() {
                roots.add(c.clone()).expect("trust anchor parses");
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.0.clone(), id.1.clone_key())
                .expect("client identity accepted by rustls"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        self.config = Arc::new(config);
    }

    fn authority(&self, addr: SocketAddr) -> String {
        if self.server_name.contains(':') {
            format!("[{}]:{}", self.server_name, addr.port())
        } else {
            format!("{}:{}", self.server_name, addr.port())
        }
    }

    async fn connect(&self, addr: SocketAddr, config: Arc<ClientConfig>) -> Result<TlsStream<TcpStream>, ClientError> {
        let tcp = TcpStream::connect(addr).await.map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.server_name.clone()).expect("valid server name");
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(ClientError::Handshake)
    }

    /// One request over a fresh TLS connection; h2 if ALPN negotiated it, else HTTP/1.1.
    /// A relative URI is made absolute (`https://<server name>:<port>`) for h2; for HTTP/1.1
    /// it is sent as given, with `Host: <server name>:<port>` added when absent.
    pub async fn send(&self, addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        match tokio::time::timeout(self.timeout, self.send_inner(addr, req)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    async fn send_inner(&self, addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        let resp = self.exchange(addr, req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(ClientError::Http)?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }

    /// Sends the request and returns as soon as the response head arrives; the body is read
    /// as it comes (for streaming answers such as `follow=true`). Dropping the result closes
    /// the stream.
    pub async fn open(&self, addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Streaming, ClientError> {
        let resp = match tokio::time::timeout(self.timeout, self.exchange(addr, req)).await {
            Ok(r) => r?,
            Err(_) => return Err(ClientError::Timeout(self.timeout)),
        };
        let (parts, body) = resp.into_parts();
        Ok(Streaming {
            status: parts.status,
            headers: parts.headers,
            version: parts.version,
            body,
            received: Vec::new(),
            ended: false,
        })
    }

    async fn exchange(
        &self,
        addr: SocketAddr,
        mut req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let tls = self.connect(addr, self.config.clone()).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let io = TokioIo::new(tls);
        let authority = self.authority(addr);
        let resp = if h2 {
            if req.uri().scheme().is_none() {
                let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
                *req.uri_mut() = format!("https://{authority}{pq}").parse::<Uri>().expect("absolute URI");
            }
            *req.version_mut() = Version::HTTP_2;
            let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(ClientError::Http)?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(ClientError::Http)?
        } else {
            if req.version() == Version::HTTP_2 || req.version() == Version::HTTP_3 {
                *req.version_mut() = Version::HTTP_11;
            }
            if !req.headers().contains_key(http::header::HOST) {
                req.headers_mut().insert(
                    http::header::HOST,
                    HeaderValue::from_str(&authority).expect("host header"),
                );
            }
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(ClientError::Http)?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(ClientError::Http)?
        };
        Ok(resp)
    }

    /// GET with optional extra headers; panics with context on a transport error.
    pub async fn get(&self, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(addr, "GET", path, headers).await
    }

    /// Any method token (incl. "get", "PROPFIND"); panics with context on a transport error.
    pub async fn request(&self, addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let req = build_request(method, path, headers, Bytes::new());
        self.send(addr, req)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} to {addr} failed: {e}"))
    }

    /// Like `request`, with a body; panics with context on a transport error.
    pub async fn request_with_body(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let req = build_request(method, path, headers, body.into());
        self.send(addr, req)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} to {addr} failed: {e}"))
    }

    /// Writes raw bytes over TLS (ALPN http/1.1), half-closes nothing, reads until the
    /// server closes or 5 s pass; returns all bytes read. Panics if the TLS connection
    /// can't be set up; a read error ends the read (bytes so far are returned).
    pub async fn raw(&self, addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        self.raw_with_timeout(addr, bytes, Duration::from_secs(5)).await
    }

    /// `raw` with a chosen read window.
    pub async fn raw_with_timeout(&self, addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut tls = self
            .connect(addr, Arc::new(config))
            .await
            .unwrap_or_else(|e| panic!("raw: TLS connection to {addr} failed: {e}"));
        write_then_read(&mut tls, bytes, wait).await
    }

    /// The TLS handshake alone: Ok(negotiated ALPN) or the error (rustls errors such as a
    /// received alert are inside the io::Error; see [`alert_of`]). After a TLS 1.3
    /// handshake it waits up to [`TLS13_ALERT_WAIT`] for a late alert; the server closing
    /// the connection in that window is an `UnexpectedEof` error.
    pub async fn handshake(&self, addr: SocketAddr) -> Result<Option<Vec<u8>>, io::Error> {
        let fut = async {
            let ticket = Arc::new(tokio::sync::Notify::new());
            let mut config = (*self.config).clone();
            config.resumption = rustls::client::Resumption::store(Arc::new(TicketSignal {
                inner: rustls::client::ClientSessionMemoryCache::new(8),
                ticket: ticket.clone(),
            }));
            let mut tls = match self.connect(addr, Arc::new(config)).await {
                Ok(t) => t,
                Err(ClientError::Connect(e)) | Err(ClientError::Handshake(e)) => return Err(e),
                Err(e) => return Err(io::Error::other(e.to_string())),
            };
            let conn = tls.get_ref().1;
            let alpn = conn.alpn_protocol().map(|p| p.to_vec());
            if conn.protocol_version() == Some(ProtocolVersion::TLSv1_3) {
                let mut buf = [0u8; 1];
                let verdict = async {
                    tokio::select! {
                        r = tls.read(&mut buf) => Some(r),
                        _ = ticket.notified() => None,
                    }
                };
                match tokio::time::timeout(TLS13_ALERT_WAIT, verdict).await {
                    Err(_) | Ok(None) | Ok(Some(Ok(1..))) => {}
                    Ok(Some(Ok(0))) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "server closed the connection right after the TLS handshake",
                        ));
                    }
                    Ok(Some(Err(e))) => return Err(e),
                }
            }
            Ok(alpn)
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
        }
    }

    /// The server's certificate chain as presented in the handshake (panics if the
    /// handshake fails; use [`TlsClient::insecure`] for an unknown issuer).
    pub async fn peer_chain(&self, addr: SocketAddr) -> Vec<CertificateDer<'static>> {
        let tls = tokio::time::timeout(self.timeout, self.connect(addr, self.config.clone()))
            .await
            .unwrap_or_else(|_| panic!("peer_chain: handshake with {addr} timed out"))
            .unwrap_or_else(|e| panic!("peer_chain: handshake with {addr} failed: {e}"));
        tls.get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }
}

/// Builds a request from parts; `method` is any token (case kept).
pub fn build_request(method: &str, path: &str, headers: &[(&str, &str)], body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("method {method:?}: {e}"));
    *req.uri_mut() = path
        .parse::<Uri>()
        .unwrap_or_else(|e| panic!("request target {path:?}: {e}"));
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("header name {k:?}: {e}"));
        let value = HeaderValue::from_str(v).unwrap_or_else(|e| panic!("header value {v:?}: {e}"));
        req.headers_mut().append(name, value);
    }
    req
}

/// Writes raw bytes over plain TCP, reads until the peer closes or `wait` passes.
pub async fn raw_tcp(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("raw_tcp: connect to {addr} failed: {e}"));
    write_then_read(&mut tcp, bytes, wait).await
}

async fn write_then_read<S>(stream: &mut S, bytes: &[u8], wait: Duration) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    // A server that answers early and closes may make the write fail: read anyway.
    if tokio::time::timeout_at(deadline, stream.write_all(bytes))
        .await
        .is_ok_and(|r| r.is_ok())
    {
        let _ = tokio::time::timeout_at(deadline, stream.flush()).await;
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// A response whose body is read as it arrives.
pub struct Streaming {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub version: Version,
    body: hyper::body::Incoming,
    /// Everything received so far.
    pub received: Vec<u8>,
    /// The body has ended.
    pub ended: bool,
}

impl Streaming {
    /// Reads until `done(received)` holds, the body ends, or `limit` passes; returns `done`'s
    /// last answer.
    pub async fn read_until(&mut self, limit: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.received) && !self.ended {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => break,
                Ok(None) => self.ended = true,
                Ok(Some(Err(e))) => panic!("streaming body failed: {e}"),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.received.extend_from_slice(&data);
                    }
                }
            }
        }
        done(&self.received)
    }

    /// Hands every chunk to `f` without keeping it, until the body ends or `limit` passes;
    /// returns whether it ended.
    pub async fn for_each_chunk(&mut self, limit: Duration, mut f: impl FnMut(&[u8])) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.ended {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => break,
                Ok(None) => self.ended = true,
                Ok(Some(Err(e))) => panic!("streaming body failed: {e}"),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        f(&data);
                    }
                }
            }
        }
        self.ended
    }

    /// Reads until the body ends or `limit` passes; returns whether it ended.
    pub async fn read_to_end(&mut self, limit: Duration) -> bool {
        self.read_until(limit, |_| false).await;
        self.ended
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// A fully read response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: Version,
}

impl Reply {
    /// The body as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The first value of a header, as lossy UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// Why `send` failed.
#[derive(Debug)]
pub enum ClientError {
    /// TCP connect failed.
    Connect(io::Error),
    /// The TLS handshake failed (the rustls error is inside; see [`ClientError::alert`]).
    Handshake(io::Error),
    /// The HTTP exchange failed (incl. a TLS 1.3 alert arriving after the handshake).
    Http(hyper::Error),
    Timeout(Duration),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "TCP connect failed: {e}"),
            ClientError::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            ClientError::Http(e) => {
                write!(f, "HTTP exchange failed: {e}")?;
                let mut src = e.source();
                while let Some(s) = src {
                    write!(f, ": {s}")?;
                    src = s.source();
                }
                Ok(())
            }
            ClientError::Timeout(d) => write!(f, "timed out after {d:?}"),
        }
    }
}

impl StdError for ClientError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ClientError::Connect(e) | ClientError::Handshake(e) => Some(e),
            ClientError::Http(e) => Some(e),
            ClientError::Timeout(_) => None,
        }
    }
}

impl ClientError {
    /// The rustls error behind this failure, if any (handshake, or an alert mid-exchange
    /// over HTTP/1.1; h2 keeps only its text: use [`ClientError::alert`]).
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        match self {
            ClientError::Connect(_) | ClientError::Timeout(_) => None,
            ClientError::Handshake(e) => rustls_error_of(e),
            ClientError::Http(e) => find_rustls_error(e),
        }
    }
    /// The TLS alert received from the server, if that is what ended the connection. Over
    /// h2 the rustls error is flattened to text by the h2 crate, so this also reads the
    /// "received fatal alert: <Name>" message.
    pub fn alert(&self) -> Option<rustls::AlertDescription> {
        if let Some(rustls::Error::AlertReceived(a)) = self.rustls_error() {
            return Some(*a);
        }
        let mut cur: Option<&(dyn StdError + 'static)> = self.source();
        while let Some(err) = cur {
            if let Some(a) = alert_from_message(&err.to_string()) {
                return Some(a);
            }
            cur = err.source();
        }
        None
    }
    pub fn is_handshake(&self) -> bool {
        matches!(self, ClientError::Handshake(_))
    }
}

/// The rustls error inside an io::Error from a TLS stream, if any.
pub fn rustls_error_of(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The TLS alert received from the peer, if that is what this io::Error reports.
pub fn alert_of(e: &io::Error) -> Option<rustls::AlertDescription> {
    match rustls_error_of(e) {
        Some(rustls::Error::AlertReceived(a)) => Some(*a),
        _ => None,
    }
}

/// Reads "received fatal alert: <Name>" (rustls's Display of `Error::AlertReceived`).
fn alert_from_message(msg: &str) -> Option<rustls::AlertDescription> {
    const MARK: &str = "received fatal alert: ";
    let at = msg.find(MARK)? + MARK.len();
    let name: String = msg[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '(' || *c == ')')
        .collect();
    (0..=u8::MAX)
        .map(rustls::AlertDescription::from)
        .find(|a| format!("{a:?}") == name)
}

fn find_rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err.downcast_ref::<io::Error>().and_then(rustls_error_of) {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// A session store that signals when the server sends a TLS 1.3 ticket (which a rustls
/// server does only once it has accepted the client's certificate and Finished).
#[derive(Debug)]
struct TicketSignal {
    inner: rustls::client::ClientSessionMemoryCache,
    ticket: Arc<tokio::sync::Notify>,
}

impl rustls::client::ClientSessionStore for TicketSignal {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server_name)
    }
    fn set_tls12_session(&self, server_name: ServerName<'static>, value: rustls::client::Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value)
    }
    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: rustls::client::Tls13ClientSessionValue) {
        self.inner.insert_tls13_ticket(server_name, value);
        self.ticket.notify_one();
    }
    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(server_name)
    }
}

/// Accepts any server certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn placeholder_config() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth()
}

/// A parsed raw HTTP/1.x response: (status code, headers in order, body).
pub type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// Parses the first response out of raw HTTP/1.1 bytes: status code, headers (names as
/// sent) and body honouring chunked or Content-Length (no length: the rest of the bytes).
/// None if the bytes don't hold a complete response. 1xx/204/304 have no body.
pub fn parse_raw_response(bytes: &[u8]) -> Option<RawResponse> {
    parse_one(bytes).map(|(r, _)| r)
}

/// Every complete response in the bytes, in order (pipelining, interim 1xx responses).
pub fn parse_raw_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Some((r, used)) = parse_one(bytes) {
        out.push(r);
        bytes = &bytes[used..];
        if bytes.is_empty() || used == 0 {
            break;
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_one(bytes: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = find(bytes, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = parts.next()?.trim().parse().ok()?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let body_start = head_end + 4;
    let rest = &bytes[body_start..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(((status, headers, Vec::new()), body_start));
    }
    let chunked = header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = find(&rest[pos..], b"\r\n")?;
            let size_line = String::from_utf8_lossy(&rest[pos..pos + line_end]).into_owned();
            let size_hex = size_line.split(';').next()?.trim();
            let size = usize::from_str_radix(size_hex, 16).ok()?;
            pos += line_end + 2;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let l = find(&rest[pos..], b"\r\n")?;
                    pos += l + 2;
                    if l == 0 {
                        break;
                    }
                }
                return Some(((status, headers, body), body_start + pos));
            }
            if rest.len() < pos + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
    }
    if let Some(cl) = header("content-length") {
        let n: usize = cl.trim().parse().ok()?;
        if rest.len() < n {
            return None;
        }
        return Some(((status, headers, rest[..n].to_vec()), body_start + n));
    }
    Some(((status, headers, rest.to_vec()), bytes.len()))
}

/// One HTTP/1.1 connection kept open across requests, to see what the gateway remembers per
/// connection (the verified client certificate).
pub struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl TlsClient {
    /// Opens the connection (ALPN http/1.1).
    pub async fn keep_alive(&self, addr: SocketAddr) -> KeepAlive {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = self
            .connect(addr, Arc::new(config))
            .await
            .unwrap_or_else(|e| panic!("keep-alive connection to {addr} failed: {e}"));
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        KeepAlive {
            sender,
            authority: self.authority(addr),
        }
    }
}

impl KeepAlive {
    /// GET on this connection; panics if the connection is gone.
    pub async fn get(&mut self, path: &str) -> Reply {
        let mut req = build_request("GET", path, &[], Bytes::new());
        req.headers_mut().insert(
            http::header::HOST,
            HeaderValue::from_str(&self.authority).expect("host header"),
        );
        self.sender.ready().await.expect("connection still open");
        let resp = self
            .sender
            .send_request(req)
            .await
            .expect("response on the kept connection");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        }
    }
}
