//! The canonical-path gate and the mux, before authentication (Go's ServeMux answers unknown
//! paths and redirects before the kubelet's auth filter runs): non-canonical targets are 400 and unknown paths
//! 404, with no authentication attempted, no review and nothing forwarded.

use crate::common::client::parse_raw_response;
use crate::common::{Harness, Setup, TokenUser, grant_user};

const ADMIN: TokenUser = TokenUser {
    token: "admin-token",
    user: "admin",
    uid: "1",
    groups: &[],
};

async fn admin_gateway() -> Harness {
    Harness::start(Setup {
        tokens: vec![ADMIN],
        rbac: vec![grant_user("admin", &["*"], &["*"])],
        ..Setup::default()
    })
    .await
}

/// Sends a raw HTTP/1.1 request line with the admin token; returns status and body.
async fn raw(h: &Harness, method: &str, target: &str) -> (u16, Vec<u8>) {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer admin-token\r\nConnection: close\r\n\r\n"
    );
    let bytes = h
        .client()
        .with_alpn(&[b"http/1.1"])
        .raw(h.addr, request.as_bytes())
        .await;
    let (status, _, body) = parse_raw_response(&bytes).unwrap_or_else(|| panic!("no response to {target:?}"));
    (status, body)
}

fn assert_untouched(h: &Harness, what: &str) {
    assert_eq!(h.authentications(), 0, "{what}: authentication attempted");
    assert_eq!(h.reviews(), 0, "{what}: review sent");
    assert_eq!(h.upstream.count(), 0, "{what}: forwarded");
}

#[tokio::test]
async fn non_canonical_targets_are_400_before_authentication() {
    let h = admin_gateway().await;
    let targets = [
        "/metrics/../exec/ns/p/c",
        "/metrics/..",
        "/pods/.",
        "/pods/./",
        "/./pods",
        "//exec/ns/p/c",
        "/exec//ns/p/c",
        "/metrics//../exec",
        "/metrics%2F..%2Fexec/ns/p/c",
        "/metrics%2f..%2fexec",
        "/metrics/%2e%2e/exec/ns/p/c",
        "/metrics/%2E%2E/exec/ns/p/c",
        "/metrics%5c..%5cexec",
        "/metrics\\..\\exec",
        "/pods;jsessionid=1",
        "/pods%3b",
        "/pods%00",
        "/pods%0a",
        "/pods%0d%0aX-Remote-User:%20admin",
        "/pods%c3%a9",
        "/pods%zz",
        "/pods%",
        "https://10.0.0.9:10255/pods",
        "http://127.0.0.1:10255/pods",
        "*",
    ];
    for target in targets {
        let (status, body) = raw(&h, "GET", target).await;
        assert_eq!(status, 400, "{target:?}: {}", String::from_utf8_lossy(&body));
    }
    let (status, _) = raw(&h, "OPTIONS", "*").await;
    assert_eq!(status, 400, "OPTIONS *");
    let (status, _) = raw(&h, "CONNECT", "10.0.0.9:10255").await;
    assert_eq!(status, 400, "CONNECT");
    // In origin form CONNECT names a path that would authorize as /metrics, but a forwarded
    // CONNECT asks the upstream for a tunnel to an authority: refused before authentication.
    for target in ["/metrics", "/pods", "/exec/ns/p/c"] {
        let (status, body) = raw(&h, "CONNECT", target).await;
        assert_eq!(status, 400, "CONNECT {target}: {}", String::from_utf8_lossy(&body));
    }
    assert_untouched(&h, "non-canonical");
}

#[tokio::test]
async fn raw_control_characters_and_spaces_never_reach_the_router() {
    let h = admin_gateway().await;
    for target in ["/po\tds", "/pods\x7f", "/p\u{e9}ods"] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\nConnection: close\r\n\r\n"
        );
        let bytes = h
            .client()
            .with_alpn(&[b"http/1.1"])
            .raw(h.addr, request.as_bytes())
            .await;
        let status = parse_raw_response(&bytes).map(|(s, _, _)| s);
        assert!(matches!(status, Some(400) | None), "{target:?}: {status:?}");
    }
    assert_untouched(&h, "control characters");
}

#[tokio::test]
async fn fragments_are_never_part_of_the_authorized_or_forwarded_path() {
    let h = admin_gateway().await;
    // hyper's URI parser drops a fragment before the gateway sees the target; what is
    // authorized and forwarded is the path without it, byte for byte.
    let (status, _) = raw(&h, "GET", "/pods#/../exec/ns/p/c").await;
    if status == 200 {
        assert_eq!(h.upstream.seen()[0].target, "/pods");
    } else {
        assert_eq!(status, 400);
        assert_untouched(&h, "fragment");
    }
}

#[tokio::test]
async fn long_targets_are_414_before_authentication() {
    let h = admin_gateway().await;
    let target = format!("/pods?{}", "a".repeat(8193));
    let (status, _) = raw(&h, "GET", &target).await;
    assert_eq!(status, 414);
    assert_untouched(&h, "long target");
}

#[tokio::test]
async fn unknown_paths_are_404_before_authentication() {
    let h = admin_gateway().await;
    for target in [
        "/foo",
        "/",
        "/metrics/",
        "/healthz/",
        "/healthzjunk",
        "/Exec/ns/p/c",
        "/METRICS",
        "/spec/",
        "/podsx",
    ] {
        let reply = h.client().get(h.addr, target, &[]).await;
        assert_eq!(reply.status, 404, "{target}");
        assert_eq!(reply.text(), "404 page not found\n", "{target}");
        assert_eq!(
            reply.headers.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
    }
    assert_untouched(&h, "unknown path");
}

#[tokio::test]
async fn subtree_roots_without_their_slash_redirect_before_authentication() {
    let h = admin_gateway().await;
    for (target, location) in [
        ("/runningpods", "/runningpods/"),
        ("/stats", "/stats/"),
        ("/logs?x=1", "/logs/?x=1"),
    ] {
        let reply = h.client().get(h.addr, target, &[]).await;
        assert_eq!(reply.status, 301, "{target}");
        assert_eq!(
            reply.headers.get("location").map(|v| v.to_str().unwrap_or("")),
            Some(location)
        );
    }
    assert_untouched(&h, "redirect");
}

#[tokio::test]
async fn the_forwarded_target_is_byte_identical_to_the_authorized_one() {
    let h = admin_gateway().await;
    let targets = [
        "/pods",
        "/pods/",
        "/pods?x=%2F&y=a%20b",
        "/metrics/cadvisor?a=b&a=c",
        "/stats/summary?only_cpu_and_memory=true",
        "/healthz?verbose",
        "/metrics?q=%2e%2e%2f",
    ];
    for target in targets {
        let (status, _) = raw(&h, "GET", target).await;
        assert_eq!(status, 200, "{target}");
        assert_eq!(
            h.upstream.seen().last().map(|s| s.target.clone()).as_deref(),
            Some(target)
        );
    }
    assert_eq!(h.upstream.count(), targets.len());
}

#[tokio::test]
async fn pipelined_requests_are_each_authorized() {
    let h = Harness::start(Setup {
        tokens: vec![TokenUser {
            token: "m",
            user: "metrics-reader",
            uid: "1",
            groups: &[],
        }],
        rbac: vec![grant_user("metrics-reader", &["nodes/metrics"], &["get"])],
        ..Setup::default()
    })
    .await;
    let two = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer m\r\n\r\nGET /exec/ns/p/c?command=id HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer m\r\nConnection: close\r\n\r\n";
    let bytes = h.client().with_alpn(&[b"http/1.1"]).raw(h.addr, two).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 403"), "{text}");
    assert!(
        text.contains("verb=create, resource=nodes, subresource(s)=[proxy]"),
        "{text}"
    );
    assert_eq!(h.reviews(), 2);
    assert_eq!(h.upstream.count(), 1);
}
