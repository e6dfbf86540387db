//! When a forwarded request may be sent a second time: an idempotent request without a body,
//! on a reused keep-alive connection that the upstream closed before any byte of an answer
//! arrived. That is the race of a server closing an idle connection (the kubelet's
//! `IdleTimeout`) just as the gateway takes it from its pool, and the one case Go's transport
//! retries too (net/http transport.go `persistConn.shouldRetryRequest`: a reused connection, a
//! replayable request, and `transportReadFromServerError` or `errServerClosedIdle`, both meaning
//! the first byte of the response never came; request.go `isReplayable`: GET, HEAD, OPTIONS or
//! TRACE without a body).
//!
//! hyper-util's pool covers half of it (`retry_canceled_requests`, on by default): a request not
//! yet written when its pooled connection was found closed. Once the request is written, hyper
//! reports the closed connection as an error and cannot say whether any of the answer had
//! arrived. A [`Tracked`] connection can: it notes, for the request being sent on it, whether
//! the upstream has sent a byte since the request was written.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::TryFutureExt;
use futures_util::future::MapOk;
use http::{Method, Uri};
use hyper::body::Body;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// GET, HEAD, OPTIONS or TRACE with no body: sending it twice asks the same question twice.
pub fn replayable(method: &Method, body: &impl Body) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) && body.is_end_stream()
}

/// Whether `error` came from a reused connection that the upstream closed after the request
/// was written and before any byte of its answer: then the upstream never saw it as a request
/// it began to answer, and one more attempt on another connection is safe.
pub fn closed_before_answer(error: &hyper_util::client::legacy::Error) -> bool {
    let Some(connected) = error.connect_info() else {
        return false;
    };
    let mut extensions = http::Extensions::new();
    connected.get_extras(&mut extensions);
    extensions.get::<Exchange>().is_some_and(Exchange::closed_before_answer)
}

/// What one connection has seen, shared between its I/O and the errors hyper-util reports
/// (as a `Connected` extra).
#[derive(Debug, Clone, Default)]
struct Exchange(Arc<Flags>);

#[derive(Debug, Default)]
struct Flags {
    /// Any byte ever read: the connection has answered before, so it came from the pool.
    answered_before: AtomicBool,
    /// `answered_before` as it was when the current request was written.
    reused: AtomicBool,
    /// A byte read since the current request was written.
    answering: AtomicBool,
}

impl Exchange {
    fn written(&self) {
        let f = &self.0;
        f.reused
            .store(f.answered_before.load(Ordering::Acquire), Ordering::Release);
        f.answering.store(false, Ordering::Release);
    }

    fn read(&self) {
        self.0.answered_before.store(true, Ordering::Release);
        self.0.answering.store(true, Ordering::Release);
    }

    fn closed_before_answer(&self) -> bool {
        self.0.reused.load(Ordering::Acquire) && !self.0.answering.load(Ordering::Acquire)
    }
}

/// A connector whose connections note what they have seen (see [`Tracked`]).
#[derive(Debug, Clone)]
pub struct Tracking<C>(pub C);

impl<C, S> tower_service::Service<Uri> for Tracking<C>
where
    C: tower_service::Service<Uri, Response = TokioIo<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Response = TokioIo<Tracked<S>>;
    type Error = C::Error;
    type Future = MapOk<C::Future, fn(TokioIo<S>) -> TokioIo<Tracked<S>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.0.call(uri).map_ok(|io| {
            TokioIo::new(Tracked {
                io: io.into_inner(),
                exchange: Exchange::default(),
            })
        })
    }
}

/// A stream that notes when a request is written and when an answer's bytes arrive. HTTP/1.1
/// without pipelining (hyper's client) writes one request, then reads its answer, so "read since
/// the last write" is "the current request has an answer under way".
#[derive(Debug)]
pub struct Tracked<S> {
    io: S,
    exchange: Exchange,
}

impl<S: Connection> Connection for Tracked<S> {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.exchange.clone())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.exchange.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(1..))) {
            self.exchange.written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(1..))) {
            self.exchange.written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reused_connection_closed_before_any_answer_byte_may_be_retried() {
        let e = Exchange::default();
        e.written();
        assert!(
            !e.closed_before_answer(),
            "a fresh connection: the upstream failed this request"
        );
        e.read();
        assert!(!e.closed_before_answer());
        e.written();
        assert!(e.closed_before_answer(), "reused, and nothing of the answer yet");
        e.read();
        assert!(!e.closed_before_answer(), "part of an answer arrived: never again");
    }

    #[test]
    fn replayable_methods_are_the_idempotent_ones_without_a_body() {
        let empty = http_body_util::Empty::<bytes::Bytes>::new();
        let full = http_body_util::Full::new(bytes::Bytes::from_static(b"x"));
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(replayable(&m, &empty), "{m}");
            assert!(!replayable(&m, &full), "{m} with a body");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!replayable(&m, &empty), "{m}");
        }
    }
}
