//! No client without a credential holds the gateway: every connection state has a deadline
//! (no handshake, no first request, a partial HTTP/2 preface, a head that never ends, idle
//! HTTP/1 and HTTP/2), the listener holds at most so many connections in all and per source
//! address, and at the cap a silent connection makes room for one that talks. The deadlines
//! here are the settings made short (`limits:`), never sleeps of minutes.

mod streams;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::common::client::tcp_from;
use crate::common::{Harness, Setup, TokenUser, grant_user};

const READER: TokenUser = TokenUser {
    token: "reader-token",
    user: "reader",
    uid: "r1",
    groups: &[],
};

async fn gateway(limits: &str) -> Harness {
    Harness::start(Setup {
        tokens: vec![READER],
        rbac: vec![grant_user(READER.user, &["nodes/pods", "nodes/proxy"], &["get"])],
        top_yaml: format!("limits: {{{limits}}}\n"),
        ..Setup::default()
    })
    .await
}

/// How long until the gateway closes `stream` (EOF or reset), reading and discarding what it
/// sends; `None` if it is still open after `wait`.
async fn closed_after(stream: &mut (impl AsyncRead + Unpin), wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + wait).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn between(d: Option<Duration>, low_ms: u64, high_ms: u64) -> bool {
    d.is_some_and(|d| d >= Duration::from_millis(low_ms) && d <= Duration::from_millis(high_ms))
}

#[tokio::test]
async fn a_connection_that_never_sends_a_client_hello_is_closed_at_the_handshake_deadline() {
    let h = gateway("handshakeTimeout: 1s").await;
    let mut tcp = tokio::net::TcpStream::connect(h.addr).await.expect("connect");
    let closed = closed_after(&mut tcp, Duration::from_secs(10)).await;
    assert!(between(closed, 800, 4000), "{closed:?}");
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_closed_total{reason="handshake_timeout"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn silence_after_the_handshake_and_a_partial_http2_preface_end_at_the_first_request_deadline() {
    let h = gateway("firstRequestTimeout: 1s").await;
    let mut silent = h
        .client()
        .with_alpn(&[b"http/1.1"])
        .tls_over(tcp_from("127.0.0.1", h.addr).await)
        .await;
    let mut preface = h
        .client()
        .with_alpn(&[b"h2"])
        .tls_over(tcp_from("127.0.0.1", h.addr).await)
        .await;
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.expect("half a preface");
    let mut partial_head = h
        .client()
        .with_alpn(&[b"http/1.1"])
        .tls_over(tcp_from("127.0.0.1", h.addr).await)
        .await;
    partial_head
        .write_all(b"GET /pods HTTP/1.1\r\nHost: node-a\r\n")
        .await
        .expect("a head that never ends");
    let (a, b, c) = tokio::join!(
        closed_after(&mut silent, Duration::from_secs(10)),
        closed_after(&mut preface, Duration::from_secs(10)),
        closed_after(&mut partial_head, Duration::from_secs(10)),
    );
    for closed in [a, b, c] {
        assert!(between(closed, 800, 4000), "{closed:?}");
    }
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_closed_total{reason="first_request_timeout"}"#)
            .await,
        3.0
    );
    assert_eq!(h.reviews(), 0);
}

/// HTTP/1 keep-alive lives to the idle deadline (longer than the header deadline), and the
/// next request's head, once started, has the header deadline.
#[tokio::test]
async fn keep_alive_lasts_to_the_idle_deadline_and_a_started_head_to_the_header_deadline() {
    let h = gateway("headerReadTimeout: 1s, idleTimeout: 3s").await;
    let mut kept = h.client().keep_alive(h.addr).await;
    assert_eq!(kept.get("/healthz").await.status, 401);
    // Idle past the header deadline: the connection is still there.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(!kept.is_closed());
    assert_eq!(kept.get("/healthz").await.status, 401, "kept alive past 1s");
    // Then idle: closed at the idle deadline.
    let idle = Instant::now();
    while !kept.is_closed() {
        assert!(idle.elapsed() < Duration::from_secs(10), "never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(idle.elapsed() >= Duration::from_millis(2500), "{:?}", idle.elapsed());
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_closed_total{reason="idle"}"#)
            .await,
        1.0
    );

    // A head that starts but never ends, on a kept connection.
    let mut tls = h.client().tls_h1(h.addr).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: node-a\r\n\r\n")
        .await
        .expect("first request");
    let (head, _) = super::secure::read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    tls.write_all(b"GET /pods HTTP/1.1\r\nHost: node-a\r\n")
        .await
        .expect("half a head");
    let cut = closed_after(&mut tls, Duration::from_secs(10)).await;
    assert!(between(cut, 700, 2500), "{cut:?}");
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_closed_total{reason="header_timeout"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_idle_http2_connection_gets_a_goaway_at_the_idle_deadline() {
    let h = gateway("idleTimeout: 2s").await;
    let tls = h
        .client()
        .with_alpn(&[b"h2"])
        .tls_over(tcp_from("127.0.0.1", h.addr).await)
        .await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let started = Instant::now();
    let driver = tokio::spawn(conn);
    let request = http::Request::get(format!("https://localhost:{}/pods", h.addr.port()))
        .header("authorization", "Bearer reader-token")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await;
    // The connection future ends when the server's GOAWAY has closed it.
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    assert!(ended.is_ok(), "closed");
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_closed_total{reason="idle"}"#)
            .await,
        1.0
    );
}

/// One source address gets its share of the listener and no more; another still gets in.
#[tokio::test]
async fn a_peer_gets_its_share_of_connections_and_another_peer_still_gets_in() {
    let h = gateway("maxConnections: 100, maxConnectionsPerPeer: 3, handshakeTimeout: 30s").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from("127.0.0.2", h.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = tcp_from("127.0.0.2", h.addr).await;
    let refused = closed_after(&mut fourth, Duration::from_secs(5)).await;
    assert!(between(refused, 0, 1000), "closed at once: {refused:?}");
    let reply = h
        .client()
        .get(h.addr, "/pods", &[("authorization", "Bearer reader-token")])
        .await;
    assert_eq!(reply.status, 200, "127.0.0.1 is another peer");
    for silent in &mut held {
        assert_eq!(
            closed_after(silent, Duration::from_millis(100)).await,
            None,
            "still held"
        );
    }
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_refused_total{reason="peer_limit"}"#)
            .await,
        1.0
    );
}

/// At the cap, silent connections make room for a client that talks; once every slot holds a
/// connection that has sent a request, a newcomer is refused. The ops listener answers all
/// along.
#[tokio::test]
async fn at_the_cap_silent_connections_make_room_and_talking_ones_stay() {
    let h =
        gateway("maxConnections: 4, maxConnectionsPerPeer: 4, handshakeTimeout: 30s, firstRequestTimeout: 30s").await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tcp_from("127.0.0.2", h.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.metric("kubelet_gate_connections_open").await, 4.0);
    let started = Instant::now();
    let reply = h
        .client()
        .get(h.addr, "/pods", &[("authorization", "Bearer reader-token")])
        .await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        closed_after(&mut silent[0], Duration::from_secs(2)).await.is_some(),
        "the oldest went"
    );
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_closed_total{reason="evicted"}"#)
            .await,
        1.0
    );
    drop(silent);

    // Four connections that have each sent a request hold every slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut talking = Vec::new();
    for _ in 0..4 {
        let mut kept = h.client().keep_alive(h.addr).await;
        let _ = kept.get("/healthz").await;
        talking.push(kept);
    }
    let mut newcomer = tcp_from("127.0.0.2", h.addr).await;
    let refused = closed_after(&mut newcomer, Duration::from_secs(5)).await;
    assert!(between(refused, 0, 1000), "{refused:?}");
    assert_eq!(
        h.metric(r#"kubelet_gate_connections_refused_total{reason="limit"}"#)
            .await,
        1.0
    );
    let (status, _) = h.ops_get("/healthz").await;
    assert_eq!(status, 200, "the ops listener is not behind the cap");
    for kept in &mut talking {
        assert_eq!(kept.get("/healthz").await.status, 401, "still served (no credential)");
    }
}

/// `check-config` on a `limits:` block: exit 2 and stderr.
fn check_limits(block: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!("apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nlimits:\n{block}"),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
        .args(["check-config", "--config", &cfg.display().to_string()])
        .output()
        .expect("run");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn limits_are_settings_that_name_their_field() {
    let cases = [
        (
            "  maxConnections: 10\n  maxConnectionsPerPeer: 20\n",
            ":5: limits.maxConnectionsPerPeer: 20 is more than limits.maxConnections (10)",
        ),
        (
            "  http2StreamWindowBytes: 1000\n",
            ":4: limits.http2StreamWindowBytes: 1000 must be from 65535 to 2147483647",
        ),
        (
            "  http2ConnectionWindowBytes: 2147483648\n",
            ":4: limits.http2ConnectionWindowBytes: 2147483648 must be from 65535 to 2147483647",
        ),
        (
            "  http2MaxSendBufferBytes: 0\n",
            ":4: limits.http2MaxSendBufferBytes: 0 must be at least 16384",
        ),
    ];
    for (block, want) in cases {
        let (code, err) = check_limits(block);
        assert_eq!(code, Some(2), "{block}: {err}");
        assert!(err.contains(want), "{block}: {err}");
    }
}

/// Too many header fields, or a header block over `maxHeaderBytes`, is 431 and the end of the
/// connection (HTTP/1); over HTTP/2 a header list over the limit is answered 431 by the h2
/// layer and never becomes a request.
#[tokio::test]
async fn oversized_header_blocks_are_refused_before_anything_else() {
    let h = gateway("maxHeaders: 100, maxHeaderBytes: 65536").await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    for extra in [many, big] {
        let mut tls = h.client().tls_h1(h.addr).await;
        let request =
            format!("GET /pods HTTP/1.1\r\nHost: node-a\r\nAuthorization: Bearer reader-token\r\n{extra}\r\n");
        let _ = tls.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    }
    let tls = h
        .client()
        .with_alpn(&[b"h2"])
        .tls_over(tcp_from("127.0.0.1", h.addr).await)
        .await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let request = http::Request::get(format!("https://localhost:{}/pods", h.addr.port()))
        .header("authorization", "Bearer reader-token")
        .header("x-big", "a".repeat(70 * 1024))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(
        response.status(),
        431,
        "h2's own answer to a header list over the limit"
    );
    assert_eq!(h.upstream.count(), 0, "nothing reached the upstream");
    assert_eq!(h.authentications(), 0);
}
