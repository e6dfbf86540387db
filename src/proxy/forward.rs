//! Forwarding to the kubelet's read-only port: one request in, one request out, to the
//! configured upstream only, with no client credential or identity header crossing over and
//! both bodies streamed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::replay::{self, Tracking};
use super::respond::{self, Body};

/// How long an idle upstream connection is kept for reuse: well below the read-only port's own
/// idle timeout (kubernetes pkg/kubelet/server/server.go `ListenAndServeKubeletReadOnlyServer`:
/// `IdleTimeout: 90 * time.Second`), so the gateway drops a connection long before the kubelet
/// closes it, instead of both timing out at the same moment.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A forwarded body: the client's, or none for a request sent a second time.
type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the legacy ones proxies strip).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The kubelet's read-only port (`upstream.readOnly`) and a pooled HTTP/1.1 client for it.
pub struct ReadOnlyPort {
    client: Client<Tracking<HttpConnector>, UpstreamBody>,
    scheme: Scheme,
    authority: Authority,
    host: HeaderValue,
    header_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream URL {0} must be http:// with a host")]
pub struct UpstreamUrlError(String);

impl ReadOnlyPort {
    /// `connect` bounds the TCP connect; `header_timeout` the wait for the response headers,
    /// after which the body streams with no total limit.
    pub fn new(url: &Uri, connect: Duration, header_timeout: Duration) -> Result<ReadOnlyPort, UpstreamUrlError> {
        let invalid = || UpstreamUrlError(url.to_string());
        if url.scheme() != Some(&Scheme::HTTP) {
            return Err(invalid());
        }
        let authority = url.authority().cloned().ok_or_else(invalid)?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| invalid())?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(Tracking(connector));
        Ok(ReadOnlyPort {
            client,
            scheme: Scheme::HTTP,
            authority,
            host,
            header_timeout,
        })
    }

    /// Sends the request upstream at exactly `target`, the path and query that were authorized.
    pub async fn forward(
        &self,
        mut parts: Parts,
        body: Incoming,
        target: PathAndQuery,
        peer: SocketAddr,
    ) -> Response<Body> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build();
        let Ok(uri) = uri else {
            tracing::warn!("could not build the upstream URI");
            return failed(respond::bad_gateway());
        };
        sanitize_request_headers(&mut parts.headers);
        parts.headers.insert(header::HOST, self.host.clone());
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            parts.headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        // A request that may be sent twice goes without the client's (empty) body, so that the
        // second one is the same request.
        let replayable = replay::replayable(&parts.method, &body);
        let mut request = Request::new(match replayable {
            true => Either::Right(Empty::new()),
            false => Either::Left(body),
        });
        *request.method_mut() = parts.method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = parts.headers;
        let again = replayable.then(|| {
            let mut again = Request::new(Either::Right(Empty::new()));
            *again.method_mut() = request.method().clone();
            *again.uri_mut() = request.uri().clone();
            *again.version_mut() = Version::HTTP_11;
            *again.headers_mut() = request.headers().clone();
            again
        });
        let send = async {
            match (self.client.request(request).await, again) {
                (Err(e), Some(again)) if replay::closed_before_answer(&e) => {
                    tracing::debug!(error = %error_chain(&e), "the upstream closed a reused connection before answering; sending the request again");
                    self.client.request(again).await
                }
                (result, _) => result,
            }
        };

        let response = match tokio::time::timeout(self.header_timeout, send).await {
            Err(_) => {
                tracing::warn!("upstream did not answer within {:?}", self.header_timeout);
                return failed(respond::gateway_timeout());
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %error_chain(&e), "upstream request failed");
                return failed(respond::bad_gateway());
            }
            Ok(Ok(response)) => response,
        };
        if response.status().is_informational() {
            // Nothing was asked to be upgraded: splicing here would hand the client a raw
            // connection to the kubelet (CVE-2018-1002105's shape).
            tracing::warn!(status = %response.status(), "upstream answered a plain request with an informational status");
            return failed(respond::bad_gateway());
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
    }
}

/// Marks a response the gateway wrote because the upstream failed (as opposed to an error
/// status the upstream itself sent), for the metrics and the audit record.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamFailure;

fn failed(mut response: Response<Body>) -> Response<Body> {
    response.extensions_mut().insert(UpstreamFailure);
    response
}

/// Removes everything a client must not pass to the kubelet: hop-by-hop headers and those
/// named in `Connection`, credentials, impersonation and front-proxy identity headers, and
/// any forwarding headers the client made up (the gateway sets its own).
pub fn sanitize_request_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    headers.remove(HeaderName::from_static("http2-settings"));
    headers.remove(header::FORWARDED);
    let identity: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            n.starts_with("impersonate-") || n.starts_with("x-remote-") || n.starts_with("x-forwarded-")
        })
        .cloned()
        .collect();
    for name in identity {
        headers.remove(name);
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.into_iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credentials_identity_and_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer x"),
            ("proxy-authorization", "Basic x"),
            ("connection", "keep-alive, Foo"),
            ("foo", "bar"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAA"),
            ("impersonate-user", "admin"),
            ("impersonate-group", "system:masters"),
            ("impersonate-extra-scopes", "x"),
            ("x-remote-user", "admin"),
            ("x-remote-group", "system:masters"),
            ("x-remote-extra-scopes", "x"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=1.2.3.4"),
            ("host", "evil:10255"),
            ("accept", "application/json"),
            ("user-agent", "kubectl"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        sanitize_request_headers(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "user-agent"]);
    }
}
