//! Files reloaded without a restart: certificates, CA bundles, and whatever else a [`Source`]
//! names. File events (inotify on the files' directories, which sees atomic renames and
//! in-place rewrites alike) plus a periodic re-check, as the kubelet's dynamic certificate
//! files have (kubernetes/apiserver pkg/server/dynamiccertificates: fsnotify and a one-minute
//! resync). New contents replace the old only when the source accepts them; a half-written or
//! broken file is logged once and counted, and the previous material stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

/// How often the files are read again even without an event (the kubelet re-checks each minute).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Events come in bursts (truncate, write, close); wait this long for the burst to end.
const SETTLE: Duration = Duration::from_millis(50);

/// Reloads by result, for `kubelet_gate_certificate_reloads_total`.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub successes: AtomicU64,
    pub failures: AtomicU64,
}

/// Something the gateway keeps in memory from files.
pub trait Source: Send + Sync + 'static {
    /// What it is, for the log (`serving certificate`, `client CA bundle`).
    fn what(&self) -> &'static str;
    /// The files it is read from; a change to any of them re-reads them all.
    fn files(&self) -> Vec<PathBuf>;
    /// Takes the files' new contents, in [`Source::files`] order. `Err` says why they were
    /// refused; the previous material then stays.
    fn apply(&self, contents: &[Vec<u8>]) -> Result<(), String>;
    /// Where its reloads are counted, when not with the certificates'.
    fn stats(&self) -> Option<&ReloadStats> {
        None
    }
}

/// Watches every source's files and applies changes until the process ends.
pub struct Reloader {
    sources: Vec<Box<dyn Source>>,
    /// Each source's contents as loaded at start: a change is anything that differs from it.
    seen: Vec<Option<Vec<Vec<u8>>>>,
    interval: Duration,
    stats: Arc<ReloadStats>,
}

impl Reloader {
    pub fn new(interval: Duration, stats: Arc<ReloadStats>) -> Self {
        Reloader {
            sources: Vec::new(),
            seen: Vec::new(),
            interval,
            stats,
        }
    }

    /// Adds a source whose files the caller has just loaded: their contents now are the
    /// baseline (read here, at start, so a change made before the watching begins still counts).
    pub fn add(&mut self, source: impl Source) {
        self.seen
            .push(source.files().iter().map(|f| std::fs::read(f).ok()).collect());
        self.sources.push(Box::new(source));
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Runs until the process ends.
    pub async fn run(mut self) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let _watcher = self.watch_directories(tx);
        let mut seen = std::mem::take(&mut self.seen);
        let mut tick = tokio::time::interval(self.interval);
        tick.tick().await;
        // A change made between the start's load and the watch would wait for the next tick.
        for (source, seen) in self.sources.iter().zip(seen.iter_mut()) {
            self.check(source.as_ref(), seen).await;
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                event = rx.recv() => {
                    if event.is_none() {
                        // The watcher is gone (or never started): fall back to ticks alone.
                        tick.tick().await;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                }
            }
            for (source, seen) in self.sources.iter().zip(seen.iter_mut()) {
                self.check(source.as_ref(), seen).await;
            }
        }
    }

    /// Applies a source's files when their bytes changed since last seen. A missing or
    /// unreadable file is a moment in a rewrite, or an operator's business: nothing changes.
    async fn check(&self, source: &dyn Source, seen: &mut Option<Vec<Vec<u8>>>) {
        let files = source.files();
        let Some(contents) = read_all(files.clone()).await else {
            return;
        };
        if seen.as_ref() == Some(&contents) {
            return;
        }
        let result = source.apply(&contents);
        *seen = Some(contents);
        let first = files.first().map(|p| p.display().to_string()).unwrap_or_default();
        let stats = source.stats().unwrap_or(&self.stats);
        match result {
            Ok(()) => {
                stats.successes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %first, "{} reloaded", source.what());
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "{} not reloaded; keeping the previous one", source.what());
            }
        }
    }

    fn watch_directories(&self, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "file events unavailable; files are re-read every {:?}", self.interval);
                return None;
            }
        };
        let mut dirs: Vec<PathBuf> = self
            .sources
            .iter()
            .flat_map(|s| s.files())
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for file changes");
            }
        }
        Some(watcher)
    }
}

/// Every file's bytes, or `None` if one cannot be read now.
async fn read_all(files: Vec<PathBuf>) -> Option<Vec<Vec<u8>>> {
    tokio::task::spawn_blocking(move || files.iter().map(|f| std::fs::read(f).ok()).collect())
        .await
        .ok()
        .flatten()
}
