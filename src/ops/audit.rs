//! The audit log: one JSON line per request (two for streams: start and end), written by a
//! thread of its own ([`writer`]) so that a slow or full disk never holds a request. Every value
//! goes through serde_json, which escapes quotes, backslashes and control characters, so no
//! field (a CN, a path, a user name) can end a line or forge a record. Tokens never reach it:
//! only an HMAC under a per-process key.

mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::mpsc;

pub use writer::Health;

use crate::config::AuditSink;

/// Records waiting for the writer; past this, new ones are dropped and counted.
pub const QUEUE: usize = 4096;

/// One line of the audit log.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub time: String,
    /// `complete`; `start` and `end` for a stream; `aborted` when the client left first.
    pub stage: &'static str,
    pub peer: String,
    /// x509, token, websocket-token, anonymous; for a failed authentication the credential
    /// presented (x509, token) or none.
    pub credential: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_hmac: Option<&'a str>,
    pub user: Option<&'a str>,
    pub groups: &'a [String],
    pub method: &'a str,
    pub verb: Option<&'a str>,
    /// The subresources reviewed, in order.
    pub subresources: &'a [&'static str],
    pub allowed_by: Option<&'a str>,
    pub path: &'a str,
    /// allow, deny, error, unauthenticated, or rejected (before authentication: bad path, 404).
    pub decision: &'a str,
    pub reason: Option<&'a str>,
    pub status: u16,
    pub upstream_status: Option<u16>,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// A spliced stream's bytes from the client to the kubelet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// A spliced stream's endpoint: exec, attach, portForward.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<&'a str>,
    /// The command a stream runs (exec's `command` parameters).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub command: &'a [String],
    pub duration_ms: f64,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Vec<u8>>,
    health: Arc<Health>,
}

/// Where the lines go, opened at start so that a bad path stops the start.
pub enum Output {
    File(PathBuf, std::fs::File),
    Stdout,
}

#[derive(Debug, thiserror::Error)]
#[error("audit.path {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

impl Output {
    pub fn open(sink: &AuditSink) -> Result<Output, AuditError> {
        match sink {
            AuditSink::Stdout => Ok(Output::Stdout),
            AuditSink::File(path) => open_append(path).map(|f| Output::File(path.clone(), f)),
        }
    }
}

impl Output {
    /// What [`Output::open`] would find, without creating or writing anything: an existing file
    /// must open for appending, a new one needs its directory.
    pub fn check(sink: &AuditSink) -> Result<(), AuditError> {
        let AuditSink::File(path) = sink else {
            return Ok(());
        };
        let error = |source| AuditError {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            return std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map(drop)
                .map_err(error);
        }
        match path.parent().map(std::fs::metadata) {
            Some(Ok(m)) if m.is_dir() => Ok(()),
            Some(Err(e)) => Err(error(e)),
            _ => Err(error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "its directory does not exist",
            ))),
        }
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, AuditError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| AuditError {
        path: path.display().to_string(),
        source,
    })
}

impl AuditLog {
    /// The log and the writer that drains it into `output`, counting in `dropped` every record
    /// it cannot write (a full queue is counted by whoever sends).
    pub fn new(output: Output, dropped: Counter) -> (AuditLog, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let health = Arc::new(Health::default());
        let writer = writer::Writer::new(output, health.clone(), dropped);
        (AuditLog { tx, health }, run(writer, rx))
    }

    /// Queues one record; `false` when the queue is full (the record is lost).
    pub fn send(&self, record: &AuditRecord<'_>) -> bool {
        let Ok(mut line) = serde_json::to_vec(record) else {
            return false;
        };
        line.push(b'\n');
        self.tx.try_send(line).is_ok()
    }

    /// Whether the writer is writing, and where to ask it to reopen the file.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }
}

/// Runs the writer on a thread of its own until every sender is gone. A thread, not the
/// blocking pool: it lives as long as the process and must never hold the runtime's shutdown.
async fn run(writer: writer::Writer, rx: mpsc::Receiver<Vec<u8>>) {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("audit-writer".into()).spawn(move || {
        writer.run(rx);
        let _ = done_tx.send(());
    });
    match spawned {
        // Without the thread the queue's receiver is gone: every record counts as dropped.
        Err(e) => tracing::error!(error = %e, "cannot start the audit writer"),
        Ok(_) => {
            let _ = done_rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(user: &'a str, path: &'a str, groups: &'a [String]) -> AuditRecord<'a> {
        AuditRecord {
            time: "2026-01-01T00:00:00Z".into(),
            stage: "complete",
            peer: "127.0.0.1:1".into(),
            credential: "x509",
            cert_sha256: Some("ab"),
            token_hmac: None,
            user: Some(user),
            groups,
            method: "GET",
            verb: Some("get"),
            subresources: &["stats", "proxy"],
            allowed_by: None,
            path,
            decision: "deny",
            reason: None,
            status: 403,
            upstream_status: None,
            bytes: 0,
            bytes_in: None,
            endpoint: None,
            command: &[],
            duration_ms: 1.5,
        }
    }

    #[tokio::test]
    async fn a_forged_record_in_any_field_stays_inside_its_string() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.log");
        let (log, writer) = AuditLog::new(
            Output::open(&AuditSink::File(path.clone())).expect("open"),
            Counter::default(),
        );
        let writer = tokio::spawn(writer);
        let evil = "x\n{\"user\":\"admin\",\"decision\":\"allow\"}\r\"\\\u{0}\u{2028}";
        let groups = vec![evil.to_owned()];
        assert!(log.send(&record(evil, evil, &groups)));
        drop(log);
        writer.await.expect("writer");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text:?}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(v["user"], evil);
        assert_eq!(v["path"], evil);
        assert_eq!(v["groups"][0], evil);
        assert_eq!(v["decision"], "deny");
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting() {
        let (log, _writer) = AuditLog::new(Output::Stdout, Counter::default());
        let groups = Vec::new();
        let sent = (0..QUEUE + 10)
            .filter(|_| log.send(&record("u", "/p", &groups)))
            .count();
        assert_eq!(sent, QUEUE);
    }
}
