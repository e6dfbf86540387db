//! threats.md DS-08: a client inventing bearer tokens gets a bounded number of TokenReviews per
//! second (per source address and in all); the rest are 429 without a review, and tokens already
//! cached keep answering. The manual clock holds the second still, so the counts are exact.

use std::time::Duration;

use super::{rig_with, user};
use crate::common::client::tcp_from;

const BUDGET: &str = "limits: {tokenReviewsPerSecond: 8, tokenReviewsPerSecondPerPeer: 5}\n";

#[tokio::test]
async fn invented_tokens_get_a_few_reviews_per_second_then_429() {
    let r = rig_with(|s| s.top_yaml = BUDGET.into()).await;
    r.api.add_token("good", user("alice"));
    r.api.allow("alice", "get", "pods");
    assert_eq!(r.get("good", "/pods").await.status, 200, "cached from now on");
    let reviews = r.api.tokenreview_count();

    let mut statuses = Vec::new();
    for i in 0..20 {
        let reply = r.get(&format!("invented-{i}"), "/pods").await;
        statuses.push(reply.status.as_u16());
        if reply.status == 429 {
            assert_eq!(reply.text(), "Too many requests, please try again later.\n");
            assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
        }
    }
    // The first good token took one of 127.0.0.1's five.
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 16, "{statuses:?}");
    assert_eq!(r.api.tokenreview_count() - reviews, 4, "no review past the budget");
    assert_eq!(
        r.get("good", "/pods").await.status,
        200,
        "a cached token is not counted"
    );
    assert_eq!(
        r.h.metric("kubelet_gate_tokenreviews_refused_total{limit=\"per_peer\"}")
            .await,
        16.0
    );

    // The next second brings a fresh budget.
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(r.get("invented-next", "/pods").await.status, 401);
    assert_eq!(r.api.tokenreview_count() - reviews, 5);
}

#[tokio::test]
async fn another_source_has_its_own_share_until_the_total_is_spent() {
    let r = rig_with(|s| s.top_yaml = BUDGET.into()).await;
    let client = r.h.client().with_alpn(&[b"http/1.1"]);
    let from = |source: &'static str, token: String| {
        let client = client.clone();
        let addr = r.h.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tls = client.tls_over(tcp_from(source, addr).await).await;
            let request = format!(
                "GET /pods HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            );
            tls.write_all(request.as_bytes()).await.expect("write");
            let mut raw = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw))
                .await
                .expect("answered in time")
                .expect("read");
            String::from_utf8_lossy(&raw).get(9..12).unwrap_or("").to_owned()
        }
    };
    let mut by_source = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        let mut codes = Vec::new();
        for i in 0..6 {
            codes.push(from(source, format!("{source}-{i}")).await);
        }
        by_source.push(codes);
    }
    // 127.0.0.2: five reviews, then its own bound; 127.0.0.3: the three the total has left.
    assert_eq!(by_source[0], ["401", "401", "401", "401", "401", "429"]);
    assert_eq!(by_source[1], ["401", "401", "401", "429", "429", "429"]);
    assert_eq!(r.api.tokenreview_count(), 8);
    assert_eq!(
        r.h.metric("kubelet_gate_tokenreviews_refused_total{limit=\"global\"}")
            .await,
        3.0
    );
}
