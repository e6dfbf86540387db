//! Will the join and the renewals be approved: the requester's own rights, asked with
//! SelfSubjectAccessReviews (what pkg/controller/certificates/approver/sarapprove.go asks about
//! the requester), the ClusterRoleBindings that grant renewals, and the node's client CSRs.

use serde::Deserialize;
use serde_json::{Value, json};

use super::super::cluster::{self, CsrState};
use super::super::{Check, Verdict};
use super::{
    CLUSTER_ROLE_BINDINGS, NODE_BOOTSTRAPPER, NODE_CLIENT, PENDING_WARNING_SECS, SELF_NODE_CLIENT,
    SELF_SUBJECT_ACCESS_REVIEW, UserInfo,
};
use crate::certs::client::SIGNER;
use crate::k8s::ApiClient;

#[derive(Debug, Clone, Deserialize)]
struct BindingList {
    #[serde(default)]
    items: Vec<Binding>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Binding {
    #[serde(default)]
    metadata: Meta,
    role_ref: RoleRef,
    #[serde(default)]
    subjects: Vec<Subject>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RoleRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Subject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

impl Binding {
    fn describe(&self) -> String {
        let subjects: Vec<String> = self.subjects.iter().map(|s| format!("{} {}", s.kind, s.name)).collect();
        format!(
            "{} -> {} [{}]",
            self.metadata.name,
            self.role_ref.name,
            subjects.join(", ")
        )
    }

    fn binds(&self, role: &str, user: &str, groups: &[String]) -> bool {
        self.role_ref.kind == "ClusterRole"
            && self.role_ref.name == role
            && self.subjects.iter().any(|s| match s.kind.as_str() {
                "User" => s.name == user,
                "Group" => groups.contains(&s.name),
                _ => false,
            })
    }
}

/// `kubectl create clusterrolebinding NAME --clusterrole=ROLE --group=GROUP`.
fn bind_command(name: &str, role: &str, group: &str) -> String {
    format!("kubectl create clusterrolebinding {name} --clusterrole={role} --group={group}")
}

/// Check 4: may the token create CSRs (`system:node-bootstrapper`), and will
/// kube-controller-manager approve the first one (`nodeclient`)?
pub(super) async fn first_join(api: &ApiClient, user: &UserInfo) -> Vec<Check> {
    let mut checks = Vec::new();
    let extra_group = user
        .groups
        .iter()
        .find(|g| g.starts_with("system:bootstrappers:"))
        .cloned()
        .unwrap_or_else(|| "system:bootstrappers".into());
    for (id, subresource, role, binding, what) in [
        (
            "csr-create",
            "",
            NODE_BOOTSTRAPPER,
            "kubelet-bootstrap",
            "create certificatesigningrequests",
        ),
        (
            "nodeclient",
            "nodeclient",
            NODE_CLIENT,
            "node-autoapprove-bootstrap",
            "create certificatesigningrequests/nodeclient",
        ),
    ] {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {
                "group": "certificates.k8s.io",
                "resource": "certificatesigningrequests",
                "subresource": subresource,
                "verb": "create",
            }},
        });
        let check = match api.create::<Value>(SELF_SUBJECT_ACCESS_REVIEW, &review).await {
            Ok(v) if v.pointer("/status/allowed").and_then(Value::as_bool) == Some(true) => {
                let summary = match id {
                    "csr-create" => format!("{} may create CSRs", user.username),
                    _ => format!(
                        "kube-controller-manager approves the first CSR: {} may {what}",
                        user.username
                    ),
                };
                Check::new(id, Verdict::Pass, summary)
            }
            Ok(_) => {
                let summary = match id {
                    "csr-create" => format!("{} may not create CSRs: the join fails with 403", user.username),
                    _ => format!(
                        "kube-controller-manager will not approve the first CSR: {} may not {what}; it stays Pending",
                        user.username
                    ),
                };
                Check::new(id, Verdict::Fail, summary)
                    .evidence(format!("the token's groups: {}", user.groups.join(", ")))
                    .fix(bind_command(binding, role, &extra_group))
            }
            Err(e) => Check::new(
                id,
                Verdict::Warn,
                format!("cannot tell whether {} may {what}", user.username),
            )
            .error(e.to_string()),
        };
        checks.push(check);
    }
    checks
}

/// Check 5: a binding that lets nodes renew their own client certificates.
pub(super) async fn renewal_binding(reader: &ApiClient, node: Option<&str>, admin: bool) -> Check {
    let id = "selfnodeclient";
    let bindings: BindingList = match reader.get(CLUSTER_ROLE_BINDINGS).await {
        Ok(b) => b,
        Err(e) => {
            let hint = if admin {
                "the --kubeconfig identity may not list clusterrolebindings"
            } else {
                "the bootstrap token may not list clusterrolebindings: give --kubeconfig of an identity that may"
            };
            return Check::new(id, Verdict::Info, "cannot tell whether renewals will be approved")
                .error(e.to_string())
                .evidence(hint);
        }
    };
    let user = node.map(|n| format!("system:node:{n}")).unwrap_or_default();
    let nodes = vec!["system:nodes".to_string()];
    let granting: Vec<&Binding> = bindings
        .items
        .iter()
        .filter(|b| b.binds(SELF_NODE_CLIENT, &user, &nodes))
        .collect();
    let approvals: Vec<String> = bindings
        .items
        .iter()
        .filter(|b| {
            b.role_ref.name == NODE_CLIENT
                || b.role_ref.name == SELF_NODE_CLIENT
                || b.role_ref.name == NODE_BOOTSTRAPPER
        })
        .map(Binding::describe)
        .collect();
    let mut check = if granting.is_empty() {
        Check::new(
            id,
            Verdict::Fail,
            "no binding lets nodes renew: each renewal waits for a manual approval, and the certificate expires meanwhile",
        )
        .fix(bind_command("node-autoapprove-certificate-rotation", SELF_NODE_CLIENT, "system:nodes"))
    } else {
        Check::new(
            id,
            Verdict::Pass,
            "renewals are approved: system:nodes may create certificatesigningrequests/selfnodeclient",
        )
    };
    for a in approvals {
        check = check.evidence(a);
    }
    check
}

/// Check 6: the node's client CSRs (by the token's user, or for `system:node:<node>`).
pub(super) async fn client_csrs(reader: &ApiClient, user: &UserInfo, node: Option<&str>, now: i64) -> Check {
    let id = "client-csr";
    let csrs = match cluster::csrs_of_signer(reader, SIGNER).await {
        Ok(c) => c,
        Err(e) => {
            return Check::new(id, Verdict::Info, "cannot list the client CSRs").error(e.to_string());
        }
    };
    let cn = node.map(|n| format!("system:node:{n}"));
    let mine: Vec<&cluster::Csr> = csrs
        .iter()
        .filter(|c| {
            (!user.username.is_empty() && c.requester == user.username)
                || cn.as_deref().is_some_and(|cn| c.common_name.as_deref() == Some(cn))
        })
        .collect();
    let Some(last) = mine.last() else {
        return Check::new(
            id,
            Verdict::Info,
            "no kube-apiserver-client-kubelet CSR from this node yet",
        );
    };
    let age = last.created.map(|c| now - c).unwrap_or(0);
    let mut check = match &last.state {
        CsrState::Issued => Check::new(id, Verdict::Pass, format!("the latest client CSR, {}, is issued", last.name)),
        CsrState::Pending if age > PENDING_WARNING_SECS => Check::new(
            id,
            Verdict::Warn,
            format!("{} is still pending: kube-controller-manager did not approve it", last.name),
        )
        .fix(format!(
            "add the approval binding above, or check that kube-controller-manager runs its csrapproving controller; or approve it: kubectl certificate approve {}",
            last.name
        )),
        CsrState::Pending => Check::new(id, Verdict::Info, format!("{} is pending", last.name)),
        CsrState::Approved => Check::new(
            id,
            Verdict::Warn,
            format!("{} is approved but not issued", last.name),
        )
        .fix("kube-controller-manager signs client-kubelet CSRs only with --cluster-signing-cert-file and --cluster-signing-key-file (or --cluster-signing-kube-apiserver-client-kubelet-*)"),
        CsrState::Denied { reason, message } => Check::new(id, Verdict::Fail, format!("{} is denied", last.name))
            .error(format!("certificate signing request is denied, reason: {reason}, message: {message}"))
            .fix("find out who denied it (an approver policy, an operator); the node retries with a new CSR"),
        CsrState::Failed { reason, message } => Check::new(id, Verdict::Fail, format!("{} failed", last.name))
            .error(format!("certificate signing request failed, reason: {reason}, message: {message}"))
            .fix("the signer refused it: it must ask for CN=system:node:<node>, O=system:nodes, no SANs, usages digital signature and client auth"),
    };
    for c in &mine {
        check = check.evidence(format!("{} (by {})", c.describe(now), c.requester));
    }
    check
}
