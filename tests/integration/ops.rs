//! The ops listener and the audit log: `/metrics` counts after a known sequence of requests,
//! `/readyz` follows the upstream and the API server, and one audit line per request with
//! the right fields, no token, and no way to forge a line; audit writes that fail (a full disk,
//! a directory gone) are counted and fail readiness, and a file rotated away or deleted is
//! replaced by a new one at the path; the gateway's own endpoints live on that listener only,
//! never on 10250.

use std::time::{Duration, Instant};

use kubelet_gate::app::BuildOptions;
use kubelet_gate::k8s::Backoff;

use crate::common::apiserver::{ApiServerStandIn, ReviewUser};
use crate::common::pki::ClientSpec;
use crate::common::upstream::Behaviour;
use crate::common::{Harness, Setup, TokenUser, grant_user};

const READER: TokenUser = TokenUser {
    token: "reader-secret-token",
    user: "reader",
    uid: "1",
    groups: &["readers"],
};

fn setup() -> Setup {
    Setup {
        tokens: vec![READER],
        rbac: vec![grant_user("reader", &["nodes/pods", "nodes/stats"], &["get"])],
        ..Setup::default()
    }
}

async fn get(h: &Harness, path: &str, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    h.client().get(h.addr, path, &headers).await.status.as_u16()
}

#[tokio::test]
async fn metrics_count_a_known_sequence_of_requests() {
    let h = Harness::start(setup()).await;
    assert_eq!(get(&h, "/pods", Some(READER.token)).await, 200);
    assert_eq!(get(&h, "/pods", Some(READER.token)).await, 200);
    assert_eq!(get(&h, "/pods", Some("not-a-token")).await, 401);
    let nobody = h.client_ca.client(ClientSpec::new("nobody"));
    let reply = h.client_with(&nobody).get(h.addr, "/stats/summary", &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(get(&h, "/no/such/root", None).await, 404);

    let (status, body) = h.ops_get("/metrics").await;
    assert_eq!(status, 200);
    let m = |series: &str| crate::common::sample(&body, series);
    assert_eq!(
        m(r#"kubelet_gate_requests_total{code="200",subresource="pods",verb="get"}"#),
        2.0,
        "{body}"
    );
    assert_eq!(
        m(r#"kubelet_gate_requests_total{code="401",subresource="",verb=""}"#),
        1.0
    );
    assert_eq!(
        m(r#"kubelet_gate_requests_total{code="403",subresource="",verb="get"}"#),
        1.0
    );
    assert_eq!(
        m(r#"kubelet_gate_requests_total{code="404",subresource="",verb=""}"#),
        1.0
    );
    assert_eq!(
        m(r#"kubelet_gate_authentications_total{method="token",result="success"}"#),
        2.0
    );
    assert_eq!(
        m(r#"kubelet_gate_authentications_total{method="token",result="failure"}"#),
        1.0
    );
    assert_eq!(
        m(r#"kubelet_gate_authentications_total{method="x509",result="success"}"#),
        1.0
    );
    assert_eq!(
        m(r#"kubelet_gate_authorization_decisions_total{decision="allow"}"#),
        2.0
    );
    assert_eq!(m(r#"kubelet_gate_authorization_decisions_total{decision="deny"}"#), 1.0);
    assert_eq!(m("kubelet_gate_upstream_request_duration_seconds_count"), 2.0);
    assert_eq!(m("kubelet_gate_upstream_errors_total"), 0.0);
    assert_eq!(m("kubelet_gate_serving_certificate_loaded"), 1.0);
    assert!(m("kubelet_gate_serving_certificate_expiry_timestamp_seconds") > 1.7e9);
    assert!(body.contains(r#"kubelet_gate_certificate_reloads_total{result="failure"} 0"#));
    assert_eq!(h.upstream.count(), 2);

    // In flight returns to zero once the bodies are done.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.metric("kubelet_gate_requests_in_flight").await != 0.0 {
        assert!(Instant::now() < deadline, "requests_in_flight never returned to 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unreachable_upstream_counts_as_an_upstream_error() {
    let h = Harness::start(Setup {
        upstream: Some("http://127.0.0.1:9".into()),
        ..setup()
    })
    .await;
    assert_eq!(get(&h, "/pods", Some(READER.token)).await, 502);
    assert_eq!(h.metric("kubelet_gate_upstream_errors_total").await, 1.0);
    assert_eq!(
        h.metric(r#"kubelet_gate_requests_total{code="502",subresource="pods",verb="get"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn gateway_metrics_are_not_served_on_the_gateway_port() {
    let h = Harness::start(setup()).await;
    // /metrics on 10250 is the kubelet's (forwarded, authorized); the gateway's own are only
    // on the ops listener.
    assert_eq!(get(&h, "/metrics", None).await, 401);
    let (status, body) = h.ops_get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(h.ops_get("/debug/pprof/").await.0, 404);
}

async fn wait_ready(h: &Harness, want: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = h.ops_get("/readyz").await;
        if (status == 200) == want {
            return body;
        }
        assert!(Instant::now() < deadline, "readyz stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_follows_the_upstream() {
    let h = Harness::start(setup()).await;
    let body = wait_ready(&h, true).await;
    assert!(body.contains("[+]serving-certificate ok"), "{body}");
    assert!(body.contains("[+]upstream ok"), "{body}");
    assert!(!body.contains("apiserver"), "no webhook, no API server check: {body}");

    h.upstream.set_behaviour(Behaviour::Hang);
    let (status, body) = h.ops_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("[-]upstream failed"), "{body}");
    assert!(body.contains("[+]serving-certificate ok"), "{body}");

    h.upstream.set_behaviour(Behaviour::Kubelet);
    wait_ready(&h, true).await;
}

#[tokio::test]
async fn readyz_follows_the_api_server_in_webhook_mode() {
    let api = ApiServerStandIn::start().await;
    let setup = Setup {
        token_webhook: true,
        mode: "Webhook",
        options: BuildOptions {
            backoff: Backoff {
                initial: Duration::from_millis(10),
                factor: 1.5,
                jitter: 0.0,
                steps: 2,
            },
            ..BuildOptions::default()
        },
        ..Setup::default()
    };
    let h = Harness::start_with_api(setup, &api).await;
    let body = wait_ready(&h, true).await;
    assert!(body.contains("[+]apiserver ok"), "{body}");

    api.stop().await;
    let body = wait_ready(&h, false).await;
    assert!(body.contains("[-]apiserver failed"), "{body}");
    assert!(body.contains("[+]upstream ok"), "{body}");

    api.restart().await;
    wait_ready(&h, true).await;

    // Calls to the API server are counted.
    api.add_token("webhook-token", ReviewUser::new("alice"));
    assert_eq!(get(&h, "/pods", Some("webhook-token")).await, 403);
    assert!(h.metric("kubelet_gate_apiserver_request_duration_seconds_count").await >= 2.0);
    assert!(
        h.metric(r#"kubelet_gate_cache_misses_total{cache="tokenreview"}"#)
            .await
            >= 1.0
    );
}

fn audit_setup() -> Setup {
    Setup {
        top_yaml: "audit:\n  path: audit.log\n".into(),
        ..setup()
    }
}

/// The audit file's lines, once there are at least `n`.
async fn audit_lines(h: &Harness, n: usize) -> Vec<serde_json::Value> {
    lines_in(&h.path("audit.log"), n).await
}

/// The lines of the audit file at `path`, once there are at least `n`.
async fn lines_in(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            assert!(
                !text.contains(READER.token) && !text.contains("not-a-token"),
                "a token in the audit log: {text}"
            );
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
                .collect();
        }
        assert!(Instant::now() < deadline, "audit log has {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_audit_line_per_request_with_the_fields_and_no_token() {
    let h = Harness::start(audit_setup()).await;
    assert_eq!(get(&h, "/pods?x=1", Some(READER.token)).await, 200);
    let lines = audit_lines(&h, 1).await;
    assert_eq!(get(&h, "/pods", Some("not-a-token")).await, 401);
    let lines2 = audit_lines(&h, 2).await;
    assert_eq!(get(&h, "/not/here", None).await, 404);
    let lines3 = audit_lines(&h, 3).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines2.len(), 2);
    assert_eq!(lines3.len(), 3);

    let ok = &lines3[0];
    assert_eq!(ok["stage"], "complete");
    assert_eq!(ok["credential"], "token");
    assert_eq!(ok["user"], "reader");
    assert_eq!(ok["groups"], serde_json::json!(["readers", "system:authenticated"]));
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["verb"], "get");
    assert_eq!(ok["subresources"], serde_json::json!(["pods", "proxy"]));
    assert_eq!(ok["allowedBy"], "pods");
    assert_eq!(ok["path"], "/pods?x=1");
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["upstreamStatus"], 200);
    assert!(ok["bytes"].as_u64().expect("bytes") > 0);
    assert!(ok["durationMs"].as_f64().is_some());
    assert!(ok["peer"].as_str().expect("peer").starts_with("127.0.0.1:"));
    assert!(ok["time"].as_str().expect("time").ends_with('Z'));
    let hmac = ok["tokenHmac"].as_str().expect("token hash");
    assert_eq!(hmac.len(), 64);

    let denied = &lines3[1];
    assert_eq!(denied["decision"], "unauthenticated");
    assert_eq!(denied["credential"], "token");
    assert_eq!(denied["status"], 401);
    assert_eq!(denied["user"], serde_json::Value::Null);
    assert_ne!(denied["tokenHmac"], ok["tokenHmac"]);
    assert!(
        denied["reason"]
            .as_str()
            .expect("reason")
            .contains("invalid bearer token")
    );

    let missing = &lines3[2];
    assert_eq!(missing["decision"], "rejected");
    assert_eq!(missing["credential"], "none");
    assert_eq!(missing["status"], 404);
}

#[tokio::test]
async fn a_common_name_cannot_forge_an_audit_record() {
    let h = Harness::start(audit_setup()).await;
    let evil = "mallory\n{\"user\":\"admin\",\"decision\":\"allow\"}\"\\";
    let leaf = h.client_ca.client(ClientSpec::new(evil));
    let reply = h.client_with(&leaf).get(h.addr, "/pods", &[]).await;
    assert_eq!(reply.status, 403);
    // A quote in the path is percent-encoded by the client or refused by the path gate; either
    // way it is one line.
    assert_eq!(
        get(&h, "/pods?q=%22%0A%7B%22user%22:%22admin%22%7D", Some(READER.token)).await,
        200
    );
    let lines = audit_lines(&h, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["user"], evil);
    assert_eq!(lines[0]["credential"], "x509");
    assert_eq!(lines[0]["decision"], "deny");
    assert_eq!(lines[0]["reason"], "no get on nodes/pods, nodes/proxy allowed");
    assert_eq!(lines[0]["certSha256"].as_str().map(str::len), Some(64));
    assert_eq!(lines[1]["user"], "reader");
}

#[tokio::test]
async fn a_stream_gets_start_and_end_records() {
    let h = Harness::start(audit_setup()).await;
    assert_eq!(get(&h, "/pods?follow=true", Some(READER.token)).await, 200);
    let lines = audit_lines(&h, 2).await;
    assert_eq!(lines[0]["stage"], "start");
    assert_eq!(lines[1]["stage"], "end");
    assert_eq!(lines[0]["path"], lines[1]["path"]);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_the_request_in_flight_finish() {
    let upstream = crate::common::upstream::ReadOnlyStandIn::start().await;
    upstream.set_behaviour(Behaviour::SlowHeaders(Duration::from_millis(800)));
    let mut h = Harness::start_with(setup(), upstream).await;
    let (client, addr) = (h.client(), h.addr);
    let in_flight = tokio::spawn(async move {
        let auth = format!("Bearer {}", READER.token);
        client.get(addr, "/pods", &[("authorization", &auth)]).await
    });
    // The request reaches the upstream, then shutdown begins.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.upstream.count() == 0 {
        assert!(Instant::now() < deadline, "request never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        h.client().handshake(h.addr).await.is_err(),
        "no new connection after shutdown starts"
    );
    let reply = in_flight.await.expect("join");
    assert_eq!(reply.status, 200, "the request in flight finished");
    assert_eq!(reply.text(), crate::common::upstream::PODS_JSON);
}

#[tokio::test]
async fn a_request_whose_client_goes_away_still_gets_its_audit_line() {
    let upstream = crate::common::upstream::ReadOnlyStandIn::start().await;
    upstream.set_behaviour(Behaviour::Hang);
    let h = Harness::start_with(audit_setup(), upstream).await;
    let auth = format!("Bearer {}", READER.token);
    let client = h.client().with_timeout(Duration::from_millis(300));
    let _ = client
        .send(
            h.addr,
            crate::common::client::build_request("GET", "/pods", &[("authorization", &auth)], Default::default()),
        )
        .await;
    let lines = audit_lines(&h, 1).await;
    assert_eq!(lines[0]["stage"], "aborted", "{lines:?}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["user"], "reader");
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.metric("kubelet_gate_requests_in_flight").await != 0.0 {
        assert!(Instant::now() < deadline, "requests_in_flight never returned to 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `/metrics` shows `want` for `series`.
async fn wait_metric(h: &Harness, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = h.metric(series).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{series} stayed {got}, want {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const DROPPED: &str = "kubelet_gate_audit_records_dropped_total";

#[tokio::test]
async fn audit_records_a_full_disk_refuses_are_counted_and_fail_readiness() {
    // /dev/full answers every write with ENOSPC, as a full disk does.
    let h = Harness::start(Setup {
        top_yaml: "audit:\n  path: /dev/full\n".into(),
        ..setup()
    })
    .await;
    assert!(wait_ready(&h, true).await.contains("[+]audit ok"));
    for _ in 0..3 {
        assert_eq!(
            get(&h, "/pods", Some(READER.token)).await,
            200,
            "requests are still served"
        );
    }
    wait_metric(&h, DROPPED, 3.0).await;
    let body = wait_ready(&h, false).await;
    assert!(
        body.contains("[-]audit failed: cannot write the audit log to /dev/full: No space left on device"),
        "{body}"
    );
    assert!(body.contains("[+]upstream ok"), "{body}");
}

#[tokio::test]
async fn an_audit_file_rotated_away_or_deleted_is_replaced_by_a_new_one_at_the_path() {
    let h = Harness::start(audit_setup()).await;
    let (path, rotated) = (h.path("audit.log"), h.path("audit.log.1"));
    assert_eq!(get(&h, "/pods?n=1", Some(READER.token)).await, 200);
    assert_eq!(audit_lines(&h, 1).await[0]["path"], "/pods?n=1");
    // logrotate without copytruncate: rename, then the writer should create the path anew.
    std::fs::rename(&path, &rotated).expect("rotate");
    assert_eq!(get(&h, "/pods?n=2", Some(READER.token)).await, 200);
    let lines = audit_lines(&h, 1).await;
    assert_eq!((lines.len(), &lines[0]["path"]), (1, &serde_json::json!("/pods?n=2")));
    std::fs::remove_file(&path).expect("delete");
    assert_eq!(get(&h, "/pods?n=3", Some(READER.token)).await, 200);
    let lines = audit_lines(&h, 1).await;
    assert_eq!((lines.len(), &lines[0]["path"]), (1, &serde_json::json!("/pods?n=3")));
    let old = lines_in(&rotated, 1).await;
    assert_eq!((old.len(), &old[0]["path"]), (1, &serde_json::json!("/pods?n=1")));
    assert_eq!(h.metric(DROPPED).await, 0.0);
    assert!(wait_ready(&h, true).await.contains("[+]audit ok"));
}

#[tokio::test]
async fn an_audit_file_that_cannot_be_opened_is_tried_again_and_readiness_recovers() {
    let logs = tempfile::tempdir().expect("dir");
    let dir = logs.path().join("audit");
    std::fs::create_dir(&dir).expect("mkdir");
    let path = dir.join("audit.log");
    let h = Harness::start(Setup {
        top_yaml: format!("audit:\n  path: {}\n", path.display()),
        ..setup()
    })
    .await;
    assert_eq!(get(&h, "/pods?n=1", Some(READER.token)).await, 200);
    lines_in(&path, 1).await;
    // Its directory goes: the record has nowhere to go.
    std::fs::remove_dir_all(&dir).expect("remove the directory");
    assert_eq!(get(&h, "/pods?n=2", Some(READER.token)).await, 200);
    wait_metric(&h, DROPPED, 1.0).await;
    let body = wait_ready(&h, false).await;
    assert!(
        body.contains("[-]audit failed: cannot write the audit log to"),
        "{body}"
    );
    assert!(body.contains("No such file or directory"), "{body}");
    // Back again: the next record opens the file.
    std::fs::create_dir(&dir).expect("mkdir again");
    assert_eq!(get(&h, "/pods?n=3", Some(READER.token)).await, 200);
    let lines = lines_in(&path, 1).await;
    assert_eq!((lines.len(), &lines[0]["path"]), (1, &serde_json::json!("/pods?n=3")));
    assert!(wait_ready(&h, true).await.contains("[+]audit ok"));
    assert_eq!(h.metric(DROPPED).await, 1.0);
}
