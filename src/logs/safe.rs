//! Opening a file or directory so that what is opened lies under a root directory, whatever
//! the request path, the symbolic links on the way, or a race with someone changing them.
//! Blocking: call it from `spawn_blocking`.
//!
//! The kubelet's `http.Dir` stops `..` but follows symbolic links anywhere (a pod that can
//! write to a hostPath `/var/log` plants a link to any file: Aqua KHV047), and its CRI reader resolves links on purpose (`filepath.EvalSymlinks`). Here:
//! 1. the root and the target are canonicalised and the target must stay under the root;
//! 2. only directories and regular files are opened (never a FIFO, a device or a socket: their
//!    type is checked before opening, and again on the open descriptor);
//! 3. the final open refuses to follow a link (a link swapped in after step 1 fails it), and
//!    the descriptor's own path (`/proc/self/fd/N`) must still be under the root, which
//!    catches a directory on the way swapped for a link.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// What was opened.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
    /// The canonical path it was opened by.
    pub real: PathBuf,
}

impl Opened {
    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }

    /// A path naming exactly the open directory, for listing it without resolving names again.
    pub fn fd_path(&self) -> PathBuf {
        let proc = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        if proc.exists() { proc } else { self.real.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no such file or directory")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    /// The path, or a link on it, leads outside the root.
    #[error("resolves outside the served directory")]
    Outside,
    /// A FIFO, socket or device.
    #[error("not a regular file or directory")]
    NotRegular,
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => OpenError::NotFound,
            io::ErrorKind::PermissionDenied => OpenError::PermissionDenied,
            _ => OpenError::Io(e),
        }
    }
}

/// The root's canonical path.
pub fn canonical_root(root: &Path) -> Result<PathBuf, OpenError> {
    Ok(std::fs::canonicalize(root)?)
}

/// Opens `root/relative`. `relative` must be made of plain names only (no `..`, no root):
/// anything else is refused as [`OpenError::Outside`] rather than interpreted.
pub fn open_beneath(root: &Path, relative: &Path) -> Result<Opened, OpenError> {
    if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(OpenError::Outside);
    }
    let root = canonical_root(root)?;
    let real = std::fs::canonicalize(root.join(relative))?;
    if !real.starts_with(&root) {
        return Err(OpenError::Outside);
    }
    let before = std::fs::metadata(&real)?;
    if !before.is_dir() && !before.is_file() {
        return Err(OpenError::NotRegular);
    }
    let file = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO swapped in after the check must not hang the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => OpenError::Outside,
            _ => e.into(),
        })?;
    let meta = file.metadata()?;
    if !meta.is_dir() && !meta.is_file() {
        return Err(OpenError::NotRegular);
    }
    if let Ok(actual) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        && !actual.starts_with(&root)
    {
        return Err(OpenError::Outside);
    }
    Ok(Opened { file, meta, real })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("a.log"), "a").expect("write");
        std::fs::write(root.join("sub/b.log"), "b").expect("write");
        std::fs::write(dir.path().join("secret"), "s").expect("write");
        (dir, root)
    }

    fn open(root: &Path, rel: &str) -> Result<Opened, OpenError> {
        open_beneath(root, Path::new(rel))
    }

    #[test]
    fn files_and_directories_under_the_root_open() {
        let (_d, root) = tree();
        assert!(open(&root, "a.log").is_ok_and(|o| !o.is_dir()));
        assert!(open(&root, "sub").is_ok_and(|o| o.is_dir()));
        assert!(open(&root, "").is_ok_and(|o| o.is_dir()), "the root itself");
        symlink("sub/b.log", root.join("inside")).expect("symlink");
        assert!(open(&root, "inside").is_ok(), "a link that stays inside is followed");
        assert!(matches!(open(&root, "missing"), Err(OpenError::NotFound)));
        assert!(matches!(open(&root, "a.log/x"), Err(OpenError::NotFound)));
    }

    #[test]
    fn escapes_are_refused() {
        let (d, root) = tree();
        for rel in ["../secret", "sub/../../secret", "/etc/passwd", "./a.log"] {
            assert!(matches!(open(&root, rel), Err(OpenError::Outside)), "{rel}");
        }
        symlink(d.path().join("secret"), root.join("out")).expect("symlink");
        assert!(matches!(open(&root, "out"), Err(OpenError::Outside)));
        symlink("../", root.join("up")).expect("symlink");
        assert!(matches!(open(&root, "up/secret"), Err(OpenError::Outside)));
        assert!(matches!(open(&root, "up"), Err(OpenError::Outside)));
        symlink("/", root.join("slash")).expect("symlink");
        assert!(matches!(open(&root, "slash/etc/passwd"), Err(OpenError::Outside)));
    }

    #[test]
    fn special_files_are_refused() {
        let (_d, root) = tree();
        let fifo = root.join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.is_ok_and(|s| s.success()) {
            assert!(matches!(open(&root, "fifo"), Err(OpenError::NotRegular)));
        }
        let sock = root.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        assert!(matches!(open(&root, "sock"), Err(OpenError::NotRegular)));
    }

    #[test]
    fn a_root_that_is_a_link_is_its_target() {
        let (d, root) = tree();
        let alias = d.path().join("alias");
        symlink(&root, &alias).expect("symlink");
        assert!(open(&alias, "a.log").is_ok());
        assert!(matches!(open(&alias, "../secret"), Err(OpenError::Outside)));
    }
}
