//! What the stand-in received: one [`Recorded`] per request, kept in order for every path and
//! per review.

use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

/// One request as the stand-in received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The body as JSON; `Value::Null` if it was not JSON (see `raw`).
    pub body: serde_json::Value,
    pub content_type: Option<String>,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    pub at: Instant,
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub version: http::Version,
    pub accept: Option<String>,
    /// The caller presented a client certificate (it was verified against the client CA).
    pub client_cert: bool,
    /// The body bytes (empty if it exceeded [`MAX_REQUEST_BYTES`] or could not be read).
    pub raw: Bytes,
}

impl Recorded {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// `spec.token` of a TokenReview body.
    pub fn token(&self) -> Option<&str> {
        self.body.pointer("/spec/token").and_then(Value::as_str)
    }
    /// `spec.user` of a SubjectAccessReview body.
    pub fn sar_user(&self) -> Option<&str> {
        self.body.pointer("/spec/user").and_then(Value::as_str)
    }
    /// `spec.resourceAttributes.<field>` of a SubjectAccessReview body.
    pub fn resource_attr(&self, field: &str) -> Option<&str> {
        self.body
            .pointer(&format!("/spec/resourceAttributes/{field}"))
            .and_then(Value::as_str)
    }
}

#[derive(Default)]
pub(super) struct Records {
    pub(super) all: Vec<Recorded>,
    pub(super) tokenreviews: Vec<Recorded>,
    pub(super) sars: Vec<Recorded>,
}
