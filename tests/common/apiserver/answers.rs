//! The bodies kube-apiserver writes: the `metav1.Status` of a scripted status code, other Status
//! answers, JSON and plain answers, each with an `Audit-Id`.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use super::next_file_id;
use super::reviews::Review;
use super::serve::Resp;

/// `Behaviour::Status`: the Status kube-apiserver would send with that code.
pub(super) fn scripted_status(code: u16, retry_after: Option<u64>, review: Option<Review>, caller: &str) -> Resp {
    let status = StatusCode::from_u16(code).expect("valid HTTP status code");
    let (group, resource) = review.map_or(("", ""), |r| (r.group(), r.resource()));
    let (reason, message): (&str, String) = match code {
        400 => (
            "BadRequest",
            "the server rejected our request for an unknown reason".into(),
        ),
        401 => ("Unauthorized", "Unauthorized".into()),
        403 => (
            "Forbidden",
            format!(
                "{resource}.{group} is forbidden: User \"{caller}\" cannot create resource \"{resource}\" in API group \"{group}\" at the cluster scope"
            ),
        ),
        404 => ("NotFound", "the server could not find the requested resource".into()),
        405 => (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
        ),
        406 => (
            "NotAcceptable",
            "the server was unable to respond with a content type that the client supports".into(),
        ),
        409 => ("Conflict", "the server reported a conflict".into()),
        410 => ("Expired", "the server reported the resource as gone".into()),
        413 => (
            "RequestEntityTooLarge",
            "the server rejected the request as too large".into(),
        ),
        415 => (
            "UnsupportedMediaType",
            "the body of the request was in an unknown format".into(),
        ),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request".into(),
        ),
        429 => ("TooManyRequests", "Too many requests, please try again later.".into()),
        500 => (
            "InternalError",
            "Internal error occurred: stand-in API server failure".into(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request"
                .into(),
        ),
        _ => (
            "",
            format!("the server responded with the status code {code} but did not return more information"),
        ),
    };
    let mut details = Map::new();
    if code == 403 || code == 404 {
        details.insert("group".into(), json!(group));
        details.insert("kind".into(), json!(resource));
    }
    if let Some(s) = retry_after {
        details.insert("retryAfterSeconds".into(), json!(s));
    }
    let details = (!details.is_empty() || code == 404).then_some(Value::Object(details));
    let mut r = status_response(status, reason, &message, details);
    if let Some(s) = retry_after {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            http::HeaderValue::from_str(&s.to_string()).expect("Retry-After value"),
        );
    }
    r
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
        .header("audit-id", audit_id())
        .body(Full::new(Bytes::from(bytes)))
        .expect("response")
}

pub(super) fn plain(status: StatusCode, content_type: &str, body: &'static str) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("audit-id", audit_id())
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("response")
}

/// A UUID-shaped id, as kube-apiserver puts in `Audit-Id`.
fn audit_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b[..8].copy_from_slice(&(next_file_id() as u64).to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
