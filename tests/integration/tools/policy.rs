//! `explain` and `policy-test` agree with the running gateway, in RBAC and Webhook mode, and the
//! shipped policy cases pass against the quick start.

use super::*;

const QUICKSTART_RBAC: &str = include_str!("../../../config/rbac/quickstart.yaml");

fn token_users() -> Vec<TokenUser> {
    vec![
        TokenUser {
            token: "admin-token",
            user: "admin",
            uid: "u1",
            groups: &["kubelet-admins"],
        },
        TokenUser {
            token: "metrics-token",
            user: "prometheus",
            uid: "u2",
            groups: &["monitoring"],
        },
        TokenUser {
            token: "proxy-token",
            user: "legacy-monitor",
            uid: "u3",
            groups: &[],
        },
        TokenUser {
            token: "masters-token",
            user: APISERVER_USER,
            uid: "u4",
            groups: &["system:masters"],
        },
        TokenUser {
            token: "nobody-token",
            user: "nobody",
            uid: "u5",
            groups: &["team"],
        },
    ]
}

/// (token or "" for none, method, target)
const TABLE: &[(&str, &str, &str)] = &[
    ("admin-token", "GET", "/healthz"),
    ("admin-token", "GET", "/pods"),
    ("admin-token", "POST", "/pods"),
    ("admin-token", "GET", "/pods/extra"),
    ("admin-token", "POST", "/exec/default/web/app?command=id"),
    ("admin-token", "GET", "/containerLogs/default/web/app"),
    ("admin-token", "GET", "/stats"),
    ("admin-token", "GET", "/stats/summary"),
    ("admin-token", "GET", "/configz"),
    ("admin-token", "HEAD", "/metrics"),
    ("admin-token", "GET", "/foo"),
    ("admin-token", "GET", "/metrics/%2e%2e/exec/default/web/app"),
    ("admin-token", "GET", "//exec/default/web/app"),
    ("metrics-token", "GET", "/metrics/cadvisor"),
    ("metrics-token", "GET", "/stats/summary"),
    ("metrics-token", "GET", "/pods"),
    ("metrics-token", "GET", "/healthz"),
    ("metrics-token", "POST", "/exec/default/web/app"),
    ("proxy-token", "GET", "/pods"),
    ("proxy-token", "GET", "/exec/default/web/app?command=sh"),
    ("proxy-token", "POST", "/attach/default/web/app"),
    ("proxy-token", "GET", "/logs/"),
    ("masters-token", "POST", "/run/default/web/app"),
    ("masters-token", "GET", "/debug/pprof/heap"),
    ("nobody-token", "GET", "/healthz"),
    ("nobody-token", "DELETE", "/metrics"),
    ("", "GET", "/healthz"),
    ("", "GET", "/runningpods/"),
];

fn identity_of(token: &str) -> Identity {
    if token.is_empty() {
        return Identity::Anonymous;
    }
    let u = token_users().into_iter().find(|u| u.token == token).expect("token");
    Identity::User {
        name: u.user.into(),
        groups: u.groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// What the running gateway did with a request: its status, and whether it was forwarded.
async fn through_gateway(h: &Harness, token: &str, method: &str, target: &str) -> (u16, String, bool) {
    let before = h.upstream.count();
    let bearer = format!("Bearer {token}");
    let headers: Vec<(&str, &str)> = if token.is_empty() {
        Vec::new()
    } else {
        vec![("authorization", bearer.as_str())]
    };
    let reply = h.client().request(h.addr, method, target, &headers).await;
    (reply.status.as_u16(), reply.text(), h.upstream.count() > before)
}

fn yaml_case(name: &str, token: &str, method: &str, target: &str, expect: &str) -> String {
    let who = match identity_of(token) {
        Identity::Anonymous => "  anonymous: true\n".to_owned(),
        Identity::User { name, groups } => format!("  user: {name}\n  groups: [{}]\n", groups.join(", ")),
    };
    format!("- name: \"{name}\"\n{who}  method: {method}\n  path: \"{target}\"\n  expect: {expect}\n")
}

#[tokio::test]
async fn explain_and_policy_test_agree_with_the_running_gateway() {
    let h = Harness::start(Setup {
        tokens: token_users(),
        rbac: vec![QUICKSTART_RBAC.to_owned()],
        ..Setup::default()
    })
    .await;
    let explainer = Explainer::load(&h.config).await.expect("explainer");
    let mut cases = String::from("cases:\n");
    for (i, (token, method, target)) in TABLE.iter().enumerate() {
        let (status, body, forwarded) = through_gateway(&h, token, method, target).await;
        let x = explainer
            .explain(&Request {
                method: method.parse().expect("method"),
                target: (*target).into(),
                identity: identity_of(token),
            })
            .await;
        let row = format!("{method} {target} with {token:?}");
        assert_eq!(x.forwarded(), forwarded, "{row}: forwarded? gateway {status} {body:?}");
        // Logs are served by the gateway itself: explain stops at "allowed", the files decide
        // the status (here 404: no such pod on disk).
        let served_natively = !forwarded && x.status.is_none();
        if served_natively {
            assert_eq!(x.decision, Decision::Allow, "{row}");
            assert!(x.why.contains("served from logs."), "{row}: {}", x.why);
            assert!(status == 200 || status == 404, "{row}: {status}");
            cases.push_str(&yaml_case(&format!("row {i}"), token, method, target, "allow"));
        } else if forwarded {
            assert_eq!(x.decision, Decision::Allow, "{row}");
            cases.push_str(&yaml_case(&format!("row {i}"), token, method, target, "allow"));
        } else {
            assert_eq!(x.status, Some(status), "{row}: {}", x.why);
            if *method != "HEAD" {
                assert_eq!(x.body.as_deref(), Some(body.as_str()), "{row}");
            }
            cases.push_str(&yaml_case(
                &format!("row {i}"),
                token,
                method,
                target,
                &status.to_string(),
            ));
            // allow/deny say the same in policy-test's terms.
            let verdict = match status {
                401 | 403 => "deny",
                _ if x.decision == Decision::Allow => "allow",
                _ => "",
            };
            if !verdict.is_empty() {
                cases.push_str(&yaml_case(
                    &format!("row {i} ({verdict})"),
                    token,
                    method,
                    target,
                    verdict,
                ));
            }
        }
    }

    // The same table through the command: everything the gateway did is expected, so exit 0.
    let config = h.path("config.yaml").display().to_string();
    let file = h.path("cases.yaml");
    std::fs::write(&file, &cases).expect("cases");
    let (code, out, err) = cli(args(&["policy-test", "--config", &config, &file.display().to_string()])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");

    // One wrong expectation: exit 1, and the report says which and why.
    let wrong = cases.replacen(
        "path: \"/metrics/cadvisor\"\n  expect: allow",
        "path: \"/metrics/cadvisor\"\n  expect: deny",
        1,
    );
    assert_ne!(wrong, cases);
    std::fs::write(&file, &wrong).expect("cases");
    let (code, out, _) = cli(args(&["policy-test", "--config", &config, &file.display().to_string()])).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL row 13") && out.contains("got allow: forwarded"),
        "{out}"
    );
    assert!(out.contains("get nodes/metrics allow"), "{out}");

    // explain --output json: status and each review's verb, subresource, allowed.
    let (code, out, err) = cli(args(&[
        "explain",
        "--config",
        &config,
        "--user",
        "prometheus",
        "--group",
        "monitoring",
        "/pods",
        "--output",
        "json",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["status"], 403);
    let reviews: Vec<(String, String, bool)> = json["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .map(|r| {
            (
                r["verb"].as_str().unwrap_or("").to_owned(),
                r["subresource"].as_str().unwrap_or("").to_owned(),
                r["allowed"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(
        reviews,
        [
            ("get".into(), "pods".into(), false),
            ("get".into(), "proxy".into(), false)
        ]
    );
    assert_eq!(
        json["user"]["groups"],
        serde_json::json!(["monitoring", "system:authenticated"])
    );

    // And for people: the forwarded case says so; usage errors exit 2.
    let (code, out, _) = cli(args(&[
        "explain",
        "--config",
        &config,
        "--user",
        "admin",
        "--group",
        "kubelet-admins",
        "https://10.0.0.5:10250/pods",
    ]))
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("forwarded to") && out.contains("ClusterRole/system:kubelet-api-admin"),
        "{out}"
    );
    let (code, _, _) = cli(args(&["explain", "--config", &config, "/pods"])).await;
    assert_eq!(code, 2);
    let (code, _, err) = cli(args(&[
        "explain", "--config", &config, "--user", "a", "--method", "GE T", "/pods",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    std::fs::write(
        &file,
        "cases:\n- name: x\n  user: a\n  path: /pods\n  expect: perhaps\n",
    )
    .expect("cases");
    let (code, _, err) = cli(args(&["policy-test", "--config", &config, &file.display().to_string()])).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("perhaps"), "{err}");
}

#[tokio::test]
async fn explain_agrees_with_the_gateway_in_webhook_mode() {
    let api = ApiServerStandIn::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = api.write_kubeconfig(dir.path());
    api.allow("alice", "get", "pods");
    api.allow("system:anonymous", "get", "healthz");
    api.deny("mallory", "*", "*");
    let h = Harness::start(Setup {
        mode: "Webhook",
        anonymous: true,
        kubeconfig: Some(kubeconfig),
        tokens: vec![
            TokenUser {
                token: "alice-token",
                user: "alice",
                uid: "a",
                groups: &[],
            },
            TokenUser {
                token: "mallory-token",
                user: "mallory",
                uid: "m",
                groups: &[],
            },
            TokenUser {
                token: "erin-token",
                user: "erin",
                uid: "e",
                groups: &[],
            },
        ],
        ..Setup::default()
    })
    .await;
    let explainer = Explainer::load(&h.config).await.expect("explainer");
    let who = |token: &str| match token {
        "" => Identity::Anonymous,
        t => Identity::User {
            name: t.trim_end_matches("-token").into(),
            groups: Vec::new(),
        },
    };
    let rows = [
        ("alice-token", "/pods", true),
        ("alice-token", "/healthz", false),
        ("mallory-token", "/pods", false),
        ("", "/healthz", true),
        ("", "/pods", false),
    ];
    for (token, target, forwarded) in rows {
        let (status, body, was_forwarded) = through_gateway(&h, token, "GET", target).await;
        assert_eq!(was_forwarded, forwarded, "{token} {target}: {status} {body}");
        let x = explainer
            .explain(&Request {
                method: http::Method::GET,
                target: target.into(),
                identity: who(token),
            })
            .await;
        assert_eq!(x.forwarded(), forwarded, "{token} {target}");
        if !forwarded {
            assert_eq!(
                (x.status, x.body.as_deref()),
                (Some(status), Some(body.as_str())),
                "{token} {target}"
            );
        }
    }
    let x = explainer
        .explain(&Request {
            method: http::Method::GET,
            target: "/pods".into(),
            identity: who("alice-token"),
        })
        .await;
    assert_eq!(
        x.reviews[0].reason.as_deref(),
        Some("allowed by the stand-in API server")
    );

    // The API server failing: both answer 500 with the kubelet's body.
    api.set_sar_behaviour(Behaviour::Status {
        code: 403,
        retry_after: None,
    });
    let (status, body, _) = through_gateway(&h, "erin-token", "GET", "/metrics").await;
    let x = explainer
        .explain(&Request {
            method: http::Method::GET,
            target: "/metrics".into(),
            identity: who("erin-token"),
        })
        .await;
    assert_eq!(status, 500);
    assert_eq!((x.status, x.body.as_deref()), (Some(500), Some(body.as_str())));
    assert_eq!(x.reviews[0].decision, "error");
}

#[tokio::test]
async fn the_shipped_policy_cases_pass_against_the_quickstart() {
    let (code, out, err) = cli(args(&[
        "policy-test",
        "--config",
        "config/quickstart.yaml",
        "examples/policy-cases.yaml",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");
}
