//! Every response the gateway writes itself, and the kubelet's exact strings, in one place.
//! Why a request was refused goes to the log, never into these bodies.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, LOCATION, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response: the gateway's own, or one streamed from the upstream.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A body that holds `T` (a place in a quota, an open request) until it ends or is dropped.
pub struct Holding<T> {
    pub body: Body,
    pub held: T,
}

impl<T: Unpin> hyper::body::Body for Holding<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A complete body from static or owned bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    r
}

/// Go's `http.Error`: text plus `X-Content-Type-Options: nosniff`, body ending in a newline.
fn go_http_error(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = text(status, body);
    r.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// The answer to a HEAD request: the same status and headers, no body. Go's server never sends
/// a HEAD response's body (and over HTTP/2 a DATA frame there is a protocol error for the
/// client); it keeps the `Content-Length` the body would have had, and so does this.
pub fn without_body(response: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt as _;
    let (mut parts, body) = response.into_parts();
    if let Some(len) = hyper::body::Body::size_hint(&body).exact()
        && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(
        parts,
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

/// 401 from the kubelet's auth filter: exactly `Unauthorized`, no newline, no challenge.
pub fn unauthorized() -> Response<Body> {
    text(StatusCode::UNAUTHORIZED, "Unauthorized")
}

/// 403 from the ≥1.32 filter loop, listing every subresource tried.
pub fn forbidden(user: &str, verb: &str, subresources: &[&str]) -> Response<Body> {
    let body = format!(
        "Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[{}])\n",
        subresources.join(" ")
    );
    text(StatusCode::FORBIDDEN, body)
}

/// 500 when the authorizer failed on a subresource.
pub fn authorization_error(user: &str, verb: &str, subresource: &str) -> Response<Body> {
    let body = format!("Authorization error (user={user}, verb={verb}, resource=nodes, subresource={subresource})");
    text(StatusCode::INTERNAL_SERVER_ERROR, body)
}

/// The mux's 404 for a path no pattern matches.
pub fn mux_not_found() -> Response<Body> {
    go_http_error(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// The mux's redirect of a subtree root requested without its slash (Go ≤1.25: 301).
pub fn mux_redirect(location: &'static str, query: Option<&str>, with_body: bool) -> Response<Body> {
    let target = match query {
        Some(q) => format!("{location}?{q}"),
        None => location.to_owned(),
    };
    let body = if with_body {
        format!("<a href=\"{target}\">Moved Permanently</a>.\n\n")
    } else {
        String::new()
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(LOCATION, v);
    }
    if with_body {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    }
    r
}

/// go-restful's 404 for a path under a known root that no route matches.
pub fn route_not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404: Page Not Found")
}

/// go-restful's 405 for a route that exists with other methods.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// 405 for an endpoint that needs the kubelet's private API when no `upstream.secure` is
/// configured, saying what it would take.
pub fn needs_private_api(endpoint: &str) -> Response<Body> {
    let body = format!(
        "{endpoint} needs the kubelet's authenticated API. kubelet-gate forwards it only to the kubelet's \
         own port (upstream.secure), which is not configured; the read-only port cannot serve it.\n"
    );
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, body);
    r.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

pub fn bad_request() -> Response<Body> {
    go_http_error(StatusCode::BAD_REQUEST, "400 Bad Request\n")
}

pub fn uri_too_long() -> Response<Body> {
    go_http_error(StatusCode::URI_TOO_LONG, "414 URI Too Long\n")
}

pub fn header_too_large() -> Response<Body> {
    go_http_error(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "431 Request Header Fields Too Large\n",
    )
}

/// A forwarded request's body over `limits.maxRequestBodyBytes` (the kubelet has no limit; Go's
/// `http.MaxBytesReader` words the refusal).
pub fn payload_too_large() -> Response<Body> {
    go_http_error(StatusCode::PAYLOAD_TOO_LARGE, "http: request body too large\n")
}

/// A stream over `limits.maxStreamsPerUser` or `limits.maxLogStreamsPerConnection`, in
/// kube-apiserver's words for its own in-flight limit.
pub fn too_many_requests() -> Response<Body> {
    let mut r = go_http_error(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests, please try again later.\n",
    );
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The upstream could not be reached or answered badly. The body never names the upstream.
pub fn bad_gateway() -> Response<Body> {
    go_http_error(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
}

pub fn gateway_timeout() -> Response<Body> {
    go_http_error(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n")
}

// ---- Native logs: the kubelet's `getContainerLogs` bodies and Go's `http.FileServer` answers.

/// A `/containerLogs` refusal: go-restful's `WriteError`, the error text as the whole body
/// (Go sniffs it as text/plain), no newline. K: pkg/kubelet/server/server.go `getContainerLogs`.
pub fn container_logs_error(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    text(status, message)
}

pub const MISSING_POD_ID: &str = r#"{"message": "Missing podID."}"#;
pub const MISSING_CONTAINER: &str = r#"{"message": "Missing container name."}"#;
pub const MISSING_NAMESPACE: &str = r#"{"message": "Missing podNamespace."}"#;
/// 400: the query does not decode into `v1.PodLogOptions`.
pub const UNDECODABLE_QUERY: &str = r#"{"message": "Unable to decode query."}"#;
/// 422: `ValidatePodLogOptions` failed.
pub const INVALID_LOG_REQUEST: &str = r#"{"message": "Invalid request."}"#;

/// 404 for a pod this node does not have.
pub fn pod_not_found(pod: &str) -> Response<Body> {
    let body = format!("pod {} does not exist", go_quote(pod.as_bytes()));
    container_logs_error(StatusCode::NOT_FOUND, body)
}

/// 404 for a container the pod does not have.
pub fn container_not_found(container: &str, pod: &str) -> Response<Body> {
    let body = format!(
        "container {} not found in pod {}",
        go_quote(container.as_bytes()),
        go_quote(pod.as_bytes())
    );
    container_logs_error(StatusCode::NOT_FOUND, body)
}

/// 400 for `previous=true` when the container has not restarted (K: pkg/kubelet/kubelet_pods.go
/// `validateContainerLogStatus`).
pub fn no_previous_container(container: &str, pod: &str) -> Response<Body> {
    let body = format!(
        "previous terminated container {} in pod {} not found",
        go_quote(container.as_bytes()),
        go_quote(pod.as_bytes())
    );
    container_logs_error(StatusCode::BAD_REQUEST, body)
}

/// 400 for a container without any log file yet (the kubelet's answer for a container with
/// no status).
pub fn container_not_available(container: &str, pod: &str) -> Response<Body> {
    let body = format!(
        "container {} in pod {} is not available",
        go_quote(container.as_bytes()),
        go_quote(pod.as_bytes())
    );
    container_logs_error(StatusCode::BAD_REQUEST, body)
}

/// The text the kubelet appends to a log stream when the first line is in no known format.
pub fn unsupported_log_format(line: &[u8]) -> String {
    format!(
        "failed to get parse function: unsupported log format: {}",
        go_quote(line)
    )
}

/// Go's `http.Error` from the file server: `404 page not found`, `403 Forbidden`,
/// `500 Internal Server Error`, `invalid range`, ... with its newline.
pub fn file_server_error(status: StatusCode, message: &'static str) -> Response<Body> {
    go_http_error(status, message)
}

/// The file server's `localRedirect`: 301, a relative `Location`, no body.
pub fn local_redirect(location: HeaderValue) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    r.headers_mut().insert(LOCATION, location);
    r
}

/// 416 for a range that starts past the end of the file.
pub fn range_not_satisfiable(size: u64) -> Response<Body> {
    let mut r = go_http_error(StatusCode::RANGE_NOT_SATISFIABLE, "invalid range: failed to overlap\n");
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        r.headers_mut().insert(http::header::CONTENT_RANGE, v);
    }
    r
}

/// 304 or 412: a status and nothing else (plus `Last-Modified` for 304, as Go keeps it).
pub fn bare_status(status: StatusCode, last_modified: Option<HeaderValue>) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    if let Some(v) = last_modified {
        r.headers_mut().insert(http::header::LAST_MODIFIED, v);
    }
    r
}

/// Go's `%q` (`strconv.Quote`) of a string that may hold any bytes: `\"`, `\\`, the C escapes,
/// `\xNN` for other control bytes and invalid UTF-8, `\uNNNN` for non-printable characters.
/// Printable means what Go's `unicode.IsPrint` says for ASCII; beyond ASCII, control and
/// white-space characters are escaped and everything else is kept (an approximation).
pub fn go_quote(s: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                ' '..='~' => out.push(c),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() || c.is_whitespace() => {
                    let _ = if (c as u32) < 0x10000 {
                        write!(out, "\\u{:04x}", c as u32)
                    } else {
                        write!(out, "\\U{:08x}", c as u32)
                    };
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote(b"web-0"), r#""web-0""#);
        assert_eq!(go_quote(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote(b"x\n\t\r\x07\x08\x0b\x0c"), r#""x\n\t\r\a\b\v\f""#);
        assert_eq!(go_quote(b"\x00\x1b\x7f"), r#""\x00\x1b\x7f""#);
        assert_eq!(go_quote("é☃".as_bytes()), "\"é☃\"");
        assert_eq!(go_quote(b"\xff\xfeok"), r#""\xff\xfeok""#);
        assert_eq!(go_quote("\u{85}\u{a0}".as_bytes()), r#""\u0085\u00a0""#);
    }
}
