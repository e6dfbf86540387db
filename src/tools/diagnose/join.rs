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
//! policy.go `ClusterRoles`). Checks 1 to 3 are in `access`, 4 to 6 in `approval`; this file
//! runs them in order and renders the report.

mod access;
mod approval;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Check, Verdict};
use crate::k8s::kubeconfig::Loaded;
use crate::k8s::{ApiClient, Backoff, CallPolicy};
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

/// Runs every check. `Err` only for an unreadable file.
pub async fn run(o: &JoinOptions, now: i64) -> Result<JoinReport, ToolError> {
    crate::crypto::install_default_provider();
    let path = &o.bootstrap_kubeconfig;
    let usage = |m: String| ToolError::Usage(format!("--bootstrap-kubeconfig {}: {m}", path.display()));
    let loaded = Loaded::read(path).map_err(|e| usage(e.to_string()))?;
    let mut checks = Vec::new();

    // 1. The token's form.
    let (token_ok, check) = access::token_form(&loaded);
    checks.push(check);

    // 2. The API server and its certificate.
    let (tls_ok, check) = access::apiserver_tls(&loaded, o.timeout, now).await;
    checks.push(check);
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
    let (user, check) = access::authenticates(&api).await;
    checks.push(check);
    let Some(user) = user else {
        return Ok(report(checks));
    };

    // 4. May it create CSRs, and will the first one be approved?
    checks.extend(approval::first_join(&api, &user).await);

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
    checks.push(approval::renewal_binding(reader, o.node.as_deref(), admin.is_some()).await);

    // 6. The node's client CSRs.
    checks.push(approval::client_csrs(reader, &user, o.node.as_deref(), now).await);
    Ok(report(checks))
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
