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
//! - starts again from the top of a file truncated in place (copytruncate);
//! - ends when the container has restarted (`<n+1>.log` appears: this container has exited, so
//!   its file is complete) or the pod's directory is gone. A container that exits for good
//!   without a restart is followed until the client goes away.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
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
}

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
        }
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
                    Wake::Read
                }
            };
        }
        let Ok(current) = file.metadata() else {
            return Wake::Wait;
        };
        if file.stream_position().is_ok_and(|pos| current.len() < pos) {
            tracing::debug!(path = %self.relative.display(), "container log truncated in place; reading from the start");
            lines.reset();
            return match file.seek(SeekFrom::Start(0)) {
                Ok(_) => Wake::Read,
                Err(_) => Wake::Wait,
            };
        }
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
