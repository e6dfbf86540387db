//! One request per fresh connection over hyper's `client::conn` (h2 or HTTP/1.1 as ALPN decides),
//! and the answers: read whole ([`Reply`]) or as they arrive ([`Streaming`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::TlsClient;
use super::error::ClientError;

impl TlsClient {
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
