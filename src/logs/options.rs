//! The `/containerLogs` query, decoded and validated as the kubelet does, pure.
//!
//! Sources: kubernetes `pkg/kubelet/server/server.go` `getContainerLogs` (the `tail` alias,
//! decode → 400, validate → 422, the `stream` feature-gate check → 400);
//! `pkg/apis/core/v1/validation` `ValidatePodLogOptions`; apimachinery
//! `pkg/runtime/conversion.go` (`Convert_Slice_string_To_bool`, `..._Pointer_int64`: first value
//! wins) and `pkg/apis/meta/v1` `Time.UnmarshalQueryParameter`; Go `net/url.ParseQuery`.

use super::cri::{Instant, Timestamp};

/// `v1.PodLogOptions` as the kubelet's legacy parameter codec fills it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    /// `Some(Timestamp::ZERO)` for `sinceTime=` (an empty value is Go's zero time, not absent).
    pub since_time: Option<Timestamp>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub stream: Option<String>,
}

/// A query the kubelet refuses before looking at any pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// 400 `{"message": "Unable to decode query."}`.
    Decode,
    /// 422 `{"message": "Invalid request."}`.
    Invalid,
}

/// Which streams a request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    All,
    Stdout,
    Stderr,
}

impl Streams {
    pub fn stdout(self) -> bool {
        self != Streams::Stderr
    }

    pub fn stderr(self) -> bool {
        self != Streams::Stdout
    }
}

/// Go's `url.ParseQuery`: `&`-separated pairs, `+` and `%XX` decoded; a pair with `;` or a bad
/// escape is dropped (what `URL.Query()` keeps after ignoring the error).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for piece in query.split('&') {
        if piece.is_empty() || piece.contains(';') {
            continue;
        }
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        if let (Some(k), Some(v)) = (query_unescape(key), query_unescape(value)) {
            pairs.push((k, v));
        }
    }
    pairs
}

fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(super::hex_pair(bytes.get(i + 1..i + 3)?)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Decodes and validates the query of a `/containerLogs` request.
pub fn parse(query: &str) -> Result<PodLogOptions, QueryError> {
    let mut pairs = parse_query(query);
    let first = |pairs: &[(String, String)], key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    // Backwards compatibility: `tail` is copied over `tailLines`, and `tail=all` removes it.
    if let Some(tail) = first(&pairs, "tail").filter(|t| !t.is_empty()) {
        pairs.retain(|(k, _)| k != "tailLines");
        if tail != "all" {
            pairs.push(("tailLines".to_owned(), tail));
        }
    }
    let boolean = |key| first(&pairs, key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
    let int = |key| {
        first(&pairs, key)
            .map(|v| v.parse::<i64>().map_err(|_| QueryError::Decode))
            .transpose()
    };
    let since_time = match first(&pairs, "sinceTime") {
        None => None,
        Some(v) if v.is_empty() || v == "null" => Some(Timestamp::ZERO),
        Some(v) => Some(Timestamp::parse(v.as_bytes()).ok_or(QueryError::Decode)?),
    };
    let options = PodLogOptions {
        follow: boolean("follow"),
        previous: boolean("previous"),
        timestamps: boolean("timestamps"),
        since_seconds: int("sinceSeconds")?,
        since_time,
        tail_lines: int("tailLines")?,
        limit_bytes: int("limitBytes")?,
        stream: first(&pairs, "stream"),
    };
    validate(&options)?;
    Ok(options)
}

/// `ValidatePodLogOptions`.
fn validate(o: &PodLogOptions) -> Result<(), QueryError> {
    let invalid = o.tail_lines.is_some_and(|n| n < 0)
        || o.limit_bytes.is_some_and(|n| n < 1)
        || (o.since_seconds.is_some() && o.since_time.is_some())
        || o.since_seconds.is_some_and(|n| n < 1)
        || o.stream
            .as_deref()
            .is_some_and(|s| !matches!(s, "All" | "Stdout" | "Stderr") || (s != "All" && o.tail_lines.is_some()));
    if invalid { Err(QueryError::Invalid) } else { Ok(()) }
}

impl PodLogOptions {
    /// The streams to read. Without the `PodLogsQuerySplitStreams` gate (off by default in the
    /// kubelet) only `All` is allowed; the `Err` is the kubelet's 400 body.
    pub fn streams(&self, split_enabled: bool) -> Result<Streams, String> {
        match (self.stream.as_deref(), split_enabled) {
            (None | Some("All"), _) => Ok(Streams::All),
            (Some("Stdout"), true) => Ok(Streams::Stdout),
            (Some("Stderr"), true) => Ok(Streams::Stderr),
            (Some(s), true) => Err(format!(
                "invalid stream type {}",
                crate::proxy::respond::go_quote(s.as_bytes())
            )),
            (Some(s), false) => Err(format!(
                "unable to return the given log stream: {}. Please enable PodLogsQuerySplitStreams feature gate in kubelet",
                crate::proxy::respond::go_quote(s.as_bytes())
            )),
        }
    }

    /// `NewLogOptions`' `since`: lines before it are skipped. `sinceSeconds` is subtracted as a
    /// Go `time.Duration`, whose nanoseconds wrap past about 292 years, exactly as upstream.
    pub fn since(&self, now: Instant) -> Option<Instant> {
        let from_seconds = self
            .since_seconds
            .map(|s| now.add_nanos(s.wrapping_mul(1_000_000_000).wrapping_neg()));
        match (from_seconds, self.since_time.map(|t| t.instant())) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> PodLogOptions {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e:?}"))
    }

    #[test]
    fn go_query_decoding() {
        assert_eq!(
            parse_query("a=1&b=x+y%21&a=2&&c&d=&bad=%zz&semi=1;2&%41=z"),
            [("a", "1"), ("b", "x y!"), ("a", "2"), ("c", ""), ("d", ""), ("A", "z")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn the_kubelet_test_cases() {
        // TestContainerLogs*: no params, tailLines=5, legacy tail=5, tail=all, follow=1.
        assert_eq!(ok(""), PodLogOptions::default());
        assert_eq!(ok("tailLines=5").tail_lines, Some(5));
        assert_eq!(ok("tail=5").tail_lines, Some(5));
        assert_eq!(ok("tail=all").tail_lines, None);
        assert!(ok("follow=1").follow);
        // TestContainerLogsWithInvalidTail.
        assert_eq!(parse("tail=-1"), Err(QueryError::Invalid));
    }

    #[test]
    fn tail_alias_overrides_and_removes() {
        assert_eq!(ok("tailLines=7&tail=5").tail_lines, Some(5));
        assert_eq!(ok("tailLines=7&tail=all").tail_lines, None);
        assert_eq!(ok("tailLines=7&tail=").tail_lines, Some(7), "an empty tail is ignored");
        assert_eq!(parse("tail=abc"), Err(QueryError::Decode));
    }

    #[test]
    fn booleans_are_true_unless_0_or_false() {
        for v in ["true", "1", "", "yes", "f", "TRUE"] {
            assert!(ok(&format!("timestamps={v}")).timestamps, "{v:?}");
        }
        for v in ["0", "false", "False", "FALSE"] {
            assert!(!ok(&format!("timestamps={v}")).timestamps, "{v:?}");
        }
        assert!(ok("previous").previous, "a bare key is an empty value");
        assert!(!ok("follow=false&follow=true").follow, "the first value wins");
    }

    #[test]
    fn integers_and_times() {
        assert_eq!(ok("limitBytes=10").limit_bytes, Some(10));
        assert_eq!(
            ok("sinceSeconds=%2B3").since_seconds,
            Some(3),
            "Go's ParseInt takes a sign"
        );
        assert_eq!(
            parse("sinceSeconds=+3"),
            Err(QueryError::Decode),
            "'+' is a space in a query"
        );
        for q in [
            "tailLines=",
            "tailLines=1.5",
            "limitBytes=1e3",
            "sinceSeconds=99999999999999999999",
            "sinceTime=yesterday",
            "sinceTime=2024-01-01",
        ] {
            assert_eq!(parse(q), Err(QueryError::Decode), "{q}");
        }
        assert_eq!(ok("sinceTime=").since_time, Some(Timestamp::ZERO));
        assert_eq!(
            ok("sinceTime=2024-01-01T00:00:00Z").since_time,
            Timestamp::parse(b"2024-01-01T00:00:00Z")
        );
        assert_eq!(
            ok("sinceTime=2024-01-01T01:00:00%2B01:00").since(Instant { secs: 0, nanos: 0 }),
            Timestamp::parse(b"2024-01-01T00:00:00Z").map(|t| t.instant())
        );
    }

    #[test]
    fn validation_is_422() {
        for q in [
            "tailLines=-1",
            "limitBytes=0",
            "limitBytes=-5",
            "sinceSeconds=0",
            "sinceSeconds=-1",
            "sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
            "sinceSeconds=5&sinceTime=",
            "stream=stdout",
            "stream=",
            "stream=Stdout&tailLines=3",
            "stream=Stderr&tail=3",
        ] {
            assert_eq!(parse(q), Err(QueryError::Invalid), "{q}");
        }
        assert_eq!(ok("stream=All&tailLines=3").tail_lines, Some(3));
        assert_eq!(ok("tailLines=0").tail_lines, Some(0));
    }

    #[test]
    fn stream_selection_and_the_feature_gate() {
        assert_eq!(ok("stream=All").streams(false), Ok(Streams::All));
        assert_eq!(ok("").streams(true), Ok(Streams::All));
        assert_eq!(ok("stream=Stdout").streams(true), Ok(Streams::Stdout));
        assert_eq!(ok("stream=Stderr").streams(true), Ok(Streams::Stderr));
        assert_eq!(
            ok("stream=Stderr").streams(false),
            Err("unable to return the given log stream: \"Stderr\". Please enable PodLogsQuerySplitStreams feature gate in kubelet".to_owned())
        );
    }

    #[test]
    fn since_is_the_later_bound() {
        let now = Instant { secs: 1_000, nanos: 0 };
        assert_eq!(ok("").since(now), None);
        assert_eq!(ok("sinceSeconds=10").since(now), Some(Instant { secs: 990, nanos: 0 }));
        assert_eq!(ok("sinceTime=").since(now), Some(Timestamp::ZERO.instant()));
        // Go: time.Duration(9223372037) * time.Second overflows int64 nanoseconds and wraps.
        let wrapped = ok("sinceSeconds=9223372037").since(now).expect("since");
        assert_eq!(
            wrapped,
            now.add_nanos(9_223_372_037i64.wrapping_mul(1_000_000_000).wrapping_neg())
        );
        assert!(wrapped > now, "the wrapped duration points to the future, as in Go");
    }
}
