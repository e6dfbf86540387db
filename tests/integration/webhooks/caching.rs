//! The token and decision caches under a manual clock: TTLs for accepted, rejected, allowed and
//! denied, one entry per token, the fine-grained fallback, coalescing of concurrent misses, errors
//! never cached, and WebSocket subprotocol tokens in the same cache.

use std::sync::Arc;
use std::time::Duration;

use super::{rig, user};
use crate::common::apiserver::Behaviour;

#[tokio::test]
async fn token_results_are_cached_for_cache_ttl_accepted_and_rejected() {
    let r = rig().await;
    r.api.add_token("good", user("alice"));
    r.api.allow("alice", "get", "metrics");
    for _ in 0..3 {
        assert_eq!(r.get("good", "/metrics").await.status, 200);
        assert_eq!(r.get("bad", "/metrics").await.status, 401);
    }
    assert_eq!(
        r.api.tokenreview_count(),
        2,
        "one review per token, rejected tokens included"
    );
    r.clock.advance(Duration::from_secs(119));
    assert_eq!(r.get("good", "/metrics").await.status, 200);
    assert_eq!(r.api.tokenreview_count(), 2, "119 s: still cached");
    r.clock.advance(Duration::from_secs(2));
    assert_eq!(r.get("good", "/metrics").await.status, 200);
    assert_eq!(r.get("bad", "/metrics").await.status, 401);
    assert_eq!(r.api.tokenreview_count(), 4, "121 s: both asked again");
}

#[tokio::test]
async fn tokens_differing_in_one_byte_are_separate_entries() {
    let r = rig().await;
    let a = "a".repeat(1024);
    let b = format!("{}b", &a[..1023]);
    r.api.add_token(&a, user("alice"));
    r.api.add_token(&b, user("bob"));
    let ra = r.get(&a, "/pods").await;
    let rb = r.get(&b, "/pods").await;
    assert!(
        ra.text().contains("user=alice") && rb.text().contains("user=bob"),
        "{} / {}",
        ra.text(),
        rb.text()
    );
    assert_eq!(
        r.api.tokenreview_count(),
        2,
        "tokens differing in the last byte are two entries"
    );
}

#[tokio::test]
async fn decisions_are_cached_allowed_for_5m_and_denied_for_30s() {
    let r = rig().await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    r.api.deny("alice", "get", "stats");
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!(r.get("t", "/stats/summary").await.status, 403);
    assert_eq!(r.api.sar_count(), 2);
    r.clock.advance(Duration::from_secs(29));
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!(r.get("t", "/stats/summary").await.status, 403);
    assert_eq!(r.api.sar_count(), 2, "29 s: both cached");
    r.clock.advance(Duration::from_secs(2));
    assert_eq!(r.get("t", "/stats/summary").await.status, 403);
    assert_eq!(r.api.sar_count(), 3, "31 s: the denial is asked again");
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!(r.api.sar_count(), 3, "the allow is still cached");
    r.clock.advance(Duration::from_secs(270));
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!(r.api.sar_count(), 4, "5 m 1 s: the allow is asked again");
}

#[tokio::test]
async fn fine_grained_fallback_sends_two_reviews_and_caches_both() {
    let r = rig().await;
    r.api.add_token("t", user("legacy"));
    r.api.allow("legacy", "get", "proxy");
    assert_eq!(r.get("t", "/pods").await.status, 200);
    let subs: Vec<_> = r
        .api
        .sars()
        .iter()
        .map(|s| s.body["spec"]["resourceAttributes"]["subresource"].clone())
        .collect();
    assert_eq!(subs, [serde_json::json!("pods"), serde_json::json!("proxy")]);
    assert_eq!(r.get("t", "/pods").await.status, 200);
    assert_eq!(r.api.sar_count(), 2, "both decisions cached");
}

#[tokio::test]
async fn a_hundred_concurrent_requests_with_one_new_token_make_one_review_each() {
    let r = Arc::new(rig().await);
    r.api.add_token("fresh", user("alice"));
    r.api.allow("alice", "get", "metrics");
    r.api
        .set_tokenreview_behaviour(Behaviour::Delay(Duration::from_millis(200)));
    r.api.set_sar_behaviour(Behaviour::Delay(Duration::from_millis(200)));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let r = r.clone();
        tasks.push(tokio::spawn(
            async move { r.get("fresh", "/metrics").await.status.as_u16() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    assert_eq!(
        r.api.tokenreview_count(),
        1,
        "one TokenReview for 100 concurrent requests"
    );
    assert_eq!(r.api.sar_count(), 1);
}

#[tokio::test]
async fn errors_are_never_cached() {
    let r = rig().await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    // 500 until retries run out -> 401, then success (cached), then errors again.
    r.api.push_tokenreview_script(vec![
        Behaviour::Status {
            code: 500,
            retry_after: None
        };
        5
    ]);
    assert_eq!(r.get("t", "/metrics").await.status, 401);
    assert_eq!(r.api.tokenreview_count(), 5, "five attempts");
    assert_eq!(r.get("t", "/metrics").await.status, 200, "the error was not cached");
    assert_eq!(r.api.tokenreview_count(), 6);
    r.api.set_tokenreview_behaviour(Behaviour::Status {
        code: 500,
        retry_after: None,
    });
    assert_eq!(r.get("t", "/metrics").await.status, 200, "served from cache");
    assert_eq!(r.api.tokenreview_count(), 6);
    // an error inside the answer is an error too: 401 and asked again.
    r.api
        .set_tokenreview_behaviour(Behaviour::StatusError("webhook down".into()));
    assert_eq!(r.get("other", "/metrics").await.status, 401);
    assert_eq!(r.get("other", "/metrics").await.status, 401);
    assert_eq!(r.api.tokenreview_count(), 8);
    // SAR errors: 500 with the kubelet's body, not cached.
    r.api.push_sar_script(vec![
        Behaviour::Status {
            code: 500,
            retry_after: None
        };
        5
    ]);
    r.clock.advance(Duration::from_secs(301));
    r.api.set_tokenreview_behaviour(Behaviour::Normal);
    let reply = r.get("t", "/metrics").await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.text(),
        "Authorization error (user=alice, verb=get, resource=nodes, subresource=metrics)"
    );
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!(r.h.upstream.count(), 3);
}

#[tokio::test]
async fn websocket_subprotocol_tokens_go_through_the_same_cache() {
    use base64::Engine;
    let r = rig().await;
    r.api.add_token("ws-token", user("alice"));
    r.api.allow("alice", "get", "pods");
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("ws-token");
    let protocols = format!("base64url.bearer.authorization.k8s.io.{encoded}, v5.channel.k8s.io");
    let c = r.h.client().with_alpn(&[b"http/1.1"]);
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", protocols.as_str()),
    ];
    assert_eq!(c.get(r.h.addr, "/pods", &ws).await.status, 200);
    assert_eq!(
        r.get("ws-token", "/pods").await.status,
        200,
        "the header token hits the same cache entry"
    );
    assert_eq!(r.api.tokenreview_count(), 1);
    let seen = &r.h.upstream.seen()[0];
    let protocol: Vec<_> = seen
        .headers
        .iter()
        .filter(|(k, _)| k == "sec-websocket-protocol")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(protocol, ["v5.channel.k8s.io"]);
    let alone = format!("base64url.bearer.authorization.k8s.io.{encoded}");
    let only = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", alone.as_str()),
    ];
    assert_eq!(c.get(r.h.addr, "/pods", &only).await.status, 401);
}
