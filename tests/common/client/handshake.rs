//! Bare TLS handshakes: the server's verdict on a client certificate (including a TLS 1.3 alert
//! that arrives after the client is done) and the chain the server presents.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ProtocolVersion;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;

use super::error::ClientError;
use super::{TLS13_ALERT_WAIT, TlsClient};

impl TlsClient {
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
