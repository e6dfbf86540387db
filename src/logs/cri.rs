//! The CRI container log format, pure: one line is `<RFC 3339 time> <stream> <tag> <content>`,
//! e.g. `2016-10-06T00:17:09.669794202Z stdout P log content 1`, where the tag `P` marks a
//! partial line that the next record continues. Also the legacy Docker JSON-file format, which
//! the kubelet accepts when the first line is not CRI. Timestamps are parsed and written back
//! exactly as the kubelet's Go code does.
//!
//! Source: kubernetes `pkg/kubelet/kuberuntime/logs/logs.go` (`parseCRILog`,
//! `parseDockerJSONLog`, `timeFormatIn` = RFC3339Nano read leniently, `timeFormatOut` =
//! RFC3339NanoFixed).

use serde::Deserialize;

/// Which of the container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A point in time, as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub secs: i64,
    pub nanos: u32,
}

impl Instant {
    /// `t.Add(d)` for a Go `time.Duration` of `nanos` nanoseconds.
    pub fn add_nanos(self, nanos: i64) -> Instant {
        let total = i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos) + i128::from(nanos);
        let secs = total.div_euclid(1_000_000_000);
        Instant {
            secs: i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX }),
            nanos: total.rem_euclid(1_000_000_000) as u32,
        }
    }

    pub fn now() -> Instant {
        // A clock before 1970 is not a case worth a branch: it reads as the epoch.
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Instant {
            secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
        }
    }
}

/// A time read from RFC 3339 text, keeping the wall-clock fields and the offset it was written
/// with: Go prints a parsed time back in the offset it was parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    nanos: u32,
    /// Seconds east of UTC.
    offset: i32,
}

impl Timestamp {
    /// Go's zero `time.Time`: what a Docker JSON record without a time carries.
    pub const ZERO: Timestamp = Timestamp {
        year: 1,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset: 0,
    };

    /// Go's `time.Parse(time.RFC3339Nano, s)` (equivalently `time.RFC3339`, which accepts a
    /// fraction too): a four-digit year, two-digit month, day, minute and second, a one- or
    /// two-digit hour, an optional `.` or `,` fraction of any length (nanoseconds are its first
    /// nine digits), then `Z` or `±hh:mm`. Fields are range-checked as Go does.
    pub fn parse(text: &[u8]) -> Option<Timestamp> {
        let mut p = Parser { text, at: 0 };
        let year = p.digits(4)?;
        p.expect(b'-')?;
        let month = p.digits(2)?;
        p.expect(b'-')?;
        let day = p.digits(2)?;
        p.expect(b'T')?;
        let hour = match p.digits(2) {
            Some(h) => h,
            None => p.digits(1)?,
        };
        p.expect(b':')?;
        let minute = p.digits(2)?;
        p.expect(b':')?;
        let second = p.digits(2)?;
        let mut nanos = 0u32;
        if matches!(p.peek(), Some(b'.' | b',')) && p.text.get(p.at + 1).is_some_and(u8::is_ascii_digit) {
            p.at += 1;
            let mut scale = 100_000_000u32;
            while let Some(d) = p.peek().filter(u8::is_ascii_digit) {
                nanos += u32::from(d - b'0') * scale;
                scale /= 10;
                p.at += 1;
            }
        }
        let offset = match p.peek()? {
            b'Z' => {
                p.at += 1;
                0
            }
            sign @ (b'+' | b'-') => {
                p.at += 1;
                let hours = p.digits(2)?;
                p.expect(b':')?;
                let minutes = p.digits(2)?;
                if hours > 24 || minutes > 60 {
                    return None;
                }
                let secs = (hours * 3600 + minutes * 60) as i32;
                if sign == b'-' { -secs } else { secs }
            }
            _ => return None,
        };
        if p.at != text.len()
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour >= 24
            || minute >= 60
            || second >= 60
        {
            return None;
        }
        Some(Timestamp {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            nanos,
            offset,
        })
    }

    pub fn instant(&self) -> Instant {
        let days = days_from_civil(i64::from(self.year), u32::from(self.month), u32::from(self.day));
        let secs = days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
            - i64::from(self.offset);
        Instant {
            secs,
            nanos: self.nanos,
        }
    }

    /// Go's `t.Format(RFC3339NanoFixed)` (`2006-01-02T15:04:05.000000000Z07:00`), appended
    /// to `out`: nine fraction digits always, `Z` for a zero offset.
    pub fn write_fixed(&self, out: &mut Vec<u8>) {
        fn two(out: &mut Vec<u8>, v: u32) {
            out.push(b'0' + (v / 10 % 10) as u8);
            out.push(b'0' + (v % 10) as u8);
        }
        let year = u32::from(self.year);
        two(out, year / 100);
        two(out, year % 100);
        out.push(b'-');
        two(out, u32::from(self.month));
        out.push(b'-');
        two(out, u32::from(self.day));
        out.push(b'T');
        two(out, u32::from(self.hour));
        out.push(b':');
        two(out, u32::from(self.minute));
        out.push(b':');
        two(out, u32::from(self.second));
        out.push(b'.');
        let mut scale = 100_000_000;
        while scale > 0 {
            out.push(b'0' + (self.nanos / scale % 10) as u8);
            scale /= 10;
        }
        if self.offset == 0 {
            out.push(b'Z');
        } else {
            out.push(if self.offset < 0 { b'-' } else { b'+' });
            let abs = self.offset.unsigned_abs();
            two(out, abs / 3600);
            out.push(b':');
            two(out, abs % 3600 / 60);
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let field = self.text.get(self.at..self.at + n)?;
        if !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += n;
        Some(field.iter().fold(0, |v, d| v * 10 + u32::from(d - b'0')))
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The fields before a CRI record's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub timestamp: Timestamp,
    pub stream: Stream,
    /// Tag `P`: the record continues in the next line.
    pub partial: bool,
    /// Where the content starts in the line.
    pub content: usize,
}

/// Why a line is not a CRI record; the kubelet logs these and skips the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CriError {
    #[error("timestamp is not found")]
    NoTimestamp,
    #[error("unexpected timestamp format")]
    BadTimestamp,
    #[error("stream type is not found")]
    NoStream,
    #[error("unexpected stream type")]
    BadStream,
    #[error("log tag is not found")]
    NoTag,
}

/// `parseCRILog` up to the content: three space-separated fields. `line` is the line without
/// its `\n`, or just its beginning (the header is in the first few dozen bytes).
pub fn parse_header(line: &[u8]) -> Result<Header, CriError> {
    let space = |from: usize| memchr::memchr(b' ', &line[from..]).map(|i| from + i);
    let ts_end = space(0).ok_or(CriError::NoTimestamp)?;
    let timestamp = Timestamp::parse(&line[..ts_end]).ok_or(CriError::BadTimestamp)?;
    let stream_end = space(ts_end + 1).ok_or(CriError::NoStream)?;
    let stream = match &line[ts_end + 1..stream_end] {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return Err(CriError::BadStream),
    };
    let tag_end = space(stream_end + 1).ok_or(CriError::NoTag)?;
    // Tags are `:`-separated for forward compatibility; only the first one means anything.
    let tag = &line[stream_end + 1..tag_end];
    let first = tag.split(|&b| b == b':').next().unwrap_or_default();
    Ok(Header {
        timestamp,
        stream,
        partial: first == b"P",
        content: tag_end + 1,
    })
}

/// A Docker JSON-file record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRecord {
    pub timestamp: Timestamp,
    /// Any string: the kubelet fails the whole request on one that is not stdout or stderr.
    pub stream: String,
    pub log: String,
}

#[derive(Deserialize)]
struct RawJson {
    #[serde(default)]
    log: Option<String>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    time: Option<String>,
}

/// `parseDockerJSONLog`: `{"log":"content 1","stream":"stdout","time":"2016-10-20T18:39:20.57606443Z"}`.
pub fn parse_docker_json(line: &[u8]) -> Option<JsonRecord> {
    let raw: RawJson = serde_json::from_slice(line).ok()?;
    let timestamp = match raw.time {
        None => Timestamp::ZERO,
        Some(t) => Timestamp::parse(t.as_bytes())?,
    };
    Some(JsonRecord {
        timestamp,
        stream: raw.stream.unwrap_or_default(),
        log: raw.log.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(text: &str) -> String {
        let mut out = Vec::new();
        Timestamp::parse(text.as_bytes())
            .unwrap_or_else(|| panic!("{text} parses"))
            .write_fixed(&mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn timestamps_are_written_back_as_go_formats_them() {
        assert_eq!(
            fixed("2016-10-06T00:17:09.669794202Z"),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(fixed("2016-10-06T00:17:09.6697942Z"), "2016-10-06T00:17:09.669794200Z");
        assert_eq!(fixed("2016-10-06T00:17:09Z"), "2016-10-06T00:17:09.000000000Z");
        assert_eq!(fixed("2016-10-06T00:17:09,5Z"), "2016-10-06T00:17:09.500000000Z");
        assert_eq!(
            fixed("2016-10-06T00:17:09.1234567891234Z"),
            "2016-10-06T00:17:09.123456789Z",
            "digits past the ninth are dropped"
        );
        assert_eq!(
            fixed("2016-10-06T02:17:09.5+02:00"),
            "2016-10-06T02:17:09.500000000+02:00"
        );
        assert_eq!(
            fixed("2016-10-05T19:17:09.5-04:30"),
            "2016-10-05T19:17:09.500000000-04:30"
        );
        assert_eq!(fixed("2016-10-06T00:17:09+00:00"), "2016-10-06T00:17:09.000000000Z");
        assert_eq!(
            fixed("2016-10-06T7:17:09Z"),
            "2016-10-06T07:17:09.000000000Z",
            "Go's lenient hour"
        );
        assert_eq!(fixed("2024-02-29T00:00:00Z"), "2024-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "2016-10-06",
            "2016-10-06T00:17:09",
            "2016-10-06 00:17:09Z",
            "2016-10-06t00:17:09Z",
            "16-10-06T00:17:09Z",
            "2016-13-06T00:17:09Z",
            "2016-00-06T00:17:09Z",
            "2016-10-32T00:17:09Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2016-10-06T24:00:00Z",
            "2016-10-06T00:60:00Z",
            "2016-10-06T00:00:60Z",
            "2016-10-06T00:17:09.Z",
            "2016-10-06T00:17:09.5z",
            "2016-10-06T00:17:09.5+0200",
            "2016-10-06T00:17:09.5+25:00",
            "2016-10-06T00:17:09.5Zjunk",
            "2016-10-06T00:17:09.5 ",
        ] {
            assert_eq!(Timestamp::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn instants_compare_across_offsets() {
        let at = |t: &str| Timestamp::parse(t.as_bytes()).expect("parses").instant();
        assert_eq!(at("1970-01-01T00:00:00Z"), Instant { secs: 0, nanos: 0 });
        assert_eq!(at("2016-10-06T00:17:09.5Z").secs, 1_475_713_029);
        assert_eq!(at("2016-10-06T02:17:09.5+02:00"), at("2016-10-06T00:17:09.5Z"));
        assert!(at("2016-10-06T00:17:09.5Z") < at("2016-10-06T00:17:09.500000001Z"));
        assert_eq!(Timestamp::ZERO.instant().secs, -62_135_596_800, "Go's zero time");
        assert_eq!(
            at("1969-12-31T23:59:59.9Z"),
            Instant {
                secs: -1,
                nanos: 900_000_000
            }
        );
    }

    #[test]
    fn go_duration_arithmetic() {
        let t = Instant { secs: 100, nanos: 5 };
        assert_eq!(t.add_nanos(-1_000_000_000), Instant { secs: 99, nanos: 5 });
        assert_eq!(
            t.add_nanos(-6),
            Instant {
                secs: 99,
                nanos: 999_999_999
            }
        );
    }

    #[test]
    fn cri_headers() {
        let line = b"2016-10-06T00:17:09.669794202Z stdout P log content 1";
        let h = parse_header(line).expect("parses");
        assert_eq!(h.stream, Stream::Stdout);
        assert!(h.partial);
        assert_eq!(&line[h.content..], b"log content 1");
        let h = parse_header(b"2016-10-06T00:17:09.669794203Z stderr F log content 2").expect("parses");
        assert_eq!((h.stream, h.partial), (Stream::Stderr, false));
        let h = parse_header(b"2016-10-06T00:17:09Z stdout P:x:y  two spaces").expect("parses");
        assert!(h.partial, "only the first tag counts");
        let h = parse_header(b"2016-10-06T00:17:09Z stdout F ").expect("parses");
        assert_eq!(h.content, 30, "empty content");
        let h = parse_header(b"2016-10-06T00:17:09Z stdout X content").expect("parses");
        assert!(!h.partial, "an unknown tag is a full line");
        for (line, err) in [
            (&b"garbage"[..], CriError::NoTimestamp),
            (b"yesterday stdout F x", CriError::BadTimestamp),
            (b"2016-10-06T00:17:09Z stdout", CriError::NoStream),
            (b"2016-10-06T00:17:09Z stdin F x", CriError::BadStream),
            (b"2016-10-06T00:17:09Z stdout F", CriError::NoTag),
        ] {
            assert_eq!(parse_header(line), Err(err), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn docker_json_records() {
        let r = parse_docker_json(br#"{"log":"content 1\n","stream":"stdout","time":"2016-10-20T18:39:20.57606443Z"}"#)
            .expect("parses");
        assert_eq!(r.log, "content 1\n");
        assert_eq!(r.stream, "stdout");
        let mut out = Vec::new();
        r.timestamp.write_fixed(&mut out);
        assert_eq!(out, b"2016-10-20T18:39:20.576064430Z");
        let r = parse_docker_json(b"{\"log\":\"x\",\"stream\":\"stderr\"}\n").expect("no time: zero time");
        assert_eq!(r.timestamp, Timestamp::ZERO);
        assert_eq!(parse_docker_json(b"2016-10-06T00:17:09Z stdout F x"), None);
        assert_eq!(parse_docker_json(br#"{"log":"x","time":"never"}"#), None);
    }
}
