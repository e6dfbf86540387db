//! From a container's log file to the bytes the kubelet sends: records are split into lines,
//! parsed, filtered (`sinceSeconds`/`sinceTime`, `stream`), prefixed (`timestamps`) and cut
//! (`limitBytes`, `tailLines`) exactly as the kubelet's `ReadLogs` and `logWriter` do.
//! Memory is one read buffer plus one output chunk: a line longer than the buffer is passed on
//! in pieces rather than collected.
//!
//! Source: kubernetes `pkg/kubelet/kuberuntime/logs/logs.go` (`ReadLogs`, `logWriter.write`):
//! - the first line read decides the format (CRI, else Docker JSON, else the request fails
//!   with `failed to get parse function: ...` appended to the stream);
//! - a line that does not parse is skipped and not counted;
//! - a partial (`P`) record loses its `\n`, so the next record continues the same line, and
//!   with `timestamps` only the first record of a line gets the prefix (`isNewLine`);
//! - `limitBytes` counts the prefix too and cuts the last line mid-way;
//! - without `follow`, `tailLines` also stops after that many parsed records, so lines before
//!   `sinceTime` or of an unwanted stream still use up the count.

use std::io::{self, Read};

use super::cri::{self, Instant, Stream, Timestamp};
use super::options::Streams;
use crate::proxy::respond::{go_quote, unsupported_log_format};

/// What a request asks of the reader.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub timestamps: bool,
    pub since: Option<Instant>,
    pub streams: Streams,
    pub limit_bytes: Option<u64>,
    /// `tailLines` when not following: stop after this many records.
    pub max_records: Option<u64>,
}

/// The state after some input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    More,
    /// Nothing more will be written (the byte or record limit is reached).
    Done,
    /// The request ends with this text appended, as the kubelet writes its error.
    Failed(String),
}

/// How a piece of a line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The line goes on in the next piece.
    No,
    /// At its `\n` (not included in the piece).
    Newline,
    /// At the end of a file that will not grow: a last line without `\n`.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Cri,
    DockerJson,
}

#[derive(Debug)]
enum Current {
    Idle,
    /// Not a record: skipped whole, not counted.
    Skip,
    Record {
        write: bool,
        /// A full CRI record keeps its `\n` as content; a partial one and a JSON one do not.
        keeps_newline: bool,
        /// The last content byte so far.
        last: Option<u8>,
    },
}

/// The kubelet's `logWriter` plus the record loop's bookkeeping.
#[derive(Debug)]
pub struct Records {
    settings: Settings,
    remain: Option<u64>,
    records_left: Option<u64>,
    new_line: bool,
    format: Option<Format>,
    current: Current,
}

impl Records {
    pub fn new(settings: Settings) -> Records {
        Records {
            settings,
            remain: settings.limit_bytes,
            records_left: settings.max_records,
            new_line: true,
            format: None,
            current: Current::Idle,
        }
    }

    /// `tailLines=0` without `follow`: nothing to read at all.
    pub fn finished(&self) -> bool {
        self.records_left == Some(0)
    }

    /// Takes a piece of a line. `starts` is true for the first piece of each line.
    pub fn feed(&mut self, piece: &[u8], starts: bool, end: End, out: &mut Vec<u8>) -> Progress {
        let progress = if starts {
            self.begin(piece, end, out)
        } else {
            self.content(piece, out)
        };
        if progress != Progress::More || end == End::No {
            return progress;
        }
        self.finish_line(end, out)
    }

    fn begin(&mut self, piece: &[u8], end: End, out: &mut Vec<u8>) -> Progress {
        let format = match self.format {
            Some(f) => f,
            None => {
                let f = if cri::parse_header(piece).is_ok() {
                    Format::Cri
                } else if end != End::No && cri::parse_docker_json(piece).is_some() {
                    Format::DockerJson
                } else {
                    let mut line = piece.to_vec();
                    if end == End::Newline {
                        line.push(b'\n');
                    }
                    return Progress::Failed(unsupported_log_format(&line));
                };
                self.format = Some(f);
                f
            }
        };
        match format {
            Format::Cri => match cri::parse_header(piece) {
                Err(e) => {
                    tracing::debug!(error = %e, "skipping a log line that is not a CRI record");
                    self.current = Current::Skip;
                    Progress::More
                }
                Ok(h) => {
                    let write = self.wanted(&h.timestamp, h.stream);
                    self.current = Current::Record {
                        write,
                        keeps_newline: !h.partial,
                        last: None,
                    };
                    if let p @ (Progress::Done | Progress::Failed(_)) = self.prefix(write, &h.timestamp, out) {
                        return p;
                    }
                    self.content(&piece[h.content..], out)
                }
            },
            Format::DockerJson => {
                // A JSON record is decoded whole; one longer than the read buffer is skipped.
                let record = (end != End::No).then(|| cri::parse_docker_json(piece)).flatten();
                let Some(record) = record else {
                    tracing::debug!("skipping a log line that is not a Docker JSON record");
                    self.current = Current::Skip;
                    return Progress::More;
                };
                let before = self.before_since(&record.timestamp);
                let stream = match record.stream.as_str() {
                    _ if before => None,
                    "stdout" => Some(Stream::Stdout),
                    "stderr" => Some(Stream::Stderr),
                    other => {
                        return Progress::Failed(format!("unexpected stream type {}", go_quote(other.as_bytes())));
                    }
                };
                let write = stream.is_some_and(|s| self.wants(s));
                self.current = Current::Record {
                    write,
                    keeps_newline: false,
                    last: None,
                };
                if let p @ (Progress::Done | Progress::Failed(_)) = self.prefix(write, &record.timestamp, out) {
                    return p;
                }
                self.content(record.log.as_bytes(), out)
            }
        }
    }

    fn before_since(&self, t: &Timestamp) -> bool {
        self.settings.since.is_some_and(|since| t.instant() < since)
    }

    fn wants(&self, stream: Stream) -> bool {
        match stream {
            Stream::Stdout => self.settings.streams.stdout(),
            Stream::Stderr => self.settings.streams.stderr(),
        }
    }

    fn wanted(&self, t: &Timestamp, stream: Stream) -> bool {
        !self.before_since(t) && self.wants(stream)
    }

    fn prefix(&mut self, write: bool, t: &Timestamp, out: &mut Vec<u8>) -> Progress {
        if !(write && self.settings.timestamps && self.new_line) {
            return Progress::More;
        }
        if self.remain.is_none() {
            t.write_fixed(out);
            out.push(b' ');
            return Progress::More;
        }
        let mut prefix = Vec::with_capacity(36);
        t.write_fixed(&mut prefix);
        prefix.push(b' ');
        self.emit(&prefix, out)
    }

    fn content(&mut self, piece: &[u8], out: &mut Vec<u8>) -> Progress {
        let Current::Record { write, last, .. } = &mut self.current else {
            return Progress::More;
        };
        if let Some(&b) = piece.last() {
            *last = Some(b);
        }
        if *write { self.emit(piece, out) } else { Progress::More }
    }

    fn finish_line(&mut self, end: End, out: &mut Vec<u8>) -> Progress {
        let Current::Record {
            write,
            keeps_newline,
            mut last,
        } = std::mem::replace(&mut self.current, Current::Idle)
        else {
            return Progress::More;
        };
        if end == End::Newline && keeps_newline {
            last = Some(b'\n');
            if write && self.emit(b"\n", out) == Progress::Done {
                return Progress::Done;
            }
        }
        self.new_line = last.is_none_or(|b| b == b'\n');
        if let Some(left) = &mut self.records_left {
            *left = left.saturating_sub(1);
            if *left == 0 {
                return Progress::Done;
            }
        }
        Progress::More
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Progress {
        let Some(remain) = &mut self.remain else {
            out.extend_from_slice(bytes);
            return Progress::More;
        };
        let n = bytes.len().min(usize::try_from(*remain).unwrap_or(usize::MAX));
        out.extend_from_slice(&bytes[..n]);
        *remain -= n as u64;
        if *remain == 0 { Progress::Done } else { Progress::More }
    }
}

/// What [`Lines::pump`] stopped on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pumped {
    /// The output holds at least a chunk.
    Chunk,
    /// The file has nothing more for now; an unterminated last line is kept.
    Eof,
    Done,
    Failed(String),
}

/// Splits a file into lines through one fixed buffer.
#[derive(Debug)]
pub struct Lines {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Inside a line longer than the buffer, whose first pieces were passed on.
    mid_line: bool,
}

impl Lines {
    pub fn new(capacity: usize) -> Lines {
        Lines {
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            end: 0,
            mid_line: false,
        }
    }

    /// Forgets everything buffered (the next file starts afresh).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.mid_line = false;
    }

    /// Reads and feeds whole lines until `out` holds `chunk` bytes, the records are done, or
    /// the source has nothing more.
    pub fn pump<R: Read>(
        &mut self,
        src: &mut R,
        records: &mut Records,
        out: &mut Vec<u8>,
        chunk: usize,
    ) -> io::Result<Pumped> {
        loop {
            while let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let starts = !std::mem::replace(&mut self.mid_line, false);
                let line = &self.buf[self.start..self.start + i];
                let progress = records.feed(line, starts, End::Newline, out);
                self.start += i + 1;
                match progress {
                    Progress::More => {}
                    Progress::Done => return Ok(Pumped::Done),
                    Progress::Failed(m) => return Ok(Pumped::Failed(m)),
                }
                if out.len() >= chunk {
                    return Ok(Pumped::Chunk);
                }
            }
            if self.start == 0 && self.end == self.buf.len() {
                // A line longer than the buffer: pass this much on and keep reading.
                let starts = !std::mem::replace(&mut self.mid_line, true);
                let progress = records.feed(&self.buf[..self.end], starts, End::No, out);
                self.end = 0;
                match progress {
                    Progress::More => {}
                    Progress::Done => return Ok(Pumped::Done),
                    Progress::Failed(m) => return Ok(Pumped::Failed(m)),
                }
                if out.len() >= chunk {
                    return Ok(Pumped::Chunk);
                }
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = loop {
                match src.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                return Ok(Pumped::Eof);
            }
            self.end += n;
        }
    }

    /// The file will not grow: its last line, if it has no `\n`, is a record too.
    pub fn finish(&mut self, records: &mut Records, out: &mut Vec<u8>) -> Progress {
        if self.start == self.end && !self.mid_line {
            return Progress::More;
        }
        let starts = !self.mid_line;
        let progress = records.feed(&self.buf[self.start..self.end], starts, End::Eof, out);
        self.reset();
        progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::options::Streams;

    fn settings() -> Settings {
        Settings {
            timestamps: false,
            since: None,
            streams: Streams::All,
            limit_bytes: None,
            max_records: None,
        }
    }

    /// Reads `input` whole through a buffer of `cap` bytes, as a request without follow does.
    fn read(input: &str, s: Settings, cap: usize) -> String {
        let mut records = Records::new(s);
        let mut lines = Lines::new(cap);
        let mut out = Vec::new();
        let mut src = input.as_bytes();
        if !records.finished() {
            loop {
                match lines.pump(&mut src, &mut records, &mut out, 7).expect("in memory") {
                    Pumped::Chunk => continue,
                    Pumped::Eof => {
                        if let Progress::Failed(m) = lines.finish(&mut records, &mut out) {
                            out.extend_from_slice(m.as_bytes());
                        }
                        break;
                    }
                    Pumped::Done => break,
                    Pumped::Failed(m) => {
                        out.extend_from_slice(m.as_bytes());
                        break;
                    }
                }
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    /// The same output whatever the buffer size, down to one that holds just a record's header
    /// (lines longer than the buffer pass in pieces).
    fn check(input: &str, s: Settings, want: &str) {
        check_with(&[40, 41, 64, 100, 64 * 1024], input, s, want);
    }

    fn check_with(caps: &[usize], input: &str, s: Settings, want: &str) {
        for &cap in caps {
            assert_eq!(read(input, s, cap), want, "buffer {cap}");
        }
    }

    const LOG: &str = "\
2024-01-01T00:00:01.5Z stdout F one\n\
2024-01-01T00:00:02Z stderr P two-a \n\
2024-01-01T00:00:02.25Z stderr P two-b \n\
2024-01-01T00:00:03Z stderr F two-c\n\
not a record\n\
2024-01-01T00:00:04Z stdout F four\n";

    #[test]
    fn partial_records_join_and_get_one_timestamp() {
        check(LOG, settings(), "one\ntwo-a two-b two-c\nfour\n");
        check(
            LOG,
            Settings {
                timestamps: true,
                ..settings()
            },
            "2024-01-01T00:00:01.500000000Z one\n\
             2024-01-01T00:00:02.000000000Z two-a two-b two-c\n\
             2024-01-01T00:00:04.000000000Z four\n",
        );
    }

    #[test]
    fn since_skips_records_but_they_still_count_for_tail() {
        let since = Timestamp::parse(b"2024-01-01T00:00:02.25Z").map(|t| t.instant());
        check(LOG, Settings { since, ..settings() }, "two-b two-c\nfour\n");
        // Without follow, the tailLines count stops after that many parsed records, written or
        // not: here the third is the first after `since` (the garbage line would not count).
        check(
            LOG,
            Settings {
                max_records: Some(3),
                since,
                ..settings()
            },
            "two-b ",
        );
    }

    #[test]
    fn limit_bytes_counts_the_prefix_and_cuts() {
        check(
            LOG,
            Settings {
                limit_bytes: Some(6),
                ..settings()
            },
            "one\ntw",
        );
        check(
            LOG,
            Settings {
                limit_bytes: Some(40),
                timestamps: true,
                ..settings()
            },
            "2024-01-01T00:00:01.500000000Z one\n2024-",
        );
    }

    #[test]
    fn streams_are_filtered_and_not_charged() {
        let only = |streams| Settings { streams, ..settings() };
        check(LOG, only(Streams::Stdout), "one\nfour\n");
        check(LOG, only(Streams::Stderr), "two-a two-b two-c\n");
        check(
            LOG,
            Settings {
                limit_bytes: Some(5),
                ..only(Streams::Stderr)
            },
            "two-a",
        );
    }

    #[test]
    fn an_incomplete_last_line_is_written_at_the_end() {
        check(
            "2024-01-01T00:00:01Z stdout F a\n2024-01-01T00:00:02Z stdout F b-no-newline",
            settings(),
            "a\nb-no-newline",
        );
        // A partial record is continued by the next one, which gets no timestamp of its own.
        check(
            "2024-01-01T00:00:01Z stdout P a\n2024-01-01T00:00:02Z stdout F b\n",
            Settings {
                timestamps: true,
                ..settings()
            },
            "2024-01-01T00:00:01.000000000Z ab\n",
        );
    }

    #[test]
    fn empty_records() {
        // An empty partial record ends "a line" for the timestamp logic, as upstream.
        check(
            "2024-01-01T00:00:01Z stdout P \n2024-01-01T00:00:02Z stdout F x\n2024-01-01T00:00:03Z stdout F \n",
            Settings {
                timestamps: true,
                ..settings()
            },
            "2024-01-01T00:00:01.000000000Z 2024-01-01T00:00:02.000000000Z x\n2024-01-01T00:00:03.000000000Z \n",
        );
    }

    #[test]
    fn the_first_line_decides_the_format() {
        check(
            "garbage line\n2024-01-01T00:00:01Z stdout F a\n",
            settings(),
            "failed to get parse function: unsupported log format: \"garbage line\\n\"",
        );
        check_with(
            &[128, 64 * 1024],
            "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:01Z\"}\n\
             2024-01-01T00:00:01Z stdout F not json\n\
             {\"log\":\"part\",\"stream\":\"stderr\",\"time\":\"2024-01-01T00:00:02Z\"}\n\
             {\"log\":\" rest\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-01T00:00:03Z\"}\n",
            Settings {
                timestamps: true,
                ..settings()
            },
            "2024-01-01T00:00:01.000000000Z hello\n2024-01-01T00:00:02.000000000Z part rest\n",
        );
        check(
            "{\"log\":\"x\\n\",\"stream\":\"stdin\"}\n",
            settings(),
            "unexpected stream type \"stdin\"",
        );
    }

    #[test]
    fn tail_zero_reads_nothing() {
        assert!(
            Records::new(Settings {
                max_records: Some(0),
                ..settings()
            })
            .finished()
        );
    }

    #[test]
    fn long_lines_pass_through_a_small_buffer() {
        let content = "x".repeat(1000);
        let input = format!("2024-01-01T00:00:01Z stdout F {content}\n2024-01-01T00:00:02Z stdout P {content}\n");
        let mut records = Records::new(settings());
        let mut lines = Lines::new(64);
        let mut out = Vec::new();
        let mut src = input.as_bytes();
        while lines
            .pump(&mut src, &mut records, &mut out, 1 << 20)
            .expect("in memory")
            != Pumped::Eof
        {}
        assert_eq!(lines.finish(&mut records, &mut out), Progress::More);
        assert_eq!(String::from_utf8(out).expect("utf-8"), format!("{content}\n{content}"));
    }
}
