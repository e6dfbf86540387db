//! Log streams and upgraded streams are bounded: a client that never reads holds a few tens of
//! KiB per stream, not the file; a client that leaves frees its streams at once; a user (and,
//! for logs, a connection) holds at most so many streams, the rest are 429.

use crate::common::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::common::client::{TlsClient, tcp_from};
use crate::common::plain_get;
use crate::integration::logs::{ADMIN, Tree, cri};

const BIN: &str = env!("CARGO_BIN_EXE_kubelet-gate");
const LOG: &str = "/containerLogs/default/web/app";

struct Gateway {
    child: Child,
    addr: std::net::SocketAddr,
    ops: std::net::SocketAddr,
    _tree: Tree,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn rss_kib(&self) -> u64 {
        crate::common::process_memory_kib(self.child.id(), "VmRSS:")
    }

    async fn metric(&self, series: &str) -> f64 {
        let (_, body) = plain_get(self.ops, "/metrics").await;
        crate::common::sample(&body, series)
    }
}

/// The gateway binary (its own process, so its memory is its own) serving an 8 MiB container
/// log to ADMIN.
async fn gateway(limits: &str) -> Gateway {
    let tree = Tree::new();
    let dir = tree.container("default", "web", "uid-1", "app");
    let line = cri("2026-12-01T10:00:00.000000000Z", "stdout", "F", &"x".repeat(1000));
    std::fs::write(dir.join("0.log"), line.repeat(8 * 1024)).expect("log");
    let d = tree.dir.path();
    std::fs::write(
        d.join("tokens.csv"),
        format!("{},{},{},\n", ADMIN.token, ADMIN.user, ADMIN.uid),
    )
    .expect("tokens");
    std::fs::write(
        d.join("rbac.yaml"),
        crate::common::grant_user(ADMIN.user, &["nodes/proxy", "nodes/log"], &["get"]),
    )
    .expect("rbac");
    let (port, ops) = (free_port(), free_port());
    std::fs::write(
        d.join("config.yaml"),
        format!(
            "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: node-a\naddress: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nops: {{address: \"127.0.0.1:{ops}\"}}\nauthentication:\n  webhook: {{enabled: false}}\n  tokenFile: tokens.csv\nauthorization:\n  mode: RBAC\n  rbac: {{policyFiles: [rbac.yaml]}}\nlogs: {{nodeLogDir: {}, podLogDir: {}}}\nlimits: {{{limits}}}\n",
            tree.node.display(),
            tree.pods.display()
        ),
    )
    .expect("config");
    let child = Command::new(BIN)
        .args(["serve", "--config", &d.join("config.yaml").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let g = Gateway {
        child,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        ops: format!("127.0.0.1:{ops}").parse().expect("addr"),
        _tree: tree,
    };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(g.ops).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    g
}

/// An HTTP/2 connection whose client never reads: a stream window of zero.
async fn stalled_connection(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tls = TlsClient::insecure()
        .with_alpn(&[b"h2"])
        .tls_over(tcp_from("127.0.0.1", addr).await)
        .await;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .adaptive_window(false)
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

fn log_request(addr: std::net::SocketAddr, query: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost:{}{LOG}{query}", addr.port()))
        .header("authorization", format!("Bearer {}", ADMIN.token))
        .body(Empty::new())
        .expect("request")
}

#[tokio::test]
async fn streams_whose_clients_never_read_hold_little_memory_and_go_when_the_clients_go() {
    let g = gateway("maxLogStreamsPerConnection: 16, maxStreamsPerUser: 100").await;
    // Warm up: one whole log read, so the allocator's arenas exist before the baseline.
    let mut senders = Vec::new();
    let mut warm = stalled_connection(g.addr).await;
    drop(
        warm.send_request(log_request(g.addr, "?limitBytes=10"))
            .await
            .expect("warm-up"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = g.rss_kib();
    let mut responses = Vec::new();
    for _ in 0..3 {
        let mut sender = stalled_connection(g.addr).await;
        for _ in 0..16 {
            let response = sender
                .send_request(log_request(g.addr, ""))
                .await
                .expect("response head");
            assert_eq!(response.status(), 200);
            responses.push(response);
        }
        senders.push(sender);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(g.metric("kubelet_gate_log_streams_open").await, 48.0);
    let grown = g.rss_kib().saturating_sub(before);
    eprintln!("48 stalled log streams: +{grown} KiB of RSS");
    // 48 streams of an 8 MiB file; the readers stop at their bounded buffers.
    assert!(grown < 24 * 1024, "{grown} KiB for 48 stalled streams");
    drop(responses);
    drop(senders);
    drop(warm);
    let started = Instant::now();
    while g.metric("kubelet_gate_log_streams_open").await > 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "streams outlived their clients"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_connection_and_a_user_get_their_share_of_streams_then_429() {
    let g = gateway("maxLogStreamsPerConnection: 2, maxStreamsPerUser: 3").await;
    let mut one = stalled_connection(g.addr).await;
    let a = one.send_request(log_request(g.addr, "?follow=true")).await.expect("a");
    let b = one.send_request(log_request(g.addr, "?follow=true")).await.expect("b");
    let c = one.send_request(log_request(g.addr, "?follow=true")).await.expect("c");
    assert_eq!(
        (a.status().as_u16(), b.status().as_u16(), c.status().as_u16()),
        (200, 200, 429)
    );
    assert_eq!(c.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    let mut two = stalled_connection(g.addr).await;
    let d = two.send_request(log_request(g.addr, "?follow=true")).await.expect("d");
    let e = two.send_request(log_request(g.addr, "?follow=true")).await.expect("e");
    assert_eq!(
        (d.status().as_u16(), e.status().as_u16()),
        (200, 429),
        "the user's third, then none"
    );
    assert_eq!(
        g.metric(r#"kubelet_gate_streams_refused_total{limit="per_connection"}"#)
            .await,
        1.0
    );
    assert_eq!(
        g.metric(r#"kubelet_gate_streams_refused_total{limit="per_user"}"#)
            .await,
        1.0
    );
    // A stream given back is a stream to take.
    drop(a);
    let started = Instant::now();
    loop {
        let f = two.send_request(log_request(g.addr, "?follow=true")).await.expect("f");
        if f.status() == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
