//! Upgraded streams: spliced byte for byte for a caller allowed `create`, never for one with
//! `get` alone; the upgrade headers and the stream protocol reach the kubelet, the caller's
//! credential does not; a real WebSocket client's session; a 1 GiB transfer intact; idle
//! streams closed; the audit's start and end lines and the stream metrics; a refused upgrade
//! and a `101` nobody asked for.

use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::common::kubelet_port::{Behaviour, GATEWAY_CN, StreamMode, pattern};

#[tokio::test]
async fn spdy_exec_attach_and_port_forward_are_spliced_for_a_create_holder() {
    let r = rig(|_| {}).await;
    for (method, target) in [
        (
            "POST",
            "/exec/default/web/app?command=sh&command=-c&command=ls&input=1&output=1&tty=1",
        ),
        ("POST", "/attach/default/web/app?input=1&output=1"),
        ("POST", "/portForward/default/web"),
        ("GET", "/exec/default/web/0c0ffee/app?command=id&output=1"),
    ] {
        let before = r.kubelet.count();
        let headers = spdy(OPERATOR.token);
        let (mut tls, head, rest) = upgrade(&r.h, method, target, &borrowed(&headers)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{target}: {head}");
        assert!(rest.is_empty());
        assert_eq!(head_header(&head, "upgrade"), Some("SPDY/3.1"), "{head}");
        assert_eq!(
            head_header(&head, "x-stream-protocol-version"),
            Some("v4.channel.k8s.io"),
            "the kubelet's choice is relayed: {head}"
        );
        let sent = format!("bytes through {target}\n");
        assert_eq!(echo(&mut tls, sent.as_bytes()).await, sent.as_bytes(), "{target}");

        assert_eq!(r.kubelet.count(), before + 1, "one request upstream");
        let seen = r.kubelet.seen().pop().expect("seen");
        assert_eq!((seen.method.as_str(), seen.target.as_str()), (method, target));
        assert_eq!(seen.client_cn.as_deref(), Some(GATEWAY_CN), "the gateway's certificate");
        assert_eq!(seen.header("upgrade"), Some("SPDY/3.1"));
        assert_eq!(seen.header("connection"), Some("Upgrade"));
        let versions: Vec<&str> = seen
            .headers
            .get_all("x-stream-protocol-version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            versions,
            ["v4.channel.k8s.io", "v3.channel.k8s.io"],
            "the stream protocols, intact"
        );
        assert_eq!(seen.header("authorization"), None, "the caller's token never crosses");
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        drop(tls);
    }
}

#[tokio::test]
async fn get_nodes_proxy_never_opens_a_stream_and_nothing_reaches_the_kubelet() {
    let r = rig(|_| {}).await;
    let websocket = [
        ("Authorization", bearer(&VIEWER)),
        ("Connection", "Upgrade".to_owned()),
        ("Upgrade", "websocket".to_owned()),
        ("Sec-WebSocket-Version", "13".to_owned()),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
        ("Sec-WebSocket-Protocol", "v5.channel.k8s.io".to_owned()),
    ];
    for target in [
        "/exec/default/web/app?command=sh&input=1&output=1",
        "/attach/default/web/app?output=1",
        "/portForward/default/web?port=80",
    ] {
        let (_tls, head, _) = upgrade(&r.h, "GET", target, &borrowed(&websocket)).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
    }
    let headers = spdy(VIEWER.token);
    let (mut tls, head, rest) = upgrade(
        &r.h,
        "POST",
        "/exec/default/web/app?command=id&output=1",
        &borrowed(&headers),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let mut body = rest;
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut body)).await;
    assert!(
        String::from_utf8_lossy(&body)
            .contains("Forbidden (user=viewer, verb=create, resource=nodes, subresource(s)=[proxy])"),
        "{body:?}"
    );
    assert_eq!(r.kubelet.count(), 0, "the kubelet never saw the refused callers");
    assert_eq!(r.kubelet.handshakes(), (0, 0), "not even a connection");
}

/// A real WebSocket client runs an exec session: the token rides in the subprotocol list, as
/// browsers must send it; the kubelet sees the rest of the list, never the token.
#[tokio::test]
async fn a_websocket_client_runs_an_exec_session_and_the_token_protocol_never_crosses() {
    let r = rig(|_| {}).await;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(OPERATOR.token);
    let tls = r.h.client().tls_h1(r.h.addr).await;
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "wss://node-a:10250/exec/default/web/app?command=sh&input=1&output=1&tty=1",
    )
    .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("base64url.bearer.authorization.k8s.io.{token}, v5.channel.k8s.io, v4.channel.k8s.io")
            .parse()
            .expect("header"),
    );
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.expect("handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("v5.channel.k8s.io"),
        "the kubelet chose among what it was offered"
    );
    for i in 0..20u8 {
        let frame = vec![0u8, b'l', b's', b'\n', i];
        ws.send(Message::binary(frame.clone())).await.expect("send");
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("frame");
        assert_eq!(back.into_data().to_vec(), frame);
    }
    ws.close(None).await.expect("close");
    let seen = r.kubelet.seen().pop().expect("seen");
    // Authentication rewrites the list without the token, joined as upstream's protocol.go
    // joins it.
    assert_eq!(
        seen.header("sec-websocket-protocol"),
        Some("v5.channel.k8s.io,v4.channel.k8s.io")
    );
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.client_cn.as_deref(), Some(GATEWAY_CN));
    let streams = r.kubelet.streams();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].received, 100, "20 frames of 5 bytes, spliced");
}

/// Another credential authenticated the request: a token in the subprotocol list is still
/// stripped (nothing that looks like a credential crosses).
#[tokio::test]
async fn a_token_protocol_is_stripped_even_when_a_certificate_authenticated() {
    let r = rig(|s| s.rbac.push(grant_user("cert-operator", &["nodes/proxy"], &["create"]))).await;
    let leaf =
        r.h.client_ca
            .client(crate::common::pki::ClientSpec::new("cert-operator"));
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(VIEWER.token);
    let mut tls = r.h.client_with(&leaf).tls_h1(r.h.addr).await;
    let request = format!(
        "GET /exec/default/web/app?command=id&output=1 HTTP/1.1\r\nHost: node-a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.{token}\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let (head, _) = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let seen = r.kubelet.seen().pop().expect("seen");
    assert_eq!(seen.header("sec-websocket-protocol"), Some("v5.channel.k8s.io"));
}

/// 1 GiB from the kubelet's side of a port-forward reaches the client intact (the stand-in
/// writes a deterministic stream; the client recomputes it), through bounded buffers.
#[tokio::test]
async fn a_one_gibibyte_port_forward_stream_passes_intact() {
    const BYTES: u64 = 1 << 30;
    let r = rig(|_| {}).await;
    r.kubelet.set_stream_mode(StreamMode::Send { bytes: BYTES, seed: 7 });
    let headers = spdy(OPERATOR.token);
    let (mut tls, head, rest) = upgrade(&r.h, "POST", "/portForward/default/web", &borrowed(&headers)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let sha = |ctx: aws_lc_rs::digest::Context| -> Vec<u8> { ctx.finish().as_ref().to_vec() };
    let mut received = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    received.update(&rest);
    let mut total = rest.len() as u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), tls.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                received.update(&buf[..n]);
                total += n as u64;
            }
            Ok(Err(e)) => panic!("read after {total} bytes: {e}"),
            Err(_) => panic!("stalled after {total} bytes"),
        }
    }
    assert_eq!(total, BYTES, "every byte arrived, and then the end of the stream");
    // The same stream, generated as the stand-in writes it (64 KiB at a time).
    let mut expected = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let (mut x, mut chunk) = (0u64, vec![0u8; 64 * 1024]);
    for _ in 0..BYTES / chunk.len() as u64 {
        pattern(7, &mut chunk, &mut x);
        expected.update(&chunk);
    }
    assert_eq!(sha(received), sha(expected), "every byte as sent");
}

#[tokio::test]
async fn a_stream_outlives_the_response_header_timeout_and_idles_out_at_the_stream_timeout() {
    let r = rig(|s| {
        s.upstream_yaml
            .push_str("  responseHeaderTimeout: 1s\n  streamIdleTimeout: 3s\n");
        s.top_yaml = "audit:\n  path: audit.log\n".into();
    })
    .await;
    let headers = spdy(OPERATOR.token);
    let (mut tls, head, _) = upgrade(
        &r.h,
        "POST",
        "/exec/default/web/app?command=sh&input=1&output=1",
        &borrowed(&headers),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Busy for longer than the response-header timeout: nothing cuts it.
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = format!("tick {i}");
        assert_eq!(echo(&mut tls, sent.as_bytes()).await, sent.as_bytes());
    }
    // Then idle: closed at the stream timeout (3 s), not before 2.5 s.
    let idle = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, nothing read");
    assert!(
        idle.elapsed() >= Duration::from_millis(2500),
        "not before the idle timeout: {:?}",
        idle.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(r.h.path("audit.log")).unwrap_or_default();
        if let Some(end) = text.lines().find(|l| l.contains(r#""stage":"end""#)) {
            let end: serde_json::Value = serde_json::from_str(end).expect("json");
            assert_eq!(end["reason"], "stream ended: idle timeout");
            break;
        }
        assert!(Instant::now() < deadline, "no end record: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stream_is_audited_at_start_and_end_and_counted() {
    let r = rig(|s| s.top_yaml = "audit:\n  path: audit.log\n".into()).await;
    let headers = spdy(OPERATOR.token);
    let target = "/exec/default/web/app?command=sh&command=-c&command=echo+hi%21&input=1&output=1";
    let (mut tls, head, _) = upgrade(&r.h, "POST", target, &borrowed(&headers)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(r.h.metric("kubelet_gate_streams_open").await, 1.0);
    assert_eq!(echo(&mut tls, b"0123456789").await, b"0123456789");
    tls.shutdown().await.expect("half-close");
    // After the client's half-close the kubelet's side finishes and the stream ends.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(r.h.path("audit.log")).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (start, end) = (&lines[0], &lines[1]);
    assert_eq!(
        (start["stage"].as_str(), end["stage"].as_str()),
        (Some("start"), Some("end"))
    );
    for line in [start, end] {
        assert_eq!(line["user"], "operator");
        assert_eq!(line["endpoint"], "exec");
        assert_eq!(line["verb"], "create");
        assert_eq!(line["command"], serde_json::json!(["sh", "-c", "echo hi!"]));
        assert_eq!(line["status"], 101);
        assert!(
            line.get("tokenHmac").is_some_and(|t| t.is_string()),
            "a hash, never the token"
        );
    }
    assert_eq!(end["bytesIn"], 10);
    assert_eq!(end["bytes"], 10);
    assert!(
        !std::fs::read_to_string(r.h.path("audit.log"))
            .expect("audit")
            .contains(OPERATOR.token)
    );
    assert_eq!(r.h.metric(r#"kubelet_gate_streams_total{endpoint="exec"}"#).await, 1.0);
    assert_eq!(
        r.h.metric(r#"kubelet_gate_stream_bytes_total{direction="client_to_upstream"}"#)
            .await,
        10.0
    );
    assert_eq!(r.h.metric("kubelet_gate_streams_open").await, 0.0);
}

/// The kubelet refuses the upgrade and keeps its connection open; the client sends another
/// request right behind its upgrade. The refusal is relayed, the connection closed, and the
/// bytes behind it never reach the kubelet (CVE-2018-1002105's shape).
#[tokio::test]
async fn a_refused_upgrade_is_relayed_and_no_byte_behind_it_reaches_the_kubelet() {
    let r = rig(|_| {}).await;
    r.kubelet.set_behaviour(Behaviour::RefuseUpgrade(403));
    let mut tls = r.h.client().tls_h1(r.h.addr).await;
    let request = format!(
        "POST /exec/default/web/app?command=id&output=1 HTTP/1.1\r\nHost: node-a\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\nGET /configz HTTP/1.1\r\nHost: node-a\r\n\r\n",
        OPERATOR.token
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut all)).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("upgrade refused by the stand-in"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then the connection closed: {text}"
    );
    assert_eq!(r.kubelet.count(), 1, "only the upgrade request reached the kubelet");
}

/// A `101` to a request that asked for no upgrade is never spliced.
#[tokio::test]
async fn a_101_to_a_plain_request_is_a_502() {
    let r = rig(|_| {}).await;
    r.kubelet.set_behaviour(Behaviour::SwitchEverything);
    let reply =
        r.h.client()
            .get(r.h.addr, "/configz", &[("authorization", &bearer(&OPERATOR))])
            .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (502, "502 Bad Gateway\n")
    );
}

/// Over HTTP/2 there is no upgrade: the request is forwarded as it is and the kubelet's own
/// answer comes back.
#[tokio::test]
async fn over_http2_a_streaming_request_gets_the_kubelet_s_own_answer() {
    let r = rig(|_| {}).await;
    let reply =
        r.h.client()
            .request(
                r.h.addr,
                "POST",
                "/exec/default/web/app?command=id&output=1",
                &[("authorization", &bearer(&OPERATOR))],
            )
            .await;
    assert_eq!(reply.version, http::Version::HTTP_2, "the client spoke h2");
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (500, "Upgrade request required\n")
    );
    let seen = r.kubelet.seen().pop().expect("seen");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.header("upgrade"), None);
}

/// SIGTERM with a stream open: the stream keeps working through the shutdown grace (10 s), then
/// the gateway closes it and writes its end record; new connections are refused meanwhile.
#[tokio::test]
async fn shutdown_lets_an_open_stream_run_for_the_grace_period_then_closes_it() {
    let mut r = rig(|s| s.top_yaml = "audit:\n  path: audit.log\n".into()).await;
    let headers = spdy(OPERATOR.token);
    let (mut tls, head, _) = upgrade(
        &r.h,
        "POST",
        "/exec/default/web/app?command=sh&input=1&output=1",
        &borrowed(&headers),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let started = Instant::now();
    r.h.shutdown();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        tokio::net::TcpStream::connect(r.h.addr).await.is_err(),
        "the listener is closed"
    );
    assert_eq!(echo(&mut tls, b"still here").await, b"still here", "within the grace");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf))
        .await
        .expect("closed at the end of the grace")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "not before the grace ran out: {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(r.h.path("audit.log")).unwrap_or_default();
        if let Some(end) = text.lines().find(|l| l.contains(r#""stage":"end""#)) {
            let end: serde_json::Value = serde_json::from_str(end).expect("json");
            assert_eq!(end["reason"], "stream ended: shutdown");
            assert_eq!(end["bytesIn"], 10);
            break;
        }
        assert!(Instant::now() < deadline, "no end record: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One user holds at most `limits.maxStreamsPerUser` upgraded streams: the next is 429 and
/// never reaches the kubelet; one that ends gives its place back.
#[tokio::test]
async fn a_user_holds_so_many_streams_and_the_next_is_429() {
    let r = rig(|s| s.top_yaml = "limits: {maxStreamsPerUser: 2}\n".into()).await;
    let headers = spdy(OPERATOR.token);
    let exec = "/exec/default/web/app?command=sh&input=1&output=1";
    let (first, head, _) = upgrade(&r.h, "POST", exec, &borrowed(&headers)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_second, head, _) = upgrade(&r.h, "POST", exec, &borrowed(&headers)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let before = r.kubelet.count();
    let (_third, head, _) = upgrade(&r.h, "POST", exec, &borrowed(&headers)).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert_eq!(r.kubelet.count(), before, "the third never reached the kubelet");
    assert_eq!(
        r.h.metric(r#"kubelet_gate_streams_refused_total{limit="per_user"}"#)
            .await,
        1.0
    );
    drop(first);
    let started = Instant::now();
    loop {
        let (_again, head, _) = upgrade(&r.h, "POST", exec, &borrowed(&headers)).await;
        if head.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the place never came back: {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
