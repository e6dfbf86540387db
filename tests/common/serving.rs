//! The accept loop and stop plumbing shared by the stand-in API servers: serve each
//! connection in its own task until stopped (or until the last handle is dropped), then close
//! the listener and every live connection.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
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

/// A server that can be stopped and started again on the same port, keeping its state.
pub struct Restartable {
    addr: SocketAddr,
    run: tokio::sync::Mutex<Option<Running>>,
}

impl Restartable {
    pub fn new(addr: SocketAddr, running: Running) -> Restartable {
        Restartable {
            addr,
            run: tokio::sync::Mutex::new(Some(running)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every live connection; connections are refused afterwards.
    pub async fn stop(&self) {
        if let Some(r) = self.run.lock().await.take() {
            r.stop().await;
        }
    }

    /// Listens again on the same port (stopping first if running) and serves with `spawn`.
    pub async fn restart(&self, spawn: impl FnOnce(TcpListener) -> Running) {
        let mut run = self.run.lock().await;
        if let Some(r) = run.take() {
            r.stop().await;
        }
        // The port was ours a moment ago; retry briefly in case the kernel still holds it.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind stand-in on {}: {e}", self.addr),
            }
        };
        *run = Some(spawn(listener));
    }
}
