//! Raw bytes over TLS or plain TCP, read until the peer closes, and a parser for the raw HTTP/1.x
//! responses that come back (chunked, Content-Length, pipelined, interim 1xx).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TlsClient;

impl TlsClient {
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

impl TlsClient {
    /// A TLS connection (ALPN http/1.1) to drive by hand: an upgrade, then the bytes of the
    /// stream behind it.
    pub async fn tls_h1(&self, addr: SocketAddr) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        self.connect(addr, Arc::new(config))
            .await
            .unwrap_or_else(|e| panic!("TLS connection to {addr} failed: {e}"))
    }

    /// A TLS connection with this client's ALPN over a TCP connection made elsewhere (from a
    /// chosen source address, say).
    pub async fn tls_over(&self, tcp: tokio::net::TcpStream) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let name = rustls_pki_types::ServerName::try_from(self.server_name.clone()).expect("valid server name");
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake failed: {e}"))
    }
}

/// A TCP connection to `addr` from the loopback address `source` (`127.0.0.2`: another peer
/// than the default 127.0.0.1).
pub async fn tcp_from(source: &str, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source address"))
        .expect("bind the source address");
    socket.connect(addr).await.expect("connect")
}
