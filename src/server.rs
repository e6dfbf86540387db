//! The 10250 listener: admits a connection only within the connection caps, completes the TLS
//! handshake within a deadline, records the client's certificate chain, and serves HTTP/1.1 and
//! HTTP/2 on the connection through the gateway's pipeline, closing it at the deadline of each
//! state it can be left in (no first request, a head that never ends, idle), until shutdown.
//!
//! Every bound is a setting (`limits:`, `config::Limits`): no client, authenticated or not, holds
//! a connection, a stream or a buffer beyond one of them.

mod admission;
mod deadline;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use admission::{Admission, Refused, fit_to_descriptor_limit};
use deadline::{Activity, Deadlines, Expired, Watched};

use crate::authn::{Connection, PeerIdentity};
use crate::config::Limits;
use crate::ops::metrics::ConnectionStats;
use crate::ops::throttle::Throttle;
use crate::proxy::pipeline::Pipeline;
use crate::proxy::respond::Holding;
use crate::tls::TlsState;

/// File descriptors kept out of `limits.maxConnections`' reach: the ops listener and its
/// clients, the upstream and API server connections, log files, the audit file.
pub const DESCRIPTOR_RESERVE: usize = 256;

static REFUSED_LOG: Throttle = Throttle::new(10);

/// Serves until `shutdown` resolves, then stops accepting, lets open connections and streams
/// finish for `limits.shutdownGracePeriod`, and closes what is left.
pub async fn serve(
    listener: TcpListener,
    tls: TlsState,
    pipeline: Arc<Pipeline>,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) {
    let (max, lowered) = fit_to_descriptor_limit(limits.max_connections, DESCRIPTOR_RESERVE);
    if let Some(soft) = lowered {
        tracing::warn!(
            configured = limits.max_connections,
            in_force = max,
            "limits.maxConnections lowered to fit the open-files limit ({soft}) with {DESCRIPTOR_RESERVE} to spare"
        );
    }
    let admission = Admission::new(max, limits.max_connections_per_peer, stats.clone());
    let limits = Arc::new(limits);
    // true: stop (close what has sent no request, finish the rest); then `force`: close all.
    let (stopping, stop) = watch::channel(false);
    let (forcing, force) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match admission.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                match refused {
                    Refused::Full => stats.refused_limit.fetch_add(1, Ordering::Relaxed),
                    Refused::PeerFull => stats.refused_peer.fetch_add(1, Ordering::Relaxed),
                };
                if let Some(suppressed) = REFUSED_LOG.admit() {
                    tracing::warn!(%peer, reason = refused.as_str(), suppressed, "connection refused: at the connection limit");
                }
                drop(tcp);
                continue;
            }
        };
        let connection = ClientConnection {
            tcp,
            peer,
            permit,
            // The configuration in force when the connection arrives (the client CA may reload).
            acceptor: TlsAcceptor::from(tls.config.load_full()),
            tls: tls.clone(),
            pipeline: pipeline.clone(),
            limits: limits.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
            force: force.clone(),
        };
        tokio::spawn(connection.run());
    }
    drop(listener);
    let _ = stopping.send(true);
    let grace = tokio::time::sleep(limits.shutdown_grace_period);
    tokio::pin!(grace);
    tokio::select! {
        () = admission.drained() => {}
        () = &mut grace => {
            tracing::warn!(open = admission.open(), "shutdown grace period over; closing open connections");
            let _ = forcing.send(true);
        }
    }
    // Upgraded streams (exec, port-forward) have left their connections: they get what is left
    // of the grace period, then are closed.
    let streams = pipeline.streams.clone();
    if streams.open() > 0 {
        tokio::select! {
            () = streams.drained() => {}
            () = &mut grace => {
                tracing::warn!(open = streams.open(), "shutdown grace period over; closing open streams");
                streams.close_all();
                // Long enough for each stream to write its end record.
                let _ = tokio::time::timeout(Duration::from_secs(1), streams.drained()).await;
            }
        }
    }
}

/// One admitted connection, from its TCP accept to its close.
struct ClientConnection {
    tcp: TcpStream,
    peer: SocketAddr,
    permit: admission::Permit,
    acceptor: TlsAcceptor,
    tls: TlsState,
    pipeline: Arc<Pipeline>,
    limits: Arc<Limits>,
    stats: Arc<ConnectionStats>,
    stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
}

impl ClientConnection {
    async fn run(self) {
        let ClientConnection {
            tcp,
            peer,
            mut permit,
            acceptor,
            tls,
            pipeline,
            limits,
            stats,
            mut stop,
            mut force,
        } = self;
        let _ = tcp.set_nodelay(true);
        // Resolves only when the connection is told to make room; a proven connection's never.
        let evicted = permit.evicted();
        let evicted = async move {
            if evicted.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(evicted);
        if tls.serving.current().is_none() {
            refuse_without_certificate(tcp, peer, tls.serving.pending(), limits.handshake_timeout).await;
            return;
        }
        let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    stats.closed(ConnectionStats::HANDSHAKE_TIMEOUT);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            () = &mut evicted => {
                tracing::debug!(%peer, "connection closed before its handshake ended, to make room");
                return;
            }
            _ = stop.wait_for(|s| *s) => return,
        };
        let started = tokio::time::Instant::now();
        let chain = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let conn = Arc::new(Connection::new(peer, PeerIdentity::new(chain)));
        let activity = Activity::new();
        let permit = Arc::new(permit);
        let service = {
            let activity = activity.clone();
            let permit = permit.clone();
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (pipeline, conn) = (pipeline.clone(), conn.clone());
                let in_flight = activity.request(request.version() == http::Version::HTTP_2);
                permit.proven();
                async move {
                    let response = pipeline.handle(&conn, request).await;
                    // The request ends (for the idle deadline) when its body does.
                    Ok::<_, Infallible>(response.map(|body| Holding { body, held: in_flight }))
                }
            })
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let interval = (!limits.http2_keep_alive_interval.is_zero()).then_some(limits.http2_keep_alive_interval);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .initial_stream_window_size(limits.http2_stream_window_bytes)
            .initial_connection_window_size(limits.http2_connection_window_bytes)
            .max_send_buf_size(limits.http2_max_send_buffer_bytes)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(interval)
            .keep_alive_timeout(limits.http2_keep_alive_timeout);
        // Upgrades are on: the pipeline splices one only after authorization and the kubelet's
        // 101, and hands the upgraded connection to the tunnel, outside this connection.
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let connection = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        let deadlines = Deadlines {
            first_request: limits.first_request_timeout,
            header_read: limits.header_read_timeout,
            idle: limits.idle_timeout,
        };
        let expiry = deadline::watch(&activity, deadlines, started);
        tokio::pin!(expiry);
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                expired = &mut expiry, if !closing => {
                    stats.closed(match expired {
                        Expired::FirstRequest => ConnectionStats::FIRST_REQUEST_TIMEOUT,
                        Expired::HeaderRead => ConnectionStats::HEADER_TIMEOUT,
                        Expired::Idle => ConnectionStats::IDLE,
                    });
                    tracing::debug!(%peer, deadline = expired.as_str(), "connection closed at its deadline");
                    match expired {
                        // Nothing is in flight: a GOAWAY (HTTP/2) or a plain close (HTTP/1).
                        Expired::Idle => {
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        Expired::FirstRequest | Expired::HeaderRead => return,
                    }
                }
                () = &mut evicted, if !activity.proven() => {
                    tracing::debug!(%peer, "connection without a request closed to make room");
                    return;
                }
                _ = stop.wait_for(|s| *s), if !closing => {
                    if !activity.proven() {
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = force.wait_for(|f| *f) => return,
            }
        }
    }
}

/// Without a serving certificate (a CSR not yet signed) the kubelet's TLS stack aborts every
/// handshake with an `internal_error` alert; clients see `remote error: tls: internal error`.
/// The same here: read the ClientHello, answer with that alert, close.
async fn refuse_without_certificate(mut tcp: TcpStream, peer: SocketAddr, why: Option<Arc<String>>, wait: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const INTERNAL_ERROR_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50];
    let mut hello = [0u8; 1024];
    let _ = tokio::time::timeout(wait, tcp.read(&mut hello)).await;
    let _ = tcp.write_all(&INTERNAL_ERROR_ALERT).await;
    let _ = tcp.shutdown().await;
    let why = why.as_deref().map_or("no certificate yet", String::as_str);
    if let Some(suppressed) = REFUSED_LOG.admit() {
        tracing::info!(%peer, suppressed, "TLS handshake refused: no serving certificate available ({why})");
    }
}
