//! From the socket to a decoded review (steps 1 to 6): TLS with an optional client certificate,
//! the request record, the transport faults, authentication, routing and the GETs of Nodes and
//! CSRs, content negotiation and decoding.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::answers::{json_response, plain, scripted_status, status_response};
use super::record::Recorded;
use super::reviews::{Review, subject_access_review, token_review};
use super::script::Behaviour;
use super::{
    CSR_PATH, GARBAGE_BODY, GATEWAY_CERT_CN, GATEWAY_TOKEN, GATEWAY_USER, HTML_BODY, Inner, MAX_REQUEST_BYTES,
    NODES_PATH, lock,
};
use crate::common::serving::{Running, wait_stop};

pub(super) fn spawn_server(listener: TcpListener, inner: Arc<Inner>) -> Running {
    Running::spawn(listener, move |tcp, stop_rx| {
        inner.connections.fetch_add(1, Ordering::Relaxed);
        serve_conn(tcp, inner.clone(), stop_rx)
    })
}

/// What a request handler knows about its connection.
#[derive(Clone)]
struct Conn {
    inner: Arc<Inner>,
    client_cert: bool,
    /// `CloseConnection`: ends the connection task, which drops the socket.
    kill: Arc<Notify>,
    /// Changes (the sender is dropped) once the connection task has ended.
    closed: watch::Receiver<()>,
}

impl Conn {
    async fn wait_closed(&mut self) {
        while self.closed.changed().await.is_ok() {}
    }
}

async fn serve_conn(tcp: TcpStream, inner: Arc<Inner>, mut stop_rx: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let (_closed_tx, closed_rx) = watch::channel(());
    let acceptor = tokio_rustls::TlsAcceptor::from(inner.tls.clone());
    let tls = tokio::select! {
        _ = wait_stop(&mut stop_rx) => return,
        r = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            _ => return,
        },
    };
    let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
    let kill = Arc::new(Notify::new());
    let conn = Conn {
        inner,
        client_cert,
        kill: kill.clone(),
        closed: closed_rx,
    };
    let svc = service_fn(move |req| handle(req, conn.clone()));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let serve = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        biased;
        _ = kill.notified() => {}
        _ = wait_stop(&mut stop_rx) => {}
        _ = serve => {}
    }
    // Dropping `serve` here closes the TCP connection (no TLS close_notify, no response);
    // `_closed_tx` goes with it.
}

/// Ends the exchange without an HTTP answer.
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("API server stand-in drops the connection")
    }
}

impl std::error::Error for Dropped {}

pub(super) type Resp = Response<Full<Bytes>>;

/// Counts a request in flight while alive.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn enter(inner: &Arc<Inner>) -> InFlight {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn handle(req: Request<Incoming>, mut conn: Conn) -> Result<Resp, Dropped> {
    let inner = conn.inner.clone();
    let _in_flight = InFlight::enter(&inner);
    let (parts, body) = req.into_parts();
    let raw = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .ok();
    let review = Review::of(parts.uri.path());
    let content_type = header_string(&parts.headers, header::CONTENT_TYPE);
    let recorded = Recorded {
        body: raw
            .as_ref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null),
        content_type: content_type.clone(),
        authorization: header_string(&parts.headers, header::AUTHORIZATION),
        at: Instant::now(),
        method: parts.method.as_str().to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.to_string()),
        version: parts.version,
        accept: header_string(&parts.headers, header::ACCEPT),
        client_cert: conn.client_cert,
        raw: raw.clone().unwrap_or_default(),
    };
    {
        let mut records = lock(&inner.records);
        match review {
            Some(Review::Token) => records.tokenreviews.push(recorded.clone()),
            Some(Review::Sar) => records.sars.push(recorded.clone()),
            None => {}
        }
        records.all.push(recorded);
    }

    let behaviour = review.map_or(Behaviour::Normal, |r| inner.next_behaviour(r));
    match &behaviour {
        Behaviour::Hang => {
            conn.wait_closed().await;
            return Err(Dropped);
        }
        Behaviour::CloseConnection => {
            conn.kill.notify_one();
            conn.wait_closed().await;
            return Err(Dropped);
        }
        Behaviour::Delay(d) => tokio::time::sleep(*d).await,
        Behaviour::Status { code, retry_after } => {
            let caller = if conn.client_cert {
                GATEWAY_CERT_CN
            } else {
                GATEWAY_USER
            };
            return Ok(scripted_status(*code, *retry_after, review, caller));
        }
        Behaviour::Garbage => return Ok(plain(StatusCode::OK, "application/json", GARBAGE_BODY)),
        Behaviour::Html => return Ok(plain(StatusCode::OK, "text/html; charset=utf-8", HTML_BODY)),
        _ => {}
    }

    // Authentication: a verified client certificate, or the gateway's bearer token.
    if !conn.client_cert && !bearer_is_gateway(&parts.headers) {
        return Ok(status_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ));
    }
    if review.is_none()
        && parts.method == Method::GET
        && let Some(answer) = read_object(&inner, parts.uri.path())
    {
        return Ok(answer);
    }
    let Some(review) = review else {
        return Ok(status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ));
    };
    if parts.method != Method::POST {
        return Ok(status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ));
    }
    let Some(raw) = raw else {
        return Ok(status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
            None,
        ));
    };
    if !is_json_media(content_type.as_deref()) {
        return Ok(status_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (the stand-in speaks JSON only; got {:?})",
                content_type.unwrap_or_default()
            ),
            None,
        ));
    }
    if !accepts_json(header_string(&parts.headers, header::ACCEPT).as_deref()) {
        return Ok(status_response(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "only the following media types are accepted: application/json",
            None,
        ));
    }
    let object = match decode(&raw, review) {
        Ok(o) => o,
        Err(message) => return Ok(status_response(StatusCode::BAD_REQUEST, "BadRequest", &message, None)),
    };
    let answer = match review {
        Review::Token => token_review(&inner, object, &behaviour),
        Review::Sar => subject_access_review(&inner, object, &behaviour),
    };
    Ok(answer)
}

/// GET of a scripted Node or of the CSR list; None for any other path.
fn read_object(inner: &Inner, path: &str) -> Option<Resp> {
    let script = lock(&inner.script);
    if let Some(name) = path.strip_prefix(NODES_PATH).and_then(|p| p.strip_prefix('/')) {
        return Some(match script.nodes.get(name) {
            Some(node) => json_response(StatusCode::OK, node),
            None => status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("nodes \"{name}\" not found"),
                Some(json!({"name": name, "kind": "nodes"})),
            ),
        });
    }
    if path == CSR_PATH {
        let list = json!({
            "kind": "CertificateSigningRequestList",
            "apiVersion": "certificates.k8s.io/v1",
            "metadata": {"resourceVersion": "1"},
            "items": script.csrs,
        });
        return Some(json_response(StatusCode::OK, &list));
    }
    None
}

fn bearer_is_gateway(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next().unwrap_or("");
    let token = parts.next().unwrap_or("");
    scheme.eq_ignore_ascii_case("bearer") && parts.next().is_none() && token == GATEWAY_TOKEN
}

/// No Content-Type counts as JSON (the apiserver defaults to its first serializer).
fn is_json_media(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let media = ct.split(';').next().unwrap_or("").trim();
            media.is_empty() || media.eq_ignore_ascii_case("application/json")
        }
    }
}

fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(media.as_str(), "application/json" | "application/*" | "*/*")
    })
}

/// The request object, or the 400 message.
fn decode(raw: &[u8], review: Review) -> Result<Map<String, Value>, String> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
    let Value::Object(object) = value else {
        return Err("couldn't get version/kind; json parse error: not a JSON object".to_string());
    };
    let expected = review.api_version();
    match object.get("apiVersion") {
        None => {}
        Some(Value::String(v)) if *v == expected => {}
        Some(v) => {
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            return Err(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            ));
        }
    }
    match object.get("kind") {
        None => {}
        Some(Value::String(k)) if k == review.kind() => {}
        Some(k) => {
            let k = k.as_str().map(str::to_string).unwrap_or_else(|| k.to_string());
            return Err(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                review.kind()
            ));
        }
    }
    if object.get("spec").is_some_and(|s| !s.is_object() && !s.is_null()) {
        return Err(format!("{}.spec: expected an object", review.kind()));
    }
    Ok(object)
}
