//! The 10250 listener: accepts TCP, completes the TLS handshake within a deadline, records the
//! client's certificate chain, and serves HTTP/1.1 and HTTP/2 on the connection through the
//! gateway's pipeline until shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authn::{Connection, PeerIdentity};
use crate::proxy::pipeline::Pipeline;
use crate::tls::TlsState;

/// A client that has not finished its handshake by then is dropped: a silent connection must
/// not hold a file descriptor for ever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1 client must send its request headers within this time (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may run once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves, then stops accepting and lets open connections finish
/// for at most [`SHUTDOWN_GRACE`].
pub async fn serve(listener: TcpListener, tls: TlsState, pipeline: Arc<Pipeline>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
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
        // The configuration in force when the connection arrives (the client CA may reload).
        let acceptor = TlsAcceptor::from(tls.config.load_full());
        let serving = tls.serving.clone();
        let pipeline = pipeline.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if serving.current().is_none() {
                refuse_without_certificate(tcp, peer, serving.pending()).await;
                return;
            }
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let chain = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let conn = Arc::new(Connection {
                peer,
                identity: PeerIdentity::new(chain),
            });
            let service = service_fn(move |request| {
                let pipeline = pipeline.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(pipeline.handle(&conn, request).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder.http2().timer(TokioTimer::new()).max_concurrent_streams(250);
            // Upgrades are on: the pipeline splices one only after authorization and the kubelet's
            // 101, and hands the upgraded connection to the tunnel, outside this connection.
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let streams = pipeline.streams.clone();
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = &mut grace => tracing::warn!("shutdown grace period over; closing open connections"),
    }
    // Upgraded streams (exec, port-forward) have left their connections: they get what is left
    // of the grace period, then are closed.
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

/// Without a serving certificate (a CSR not yet signed) the kubelet's TLS stack aborts every
/// handshake with an `internal_error` alert; clients see `remote error: tls: internal error`.
/// The same here: read the ClientHello, answer with that alert, close.
async fn refuse_without_certificate(
    mut tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    why: Option<Arc<String>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const INTERNAL_ERROR_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50];
    let mut hello = [0u8; 1024];
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.read(&mut hello)).await;
    let _ = tcp.write_all(&INTERNAL_ERROR_ALERT).await;
    let _ = tcp.shutdown().await;
    let why = why.as_deref().map_or("no certificate yet", String::as_str);
    tracing::info!(%peer, "TLS handshake refused: no serving certificate available ({why})");
}
