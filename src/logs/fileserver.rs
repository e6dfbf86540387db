//! Go `http.FileServer`'s request semantics, pure: path cleaning, `Range`, the conditional
//! headers, and the content type. Source: go `src/net/http/fs.go` (`serveFile`,
//! `serveContent`, `parseRange`, `checkPreconditions`) and `src/path/path.go` (`Clean`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// Go's `path.Clean` on a `/`-rooted path: `.` and `..` resolved lexically (never above the
/// root), repeated slashes folded, no trailing slash except for the root.
pub fn clean(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Go's `path.Base`: the last element, trailing slashes ignored; `/` for all slashes and `.`
/// for nothing.
pub fn base(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        return b".";
    }
    let trimmed = match path.iter().rposition(|&b| b != b'/') {
        Some(i) => &path[..=i],
        None => return b"/",
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// A satisfiable byte range: `start` and `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub length: u64,
}

impl ByteRange {
    /// `Content-Range: bytes a-b/size`.
    pub fn content_range(&self, size: u64) -> String {
        format!(
            "bytes {}-{}/{}",
            self.start,
            (self.start + self.length).wrapping_sub(1) as i64,
            size
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// 416 `invalid range`.
    Invalid,
    /// 416 `invalid range: failed to overlap` (or 200 for an empty file).
    NoOverlap,
}

/// Go's `parseRange`. Ranges that start past the end are dropped; none left is `NoOverlap`.
pub fn parse_range(header: &str, size: u64) -> Result<Vec<ByteRange>, RangeError> {
    let Some(spec) = header.strip_prefix("bytes=") else {
        return Err(RangeError::Invalid);
    };
    let trim = |s: &str| s.trim_matches([' ', '\t', '\n', '\r']).to_owned();
    let int = |s: &str| s.parse::<i64>().ok();
    let size_i = i64::try_from(size).unwrap_or(i64::MAX);
    let mut ranges = Vec::new();
    let mut no_overlap = false;
    for part in spec.split(',') {
        let part = trim(part);
        if part.is_empty() {
            continue;
        }
        let Some((start, end)) = part.split_once('-') else {
            return Err(RangeError::Invalid);
        };
        let (start, end) = (trim(start), trim(end));
        let (first, length) = if start.is_empty() {
            // A suffix: the last `end` bytes.
            if end.is_empty() || end.starts_with('-') {
                return Err(RangeError::Invalid);
            }
            let n = int(&end).filter(|n| *n >= 0).ok_or(RangeError::Invalid)?.min(size_i);
            (size_i - n, n)
        } else {
            let first = int(&start).filter(|n| *n >= 0).ok_or(RangeError::Invalid)?;
            if first >= size_i {
                no_overlap = true;
                continue;
            }
            let last = if end.is_empty() {
                size_i - 1
            } else {
                let last = int(&end).filter(|l| *l >= first).ok_or(RangeError::Invalid)?;
                last.min(size_i - 1)
            };
            (first, last - first + 1)
        };
        ranges.push(ByteRange {
            start: first as u64,
            length: length as u64,
        });
    }
    if no_overlap && ranges.is_empty() {
        return Err(RangeError::NoOverlap);
    }
    Ok(ranges)
}

/// What the conditional headers decide before any content is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Serve; with the `Range` header to honour, if any.
    Serve { range: Option<String> },
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    None,
    True,
    False,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// Seconds since the epoch, or `None` for Go's "unknown" time (zero or the epoch itself).
pub fn modtime_secs(modified: Option<SystemTime>) -> Option<u64> {
    modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .filter(|s| *s != 0)
}

fn http_date_secs(value: &str) -> Option<u64> {
    httpdate::parse_http_date(value)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// `Last-Modified` text for a modification time.
pub fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `checkIfModifiedSince` alone, as Go applies it to directory listings.
pub fn not_modified_since(headers: &HeaderMap, modtime: Option<u64>) -> bool {
    if_modified_since(headers, modtime) == Cond::False
}

fn if_modified_since(headers: &HeaderMap, modtime: Option<u64>) -> Cond {
    let (Some(value), Some(m)) = (header(headers, "if-modified-since"), modtime) else {
        return Cond::None;
    };
    match http_date_secs(value) {
        None => Cond::None,
        Some(t) if m <= t => Cond::False,
        Some(_) => Cond::True,
    }
}

/// Go's `checkPreconditions` for a GET of a file. The file server sets no `ETag`, so an
/// `If-Match` other than `*` never matches and an `If-None-Match` other than `*` always does.
pub fn preconditions(headers: &HeaderMap, modtime: Option<u64>) -> Precondition {
    let first_tag = |v: &str| v.trim_start_matches([' ', '\t', ',']).starts_with('*');
    let mut ch = match header(headers, "if-match") {
        None => Cond::None,
        Some(v) if first_tag(v) => Cond::True,
        Some(_) => Cond::False,
    };
    if ch == Cond::None
        && let (Some(value), Some(m)) = (header(headers, "if-unmodified-since"), modtime)
        && let Some(t) = http_date_secs(value)
    {
        ch = if m <= t { Cond::True } else { Cond::False };
    }
    if ch == Cond::False {
        return Precondition::Failed;
    }
    match header(headers, "if-none-match") {
        Some(v) if first_tag(v) => return Precondition::NotModified,
        Some(_) => {}
        None => {
            if if_modified_since(headers, modtime) == Cond::False {
                return Precondition::NotModified;
            }
        }
    }
    let mut range = header(headers, "range").map(str::to_owned);
    if range.is_some()
        && let Some(if_range) = header(headers, "if-range")
    {
        // No ETag can match; a date must equal the modification time to the second.
        let trimmed = if_range.trim_start();
        let is_etag = trimmed.starts_with('"') || trimmed.starts_with("W/\"");
        let same = !is_etag && modtime.is_some() && http_date_secs(if_range) == modtime;
        if !same {
            range = None;
        }
    }
    Precondition::Serve { range }
}

/// The `Content-Type` of a served file. Go takes it from the extension, else sniffs the first
/// 512 bytes (`http.DetectContentType`). Deliberately, nothing a browser would run or render
/// as a page (HTML, SVG, XML, JavaScript, CSS) is ever announced: those are `text/plain`.
pub fn content_type(name: &[u8], head: &[u8]) -> &'static str {
    const TEXT: &str = "text/plain; charset=utf-8";
    let ext = name
        .iter()
        .rposition(|&b| b == b'.')
        .map(|i| &name[i..])
        .unwrap_or_default();
    match ext.to_ascii_lowercase().as_slice() {
        b".avif" => return "image/avif",
        b".gif" => return "image/gif",
        b".jpeg" | b".jpg" => return "image/jpeg",
        b".json" => return "application/json",
        b".pdf" => return "application/pdf",
        b".png" => return "image/png",
        b".wasm" => return "application/wasm",
        b".webp" => return "image/webp",
        b".css" | b".htm" | b".html" | b".js" | b".mjs" | b".svg" | b".xml" => return TEXT,
        _ => {}
    }
    let head = &head[..head.len().min(512)];
    let signatures: [(&[u8], &str); 7] = [
        (b"\x1f\x8b\x08", "application/x-gzip"),
        (b"PK\x03\x04", "application/zip"),
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
    ];
    if let Some((_, t)) = signatures.iter().find(|(sig, _)| head.starts_with(sig)) {
        return t;
    }
    if head.starts_with(b"\xfe\xff") {
        return "text/plain; charset=utf-16be";
    }
    if head.starts_with(b"\xff\xfe") {
        return "text/plain; charset=utf-16le";
    }
    // Go's "binary data" bytes: controls other than \t \n \f \r and ESC.
    let binary = head
        .iter()
        .any(|&b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f));
    if binary { "application/octet-stream" } else { TEXT }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn go_path_clean_and_base() {
        for (input, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b"),
            ("//a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/../../..", "/"),
        ] {
            assert_eq!(clean(input.as_bytes()), want.as_bytes(), "{input}");
        }
        for (input, want) in [("/a/b", "b"), ("/a/b/", "b"), ("/", "/"), ("", "."), ("x", "x")] {
            assert_eq!(base(input.as_bytes()), want.as_bytes(), "{input}");
        }
    }

    fn r(start: u64, length: u64) -> ByteRange {
        ByteRange { start, length }
    }

    #[test]
    fn go_range_parsing() {
        assert_eq!(parse_range("bytes=0-4", 10), Ok(vec![r(0, 5)]));
        assert_eq!(parse_range("bytes=5-", 10), Ok(vec![r(5, 5)]));
        assert_eq!(parse_range("bytes=-3", 10), Ok(vec![r(7, 3)]));
        assert_eq!(parse_range("bytes=-30", 10), Ok(vec![r(0, 10)]));
        assert_eq!(parse_range("bytes=8-100", 10), Ok(vec![r(8, 2)]));
        assert_eq!(parse_range("bytes= 1 - 2 ", 10), Ok(vec![r(1, 2)]));
        assert_eq!(parse_range("bytes=0-0,5-6", 10), Ok(vec![r(0, 1), r(5, 2)]));
        assert_eq!(
            parse_range("bytes=20-30,2-3", 10),
            Ok(vec![r(2, 2)]),
            "non-overlapping ones dropped"
        );
        assert_eq!(parse_range("bytes=", 10), Ok(vec![]));
        assert_eq!(parse_range("bytes=10-", 10), Err(RangeError::NoOverlap));
        assert_eq!(parse_range("bytes=10-20,30-", 10), Err(RangeError::NoOverlap));
        assert_eq!(parse_range("bytes=0-1", 0), Err(RangeError::NoOverlap));
        for bad in [
            "items=0-1",
            "bytes=1",
            "bytes=5-4",
            "bytes=-",
            "bytes=--1",
            "bytes=a-b",
            "bytes=-1-2",
        ] {
            assert_eq!(parse_range(bad, 10), Err(RangeError::Invalid), "{bad}");
        }
        assert_eq!(r(7, 3).content_range(10), "bytes 7-9/10");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn conditional_requests() {
        let m = Some(1_700_000_000);
        let at = |s: u64| http_date(s);
        let serve = |range: Option<&str>| Precondition::Serve {
            range: range.map(str::to_owned),
        };
        assert_eq!(preconditions(&headers(&[]), m), serve(None));
        assert_eq!(
            preconditions(&headers(&[("if-modified-since", &at(1_700_000_000))]), m),
            Precondition::NotModified
        );
        assert_eq!(
            preconditions(&headers(&[("if-modified-since", &at(1_699_999_999))]), m),
            serve(None)
        );
        assert_eq!(
            preconditions(&headers(&[("if-modified-since", "garbage")]), m),
            serve(None)
        );
        assert_eq!(
            preconditions(&headers(&[("if-unmodified-since", &at(1_699_999_999))]), m),
            Precondition::Failed
        );
        assert_eq!(
            preconditions(&headers(&[("if-match", "\"x\"")]), m),
            Precondition::Failed
        );
        assert_eq!(preconditions(&headers(&[("if-match", "*")]), m), serve(None));
        assert_eq!(
            preconditions(&headers(&[("if-none-match", "*")]), m),
            Precondition::NotModified
        );
        assert_eq!(
            preconditions(
                &headers(&[("if-none-match", "\"x\""), ("if-modified-since", &at(1_800_000_000))]),
                m
            ),
            serve(None),
            "If-None-Match present: If-Modified-Since is not consulted"
        );
        assert_eq!(
            preconditions(&headers(&[("range", "bytes=0-1"), ("if-range", &at(1_700_000_000))]), m),
            serve(Some("bytes=0-1"))
        );
        assert_eq!(
            preconditions(&headers(&[("range", "bytes=0-1"), ("if-range", &at(1_600_000_000))]), m),
            serve(None)
        );
        assert_eq!(
            preconditions(&headers(&[("range", "bytes=0-1"), ("if-range", "\"etag\"")]), m),
            serve(None)
        );
        assert_eq!(
            preconditions(&headers(&[("if-modified-since", &at(1_800_000_000))]), None),
            serve(None),
            "an unknown modification time is never 'not modified'"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(b"syslog", b"Jan 1 host kernel: x\n"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(b"x.log", b""), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"x.log.1.gz", b"\x1f\x8b\x08\x00"), "application/x-gzip");
        assert_eq!(
            content_type(b"system.journal", b"LPKSHHRH\x00\x00"),
            "application/octet-stream"
        );
        assert_eq!(content_type(b"x.json", b"{}"), "application/json");
        assert_eq!(content_type(b"x.PNG", b""), "image/png");
        for active in ["a.html", "a.htm", "a.svg", "a.js", "a.xml", "a.css"] {
            assert_eq!(
                content_type(active.as_bytes(), b"<html><script>"),
                "text/plain; charset=utf-8",
                "{active}"
            );
        }
        assert_eq!(
            content_type(b"page", b"<!DOCTYPE html><script>"),
            "text/plain; charset=utf-8"
        );
    }
}
