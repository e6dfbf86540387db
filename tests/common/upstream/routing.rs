//! The read-only port's routing, as the kubelet has it: Go 1.22+ ServeMux (path cleaning,
//! redirects, exact and subtree patterns, 404s) in front of go-restful (404/405 with `Allow`),
//! the healthz, metrics and statusz endpoints and the disabled debug stubs.

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::serve::{RespBody, respond};
use super::{
    DEBUG_DISABLED_BODY, METRICS_CONTENT_TYPE, METRICS_TEXT, NOT_FOUND_BODY, PODS_JSON, REDIRECT_STATUS, STATUSZ_TEXT,
    SUMMARY_JSON, TEXT_CONTENT_TYPE,
};

const HEALTHZ: &[&str] = &["/healthz", "/healthz/ping", "/healthz/log", "/healthz/syncloop"];
const METRICS: &[&str] = &[
    "/metrics",
    "/metrics/cadvisor",
    "/metrics/resource",
    "/metrics/probes",
    "/metrics/slis",
];
/// Exact (non-subtree) ServeMux patterns.
const EXACT: &[&str] = &[
    "/healthz",
    "/healthz/ping",
    "/healthz/log",
    "/healthz/syncloop",
    "/metrics",
    "/metrics/cadvisor",
    "/metrics/resource",
    "/metrics/probes",
    "/metrics/slis",
    "/statusz",
    "/pods",
];
/// "Debug endpoints are disabled" stubs (subtree patterns).
const DISABLED: &[&str] = &[
    "/run/",
    "/exec/",
    "/attach/",
    "/portForward/",
    "/containerLogs/",
    "/runningpods/",
    "/debug/pprof/",
    "/logs/",
];
/// go-restful web service roots registered as subtrees.
const RESTFUL: &[&str] = &["/pods/", "/stats/"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(&'static str),
    Subtree(&'static str),
}

fn segments(pattern: &str) -> Vec<String> {
    pattern[1..].split('/').map(str::to_string).collect()
}

/// Go ServeMux matching on unescaped segments; exact patterns first, then the longest subtree.
fn mux_match(segs: &[String]) -> Option<Pattern> {
    for p in EXACT {
        if segments(p) == segs {
            return Some(Pattern::Exact(p));
        }
    }
    let mut best: Option<(&'static str, usize)> = None;
    for p in DISABLED.iter().chain(RESTFUL) {
        let ps = segments(p); // ends with "" (trailing slash)
        let prefix = &ps[..ps.len() - 1];
        if segs.len() > prefix.len() && segs[..prefix.len()] == *prefix && best.is_none_or(|(_, n)| prefix.len() > n) {
            best = Some((p, prefix.len()));
        }
    }
    best.map(|(p, _)| Pattern::Subtree(p))
}

fn is_subtree_root(segs: &[String]) -> bool {
    DISABLED.iter().chain(RESTFUL).any(|p| segments(p) == segs)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; None on a malformed escape (Go answers 400 then).
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex_val(*b.get(i + 1)?)?;
            let lo = hex_val(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `net/url` escaping of a path (encodePath mode).
fn escape_path(p: &str) -> String {
    let mut out = String::new();
    for &c in p.as_bytes() {
        let keep = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
            );
        if keep {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Go's `path.Clean` for a rooted path.
fn path_clean(p: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    format!("/{}", stack.join("/"))
}

/// net/http's `cleanPath`: path.Clean, keeping a trailing slash.
fn go_clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_string();
    }
    let p = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    let mut np = path_clean(&p);
    if p.ends_with('/') && np != "/" {
        np.push('/');
    }
    np
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// `http.Redirect` as Go writes it.
fn go_redirect(method: &Method, location: String) -> Response<RespBody> {
    let status = StatusCode::from_u16(REDIRECT_STATUS).expect("redirect status");
    let mut b = Response::builder()
        .status(status)
        .header(header::LOCATION, location.as_str());
    if method == Method::GET || method == Method::HEAD {
        b = b.header(header::CONTENT_TYPE, "text/html; charset=utf-8");
    }
    let body = if method == Method::GET {
        format!(
            "<a href=\"{}\">{}</a>.\n\n",
            html_escape(&location),
            status.canonical_reason().unwrap_or("")
        )
    } else {
        String::new()
    };
    b.body(Full::new(Bytes::from(body)).boxed()).expect("response")
}

fn with_query(path: String, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    }
}

/// What the read-only port answers for this request.
pub(super) fn kubelet_response(method: &Method, uri: &http::Uri) -> Response<RespBody> {
    if uri.path() == "*" {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::new()).boxed())
            .expect("response");
    }
    let escaped = uri.path();
    let query = uri.query();
    let Some(decoded) = unescape(escaped) else {
        // net/http rejects an unparsable request-target before any handler.
        let mut r = respond(
            StatusCode::BAD_REQUEST,
            "400 Bad Request",
            Some(TEXT_CONTENT_TYPE),
            false,
        );
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return r;
    };
    // Go 1.22+ ServeMux: clean the escaped path, match on unescaped segments.
    let clean = go_clean_path(escaped);
    let segs: Vec<String> = clean[1..].split('/').map(|s| unescape(s).unwrap_or_default()).collect();
    let matched = mux_match(&segs);
    let exact = matches!(matched, Some(Pattern::Exact(_)))
        || matches!(matched, Some(Pattern::Subtree(p)) if segments(p) == segs);
    if !exact && !clean.ends_with('/') {
        let mut slashed = segs.clone();
        slashed.push(String::new());
        if is_subtree_root(&slashed) {
            let target = escape_path(&format!("{}/", go_clean_path(&decoded)));
            return go_redirect(method, with_query(target, query));
        }
    }
    if clean != escaped {
        return go_redirect(method, with_query(escape_path(&clean), query));
    }
    let text = |status: StatusCode, body: &'static str| respond(status, body, Some(TEXT_CONTENT_TYPE), true);
    match matched {
        None => text(StatusCode::NOT_FOUND, NOT_FOUND_BODY),
        Some(Pattern::Exact(p)) if HEALTHZ.contains(&p) => {
            let verbose = query.is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some("verbose")));
            if p == "/healthz" && verbose {
                text(
                    StatusCode::OK,
                    "[+]ping ok\n[+]log ok\n[+]syncloop ok\nhealthz check passed\n",
                )
            } else {
                text(StatusCode::OK, "ok")
            }
        }
        Some(Pattern::Exact(p)) if METRICS.contains(&p) => {
            respond(StatusCode::OK, METRICS_TEXT, Some(METRICS_CONTENT_TYPE), false)
        }
        Some(Pattern::Exact("/statusz")) => text(StatusCode::OK, STATUSZ_TEXT),
        Some(Pattern::Exact("/pods")) | Some(Pattern::Subtree("/pods/")) => {
            restful(method, &decoded, "/pods", &["GET"], PODS_JSON)
        }
        Some(Pattern::Subtree("/stats/")) => {
            restful(method, &decoded, "/stats/summary", &["GET", "POST"], SUMMARY_JSON)
        }
        Some(Pattern::Subtree(_)) => text(StatusCode::METHOD_NOT_ALLOWED, DEBUG_DISABLED_BODY),
        Some(Pattern::Exact(_)) => text(StatusCode::NOT_FOUND, NOT_FOUND_BODY),
    }
}

/// A go-restful web service with one JSON route (a trailing slash also matches it).
fn restful(
    method: &Method,
    decoded_path: &str,
    route: &str,
    methods: &[&str],
    json: &'static str,
) -> Response<RespBody> {
    let trimmed = decoded_path.strip_suffix('/').unwrap_or(decoded_path);
    if trimmed != route {
        return respond(
            StatusCode::NOT_FOUND,
            "404: Page Not Found",
            Some(TEXT_CONTENT_TYPE),
            false,
        );
    }
    if !methods.contains(&method.as_str()) {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "405: Method Not Allowed",
            Some(TEXT_CONTENT_TYPE),
            false,
        );
        r.headers_mut().insert(
            header::ALLOW,
            http::HeaderValue::from_str(&methods.join(", ")).expect("allow header"),
        );
        return r;
    }
    respond(StatusCode::OK, json, Some("application/json"), false)
}
