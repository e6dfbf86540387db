//! The deadlines of one connection's states after its TLS handshake: the first request must
//! arrive within `firstRequestTimeout` (the protocol sniff and the HTTP/2 preface included); an
//! HTTP/1 request's headers, once their first byte is read, within `headerReadTimeout`; and a
//! connection with no request open is closed after `idleTimeout` (HTTP/1 keep-alive and HTTP/2
//! alike). [`Activity`] is what the connection reports (bytes read, requests opened and
//! finished); [`watch`] resolves with the deadline that passed.
//!
//! hyper's own HTTP/1 header timer is not used: it starts as soon as a response is written,
//! so it would close every keep-alive connection after the header timeout rather than the idle
//! timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    FirstRequest,
    HeaderRead,
    Idle,
}

impl Expired {
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::FirstRequest => "first_request_timeout",
            Expired::HeaderRead => "header_timeout",
            Expired::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// A request has arrived on this connection.
    proven: bool,
    /// HTTP/2: frames arrive while idle (PING, WINDOW_UPDATE), so reads start no header timer.
    http2: bool,
    /// Requests whose response has not ended.
    in_flight: usize,
    /// Since when no request has been open.
    idle_since: Instant,
    /// HTTP/1: when the first byte of the next request's head was read, while idle.
    head_started: Option<Instant>,
}

/// What one connection reports. Cheap to share: bytes read only touch the state when a new
/// head starts.
#[derive(Debug)]
pub struct Activity {
    state: watch::Sender<State>,
    /// Mirrors `in_flight == 0 && head_started.is_none() && !http2`: whether a read must look.
    waiting_for_head: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        let (state, _) = watch::channel(State {
            proven: false,
            http2: false,
            in_flight: 0,
            idle_since: Instant::now(),
            head_started: None,
        });
        Arc::new(Activity {
            state,
            waiting_for_head: AtomicBool::new(true),
        })
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        if !self.waiting_for_head.swap(false, Ordering::AcqRel) {
            return;
        }
        self.state.send_modify(|s| {
            if s.in_flight == 0 && s.head_started.is_none() && !s.http2 {
                s.head_started = Some(Instant::now());
            }
        });
    }

    /// A request's headers arrived; the returned guard ends it when its response ends.
    pub fn request(self: &Arc<Self>, http2: bool) -> InFlight {
        self.state.send_modify(|s| {
            s.proven = true;
            s.http2 = http2;
            s.in_flight += 1;
            s.head_started = None;
        });
        InFlight(self.clone())
    }

    pub fn proven(&self) -> bool {
        self.state.borrow().proven
    }
}

/// An open request; dropped with its response body.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.state.send_modify(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
                activity.waiting_for_head.store(!s.http2, Ordering::Release);
            }
        });
    }
}

/// The deadlines, from `limits`.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub first_request: Duration,
    pub header_read: Duration,
    pub idle: Duration,
}

/// Resolves when a deadline of the connection's current state passes; `started` is when its
/// handshake finished.
pub async fn watch(activity: &Activity, deadlines: Deadlines, started: Instant) -> Expired {
    let mut changes = activity.state.subscribe();
    loop {
        let s = *changes.borrow_and_update();
        let due = if !s.proven {
            Some((started + deadlines.first_request, Expired::FirstRequest))
        } else if s.in_flight > 0 {
            None
        } else if let Some(at) = s.head_started {
            Some((at + deadlines.header_read, Expired::HeaderRead))
        } else {
            Some((s.idle_since + deadlines.idle, Expired::Idle))
        };
        let Some((at, expired)) = due else {
            // The sender lives as long as `activity`: this only ends with a change.
            let _ = changes.changed().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(at) => return expired,
            _ = changes.changed() => {}
        }
    }
}

/// The client's side of a connection, reporting its reads to an [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

    const D: Deadlines = Deadlines {
        first_request: Duration::from_secs(10),
        header_read: Duration::from_secs(5),
        idle: Duration::from_secs(90),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_expires_at_the_first_request_deadline() {
        let a = Activity::new();
        let started = Instant::now();
        a.read(); // a partial preface changes nothing
        assert_eq!(watch(&a, D, started).await, Expired::FirstRequest);
        assert_eq!(started.elapsed(), D.first_request);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_idles_out_and_a_started_head_has_the_header_deadline() {
        let a = Activity::new();
        let started = Instant::now();
        let request = a.request(false);
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(request);
        let idle = Instant::now();
        assert_eq!(watch(&a, D, started).await, Expired::Idle);
        assert_eq!(idle.elapsed(), D.idle, "from the end of the last response");

        let a = Activity::new();
        drop(a.request(false));
        tokio::time::sleep(Duration::from_secs(20)).await;
        a.read(); // the next head's first byte
        let head = Instant::now();
        assert_eq!(watch(&a, D, started).await, Expired::HeaderRead);
        assert_eq!(head.elapsed(), D.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_holds_off_every_deadline_and_http2_reads_start_no_head() {
        let a = Activity::new();
        let started = Instant::now();
        let request = a.request(true);
        let watching = watch(&a, D, started);
        tokio::pin!(watching);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), &mut watching)
                .await
                .is_err(),
            "no deadline while a request is open"
        );
        drop(request);
        a.read(); // a PING while idle
        let idle = Instant::now();
        assert_eq!(watching.await, Expired::Idle);
        assert_eq!(idle.elapsed(), D.idle);
    }
}
