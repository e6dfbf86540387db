//! `/containerLogs/{namespace}/{pod}/{container}`: a container's log, read from the CRI log
//! files the runtime writes under the pod log directory, answered as the kubelet's
//! `getContainerLogs` does (K: pkg/kubelet/server/server.go), and streamed.
//!
//! Layout (K: pkg/kubelet/kuberuntime/helpers.go `BuildPodLogsDirectory`,
//! `BuildContainerLogsDirectory`): `<root>/<namespace>_<pod>_<uid>/<container>/<n>.log`, where
//! `n` is the container's restart count. The current container is the highest `n`; `previous`
//! is `n - 1`. Rotated files (`<n>.log.<timestamp>`, and their `.gz` once compressed, K:
//! pkg/kubelet/logs/container_log_manager.go) are never read: the kubelet reads only the
//! file the runtime is writing (its logs.go: "It will not retrieve logs in rotated log file").
//! Order of the answers, as upstream: path parameters (400), query (400/422), pod (404),
//! container (404), `stream` gate (400), container state (400), then 200 and the stream.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Response, StatusCode};

use super::cri::Instant;
use super::follow::{Follower, Wake};
use super::options::{self, QueryError};
use super::reader::{Lines, Progress, Pumped, Records, Settings};
use super::{percent_decode, safe, stream, tail};
use crate::proxy::respond::{self, Body, BoxError};

/// Read buffer per request: also the longest line whose header can be recognised (a CRI
/// header is under 64 bytes; the runtime splits lines at 16 KiB).
const LINE_BUFFER: usize = 64 * 1024;

/// The pod log directory.
#[derive(Debug, Clone)]
pub struct ContainerLogs {
    root: PathBuf,
    split_streams: bool,
    poll: Duration,
}

/// A container found on disk.
#[derive(Debug)]
struct Located {
    root: PathBuf,
    pod_dir: OsString,
    /// Restart numbers that have a `<n>.log`.
    restarts: Vec<u64>,
}

#[derive(Debug)]
enum NotFound {
    Pod,
    Container,
}

impl ContainerLogs {
    /// `split_streams` is the `PodLogsQuerySplitStreams` gate; `poll` how often a followed file
    /// is checked once it has nothing more.
    pub fn new(root: PathBuf, split_streams: bool, poll: Duration) -> ContainerLogs {
        ContainerLogs {
            root,
            split_streams,
            poll,
        }
    }

    /// Answers a GET for `path` (`/containerLogs/ns/pod/container`, percent-encoded as received).
    pub async fn serve(&self, path: &str, query: &str) -> Response<Body> {
        // go-restful drops empty path tokens, so a trailing slash names the same route.
        let params: Option<Vec<String>> = path.strip_prefix("/containerLogs/").and_then(|rest| {
            rest.strip_suffix('/')
                .unwrap_or(rest)
                .split('/')
                .map(|s| percent_decode(s).and_then(|b| String::from_utf8(b).ok()))
                .collect()
        });
        let Some([namespace, pod, container]) = params.as_deref() else {
            return respond::route_not_found();
        };
        let bad = |body: &'static str| respond::container_logs_error(StatusCode::BAD_REQUEST, body);
        if pod.is_empty() {
            return bad(respond::MISSING_POD_ID);
        }
        if container.is_empty() {
            return bad(respond::MISSING_CONTAINER);
        }
        if namespace.is_empty() {
            return bad(respond::MISSING_NAMESPACE);
        }
        let opts = match options::parse(query) {
            Ok(o) => o,
            Err(QueryError::Decode) => return bad(respond::UNDECODABLE_QUERY),
            Err(QueryError::Invalid) => {
                return respond::container_logs_error(StatusCode::UNPROCESSABLE_ENTITY, respond::INVALID_LOG_REQUEST);
            }
        };
        let now = Instant::now();

        let (root, ns, p, c) = (self.root.clone(), namespace.clone(), pod.clone(), container.clone());
        let located = match tokio::task::spawn_blocking(move || locate(&root, &ns, &p, &c)).await {
            Ok(Ok(l)) => l,
            Ok(Err(NotFound::Pod)) => return respond::pod_not_found(pod),
            Ok(Err(NotFound::Container)) => return respond::container_not_found(container, pod),
            Err(e) => return internal(e),
        };
        let streams = match opts.streams(self.split_streams) {
            Ok(s) => s,
            Err(message) => return respond::container_logs_error(StatusCode::BAD_REQUEST, message),
        };
        let Some(&current) = located.restarts.iter().max() else {
            return respond::container_not_available(container, pod);
        };
        let restart = if opts.previous {
            match current.checked_sub(1).filter(|n| located.restarts.contains(n)) {
                Some(n) => n,
                None => return respond::no_previous_container(container, pod),
            }
        } else {
            current
        };

        let settings = Settings {
            timestamps: opts.timestamps,
            since: opts.since(now),
            streams,
            limit_bytes: opts.limit_bytes.and_then(|n| u64::try_from(n).ok()),
            // Upstream's `limitedMode`: the record count applies only without `follow`.
            max_records: if opts.follow {
                None
            } else {
                opts.tail_lines.and_then(|n| u64::try_from(n).ok())
            },
        };
        // A previous container is not running: the kubelet reads it to the end and stops,
        // without the unterminated last line a follower never writes.
        let mode = match (opts.follow, opts.previous) {
            (false, _) => Mode::Once { incomplete: true },
            (true, true) => Mode::Once { incomplete: false },
            (true, false) => Mode::Follow(Follower::new(
                located.root.clone(),
                &located.pod_dir,
                container,
                restart,
            )),
        };
        let tail_lines = opts.tail_lines.unwrap_or(-1);
        let relative = Path::new(&located.pod_dir)
            .join(container)
            .join(format!("{restart}.log"));
        let opened = tokio::task::spawn_blocking(move || {
            let opened = safe::open_beneath(&located.root, &relative)?;
            if opened.is_dir() {
                return Err(safe::OpenError::NotRegular);
            }
            let mut file = opened.file;
            let start = tail::find_start(&mut file, tail_lines)?;
            file.seek(SeekFrom::Start(start))?;
            Ok::<_, safe::OpenError>(file)
        })
        .await;
        let file = match opened {
            Ok(Ok(file)) => file,
            Ok(Err(e)) => {
                tracing::warn!(namespace, pod, container, restart, error = %e, "could not open a container log");
                let body = format!(
                    "failed to open log file for container {} in pod {}",
                    respond::go_quote(container.as_bytes()),
                    respond::go_quote(pod.as_bytes())
                );
                return respond::container_logs_error(StatusCode::BAD_REQUEST, body);
            }
            Err(e) => return internal(e),
        };

        let records = Records::new(settings);
        let body = if records.finished() {
            respond::full(Bytes::new())
        } else {
            let (tx, body) = stream::channel();
            let job = Job {
                file,
                lines: Lines::new(LINE_BUFFER),
                records,
                mode,
            };
            tokio::spawn(run(job, tx, self.poll));
            body
        };
        // The kubelet sets no Content-Type (its `Transfer-Encoding: chunked` stops Go from
        // sniffing one); the gateway says text/plain and nosniff, so no browser renders a log.
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        r.headers_mut()
            .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        r
    }
}

fn internal(e: tokio::task::JoinError) -> Response<Body> {
    tracing::error!(error = %e, "container log task failed");
    respond::container_logs_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// A Kubernetes name can hold no `/`; `.` and `..` are not names.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

/// `<n>.log` as the runtime names it (no sign, no leading zero).
fn restart_number(name: &std::ffi::OsStr) -> Option<u64> {
    let n = name.to_str()?.strip_suffix(".log")?;
    let canonical = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    canonical.then(|| n.parse().ok()).flatten()
}

/// Finds the pod's directory (the most recently changed one, if a pod of that name was
/// recreated with a new UID and the old directory is still there) and the container's.
/// Names are compared with directory entries, never joined into a path unchecked.
fn locate(root: &Path, namespace: &str, pod: &str, container: &str) -> Result<Located, NotFound> {
    let root = safe::canonical_root(root).map_err(|_| NotFound::Pod)?;
    let mut best: Option<(SystemTime, OsString)> = None;
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        let mut parts = text.split('_');
        let (Some(ns), Some(p), Some(_uid), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ns != namespace || p != pod || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let changed = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(t, n)| (changed, &name) > (*t, n)) {
            best = Some((changed, name));
        }
    }
    let (_, pod_dir) = best.ok_or(NotFound::Pod)?;
    if !is_plain_name(container) {
        return Err(NotFound::Container);
    }
    let dir = root.join(&pod_dir).join(container);
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Err(NotFound::Container);
    }
    let restarts = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| restart_number(&e.file_name()))
        .collect();
    Ok(Located {
        root,
        pod_dir,
        restarts,
    })
}

enum Mode {
    /// Read to the end once; `incomplete`: write an unterminated last line too.
    Once {
        incomplete: bool,
    },
    Follow(Follower),
}

struct Job {
    file: File,
    lines: Lines,
    records: Records,
    mode: Mode,
}

enum Next {
    /// More output is ready to be read now.
    Continue,
    /// Poll again after a while.
    Wait,
    End,
    /// End, with this text appended (as the kubelet appends its error to a started stream).
    Fail(String),
}

impl Job {
    /// One blocking step: at most about a chunk of output.
    fn step(&mut self) -> (Vec<u8>, Next) {
        let mut out = Vec::with_capacity(stream::CHUNK + 4096);
        if let Mode::Follow(f) = &mut self.mode {
            f.before_read(&mut self.file, &mut self.lines);
        }
        loop {
            let pumped = match self
                .lines
                .pump(&mut self.file, &mut self.records, &mut out, stream::CHUNK)
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a container log failed");
                    return (out, Next::Fail(format!("failed to read log file: {e}")));
                }
            };
            let next = match pumped {
                Pumped::Chunk => Next::Continue,
                Pumped::Done => Next::End,
                Pumped::Failed(m) => Next::Fail(m),
                Pumped::Eof => match &mut self.mode {
                    Mode::Once { incomplete: false } => Next::End,
                    Mode::Once { incomplete: true } => match self.lines.finish(&mut self.records, &mut out) {
                        Progress::Failed(m) => Next::Fail(m),
                        Progress::More | Progress::Done => Next::End,
                    },
                    Mode::Follow(f) => match f.at_eof(&mut self.file, &mut self.lines, &mut self.records, &mut out) {
                        Wake::Read => continue,
                        Wake::Wait => Next::Wait,
                        Wake::End => Next::End,
                        Wake::Fail(m) => Next::Fail(m),
                    },
                },
            };
            return (out, next);
        }
    }
}

/// Drives a job: blocking steps on the blocking pool, output into the body, polls while
/// following, and an end as soon as the client is gone.
async fn run(mut job: Job, tx: stream::Sender, poll: Duration) {
    loop {
        let (j, (out, next)) = match tokio::task::spawn_blocking(move || {
            let r = job.step();
            (job, r)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "container log reader failed");
                let _ = tx.send(Err(BoxError::from(e))).await;
                return;
            }
        };
        job = j;
        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
            return;
        }
        match next {
            Next::Continue => {}
            Next::End => return,
            Next::Fail(message) => {
                let _ = tx.send(Ok(Bytes::from(message))).await;
                return;
            }
            Next::Wait => {
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = tx.closed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_numbers_are_the_runtimes_names_only() {
        let n = |s: &str| restart_number(std::ffi::OsStr::new(s));
        assert_eq!(n("0.log"), Some(0));
        assert_eq!(n("12.log"), Some(12));
        for other in [
            "0.log.20240101-000000",
            "0.log.20240101-000000.gz",
            "01.log",
            "+1.log",
            ".log",
            "a.log",
            "1.log.tmp",
            "1",
        ] {
            assert_eq!(n(other), None, "{other}");
        }
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("app"));
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
