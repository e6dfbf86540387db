//! One decision path: `explain` and the live gateway answer from the same outcome value. A table
//! of requests, every kind of refusal and every handler, goes through both; the status, the
//! exact body and the decision word (the one the gateway's audit record and metrics carry)
//! must agree, and so must whether the request reached the upstream.

use std::time::{Duration, Instant};

use kubelet_gate::authn::AuthnFailure;
use kubelet_gate::proxy::outcome::Outcome;
use kubelet_gate::tools::explain::{Explainer, Identity, Request};
use serde_json::Value;

use crate::common::apiserver::{ApiServerStandIn, Behaviour};
use crate::common::{Harness, Setup, TokenUser};

const USERS: &[TokenUser] = &[
    TokenUser {
        token: "admin-token",
        user: "admin",
        uid: "a",
        groups: &["kubelet-admins"],
    },
    TokenUser {
        token: "monitor-token",
        user: "monitor",
        uid: "m",
        groups: &["monitoring"],
    },
    TokenUser {
        token: "nobody-token",
        user: "nobody",
        uid: "n",
        groups: &[],
    },
    TokenUser {
        token: "erin-token",
        user: "erin",
        uid: "e",
        groups: &[],
    },
];

/// (token or "" for none, method, target). The comment says what each row stands for.
fn table() -> Vec<(&'static str, &'static str, String)> {
    let long = format!("/pods?x={}", "a".repeat(9000));
    let rows: Vec<(&str, &str, &str)> = vec![
        // Forwarded to the read-only port.
        ("admin-token", "GET", "/healthz"),
        ("admin-token", "GET", "/healthz/ping"),
        ("admin-token", "GET", "/pods"),
        ("admin-token", "GET", "/pods/"),
        ("admin-token", "GET", "/statusz"),
        ("admin-token", "HEAD", "/metrics"),
        ("admin-token", "PROPFIND", "/healthz"),
        ("monitor-token", "GET", "/metrics/cadvisor"),
        ("monitor-token", "POST", "/stats/summary"),
        // The route table after an allow: no route, method not allowed.
        ("admin-token", "GET", "/pods/extra"),
        ("admin-token", "POST", "/pods"),
        ("admin-token", "GET", "/run/ns/p/c"),
        ("admin-token", "GET", "/exec/ns"),
        // The kubelet's private API (no secure upstream): 405 saying so.
        ("admin-token", "POST", "/exec/ns/p/c?command=id"),
        ("admin-token", "GET", "/attach/ns/p/c"),
        ("admin-token", "POST", "/run/ns/p/uid/c"),
        ("admin-token", "GET", "/portForward/ns/p"),
        ("admin-token", "GET", "/configz"),
        ("admin-token", "GET", "/flagz"),
        ("admin-token", "PUT", "/debug/flags/v"),
        ("admin-token", "GET", "/runningpods/"),
        ("admin-token", "POST", "/checkpoint/ns/p/c"),
        ("admin-token", "GET", "/debug/pprof/heap"),
        // Served by the gateway from the log directories.
        ("admin-token", "GET", "/logs/"),
        ("admin-token", "GET", "/containerLogs/ns/p/c"),
        // Before authentication: the path gate and the mux.
        ("admin-token", "GET", "/metrics/../exec/ns/p/c"),
        ("admin-token", "GET", "/metrics%2f..%2fexec/ns/p/c"),
        ("admin-token", "GET", "//exec/ns/p/c"),
        ("admin-token", "GET", "/pods;x"),
        ("admin-token", "GET", "/foo"),
        ("admin-token", "GET", "/healthz/"),
        ("", "GET", "/stats"),
        ("admin-token", "HEAD", "/runningpods?x=1"),
        // Authentication: no credential, anonymous disabled.
        ("", "GET", "/healthz"),
        ("", "POST", "/exec/ns/p/c"),
        // Authorization: denied, each subresource listed; exec is create whatever the method.
        ("monitor-token", "GET", "/pods"),
        ("monitor-token", "GET", "/exec/ns/p/c?command=sh"),
        ("monitor-token", "POST", "/attach/ns/p/c"),
        ("nobody-token", "GET", "/healthz"),
        ("nobody-token", "DELETE", "/metrics"),
        ("nobody-token", "HEAD", "/metrics"),
        ("nobody-token", "GET", "/logs/kubelet.log"),
        ("nobody-token", "POST", "/checkpoint/ns/p/c"),
    ];
    let mut rows: Vec<(&'static str, &'static str, String)> =
        rows.into_iter().map(|(t, m, p)| (t, m, p.to_owned())).collect();
    rows.push(("admin-token", "GET", long));
    rows
}

fn identity(token: &str) -> Identity {
    match USERS.iter().find(|u| u.token == token) {
        None => Identity::Anonymous,
        Some(u) => Identity::User {
            name: u.user.into(),
            groups: u.groups.iter().map(|g| (*g).to_owned()).collect(),
        },
    }
}

/// The audit file's lines, once there are `n`.
async fn audit_lines(h: &Harness, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(h.path("audit.log")).unwrap_or_default();
        if text.lines().count() >= n {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).expect("audit JSON"))
                .collect();
        }
        assert!(Instant::now() < deadline, "{n} audit lines expected: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn explain_and_the_gateway_answer_from_the_same_outcome() {
    let api = ApiServerStandIn::start().await;
    for sub in [
        "proxy",
        "pods",
        "healthz",
        "statusz",
        "configz",
        "log",
        "stats",
        "metrics",
        "checkpoint",
    ] {
        api.allow("admin", "*", sub);
    }
    api.allow("monitor", "get", "metrics");
    api.allow("monitor", "create", "stats");
    let logs = tempfile::tempdir().expect("logs");
    std::fs::create_dir_all(logs.path().join("node")).expect("node logs");
    std::fs::create_dir_all(logs.path().join("pods")).expect("pod logs");
    let h = Harness::start(Setup {
        mode: "Webhook",
        kubeconfig: Some(api.write_kubeconfig(logs.path())),
        tokens: USERS.iter().map(|u| TokenUser { ..*u }).collect(),
        top_yaml: "audit:\n  path: audit.log\n".into(),
        log_dirs: Some((logs.path().join("node"), logs.path().join("pods"))),
        ..Setup::default()
    })
    .await;
    let explainer = Explainer::load(&h.config).await.expect("explainer");

    let mut rows = table();
    // The authorizer failing: the kubelet's 500 from both.
    rows.push(("erin-token", "GET", "/metrics".to_owned()));
    let mut kinds = std::collections::BTreeSet::new();
    for (i, (token, method, target)) in rows.iter().enumerate() {
        if *token == "erin-token" {
            api.set_sar_behaviour(Behaviour::Status {
                code: 403,
                retry_after: None,
            });
        }
        let before = h.upstream.count();
        let bearer = format!("Bearer {token}");
        let headers: Vec<(&str, &str)> = match *token {
            "" => Vec::new(),
            _ => vec![("authorization", bearer.as_str())],
        };
        let reply = h.client().request(h.addr, method, target, &headers).await;
        let forwarded = h.upstream.count() > before;
        let audit = audit_lines(&h, i + 1).await;
        let word = audit[i]["decision"].as_str().expect("decision").to_owned();

        let x = explainer
            .explain(&Request {
                method: method.parse().expect("method"),
                target: target.clone(),
                identity: identity(token),
            })
            .await;
        let row = format!("row {i}: {method} {} as {token:?}", &target[..target.len().min(60)]);
        assert_eq!(x.decision.as_str(), word, "{row}: the decision word");
        assert_eq!(x.forwarded(), forwarded, "{row}: reached the upstream?");
        match x.status {
            Some(status) => {
                assert_eq!(status, reply.status.as_u16(), "{row}: {}", x.why);
                if *method != "HEAD" {
                    assert_eq!(x.body.as_deref(), Some(reply.text().as_str()), "{row}");
                }
                for (name, value) in &x.headers {
                    assert_eq!(reply.header(name).as_deref(), Some(value.as_str()), "{row}: {name}");
                }
            }
            // Forwarded, or served from the node's files: the upstream or the files decide.
            None => assert_eq!(word, "allow", "{row}"),
        }
        kinds.insert((word, format!("{:?}", x.stage), x.status));
        if *token == "erin-token" {
            api.set_sar_behaviour(Behaviour::Normal);
        }
    }
    assert!(rows.len() >= 30, "{} rows", rows.len());
    let words: std::collections::BTreeSet<&str> = kinds.iter().map(|(w, _, _)| w.as_str()).collect();
    assert_eq!(
        words,
        ["allow", "deny", "error", "rejected", "unauthenticated"].into(),
        "every decision word occurs"
    );
    for status in [301, 400, 401, 403, 404, 405, 414, 500] {
        assert!(kinds.iter().any(|k| k.2 == Some(status)), "a row answered {status}");
    }
}

/// The refusals `explain` cannot be asked about (it is given an identity, not a credential):
/// the gateway's answer is still [`Outcome::response`]'s for them.
#[tokio::test]
async fn credential_refusals_are_the_outcome_s_responses() {
    let h = Harness::start(Setup {
        tokens: USERS.iter().map(|u| TokenUser { ..*u }).collect(),
        ..Setup::default()
    })
    .await;
    let body = |o: Outcome| async move {
        let r = o.response().expect("a refusal has a response");
        let status = r.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    };
    let two = h
        .client()
        .get(
            h.addr,
            "/pods",
            &[("authorization", "Bearer admin-token"), ("authorization", "Bearer x")],
        )
        .await;
    let want = body(Outcome::Unauthenticated(AuthnFailure::Ambiguous("two"))).await;
    assert_eq!((two.status.as_u16(), two.text()), want);
    let huge = format!("Bearer {}", "t".repeat(13 * 1024));
    let big = h.client().get(h.addr, "/pods", &[("authorization", &huge)]).await;
    let want = body(Outcome::Unauthenticated(AuthnFailure::TooLarge)).await;
    assert_eq!((big.status.as_u16(), big.text()), want);
    let bad = h
        .client()
        .get(h.addr, "/pods", &[("authorization", "Bearer not-a-token")])
        .await;
    let want = body(Outcome::Unauthenticated(AuthnFailure::Unauthorized(String::new()))).await;
    assert_eq!((bad.status.as_u16(), bad.text()), want);
}
