//! `authorization.rbac.policyFiles` and `authentication.tokenFile` reload on change, as the
//! certificates do: the next request is judged by the new files, open connections stay, and a
//! broken edit keeps the last good version (counted once, `/readyz` still ready).

use std::time::{Duration, Instant};

use kubelet_gate::app::BuildOptions;

use super::WITHIN;
use crate::common::pki::ClientSpec;
use crate::common::write_atomically;
use crate::common::{Harness, Setup, TokenUser, grant_user};

const SUCCESS: &str = "kubelet_gate_policy_reloads_total{result=\"success\"}";
const FAILURE: &str = "kubelet_gate_policy_reloads_total{result=\"failure\"}";

const DAVE: TokenUser = TokenUser {
    token: "dave-token",
    user: "dave",
    uid: "uid-dave",
    groups: &[],
};

async fn gateway(rbac: Vec<String>, tokens: Vec<TokenUser>) -> Harness {
    Harness::start(Setup {
        rbac,
        tokens,
        options: BuildOptions {
            reload_interval: Duration::from_millis(250),
            ..BuildOptions::default()
        },
        ..Setup::default()
    })
    .await
}

/// Waits until `series` reaches `want`.
async fn until_metric(h: &Harness, series: &str, want: f64) {
    let started = Instant::now();
    while h.metric(series).await < want {
        if started.elapsed() > WITHIN {
            let (_, body) = h.ops_get("/metrics").await;
            let reloads: Vec<&str> = body.lines().filter(|l| l.contains("reloads")).collect();
            panic!("{series} did not reach {want} in time: {reloads:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_grant_added_then_removed_takes_effect_on_the_open_connection() {
    let h = gateway(vec![grant_user("someone-else", &["nodes/proxy"], &["get"])], Vec::new()).await;
    let policy = h.path("rbac-0.yaml");
    let carol = h.client_ca.client(ClientSpec::new("carol"));
    let mut conn = h.client_with(&carol).keep_alive(h.addr).await;
    let denied = conn.get("/pods").await;
    assert_eq!(denied.status, 403);
    assert_eq!(h.upstream.count(), 0);

    // Added: the next request on the same connection is allowed.
    write_atomically(&policy, grant_user("carol", &["nodes/pods"], &["get"]).as_bytes());
    until_metric(&h, SUCCESS, 1.0).await;
    let allowed = conn.get("/pods").await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(h.upstream.count(), 1);

    // Removed: the very next request is denied, with the kubelet's body.
    write_atomically(
        &policy,
        grant_user("someone-else", &["nodes/proxy"], &["get"]).as_bytes(),
    );
    until_metric(&h, SUCCESS, 2.0).await;
    let denied = conn.get("/pods").await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.text(),
        "Forbidden (user=carol, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
    );
    assert_eq!(h.upstream.count(), 1, "nothing more forwarded");
    assert!(!conn.is_closed(), "the connection survived both reloads");
    assert_eq!(h.metric(FAILURE).await, 0.0);
}

#[tokio::test]
async fn a_half_written_policy_keeps_the_last_good_one_and_is_counted_once() {
    let grant = grant_user("carol", &["nodes/pods"], &["get"]);
    let h = gateway(vec![grant.clone()], Vec::new()).await;
    let policy = h.path("rbac-0.yaml");
    let carol = h.client_ca.client(ClientSpec::new("carol"));
    let status = || {
        let c = h.client_with(&carol);
        async move { c.get(h.addr, "/pods", &[]).await.status.as_u16() }
    };
    assert_eq!(status().await, 200);

    // Cut mid-document, as a save that died half-way leaves it: inside a quoted resource.
    let cut = grant.find("nodes/pods").expect("resource") + "nodes/po".len();
    write_atomically(&policy, &grant.as_bytes()[..cut]);
    until_metric(&h, FAILURE, 1.0).await;
    assert_eq!(status().await, 200, "the previous policy is still in force");
    let (ready, body) = h.ops_get("/readyz").await;
    assert_eq!(ready, 200, "{body}");
    // The periodic re-check sees the same broken bytes again and again: refused only once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(h.metric(FAILURE).await, 1.0, "the same broken file is counted once");

    // Finished writing: the policy is the new one (here, no grant for carol at all).
    write_atomically(
        &policy,
        grant_user("someone-else", &["nodes/pods"], &["get"]).as_bytes(),
    );
    until_metric(&h, SUCCESS, 1.0).await;
    assert_eq!(status().await, 403);
}

#[tokio::test]
async fn a_removed_token_is_refused_on_the_next_request_and_a_broken_file_changes_nothing() {
    let h = gateway(vec![grant_user("dave", &["nodes/pods"], &["get"])], vec![DAVE]).await;
    let tokens = h.path("tokens.csv");
    let get = |token: &'static str| {
        let c = h.client();
        async move {
            c.get(h.addr, "/pods", &[("authorization", &format!("Bearer {token}"))])
                .await
        }
    };
    assert_eq!(get("dave-token").await.status, 200);
    assert_eq!(get("erin-token").await.status, 401);

    // Rotated: dave's token goes, erin's arrives.
    write_atomically(&tokens, b"erin-token,dave,uid-dave\n");
    until_metric(&h, SUCCESS, 1.0).await;
    let refused = get("dave-token").await;
    assert_eq!(
        (refused.status.as_u16(), refused.text().as_str()),
        (401, "Unauthorized")
    );
    assert_eq!(get("erin-token").await.status, 200);

    // Cut mid-line (two fields): refused whole, erin's token still works.
    write_atomically(&tokens, b"erin-token,dave,uid-dave\nerin-token2,da");
    until_metric(&h, FAILURE, 1.0).await;
    assert_eq!(get("erin-token").await.status, 200);
    assert_eq!(h.ops_get("/readyz").await.0, 200);
}
