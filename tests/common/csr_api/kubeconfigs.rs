//! Kubeconfigs for this server beyond the gateway's token (`handle.rs`): a bootstrap token, a
//! token file, a client certificate's files, or the wrong CA.

use std::path::{Path, PathBuf};

use super::handle::CsrApi;
use super::meta::next_id;
use super::store::b64;

impl CsrApi {
    /// A kubeconfig in `dir` named `name`, whose user has these fields (YAML, indented by
    /// four spaces), trusting `ca_pem` for the server.
    pub fn write_kubeconfig_as(&self, dir: &Path, name: &str, user_fields: &str, ca_pem: &str) -> PathBuf {
        let path = dir.join(name);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: csr-api-stand-in\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: node\n  user:\n{user_fields}contexts:\n- name: node@csr-api-stand-in\n  context:\n    cluster: csr-api-stand-in\n    user: node\ncurrent-context: node@csr-api-stand-in\n",
            self.url(),
            b64(ca_pem.as_bytes()),
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
        path
    }

    /// A bootstrap kubeconfig, as kubeadm writes `/etc/kubernetes/bootstrap-kubelet.conf`:
    /// the server, its CA, and `token: <token>` (anything, malformed ones included).
    pub fn write_bootstrap_kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let name = format!("bootstrap-{}.kubeconfig", next_id());
        let token = serde_json::to_string(token).expect("quote");
        self.write_kubeconfig_as(dir, &name, &format!("    token: {token}\n"), &self.ca_pem())
    }

    /// A kubeconfig whose user's certificate and key are the files at `cert` and `key` (the
    /// kubelet's `client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem`).
    pub fn write_kubeconfig_with_cert_files(&self, dir: &Path, cert: &Path, key: &Path) -> PathBuf {
        let user = format!(
            "    client-certificate: {}\n    client-key: {}\n",
            cert.display(),
            key.display()
        );
        self.write_kubeconfig_as(dir, &format!("cert-{}.kubeconfig", next_id()), &user, &self.ca_pem())
    }

    /// A kubeconfig whose user reads its token from `token_file` (a projected token).
    pub fn write_kubeconfig_with_token_file(&self, dir: &Path, token_file: &Path) -> PathBuf {
        let user = format!("    tokenFile: {}\n", token_file.display());
        self.write_kubeconfig_as(
            dir,
            &format!("token-file-{}.kubeconfig", next_id()),
            &user,
            &self.ca_pem(),
        )
    }
}
