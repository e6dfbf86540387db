//! The cluster around the CSR API, as a node joining it meets it: bootstrap tokens, the tokens
//! TokenReview knows, ClusterRoleBindings and what they allow (the bootstrap policy's roles:
//! kubernetes plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go `ClusterRoles`, plus the
//! Node authorizer's and `system:basic-user`'s grants), and kube-controller-manager's CSR
//! approver and `kubernetes.io/kube-apiserver-client-kubelet` signer
//! (pkg/controller/certificates/approver/sarapprove.go: a client CSR whose requester may
//! `create certificatesigningrequests/selfnodeclient` (renewal, requester = CN) or
//! `.../nodeclient` is approved with reason `AutoApproved`, and then signed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::authn::Caller;
use super::csr::{parse_csr, validate_kubelet_client};
use super::handle::CsrApi;
use super::record::conditions_of;
use super::store::{Inner, Res, decoded, str_at, str_list};
use super::{FAILED_REASON, lock};

pub const CLIENT_KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const NODE_BOOTSTRAPPER: &str = "system:node-bootstrapper";
pub const NODE_CLIENT: &str = "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
pub const SELF_NODE_CLIENT: &str = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";
/// sarapprove.go's messages.
pub const NODE_CLIENT_APPROVED: &str = "Auto approving kubelet client certificate after SubjectAccessReview.";
pub const SELF_NODE_CLIENT_APPROVED: &str = "Auto approving self kubelet client certificate after SubjectAccessReview.";

pub(super) struct BootstrapToken {
    pub(super) secret: String,
    pub(super) extra_groups: Vec<String>,
}

/// One ClusterRoleBinding: a role and its subjects as (kind, name), kind `User` or `Group`.
#[derive(Clone, Debug)]
pub struct Binding {
    pub name: String,
    pub role: String,
    pub subjects: Vec<(String, String)>,
}

pub(super) struct Cluster {
    pub(super) bootstrap_tokens: HashMap<String, BootstrapToken>,
    /// Tokens a TokenReview accepts: user and groups.
    pub(super) review_tokens: HashMap<String, (String, Vec<String>)>,
    pub(super) bindings: Vec<Binding>,
    /// kube-controller-manager's approver and client signer are running, issuing client
    /// certificates valid this long; `None`: client CSRs follow the mode like any other.
    pub(super) controller: Option<Duration>,
    /// Lifetimes for the next client certificates issued, before `controller`'s applies.
    pub(super) next_lifetimes: std::collections::VecDeque<Duration>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            bootstrap_tokens: HashMap::new(),
            review_tokens: HashMap::new(),
            bindings: Vec::new(),
            controller: Some(Duration::from_secs(3600)),
            next_lifetimes: Default::default(),
        }
    }
}

/// What a request asks to do, as RBAC sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attributes<'a> {
    pub(super) verb: &'a str,
    pub(super) group: &'a str,
    pub(super) resource: &'a str,
    pub(super) subresource: &'a str,
}

impl Attributes<'_> {
    /// kube-apiserver's 403 message.
    pub(super) fn forbidden(&self, user: &str) -> String {
        let resource = match self.subresource {
            "" => self.resource.to_string(),
            s => format!("{}/{s}", self.resource),
        };
        let qualified = match self.group {
            "" => self.resource.to_string(),
            g => format!("{}.{g}", self.resource),
        };
        format!(
            "{qualified} is forbidden: User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" at the cluster scope",
            self.verb, self.group
        )
    }
}

/// The bootstrap policy's roles this stand-in knows: (role, group, resource, subresource, verbs).
const ROLES: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        NODE_BOOTSTRAPPER,
        "certificates.k8s.io",
        "certificatesigningrequests",
        "",
        &["create", "get", "list", "watch"],
    ),
    (
        NODE_CLIENT,
        "certificates.k8s.io",
        "certificatesigningrequests",
        "nodeclient",
        &["create"],
    ),
    (
        SELF_NODE_CLIENT,
        "certificates.k8s.io",
        "certificatesigningrequests",
        "selfnodeclient",
        &["create"],
    ),
    (
        "system:auth-delegator",
        "authentication.k8s.io",
        "tokenreviews",
        "",
        &["create"],
    ),
];

impl Cluster {
    /// Whether `user` in `groups` may do `a`.
    pub(super) fn allows(&self, user: &str, groups: &[String], a: &Attributes<'_>) -> bool {
        let is = |group: &str, resource: &str, verbs: &[&str]| {
            a.group == group && a.resource == resource && a.subresource.is_empty() && verbs.contains(&a.verb)
        };
        // system:basic-user, bound to system:authenticated.
        if is("authentication.k8s.io", "selfsubjectreviews", &["create"])
            || is("authorization.k8s.io", "selfsubjectaccessreviews", &["create"])
        {
            return true;
        }
        // The Node authorizer and the system:node role: a node's own CSRs, reviews, Nodes.
        if groups.iter().any(|g| g == "system:nodes")
            && (is(
                "certificates.k8s.io",
                "certificatesigningrequests",
                &["create", "get", "list", "watch"],
            ) || is("authentication.k8s.io", "tokenreviews", &["create"])
                || is("authorization.k8s.io", "subjectaccessreviews", &["create"])
                || is("", "nodes", &["get", "list", "watch"]))
        {
            return true;
        }
        self.bindings.iter().any(|b| {
            let bound = b.subjects.iter().any(|(kind, name)| match kind.as_str() {
                "User" => name == user,
                "Group" => groups.contains(name),
                _ => false,
            });
            bound
                && ROLES.iter().any(|(role, group, resource, subresource, verbs)| {
                    *role == b.role
                        && *group == a.group
                        && *resource == a.resource
                        && *subresource == a.subresource
                        && verbs.contains(&a.verb)
                })
        })
    }

    /// The ClusterRoleBindings as `rbac.authorization.k8s.io/v1` objects (list items).
    pub(super) fn binding_objects(&self) -> Vec<Value> {
        self.bindings
            .iter()
            .map(|b| {
                json!({
                    "metadata": {"name": b.name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": b.role},
                    "subjects": b.subjects.iter().map(|(kind, name)| {
                        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name})
                    }).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
}

impl Caller {
    pub(super) fn may(&self, inner: &Inner, a: &Attributes<'_>) -> bool {
        self.superuser || lock(&inner.state).cluster.allows(&self.user, &self.groups, a)
    }
}

impl Inner {
    /// kube-controller-manager on a client-kubelet CSR just created: `Some(true)` when it
    /// approved (and signed) it, `Some(false)` when it left it pending, `None` when the
    /// controller is off or the CSR is not its kind.
    pub(super) fn controller_handles(self: &Arc<Self>, name: &str) -> Option<bool> {
        let (mut lifetime, request, signer, usages, username, groups) = {
            let state = lock(&self.state);
            let lifetime = state.cluster.controller?;
            let object = state.get(Res::Csr, name)?;
            (
                lifetime,
                decoded(object, "/spec/request").unwrap_or_default(),
                str_at(object, "/spec/signerName"),
                str_list(object.pointer("/spec/usages")),
                str_at(object, "/spec/username"),
                str_list(object.pointer("/spec/groups")),
            )
        };
        if signer != CLIENT_KUBELET_SIGNER {
            return None;
        }
        let Ok(csr) = parse_csr(&request) else {
            return Some(false);
        };
        // The recognizers, in sarapprove.go's order: selfnodeclient, then nodeclient.
        if validate_kubelet_client(&csr, &usages).is_err() {
            return Some(false);
        }
        let mut tried = Vec::new();
        if username == csr.common_name() {
            tried.push(("selfnodeclient", SELF_NODE_CLIENT_APPROVED));
        }
        tried.push(("nodeclient", NODE_CLIENT_APPROVED));
        for (subresource, message) in tried {
            let attributes = Attributes {
                verb: "create",
                group: "certificates.k8s.io",
                resource: "certificatesigningrequests",
                subresource,
            };
            let allowed = {
                let mut state = lock(&self.state);
                let allowed = state.cluster.allows(&username, &groups, &attributes);
                if allowed && let Some(first) = state.cluster.next_lifetimes.pop_front() {
                    lifetime = first;
                }
                allowed
            };
            if allowed {
                let _ = self.add_condition(name, "Approved", "AutoApproved", message);
                if let Err(e) = self.issue(name, lifetime) {
                    let _ = self.add_condition(name, "Failed", FAILED_REASON, &e);
                }
                return Some(true);
            }
        }
        Some(false)
    }
}

/// Scripting the cluster.
impl CsrApi {
    /// A bootstrap token `<id>.<secret>` (kubeadm's Secret `bootstrap-token-<id>` with
    /// `usage-bootstrap-authentication: "true"` and `auth-extra-groups`).
    pub fn add_bootstrap_token(&self, token: &str, extra_groups: &[&str]) {
        let (id, secret) = token.split_once('.').expect("<id>.<secret>");
        lock(&self.inner.state).cluster.bootstrap_tokens.insert(
            id.to_string(),
            BootstrapToken {
                secret: secret.to_string(),
                extra_groups: extra_groups.iter().map(|g| g.to_string()).collect(),
            },
        );
    }

    /// Deletes a bootstrap token (it expired): it no longer authenticates.
    pub fn remove_bootstrap_token(&self, token: &str) {
        let id = token.split('.').next().unwrap_or("");
        lock(&self.inner.state).cluster.bootstrap_tokens.remove(id);
    }

    /// A token TokenReview answers as `user` in `groups` (for the gateway's webhook).
    pub fn add_review_token(&self, token: &str, user: &str, groups: &[&str]) {
        lock(&self.inner.state).cluster.review_tokens.insert(
            token.to_string(),
            (user.to_string(), groups.iter().map(|g| g.to_string()).collect()),
        );
    }

    /// A ClusterRoleBinding of `role` to the subjects, each `("User"|"Group", name)`.
    pub fn bind(&self, name: &str, role: &str, subjects: &[(&str, &str)]) {
        let mut state = lock(&self.inner.state);
        state.cluster.bindings.retain(|b| b.name != name);
        state.cluster.bindings.push(Binding {
            name: name.to_string(),
            role: role.to_string(),
            subjects: subjects.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect(),
        });
    }

    pub fn unbind(&self, name: &str) {
        lock(&self.inner.state).cluster.bindings.retain(|b| b.name != name);
    }

    /// kubeadm's three bindings for `group` (a bootstrap token's extra group): CSR creation
    /// (`kubeadm:kubelet-bootstrap`), auto-approval of the first CSR
    /// (`kubeadm:node-autoapprove-bootstrap`) and of renewals by nodes
    /// (`kubeadm:node-autoapprove-certificate-rotation`).
    pub fn kubeadm_bindings(&self, group: &str) {
        self.bind("kubeadm:kubelet-bootstrap", NODE_BOOTSTRAPPER, &[("Group", group)]);
        self.bind("kubeadm:node-autoapprove-bootstrap", NODE_CLIENT, &[("Group", group)]);
        self.bind(
            "kubeadm:node-autoapprove-certificate-rotation",
            SELF_NODE_CLIENT,
            &[("Group", "system:nodes")],
        );
    }

    /// kube-controller-manager's approver and client signer: on, issuing client certificates
    /// valid for `lifetime` (the default: an hour), or off (`None`: client CSRs then follow
    /// [`super::Mode`]).
    pub fn set_controller(&self, lifetime: Option<Duration>) {
        lock(&self.inner.state).cluster.controller = lifetime;
    }

    /// The next client certificates the controller issues are valid for these lifetimes, in
    /// order; then for the controller's own again.
    pub fn next_client_lifetimes(&self, lifetimes: &[Duration]) {
        lock(&self.inner.state).cluster.next_lifetimes = lifetimes.iter().copied().collect();
    }

    /// The client signer's CA: what the API server trusts client certificates from.
    pub fn client_signer(&self) -> &super::signer::SignerCa {
        &self.inner.client_signer
    }

    /// Every request as authenticated, in order.
    pub fn calls(&self) -> Vec<super::record::Call> {
        lock(&self.inner.calls).clone()
    }

    /// Was the CSR approved by the controller (reason `AutoApproved`), and with which message.
    pub fn auto_approval(&self, name: &str) -> Option<String> {
        let state = lock(&self.inner.state);
        let object = state.get(Res::Csr, name)?;
        conditions_of(object)
            .into_iter()
            .find(|c| c.type_ == "Approved" && c.reason == "AutoApproved")
            .map(|c| c.message)
    }
}
