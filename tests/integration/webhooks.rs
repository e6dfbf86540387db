//! The webhook backends against a stand-in API server over HTTPS (kubernetes/apiserver
//! plugin/pkg/authenticator/token/webhook and plugin/pkg/authorizer/webhook, with their
//! tests TestV1WebhookCacheAndRetry and TestV1WebhookCache as the model): review bodies, caches under a manual clock,
//! coalescing, retries, the deadline, outages, and stale mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubelet_gate::app::BuildOptions;
use kubelet_gate::clock::Clock;
use kubelet_gate::k8s::Backoff;

use crate::common::apiserver::{ApiServer, Behaviour, ReviewUser};
use crate::common::{Harness, Setup};

/// Fast retries so that retry counts are quick to observe; the kubelet's own backoff is
/// pinned by a unit test in `k8s.rs`.
const FAST: Backoff = Backoff {
    initial: Duration::from_millis(5),
    factor: 1.5,
    jitter: 0.2,
    steps: 5,
};

struct Rig {
    api: ApiServer,
    h: Harness,
    clock: Clock,
}

fn user(name: &str) -> ReviewUser {
    ReviewUser {
        username: name.into(),
        uid: format!("uid-{name}"),
        groups: vec!["team".into()],
        extra: Default::default(),
    }
}

/// A gateway with both webhooks on, talking to a fresh stand-in API server. `tweak` adjusts
/// the setup (an `apiServer:` block, audiences, RBAC mode, ...).
async fn rig_with(tweak: impl FnOnce(&mut Setup)) -> Rig {
    let api = ApiServer::start().await;
    let clock = Clock::manual();
    let mut setup = Setup {
        token_webhook: true,
        mode: "Webhook",
        options: BuildOptions {
            clock: clock.clone(),
            backoff: FAST,
            ..BuildOptions::default()
        },
        ..Setup::default()
    };
    tweak(&mut setup);
    let h = Harness::start_with_api(setup, &api).await;
    Rig { api, h, clock }
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

impl Rig {
    async fn get(&self, token: &str, path: &str) -> crate::common::client::Reply {
        let auth = format!("Bearer {token}");
        self.h
            .client()
            .get(self.h.addr, path, &[("authorization", &auth)])
            .await
    }
}

#[tokio::test]
async fn review_bodies_carry_every_field() {
    let r = rig().await;
    r.api.add_token(
        "sa-token",
        ReviewUser {
            username: "system:serviceaccount:monitoring:prom".into(),
            uid: "1234".into(),
            groups: vec!["system:serviceaccounts".into()],
            extra: [(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec!["prom-0".to_string()],
            )]
            .into(),
        },
    );
    r.api.allow("system:serviceaccount:monitoring:prom", "get", "metrics");
    let reply = r.get("sa-token", "/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let tr = r.api.tokenreviews();
    assert_eq!(tr.len(), 1);
    assert_eq!(
        tr[0].body,
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": {"token": "sa-token"}})
    );
    assert_eq!(tr[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        tr[0].authorization.as_deref(),
        Some("Bearer gateway-token"),
        "the gateway's own credential"
    );

    let sar = r.api.sars();
    assert_eq!(sar.len(), 1);
    assert_eq!(
        sar[0].body,
        serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "metadata": {},
            "spec": {
                "user": "system:serviceaccount:monitoring:prom",
                "uid": "1234",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["prom-0"]},
                "resourceAttributes": {"verb": "get", "version": "v1", "resource": "nodes", "subresource": "metrics", "name": "node-a"}
            }
        })
    );
    let seen = &r.h.upstream.seen()[0];
    assert!(
        seen.headers.iter().all(|(k, _)| k != "authorization"),
        "the token never reaches the upstream"
    );
}

#[tokio::test]
async fn audiences_are_sent_and_must_intersect() {
    let r = rig_with(|s| s.audiences = vec!["kubelet-gate"]).await;
    r.api.add_token("t", user("alice"));
    r.api.allow("alice", "get", "metrics");
    assert_eq!(r.get("t", "/metrics").await.status, 200);
    assert_eq!(
        r.api.tokenreviews()[0].body["spec"]["audiences"],
        serde_json::json!(["kubelet-gate"])
    );
    r.api
        .add_token_with_audiences("other-aud", user("bob"), &["something-else"]);
    assert_eq!(
        r.get("other-aud", "/metrics").await.status,
        401,
        "audiences that do not intersect"
    );
}

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
    let reviewer = r.h.gateway.authenticator.token_reviewer().expect("webhook on");
    assert_eq!(
        reviewer.stats().stale_uses.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    r.clock.advance(Duration::from_secs(600));
    assert_eq!(r.get("t", "/metrics").await.status, 401, "past the stale window");
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

#[tokio::test]
async fn token_file_is_tried_before_the_webhook_and_x509_before_both() {
    let r = rig_with(|s| {
        s.tokens = vec![crate::common::TokenUser {
            token: "static",
            user: "from-file",
            uid: "1",
            groups: &[],
        }]
    })
    .await;
    r.api.allow("from-file", "get", "metrics");
    assert_eq!(r.get("static", "/metrics").await.status, 200);
    assert_eq!(r.api.tokenreview_count(), 0, "the file knew it");
    let leaf = r.h.client_ca.client(crate::common::pki::ClientSpec::new("cert-user"));
    r.api.allow("cert-user", "get", "metrics");
    let reply =
        r.h.client_with(&leaf)
            .get(r.h.addr, "/metrics", &[("authorization", "Bearer unknown")])
            .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        r.api.tokenreview_count(),
        0,
        "the certificate wins, the token is never reviewed"
    );
}

#[tokio::test]
async fn a_client_certificate_kubeconfig_works_too() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let setup = Setup {
        kubeconfig: Some(api.write_kubeconfig_with_cert(dir.path())),
        token_webhook: true,
        mode: "Webhook",
        options: BuildOptions {
            clock: Clock::manual(),
            backoff: FAST,
            ..BuildOptions::default()
        },
        ..Setup::default()
    };
    let h = Harness::start(setup).await;
    api.add_token("t", user("alice"));
    api.allow("alice", "get", "metrics");
    assert_eq!(
        h.client()
            .get(h.addr, "/metrics", &[("authorization", "Bearer t")])
            .await
            .status,
        200
    );
    assert_eq!(
        api.tokenreviews()[0].authorization,
        None,
        "authenticated by certificate, no bearer"
    );
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

#[tokio::test]
async fn no_token_appears_in_any_log_line() {
    use base64::Engine;
    use std::process::{Command, Stdio};

    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = api.write_kubeconfig(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    std::fs::write(dir.path().join("tokens.csv"), "static-secret-token,static,1\n").expect("tokens");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: node-a\naddress: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nkubeconfig: {}\nauthentication:\n  tokenFile: tokens.csv\n  webhook: {{enabled: true}}\nauthorization:\n  mode: Webhook\nupstream:\n  readOnly: http://127.0.0.1:9\n",
            kubeconfig.display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
        .args(["serve", "--config"])
        .arg(dir.path().join("config.yaml"))
        .env("KUBELET_GATE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.add_token("webhook-secret-token", user("alice"));
    api.allow("alice", "get", "metrics");
    let client = crate::common::client::TlsClient::insecure();
    let secrets = [
        "webhook-secret-token",
        "rejected-secret-token",
        "erroring-secret-token",
        "static-secret-token",
        "ws-secret-token",
    ];
    for token in &secrets[..2] {
        let _ = client
            .get(addr, "/metrics", &[("authorization", &format!("Bearer {token}"))])
            .await;
    }
    api.push_tokenreview_script(vec![
        Behaviour::Status {
            code: 500,
            retry_after: None
        };
        5
    ]);
    let _ = client
        .get(addr, "/metrics", &[("authorization", "Bearer erroring-secret-token")])
        .await;
    let _ = client
        .get(addr, "/metrics", &[("authorization", "Bearer static-secret-token")])
        .await;
    let ws = format!(
        "base64url.bearer.authorization.k8s.io.{}, v5.channel.k8s.io",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("ws-secret-token")
    );
    let _ = client
        .with_alpn(&[b"http/1.1"])
        .get(
            addr,
            "/pods",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", &ws),
            ],
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("gateway.log")).expect("log");
    assert!(text.contains("kubelet-gate listening"), "the log was captured: {text}");
    assert!(api.tokenreview_count() >= 7, "the webhook was exercised");
    for token in secrets {
        assert!(!text.contains(token), "{token} appears in the log");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        assert!(!text.contains(&b64), "{token} (base64) appears in the log");
    }
}
