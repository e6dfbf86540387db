//! `apiServer.staleIfError` across an outage longer than the cache TTLs: the expired identity
//! and decision keep answering for the whole stale window, sequential and concurrent requests
//! alike, with one API server attempt per key every few seconds (not one per request), and the
//! first answer after recovery replaces the expired one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kubelet_gate::authz::AnyAuthorizer;
use kubelet_gate::review_cache::{CacheStats, STALE_RETRY_INTERVAL};

use super::{Rig, rig_with, user};
use crate::common::apiserver::Behaviour;

/// Past both default TTLs (token 2 m, allowed decision 5 m).
const PAST_TTLS: Duration = Duration::from_secs(301);
/// Just past the spacing between attempts while stale.
const NEXT_ATTEMPT: Duration = STALE_RETRY_INTERVAL.saturating_add(Duration::from_secs(1));

fn token_stats(r: &Rig) -> Arc<CacheStats> {
    r.h.pipeline
        .authenticator
        .token_reviewer()
        .expect("TokenReview webhook on")
        .stats()
        .clone()
}

fn sar_stats(r: &Rig) -> Arc<CacheStats> {
    match &r.h.pipeline.authorizer {
        AnyAuthorizer::Webhook(sar) => sar.stats().clone(),
        _ => panic!("Webhook authorization expected"),
    }
}

/// Attempts through each cache: (TokenReview, SubjectAccessReview).
fn attempts(r: &Rig) -> (u64, u64) {
    (
        token_stats(r).calls.load(Ordering::Relaxed),
        sar_stats(r).calls.load(Ordering::Relaxed),
    )
}

async fn warm() -> Rig {
    let r = rig_with(|s| s.top_yaml = "apiServer: {staleIfError: 10m, requestTimeout: 1s}\n".into()).await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!((r.api.tokenreview_count(), r.api.sar_count()), (1, 1));
    r
}

#[tokio::test]
async fn an_outage_longer_than_the_ttls_is_ridden_out_then_recovery_replaces_the_stale_answers() {
    let r = warm().await;
    r.api.stop().await;
    r.clock.advance(PAST_TTLS);
    for i in 0..10 {
        assert_eq!(r.get("t", "/metrics").await.status, 200, "request {i} in the outage");
    }
    assert_eq!(attempts(&r), (2, 2), "one attempt per key for ten requests");
    // Six more minutes of outage: the token expired 8 minutes ago, the decision 5.
    for minute in 1..=6 {
        r.clock.advance(Duration::from_secs(60));
        for i in 0..3 {
            assert_eq!(r.get("t", "/metrics").await.status, 200, "minute {minute}, request {i}");
        }
        assert_eq!(
            attempts(&r),
            (2 + minute, 2 + minute),
            "minute {minute}: one attempt per key"
        );
    }
    assert_eq!(token_stats(&r).stale_uses.load(Ordering::Relaxed), 28);
    assert_eq!(sar_stats(&r).stale_uses.load(Ordering::Relaxed), 28);
    assert_eq!(
        r.h.metric(r#"kubelet_gate_cache_stale_uses_total{cache="tokenreview"}"#)
            .await,
        28.0
    );
    assert_eq!(r.h.upstream.count(), 29, "every request was served");

    // Recovery, with a new answer: the decision is now a denial.
    r.api.restart().await;
    r.api.deny("alice", "get", "metrics");
    r.clock.advance(NEXT_ATTEMPT);
    assert_eq!(
        r.get("t", "/metrics").await.status,
        403,
        "the fresh decision replaced the stale one"
    );
    assert_eq!((r.api.tokenreview_count(), r.api.sar_count()), (2, 2));
    assert_eq!(r.get("t", "/metrics").await.status, 403);
    assert_eq!(
        (r.api.tokenreview_count(), r.api.sar_count()),
        (2, 2),
        "fresh answers are cached again"
    );
}

#[tokio::test]
async fn concurrent_requests_in_an_outage_share_one_attempt_and_all_get_the_stale_answer() {
    let r = Arc::new(warm().await);
    r.clock.advance(PAST_TTLS);
    // The API server takes every call and never answers; each attempt ends at the 1 s deadline.
    r.api.set_tokenreview_behaviour(Behaviour::Hang);
    r.api.set_sar_behaviour(Behaviour::Hang);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let r = r.clone();
        tasks.push(tokio::spawn(
            async move { r.get("t", "/metrics").await.status.as_u16() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    assert_eq!(
        (r.api.tokenreview_count(), r.api.sar_count()),
        (2, 2),
        "one attempt per key for 40 concurrent requests"
    );
    assert_eq!(attempts(&r), (2, 2));

    r.api.set_tokenreview_behaviour(Behaviour::Normal);
    r.api.set_sar_behaviour(Behaviour::Normal);
    r.clock.advance(NEXT_ATTEMPT);
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!((r.api.tokenreview_count(), r.api.sar_count()), (3, 3), "recovered");
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!((r.api.tokenreview_count(), r.api.sar_count()), (3, 3));
}
