//! The pipeline's last phase: what one request did, gathered as it passes the phases
//! ([`Record`]), turned into metrics when the response starts and into an audit record when
//! its body ends (or the client goes away).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use aws_lc_rs::digest;
use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::audit::{AuditLog, AuditRecord};
use super::metrics::RequestMetrics;
use crate::authn::{Authenticated, AuthnFailure, Connection, CredentialKind, Presented, UserInfo};
use crate::authz::Verdict;
use crate::proxy::forward::UpstreamFailure;
use crate::proxy::outcome::{Decision, Outcome};
use crate::proxy::respond::{Body, BoxError};
use crate::proxy::tunnel::{End as StreamEnd, Streams, Tunnel};

/// Metrics and the audit log, shared by every request.
pub struct Observer {
    pub metrics: RequestMetrics,
    audit: Option<AuditLog>,
}

/// What one request did so far. The pipeline fills it in phase by phase. Dropped unfinished
/// (the client went away before an answer), it still writes its audit line.
#[derive(Default)]
pub struct Record {
    /// Set until the response starts; then the body's end closes the record instead.
    observer: Option<Arc<Observer>>,
    started: Option<Instant>,
    time: Option<SystemTime>,
    peer: Option<SocketAddr>,
    method: http::Method,
    /// The request target as received (a cheap, shared copy of hyper's bytes).
    target: http::Uri,
    cert_sha256: Option<String>,
    credential: Option<CredentialKind>,
    /// What authentication saw (or the connection alone, before it).
    presented: Presented,
    /// Shared with the authenticator: no per-request copy of names and groups.
    user: Option<Arc<UserInfo>>,
    verb: Option<&'static str>,
    tried: &'static [&'static str],
    allowed_by: Option<&'static str>,
    decision: Option<Decision>,
    reason: Option<String>,
    forwarded: Option<Instant>,
    /// Which of the kubelet's ports the request went to.
    port: Option<Port>,
    stream: bool,
}

/// The kubelet's port a request was forwarded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    ReadOnly,
    Secure,
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(observer) = self.observer.take() {
            if self.decision.is_none() {
                self.decision = Some(Decision::Rejected);
            }
            self.reason
                .get_or_insert_with(|| "the client went away before the answer".to_owned());
            observer.audit(self, "aborted", 0, None, 0, None);
            observer.metrics.in_flight.dec();
        }
    }
}

impl Record {
    /// What authentication found, and what the request presented.
    pub fn authenticated(&mut self, result: &Result<Authenticated, AuthnFailure>, presented: Presented) {
        self.presented = presented;
        if let Ok(ok) = result {
            self.credential = Some(ok.credential);
            self.user = Some(ok.user.clone());
        }
    }

    /// The phases' outcome: the decision, its reason and the attributes reviewed.
    pub fn decided(&mut self, outcome: &Outcome) {
        self.decision = Some(outcome.decision());
        self.reason = outcome.reason();
        if let Outcome::Reviewed(r) = outcome {
            self.verb = Some(r.verb);
            self.tried = r.tried;
            if let Verdict::Allowed { subresource } = r.verdict {
                self.allowed_by = Some(subresource);
            }
        }
    }

    /// The request goes to one of the kubelet's ports.
    pub fn forwarded(&mut self, port: Port) {
        self.forwarded = Some(Instant::now());
        self.port = Some(port);
    }
}

impl Observer {
    pub fn new(audit: Option<AuditLog>) -> Self {
        Observer {
            metrics: RequestMetrics::default(),
            audit,
        }
    }

    /// Whether records are audited (and so token hashes are worth computing).
    pub fn audits(&self) -> bool {
        self.audit.is_some()
    }

    /// Opens the record of a request as it arrives, before any phase.
    pub fn begin(self: &Arc<Self>, conn: &Connection, method: &http::Method, uri: &http::Uri) -> Record {
        self.metrics.in_flight.inc();
        let mut record = Record::default();
        record.observer = Some(self.clone());
        record.started = Some(Instant::now());
        record.time = Some(SystemTime::now());
        record.peer = Some(conn.peer);
        record.method = method.clone();
        record.target = uri.clone();
        record.presented = Presented::connection(&conn.identity);
        record.stream = uri.query().is_some_and(is_stream_query);
        if self.audit.is_some() {
            let chain = conn.identity.chain();
            record.cert_sha256 = chain.first().map(|c| hex(digest::digest(&digest::SHA256, c).as_ref()));
        }
        record
    }

    /// Counts the response and hands back one whose body writes the audit record when it ends.
    pub fn finish(self: &Arc<Self>, mut record: Record, response: Response<Body>) -> Response<Body> {
        let status = response.status().as_u16();
        let upstream_status = self.account(&mut record, &response);
        if record.stream {
            self.audit(&record, "start", status, upstream_status, 0, None);
        }
        let (parts, body) = response.into_parts();
        let observed = Observed {
            inner: body,
            bytes: 0,
            end: Some(End {
                observer: self.clone(),
                record,
                status,
                upstream_status,
            }),
        };
        Response::from_parts(parts, observed.boxed_unsync())
    }

    /// The `101` of a spliced stream: counted like any answer, a `start` line now, and the
    /// record handed to the stream for its `end` line.
    pub fn stream_started(
        self: &Arc<Self>,
        mut record: Record,
        response: &Response<Body>,
        endpoint: &'static str,
    ) -> StreamRecord {
        let status = response.status().as_u16();
        let upstream_status = self.account(&mut record, response);
        self.metrics.stream(endpoint);
        let stream = StreamInfo {
            endpoint,
            command: command_of(&record.target),
            bytes_in: 0,
        };
        self.audit(&record, "start", status, upstream_status, 0, Some(&stream));
        StreamRecord {
            observer: self.clone(),
            record,
            stream,
            status,
        }
    }

    /// The metrics of an answer whose status is known, and the record made final (the request
    /// is no longer in flight). Returns the upstream's status when the upstream gave it.
    fn account(&self, record: &mut Record, response: &Response<Body>) -> Option<u16> {
        record.observer = None;
        let status = response.status().as_u16();
        let m = &self.metrics;
        m.in_flight.dec();
        match (record.credential, record.decision) {
            (Some(kind), _) => m.authentication(kind.as_str(), true),
            (None, Some(Decision::Unauthenticated)) => m.authentication(record.presented.kind, false),
            _ => {}
        }
        if let Some(d @ (Decision::Allow | Decision::Deny | Decision::Error)) = record.decision {
            m.decision(d.as_str());
        }
        let upstream_failed = response.extensions().get::<UpstreamFailure>().is_some();
        if let Some(started) = record.forwarded {
            match (upstream_failed, record.port) {
                (true, Some(Port::Secure)) => {
                    m.secure_upstream_errors.inc();
                }
                (true, _) => {
                    m.upstream_errors.inc();
                }
                (false, _) => m.upstream_latency.observe(started.elapsed().as_secs_f64()),
            }
        }
        m.request(status, record.allowed_by.unwrap_or(""), record.verb.unwrap_or(""));
        if record.decision.is_none() {
            record.decision = Some(Decision::Rejected);
        }
        if upstream_failed {
            record.reason = Some("upstream did not answer".to_owned());
        }
        (record.forwarded.is_some() && !upstream_failed).then_some(status)
    }

    fn audit(
        &self,
        r: &Record,
        stage: &'static str,
        status: u16,
        upstream_status: Option<u16>,
        bytes: u64,
        stream: Option<&StreamInfo>,
    ) {
        let Some(log) = &self.audit else { return };
        let time = r.time.unwrap_or_else(SystemTime::now);
        // Only with an audit log is the target turned into text.
        let target = r
            .target
            .path_and_query()
            .map_or_else(|| r.target.to_string(), |p| p.as_str().to_owned());
        let target = crate::ops::redact::target(&target);
        let record = AuditRecord {
            time: time::OffsetDateTime::from(time)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            stage,
            peer: r.peer.map(|p| p.to_string()).unwrap_or_default(),
            credential: r.credential.map_or(r.presented.kind, CredentialKind::as_str),
            cert_sha256: r.cert_sha256.as_deref(),
            token_hmac: r.presented.token_hmac.as_deref(),
            user: r.user.as_deref().map(|u| u.name.as_str()),
            groups: r.user.as_deref().map_or(&[], |u| u.groups.as_slice()),
            method: r.method.as_str(),
            verb: r.verb,
            subresources: r.tried,
            allowed_by: r.allowed_by,
            path: &target,
            decision: r.decision.unwrap_or(Decision::Rejected).as_str(),
            reason: r.reason.as_deref(),
            status,
            upstream_status,
            bytes,
            bytes_in: stream.map(|s| s.bytes_in),
            endpoint: stream.map(|s| s.endpoint),
            command: stream.map_or(&[], |s| s.command.as_slice()),
            duration_ms: r.started.map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0),
        };
        if !log.send(&record) {
            self.metrics.audit_dropped.inc();
        }
    }
}

/// What the audit record says of a spliced stream.
struct StreamInfo {
    endpoint: &'static str,
    /// The `command` parameters of exec (`cmd` of run), decoded.
    command: Vec<String>,
    /// Bytes from the client to the kubelet.
    bytes_in: u64,
}

/// A spliced stream's record, its `start` line written.
pub struct StreamRecord {
    observer: Arc<Observer>,
    record: Record,
    stream: StreamInfo,
    status: u16,
}

impl StreamRecord {
    /// Splices the stream, then writes its `end` line with the duration, the bytes each way and
    /// why it ended.
    pub async fn run(mut self, tunnel: Tunnel, streams: Arc<Streams>) {
        let spliced = tunnel.run(streams).await;
        self.stream.bytes_in = spliced.client_to_upstream;
        if spliced.end != StreamEnd::Closed {
            self.record.reason = Some(format!("stream ended: {}", spliced.end.as_str()));
        }
        self.observer.audit(
            &self.record,
            "end",
            self.status,
            Some(self.status),
            spliced.upstream_to_client,
            Some(&self.stream),
        );
    }
}

/// The command a stream runs, as the kubelet reads it (`URL.Query()`): exec's repeated
/// `command`, run's `cmd`.
fn command_of(target: &http::Uri) -> Vec<String> {
    let query = target.query().unwrap_or("");
    crate::logs::options::parse_query(query)
        .into_iter()
        .filter(|(k, _)| k == "command" || k == "cmd")
        .map(|(_, v)| v)
        .collect()
}

/// `follow` on logs and `watch`-style queries keep the response open: those get a start
/// record as well as the end one.
fn is_stream_query(query: &str) -> bool {
    query
        .split('&')
        .any(|kv| matches!(kv, "follow=true" | "follow=1" | "watch=true" | "watch=1"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct End {
    observer: Arc<Observer>,
    record: Record,
    status: u16,
    upstream_status: Option<u16>,
}

/// A response body that counts its bytes and closes the request's record when it is done.
struct Observed {
    inner: Body,
    bytes: u64,
    end: Option<End>,
}

impl Observed {
    fn close(&mut self) {
        if let Some(end) = self.end.take() {
            let stage = if end.record.stream { "end" } else { "complete" };
            end.observer
                .audit(&end.record, stage, end.status, end.upstream_status, self.bytes, None);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.close();
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.close(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
