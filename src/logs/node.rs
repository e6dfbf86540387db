//! `/logs/` and `/logs/<path>`: the node's own log files and directory listings, as the
//! kubelet's `http.StripPrefix("/logs/", http.FileServer(http.Dir(nodeLogDir)))` serves them
//! (kubernetes pkg/kubelet/kubelet.go `ServeLogs`), except that nothing
//! outside the directory is ever opened (see [`super::safe`]).
//!
//! Like the kubelet with its `NodeLogQuery` gate off (the default), query parameters (`query`,
//! `pattern`, `boot`, `sinceTime`, ...) are ignored: this is a file server, never a journal
//! query, and no parameter reaches a command.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LAST_MODIFIED, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::fileserver::{self, Precondition, RangeError};
use super::listing::{self, Entry};
use super::safe::{self, OpenError, Opened};
use super::{percent_decode, stream};
use crate::proxy::respond::{self, Body};

/// The node log directory, served read-only.
#[derive(Debug, Clone)]
pub struct NodeLogs {
    root: PathBuf,
}

impl NodeLogs {
    pub fn new(root: PathBuf) -> NodeLogs {
        NodeLogs { root }
    }

    /// Answers a GET for `path` (`/logs/...`, as received: still percent-encoded).
    pub async fn serve(&self, path: &str, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
        let Some(sub) = path.strip_prefix("/logs/") else {
            return not_found();
        };
        let Some(decoded) = percent_decode(sub) else {
            return respond::bad_request();
        };
        // What Go's handler sees after StripPrefix: the decoded path, rooted.
        let mut url_path = Vec::with_capacity(decoded.len() + 1);
        url_path.push(b'/');
        url_path.extend_from_slice(&decoded);
        let name = fileserver::clean(&url_path);
        if name.contains(&0) {
            // http.Dir refuses it as an unsafe path; the file server answers 500.
            return respond::file_server_error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n");
        }
        let relative: PathBuf = name
            .split(|&b| b == b'/')
            .filter(|s| !s.is_empty())
            .map(OsStr::from_bytes)
            .collect();

        let root = self.root.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let opened = safe::open_beneath(&root, &relative)?;
            let mut head = vec![0u8; 512];
            let n = if opened.is_dir() {
                0
            } else {
                opened.file.read_at(&mut head, 0)?
            };
            head.truncate(n);
            Ok::<_, OpenError>((opened, head))
        })
        .await;
        let (opened, head) = match opened {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return open_failed(path, e),
            Err(e) => {
                tracing::warn!(error = %e, "node log task failed");
                return respond::file_server_error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n");
            }
        };

        let modtime = fileserver::modtime_secs(opened.meta.modified().ok());
        let trailing_slash = url_path.ends_with(b"/");
        if opened.is_dir() {
            if !trailing_slash {
                let mut to = fileserver::base(&url_path).to_vec();
                to.push(b'/');
                return redirect(to, query);
            }
            return listing_response(opened, headers, modtime).await;
        }
        if trailing_slash {
            let mut to = b"../".to_vec();
            to.extend_from_slice(fileserver::base(&url_path));
            return redirect(to, query);
        }
        file_response(opened, fileserver::base(&name), &head, headers, modtime)
    }
}

fn not_found() -> Response<Body> {
    respond::file_server_error(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Go's `toHTTPError`: nothing about why goes to the caller.
fn open_failed(path: &str, e: OpenError) -> Response<Body> {
    match e {
        OpenError::NotFound => not_found(),
        OpenError::Outside | OpenError::NotRegular => {
            tracing::info!(path, error = %e, "refused to serve a node log path");
            not_found()
        }
        OpenError::PermissionDenied => respond::file_server_error(StatusCode::FORBIDDEN, "403 Forbidden\n"),
        OpenError::Io(error) => {
            tracing::warn!(path, %error, "could not open a node log path");
            respond::file_server_error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n")
        }
    }
}

/// `localRedirect`: relative to the request, with the query kept.
fn redirect(mut location: Vec<u8>, query: Option<&str>) -> Response<Body> {
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        location.push(b'?');
        location.extend_from_slice(q.as_bytes());
    }
    match HeaderValue::from_bytes(&location) {
        Ok(v) => respond::local_redirect(v),
        Err(_) => respond::file_server_error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n"),
    }
}

fn last_modified(modtime: Option<u64>) -> Option<HeaderValue> {
    modtime.and_then(|m| HeaderValue::from_str(&fileserver::http_date(m)).ok())
}

async fn listing_response(dir: Opened, headers: &HeaderMap, modtime: Option<u64>) -> Response<Body> {
    if fileserver::not_modified_since(headers, modtime) {
        return respond::bare_status(StatusCode::NOT_MODIFIED, last_modified(modtime));
    }
    let entries = tokio::task::spawn_blocking(move || {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir.fd_path())? {
            let entry = entry?;
            entries.push(Entry {
                name: entry.file_name().as_bytes().to_vec(),
                is_dir: entry.file_type().is_ok_and(|t| t.is_dir()),
            });
        }
        Ok::<_, std::io::Error>(entries)
    })
    .await;
    let entries = match entries {
        Ok(Ok(entries)) => entries,
        other => {
            tracing::warn!(result = ?other.map(|r| r.map(|e| e.len())), "could not read a node log directory");
            return respond::file_server_error(StatusCode::INTERNAL_SERVER_ERROR, "Error reading directory\n");
        }
    };
    let mut r = Response::new(respond::full(Bytes::from(listing::render(entries))));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Some(lm) = last_modified(modtime) {
        r.headers_mut().insert(LAST_MODIFIED, lm);
    }
    r
}

/// `serveContent`: preconditions, content type, one range or the whole file, streamed.
fn file_response(file: Opened, name: &[u8], head: &[u8], headers: &HeaderMap, modtime: Option<u64>) -> Response<Body> {
    let lm = last_modified(modtime);
    let range = match fileserver::preconditions(headers, modtime) {
        Precondition::Failed => return respond::bare_status(StatusCode::PRECONDITION_FAILED, lm),
        Precondition::NotModified => return respond::bare_status(StatusCode::NOT_MODIFIED, lm),
        Precondition::Serve { range } => range,
    };
    let size = file.meta.len();
    let ranges = match range.as_deref().map(|r| fileserver::parse_range(r, size)) {
        None => Vec::new(),
        Some(Ok(ranges)) => ranges,
        // Some clients send a Range with every request; an empty file is not an error.
        Some(Err(RangeError::NoOverlap)) if size == 0 => Vec::new(),
        Some(Err(RangeError::NoOverlap)) => return respond::range_not_satisfiable(size),
        Some(Err(RangeError::Invalid)) => {
            return respond::file_server_error(StatusCode::RANGE_NOT_SATISFIABLE, "invalid range\n");
        }
    };
    let total: u64 = ranges.iter().map(|r| r.length).sum();
    // One range is a 206. Several are answered with the whole file, as RFC 9110 allows (Go
    // would send multipart/byteranges); so are ranges adding up to more than the file.
    let single = (ranges.len() == 1 && total <= size).then(|| ranges[0]);

    let (status, start, len) = match single {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.length),
        None => (StatusCode::OK, 0, size),
    };
    let body = if len == 0 {
        respond::full(Bytes::new())
    } else {
        stream::file(file.file, start, len)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(fileserver::content_type(name, head)),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(lm) = lm {
        h.insert(LAST_MODIFIED, lm);
    }
    if let Some(range) = single
        && let Ok(v) = HeaderValue::from_str(&range.content_range(size))
    {
        h.insert(CONTENT_RANGE, v);
    }
    r
}
