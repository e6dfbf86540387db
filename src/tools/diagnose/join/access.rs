//! Reaching the API server and authenticating: the token's form, the API server's certificate
//! verified against the kubeconfig's CA (as the kubelet, a Go client, verifies it), and who the
//! token is.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use super::super::x509::{self, CertPool, Certificate};
use super::super::{Check, Verdict, connect, split_target};
use super::{CSR_PATH, SELF_SUBJECT_REVIEW, UserInfo};
use crate::certs::client as join;
use crate::k8s::kubeconfig::Loaded;
use crate::k8s::{ApiClient, CallError};

/// Check 1: the token's documented form (k8s.io/cluster-bootstrap token/api/types.go
/// `BootstrapTokenPattern`). `true` when the join may go on.
pub(super) fn token_form(loaded: &Loaded) -> (bool, Check) {
    match &loaded.bearer_token() {
        Err(e) => {
            (false, Check::new("bootstrap-token", Verdict::Fail, "the bootstrap token cannot be read")
                    .error(e.to_string())
                    .fix("make tokenFile readable, or put the token in the kubeconfig's user as token:"),
            )
        }
        Ok(None) if loaded.client_cert.is_some() => {
            (true, Check::new(
                "bootstrap-token",
                Verdict::Info,
                "the bootstrap kubeconfig has a client certificate instead of a token; it is used as it is",
            ))
        }
        Ok(None) => {
            (false, Check::new("bootstrap-token", Verdict::Fail, "the bootstrap kubeconfig has no token")
                    .fix("create a bootstrap token (kubeadm token create) and set it as the user's token: in the bootstrap kubeconfig"),
            )
        }
        Ok(Some(t)) => match join::check_token_form(t.expose_secret()) {
            Ok(()) => {
                let id = join::token_id(t.expose_secret()).unwrap_or_default();
                (true, Check::new(
                        "bootstrap-token",
                        Verdict::Pass,
                        format!("token {id}.<secret> has the documented form"),
                    )
                    .evidence(format!(
                        "it authenticates, if the cluster knows it, as system:bootstrap:{id}"
                    )),
                )
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
                (false, Check::new("bootstrap-token", Verdict::Fail, "the token is not a bootstrap token; it is not sent")
                        .error(e.to_string())
                        .evidence(shape)
                        .fix("a bootstrap token is <token-id>.<token-secret>, 6 and 16 characters of [a-z0-9]: create one with kubeadm token create (or a Secret bootstrap-token-<id> of type bootstrap.kubernetes.io/token in kube-system) and copy it whole"),
                )
            }
        },
    }
}

/// Check 2: connect as the kubelet does and verify the API server's certificate against the
/// kubeconfig's CA, in Go's words.
pub(super) async fn apiserver_tls(loaded: &Loaded, timeout: Duration, now: i64) -> (bool, Check) {
    let server = loaded.server.as_str();
    let Some(authority) = server
        .strip_prefix("https://")
        .map(|r| r.split('/').next().unwrap_or(r))
    else {
        return (
            false,
            Check::new(
                "apiserver-tls",
                Verdict::Fail,
                format!("the server {server} is not an https:// URL"),
            )
            .fix("the bootstrap kubeconfig's cluster server must be kube-apiserver's https:// address"),
        );
    };
    let (host, port) = match split_target(authority) {
        Ok((h, p)) => (h, p.unwrap_or(443)),
        Err(e) => {
            return (
                false,
                Check::new(
                    "apiserver-tls",
                    Verdict::Fail,
                    format!("the server {server} is not a URL"),
                )
                .error(e),
            );
        }
    };
    let session = match connect::connect(&host, port, None, timeout).await {
        Ok(s) => s,
        Err(e) => {
            return (false, Check::new("apiserver-tls", Verdict::Fail, format!("cannot reach the API server at {server}"))
                    .error(e.message)
                    .fix("check the server URL in the bootstrap kubeconfig, and that kube-apiserver listens there and this node may reach it"));
        }
    };
    if loaded.insecure {
        return (
            true,
            Check::new(
                "apiserver-tls",
                Verdict::Warn,
                format!("{server} answers; its certificate is not verified"),
            )
            .evidence("insecure-skip-tls-verify: true: anyone on the path can take the token")
            .fix("set certificate-authority(-data) to the cluster CA instead"),
        );
    }
    let ca = match loaded.ca_pem() {
        Ok(Some(pem)) => pem,
        Ok(None) => {
            return (
                true,
                Check::new(
                    "apiserver-tls",
                    Verdict::Warn,
                    format!("{server} answers; the bootstrap kubeconfig names no CA"),
                )
                .evidence("the system's trust store decides, which this check does not read")
                .fix("set certificate-authority-data to the cluster CA (kubeadm: /etc/kubernetes/pki/ca.crt)"),
            );
        }
        Err(e) => {
            return (
                false,
                Check::new("apiserver-tls", Verdict::Fail, "the CA bundle cannot be read").error(e.to_string()),
            );
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
            (true, Check::new(
                    "apiserver-tls",
                    Verdict::Pass,
                    format!("{server} answers with a certificate the kubeconfig's CA verifies"),
                )
                .evidence(format!("{} CA certificate(s) in the bootstrap kubeconfig", roots.len())))
        }
        Err(e) => {
            (false, Check::new("apiserver-tls", Verdict::Fail, "the API server's certificate does not verify against the bootstrap kubeconfig's CA; the token is not sent")
                    .error(e)
                    .fix("set certificate-authority-data to the cluster CA that signed kube-apiserver's certificate (kubeadm: /etc/kubernetes/pki/ca.crt; kubeadm join checks it with --discovery-token-ca-cert-hash)"))
        }
    }
}

/// Check 3: who the token is. `None` when it does not authenticate (the check says why).
pub(super) async fn authenticates(api: &ApiClient) -> (Option<UserInfo>, Check) {
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
            (Some(user), check)
        }
        Err(e @ CallError::Status { status: 401, .. }) => (None, unknown(&e)),
        // No SelfSubjectReview (before 1.28): a harmless list tells 401 from the rest.
        Err(CallError::Status { status: 404, .. }) => match api.get::<Value>(&format!("{CSR_PATH}?limit=1")).await {
            Err(e @ CallError::Status { status: 401, .. }) => (None, unknown(&e)),
            Ok(_) | Err(CallError::Status { .. }) => (
                Some(UserInfo::default()),
                Check::new(
                    "bootstrap-auth",
                    Verdict::Pass,
                    "the token authenticates (the API server has no SelfSubjectReview to say as whom)",
                ),
            ),
            Err(e) => (
                None,
                Check::new("bootstrap-auth", Verdict::Fail, "no answer from the API server").error(e.to_string()),
            ),
        },
        Err(e) => (
            None,
            Check::new("bootstrap-auth", Verdict::Fail, "no answer from the API server").error(e.to_string()),
        ),
    }
}
