//! Authorization as the kubelet does it: the method × path attribute table (kubernetes
//! pkg/kubelet/server/auth_test.go `TestGetRequestAttributes`) observed end to end through the
//! 403 body, the route-coverage meta-test (`TestAuthzCoverage`), the fine-grained fallback,
//! exec-as-create, and RBAC evaluation.

use http::Method;
use kubelet_gate::proxy::routes::ROOTS;

use crate::common::{Harness, NODE, Setup, TokenUser, grant_user};

const NOBODY: TokenUser = TokenUser {
    token: "nobody-token",
    user: "nobody",
    uid: "1",
    groups: &[],
};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every route of the kubelet (one path per route shape) and what the kubelet reviews for it.
/// Verbs are per method; the streaming roots are `create` whatever the method.
const TABLE: &[(&str, &[&str])] = &[
    ("/healthz", &["healthz", "proxy"]),
    ("/healthz/ping", &["healthz", "proxy"]),
    ("/healthz/log", &["healthz", "proxy"]),
    ("/healthz/syncloop", &["healthz", "proxy"]),
    ("/metrics", &["metrics"]),
    ("/metrics/cadvisor", &["metrics"]),
    ("/metrics/resource", &["metrics"]),
    ("/metrics/probes", &["metrics"]),
    ("/metrics/slis", &["metrics"]),
    ("/statusz", &["statusz"]),
    ("/configz", &["configz", "proxy"]),
    ("/flagz", &["configz"]),
    ("/debug/flags/v", &["proxy"]),
    ("/pods", &["pods", "proxy"]),
    ("/pods/", &["pods", "proxy"]),
    ("/stats/", &["stats"]),
    ("/stats/summary", &["stats"]),
    ("/run/ns/pod/ctr", &["proxy"]),
    ("/run/ns/pod/uid/ctr", &["proxy"]),
    ("/exec/ns/pod/ctr", &["proxy"]),
    ("/exec/ns/pod/uid/ctr", &["proxy"]),
    ("/attach/ns/pod/ctr", &["proxy"]),
    ("/attach/ns/pod/uid/ctr", &["proxy"]),
    ("/portForward/ns/pod", &["proxy"]),
    ("/portForward/ns/pod/uid", &["proxy"]),
    ("/containerLogs/ns/pod/ctr", &["proxy"]),
    ("/runningpods/", &["pods", "proxy"]),
    ("/checkpoint/ns/pod/ctr", &["checkpoint"]),
    ("/logs/", &["log"]),
    ("/logs/kubelet.log", &["log"]),
    ("/debug/pprof/profile", &["proxy"]),
];

fn expected_verb(method: &Method, path: &str) -> &'static str {
    let streaming = ["/exec", "/attach", "/portForward", "/run"]
        .iter()
        .any(|r| path.starts_with(&format!("{r}/")));
    if streaming {
        return "create";
    }
    match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

#[test]
fn every_route_has_a_case_in_the_attribute_table() {
    for root in ROOTS {
        let covered = TABLE.iter().any(|(path, _)| {
            *path == root.prefix || path.starts_with(&format!("{}/", root.prefix.trim_end_matches('/')))
        });
        assert!(covered, "route {} has no attribute case", root.prefix);
    }
}

#[tokio::test]
async fn method_by_route_attribute_table() {
    let h = Harness::start(Setup {
        tokens: vec![NOBODY],
        ..Setup::default()
    })
    .await;
    let c = h.client();
    let auth = bearer(NOBODY.token);
    for (path, subresources) in TABLE {
        for method in ["POST", "GET", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"] {
            let m = Method::from_bytes(method.as_bytes()).expect("method");
            let before = h.reviews();
            let reply = c.request(h.addr, method, path, &[("authorization", &auth)]).await;
            let verb = expected_verb(&m, path);
            let want = format!(
                "Forbidden (user=nobody, verb={verb}, resource=nodes, subresource(s)=[{}])\n",
                subresources.join(" ")
            );
            assert_eq!(reply.status, 403, "{method} {path}");
            assert_eq!(reply.text(), want, "{method} {path}");
            assert_eq!(
                h.reviews() - before,
                subresources.len() as u64,
                "{method} {path}: one review per subresource"
            );
        }
    }
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn head_and_other_methods_are_the_empty_verb() {
    let h = Harness::start(Setup {
        tokens: vec![NOBODY],
        rbac: vec![grant_user("nobody", &["nodes/metrics"], &[""])],
        ..Setup::default()
    })
    .await;
    // HTTP/1.1: the h2 crate's client rejects a HEAD response whose content-length has no DATA
    // (curl over h2 accepts it, as RFC 9113 §8.1.1 allows).
    let c = h.client().with_alpn(&[b"http/1.1"]);
    let auth = bearer(NOBODY.token);
    for method in ["HEAD", "OPTIONS", "get", "PROPFIND"] {
        let reply = c.request(h.addr, method, "/metrics", &[("authorization", &auth)]).await;
        assert_eq!(
            reply.status, 200,
            "{method} is reviewed with the empty verb, which this rule grants"
        );
    }
    let reply = c.get(h.addr, "/metrics", &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 403, "GET is get, which the rule does not grant");
    let methods: Vec<String> = h.upstream.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(
        methods,
        ["HEAD", "OPTIONS", "get", "PROPFIND"],
        "forwarded under the same method"
    );
}

fn user(token: &'static str, name: &'static str) -> TokenUser {
    TokenUser {
        token,
        user: name,
        uid: "1",
        groups: &[],
    }
}

#[tokio::test]
async fn fine_grained_subresource_and_proxy_fallback() {
    let h = Harness::start(Setup {
        tokens: vec![user("pods-t", "pods-only"), user("proxy-t", "proxy-only")],
        rbac: vec![
            grant_user("pods-only", &["nodes/pods"], &["get"]),
            grant_user("proxy-only", &["nodes/proxy"], &["get"]),
        ],
        ..Setup::default()
    })
    .await;
    let c = h.client();
    // one review, no proxy review.
    let before = h.reviews();
    assert_eq!(
        c.get(h.addr, "/pods", &[("authorization", "Bearer pods-t")])
            .await
            .status,
        200
    );
    assert_eq!(h.reviews() - before, 1);
    // pods denied, proxy allowed: two reviews.
    let before = h.reviews();
    assert_eq!(
        c.get(h.addr, "/pods", &[("authorization", "Bearer proxy-t")])
            .await
            .status,
        200
    );
    assert_eq!(h.reviews() - before, 2);
    // stats has no proxy fallback.
    let reply = c
        .get(h.addr, "/stats/summary", &[("authorization", "Bearer proxy-t")])
        .await;
    assert_eq!(
        reply.text(),
        "Forbidden (user=proxy-only, verb=get, resource=nodes, subresource(s)=[stats])\n"
    );
    assert_eq!(h.upstream.count(), 2);
}

#[tokio::test]
async fn without_the_feature_gate_only_proxy_is_reviewed() {
    let h = Harness::start(Setup {
        tokens: vec![NOBODY],
        fine_grained: false,
        ..Setup::default()
    })
    .await;
    let reply = h
        .client()
        .get(h.addr, "/pods", &[("authorization", "Bearer nobody-token")])
        .await;
    assert_eq!(
        reply.text(),
        "Forbidden (user=nobody, verb=get, resource=nodes, subresource(s)=[proxy])\n"
    );
}

#[tokio::test]
async fn get_on_nodes_proxy_never_opens_exec() {
    let h = Harness::start(Setup {
        tokens: vec![user("proxy-t", "monitoring")],
        rbac: vec![grant_user("monitoring", &["nodes/proxy"], &["get"])],
        ..Setup::default()
    })
    .await;
    let c = h.client().with_alpn(&[b"http/1.1"]);
    let headers = [
        ("authorization", "Bearer proxy-t"),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "v4.channel.k8s.io"),
    ];
    for path in [
        "/exec/ns/p/c?command=id&output=1",
        "/attach/ns/p/c?output=1",
        "/portForward/ns/p?port=80",
        "/run/ns/p/c?cmd=id",
    ] {
        for method in ["GET", "POST"] {
            let reply = c.request(h.addr, method, path, &headers).await;
            assert_eq!(reply.status, 403, "{method} {path}");
            assert_eq!(
                reply.text(),
                "Forbidden (user=monitoring, verb=create, resource=nodes, subresource(s)=[proxy])\n"
            );
        }
    }
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn kubelet_verb_mapping_can_be_restored() {
    let h = Harness::start(Setup {
        tokens: vec![NOBODY],
        exec_requires_create: false,
        ..Setup::default()
    })
    .await;
    let reply = h
        .client()
        .get(
            h.addr,
            "/exec/ns/p/c?command=id",
            &[("authorization", "Bearer nobody-token")],
        )
        .await;
    assert_eq!(
        reply.text(),
        "Forbidden (user=nobody, verb=get, resource=nodes, subresource(s)=[proxy])\n"
    );
}

#[tokio::test]
async fn allowed_private_endpoints_answer_405_and_are_never_forwarded() {
    let h = Harness::start(Setup {
        tokens: vec![user("admin-t", "admin")],
        rbac: vec![grant_user(
            "admin",
            &["nodes/proxy", "nodes/checkpoint", "nodes/log", "nodes/configz"],
            &["*"],
        )],
        ..Setup::default()
    })
    .await;
    let c = h.client();
    let auth = [("authorization", "Bearer admin-t")];
    for (method, path, endpoint) in [
        ("POST", "/exec/ns/p/c?command=id", "exec"),
        ("GET", "/attach/ns/p/c", "attach"),
        ("POST", "/portForward/ns/p", "portForward"),
        ("POST", "/run/ns/p/c?cmd=ls", "run"),
        ("GET", "/runningpods/", "runningpods"),
        ("GET", "/configz", "configz"),
        ("POST", "/checkpoint/ns/p/c", "checkpoint"),
        ("GET", "/debug/pprof/profile", "debug/pprof"),
    ] {
        let reply = c.request(h.addr, method, path, &auth).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert!(
            reply
                .text()
                .starts_with(&format!("{endpoint} needs the kubelet's authenticated API.")),
            "{}",
            reply.text()
        );
        assert!(reply.text().contains("upstream.secure"), "says what to configure");
    }
    // Wrong method or shape under a known root: go-restful's answers, after authorization.
    let reply = c.request(h.addr, "GET", "/run/ns/p/c", &auth).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (405, "405: Method Not Allowed")
    );
    assert_eq!(
        reply.headers.get("allow").map(|v| v.to_str().unwrap_or("")),
        Some("POST")
    );
    let reply = c.request(h.addr, "GET", "/exec/ns", &auth).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (404, "404: Page Not Found")
    );
    // The log endpoints are the gateway's own now: served from disk, never 405, never forwarded.
    for path in ["/logs/", "/containerLogs/ns/p/c"] {
        let reply = c.request(h.addr, "GET", path, &auth).await;
        assert_ne!(reply.status, 405, "{path}: {}", reply.text());
    }
    let reply = c.request(h.addr, "POST", "/containerLogs/ns/p/c", &auth).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (405, "405: Method Not Allowed"),
        "only GET, as go-restful's route"
    );
    assert_eq!(h.upstream.count(), 0);
}

mod rbac {
    use super::*;

    fn doc(kind: &str, name: &str, body: &str) -> String {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\n{body}")
    }

    async fn status(h: &Harness, token: &str, method: &str, path: &str) -> u16 {
        let auth = bearer(token);
        h.client()
            .request(h.addr, method, path, &[("authorization", &auth)])
            .await
            .status
            .as_u16()
    }

    #[tokio::test]
    async fn bindings_wildcards_resource_names_and_subjects() {
        let policy = [
            doc("ClusterRole", "star-proxy", "rules:\n- apiGroups: [\"\"]\n  resources: [\"*/proxy\"]\n  verbs: [\"get\"]\n"),
            doc("ClusterRole", "nodes-star", "rules:\n- apiGroups: [\"\"]\n  resources: [\"nodes/*\"]\n  verbs: [\"*\"]\n"),
            doc("ClusterRole", "everything", "rules:\n- apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [\"*\"]\n"),
            doc(
                "ClusterRole",
                "other-node",
                "rules:\n- apiGroups: [\"\"]\n  resources: [\"nodes/metrics\"]\n  resourceNames: [\"node-b\"]\n  verbs: [\"get\"]\n",
            ),
            doc(
                "ClusterRole",
                "this-node",
                &format!("rules:\n- apiGroups: [\"\"]\n  resources: [\"nodes/metrics\"]\n  resourceNames: [\"{NODE}\"]\n  verbs: [\"get\"]\n"),
            ),
            doc("ClusterRole", "wrong-group", "rules:\n- apiGroups: [\"apps\"]\n  resources: [\"nodes/metrics\"]\n  verbs: [\"get\"]\n"),
            doc("ClusterRoleBinding", "b1", "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: star-proxy}\nsubjects:\n- {kind: User, name: u-star}\n"),
            doc("ClusterRoleBinding", "b2", "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nodes-star}\nsubjects:\n- {kind: User, name: u-nodes-star}\n"),
            doc("ClusterRoleBinding", "b3", "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}\nsubjects:\n- {kind: ServiceAccount, name: admin, namespace: ops}\n"),
            doc("ClusterRoleBinding", "b4", "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: other-node}\nsubjects:\n- {kind: Group, name: team}\n"),
            doc("ClusterRoleBinding", "b5", "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: this-node}\nsubjects:\n- {kind: User, name: u-this}\n"),
            doc("ClusterRoleBinding", "b6", "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wrong-group}\nsubjects:\n- {kind: User, name: u-apps}\n"),
            doc(
                "RoleBinding",
                "namespaced",
                "  namespace: ops\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}\nsubjects:\n- {kind: User, name: u-namespaced}\n",
            ),
            doc("ClusterRoleBinding", "api-admin", "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: \"system:kubelet-api-admin\"}\nsubjects:\n- {kind: User, name: kube-apiserver-kubelet-client}\n"),
        ]
        .join("---\n");
        let tokens = vec![
            user("t-star", "u-star"),
            user("t-nodes-star", "u-nodes-star"),
            user("t-sa", "system:serviceaccount:ops:admin"),
            user("t-sa-other", "system:serviceaccount:dev:admin"),
            TokenUser {
                token: "t-team",
                user: "u-team",
                uid: "1",
                groups: &["team"],
            },
            user("t-this", "u-this"),
            user("t-apps", "u-apps"),
            user("t-namespaced", "u-namespaced"),
            user("t-apiserver", "kube-apiserver-kubelet-client"),
            TokenUser {
                token: "t-masters",
                user: "someone",
                uid: "1",
                groups: &["system:masters"],
            },
        ];
        let h = Harness::start(Setup {
            tokens,
            rbac: vec![policy],
            ..Setup::default()
        })
        .await;
        assert_eq!(
            status(&h, "t-star", "GET", "/pods").await,
            200,
            "*/proxy matches nodes/proxy"
        );
        assert_eq!(status(&h, "t-star", "POST", "/exec/ns/p/c").await, 403, "only get");
        assert_eq!(
            status(&h, "t-nodes-star", "GET", "/metrics").await,
            403,
            "nodes/* is not a wildcard in RBAC"
        );
        assert_eq!(
            status(&h, "t-sa", "GET", "/metrics").await,
            200,
            "ServiceAccount subject"
        );
        assert_eq!(status(&h, "t-sa", "DELETE", "/metrics").await, 200, "verb *");
        assert_eq!(
            status(&h, "t-sa-other", "GET", "/metrics").await,
            403,
            "other namespace"
        );
        assert_eq!(
            status(&h, "t-team", "GET", "/metrics").await,
            403,
            "resourceNames names another node"
        );
        assert_eq!(
            status(&h, "t-this", "GET", "/metrics").await,
            200,
            "resourceNames names this node"
        );
        assert_eq!(
            status(&h, "t-apps", "GET", "/metrics").await,
            403,
            "apiGroup must be core"
        );
        assert_eq!(
            status(&h, "t-namespaced", "GET", "/metrics").await,
            403,
            "a RoleBinding never grants nodes"
        );
        assert_eq!(
            status(&h, "t-apiserver", "GET", "/stats/summary").await,
            200,
            "built-in system:kubelet-api-admin"
        );
        assert_eq!(
            status(&h, "t-apiserver", "POST", "/exec/ns/p/c").await,
            405,
            "allowed, then 405 (no private API)"
        );
        assert_eq!(
            status(&h, "t-masters", "GET", "/pods").await,
            200,
            "built-in cluster-admin binding for system:masters"
        );
    }
}
