//! `follow=true`: what to do each time the reader reaches the end of the container's log file.
//! Blocking (a few `stat` calls); the caller sleeps between polls.
//!
//! The kubelet (K: pkg/kubelet/kuberuntime/logs/logs.go `ReadLogs`/`waitLogs`) watches the
//! directory with fsnotify and re-checks every second; when the log file is recreated
//! (rotation by rename, K: pkg/kubelet/logs/container_log_manager.go) it reopens the name; it
//! stops when the container is no longer running. Without the runtime to ask, the gateway:
//! - polls the name: a different file behind it means rotation. The old file is first read to
//!   its end (the kubelet can lose lines written between its last read and the rename), then
//!   the new one from its start;
//! - starts again from the top of a file truncated in place (copytruncate), known by its size
//!   (shorter than what was read) or, when it was written past the old offset again before the
//!   next poll, by its identity: its first bytes are no longer the ones seen (each CRI line
//!   starts with its own nanosecond timestamp). Both are checked before every read, so nothing
//!   of the new content is read from the old offset;
//! - ends when the container has restarted (`<n+1>.log` appears: this container has exited, so
//!   its file is complete) or the pod's directory is gone. A container that exits for good
//!   without a restart is followed until the client goes away.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

use super::reader::{Lines, Progress, Records};
use super::safe;

/// Where a followed file lives.
#[derive(Debug)]
pub struct Follower {
    root: PathBuf,
    /// `<pod dir>/<container>/<n>.log`, under `root`.
    relative: PathBuf,
    next: PathBuf,
    pod_dir: PathBuf,
    pending: Option<Switch>,
    /// The first bytes of the file being read (up to [`HEAD`]), as last seen.
    head: Vec<u8>,
}

/// How much of a file's beginning identifies it: a CRI line's timestamp and stream, and more.
const HEAD: u64 = 64;

#[derive(Debug)]
enum Switch {
    Reopen(File),
    End,
}

/// What the reader does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Read again now.
    Read,
    /// Nothing yet: poll again later.
    Wait,
    End,
    /// End, with this text appended.
    Fail(String),
}

impl Follower {
    /// `root` is canonical; `pod_dir`/`container` are plain names in it; `restart` is the
    /// number of the file being read.
    pub fn new(root: PathBuf, pod_dir: &std::ffi::OsStr, container: &str, restart: u64) -> Follower {
        let container_dir = PathBuf::from(pod_dir).join(container);
        Follower {
            relative: container_dir.join(format!("{restart}.log")),
            next: root.join(&container_dir).join(format!("{}.log", restart + 1)),
            pod_dir: root.join(pod_dir),
            root,
            pending: None,
            head: Vec::new(),
        }
    }

    /// Called before reading on: a file truncated in place since the last read is read again
    /// from its start.
    pub fn before_read(&mut self, file: &mut File, lines: &mut Lines) {
        if self.pending.is_none() && self.rewritten(file) {
            tracing::debug!(path = %self.relative.display(), "container log truncated in place; reading from the start");
            // On a failed seek, reading on from here is all there is.
            self.restart(file, lines);
        }
    }

    /// Whether `file` is no longer what was read up to its offset: shorter than that, or with
    /// other first bytes.
    fn rewritten(&mut self, file: &mut File) -> bool {
        let (Ok(pos), Ok(meta)) = (file.stream_position(), file.metadata()) else {
            return false;
        };
        if meta.len() < pos {
            return true;
        }
        // Only bytes before the offset were there when the file was read; a read error proves
        // nothing.
        let mut now = vec![0; HEAD.min(pos) as usize];
        if file.read_exact_at(&mut now, 0).is_err() {
            return false;
        }
        let known = self.head.len().min(now.len());
        if now[..known] != self.head[..known] {
            return true;
        }
        if now.len() > self.head.len() {
            self.head = now;
        }
        false
    }

    /// Reads `file` again from its start; false if it cannot seek there.
    fn restart(&mut self, file: &mut File, lines: &mut Lines) -> bool {
        lines.reset();
        self.head.clear();
        file.seek(SeekFrom::Start(0)).is_ok()
    }

    /// Called when `file` has nothing more to read.
    pub fn at_eof(&mut self, file: &mut File, lines: &mut Lines, records: &mut Records, out: &mut Vec<u8>) -> Wake {
        if let Some(switch) = self.pending.take() {
            // The old file has now been read to its end: a last line without `\n` included.
            match lines.finish(records, out) {
                Progress::More => {}
                Progress::Done => return Wake::End,
                Progress::Failed(m) => return Wake::Fail(m),
            }
            return match switch {
                Switch::End => Wake::End,
                Switch::Reopen(new) => {
                    *file = new;
                    lines.reset();
                    self.head.clear();
                    Wake::Read
                }
            };
        }
        if self.rewritten(file) {
            tracing::debug!(path = %self.relative.display(), "container log truncated in place; reading from the start");
            return match self.restart(file, lines) {
                true => Wake::Read,
                false => Wake::Wait,
            };
        }
        let Ok(current) = file.metadata() else {
            return Wake::Wait;
        };
        if self.next.exists() {
            self.pending = Some(Switch::End);
            return Wake::Read;
        }
        match std::fs::metadata(self.root.join(&self.relative)) {
            Ok(now) if (now.dev(), now.ino()) != (current.dev(), current.ino()) => {
                match safe::open_beneath(&self.root, &self.relative) {
                    Ok(opened) if !opened.is_dir() => {
                        tracing::debug!(path = %self.relative.display(), "container log rotated; following the new file");
                        self.pending = Some(Switch::Reopen(opened.file));
                        Wake::Read
                    }
                    // Refused (it leads outside the log directory) or gone again: keep the old one.
                    _ => Wake::Wait,
                }
            }
            Ok(_) => Wake::Wait,
            Err(_) if !self.pod_dir.exists() => {
                self.pending = Some(Switch::End);
                Wake::Read
            }
            // Between the rename and the runtime creating the new file.
            Err(_) => Wake::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn line(n: u32) -> String {
        format!("2024-05-01T10:00:{n:02}.000000001Z stdout F line {n}\n")
    }

    /// A follower of `<root>/pod/main/0.log` and that file, read to its end.
    fn followed(content: &str) -> (tempfile::TempDir, Follower, PathBuf, File) {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("pod/main/0.log");
        std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
        std::fs::write(&log, content).expect("write");
        let follower = Follower::new(dir.path().to_path_buf(), std::ffi::OsStr::new("pod"), "main", 0);
        let mut file = File::open(&log).expect("open");
        file.read_to_end(&mut Vec::new()).expect("read");
        (dir, follower, log, file)
    }

    fn rewrite(path: &std::path::Path, content: &str) {
        // copytruncate: the same file, emptied, then written again.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .expect("truncate");
        f.write_all(content.as_bytes()).expect("write");
    }

    #[test]
    fn appended_lines_are_the_same_file() {
        let (_dir, mut f, log, mut file) = followed(&line(1));
        assert!(!f.rewritten(&mut file));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut a| a.write_all(line(2).as_bytes()))
            .expect("append");
        assert!(!f.rewritten(&mut file));
    }

    #[test]
    fn a_truncated_file_is_known_by_its_size_or_by_its_first_bytes() {
        let (_dir, mut f, log, mut file) = followed(&[line(1), line(2)].concat());
        assert!(!f.rewritten(&mut file));
        rewrite(&log, &line(3));
        assert!(f.rewritten(&mut file), "shorter than what was read");

        let (_dir, mut f, log, mut file) = followed(&[line(1), line(2)].concat());
        assert!(!f.rewritten(&mut file));
        rewrite(&log, &[line(3), line(4), line(5)].concat());
        assert!(
            f.rewritten(&mut file),
            "refilled past the old offset before the next poll"
        );
    }
}
