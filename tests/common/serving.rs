//! The accept loop and stop plumbing shared by the stand-in API servers: serve each
//! connection in its own task until stopped (or until the last handle is dropped), then close
//! the listener and every live connection.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A listener being served. Dropping it (its `stop_tx`) also stops the server.
pub struct Running {
    stop_tx: watch::Sender<bool>,
    done_rx: watch::Receiver<bool>,
}

impl Running {
    /// Serves `listener`, calling `on_accept` for each connection and running what it returns
    /// (given a receiver that turns `true` when the server stops).
    pub fn spawn<F, Fut>(listener: TcpListener, on_accept: F) -> Running
    where
        F: Fn(TcpStream, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, on_accept, stop_rx, done_tx));
        Running { stop_tx, done_rx }
    }

    /// Stops accepting, closes live connections, and returns once that is done.
    pub async fn stop(&self) {
        self.stop_tx.send_replace(true);
        let mut done = self.done_rx.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

/// Returns once `true` is sent or the sender (the last server handle) is gone.
pub async fn wait_stop(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    on_accept: F,
    mut stop_rx: watch::Receiver<bool>,
    done_tx: watch::Sender<bool>,
) where
    F: Fn(TcpStream, watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = wait_stop(&mut stop_rx) => break,
            res = listener.accept() => match res {
                Ok((tcp, _peer)) => {
                    conns.spawn(on_accept(tcp, stop_rx.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Aborting a connection task drops its socket, and with it every response body of the
    // connection (watch streams, hanging answers).
    conns.shutdown().await;
    let _ = done_tx.send(true);
}
