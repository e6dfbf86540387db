//! From the socket to an answer: TLS and HTTP (h2 and HTTP/1.1) per connection, the request
//! record, bearer authentication, query decoding, routing, list and get, and the
//! `metav1.Status` and JSON answers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::authn::{Caller, authenticate};
use super::cluster::Attributes;
use super::create::create_csr;
use super::meta::uuid;
use super::record::Call;
use super::reviews::{CLUSTER_ROLE_BINDINGS_PATH, Review, review_answer};
use super::selector::Selector;
use super::store::{Inner, Res};
use super::watch::start_watch;
use super::{CSR_PATH, MAX_REQUEST_BYTES, NODES_PATH, lock};
use crate::common::serving::{Running, wait_stop};

pub(super) fn spawn_server(listener: TcpListener, inner: Arc<Inner>) -> Running {
    Running::spawn(listener, move |tcp, stop_rx| {
        inner.connections.fetch_add(1, Ordering::Relaxed);
        serve_conn(tcp, inner.clone(), stop_rx)
    })
}

async fn serve_conn(tcp: TcpStream, inner: Arc<Inner>, mut stop_rx: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let acceptor = tokio_rustls::TlsAcceptor::from(inner.tls.clone());
    let tls = tokio::select! {
        _ = wait_stop(&mut stop_rx) => return,
        r = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            _ => return,
        },
    };
    let chain: Arc<Vec<CertificateDer<'static>>> = Arc::new(
        tls.get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
    );
    let svc = service_fn(move |req| handle(req, inner.clone(), chain.clone()));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let serve = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        _ = wait_stop(&mut stop_rx) => {}
        _ = serve => {}
    }
}

/// A response body: whole, or a watch stream fed by a task (one frame per event).
pub(super) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

pub(super) type Resp = Response<Body>;

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `%XX` and `+` decoding of one query component.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded query parameters; the first value of a name counts.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Go's `strconv.ParseBool`.
pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

enum Route {
    /// POST of a review (`reviews.rs`).
    Review(Review),
    /// GET of the ClusterRoleBindings.
    ClusterRoleBindings,
    Collection(Res),
    /// The object (GET, DELETE for CSRs).
    Object(Res, String),
    /// A subresource that serves the object on GET (`status`, `approval`).
    Subresource(Res, String),
    Unknown,
}

fn route(path: &str) -> Route {
    if let Some(review) = Review::of(path) {
        return Route::Review(review);
    }
    if path == CLUSTER_ROLE_BINDINGS_PATH {
        return Route::ClusterRoleBindings;
    }
    let split = |prefix: &str| -> Option<Vec<String>> {
        let rest = path.strip_prefix(prefix)?;
        if rest.is_empty() || rest == "/" {
            return Some(Vec::new());
        }
        let rest = rest.strip_prefix('/')?;
        Some(rest.split('/').map(|s| percent_decode(s, false)).collect())
    };
    for (prefix, res) in [(CSR_PATH, Res::Csr), (NODES_PATH, Res::Node)] {
        if let Some(segments) = split(prefix) {
            let subresources: &[&str] = match res {
                Res::Csr => &["status", "approval"],
                Res::Node => &["status"],
            };
            return match segments.as_slice() {
                [] => Route::Collection(res),
                [name] if !name.is_empty() => Route::Object(res, name.clone()),
                [name, sub] if !name.is_empty() && subresources.contains(&sub.as_str()) => {
                    Route::Subresource(res, name.clone())
                }
                _ => Route::Unknown,
            };
        }
    }
    Route::Unknown
}

async fn handle(
    req: Request<Incoming>,
    inner: Arc<Inner>,
    chain: Arc<Vec<CertificateDer<'static>>>,
) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.to_string());
    lock(&inner.requests).push((parts.method.as_str().to_string(), target.clone()));
    let raw = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .ok();
    let (caller, credential) = authenticate(&inner, &parts.headers, &chain);
    let answer = match &caller {
        None => status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None),
        Some(caller) => answer(&inner, caller, &parts, raw),
    };
    lock(&inner.calls).push(Call {
        method: parts.method.as_str().to_string(),
        target,
        user: caller.as_ref().map(|c| c.user.clone()),
        groups: caller.map(|c| c.groups).unwrap_or_default(),
        credential,
        status: answer.status().as_u16(),
    });
    Ok(answer)
}

/// What RBAC checks for a route and method; `None` for what is answered without a check
/// (unknown paths, wrong methods).
fn attributes<'a>(route: &'a Route, method: &Method, is_watch: bool) -> Option<Attributes<'a>> {
    let (group, resource) = match route {
        Route::Review(r) => (r.group(), r.resource()),
        Route::ClusterRoleBindings => ("rbac.authorization.k8s.io", "clusterrolebindings"),
        Route::Collection(res) | Route::Object(res, _) | Route::Subresource(res, _) => (res.group(), res.plural()),
        Route::Unknown => return None,
    };
    let verb = match (route, method) {
        (Route::Review(_), &Method::POST) | (Route::Collection(Res::Csr), &Method::POST) => "create",
        (Route::Collection(_) | Route::Object(..), &Method::GET) if is_watch => "watch",
        (Route::Collection(_) | Route::ClusterRoleBindings, &Method::GET) => "list",
        (Route::Object(..) | Route::Subresource(..), &Method::GET) => "get",
        (Route::Object(..), &Method::DELETE) => "delete",
        _ => return None,
    };
    Some(Attributes {
        verb,
        group,
        resource,
        subresource: "",
    })
}

fn answer(inner: &Arc<Inner>, caller: &Caller, parts: &http::request::Parts, raw: Option<Bytes>) -> Resp {
    let query = Query(query_pairs(parts.uri.query().unwrap_or("")));
    let param = |name: &str| query.get(name);
    let is_watch = param("watch").and_then(parse_bool).unwrap_or(false);
    let route = route(parts.uri.path());
    if let Some(a) = attributes(&route, &parts.method, is_watch)
        && !caller.may(inner, &a)
    {
        return status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &a.forbidden(&caller.user),
            Some(json!({})),
        );
    }
    if is_watch && take_watch_failure(inner) {
        let mut answer = status_response(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests, please try again later.",
            Some(json!({"retryAfterSeconds": 1})),
        );
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        return answer;
    }
    match (route, &parts.method) {
        (Route::Unknown, _) => not_found_generic(),
        (Route::Review(review), &Method::POST) => review_answer(inner, caller, review, raw),
        (Route::ClusterRoleBindings, &Method::GET) => {
            let items = lock(&inner.state).cluster.binding_objects();
            json_response(
                StatusCode::OK,
                &json!({"kind": "ClusterRoleBindingList", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {}, "items": items}),
            )
        }
        (Route::Collection(res), &Method::GET) if is_watch => start_watch(inner, res, None, &query),
        (Route::Collection(res), &Method::GET) => list(inner, res, &query),
        (Route::Collection(Res::Csr), &Method::POST) => {
            let content_type = header_string(&parts.headers, header::CONTENT_TYPE);
            create_csr(inner, caller, raw, content_type.as_deref(), param("dryRun").is_some())
        }
        (Route::Object(res, name), &Method::GET) if is_watch => start_watch(inner, res, Some(&name), &query),
        (Route::Object(res, name) | Route::Subresource(res, name), &Method::GET) => {
            match lock(&inner.state).get(res, &name) {
                Some(object) => json_response(StatusCode::OK, object),
                None => not_found(res, &name),
            }
        }
        (Route::Object(Res::Csr, name), &Method::DELETE) => delete_csr_http(inner, &name),
        _ => status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ),
    }
}

fn take_watch_failure(inner: &Inner) -> bool {
    let mut state = lock(&inner.state);
    if state.failing_watches == 0 {
        return false;
    }
    state.failing_watches -= 1;
    true
}

fn delete_csr_http(inner: &Inner, name: &str) -> Resp {
    match inner.delete_csr(name) {
        Some(object) => json_response(StatusCode::OK, &object),
        None => not_found(Res::Csr, name),
    }
}

// ---- list and get ----

fn list(inner: &Inner, res: Res, query: &Query) -> Resp {
    let param = |name: &str| query.get(name);
    let selector = match Selector::parse(res, param("fieldSelector"), param("labelSelector")) {
        Ok(s) => s,
        Err(m) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &m, None),
    };
    let state = lock(&inner.state);
    let items: Vec<Value> = state
        .live(res)
        .into_iter()
        .filter(|o| selector.matches(res, o))
        .map(|o| {
            // List items carry no TypeMeta.
            let mut item = o.clone();
            if let Some(m) = item.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            item
        })
        .collect();
    let body = json!({
        "kind": format!("{}List", res.kind()),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": state.rv.to_string()},
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

// ---- answers ----

fn not_found(res: Res, name: &str) -> Resp {
    let mut details = json!({"name": name, "kind": res.plural()});
    if !res.group().is_empty() {
        details["group"] = json!(res.group());
    }
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", res.qualified()),
        Some(details),
    )
}

fn not_found_generic() -> Resp {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// A `metav1.Status` answer (Go omitempty: no empty reason or details).
pub(super) fn status_response(status: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let mut body = Map::new();
    body.insert("kind".into(), json!("Status"));
    body.insert("apiVersion".into(), json!("v1"));
    body.insert("metadata".into(), json!({}));
    let outcome = if status.is_success() { "Success" } else { "Failure" };
    body.insert("status".into(), json!(outcome));
    if !message.is_empty() {
        body.insert("message".into(), json!(message));
    }
    if !reason.is_empty() {
        body.insert("reason".into(), json!(reason));
    }
    if let Some(d) = details {
        body.insert("details".into(), d);
    }
    body.insert("code".into(), json!(status.as_u16()));
    json_response(status, &Value::Object(body))
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut bytes = serde_json::to_vec(body).expect("serialize JSON answer");
    bytes.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .header("audit-id", uuid())
        .body(Body::Full(Some(Bytes::from(bytes))))
        .expect("response")
}
