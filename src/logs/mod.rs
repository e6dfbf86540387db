//! Logs served natively, which the kubelet's read-only port cannot serve: `/logs/` from the
//! node log directory ([`node`], Go's file server semantics, [`fileserver`], [`listing`]) and
//! `/containerLogs/` from the runtime's CRI files ([`container`]: [`options`] decodes the
//! query, [`tail`] finds where to start, [`reader`] turns [`cri`] records into the kubelet's
//! output, [`follow`] keeps reading). Every file is opened through [`safe`], so nothing outside
//! the configured directories is served; every byte is read on the blocking pool and streamed
//! through a bounded channel ([`stream`]), so memory stays flat whatever the file size.

pub mod container;
pub mod cri;
pub mod fileserver;
pub mod follow;
pub mod listing;
pub mod node;
pub mod options;
pub mod reader;
pub mod safe;
pub mod stream;
pub mod tail;

use std::time::Duration;

use http::{HeaderMap, Response};

use crate::config::Logs;
use crate::proxy::respond::Body;
use container::ContainerLogs;
use node::NodeLogs;

/// How often a followed container log is checked once it has nothing more to read (the
/// kubelet is woken by fsnotify, with a forced check every second).
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Both log endpoints, built once from the configuration.
#[derive(Debug, Clone)]
pub struct LogServer {
    node: NodeLogs,
    containers: ContainerLogs,
}

impl LogServer {
    /// `split_streams` is the `PodLogsQuerySplitStreams` feature gate.
    pub fn new(config: &Logs, split_streams: bool, follow_poll: Duration) -> LogServer {
        LogServer {
            node: NodeLogs::new(config.node_log_dir.clone()),
            containers: ContainerLogs::new(config.pod_log_dir.clone(), split_streams, follow_poll),
        }
    }

    /// `GET /logs/...`.
    pub async fn node_logs(&self, path: &str, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
        self.node.serve(path, query, headers).await
    }

    /// `GET /containerLogs/{namespace}/{pod}/{container}`.
    pub async fn container_logs(&self, path: &str, query: Option<&str>) -> Response<Body> {
        self.containers.serve(path, query.unwrap_or("")).await
    }
}

/// A path's percent-decoding (`+` is a plus sign in a path); `None` for a malformed escape.
pub(crate) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(hex_pair(b.get(i + 1..i + 3)?)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Two hexadecimal digits (no sign, unlike `u8::from_str_radix`).
pub(crate) fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| char::from(c).to_digit(16);
    match pair {
        [hi, lo] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("%+1"), None);
        assert_eq!(super::percent_decode("a%20b+c%2F"), Some(b"a b+c/".to_vec()));
        assert_eq!(super::percent_decode("%"), None);
        assert_eq!(super::percent_decode("%zz"), None);
        assert_eq!(super::percent_decode("%2"), None);
    }
}
