//! One HTTP/1.1 connection kept open across requests, to see what the gateway remembers per
//! connection (the verified client certificate).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::TlsClient;
use super::request::{Reply, build_request};

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
    /// The gateway has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// GET on this connection; panics if the connection is gone.
    pub async fn get(&mut self, path: &str) -> Reply {
        self.try_get(path, &[])
            .await
            .unwrap_or_else(|e| panic!("GET {path} on the kept connection: {e}"))
    }

    /// GET with `headers` on this connection; `Err` when the connection is gone or broke.
    pub async fn try_get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, hyper::Error> {
        let mut req = build_request("GET", path, headers, Bytes::new());
        req.headers_mut().insert(
            http::header::HOST,
            HeaderValue::from_str(&self.authority).expect("host header"),
        );
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }
}
