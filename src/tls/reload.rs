//! Reloading the serving certificate and the client CA bundle without a restart: file events
//! (inotify on the files' directories, which sees both atomic renames and in-place rewrites)
//! plus a periodic re-check. New material replaces the old only when it parses and matches;
//! a half-written or broken file is logged and counted, and the old material stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::Watcher;
use rustls::ServerConfig;
use tokio::sync::mpsc;

use super::ServingCert;
use crate::authn::x509::ClientCa;

/// How often the files are read again even without an event (the kubelet re-checks each minute).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Events come in bursts (truncate, write, close); wait this long for the burst to end.
const SETTLE: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
pub struct ReloadStats {
    pub successes: AtomicU64,
    pub failures: AtomicU64,
}

/// Rebuilds the listener's TLS configuration for a new client CA bundle (its names go into the
/// CertificateRequest).
pub type RebuildTls = Box<dyn Fn(Option<&ClientCa>) -> Result<ServerConfig, super::TlsError> + Send + Sync>;

/// What is watched and where the results go.
pub struct Reloader {
    pub serving_files: Option<(PathBuf, PathBuf)>,
    pub serving: Arc<ServingCert>,
    pub client_ca_file: Option<PathBuf>,
    pub client_ca: Option<Arc<ArcSwap<ClientCa>>>,
    pub tls: Arc<ArcSwap<ServerConfig>>,
    pub rebuild: RebuildTls,
    pub interval: Duration,
    pub stats: Arc<ReloadStats>,
}

/// The bytes last seen for one source, so that unchanged files are not parsed again and a
/// broken file is reported once, not on every tick.
#[derive(Default)]
struct Seen(Option<Vec<u8>>);

impl Reloader {
    /// Runs until the process ends.
    pub async fn run(self) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let _watcher = self.watch_directories(tx);
        let mut serving_seen = Seen(self.serving_files.as_ref().and_then(|(c, k)| read_pair(c, k)));
        let mut ca_seen = Seen(self.client_ca_file.as_deref().and_then(|p| std::fs::read(p).ok()));
        let mut tick = tokio::time::interval(self.interval);
        tick.tick().await;
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
            self.check_serving(&mut serving_seen).await;
            self.check_client_ca(&mut ca_seen).await;
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
                tracing::warn!(error = %e, "file events unavailable; certificates are re-read every {:?}", self.interval);
                return None;
            }
        };
        let files = self
            .serving_files
            .iter()
            .flat_map(|(c, k)| [c.as_path(), k.as_path()])
            .chain(self.client_ca_file.as_deref());
        for dir in files.filter_map(Path::parent) {
            if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for certificate changes");
            }
        }
        Some(watcher)
    }

    async fn check_serving(&self, seen: &mut Seen) {
        let Some((cert, key)) = &self.serving_files else { return };
        let (cert, key) = (cert.clone(), key.clone());
        let Ok(Some(bytes)) = tokio::task::spawn_blocking(move || read_pair(&cert, &key).map(|b| (b, cert, key))).await
        else {
            return;
        };
        let (bytes, cert, key) = bytes;
        if seen.0.as_ref() == Some(&bytes) {
            return;
        }
        seen.0 = Some(bytes);
        match crate::certs::load_pair(&cert, &key) {
            Ok(pair) => {
                self.serving.set(pair);
                self.stats.successes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "serving certificate not reloaded; keeping the previous one");
            }
        }
    }

    async fn check_client_ca(&self, seen: &mut Seen) {
        let (Some(path), Some(current)) = (&self.client_ca_file, &self.client_ca) else {
            return;
        };
        let Ok(bytes) = tokio::fs::read(path).await else {
            return;
        };
        if seen.0.as_ref() == Some(&bytes) {
            return;
        }
        seen.0 = Some(bytes.clone());
        let loaded = ClientCa::from_pem(path, &bytes)
            .map_err(|e| e.to_string())
            .and_then(|ca| {
                let tls = (self.rebuild)(Some(&ca)).map_err(|e| e.to_string())?;
                Ok((ca, tls))
            });
        match loaded {
            Ok((ca, tls)) => {
                current.store(Arc::new(ca));
                self.tls.store(Arc::new(tls));
                self.stats.successes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %path.display(), "client CA bundle reloaded");
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "client CA bundle not reloaded; keeping the previous one");
            }
        }
    }
}

/// Both files' bytes, as one value to compare.
fn read_pair(cert: &Path, key: &Path) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(cert).ok()?;
    bytes.push(0);
    bytes.extend(std::fs::read(key).ok()?);
    Some(bytes)
}
