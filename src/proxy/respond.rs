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

/// 405 for an endpoint that needs the kubelet's private API, saying what it would take.
pub fn needs_private_api(endpoint: &str) -> Response<Body> {
    let body = format!(
        "{endpoint} needs the kubelet's authenticated API. kubelet-gate forwards only to the kubelet's \
         read-only port (upstream.readOnly), which cannot serve it; forwarding to the kubelet's own \
         port (upstream.secure) is not available in this version.\n"
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

/// The upstream could not be reached or answered badly. The body never names the upstream.
pub fn bad_gateway() -> Response<Body> {
    go_http_error(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
}

pub fn gateway_timeout() -> Response<Body> {
    go_http_error(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n")
}
