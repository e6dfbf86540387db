//! Connecting to a node as kube-apiserver does (TCP, then TLS with the crate's one crypto
//! provider), but recording instead of judging: the certificate chain the node sends, whether it
//! asks for a client certificate and which CA names it offers, and how the handshake ends.
//! Then plain HTTP/1.1 `GET`s over the connection for the probes.
//!
//! The certificate is judged afterwards by `x509`. What the handshake itself must verify, the
//! server's signature with its certificate's key, is verified as a Go client does (Go's
//! signature schemes, RSA keys from 1024 bits), so that the connection works wherever
//! kube-apiserver's would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{DATE, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::x509::certificate::Certificate;
use super::x509::signature::verify_handshake_signature;
use super::x509::tls::{SUPPORTED_SCHEMES, handshake_signature};

/// Probe bodies longer than this are cut (the 403 bodies the checks read are short).
const MAX_BODY: usize = 16 * 1024;

/// What the handshake showed.
pub struct Session {
    pub peer: SocketAddr,
    /// As the node sent it: leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node sent a CertificateRequest.
    pub client_cert_requested: bool,
    /// The CA names in the CertificateRequest (DER-encoded X.500 names).
    pub client_ca_hints: Vec<Vec<u8>>,
    pub protocol: String,
    sender: SendRequest<Empty<Bytes>>,
    host_header: String,
}

/// How a connection failed, in Go's words where it has some.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub message: String,
    /// The TLS alert the node sent, if the handshake ended with one.
    pub alert: Option<AlertDescription>,
}

/// A probe's answer.
#[derive(Debug, Clone)]
pub struct Probe {
    pub status: StatusCode,
    pub body: String,
    pub date: Option<SystemTime>,
}

#[derive(Debug)]
struct Recording {
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

/// src/crypto/tls/handshake_client_tls13.go (`readServerCertificate`) and key_agreement.go:
/// the server's handshake signature, verified with its certificate's key.
fn verify_go_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let invalid = |e: String| rustls::Error::General(format!("tls: invalid signature by the server certificate: {e}"));
    let kind = handshake_signature(dss.scheme)
        .ok_or_else(|| rustls::Error::General("tls: certificate used with invalid signature algorithm".into()))?;
    let leaf = Certificate::parse(cert).map_err(|e| rustls::Error::General(format!("tls: {e}")))?;
    verify_handshake_signature(kind, &leaf.public_key, message, dss.signature()).map_err(invalid)?;
    Ok(HandshakeSignatureValid::assertion())
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Deliberately accepted: the checks judge the chain afterwards, one rule at a time.
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner) = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_go_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_go_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SUPPORTED_SCHEMES.to_vec()
    }
}

/// Presents the client certificate (if any) and records the CertificateRequest.
#[derive(Debug)]
struct ClientIdentity {
    key: Option<Arc<CertifiedKey>>,
    requested: Mutex<Option<Vec<Vec<u8>>>>,
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(&self, root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        *self.requested.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(root_hint_subjects.iter().map(|h| h.to_vec()).collect());
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// Resolves `host`, connects to the first address that answers, and completes the handshake.
pub async fn connect(
    host: &str,
    port: u16,
    identity: Option<Arc<CertifiedKey>>,
    limit: Duration,
) -> Result<Session, ConnectError> {
    let plain = |message: String| ConnectError { message, alert: None };
    let lookup_host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match timeout(limit, tokio::net::lookup_host((lookup_host, port))).await {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => return Err(plain(format!("dial tcp: lookup {lookup_host}: {e}"))),
        Err(_) => return Err(plain(format!("dial tcp: lookup {lookup_host}: i/o timeout"))),
    };
    let mut last = plain(format!("dial tcp: lookup {lookup_host}: no such host"));
    let mut tcp = None;
    for addr in addrs {
        match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some((s, addr));
                break;
            }
            Ok(Err(e)) => last = plain(format!("dial tcp {addr}: connect: {}", go_errno(&e))),
            Err(_) => last = plain(format!("dial tcp {addr}: i/o timeout")),
        }
    }
    let Some((tcp, peer)) = tcp else {
        return Err(last);
    };
    let _ = tcp.set_nodelay(true);

    let provider = crate::crypto::provider();
    let recording = Arc::new(Recording {
        chain: Mutex::new(Vec::new()),
    });
    let client = Arc::new(ClientIdentity {
        key: identity,
        requested: Mutex::new(None),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| plain(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recording.clone())
        .with_client_cert_resolver(client.clone());
    // Every connection is a full handshake: a resumed session shows no certificate.
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = match lookup_host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(lookup_host.to_owned()).map_err(|e| plain(format!("{host}: {e}")))?,
    };
    let tls = match timeout(limit, TlsConnector::from(Arc::new(config)).connect(server_name, tcp)).await {
        Err(_) => return Err(plain("net/http: TLS handshake timeout".into())),
        Ok(Err(e)) => {
            let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
            return Err(match rustls_error {
                Some(rustls::Error::AlertReceived(alert)) => ConnectError {
                    message: format!("remote error: tls: {}", go_alert(*alert)),
                    alert: Some(*alert),
                },
                Some(rustls::Error::General(go)) => plain(go.clone()),
                Some(other) => plain(format!("tls: {other}")),
                None if e.kind() == std::io::ErrorKind::UnexpectedEof => plain("EOF".into()),
                None => plain(e.to_string()),
            });
        }
        Ok(Ok(tls)) => tls,
    };
    let protocol = match tls.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS",
    }
    .to_owned();
    let chain = std::mem::take(&mut *recording.chain.lock().unwrap_or_else(PoisonError::into_inner));
    let requested = client.requested.lock().unwrap_or_else(PoisonError::into_inner).take();
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| plain(format!("HTTP/1.1: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let host_header = if lookup_host.contains(':') {
        format!("[{lookup_host}]:{port}")
    } else {
        format!("{lookup_host}:{port}")
    };
    Ok(Session {
        peer,
        chain,
        client_cert_requested: requested.is_some(),
        client_ca_hints: requested.unwrap_or_default(),
        protocol,
        sender,
        host_header,
    })
}

impl Session {
    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str, limit: Duration) -> Result<Probe, String> {
        let request = Request::get(path)
            .header(HOST, self.host_header.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let response = self.sender.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let date = response
                .headers()
                .get(DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok());
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Probe {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
                date,
            })
        };
        timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
    }
}

/// Go's `syscall.Errno` text for the connect errors that matter.
fn go_errno(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::HostUnreachable => "no route to host".into(),
        std::io::ErrorKind::NetworkUnreachable => "network is unreachable".into(),
        _ => e.to_string(),
    }
}

/// Go's `tls.alert` strings.
pub fn go_alert(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CloseNotify => "close notify",
        AlertDescription::UnexpectedMessage => "unexpected message",
        AlertDescription::BadRecordMac => "bad record MAC",
        AlertDescription::RecordOverflow => "record overflow",
        AlertDescription::HandshakeFailure => "handshake failure",
        AlertDescription::BadCertificate => "bad certificate",
        AlertDescription::UnsupportedCertificate => "unsupported certificate",
        AlertDescription::CertificateRevoked => "revoked certificate",
        AlertDescription::CertificateExpired => "expired certificate",
        AlertDescription::CertificateUnknown => "unknown certificate",
        AlertDescription::IllegalParameter => "illegal parameter",
        AlertDescription::UnknownCA => "unknown certificate authority",
        AlertDescription::AccessDenied => "access denied",
        AlertDescription::DecodeError => "error decoding message",
        AlertDescription::DecryptError => "error decrypting message",
        AlertDescription::ProtocolVersion => "protocol version not supported",
        AlertDescription::InsufficientSecurity => "insufficient security level",
        AlertDescription::InternalError => "internal error",
        AlertDescription::UserCanceled => "user canceled",
        AlertDescription::NoRenegotiation => "no renegotiation",
        AlertDescription::MissingExtension => "missing extension",
        AlertDescription::UnsupportedExtension => "unsupported extension",
        AlertDescription::UnrecognisedName => "unrecognized name",
        AlertDescription::CertificateRequired => "certificate required",
        AlertDescription::NoApplicationProtocol => "no application protocol",
        other => return format!("alert({})", u8::from(other)),
    }
    .to_owned()
}
