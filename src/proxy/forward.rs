//! Forwarding to one of the kubelet's ports: one request in, one request out, to the configured
//! port only, with no client credential or identity header crossing over and both bodies
//! streamed. The read-only port ([`ReadOnlyPort`]) is plain HTTP; the kubelet's own port
//! (`super::secure`) is the same forwarding over TLS, plus upgrades: an upgrade request keeps
//! its `Upgrade` and goes on a connection of its own, and only a `101` to such a request hands
//! back the upstream's side of the tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;

use super::replay::{self, Tracking};
use super::respond::{self, Body};

/// How long an idle upstream connection is kept for reuse: well below the kubelet's own idle
/// timeout (kubernetes pkg/kubelet/server/server.go: `IdleTimeout: 90 * time.Second` on both its
/// ports), so the gateway drops a connection long before the kubelet closes it, instead of both
/// timing out at the same moment.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// An upstream connection reads into buffers of exactly this size (hyper's default grows to
/// about 400 KiB under a large body, and every chunk still queued for a slow HTTP/2 client
/// keeps its whole buffer alive). 32 KiB is the kubelet's own `io.Copy` buffer.
const UPSTREAM_READ_BUFFER: usize = 32 * 1024;

/// A client's request body as forwarded: within `limits.maxRequestBodyBytes`.
pub type RequestBody = http_body_util::Limited<Incoming>;

/// A forwarded body: the client's, or none for a request that may be sent a second time.
type UpstreamBody = Either<RequestBody, Empty<bytes::Bytes>>;

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

/// The WebSocket bearer-token subprotocol entry (authn::websocket); never forwarded.
const TOKEN_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// One of the kubelet's ports and the clients for it.
pub struct Port<C> {
    /// Pooled, for plain requests.
    client: Client<C, UpstreamBody>,
    /// Never pooled: an upgrade request's connection is the tunnel's, or closed after a refusal,
    /// never reused for another request.
    upgrades: Client<C, UpstreamBody>,
    scheme: Scheme,
    authority: Authority,
    host: HeaderValue,
    header_timeout: Duration,
}

/// The kubelet's read-only port (`upstream.readOnly`), its connections tracked so that a bodiless
/// GET the port closed a reused connection on, unanswered, is sent once more (`super::replay`).
pub type ReadOnlyPort = Port<Tracking<HttpConnector>>;

#[derive(Debug, thiserror::Error)]
#[error("upstream URL {0} must be {1}:// with a host")]
pub struct UpstreamUrlError(String, &'static str);

impl UpstreamUrlError {
    pub fn new(url: &Uri, scheme: &'static str) -> Self {
        UpstreamUrlError(url.to_string(), scheme)
    }
}

/// A forwarded request's answer, and for an accepted upgrade the upstream's side of the tunnel.
pub struct Forwarded {
    pub response: Response<Body>,
    pub upgraded: Option<OnUpgrade>,
}

impl ReadOnlyPort {
    /// `connect` bounds the TCP connect; `header_timeout` the wait for the response headers,
    /// after which the body streams with no total limit.
    pub fn new(url: &Uri, connect: Duration, header_timeout: Duration) -> Result<ReadOnlyPort, UpstreamUrlError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect));
        connector.set_nodelay(true);
        Port::with_connector(url, Scheme::HTTP, Tracking(connector), header_timeout)
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> Port<C> {
    pub fn with_connector(
        url: &Uri,
        scheme: Scheme,
        connector: C,
        header_timeout: Duration,
    ) -> Result<Port<C>, UpstreamUrlError> {
        let invalid = || UpstreamUrlError::new(url, if scheme == Scheme::HTTP { "http" } else { "https" });
        if url.scheme() != Some(&scheme) {
            return Err(invalid());
        }
        let authority = url.authority().cloned().ok_or_else(invalid)?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| invalid())?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .http1_read_buf_exact_size(UPSTREAM_READ_BUFFER)
            .build(connector.clone());
        let upgrades = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Port {
            client,
            upgrades,
            scheme,
            authority,
            host,
            header_timeout,
        })
    }

    /// Sends the request upstream at exactly `target`, the path and query that were authorized.
    pub async fn forward(
        &self,
        parts: Parts,
        body: RequestBody,
        target: PathAndQuery,
        peer: SocketAddr,
    ) -> Response<Body> {
        self.forward_upgradable(parts, body, target, peer, None).await.response
    }

    /// [`Port::forward`], keeping the request's upgrade to `protocol` (a value [`upgrade_protocol`]
    /// returned) when there is one. A `101` is accepted only then, and with it the tunnel's
    /// upstream side comes back; to a refused upgrade the client's connection is closed after the
    /// answer, so no byte sent after the request can be read as another request.
    pub async fn forward_upgradable(
        &self,
        mut parts: Parts,
        body: RequestBody,
        target: PathAndQuery,
        peer: SocketAddr,
        protocol: Option<HeaderValue>,
    ) -> Forwarded {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build();
        let Ok(uri) = uri else {
            tracing::warn!("could not build the upstream URI");
            return plain(failed(respond::bad_gateway()));
        };
        sanitize_request_headers(&mut parts.headers);
        parts.headers.insert(header::HOST, self.host.clone());
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            parts.headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        if let Some(protocol) = &protocol {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
        }
        // A request that may be sent twice goes without the client's (empty) body, so that the
        // second one is the same request. An upgrade never is: its connection becomes a tunnel.
        let replayable = protocol.is_none() && replay::replayable(&parts.method, &body);
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
        let client = if protocol.is_some() {
            &self.upgrades
        } else {
            &self.client
        };
        let send = async {
            match (client.request(request).await, again) {
                (Err(e), Some(again)) if replay::closed_before_answer(&e) => {
                    tracing::debug!(error = %error_chain(&e), "the upstream closed a reused connection before answering; sending the request again");
                    client.request(again).await
                }
                (result, _) => result,
            }
        };
        let mut response = match tokio::time::timeout(self.header_timeout, send).await {
            Err(_) => {
                tracing::warn!("upstream did not answer within {:?}", self.header_timeout);
                return plain(failed(respond::gateway_timeout()));
            }
            Ok(Err(e)) if body_too_large(&e) => {
                tracing::info!("request body over limits.maxRequestBodyBytes; the forwarded request was cut");
                return plain(respond::payload_too_large());
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %error_chain(&e), "upstream request failed");
                return plain(failed(respond::bad_gateway()));
            }
            Ok(Ok(response)) => response,
        };
        match (response.status(), &protocol) {
            (StatusCode::SWITCHING_PROTOCOLS, Some(_)) => {
                let upgraded = hyper::upgrade::on(&mut response);
                let (mut parts, _) = response.into_parts();
                let upgrade = parts.headers.get(header::UPGRADE).cloned();
                strip_hop_by_hop(&mut parts.headers);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                if let Some(upgrade) = upgrade {
                    parts.headers.insert(header::UPGRADE, upgrade);
                }
                Forwarded {
                    response: Response::from_parts(parts, respond::full(bytes::Bytes::new())),
                    upgraded: Some(upgraded),
                }
            }
            (status, _) if status.is_informational() => {
                // Nothing was asked to be upgraded: splicing here would hand the client a raw
                // connection to the kubelet (CVE-2018-1002105's shape).
                tracing::warn!(%status, "upstream answered with an informational status that was not asked for");
                plain(failed(respond::bad_gateway()))
            }
            (_, upgrade) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                if upgrade.is_some() {
                    parts
                        .headers
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                plain(Response::from_parts(parts, body.map_err(Into::into).boxed_unsync()))
            }
        }
    }
}

fn plain(response: Response<Body>) -> Forwarded {
    Forwarded {
        response,
        upgraded: None,
    }
}

/// The protocol an HTTP/1.1 request asks to upgrade to, when it is one the kubelet's streaming
/// endpoints speak (SPDY/3.1, WebSocket) and `Connection` names `upgrade` (the
/// `httpstream.IsUpgradeRequest` rule of k8s.io/apimachinery pkg/util/httpstream). Anything else
/// (`h2c` above all) is no upgrade, and its headers are dropped as hop-by-hop.
pub fn upgrade_protocol(parts: &Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = parts.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
    });
    let mut upgrades = parts.headers.get_all(header::UPGRADE).iter();
    let (Some(upgrade), None) = (upgrades.next(), upgrades.next()) else {
        return None;
    };
    let known = upgrade
        .to_str()
        .is_ok_and(|u| u.eq_ignore_ascii_case("SPDY/3.1") || u.eq_ignore_ascii_case("websocket"));
    (connection_upgrade && known).then(|| upgrade.clone())
}

/// Marks a response the gateway wrote because the upstream failed (as opposed to an error
/// status the upstream itself sent), for the metrics and the audit record.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamFailure;

pub(super) fn failed(mut response: Response<Body>) -> Response<Body> {
    response.extensions_mut().insert(UpstreamFailure);
    response
}

/// Removes everything a client must not pass to the kubelet: hop-by-hop headers and those
/// named in `Connection`, credentials (the `Authorization` header, the WebSocket token entry of
/// `Sec-WebSocket-Protocol`), impersonation and front-proxy identity headers, and any
/// forwarding headers the client made up (the gateway sets its own).
pub fn sanitize_request_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    headers.remove(HeaderName::from_static("http2-settings"));
    headers.remove(header::FORWARDED);
    strip_token_protocol(headers);
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

/// Drops every `base64url.bearer.authorization.k8s.io.` entry from `Sec-WebSocket-Protocol`,
/// keeping the other protocols in their order, whatever authenticated the request: a token
/// that was not used (another credential won, or the request is no upgrade) must not cross
/// either.
fn strip_token_protocol(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .cloned()
        .collect();
    let has_token = |v: &HeaderValue| {
        v.to_str().map_or(true, |s| {
            s.split(',').any(|p| p.trim().starts_with(TOKEN_PROTOCOL_PREFIX))
        })
    };
    if !values.iter().any(has_token) {
        return;
    }
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    let kept: Vec<&str> = values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(TOKEN_PROTOCOL_PREFIX))
        .collect();
    if let Ok(v) = HeaderValue::from_str(&kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
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

/// The client's body grew past `limits.maxRequestBodyBytes` while it was being sent.
fn body_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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

    #[test]
    fn the_token_protocol_never_crosses_and_the_others_stay_in_order() {
        let protocols = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(v).expect("value"));
            }
            sanitize_request_headers(&mut h);
            h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .map(|v| v.to_str().expect("ascii").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            protocols(&["base64url.bearer.authorization.k8s.io.dG9r, v5.channel.k8s.io, v4.channel.k8s.io"]),
            ["v5.channel.k8s.io, v4.channel.k8s.io"]
        );
        assert_eq!(
            protocols(&["v5.channel.k8s.io", "base64url.bearer.authorization.k8s.io.dG9r"]),
            ["v5.channel.k8s.io"]
        );
        assert!(protocols(&["base64url.bearer.authorization.k8s.io.dG9r"]).is_empty());
        assert_eq!(
            protocols(&["v5.channel.k8s.io", "channel.k8s.io"]),
            ["v5.channel.k8s.io", "channel.k8s.io"],
            "left alone without a token"
        );
    }

    #[test]
    fn only_spdy_and_websocket_over_http_1_1_are_upgrades() {
        let parts = |version: Version, headers: &[(&str, &str)]| {
            let mut b = Request::builder().version(version).uri("/exec/a/b/c");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).expect("request").into_parts().0
        };
        let up = |v, h: &[(&str, &str)]| upgrade_protocol(&parts(v, h)).map(|p| p.to_str().expect("ascii").to_owned());
        let v11 = Version::HTTP_11;
        assert_eq!(
            up(v11, &[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]).as_deref(),
            Some("SPDY/3.1")
        );
        assert_eq!(
            up(v11, &[("connection", "keep-alive, upgrade"), ("upgrade", "websocket")]).as_deref(),
            Some("websocket")
        );
        assert_eq!(up(v11, &[("upgrade", "websocket")]), None, "Connection must name it");
        assert_eq!(up(v11, &[("connection", "Upgrade"), ("upgrade", "h2c")]), None);
        assert_eq!(
            up(Version::HTTP_10, &[("connection", "Upgrade"), ("upgrade", "websocket")]),
            None
        );
        assert_eq!(
            up(
                v11,
                &[
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("upgrade", "SPDY/3.1")
                ]
            ),
            None,
            "two Upgrade headers are ambiguous"
        );
    }
}
