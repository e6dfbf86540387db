//! What the gateway sends the API server and with which credentials: the review bodies, the
//! audiences, the order of token file, x509 and webhook, a client-certificate kubeconfig, and no
//! token in any log line.

use kubelet_gate::app::BuildOptions;
use kubelet_gate::clock::Clock;

use super::{FAST, rig, rig_with, user};
use crate::common::apiserver::{ApiServerStandIn, Behaviour, ReviewUser};
use crate::common::{Harness, Setup};

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
    let api = ApiServerStandIn::start().await;
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
async fn no_token_appears_in_any_log_line() {
    use base64::Engine;
    use std::process::{Command, Stdio};

    let api = ApiServerStandIn::start().await;
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
            "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: node-a\naddress: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nkubeconfig: {}\nauthentication:\n  tokenFile: tokens.csv\n  webhook: {{enabled: true}}\nauthorization:\n  mode: Webhook\nupstream:\n  readOnly: http://127.0.0.1:9\nops: {{address: \"127.0.0.1:0\"}}\naudit: {{path: audit.log}}\n",
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
    crate::common::until_listening(addr).await;
    api.add_token("webhook-secret-token", user("alice"));
    api.allow("alice", "get", "metrics");
    let client = crate::common::client::TlsClient::insecure();
    let secrets = [
        "webhook-secret-token",
        "rejected-secret-token",
        "erroring-secret-token",
        "static-secret-token",
        "ws-secret-token",
        "query-secret-token",
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
        .clone()
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
    // Tokens in the query string, on an allowed request and on a refused target.
    for target in [
        "/metrics?access_token=query-secret-token",
        "/pods%zz?access_token=query-secret-token&x=1",
    ] {
        let _ = client
            .get(addr, target, &[("authorization", "Bearer webhook-secret-token")])
            .await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).expect("audit");
    assert!(audit.contains("/metrics?access_token=REDACTED"), "{audit}");
    assert!(audit.contains("/pods%zz?access_token=REDACTED&x=1"), "{audit}");
    for token in secrets {
        assert!(!audit.contains(token), "{token} appears in the audit log");
    }
    let text = std::fs::read_to_string(dir.path().join("gateway.log")).expect("log");
    assert!(
        text.contains("access_token=REDACTED"),
        "the refused target is logged, redacted: {text}"
    );
    assert!(text.contains("kubelet-gate listening"), "the log was captured: {text}");
    assert!(api.tokenreview_count() >= 7, "the webhook was exercised");
    for token in secrets {
        assert!(!text.contains(token), "{token} appears in the log");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        assert!(!text.contains(&b64), "{token} (base64) appears in the log");
    }
}
