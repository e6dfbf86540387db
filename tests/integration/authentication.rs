//! The kubelet's authentication outcome table (the FailOnError union of kubernetes/apiserver
//! pkg/authentication/authenticatorfactory/delegating.go), certificate edge cases and bearer
//! parsing. The identity the
//! gateway settled on is read from the 403 body, which names the user.

use crate::common::pki::{ClientSpec, Eku, IntermediateOpts};
use crate::common::{Harness, Setup, TokenUser, grant_group, grant_user};

const ALICE: TokenUser = TokenUser {
    token: "alice-token",
    user: "alice",
    uid: "uid-alice",
    groups: &["g1", "g2"],
};
const BOB: TokenUser = TokenUser {
    token: "bob-token",
    user: "bob",
    uid: "uid-bob",
    groups: &[],
};

fn setup(anonymous: bool) -> Setup {
    Setup {
        anonymous,
        tokens: vec![ALICE, BOB],
        ..Setup::default()
    }
}

fn forbidden_for(user: &str) -> String {
    format!("Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[pods proxy])\n")
}

/// Asserts a 401 with the kubelet's exact body, no review and nothing forwarded.
async fn assert_unauthorized(h: &Harness, reply: crate::common::client::Reply) {
    assert_eq!(reply.status, 401, "body: {}", reply.text());
    assert_eq!(reply.text(), "Unauthorized");
    assert!(reply.headers.get("www-authenticate").is_none());
    assert_eq!(h.reviews(), 0, "no review after a failed authentication");
    assert_eq!(h.upstream.count(), 0, "nothing forwarded");
}

#[tokio::test]
async fn no_credential_without_anonymous_is_401() {
    let h = Harness::start(setup(false)).await;
    let reply = h.client().get(h.addr, "/pods", &[]).await;
    assert_unauthorized(&h, reply).await;
}

#[tokio::test]
async fn no_credential_with_anonymous_is_reviewed_as_system_anonymous() {
    let h = Harness::start(setup(true)).await;
    let reply = h.client().get(h.addr, "/pods", &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.text(), forbidden_for("system:anonymous"));
    assert_eq!(h.reviews(), 2, "pods, then proxy");
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn anonymous_gets_only_the_unauthenticated_group() {
    let mut s = setup(true);
    s.rbac = vec![grant_group("system:unauthenticated", &["nodes/healthz"], &["get"])];
    let h = Harness::start(s).await;
    assert_eq!(h.client().get(h.addr, "/healthz", &[]).await.status, 200);
    // A token user is not in system:unauthenticated.
    let reply = h
        .client()
        .get(h.addr, "/healthz", &[("authorization", "Bearer bob-token")])
        .await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn client_certificate_gives_cn_and_every_o_plus_system_authenticated() {
    let mut s = setup(false);
    s.rbac = vec![
        grant_group("g2", &["nodes/pods"], &["get"]),
        grant_group("system:authenticated", &["nodes/healthz"], &["get"]),
    ];
    let h = Harness::start(s).await;
    let leaf = h.client_ca.client(ClientSpec::new("cert-user").orgs(&["g1", "g2"]));
    let c = h.client_with(&leaf);
    assert_eq!(c.get(h.addr, "/pods", &[]).await.status, 200, "O=g2 is a group");
    assert_eq!(
        c.get(h.addr, "/healthz", &[]).await.status,
        200,
        "system:authenticated is added"
    );
    let reply = c.get(h.addr, "/configz", &[]).await;
    assert_eq!(
        reply.text(),
        "Forbidden (user=cert-user, verb=get, resource=nodes, subresource(s)=[configz proxy])\n"
    );
}

#[tokio::test]
async fn certificate_is_tried_before_the_token_and_the_token_is_stripped() {
    let mut s = setup(false);
    s.rbac = vec![grant_user("cert-user", &["nodes/pods"], &["get"])];
    let h = Harness::start(s).await;
    let leaf = h.client_ca.client(ClientSpec::new("cert-user"));
    let reply = h
        .client_with(&leaf)
        .get(h.addr, "/pods", &[("authorization", "Bearer bob-token")])
        .await;
    assert_eq!(reply.status, 200);
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].headers.iter().all(|(k, _)| k != "authorization"),
        "{:?}",
        seen[0].headers
    );
}

#[tokio::test]
async fn a_failed_certificate_is_401_even_with_anonymous_on() {
    let h = Harness::start(setup(true)).await;
    let cases = [
        ("expired", ClientSpec::new("x").expired()),
        ("not yet valid", ClientSpec::new("x").not_yet_valid()),
        ("serverAuth-only EKU", ClientSpec::new("x").eku(Eku::ServerAuthOnly)),
        ("CA:TRUE leaf", ClientSpec::new("x").ca(true)),
    ];
    for (what, spec) in cases {
        let leaf = h.client_ca.client(spec);
        let reply = h.client_with(&leaf).get(h.addr, "/pods", &[]).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text());
        assert_eq!(reply.text(), "Unauthorized", "{what}");
    }
    let other_ca = crate::common::pki::Ca::new("front-proxy-ca");
    let leaf = other_ca.client(ClientSpec::new("x"));
    assert_eq!(
        h.client_with(&leaf).get(h.addr, "/pods", &[]).await.status,
        401,
        "unknown CA"
    );
    assert_eq!(h.reviews(), 0);
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn a_failed_certificate_falls_through_to_a_valid_token() {
    let h = Harness::start(setup(true)).await;
    let other_ca = crate::common::pki::Ca::new("unknown-ca");
    let leaf = other_ca.client(ClientSpec::new("mallory"));
    let reply = h
        .client_with(&leaf)
        .get(h.addr, "/pods", &[("authorization", "Bearer bob-token")])
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.text(), forbidden_for("bob"));
    let expired = h.client_ca.client(ClientSpec::new("mallory").expired());
    let reply = h
        .client_with(&expired)
        .get(h.addr, "/pods", &[("authorization", "Bearer bob-token")])
        .await;
    assert_eq!(reply.text(), forbidden_for("bob"));
}

#[tokio::test]
async fn extended_key_usage_rules() {
    let mut s = setup(false);
    s.rbac = vec![grant_group("system:authenticated", &["nodes/pods"], &["get"])];
    let h = Harness::start(s).await;
    for (eku, want) in [
        (Eku::None, 200),
        (Eku::ClientAndServer, 200),
        (Eku::ClientAuth, 200),
        (Eku::ServerAuthOnly, 401),
    ] {
        let leaf = h.client_ca.client(ClientSpec::new("eku-user").eku(eku));
        let reply = h.client_with(&leaf).get(h.addr, "/pods", &[]).await;
        assert_eq!(reply.status, want, "{eku:?}");
    }
}

#[tokio::test]
async fn an_empty_common_name_is_no_credential() {
    let h = Harness::start(setup(false)).await;
    let leaf = h.client_ca.client(ClientSpec::new(""));
    assert_eq!(h.client_with(&leaf).get(h.addr, "/pods", &[]).await.status, 401);
    let reply = h
        .client_with(&leaf)
        .get(h.addr, "/pods", &[("authorization", "Bearer bob-token")])
        .await;
    assert_eq!(reply.text(), forbidden_for("bob"), "the next credential is used");
    let h = Harness::start(setup(true)).await;
    let leaf = h.client_ca.client(ClientSpec::new(""));
    let reply = h.client_with(&leaf).get(h.addr, "/pods", &[]).await;
    assert_eq!(
        reply.text(),
        forbidden_for("system:anonymous"),
        "anonymous, as with no certificate"
    );
}

#[tokio::test]
async fn client_supplied_intermediates_are_used_but_never_trusted_as_roots() {
    let mut s = setup(false);
    s.rbac = vec![grant_group("system:authenticated", &["nodes/pods"], &["get"])];
    let h = Harness::start(s).await;
    let good = h.client_ca.intermediate("team-ca", IntermediateOpts::default());
    let leaf = good.client(ClientSpec::new("via-intermediate"));
    assert_eq!(h.client_with(&leaf).get(h.addr, "/pods", &[]).await.status, 200);

    let expired = h.client_ca.intermediate(
        "expired-ca",
        IntermediateOpts {
            expired: true,
            ..IntermediateOpts::default()
        },
    );
    let leaf = expired.client(ClientSpec::new("x"));
    assert_eq!(
        h.client_with(&leaf).get(h.addr, "/pods", &[]).await.status,
        401,
        "expired intermediate"
    );

    let not_ca = h.client_ca.intermediate(
        "not-a-ca",
        IntermediateOpts {
            is_ca: false,
            ..IntermediateOpts::default()
        },
    );
    let leaf = not_ca.client(ClientSpec::new("x"));
    assert_eq!(
        h.client_with(&leaf).get(h.addr, "/pods", &[]).await.status,
        401,
        "CA:FALSE intermediate"
    );

    // A self-made root sent along with the leaf is not a trust anchor.
    let rogue = crate::common::pki::Ca::new("rogue-root");
    let leaf = rogue.client(ClientSpec::new("x")).with_chain(vec![rogue.cert_der()]);
    assert_eq!(
        h.client_with(&leaf).get(h.addr, "/pods", &[]).await.status,
        401,
        "client-sent root"
    );
}

#[tokio::test]
async fn uid_attribute_errors_are_401() {
    let mut s = setup(false);
    s.rbac = vec![grant_group("system:authenticated", &["nodes/pods"], &["get"])];
    let h = Harness::start(s).await;
    let one = h.client_ca.client(ClientSpec::new("u").uids(&["1234"]));
    assert_eq!(h.client_with(&one).get(h.addr, "/pods", &[]).await.status, 200);
    let two = h.client_ca.client(ClientSpec::new("u").uids(&["1", "2"]));
    assert_eq!(
        h.client_with(&two).get(h.addr, "/pods", &[]).await.status,
        401,
        "several UIDs"
    );
    let empty = h.client_ca.client(ClientSpec::new("u").uids(&[""]));
    assert_eq!(
        h.client_with(&empty).get(h.addr, "/pods", &[]).await.status,
        401,
        "empty UID"
    );
}

#[tokio::test]
async fn no_client_ca_means_no_certificate_request() {
    let mut s = setup(false);
    s.client_ca = false;
    let h = Harness::start(s).await;
    let leaf = h.client_ca.client(ClientSpec::new("cert-user"));
    let reply = h.client_with(&leaf).get(h.addr, "/pods", &[]).await;
    assert_eq!(
        reply.status, 401,
        "the certificate is never sent, so there is no credential"
    );
}

#[tokio::test]
async fn bearer_token_parsing() {
    let h = Harness::start(setup(true)).await;
    let c = h.client();
    let as_user = |user: &str| forbidden_for(user);
    // Recognised tokens, as bearertoken.go reads them.
    for header in [
        "Bearer bob-token",
        "bearer bob-token",
        "BEARER bob-token",
        "  Bearer bob-token  ",
        "Bearer bob-token a b c",
    ] {
        let reply = c.get(h.addr, "/pods", &[("authorization", header)]).await;
        assert_eq!(reply.text(), as_user("bob"), "{header:?}");
    }
    // Not a bearer token at all: no credential, so anonymous.
    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer  bob-token",
        "bear bob-token",
        "Bearer: bob-token",
        "Basic Ym9iOnB3",
    ] {
        let reply = c.get(h.addr, "/pods", &[("authorization", header)]).await;
        assert_eq!(reply.text(), as_user("system:anonymous"), "{header:?}");
    }
    // A token that is presented and fails is 401, never anonymous.
    let before = h.reviews();
    let reply = c.get(h.addr, "/pods", &[("authorization", "Bearer wrong")]).await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (401, "Unauthorized"));
    assert_eq!(h.reviews(), before);
}

#[tokio::test]
async fn ambiguous_oversized_and_non_ascii_tokens() {
    let h = Harness::start(setup(true)).await;
    let c = h.client();
    let reply = c
        .send(
            h.addr,
            http::Request::get("/pods")
                .header("authorization", "Bearer bob-token")
                .header("authorization", "Bearer alice-token")
                .body(Default::default())
                .expect("request"),
        )
        .await
        .expect("reply");
    assert_eq!(reply.status, 400, "two Authorization headers");
    let big = format!("Bearer {}", "a".repeat(16 * 1024));
    assert_eq!(c.get(h.addr, "/pods", &[("authorization", &big)]).await.status, 431);
    let raw = b"GET /pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\xc3\xa9\r\nConnection: close\r\n\r\n";
    let bytes = c.raw(h.addr, raw).await;
    let (status, _, body) = crate::common::client::parse_raw_response(&bytes).expect("response");
    assert_eq!((status, body.as_slice()), (401, &b"Unauthorized"[..]));
    assert_eq!(h.reviews(), 0);
    assert_eq!(h.upstream.count(), 0);
}

fn ws_token(token: &str) -> String {
    use base64::Engine;
    format!(
        "base64url.bearer.authorization.k8s.io.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
    )
}

#[tokio::test]
async fn websocket_subprotocol_token() {
    let mut s = setup(false);
    s.rbac = vec![grant_user("alice", &["nodes/pods"], &["get"])];
    let h = Harness::start(s).await;
    let c = h.client().with_alpn(&[b"http/1.1"]);
    let protocols = format!("{}, v5.channel.k8s.io", ws_token("alice-token"));
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", protocols.as_str()),
    ];
    let reply = c.get(h.addr, "/pods", &ws).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = &h.upstream.seen()[0];
    let header = |name: &str| {
        seen.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        header("sec-websocket-protocol"),
        ["v5.channel.k8s.io"],
        "the token is stripped"
    );
    assert!(
        header("upgrade").is_empty(),
        "no upgrade is forwarded to a read-only route"
    );

    let alone = ws_token("alice-token");
    let only_token = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", alone.as_str()),
    ];
    assert_eq!(
        c.get(h.addr, "/pods", &only_token).await.status,
        401,
        "missing additional subprotocol"
    );

    let bad = format!("{}, v5.channel.k8s.io", ws_token("nope"));
    let bad_token = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", bad.as_str()),
    ];
    assert_eq!(c.get(h.addr, "/pods", &bad_token).await.status, 401);
    assert_eq!(h.upstream.count(), 1);
}

#[tokio::test]
async fn webpki_checks_stricter_than_go_are_401() {
    let mut s = setup(false);
    s.rbac = vec![grant_group("system:authenticated", &["nodes/pods"], &["get"])];
    let h = Harness::start(s).await;
    let status = |leaf: crate::common::pki::Leaf| {
        let c = h.client_with(&leaf);
        async move { c.get(h.addr, "/pods", &[]).await.status.as_u16() }
    };
    // a leaf that could sign certificates is not an end entity.
    assert_eq!(
        status(h.client_ca.client(ClientSpec::new("x").key_cert_sign(true))).await,
        401,
        "keyCertSign leaf"
    );
    // an unknown critical extension. rustls's own client will not even send such a
    // certificate, so the authenticator is asked directly.
    let ca =
        kubelet_gate::authn::x509::ClientCa::from_pem(std::path::Path::new("ca"), h.client_ca.cert_pem().as_bytes())
            .expect("CA");
    let critical = h.client_ca.client(ClientSpec::new("x").unknown_critical_ext(true));
    let verdict = ca.authenticate(&critical.chain, rustls_pki_types::UnixTime::now());
    assert!(verdict.is_err(), "unknown critical extension: {verdict:?}");
    let plain = h.client_ca.client(ClientSpec::new("x"));
    assert!(matches!(
        ca.authenticate(&plain.chain, rustls_pki_types::UnixTime::now()),
        Ok(Some(_))
    ));
    // a pathLen of 0 forbids a second intermediate below the first.
    let first = h
        .client_ca
        .intermediate("level-1", IntermediateOpts::default().path_len(0));
    let second = first.intermediate("level-2", IntermediateOpts::default());
    assert_eq!(
        status(second.client(ClientSpec::new("x"))).await,
        401,
        "pathLen violated"
    );
    // The same depth without the constraint is fine.
    let open = h
        .client_ca
        .intermediate("open-1", IntermediateOpts::default())
        .intermediate("open-2", IntermediateOpts::default());
    assert_eq!(
        status(open.client(ClientSpec::new("x"))).await,
        200,
        "two intermediates"
    );
    // a name-constrained intermediate never vouches for a subject outside its subtree.
    // webpki cannot evaluate directoryName constraints and refuses any chain through one:
    // fail closed, even for a subject inside the subtree.
    let team = h
        .client_ca
        .intermediate("team-a-ca", IntermediateOpts::default().permitted_org("team-a"));
    let outside = team.client(ClientSpec::new("x").orgs(&["system:masters"]));
    assert_eq!(status(outside.clone()).await, 401, "outside the constraint");
    let inside = team.client(ClientSpec::new("x").orgs(&["team-a"]));
    let verdict = ca.authenticate(&inside.chain, rustls_pki_types::UnixTime::now());
    assert!(
        verdict.is_err(),
        "a directoryName constraint is not evaluated, so refused: {verdict:?}"
    );
    assert_eq!(status(inside).await, 401, "inside the constraint, refused all the same");
}

#[tokio::test]
async fn a_pathological_chain_is_refused_quickly() {
    let h = Harness::start(setup(false)).await;
    // 50 certificates of client-supplied "intermediates".
    let ca = h.client_ca.intermediate("loop-ca", IntermediateOpts::default());
    let mut extra = Vec::new();
    for _ in 0..49 {
        extra.extend(ca.chain());
    }
    let leaf = crate::common::pki::Ca::new("elsewhere")
        .client(ClientSpec::new("x"))
        .with_chain(extra);
    let started = std::time::Instant::now();
    let reply = h.client_with(&leaf).get(h.addr, "/pods", &[]).await;
    assert_eq!(reply.status, 401);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn anonymous_never_reaches_exec() {
    let h = Harness::start(setup(true)).await;
    let reply = h.client().request(h.addr, "POST", "/exec/ns/p/c?command=id", &[]).await;
    assert_eq!(
        reply.text(),
        "Forbidden (user=system:anonymous, verb=create, resource=nodes, subresource(s)=[proxy])\n"
    );
    assert_eq!(h.upstream.count(), 0);
}
