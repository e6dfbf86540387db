//! An upgraded stream (exec, attach, port-forward over SPDY/3.1 or WebSocket) spliced between
//! the client and the kubelet's port, byte for byte, once the kubelet has answered `101`. Both
//! directions run at once through bounded buffers, with backpressure (a reader that stops
//! reading stops the other side); a half-close is passed on and the other direction keeps
//! going; a stream with no byte either way for the idle timeout is closed (the kubelet's
//! `streamingConnectionIdleTimeout`); there is no total time limit. The open streams are counted
//! in [`Streams`], which shutdown drains and then closes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes buffered per direction of one stream (the kubelet's own copies use 32 KiB).
pub const BUFFER_BYTES: usize = 32 * 1024;

/// Every open stream, for the metrics and for shutdown.
#[derive(Debug)]
pub struct Streams {
    open: AtomicU64,
    closing: watch::Sender<bool>,
    /// Bytes spliced so far, by direction, for the metrics (live, not only when a stream ends).
    pub client_to_upstream: AtomicU64,
    pub upstream_to_client: AtomicU64,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            open: AtomicU64::new(0),
            closing: watch::channel(false).0,
            client_to_upstream: AtomicU64::new(0),
            upstream_to_client: AtomicU64::new(0),
        }
    }
}

impl Streams {
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Tells every open stream to close now (after shutdown's grace period).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when no stream is open.
    pub async fn drained(&self) {
        let mut closing = self.closing.subscribe();
        while self.open() > 0 {
            // Re-checked on every change and at least every 50 ms.
            let _ = tokio::time::timeout(Duration::from_millis(50), closing.changed()).await;
        }
    }
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one closed and the other finished).
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// The gateway shut down after its grace period.
    Shutdown,
    /// A read or write failed (a reset, a broken pipe).
    Error,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Idle => "idle timeout",
            End::Shutdown => "shutdown",
            End::Error => "connection error",
        }
    }
}

/// What a stream did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
    pub duration: Duration,
    pub end: End,
}

/// Both sides of an accepted upgrade, waiting to be spliced.
pub struct Tunnel {
    pub client: OnUpgrade,
    pub upstream: OnUpgrade,
    pub idle_timeout: Duration,
}

impl Tunnel {
    /// Splices until both directions end, the stream idles out, or shutdown closes it.
    pub async fn run(self, streams: Arc<Streams>) -> Spliced {
        let started = Instant::now();
        let _open = OpenGuard::new(&streams);
        let activity = Arc::new(Activity::new());
        let (client, upstream) = match tokio::try_join!(self.client, self.upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "an accepted upgrade did not complete");
                return Spliced {
                    client_to_upstream: 0,
                    upstream_to_client: 0,
                    duration: started.elapsed(),
                    end: End::Error,
                };
            }
        };
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let mut client = Metered::new(TokioIo::new(client), activity.clone(), up.clone(), &streams, true);
        let mut upstream = Metered::new(TokioIo::new(upstream), activity.clone(), down.clone(), &streams, false);
        let mut closing = streams.closing.subscribe();
        let end = tokio::select! {
            r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER_BYTES, BUFFER_BYTES) => {
                if r.is_ok() { End::Closed } else { End::Error }
            }
            () = activity.idle_for(self.idle_timeout) => End::Idle,
            _ = closing.wait_for(|closing| *closing) => End::Shutdown,
        };
        Spliced {
            client_to_upstream: up.load(Ordering::Relaxed),
            upstream_to_client: down.load(Ordering::Relaxed),
            duration: started.elapsed(),
            end,
        }
    }
}

/// Counts a stream as open for as long as it lives.
struct OpenGuard<'a>(&'a Streams);

impl<'a> OpenGuard<'a> {
    fn new(streams: &'a Streams) -> Self {
        streams.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(streams)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        // Wakes `drained` at once rather than at its next re-check.
        self.0.closing.send_modify(|_| {});
    }
}

/// When a byte last moved either way, in milliseconds since the stream started.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = idle_deadline(self.started, self.last_ms.load(Ordering::Relaxed), timeout);
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The moment a stream last active `last_ms` after `started` idles out.
fn idle_deadline(started: Instant, last_ms: u64, timeout: Duration) -> Instant {
    started + Duration::from_millis(last_ms) + timeout
}

/// One side of a stream: counts the bytes read from it (the direction away from it) and marks
/// activity on every read and write.
struct Metered<'a, T> {
    inner: T,
    activity: Arc<Activity>,
    read: Arc<AtomicU64>,
    streams: &'a Streams,
    from_client: bool,
}

impl<'a, T> Metered<'a, T> {
    fn new(inner: T, activity: Arc<Activity>, read: Arc<AtomicU64>, streams: &'a Streams, from_client: bool) -> Self {
        Metered {
            inner,
            activity,
            read,
            streams,
            from_client,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<'_, T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.activity.touch();
            self.read.fetch_add(n, Ordering::Relaxed);
            let total = if self.from_client {
                &self.streams.client_to_upstream
            } else {
                &self.streams.upstream_to_client
            };
            total.fetch_add(n, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<'_, T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_deadline_follows_the_last_activity() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        assert_eq!(idle_deadline(t0, 0, timeout), t0 + timeout);
        assert_eq!(
            idle_deadline(t0, 6_000, timeout),
            t0 + Duration::from_secs(16),
            "activity at 6 s moves the deadline to 16 s"
        );
    }
}
