//! Bootstrap RBAC objects that kube-apiserver creates at startup, limited to the ones that can
//! matter for kubelet API (`nodes/*`) requests. Transcribed in meaning from kubernetes/kubernetes
//! `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go` (rule order kept, because
//! `Grant::rule_index` points into it) and checked against its generated
//! `testdata/cluster-roles*.yaml`.

use std::collections::BTreeMap;

use super::manifest::Rule;

struct BuiltinRule {
    verbs: &'static [&'static str],
    api_groups: &'static [&'static str],
    resources: &'static [&'static str],
    non_resource_urls: &'static [&'static str],
}

struct BuiltinClusterRole {
    name: &'static str,
    rules: &'static [BuiltinRule],
}

struct BuiltinClusterRoleBinding {
    name: &'static str,
    cluster_role: &'static str,
    users: &'static [&'static str],
    groups: &'static [&'static str],
}

/// Every bootstrap object carries this label, so aggregation selectors can pick them up.
const BOOTSTRAP_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| (*x).to_owned()).collect()
}

/// The built-in ClusterRoles as (name, labels, rules).
pub(super) fn cluster_roles() -> impl Iterator<Item = (String, BTreeMap<String, String>, Vec<Rule>)> {
    CLUSTER_ROLES.iter().map(|role| {
        let labels = BTreeMap::from([(BOOTSTRAP_LABEL.0.to_owned(), BOOTSTRAP_LABEL.1.to_owned())]);
        let rules = role.rules.iter().map(|r| Rule {
            verbs: strings(r.verbs),
            api_groups: strings(r.api_groups),
            resources: strings(r.resources),
            resource_names: Vec::new(),
            non_resource_urls: strings(r.non_resource_urls),
        });
        (role.name.to_owned(), labels, rules.collect())
    })
}

/// The built-in ClusterRoleBindings as (name, ClusterRole, users, groups).
pub(super) fn cluster_role_bindings() -> impl Iterator<Item = (String, String, Vec<String>, Vec<String>)> {
    CLUSTER_ROLE_BINDINGS.iter().map(|b| {
        (
            b.name.to_owned(),
            b.cluster_role.to_owned(),
            strings(b.users),
            strings(b.groups),
        )
    })
}

const fn resource_rule(
    verbs: &'static [&'static str],
    api_groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> BuiltinRule {
    BuiltinRule {
        verbs,
        api_groups,
        resources,
        non_resource_urls: &[],
    }
}

const fn url_rule(verbs: &'static [&'static str], urls: &'static [&'static str]) -> BuiltinRule {
    BuiltinRule {
        verbs,
        api_groups: &[],
        resources: &[],
        non_resource_urls: urls,
    }
}

static CLUSTER_ROLES: &[BuiltinClusterRole] = &[
    BuiltinClusterRole {
        name: "cluster-admin",
        rules: &[resource_rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
    },
    BuiltinClusterRole {
        name: "system:kubelet-api-admin",
        rules: &[
            resource_rule(&["get", "list", "watch"], &[""], &["nodes"]),
            resource_rule(&["proxy"], &[""], &["nodes"]),
            // `nodes/spec` is deliberately absent: policy.go dropped it in v1.27
            // (kubernetes/kubernetes#113267) after the kubelet removed /spec in v1.21.
            resource_rule(
                &["*"],
                &[""],
                &["nodes/proxy", "nodes/metrics", "nodes/stats", "nodes/log"],
            ),
            // policy.go adds this rule when KubeletFineGrainedAuthz is on; the gate is GA and
            // locked on in 1.36, so it is unconditional here. `nodes/checkpoint` and
            // `nodes/statusz` are not granted by upstream either (#126724 was closed unmerged).
            resource_rule(&["*"], &[""], &["nodes/pods", "nodes/healthz", "nodes/configz"]),
        ],
    },
    BuiltinClusterRole {
        name: "system:node-proxier",
        rules: &[
            resource_rule(&["list", "watch"], &[""], &["services", "endpoints"]),
            resource_rule(&["get", "list", "watch"], &[""], &["nodes"]),
            resource_rule(&["create", "update", "patch"], &["", "events.k8s.io"], &["events"]),
            // Gated on MultiCIDRServiceAllocator upstream, which is GA (on) by 1.36.
            resource_rule(&["list", "watch"], &["networking.k8s.io"], &["servicecidrs"]),
            resource_rule(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
        ],
    },
    BuiltinClusterRole {
        // Only the ungated rule: the /flagz and /statusz rules depend on alpha gates.
        name: "system:monitoring",
        rules: &[url_rule(
            &["get"],
            &[
                "/metrics",
                "/metrics/slis",
                "/livez",
                "/readyz",
                "/healthz",
                "/livez/*",
                "/readyz/*",
                "/healthz/*",
            ],
        )],
    },
];

static CLUSTER_ROLE_BINDINGS: &[BuiltinClusterRoleBinding] = &[
    BuiltinClusterRoleBinding {
        name: "cluster-admin",
        cluster_role: "cluster-admin",
        users: &[],
        groups: &["system:masters"],
    },
    BuiltinClusterRoleBinding {
        name: "system:node-proxier",
        cluster_role: "system:node-proxier",
        users: &["system:kube-proxy"],
        groups: &[],
    },
];
