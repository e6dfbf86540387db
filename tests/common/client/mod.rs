#![allow(dead_code)]
//! A TLS test client for the gateway: one request per fresh connection over hyper's
//! `client::conn` (h2 or HTTP/1.1 as ALPN decides), raw bytes over TLS or TCP, bare
//! handshakes, the server's chain, and a parser for raw HTTP/1.1 responses.
//!
//! Layout: this file builds the [`TlsClient`] (trust, identity, ALPN, versions, server name)
//! and connects; `request.rs` sends requests and reads the answers ([`Reply`], [`Streaming`]),
//! `keep_alive.rs` keeps one HTTP/1.1 connection across requests, `raw.rs` writes raw bytes
//! and parses raw responses, `handshake.rs` does bare handshakes, `error.rs` says why a send
//! failed.

mod error;
mod handshake;
mod keep_alive;
mod raw;
mod request;

pub use error::{ClientError, alert_of};
pub use raw::parse_raw_response;
pub use request::{Reply, Streaming, build_request};
// Paths as before the split; no test names these today.
#[allow(unused_imports)]
pub use error::rustls_error_of;
#[allow(unused_imports)]
pub use keep_alive::KeepAlive;
#[allow(unused_imports)]
pub use raw::{RawResponse, parse_raw_responses, raw_tcp, tcp_from};

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
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
