//! When the API server fails or is slow: retries by status and `Retry-After`, answers that fail
//! closed, the overall deadline, outages, stale mode, and the cap on calls in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{rig, rig_with, user};
use crate::common::apiserver::Behaviour;

#[tokio::test]
async fn retries_depend_on_the_status() {
    for (code, calls) in [(500, 5), (503, 5), (429, 5), (401, 1), (403, 1), (404, 1)] {
        let r = rig().await;
        r.api.set_tokenreview_behaviour(Behaviour::Status {
            code,
            retry_after: None,
        });
        assert_eq!(r.get("t", "/metrics").await.status, 401, "{code}");
        assert_eq!(r.api.tokenreview_count(), calls, "TokenReview answered {code}");
        r.api.add_token("ok", user("alice"));
        r.api.set_tokenreview_behaviour(Behaviour::Normal);
        r.api.set_sar_behaviour(Behaviour::Status {
            code,
            retry_after: None,
        });
        let reply = r.get("ok", "/metrics").await;
        assert_eq!(reply.status, 500, "{code}");
        assert_eq!(r.api.sar_count(), calls, "SubjectAccessReview answered {code}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let r = rig().await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    r.api.push_tokenreview_script(vec![Behaviour::Status {
        code: 429,
        retry_after: Some(1),
    }]);
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    let calls = r.api.tokenreviews();
    assert_eq!(calls.len(), 2);
    assert!(
        calls[1].at - calls[0].at >= Duration::from_millis(950),
        "{:?}",
        calls[1].at - calls[0].at
    );
}

#[tokio::test]
async fn garbage_answers_fail_closed() {
    let r = rig().await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    for b in [
        Behaviour::Garbage,
        Behaviour::Html,
        Behaviour::WrongKind,
        Behaviour::EmptyUsername,
        Behaviour::Huge,
    ] {
        r.api.push_tokenreview_script(vec![b.clone()]);
        assert_eq!(r.get("t", "/metrics").await.status, 401, "TokenReview {b:?}");
    }
    assert_eq!(r.get("t", "/metrics").await.status, 200, "nothing was cached");
    r.clock.advance(Duration::from_secs(301));
    for b in [
        Behaviour::Garbage,
        Behaviour::Html,
        Behaviour::WrongKind,
        Behaviour::AllowedAndDenied,
        Behaviour::Huge,
    ] {
        r.api.push_sar_script(vec![b.clone()]);
        let reply = r.get("t", "/metrics").await;
        assert_eq!(reply.status, 500, "SAR {b:?}");
    }
    r.api.set_sar_behaviour(Behaviour::StatusError("no opinion".into()));
    assert_eq!(r.get("t", "/metrics").await.status, 403, "neither allowed nor denied");
    assert_eq!(r.h.upstream.count(), 1);
}

#[tokio::test]
async fn the_overall_deadline_holds_when_the_api_server_hangs() {
    let r = rig_with(|s| s.top_yaml = "apiServer: {requestTimeout: 1s}\n".into()).await;
    r.api.set_tokenreview_behaviour(Behaviour::Hang);
    let started = Instant::now();
    assert_eq!(r.get("t", "/metrics").await.status, 401);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "TokenReview: {took:?}"
    );
    r.api.add_token("ok", user("alice"));
    r.api.set_tokenreview_behaviour(Behaviour::Normal);
    r.api.set_sar_behaviour(Behaviour::Hang);
    let started = Instant::now();
    assert_eq!(r.get("ok", "/metrics").await.status, 500);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "SAR: {:?}",
        started.elapsed()
    );
    assert_eq!(r.h.upstream.count(), 0);
}

#[tokio::test]
async fn cached_identities_and_decisions_survive_an_outage_and_new_ones_fail_closed() {
    let r = rig().await;
    r.api.add_token("warm", user("alice"));
    r.api.allow("alice", "get", "metrics");
    assert_eq!(r.get("warm", "/metrics").await.status, 200);
    r.api.stop().await;
    for _ in 0..5 {
        assert_eq!(
            r.get("warm", "/metrics").await.status,
            200,
            "F1: warm traffic unaffected"
        );
    }
    assert_eq!(
        r.get("cold", "/metrics").await.status,
        401,
        "F2: a new token fails closed"
    );
    assert_eq!(
        r.get("warm", "/stats/summary").await.status,
        500,
        "a new decision fails closed"
    );
    r.api.restart().await;
    r.api.deny("alice", "get", "stats");
    assert_eq!(
        r.get("warm", "/stats/summary").await.status,
        403,
        "recovered at once: errors were not cached"
    );
}

#[tokio::test]
async fn stale_results_are_used_only_when_configured() {
    // Off (the default): past the TTL, an outage fails closed.
    let r = rig().await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    r.api.stop().await;
    r.clock.advance(Duration::from_secs(301));
    assert_eq!(r.get("t", "/metrics").await.status, 401);

    // On: the expired identity and decision stand in, and the use is counted.
    let r = rig_with(|s| s.top_yaml = "apiServer: {staleIfError: 10m}\n".into()).await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    r.api.stop().await;
    r.clock.advance(Duration::from_secs(301));
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    let reviewer = r.h.pipeline.authenticator.token_reviewer().expect("webhook on");
    assert_eq!(
        reviewer.stats().stale_uses.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    r.clock.advance(Duration::from_secs(600));
    assert_eq!(r.get("t", "/metrics").await.status, 401, "past the stale window");
}

#[tokio::test]
async fn calls_in_flight_are_capped() {
    let r = Arc::new(rig_with(|s| s.top_yaml = "apiServer: {maxInFlight: 2}\n".into()).await);
    r.api
        .set_tokenreview_behaviour(Behaviour::Delay(Duration::from_millis(150)));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let token = format!("token-{i}");
        r.api.add_token(&token, user(&format!("user-{i}")));
        r.api.allow(&format!("user-{i}"), "get", "metrics");
        let r = r.clone();
        tasks.push(tokio::spawn(
            async move { r.get(&token, "/metrics").await.status.as_u16() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    assert_eq!(r.api.tokenreview_count(), 8);
    assert!(
        r.api.max_in_flight() <= 2,
        "at most 2 calls at once, saw {}",
        r.api.max_in_flight()
    );
}
