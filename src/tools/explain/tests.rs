//! Unit tests of `explain`'s phases against an in-memory RBAC policy.
use super::*;

#[test]
fn identities() {
    assert_eq!(Identity::new(None, &[], true), Ok(Identity::Anonymous));
    assert_eq!(Identity::new(Some(ANONYMOUS_USER), &[], false), Ok(Identity::Anonymous));
    assert_eq!(
        Identity::new(Some(ANONYMOUS_USER), &[UNAUTHENTICATED_GROUP.into()], false),
        Ok(Identity::Anonymous)
    );
    assert!(Identity::new(Some(ANONYMOUS_USER), &["g".into()], false).is_err());
    assert!(Identity::new(Some("alice"), &[], true).is_err());
    assert!(Identity::new(None, &[], false).is_err());
    assert_eq!(
        Identity::new(Some("alice"), &["g".into()], false),
        Ok(Identity::User {
            name: "alice".into(),
            groups: vec!["g".into()]
        })
    );
}

#[test]
fn urls_become_origin_form() {
    let u = origin_form("https://10.0.0.5:10250/containerLogs/ns/p/c?follow=true").expect("url");
    assert_eq!(u.to_string(), "/containerLogs/ns/p/c?follow=true");
    assert_eq!(origin_form("HTTPS://node").expect("url").to_string(), "/");
    assert_eq!(
        origin_form("/metrics/../exec").expect("path").path(),
        "/metrics/../exec"
    );
    assert!(origin_form("/p ods").is_err());
}

async fn rbac_explainer(policy: &str) -> Explainer {
    let policy = crate::authz::rbac::RbacPolicy::from_sources(&[("p.yaml".into(), policy.into())]).expect("policy");
    Explainer {
        policy: Policy {
            node_name: "node-a".into(),
            fine_grained_authz: true,
            exec_requires_create: true,
            read_only_port: true,
            secure_port: false,
        },
        anonymous_enabled: false,
        read_only: Some("http://127.0.0.1:10255/".into()),
        secure: None,
        authorizer: AnyAuthorizer::Rbac(crate::authz::RbacAuthorizer::new(policy)),
        description: "RBAC".into(),
        warnings: Vec::new(),
    }
}

fn request(method: Method, target: &str, user: &str, groups: &[&str]) -> Request {
    Request {
        method,
        target: target.into(),
        identity: Identity::User {
            name: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        },
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn phases_in_order() {
    block_on(async {
        let e = rbac_explainer("").await;
        let x = e.explain(&request(Method::GET, "/metrics/../exec", "a", &[])).await;
        assert_eq!(
            (x.stage, x.status, x.decision),
            (Stage::Path, Some(400), Decision::Rejected)
        );
        let x = e.explain(&request(Method::GET, "/foo", "a", &[])).await;
        assert_eq!((x.stage, x.status), (Stage::Route, Some(404)));
        assert_eq!(x.body.as_deref(), Some("404 page not found\n"));
        let x = e.explain(&request(Method::GET, "/stats?x=1", "a", &[])).await;
        assert_eq!(x.status, Some(301));
        assert_eq!(x.headers.get("location").map(String::as_str), Some("/stats/?x=1"));

        let x = e.explain(&request(Method::GET, "/pods", "alice", &["team"])).await;
        assert_eq!((x.stage, x.status), (Stage::Authorization, Some(403)));
        assert_eq!(
            x.body.as_deref(),
            Some("Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy])\n")
        );
        let user = x.user.expect("user");
        assert_eq!(user.groups, ["team", AUTHENTICATED_GROUP]);
        assert!(user.authenticated_group_added);
        assert_eq!(x.reviews.len(), 2);
        assert!(x.reviews.iter().all(|r| r.decision == "noOpinion"));

        let x = e
            .explain(&request(Method::GET, "/exec/ns/p/c", "admin", &["system:masters"]))
            .await;
        assert_eq!((x.decision, x.status), (Decision::Allow, Some(405)));
        assert_eq!(x.attributes.expect("attributes").verb, "create");
        assert!(
            x.reviews[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("cluster-admin"))
        );

        let x = e
            .explain(&request(Method::GET, "/healthz", "admin", &["system:masters"]))
            .await;
        assert!(x.forwarded() && x.status.is_none() && x.decision == Decision::Allow);

        let anonymous = Request {
            method: Method::GET,
            target: "/pods".into(),
            identity: Identity::Anonymous,
        };
        let x = e.explain(&anonymous).await;
        assert_eq!(
            (x.stage, x.status, x.body.as_deref()),
            (Stage::Authentication, Some(401), Some("Unauthorized"))
        );
        assert!(x.reviews.is_empty());
    });
}
