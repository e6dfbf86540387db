//! `bootstrapKubeconfig`: the gateway's own client identity through the kubelet's join flow.
//! With nothing but a bootstrap token, the gateway asks for `CN=system:node:<node>,
//! O=system:nodes` with signer `kubernetes.io/kube-apiserver-client-kubelet`, waits for
//! kube-controller-manager to approve and sign it, stores it as `kubelet-gate-client-<time>.pem`
//! with the `kubelet-gate-client-current.pem` link in `certDir`, writes `kubeconfig` pointing at
//! the link, and renews it with itself before it expires.
//!
//! The kubelet's parts: kubernetes pkg/kubelet/certificate/bootstrap/bootstrap.go
//! (`LoadClientConfig`, `isClientConfigStillValid`, `writeKubeconfigFromBootstrapping`),
//! cmd/kubelet/app/server.go `buildClientCertificateManager` (request with the current
//! certificate while it is valid, else with the bootstrap credentials), and
//! pkg/kubelet/certificate/kubelet.go `NewKubeletClientCertificateManager` (the template, the
//! signer, `DefaultKubeletClientGetUsages`: no `key encipherment` for an ECDSA key). The loop is
//! the shared [`Manager`](super::manager::Manager); this file is the client [`Flow`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::csr::{Kind, Template};
use super::manager::{Flow, rfc3339};
use super::rotation::is_past;
use super::store::{Issued, Store};
use crate::k8s::ApiClient;
use crate::k8s::kubeconfig::{self, KubeconfigError, Loaded};

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The store's prefix: `kubelet-gate-client-current.pem`.
pub const PREFIX: &str = "kubelet-gate-client";
const USAGES: &[&str] = &["digital signature", "client auth"];

/// The client store in `cert_dir`.
pub fn store(cert_dir: &Path) -> Store {
    Store::new(cert_dir, PREFIX)
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("bootstrapKubeconfig {}: {message}", path.display())]
    Bootstrap { path: PathBuf, message: String },
    #[error("kubeconfig {} cannot be used ({why}) and bootstrapKubeconfig {}: {message}", kubeconfig.display(), bootstrap.display())]
    NoIdentity {
        kubeconfig: PathBuf,
        why: String,
        bootstrap: PathBuf,
        message: String,
    },
}

/// Why a bootstrap token is refused. Never carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormError {
    #[error("the bootstrap token is empty")]
    Empty,
    #[error("the bootstrap token is not of the form <token-id>.<token-secret> ([a-z0-9]{{6}}.[a-z0-9]{{16}})")]
    Malformed,
}

/// The documented form of a bootstrap token (k8s.io/cluster-bootstrap token/api/types.go
/// `BootstrapTokenPattern`, `\A([a-z0-9]{6})\.([a-z0-9]{16})\z`), checked before the token is
/// ever sent.
pub fn check_token_form(token: &str) -> Result<(), TokenFormError> {
    if token.trim().is_empty() {
        return Err(TokenFormError::Empty);
    }
    let part = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    match token.split_once('.') {
        Some((id, secret)) if part(id, 6) && part(secret, 16) => Ok(()),
        _ => Err(TokenFormError::Malformed),
    }
}

/// The public half of a well-formed bootstrap token (`<token-id>`): the API server's user is
/// `system:bootstrap:<token-id>`, and it may be logged.
pub fn token_id(token: &str) -> Option<&str> {
    check_token_form(token).ok()?;
    token.split_once('.').map(|(id, _)| id)
}

/// The bootstrap kubeconfig, read and checked: its bearer token (or `tokenFile`) has the
/// documented form. A client certificate instead of a token is accepted as it is (kubeadm's
/// control-plane nodes bootstrap that way).
pub fn load_bootstrap(path: &Path) -> Result<Loaded, JoinError> {
    let bad = |message: String| JoinError::Bootstrap {
        path: path.into(),
        message,
    };
    let loaded = Loaded::read(path).map_err(|e| bad(without_path(path, &e)))?;
    match loaded.bearer_token().map_err(|e| bad(e.to_string()))? {
        Some(token) => {
            use secrecy::ExposeSecret as _;
            check_token_form(token.expose_secret()).map_err(|e| bad(e.to_string()))?;
        }
        None if loaded.client_cert.is_some() => {}
        None => return Err(bad("no bootstrap token (user token or tokenFile)".into())),
    }
    Ok(loaded)
}

/// The message of a kubeconfig error, without the path the caller names anyway.
fn without_path(path: &Path, e: &KubeconfigError) -> String {
    let text = e.to_string();
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix).map(str::to_owned).unwrap_or(text)
}

/// `isClientConfigStillValid`: the kubeconfig exists and loads, has a client certificate
/// whose key matches, and the certificate has not expired. `Err` says why not.
pub fn usable_kubeconfig(path: &Path) -> Result<Issued, String> {
    if !path.exists() {
        return Err("it does not exist yet".into());
    }
    let loaded = Loaded::read(path).map_err(|e| e.to_string())?;
    let issued = loaded
        .client_pair()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "it has no client certificate".to_string())?;
    if is_past(issued.not_after) {
        return Err(format!(
            "its client certificate expired at {}",
            rfc3339(issued.not_after)
        ));
    }
    Ok(issued)
}

/// What the start finds: the identity to use now, if `kubeconfig` has one.
pub fn resolve(kubeconfig: &Path, bootstrap: &Path) -> Result<Option<Issued>, JoinError> {
    // The bootstrap file is checked whenever it is there: a bad token is a configuration
    // error now, not at the first renewal a year from now.
    let bootstrap_loaded = match bootstrap.exists() {
        true => Some(load_bootstrap(bootstrap)?),
        false => None,
    };
    match usable_kubeconfig(kubeconfig) {
        Ok(current) => {
            tracing::info!(kubeconfig = %kubeconfig.display(), "the client identity in kubeconfig is valid; no join needed");
            Ok(Some(current))
        }
        Err(why) => match bootstrap_loaded {
            Some(_) => {
                tracing::info!(
                    kubeconfig = %kubeconfig.display(),
                    bootstrap = %bootstrap.display(),
                    "kubeconfig cannot be used ({why}): joining with the bootstrap kubeconfig"
                );
                Ok(None)
            }
            None => Err(JoinError::NoIdentity {
                kubeconfig: kubeconfig.into(),
                why,
                bootstrap: bootstrap.into(),
                message: "does not exist".into(),
            }),
        },
    }
}

/// The client certificate's part: who asks (the current identity, or the bootstrap
/// credentials), and where the result goes (the store's link, `kubeconfig`, the API client).
pub struct ClientFlow {
    pub api: Arc<ApiClient>,
    pub node_name: String,
    pub kubeconfig: PathBuf,
    pub bootstrap: PathBuf,
    pub store: Store,
}

impl ClientFlow {
    /// The bootstrap credentials, read again (they may have been removed or replaced).
    fn bootstrap_client(&self) -> Result<kube::Client, String> {
        if !self.bootstrap.exists() {
            return Err(format!(
                "bootstrapKubeconfig {} is gone: there is no valid client certificate and nothing to request a new one with",
                self.bootstrap.display()
            ));
        }
        load_bootstrap(&self.bootstrap).map_err(|e| e.to_string())?;
        crate::k8s::identity::client_for(&self.bootstrap).map_err(|e| e.to_string())
    }

    /// Writes `kubeconfig` for the store's link unless it already says that.
    fn write_kubeconfig(&self) -> Result<(), String> {
        let link = self.store.current_path();
        // The cluster from the bootstrap kubeconfig while it is there, else from the
        // kubeconfig in use.
        let cluster = match self.bootstrap.exists() {
            true => Loaded::read(&self.bootstrap),
            false => Loaded::read(&self.kubeconfig),
        }
        .map_err(|e| e.to_string())?;
        let current = Loaded::read(&self.kubeconfig).ok();
        if current.is_some_and(|c| kubeconfig::points_at(&c, &cluster, &link)) {
            return Ok(());
        }
        kubeconfig::write_for_certificate(&self.kubeconfig, &cluster, &link).map_err(|e| e.to_string())?;
        tracing::info!(kubeconfig = %self.kubeconfig.display(), certificate = %link.display(), "wrote kubeconfig for the issued client certificate");
        Ok(())
    }
}

impl Flow for ClientFlow {
    fn what(&self) -> &'static str {
        "client certificate"
    }

    fn kind(&self) -> Kind {
        Kind {
            signer: SIGNER,
            usages: USAGES,
        }
    }

    async fn template(&self) -> Result<Template, String> {
        Ok(Template::node_client(&self.node_name))
    }

    /// The current certificate while it is valid (the approver's `selfnodeclient`), else the
    /// bootstrap credentials (`nodeclient`).
    async fn requester(&self, current: Option<&Issued>) -> Result<kube::Client, String> {
        if current.is_some() {
            match self.api.kube_client() {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the current client identity cannot be used; requesting with the bootstrap kubeconfig")
                }
            }
        }
        self.bootstrap_client()
    }

    fn publish(&self, issued: &Issued) {
        if let Err(e) = self.write_kubeconfig() {
            tracing::warn!(error = %e, "cannot write kubeconfig for the issued client certificate");
        }
        match self.api.rebuild() {
            Ok(()) => tracing::info!(
                user = %issued.common_name(),
                not_after = %rfc3339(issued.not_after),
                "client certificate issued and in use"
            ),
            Err(e) => tracing::warn!(error = %e, "the issued client certificate cannot be used"),
        }
    }

    fn unusable(&self, why: &str) {
        self.api.set_pending(format!("no valid client certificate ({why})"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_tokens_have_the_documented_form() {
        assert_eq!(check_token_form("abcdef.0123456789abcdef"), Ok(()));
        assert_eq!(token_id("07401b.f395accd246ae52d"), Some("07401b"));
        assert_eq!(check_token_form(""), Err(TokenFormError::Empty));
        assert_eq!(check_token_form("  \n"), Err(TokenFormError::Empty));
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "abcdef:0123456789abcdef",
            "abcdef.0123456789abcde_",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        ] {
            assert_eq!(check_token_form(bad), Err(TokenFormError::Malformed), "{bad}");
            assert_eq!(token_id(bad), None);
        }
        assert!(
            !TokenFormError::Malformed.to_string().contains("abcdef"),
            "the message never carries a token"
        );
    }

    #[test]
    fn a_kubeconfig_without_a_client_certificate_is_not_usable() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("kubeconfig");
        assert_eq!(
            usable_kubeconfig(&missing).err().as_deref(),
            Some("it does not exist yet")
        );
        std::fs::write(
            &missing,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://h:6443\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
        )
        .expect("write");
        assert_eq!(
            usable_kubeconfig(&missing).err().as_deref(),
            Some("it has no client certificate")
        );
    }
}
