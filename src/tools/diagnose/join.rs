//! `diagnose --bootstrap-kubeconfig FILE`: would a node joining with this bootstrap kubeconfig
//! get its client certificate? The same file serves the gateway's `bootstrapKubeconfig` and a
//! kubelet's `--bootstrap-kubeconfig`, so the checks are the same for both:
//!
//! 1. the token has the documented form (k8s.io/cluster-bootstrap token/api/types.go
//!    `BootstrapTokenPattern`); a malformed one is never sent;
//! 2. the API server answers, and its certificate verifies against the kubeconfig's CA as a Go
//!    client (the kubelet) verifies it (`x509`);
//! 3. the token authenticates: a SelfSubjectReview, or where the API server has none (before
//!    1.28) a list of CSRs, which tells 401 from 403;
//! 4. it may create CSRs (`system:node-bootstrapper`), and kube-controller-manager will approve
//!    the first one: a SelfSubjectAccessReview for `create certificatesigningrequests/nodeclient`,
//!    what pkg/controller/certificates/approver/sarapprove.go asks about the requester;
//! 5. renewals will be approved: a ClusterRoleBinding of
//!    `system:certificates.k8s.io:certificatesigningrequests:selfnodeclient` to `system:nodes` (or
//!    the node's user), read with `--kubeconfig` when given (the bootstrap token may not list
//!    them);
//! 6. what the node's `kubernetes.io/kube-apiserver-client-kubelet` CSRs say.
//!
//! The roles are the bootstrap policy's (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/
//! policy.go `ClusterRoles`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cluster::{self, CsrState};
use super::x509::{self, CertPool, Certificate};
use super::{Check, Verdict, connect, split_target};
use crate::certs::client::{self as join, SIGNER};
use crate::k8s::kubeconfig::Loaded;
use crate::k8s::{ApiClient, Backoff, CallError, CallPolicy};
use crate::tools::ToolError;

pub const NODE_BOOTSTRAPPER: &str = "system:node-bootstrapper";
pub const NODE_CLIENT: &str = "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
pub const SELF_NODE_CLIENT: &str = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";
const SELF_SUBJECT_REVIEW: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const SELF_SUBJECT_ACCESS_REVIEW: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const CLUSTER_ROLE_BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
/// A CSR pending longer than this was not auto-approved (the approver acts within seconds).
const PENDING_WARNING_SECS: i64 = 60;

/// What to diagnose.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub bootstrap_kubeconfig: PathBuf,
    /// An identity that may list ClusterRoleBindings and CSRs (an administrator's).
    pub kubeconfig: Option<PathBuf>,
    /// The node that joins: its CSRs are the ones asking for `system:node:<node>`.
    pub node: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct JoinReport {
    #[serde(rename = "bootstrapKubeconfig")]
    pub bootstrap_kubeconfig: String,
    pub server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub checks: Vec<Check>,
    /// The join would work: no check failed.
    pub ok: bool,
}

impl JoinReport {
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Who the token is, from a SelfSubjectReview.
#[derive(Debug, Clone, Default, Deserialize)]
struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

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

fn policy(timeout: Duration) -> CallPolicy {
    CallPolicy {
        deadline: timeout,
        max_in_flight: 4,
        backoff: Backoff {
            initial: Duration::from_millis(200),
            factor: 2.0,
            jitter: 0.2,
            steps: 2,
        },
    }
}

/// `kubectl create clusterrolebinding NAME --clusterrole=ROLE --group=GROUP`.
fn bind_command(name: &str, role: &str, group: &str) -> String {
    format!("kubectl create clusterrolebinding {name} --clusterrole={role} --group={group}")
}

/// Runs every check. `Err` only for an unreadable file.
pub async fn run(o: &JoinOptions, now: i64) -> Result<JoinReport, ToolError> {
    crate::crypto::install_default_provider();
    let path = &o.bootstrap_kubeconfig;
    let usage = |m: String| ToolError::Usage(format!("--bootstrap-kubeconfig {}: {m}", path.display()));
    let loaded = Loaded::read(path).map_err(|e| usage(e.to_string()))?;
    let mut checks = Vec::new();

    // 1. The token's form.
    let token = loaded.bearer_token();
    let token_ok = match &token {
        Err(e) => {
            checks.push(
                Check::new("bootstrap-token", Verdict::Fail, "the bootstrap token cannot be read")
                    .error(e.to_string())
                    .fix("make tokenFile readable, or put the token in the kubeconfig's user as token:"),
            );
            false
        }
        Ok(None) if loaded.client_cert.is_some() => {
            checks.push(Check::new(
                "bootstrap-token",
                Verdict::Info,
                "the bootstrap kubeconfig has a client certificate instead of a token; it is used as it is",
            ));
            true
        }
        Ok(None) => {
            checks.push(
                Check::new("bootstrap-token", Verdict::Fail, "the bootstrap kubeconfig has no token")
                    .fix("create a bootstrap token (kubeadm token create) and set it as the user's token: in the bootstrap kubeconfig"),
            );
            false
        }
        Ok(Some(t)) => match join::check_token_form(t.expose_secret()) {
            Ok(()) => {
                let id = join::token_id(t.expose_secret()).unwrap_or_default();
                checks.push(
                    Check::new(
                        "bootstrap-token",
                        Verdict::Pass,
                        format!("token {id}.<secret> has the documented form"),
                    )
                    .evidence(format!(
                        "it authenticates, if the cluster knows it, as system:bootstrap:{id}"
                    )),
                );
                true
            }
            Err(e) => {
                let t = t.expose_secret();
                let shape = match t.split_once('.') {
                    Some((id, secret)) => format!(
                        "{} characters: an id of {} and a secret of {} (6 and 16 of [a-z0-9] expected)",
                        t.len(),
                        id.len(),
                        secret.len()
                    ),
                    None => format!("{} characters and no '.'", t.len()),
                };
                checks.push(
                    Check::new("bootstrap-token", Verdict::Fail, "the token is not a bootstrap token; it is not sent")
                        .error(e.to_string())
                        .evidence(shape)
                        .fix("a bootstrap token is <token-id>.<token-secret>, 6 and 16 characters of [a-z0-9]: create one with kubeadm token create (or a Secret bootstrap-token-<id> of type bootstrap.kubernetes.io/token in kube-system) and copy it whole"),
                );
                false
            }
        },
    };

    // 2. The API server and its certificate.
    let tls_ok = apiserver_tls(&loaded, o.timeout, now, &mut checks).await;
    let report = |checks: Vec<Check>| {
        let ok = !checks.iter().any(|c| c.verdict == Verdict::Fail);
        JoinReport {
            bootstrap_kubeconfig: path.display().to_string(),
            server: loaded.server.clone(),
            node: o.node.clone(),
            checks,
            ok,
        }
    };
    if !token_ok || !tls_ok {
        let why = if token_ok {
            "the API server could not be reached safely"
        } else {
            "the token is not usable"
        };
        checks.push(Check::new(
            "bootstrap-auth",
            Verdict::Info,
            format!("not checked: {why}"),
        ));
        return Ok(report(checks));
    }

    // 3. Does the token authenticate?
    let api = match ApiClient::connect(Some(path), policy(o.timeout)).await {
        Ok(api) => api,
        Err(e) => {
            checks.push(
                Check::new(
                    "bootstrap-auth",
                    Verdict::Fail,
                    "no API client from the bootstrap kubeconfig",
                )
                .error(e.to_string()),
            );
            return Ok(report(checks));
        }
    };
    let Some(user) = authenticates(&api, &mut checks).await else {
        return Ok(report(checks));
    };

    // 4. May it create CSRs, and will the first one be approved?
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

    // 5. Will renewals be approved? The bindings, read as whoever may.
    let admin = match &o.kubeconfig {
        Some(k) => Some(
            ApiClient::connect(Some(k), policy(o.timeout))
                .await
                .map_err(|e| ToolError::Usage(format!("--kubeconfig: {e}")))?,
        ),
        None => None,
    };
    let reader = admin.as_ref().unwrap_or(&api);
    checks.push(renewal_binding(reader, o.node.as_deref(), admin.is_some()).await);

    // 6. The node's client CSRs.
    checks.push(client_csrs(reader, &user, o.node.as_deref(), now).await);
    Ok(report(checks))
}

/// Check 2: connect as the kubelet does and verify the API server's certificate against the
/// kubeconfig's CA, in Go's words.
async fn apiserver_tls(loaded: &Loaded, timeout: Duration, now: i64, checks: &mut Vec<Check>) -> bool {
    let server = loaded.server.as_str();
    let Some(authority) = server
        .strip_prefix("https://")
        .map(|r| r.split('/').next().unwrap_or(r))
    else {
        checks.push(
            Check::new(
                "apiserver-tls",
                Verdict::Fail,
                format!("the server {server} is not an https:// URL"),
            )
            .fix("the bootstrap kubeconfig's cluster server must be kube-apiserver's https:// address"),
        );
        return false;
    };
    let (host, port) = match split_target(authority) {
        Ok((h, p)) => (h, p.unwrap_or(443)),
        Err(e) => {
            checks.push(
                Check::new(
                    "apiserver-tls",
                    Verdict::Fail,
                    format!("the server {server} is not a URL"),
                )
                .error(e),
            );
            return false;
        }
    };
    let session = match connect::connect(&host, port, None, timeout).await {
        Ok(s) => s,
        Err(e) => {
            checks.push(
                Check::new("apiserver-tls", Verdict::Fail, format!("cannot reach the API server at {server}"))
                    .error(e.message)
                    .fix("check the server URL in the bootstrap kubeconfig, and that kube-apiserver listens there and this node may reach it"),
            );
            return false;
        }
    };
    if loaded.insecure {
        checks.push(
            Check::new(
                "apiserver-tls",
                Verdict::Warn,
                format!("{server} answers; its certificate is not verified"),
            )
            .evidence("insecure-skip-tls-verify: true: anyone on the path can take the token")
            .fix("set certificate-authority(-data) to the cluster CA instead"),
        );
        return true;
    }
    let ca = match loaded.ca_pem() {
        Ok(Some(pem)) => pem,
        Ok(None) => {
            checks.push(
                Check::new(
                    "apiserver-tls",
                    Verdict::Warn,
                    format!("{server} answers; the bootstrap kubeconfig names no CA"),
                )
                .evidence("the system's trust store decides, which this check does not read")
                .fix("set certificate-authority-data to the cluster CA (kubeadm: /etc/kubernetes/pki/ca.crt)"),
            );
            return true;
        }
        Err(e) => {
            checks
                .push(Check::new("apiserver-tls", Verdict::Fail, "the CA bundle cannot be read").error(e.to_string()));
            return false;
        }
    };
    let mut roots = CertPool::new();
    use rustls_pki_types::pem::PemObject as _;
    for der in rustls_pki_types::CertificateDer::pem_slice_iter(&ca).flatten() {
        if let Ok(c) = Certificate::parse(&der) {
            roots.add(c);
        }
    }
    let chain: Result<Vec<Certificate>, String> = session.chain.iter().map(|d| Certificate::parse(d)).collect();
    let name = loaded.tls_server_name.clone().unwrap_or_else(|| host.clone());
    let verdict = match chain {
        Err(e) => Err(e),
        Ok(certs) => x509::verify_server_certificate(&certs, Some(&roots), &name, now).map_err(|e| e.to_string()),
    };
    match verdict {
        Ok(()) => {
            checks.push(
                Check::new(
                    "apiserver-tls",
                    Verdict::Pass,
                    format!("{server} answers with a certificate the kubeconfig's CA verifies"),
                )
                .evidence(format!("{} CA certificate(s) in the bootstrap kubeconfig", roots.len())),
            );
            true
        }
        Err(e) => {
            checks.push(
                Check::new("apiserver-tls", Verdict::Fail, "the API server's certificate does not verify against the bootstrap kubeconfig's CA; the token is not sent")
                    .error(e)
                    .fix("set certificate-authority-data to the cluster CA that signed kube-apiserver's certificate (kubeadm: /etc/kubernetes/pki/ca.crt; kubeadm join checks it with --discovery-token-ca-cert-hash)"),
            );
            false
        }
    }
}

/// Check 3: who the token is. `None` when it does not authenticate (the check says why).
async fn authenticates(api: &ApiClient, checks: &mut Vec<Check>) -> Option<UserInfo> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let unknown = |e: &CallError| {
        Check::new("bootstrap-auth", Verdict::Fail, "the API server does not accept the token (401 Unauthorized)")
            .error(e.to_string())
            .fix("the token expired (kubeadm tokens live 24h) or was deleted: see kubectl -n kube-system get secret bootstrap-token-<id>; create a new one with kubeadm token create and put it in the bootstrap kubeconfig")
    };
    match api.create::<Value>(SELF_SUBJECT_REVIEW, &review).await {
        Ok(v) => {
            let user: UserInfo = v
                .pointer("/status/userInfo")
                .cloned()
                .and_then(|u| serde_json::from_value(u).ok())
                .unwrap_or_default();
            let mut check = Check::new(
                "bootstrap-auth",
                Verdict::Pass,
                format!("the token authenticates as {}", user.username),
            )
            .evidence(format!("groups: {}", user.groups.join(", ")));
            if !user.username.starts_with("system:bootstrap:") {
                check.verdict = Verdict::Warn;
                check = check.evidence("not a bootstrap token's user (system:bootstrap:<id>): the approver's bindings usually name system:bootstrappers");
            }
            checks.push(check);
            Some(user)
        }
        Err(e @ CallError::Status { status: 401, .. }) => {
            checks.push(unknown(&e));
            None
        }
        // No SelfSubjectReview (before 1.28): a harmless list tells 401 from the rest.
        Err(CallError::Status { status: 404, .. }) => match api.get::<Value>(&format!("{CSR_PATH}?limit=1")).await {
            Err(e @ CallError::Status { status: 401, .. }) => {
                checks.push(unknown(&e));
                None
            }
            Ok(_) | Err(CallError::Status { .. }) => {
                checks.push(Check::new(
                    "bootstrap-auth",
                    Verdict::Pass,
                    "the token authenticates (the API server has no SelfSubjectReview to say as whom)",
                ));
                Some(UserInfo::default())
            }
            Err(e) => {
                checks.push(
                    Check::new("bootstrap-auth", Verdict::Fail, "no answer from the API server").error(e.to_string()),
                );
                None
            }
        },
        Err(e) => {
            checks.push(
                Check::new("bootstrap-auth", Verdict::Fail, "no answer from the API server").error(e.to_string()),
            );
            None
        }
    }
}

/// Check 5: a binding that lets nodes renew their own client certificates.
async fn renewal_binding(reader: &ApiClient, node: Option<&str>, admin: bool) -> Check {
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
async fn client_csrs(reader: &ApiClient, user: &UserInfo, node: Option<&str>, now: i64) -> Check {
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

/// The report for people.
pub fn render(r: &JoinReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "diagnose the join with {} (API server {})",
        r.bootstrap_kubeconfig, r.server
    );
    let _ = writeln!(out);
    super::render_checks(&mut out, &r.checks);
    let _ = writeln!(out);
    let count = |v| r.checks.iter().filter(|c| c.verdict == v).count();
    if r.ok {
        let _ = writeln!(
            out,
            "a node joining with this bootstrap kubeconfig would get its client certificate ({} warning(s)).",
            count(Verdict::Warn)
        );
    } else {
        let _ = writeln!(
            out,
            "a node joining with this bootstrap kubeconfig would NOT get its client certificate: {} failure(s), {} warning(s).",
            count(Verdict::Fail),
            count(Verdict::Warn)
        );
    }
    out
}
