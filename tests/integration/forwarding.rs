//! Forwarding to the read-only port: the exact header set the upstream sees (no credential,
//! identity or hop-by-hop header crosses),
//! identity never travelling in headers, streamed bodies, and generic 502/504 answers when the
//! upstream fails.

use std::time::{Duration, Instant};

use crate::common::upstream::{Behaviour, ReadOnlyStandIn};
use crate::common::{Harness, Setup, TokenUser, grant_user};

const READER: TokenUser = TokenUser {
    token: "reader-token",
    user: "reader",
    uid: "1",
    groups: &["readers"],
};

fn setup() -> Setup {
    Setup {
        tokens: vec![READER],
        rbac: vec![grant_user(
            "reader",
            &["nodes/pods", "nodes/metrics", "nodes/stats", "nodes/healthz"],
            &["*"],
        )],
        ..Setup::default()
    }
}

/// A gateway in front of an upstream that behaves as `behaviour`.
async fn gateway_with(behaviour: Behaviour, setup: Setup) -> Harness {
    let upstream = ReadOnlyStandIn::start().await;
    upstream.set_behaviour(behaviour);
    Harness::start_with(setup, upstream).await
}

async fn reader_get(h: &Harness, path: &str) -> crate::common::client::Reply {
    h.client()
        .get(h.addr, path, &[("authorization", "Bearer reader-token")])
        .await
}

fn names(seen: &crate::common::upstream::Seen) -> Vec<String> {
    let mut n: Vec<String> = seen.headers.iter().map(|(k, _)| k.clone()).collect();
    n.sort();
    n.dedup();
    n
}

#[tokio::test]
async fn the_upstream_sees_no_credential_identity_or_hop_by_hop_header() {
    let h = Harness::start(setup()).await;
    let c = h.client().with_alpn(&[b"http/1.1"]);
    let hostile = [
        ("authorization", "Bearer reader-token"),
        ("x-remote-user", "system:admin"),
        ("x-remote-group", "system:masters"),
        ("x-remote-extra-scopes", "x"),
        ("impersonate-user", "system:admin"),
        ("impersonate-group", "system:masters"),
        ("impersonate-uid", "0"),
        ("impersonate-extra-scopes", "x"),
        ("proxy-authorization", "Basic eDp5"),
        ("connection", "keep-alive, Foo"),
        ("foo", "bar"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
        ("upgrade", "h2c"),
        ("x-forwarded-for", "10.9.9.9"),
        ("x-forwarded-host", "evil"),
        ("forwarded", "for=10.9.9.9"),
        ("accept", "application/json"),
        ("user-agent", "kubectl/v1.36"),
    ];
    let reply = c.get(h.addr, "/pods", &hostile).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &h.upstream.seen()[0];
    assert_eq!(
        names(seen),
        ["accept", "host", "user-agent", "x-forwarded-for"],
        "{:?}",
        seen.headers
    );
    let value = |name: &str| seen.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(
        value("x-forwarded-for"),
        Some("127.0.0.1"),
        "the TCP peer, not the client's claim"
    );
    assert_eq!(value("host"), Some(h.upstream.addr().to_string().as_str()));
    assert_eq!(seen.method, "GET");
}

#[tokio::test]
async fn authorization_is_stripped_on_anonymous_routes_too() {
    let mut s = setup();
    s.anonymous = true;
    s.rbac
        .push(grant_user("system:anonymous", &["nodes/healthz"], &["get"]));
    let h = Harness::start(s).await;
    // A non-bearer Authorization header is no credential: anonymous, allowed, and still stripped.
    let reply = h
        .client()
        .get(h.addr, "/healthz", &[("authorization", "Basic eDp5")])
        .await;
    assert_eq!(reply.status, 200);
    assert!(h.upstream.seen()[0].headers.iter().all(|(k, _)| k != "authorization"));
}

#[tokio::test]
async fn responses_are_relayed_over_http1_and_http2() {
    let h = Harness::start(setup()).await;
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let reply = h
            .client()
            .with_alpn(&[alpn])
            .get(h.addr, "/healthz", &[("authorization", "Bearer reader-token")])
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "ok");
        let want = if alpn == b"h2" {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(reply.version, want);
    }
    let reply = reader_get(&h, "/pods").await;
    assert_eq!(
        reply.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    assert!(reply.text().contains("\"kind\":\"PodList\""));
    // The read-only port's 405 for a debug stub is passed through unchanged.
    assert_eq!(
        h.upstream.seen().iter().map(|s| s.version).collect::<Vec<_>>(),
        [http::Version::HTTP_11; 3]
    );
}

#[tokio::test]
async fn request_bodies_are_forwarded() {
    let h = Harness::start(setup()).await;
    let request = http::Request::post("/stats/summary")
        .header("authorization", "Bearer reader-token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"only_cpu_and_memory=true",
        )))
        .expect("request");
    let reply = h.client().send(h.addr, request).await.expect("reply");
    assert_eq!(reply.status, 200);
    assert_eq!(h.upstream.seen()[0].body, b"only_cpu_and_memory=true");
}

#[tokio::test]
async fn large_bodies_stream_through() {
    let h = gateway_with(
        Behaviour::BigBody {
            bytes: 64 * 1024 * 1024,
        },
        setup(),
    )
    .await;
    let reply = reader_get(&h, "/metrics/cadvisor").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 64 * 1024 * 1024);
}

#[tokio::test]
async fn upstream_down_is_a_generic_502() {
    let upstream = ReadOnlyStandIn::start().await;
    let addr = upstream.addr().to_string();
    upstream.stop().await;
    let h = Harness::start_with(setup(), upstream).await;
    let started = Instant::now();
    let reply = reader_get(&h, "/pods").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.text(), "502 Bad Gateway\n");
    assert!(!reply.text().contains(&addr) && !reply.text().contains("127.0.0.1"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The client connection stays usable for the next request.
    let reply = h.client().get(h.addr, "/foo", &[]).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn upstream_garbage_is_502() {
    let h = gateway_with(Behaviour::Garbage, setup()).await;
    let reply = reader_get(&h, "/pods").await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (502, "502 Bad Gateway\n")
    );
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_504_after_the_header_timeout() {
    let mut s = setup();
    s.extra_yaml = "  responseHeaderTimeout: 1s\n".into();
    let h = gateway_with(Behaviour::Hang, s).await;
    let started = Instant::now();
    let reply = reader_get(&h, "/pods").await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (504, "504 Gateway Timeout\n")
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_slow_but_answering_upstream_is_relayed() {
    let h = gateway_with(Behaviour::SlowHeaders(Duration::from_millis(300)), setup()).await;
    let reply = reader_get(&h, "/healthz").await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "ok"));
}

#[tokio::test]
async fn a_101_to_a_plain_request_is_not_spliced() {
    let h = gateway_with(Behaviour::Upgrade101, setup()).await;
    let reply = reader_get(&h, "/pods").await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (502, "502 Bad Gateway\n"),
        "never a splice"
    );
}

#[tokio::test]
async fn folded_or_cr_injected_headers_never_reach_the_upstream() {
    let h = Harness::start(setup()).await;
    let c = h.client().with_alpn(&[b"http/1.1"]);
    let cases: [&[u8]; 3] = [
        b"GET /pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-token\r\nX-Foo: a\r\n X-Remote-User: admin\r\nConnection: close\r\n\r\n",
        b"GET /pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-token\r\nX-Foo: a\rX-Remote-User: admin\r\nConnection: close\r\n\r\n",
        b"GET /pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-token\r\nX-Foo: a\x00b\r\nConnection: close\r\n\r\n",
    ];
    for raw in cases {
        let bytes = c.raw(h.addr, raw).await;
        let status = crate::common::client::parse_raw_response(&bytes).map(|(s, _, _)| s);
        assert!(
            matches!(status, Some(400) | None),
            "{}: {status:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(h.upstream.count(), 0);
    assert_eq!(h.authentications(), 0);
}

/// Distinct upstream connections (by the gateway's source address), in order of first use.
fn peers(h: &Harness) -> Vec<std::net::SocketAddr> {
    let mut peers = Vec::new();
    for s in h.upstream.seen() {
        if !peers.contains(&s.peer) {
            peers.push(s.peer);
        }
    }
    peers
}

/// Room for the gateway to put its upstream connection back in the pool after an answer.
const IDLE: Duration = Duration::from_millis(50);

#[tokio::test]
async fn a_get_on_a_pooled_connection_the_upstream_closes_unanswered_is_sent_again_once() {
    // The read-only port closes each keep-alive connection just as the gateway reuses it (its
    // idle timeout firing at that moment): the request arrives, no byte of answer leaves.
    let h = gateway_with(Behaviour::CloseReused, setup()).await;
    let mut answered = 0;
    while h.upstream.count() == answered && answered < 20 {
        let reply = reader_get(&h, "/pods").await;
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, crate::common::upstream::PODS_JSON),
            "request {answered}"
        );
        answered += 1;
        tokio::time::sleep(IDLE).await;
    }
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), answered + 1, "exactly one request was sent twice");
    let closed = &seen[seen.len() - 2];
    let again = &seen[seen.len() - 1];
    assert_eq!(
        closed.peer,
        seen[seen.len() - 3].peer,
        "the closed one went on a pooled connection"
    );
    assert_ne!(again.peer, closed.peer, "and was sent again on a new one");
    assert_eq!(
        (&again.method, &again.target, &again.headers),
        (&closed.method, &closed.target, &closed.headers)
    );
    assert_eq!(peers(&h).len(), answered, "one new connection per answer");
}

#[tokio::test]
async fn a_request_with_a_body_is_never_sent_twice() {
    let h = gateway_with(Behaviour::CloseReused, setup()).await;
    for attempt in 0..20 {
        assert_eq!(reader_get(&h, "/pods").await.status, 200);
        tokio::time::sleep(IDLE).await;
        let before = h.upstream.count();
        let connections = peers(&h).len();
        let post = http::Request::post("/stats/summary")
            .header("authorization", "Bearer reader-token")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x=1")))
            .expect("request");
        let reply = h.client().send(h.addr, post).await.expect("reply");
        if peers(&h).len() > connections {
            // A new connection answered it; the pool did not offer one this time.
            assert_eq!(reply.status, 200, "attempt {attempt}");
            continue;
        }
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (502, "502 Bad Gateway\n"),
            "a POST the upstream may have acted on is not repeated"
        );
        assert_eq!(h.upstream.count(), before + 1, "sent once");
        return;
    }
    panic!("the gateway never reused a pooled connection");
}

#[tokio::test]
async fn a_new_connection_closed_unanswered_is_not_retried() {
    // On a connection just opened for this request the upstream failed the request itself.
    let h = gateway_with(Behaviour::Close, setup()).await;
    let reply = reader_get(&h, "/pods").await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (502, "502 Bad Gateway\n")
    );
    assert_eq!(h.upstream.count(), 1);
}
