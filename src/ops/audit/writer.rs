//! The audit writer: drains the queue into the file (or standard output) on a thread of its own,
//! so a full or slow disk holds that thread only and every write's result is known record by
//! record.
//!
//! - Whole records only: a batch is written with plain `write(2)` calls until done; when one
//!   fails part way, the records that reached the file whole are kept, the rest are counted as
//!   lost (`kubelet_gate_audit_records_dropped_total`), a record cut in two is cut off again
//!   (the file is set back to its last whole record) and, when that is not possible (standard
//!   output), the next record starts on a fresh line. No record ever shares a line.
//! - The file at the path: before each batch the open file is compared with the path (device and
//!   inode). A file deleted or rotated away (renamed, a new one perhaps created by logrotate) is
//!   replaced by the file at the path, created if need be; a failed open is tried again at the
//!   next batch. [`Health::reopen`] asks for the same from outside (for SIGHUP).
//! - Readiness: the last failure is kept until a batch is written whole, and `/readyz` reports it.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::{Output, open_append};

/// A batch holds what is queued, up to about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// What the writer tells the rest of the gateway, and what it may be asked.
#[derive(Debug, Default)]
pub struct Health {
    /// Why the last batch was not written whole; `None` once one is.
    failing: Mutex<Option<String>>,
    reopen: AtomicBool,
}

impl Health {
    /// `Err` with the reason while the audit log cannot be written.
    pub fn check(&self) -> Result<(), String> {
        match &*self.failing.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    /// The next batch goes to a file opened afresh at the path (what SIGHUP is for).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    fn set(&self, failing: Option<String>) -> Option<String> {
        std::mem::replace(&mut *self.failing.lock().unwrap_or_else(|p| p.into_inner()), failing)
    }
}

pub(super) struct Writer {
    /// The audit file's path; `None` for standard output, which is never reopened or cut.
    path: Option<PathBuf>,
    out: Option<File>,
    /// What the output ends with is part of a record: start the next one on a fresh line.
    mid_line: bool,
    name: String,
    health: Arc<Health>,
    dropped: Counter,
}

impl Writer {
    pub(super) fn new(output: Output, health: Arc<Health>, dropped: Counter) -> Writer {
        let (path, out, name) = match output {
            Output::File(path, file) => {
                let name = path.display().to_string();
                (Some(path), Ok(file), name)
            }
            // A descriptor of its own, unbuffered: what a write returns is what reached it.
            Output::Stdout => (
                None,
                std::os::fd::AsFd::as_fd(&io::stdout())
                    .try_clone_to_owned()
                    .map(File::from),
                "standard output".to_owned(),
            ),
        };
        let mut writer = Writer {
            path,
            out: None,
            mid_line: false,
            name,
            health,
            dropped,
        };
        match out {
            Ok(f) => writer.out = Some(f),
            Err(e) => writer.failed(&e),
        }
        writer
    }

    /// Writes batches until every sender is gone.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Vec<u8>>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes = batch[0].len();
            while bytes < BATCH_BYTES {
                let Ok(more) = rx.try_recv() else { break };
                bytes += more.len();
                batch.push(more);
            }
            self.write(&batch);
        }
    }

    /// Writes whole records (each one line ending in `\n`), counting every one that is lost.
    pub(super) fn write(&mut self, records: &[Vec<u8>]) {
        if let Err(e) = self.ensure_current() {
            self.lost(records.len());
            self.failed(&e);
            return;
        }
        let Some(out) = self.out.as_mut() else {
            self.lost(records.len());
            return;
        };
        let before = self.path.as_ref().and_then(|_| out.metadata().ok()).map(|m| m.len());
        let batch = write_batch(out, self.mid_line, records);
        let Some(error) = batch.error else {
            self.mid_line = false;
            if let Some(was) = self.health.set(None) {
                tracing::info!(%was, "writing the audit log to {} again", self.name);
            }
            return;
        };
        self.mid_line = match batch.line_end {
            Some(end) if end == batch.bytes => false,
            // Not even the fresh-line newline went out.
            None => true,
            Some(end) => !cut(out, before, batch.bytes, end),
        };
        self.lost(records.len() - batch.whole);
        self.failed(&error);
    }

    /// The file at the path, opened again when it is no longer the one being written (deleted,
    /// rotated away) or when asked to; an open that fails is tried again next time.
    fn ensure_current(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let asked = self.health.reopen.swap(false, Ordering::Relaxed);
        let same = match (&self.out, std::fs::metadata(path)) {
            (Some(f), Ok(at_path)) => f
                .metadata()
                .is_ok_and(|open| (open.dev(), open.ino()) == (at_path.dev(), at_path.ino())),
            _ => false,
        };
        if same && !asked {
            return Ok(());
        }
        match open_append(path) {
            Ok(f) => {
                if self.out.is_some() {
                    tracing::info!("audit log {}: writing to the file now at that path", self.name);
                }
                self.out = Some(f);
                // A new file starts on a fresh line of its own.
                self.mid_line = false;
                Ok(())
            }
            Err(e) => {
                self.out = None;
                Err(e.source)
            }
        }
    }

    fn lost(&self, n: usize) {
        if n > 0 {
            self.dropped.inc_by(n as u64);
        }
    }

    fn failed(&self, error: &io::Error) {
        let why = format!("cannot write the audit log to {}: {error}", self.name);
        if self.health.set(Some(why.clone())).is_none() {
            tracing::error!("{why}; records are dropped and counted until it works again");
        }
    }
}

/// How far a batch got.
#[derive(Debug)]
struct Batch {
    /// Bytes that reached the output.
    bytes: usize,
    /// Records that reached it whole.
    whole: usize,
    /// Where, of those bytes, the last whole line ends (`None`: the fresh-line newline that was
    /// due did not go out).
    line_end: Option<usize>,
    error: Option<io::Error>,
}

/// Writes `records` (each one line ending in `\n`), after a newline if the output ends
/// mid-line.
fn write_batch(out: &mut impl Write, mid_line: bool, records: &[Vec<u8>]) -> Batch {
    let mut buf = Vec::with_capacity(records.iter().map(Vec::len).sum::<usize>() + 1);
    if mid_line {
        buf.push(b'\n');
    }
    // Where lines end in `buf`: after the fresh-line newline (or at 0), then after each record.
    let mut ends = Vec::with_capacity(records.len() + 1);
    ends.push(buf.len());
    for r in records {
        buf.extend_from_slice(r);
        ends.push(buf.len());
    }
    let (bytes, error) = write_some(out, &buf);
    Batch {
        bytes,
        whole: ends[1..].iter().take_while(|&&end| end <= bytes).count(),
        line_end: ends.iter().copied().take_while(|&end| end <= bytes).last(),
        error,
    }
}

/// Writes as much of `buf` as the output takes: how much, and the error that stopped it.
fn write_some(out: &mut impl Write, buf: &[u8]) -> (usize, Option<io::Error>) {
    let mut written = 0;
    while written < buf.len() {
        match out.write(&buf[written..]) {
            Ok(0) => return (written, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

/// Sets a file that was `before` bytes long before `written` more were appended back to its
/// last whole line (`boundary` of those bytes); false when it cannot (not a file, or someone
/// else wrote to it meanwhile).
fn cut(out: &File, before: Option<u64>, written: usize, boundary: usize) -> bool {
    let Some(before) = before else { return false };
    let expected = before + written as u64;
    out.metadata().is_ok_and(|m| m.len() == expected) && out.set_len(before + boundary as u64).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `room` bytes, then fails as a full disk does.
    struct Full {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.taken.len());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_some_stops_at_the_error_and_says_how_far_it_got() {
        let mut out = Full {
            taken: Vec::new(),
            room: 5,
        };
        let (n, e) = write_some(&mut out, b"0123456789");
        assert_eq!((n, out.taken.as_slice()), (5, &b"01234"[..]));
        assert_eq!(e.and_then(|e| e.raw_os_error()), Some(libc::ENOSPC));
    }

    #[test]
    fn a_batch_says_which_records_went_out_whole_and_where_the_last_line_ends() {
        let records = [
            b"{\"a\":1}\n".to_vec(),
            b"{\"b\":2}\n".to_vec(),
            b"{\"c\":3}\n".to_vec(),
        ];
        let mut out = Full {
            taken: Vec::new(),
            room: 12,
        };
        let b = write_batch(&mut out, false, &records);
        assert_eq!((b.bytes, b.whole, b.line_end), (12, 1, Some(8)));
        assert!(b.error.is_some());
        let mut out = Full {
            taken: Vec::new(),
            room: 9,
        };
        let b = write_batch(&mut out, true, &records);
        assert_eq!(out.taken, b"\n{\"a\":1}\n");
        assert_eq!((b.bytes, b.whole, b.line_end), (9, 1, Some(9)), "ends on a whole line");
        let mut out = Full {
            taken: Vec::new(),
            room: 0,
        };
        let b = write_batch(&mut out, true, &records);
        assert_eq!(
            (b.bytes, b.whole, b.line_end),
            (0, 0, None),
            "the fresh line is still due"
        );
        let mut out = Full {
            taken: Vec::new(),
            room: 100,
        };
        let b = write_batch(&mut out, false, &records);
        assert_eq!((b.bytes, b.whole, b.line_end), (24, 3, Some(24)));
        assert!(b.error.is_none());
    }

    fn writer(path: PathBuf) -> (Writer, Arc<Health>, Counter) {
        let health = Arc::new(Health::default());
        let dropped = Counter::default();
        let file = open_append(&path).expect("open");
        (
            Writer::new(Output::File(path, file), health.clone(), dropped.clone()),
            health,
            dropped,
        )
    }

    #[test]
    fn a_record_cut_in_two_is_cut_off_or_followed_by_a_fresh_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.log");
        let (mut w, health, dropped) = writer(path.clone());
        w.write(&[b"{\"a\":1}\n".to_vec()]);
        // A short write: the file took the first record and half of the second.
        let f = w.out.as_ref().expect("open");
        let before = f.metadata().map(|m| m.len()).ok();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut g| g.write_all(b"{\"b\":2}\n{\"c\""))
            .expect("append");
        assert!(cut(f, before, 12, 8), "cut back to the last whole record");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"a\":1}\n{\"b\":2}\n");
        // When it cannot be cut, the next record starts a line of its own.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut g| g.write_all(b"{\"half"))
            .expect("append");
        w.mid_line = true;
        w.write(&[b"{\"d\":4}\n".to_vec()]);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"a\":1}\n{\"b\":2}\n{\"half\n{\"d\":4}\n"
        );
        assert_eq!((health.check(), dropped.get()), (Ok(()), 0));
    }

    #[test]
    fn a_file_rotated_away_or_deleted_is_replaced_by_the_one_at_the_path() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.log");
        let (mut w, _, _) = writer(path.clone());
        w.write(&[b"1\n".to_vec()]);
        std::fs::rename(&path, dir.path().join("audit.log.1")).expect("rotate");
        w.write(&[b"2\n".to_vec()]);
        std::fs::remove_file(&path).expect("delete");
        w.write(&[b"3\n".to_vec()]);
        w.health.reopen();
        w.write(&[b"4\n".to_vec()]);
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("read");
        assert_eq!(read("audit.log.1"), "1\n");
        assert_eq!(read("audit.log"), "3\n4\n");
    }

    #[test]
    fn every_lost_record_is_counted_and_readiness_says_why() {
        let (mut w, health, dropped) = writer(PathBuf::from("/dev/full"));
        w.write(&[b"1\n".to_vec(), b"2\n".to_vec(), b"3\n".to_vec()]);
        assert_eq!(dropped.get(), 3);
        let why = health.check().expect_err("failing");
        assert!(
            why.contains("/dev/full") && why.contains("No space left on device"),
            "{why}"
        );
        assert!(!w.mid_line, "nothing at all was written");
    }
}
