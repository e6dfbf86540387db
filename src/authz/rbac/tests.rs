//! Unit tests of RBAC loading and evaluation against the API server's semantics.
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::evaluation::{resource_matches, selector_matches};
use super::manifest::{RBAC_GROUP, Requirement, Selector, split_documents};
use super::*;

/// `get nodes/proxy` on node-1 by alice, in no group; each test overrides what it varies.
const GET_NODE_PROXY: Request<'static> = Request {
    user: "alice",
    groups: &[],
    verb: "get",
    api_group: "",
    resource: "nodes",
    subresource: "proxy",
    name: "node-1",
};

fn try_load(yaml: &str) -> Result<RbacPolicy, RbacError> {
    RbacPolicy::from_sources(&[("policy.yaml".to_owned(), yaml.to_owned())])
}

fn load(yaml: &str) -> RbacPolicy {
    try_load(yaml).unwrap_or_else(|e| panic!("load failed: {e}"))
}

fn load_err(yaml: &str) -> RbacError {
    try_load(yaml).err().expect("loading should fail")
}

/// ClusterRoleBinding `name` of ClusterRole `role` to flow-style `subjects`.
fn crb(name: &str, role: &str, subjects: &str) -> String {
    let role_ref = format!("{{apiGroup: {RBAC_GROUP}, kind: ClusterRole, name: {role}}}");
    format!("---\nkind: ClusterRoleBinding\nmetadata: {{name: {name}}}\nroleRef: {role_ref}\nsubjects: [{subjects}]\n")
}

/// ClusterRole `r` holding the flow-style `rule`, bound to User alice.
fn bound(rule: &str) -> RbacPolicy {
    let role = format!("apiVersion: {RBAC_GROUP}/v1\nkind: ClusterRole\nmetadata: {{name: r}}\nrules: [{rule}]\n");
    load(&(role + &crb("b", "r", "{kind: User, name: alice}")))
}

fn rule(resource: &str, verb: &str) -> RbacPolicy {
    bound(&format!(
        "{{apiGroups: [\"\"], resources: [\"{resource}\"], verbs: [\"{verb}\"]}}"
    ))
}

fn can(p: &RbacPolicy, user: &str, groups: &[&str], verb: &str, sub: &str) -> bool {
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    p.authorize(&Request {
        user,
        groups: &groups,
        verb,
        subresource: sub,
        ..GET_NODE_PROXY
    })
    .is_some()
}

#[test]
fn verbs_match_exactly_or_by_wildcard_and_the_empty_verb_only_by_wildcard() {
    let p = rule("nodes/proxy", "get");
    assert!(can(&p, "alice", &[], "get", "proxy") && !can(&p, "bob", &[], "get", "proxy"));
    assert!(!can(&p, "alice", &[], "create", "proxy") && !can(&p, "alice", &[], "", "proxy"));
    let p = rule("nodes/proxy", "*");
    assert!(can(&p, "alice", &[], "create", "proxy") && can(&p, "alice", &[], "", "proxy"));
}

#[test]
fn api_groups_match_exactly_or_by_wildcard() {
    let star = bound("{apiGroups: [\"*\"], resources: [nodes/proxy], verbs: [get]}");
    let apps = bound("{apiGroups: [apps], resources: [nodes/proxy], verbs: [get]}");
    let ask = |p: &RbacPolicy, api_group| {
        let request = Request {
            api_group,
            name: "n",
            ..GET_NODE_PROXY
        };
        p.authorize(&request).is_some()
    };
    assert!(ask(&star, "") && ask(&star, "apps"));
    assert!(!ask(&apps, "") && ask(&apps, "apps"));
}

#[test]
fn resources_follow_upstream_resource_matches() {
    let cases = [
        ("*", "proxy", true),
        ("nodes/proxy", "proxy", true),
        ("nodes/proxy", "stats", false),
        ("*/proxy", "proxy", true),
        ("*/proxy", "stats", false),
        // Not a wildcard in kube-apiserver: only `*` and `*/<sub>` are (evaluation_helpers.go).
        ("nodes/*", "proxy", false),
        ("nodes", "proxy", false),
        ("nodes", "", true),
        ("*/proxy", "", false),
    ];
    for (resource, sub, want) in cases {
        let got = can(&rule(resource, "get"), "alice", &[], "get", sub);
        assert_eq!(got, want, "{resource} vs nodes/{sub}");
    }
    for near_miss in ["nodes//proxy", "xnodes/proxy", "nodes/proxyx", "*/proxyx"] {
        assert!(!resource_matches(near_miss, "nodes", "proxy"), "{near_miss}");
    }
}

#[test]
fn resource_names_restrict_when_present() {
    let p = bound("{apiGroups: [\"\"], resources: [nodes/proxy], resourceNames: [node-1], verbs: [get]}");
    assert!(can(&p, "alice", &[], "get", "proxy"));
    assert!(
        p.authorize(&Request {
            name: "node-2",
            ..GET_NODE_PROXY
        })
        .is_none()
    );
}

#[test]
fn non_resource_url_rules_never_match_resource_requests() {
    let p = bound("{nonResourceURLs: [\"*\"], verbs: [\"*\"]}");
    assert!(!can(&p, "alice", &[], "get", "proxy") && !can(&p, "alice", &[], "get", ""));
}

#[test]
fn users_groups_and_service_accounts() {
    let subjects = "{kind: Group, name: ops}, {kind: ServiceAccount, name: mon, namespace: obs}, \
                        {kind: User, name: \"*\"}";
    let p = load(&crb("kubelet", "system:kubelet-api-admin", subjects));
    assert!(can(&p, "carol", &["dev", "ops"], "get", "proxy"));
    assert!(
        !can(&p, "ops", &["dev"], "get", "proxy"),
        "a user named like a group is not in it"
    );
    assert!(can(&p, "system:serviceaccount:obs:mon", &[], "get", "stats"));
    assert!(!can(&p, "system:serviceaccount:obs:monx", &[], "get", "stats"));
    assert!(!can(&p, "system:serviceaccount:ob:mon", &[], "get", "stats"));
    // `*` is a literal name in appliesToUser, not a wildcard.
    assert!(!can(&p, "bob", &[], "get", "proxy") && can(&p, "*", &[], "get", "proxy"));
}

#[test]
fn role_bindings_never_grant_cluster_scoped_requests() {
    let yaml = "kind: RoleBinding
metadata: {name: rb, namespace: obs}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{kind: User, name: alice}, {kind: ServiceAccount, name: mon}]
---
kind: Role
metadata: {name: local, namespace: obs}
rules: [{apiGroups: [\"\"], resources: [nodes/proxy], verbs: [\"*\"]}]
---
kind: RoleBinding
metadata: {name: rb2, namespace: obs}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: local}
subjects: [{kind: User, name: alice}]
";
    let p = load(yaml);
    assert!(!can(&p, "alice", &[], "get", "proxy") && !can(&p, "system:serviceaccount:obs:mon", &[], "get", "proxy"));
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    // Still validated: a Role cannot hold nonResourceURLs.
    let bad = "kind: Role\nmetadata: {name: x}\nrules: [{nonResourceURLs: [/x], verbs: [get]}]\n";
    assert!(
        load_err(bad)
            .to_string()
            .contains("namespaced rules cannot apply to non-resource URLs")
    );
}

#[test]
fn binding_to_a_missing_role_grants_nothing_and_warns() {
    let p = load(&crb("foo", "bar", "{kind: User, name: alice}"));
    assert!(!can(&p, "alice", &[], "get", "proxy"));
    assert_eq!(
        p.warnings(),
        ["ClusterRoleBinding foo references ClusterRole bar, which is not defined"]
    );
}

#[test]
fn multi_document_files_lists_and_unrelated_kinds() {
    let yaml = r#"# cluster dump
%YAML 1.2
---
apiVersion: v1
kind: Namespace
metadata: {name: obs}
--- # a List mixing kinds, as `kubectl get -o yaml` prints several resource types
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: mon, namespace: obs}
  rules: this item is not RBAC, so its fields are never typed
- apiVersion: example.com/v1
  kind: ClusterRole
  rules: {also: skipped}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata:
    name: reader
    labels: {app.kubernetes.io/name: mon}
    annotations: {rbac.authorization.kubernetes.io/autoupdate: "true"}
    creationTimestamp: "2024-01-01T00:00:00Z"
  rules:
  - apiGroups: [""]
    resources: [nodes/stats, nodes/metrics]
    verbs: [get, list]
...
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBindingList
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: reader, uid: 0b5c}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
  subjects:
  - {kind: ServiceAccount, name: mon, namespace: obs}
status: {phase: whatever}
"#;
    let p = load(yaml);
    let sa = "system:serviceaccount:obs:mon";
    assert!(can(&p, sa, &[], "get", "stats") && can(&p, sa, &[], "list", "metrics"));
    assert!(!can(&p, sa, &[], "get", "proxy"));
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
}

#[test]
fn splits_documents_on_markers_only() {
    let text = "# c\n%YAML 1.2\n---\na: 1\n--- # x\n---\nb: |\n  ---x\n  text\n...\n# tail\n--- {c: 3}\n";
    let docs = split_documents(text);
    assert_eq!(docs.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [1, 6, 11]);
    assert!(docs[0].1.starts_with("# c\n%YAML 1.2\n---\na: 1"));
    assert!(docs[1].1.contains("---x") && docs[1].1.ends_with("...\n"));
    assert_eq!(split_documents("x: 1").len(), 1);
    assert!(split_documents("# nothing\n---\n").is_empty());
}

#[test]
fn malformed_rbac_documents_name_file_document_and_line() {
    let yaml =
        "kind: Namespace\nmetadata: {name: a}\n---\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n- verbs: get\n";
    let err = load_err(yaml);
    assert!(matches!(&err, RbacError::Parse { path, document: 2, line: Some(7), .. } if path == "policy.yaml"));
    let msg = err.to_string();
    assert!(
        msg.starts_with("policy.yaml: document 2:") && msg.contains("line 7"),
        "{msg}"
    );

    let no_ref = format!("kind: Namespace\n{}", crb("b", "r", "").replace("roleRef", "roleRf"));
    let err = load_err(&no_ref);
    assert!(matches!(&err, RbacError::Invalid { document: 2, message, .. }
            if message == "ClusterRoleBinding \"b\": roleRef: Required value"));
    let in_list = "kind: List\nitems:\n- kind: ClusterRole\n  metadata: {name: r}\n  rules: [{verbs: [get, [x]]}]\n";
    assert!(matches!(
        load_err(in_list),
        RbacError::Parse {
            document: 1,
            line: Some(5),
            ..
        }
    ));
    let checks = [
        (
            "kind: ClusterRole\nmetadata: {}\n",
            "ClusterRole: metadata.name: Required value",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [\"\"], resources: [nodes]}]",
            "rules[0].verbs",
        ),
        (
            "kind: Role\nmetadata: {name: r}\nrules: [{apiGroups: [\"\"], verbs: [get]}]\n",
            "rules[0].resources",
        ),
        (
            "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\n",
            "roleRef.kind",
        ),
        (
            "kind: RoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: User}]",
            "subjects[0].name",
        ),
        (
            "kind: RoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: user, name: a}]",
            ".kind",
        ),
        ("kind: ClusterRole\nmetadata: {name: r\n", "line 2"),
    ];
    for (yaml, want) in checks {
        let msg = load_err(yaml).to_string();
        assert!(
            msg.starts_with("policy.yaml: document 1: ") && msg.contains(want),
            "{msg}"
        );
    }
    let missing = RbacPolicy::load(&[PathBuf::from("/nonexistent/rbac.yaml")]).err();
    assert!(matches!(missing, Some(RbacError::Io { .. })));
}

#[test]
fn aggregation_adds_matching_cluster_roles_and_terminates_on_cycles() {
    let role = |name: &str, labels: &str, selector: &str, sub: &str| {
        let meta = format!("metadata: {{name: {name}, labels: {{{labels}}}}}");
        let rules = format!("rules: [{{apiGroups: [\"\"], resources: [nodes/{sub}], verbs: [get]}}]");
        let agg = format!("aggregationRule: {{clusterRoleSelectors: [{selector}]}}");
        let agg = if selector.is_empty() { String::new() } else { agg };
        format!("---\nkind: ClusterRole\n{meta}\n{rules}\n{agg}\n")
    };
    let yaml = [
        role(
            "agg",
            "pick: y",
            "{matchLabels: {pick: y}}, {matchExpressions: [{key: t, operator: In, values: [k]}]}",
            "log",
        ),
        role("a", "pick: y", "", "stats"),
        role("b", "t: k", "", "metrics"),
        role("c", "t: other", "", "proxy"),
        role("x", "ring: x", "{matchLabels: {ring: y}}", "pods"),
        role("y", "ring: y", "{matchLabels: {ring: x}}", "healthz"),
        crb("agg", "agg", "{kind: User, name: alice}"),
        crb("x", "x", "{kind: User, name: bob}"),
    ]
    .concat();
    let p = load(&yaml);
    for (sub, want) in [("log", true), ("stats", true), ("metrics", true), ("proxy", false)] {
        assert_eq!(can(&p, "alice", &[], "get", sub), want, "agg nodes/{sub}");
    }
    assert!(can(&p, "bob", &[], "get", "healthz") && can(&p, "bob", &[], "get", "pods"));
    let grant = p.authorize(&Request {
        subresource: "metrics",
        name: "n",
        ..GET_NODE_PROXY
    });
    assert_eq!(grant.map(|g| (g.role, g.rule_index)), Some(("ClusterRole/agg", 2)));

    let labels = BTreeMap::from([("t".to_owned(), "k".to_owned())]);
    let matches = |op: &str, values: &[&str]| {
        let values = values.iter().map(|v| (*v).to_owned()).collect();
        let requirement = Requirement {
            key: "t".to_owned(),
            operator: op.to_owned(),
            values,
        };
        selector_matches(
            &Selector {
                match_labels: None,
                match_expressions: vec![requirement],
            },
            &labels,
        )
    };
    assert!(matches("NotIn", &["other"]) && !matches("NotIn", &["k"]));
    assert!(matches("Exists", &[]) && !matches("DoesNotExist", &[]));
    assert!(
        !matches("In", &[]) && !matches("Exists", &["k"]),
        "invalid selectors select nothing"
    );
    let empty = Selector {
        match_labels: None,
        match_expressions: Vec::new(),
    };
    assert!(
        selector_matches(&empty, &BTreeMap::new()),
        "an empty selector selects everything"
    );
}

#[test]
fn builtin_kubelet_api_admin_through_a_user_binding() {
    let p = load(&crb(
        "apiserver-kubelet",
        "system:kubelet-api-admin",
        "{kind: User, name: kube-apiserver}",
    ));
    let ask = |verb: &str, sub: &str| {
        let request = Request {
            user: "kube-apiserver",
            verb,
            subresource: sub,
            ..GET_NODE_PROXY
        };
        p.authorize(&request).map(GrantRef::to_grant)
    };
    let expected = Grant {
        binding: "ClusterRoleBinding/apiserver-kubelet".to_owned(),
        role: "ClusterRole/system:kubelet-api-admin".to_owned(),
        rule_index: 2,
    };
    assert_eq!(ask("get", "proxy"), Some(expected));
    assert!(ask("create", "proxy").is_some() && ask("get", "stats").is_some());
    assert_eq!(ask("get", "pods").map(|g| g.rule_index), Some(3));
    assert!(ask("get", "checkpoint").is_none() && ask("get", "spec").is_none());
    assert!(ask("proxy", "").is_some() && ask("delete", "").is_none());
    assert!(p.warnings().is_empty());
}

#[test]
fn system_masters_get_everything_through_builtin_cluster_admin() {
    let p = load("");
    let masters = ["system:masters".to_owned()];
    for (verb, sub) in [("get", "proxy"), ("create", "checkpoint"), ("", "log")] {
        let request = Request {
            user: "root",
            groups: &masters,
            verb,
            subresource: sub,
            name: "n",
            ..GET_NODE_PROXY
        };
        let grant = p.authorize(&request).expect("cluster-admin");
        assert_eq!(grant.binding, "ClusterRoleBinding/cluster-admin");
        assert_eq!((grant.role, grant.rule_index), ("ClusterRole/cluster-admin", 0));
    }
    assert!(
        p.authorize(&Request {
            user: "root",
            groups: &masters,
            verb: "delete",
            api_group: "apps",
            resource: "deployments",
            subresource: "",
            name: "x",
        })
        .is_some()
    );
    assert!(!can(&p, "root", &[], "get", "proxy"));
    assert!(can(&p, "system:kube-proxy", &[], "get", "") && !can(&p, "system:kube-proxy", &[], "get", "proxy"));
    assert!(p.warnings().is_empty());
}

#[test]
fn declared_objects_replace_builtins_of_the_same_name() {
    let role = "kind: ClusterRole\nmetadata: {name: cluster-admin}\nrules: [{apiGroups: [\"\"], resources: [nodes/stats], verbs: [get]}]\n";
    let p = load(role);
    assert!(can(&p, "root", &["system:masters"], "get", "stats"));
    assert!(!can(&p, "root", &["system:masters"], "get", "proxy"));
    assert_eq!(
        p.warnings(),
        ["ClusterRole cluster-admin replaces the built-in ClusterRole of the same name"]
    );

    let p = load(&crb("cluster-admin", "cluster-admin", "{kind: Group, name: admins}"));
    assert!(!can(&p, "root", &["system:masters"], "get", "proxy") && can(&p, "root", &["admins"], "get", "proxy"));
    assert!(p.warnings()[0].contains("replaces the built-in ClusterRoleBinding"));
    let twice = crb("b", "cluster-admin", "{kind: User, name: a}") + &crb("b", "cluster-admin", "");
    let p = load(&twice);
    assert!(!can(&p, "a", &[], "get", "proxy"), "the later definition wins");
    assert!(p.warnings()[0].contains("defined more than once"));
}

#[test]
fn earliest_loaded_binding_wins_and_owned_grants_agree() {
    let yaml = crb("one", "system:kubelet-api-admin", "{kind: Group, name: g}")
        + &crb("two", "cluster-admin", "{kind: User, name: alice}");
    let p = load(&yaml);
    let groups = ["g".to_owned()];
    let request = Request {
        groups: &groups,
        name: "n",
        ..GET_NODE_PROXY
    };
    let grant = p.authorize(&request).expect("granted");
    assert_eq!(
        (grant.binding, grant.role, grant.rule_index),
        ("ClusterRoleBinding/one", "ClusterRole/system:kubelet-api-admin", 2)
    );
    let owned = grant.to_grant();
    assert_eq!(
        (owned.binding.as_str(), owned.role.as_str(), owned.rule_index),
        (grant.binding, grant.role, 2)
    );
}

#[test]
fn policy_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RbacPolicy>();
}

/// kube-apiserver's `ValidatePolicyRule` dropped the "resource names cannot apply to multiple
/// resources" rule: a rule naming several subresources of one node must load and grant.
#[test]
fn resource_names_with_several_resources_load_as_the_api_server_accepts_them() {
    let p =
        bound("{apiGroups: [\"\"], resources: [nodes/stats, nodes/metrics], resourceNames: [node-1], verbs: [get]}");
    assert!(can(&p, "alice", &[], "get", "stats") && can(&p, "alice", &[], "get", "metrics"));
    let other = p.authorize(&Request {
        subresource: "stats",
        name: "node-b",
        ..GET_NODE_PROXY
    });
    assert!(other.is_none(), "the names still restrict");
}

/// Each rule ported from pkg/apis/rbac/validation/validation.go, with upstream's message, and
/// the v1 defaulting (omitted apiGroups) that makes the rest load.
#[test]
fn validation_follows_upstream_rule_by_rule() {
    let refused = [
        (
            "kind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [\"\"], resources: [nodes]}]",
            "ClusterRole \"r\": rules[0].verbs: Required value: verbs must contain at least one value",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: r}\nrules: [{resources: [nodes], verbs: [get]}]",
            "ClusterRole \"r\": rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        ),
        (
            "kind: Role\nmetadata: {name: r}\nrules: [{nonResourceURLs: [/x], verbs: [get]}]",
            "Role \"r\": rules[0].nonResourceURLs: Invalid value: []string{\"/x\"}: namespaced rules cannot apply to non-resource URLs",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: r}\nrules: [{nonResourceURLs: [/x], resources: [nodes], verbs: [get]}]",
            "ClusterRole \"r\": rules[0].nonResourceURLs: Invalid value: []string{\"/x\"}: rules cannot apply to both regular resources and non-resource URLs",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: r}\naggregationRule: {clusterRoleSelectors: []}",
            "ClusterRole \"r\": aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: r}\naggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: a, operator: In}]}]}",
            "ClusterRole \"r\": aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: r}\naggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: a, operator: Exists, values: [x]}]}]}",
            "ClusterRole \"r\": aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: r}\naggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: a, operator: Has}]}]}",
            "ClusterRole \"r\": aggregationRule.clusterRoleSelectors[0].matchExpressions[0].operator: Invalid value: \"Has\": not a valid selector operator",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: a/b}\n",
            "ClusterRole \"a/b\": metadata.name: Invalid value: \"a/b\": may not contain '/'",
        ),
        (
            "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\n",
            "ClusterRoleBinding \"b\": roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
        ),
        (
            "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac, kind: ClusterRole, name: r}\n",
            "ClusterRoleBinding \"b\": roleRef.apiGroup: Unsupported value: \"rbac\": supported values: \"rbac.authorization.k8s.io\"",
        ),
        (
            "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: ClusterRole, name: \"..\"}\n",
            "ClusterRoleBinding \"b\": roleRef.name: Invalid value: \"..\": may not be '..'",
        ),
        (
            "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: ClusterRole, name: r}\nsubjects: [{kind: ServiceAccount, name: orphan}]",
            "ClusterRoleBinding \"b\": subjects[0].namespace: Required value",
        ),
        (
            "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: ClusterRole, name: r}\nsubjects: [{kind: ServiceAccount, apiGroup: rbac.authorization.k8s.io, name: s, namespace: n}]",
            "ClusterRoleBinding \"b\": subjects[0].apiGroup: Unsupported value: \"rbac.authorization.k8s.io\": supported values: \"\"",
        ),
        (
            "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: ClusterRole, name: r}\nsubjects: [{kind: User, apiGroup: \"\", name: u}, {kind: Group, apiGroup: x, name: g}]",
            "ClusterRoleBinding \"b\": subjects[1].apiGroup: Unsupported value: \"x\": supported values: \"rbac.authorization.k8s.io\"",
        ),
        (
            "kind: RoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: user, name: a}]",
            "RoleBinding \"b\": subjects[0].kind: Unsupported value: \"user\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
        ),
    ];
    for (yaml, want) in refused {
        match try_load(yaml) {
            Err(RbacError::Invalid { message, .. }) => assert_eq!(message, want, "{yaml}"),
            other => panic!(
                "{yaml}: expected a validation error, got {:?}",
                other.map(|_| "a policy")
            ),
        }
    }
    // What upstream accepts (omitted apiGroups are defaulted; a RoleBinding's service account
    // takes the binding's namespace; an aggregated role may select with every operator).
    let accepted = [
        "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: ClusterRole, name: r}\nsubjects: [{kind: User, name: u}, {kind: Group, name: g}, {kind: ServiceAccount, name: s, namespace: n}]",
        "kind: RoleBinding\nmetadata: {name: b, namespace: n}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: s}]",
        "kind: ClusterRole\nmetadata: {name: r}\naggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: a, operator: NotIn, values: [x]}, {key: b, operator: DoesNotExist}]}]}",
        "kind: ClusterRole\nmetadata: {name: r}\nrules: [{nonResourceURLs: [/healthz], verbs: [get]}]",
    ];
    for yaml in accepted {
        assert!(try_load(yaml).is_ok(), "{yaml}");
    }
}
