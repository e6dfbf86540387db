//! A kubeconfig as the gateway reads it (the current context's cluster and user, paths made
//! absolute against the file by kube's loader) and writes it: the kubeconfig a join produces,
//! pointing at the certificate store's `current` link, as the kubelet writes its own
//! (kubernetes pkg/kubelet/certificate/bootstrap/bootstrap.go `writeKubeconfigFromBootstrapping`).
//! Secrets (a token, a key) stay in [`SecretString`]s and are never formatted.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kube::config::{AuthInfo, Cluster, Kubeconfig};
use secrecy::{ExposeSecret, SecretString};

use crate::certs::store::Issued;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where a PEM comes from: inline data or a file.
#[derive(Clone, PartialEq, Eq)]
pub enum Material {
    Data(Vec<u8>),
    File(PathBuf),
}

/// Never the data: it may be a private key.
impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Material::Data(d) => write!(f, "Data(<{} bytes>)", d.len()),
            Material::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl Material {
    fn read(&self) -> Result<Vec<u8>, KubeconfigError> {
        match self {
            Material::Data(d) => Ok(d.clone()),
            Material::File(path) => std::fs::read(path).map_err(|source| KubeconfigError::Io {
                path: path.clone(),
                source,
            }),
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            Material::File(p) => Some(p),
            Material::Data(_) => None,
        }
    }
}

/// The parts of one kubeconfig the gateway uses.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub server: String,
    pub ca: Option<Material>,
    pub insecure: bool,
    pub tls_server_name: Option<String>,
    pub client_cert: Option<Material>,
    pub client_key: Option<Material>,
    /// `token` (inline; it wins over `tokenFile`, as in client-go).
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
}

fn decode(path: &Path, field: &str, b64: &str) -> Result<Vec<u8>, KubeconfigError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| KubeconfigError::Invalid {
            path: path.into(),
            message: format!("{field}: not base64: {e}"),
        })
}

impl Loaded {
    /// Reads `path`; every failure names it.
    pub fn read(path: &Path) -> Result<Loaded, KubeconfigError> {
        let invalid = |message: String| KubeconfigError::Invalid {
            path: path.into(),
            message,
        };
        let file = Kubeconfig::read_from(path).map_err(|e| match e {
            kube::config::KubeconfigError::ReadConfig(source, _) => KubeconfigError::Io {
                path: path.into(),
                source,
            },
            other => invalid(other.to_string()),
        })?;
        let context_name = file
            .current_context
            .clone()
            .ok_or_else(|| invalid("no current-context".into()))?;
        let context = file
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| invalid(format!("context {context_name:?} not found")))?;
        let cluster: Cluster = file
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| invalid(format!("cluster {:?} not found", context.cluster)))?;
        let user: AuthInfo = match &context.user {
            Some(name) => file
                .auth_infos
                .iter()
                .find(|u| &u.name == name)
                .and_then(|u| u.auth_info.clone())
                .ok_or_else(|| invalid(format!("user {name:?} not found")))?,
            None => AuthInfo::default(),
        };
        let server = cluster
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("cluster {:?} has no server", context.cluster)))?;
        let material =
            |data: Option<&str>, file: &Option<String>, field: &str| -> Result<Option<Material>, KubeconfigError> {
                match (
                    data.filter(|d| !d.is_empty()),
                    file.as_deref().filter(|f| !f.is_empty()),
                ) {
                    (Some(d), _) => Ok(Some(Material::Data(decode(path, field, d)?))),
                    (None, Some(f)) => Ok(Some(Material::File(PathBuf::from(f)))),
                    (None, None) => Ok(None),
                }
            };
        Ok(Loaded {
            path: path.into(),
            server,
            ca: material(
                cluster.certificate_authority_data.as_deref(),
                &cluster.certificate_authority,
                "certificate-authority-data",
            )?,
            insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
            tls_server_name: cluster.tls_server_name.clone(),
            client_cert: material(
                user.client_certificate_data.as_deref(),
                &user.client_certificate,
                "client-certificate-data",
            )?,
            client_key: material(
                user.client_key_data.as_ref().map(|s| s.expose_secret()),
                &user.client_key,
                "client-key-data",
            )?,
            token: user.token.clone(),
            token_file: user.token_file.as_deref().filter(|f| !f.is_empty()).map(PathBuf::from),
        })
    }

    /// The files the client is built from: this one, and the CA, certificate, key and token
    /// files it names.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        for m in [&self.ca, &self.client_cert, &self.client_key].into_iter().flatten() {
            if let Some(f) = m.file() {
                files.push(f.to_path_buf());
            }
        }
        files.extend(self.token_file.clone());
        files.dedup();
        files
    }

    /// The CA bundle's PEM, if one is named.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, KubeconfigError> {
        self.ca.as_ref().map(Material::read).transpose()
    }

    /// The client certificate and key, if the user has them, loaded and checked (they parse
    /// and the key matches); every failure names the file.
    pub fn client_pair(&self) -> Result<Option<Issued>, KubeconfigError> {
        let (cert, key) = match (&self.client_cert, &self.client_key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                return Err(KubeconfigError::Invalid {
                    path: self.path.clone(),
                    message: "client-certificate without client-key".into(),
                });
            }
            (None, Some(_)) => {
                return Err(KubeconfigError::Invalid {
                    path: self.path.clone(),
                    message: "client-key without client-certificate".into(),
                });
            }
        };
        let label = |m: &Material| m.file().map_or_else(|| self.path.clone(), Path::to_path_buf);
        let (cert_path, key_path) = (label(cert), label(key));
        let issued = Issued::from_pair(&cert.read()?, &cert_path, &key.read()?, &key_path).map_err(|e| {
            KubeconfigError::Invalid {
                path: self.path.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Some(issued))
    }

    /// The bearer token (`token`, or the contents of `tokenFile`), trimmed as client-go does.
    pub fn bearer_token(&self) -> Result<Option<SecretString>, KubeconfigError> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        let Some(file) = &self.token_file else {
            return Ok(None);
        };
        let raw = std::fs::read(file).map_err(|source| KubeconfigError::Io {
            path: file.clone(),
            source,
        })?;
        let text = String::from_utf8(raw).map_err(|_| KubeconfigError::Invalid {
            path: file.clone(),
            message: "the token file is not UTF-8".into(),
        })?;
        Ok(Some(SecretString::from(text.trim().to_owned())))
    }
}

/// Writes `path` (0600, through a temporary file renamed into place): the cluster of
/// `cluster` (its server, CA and TLS settings), and a user whose certificate and key are both
/// `pem_path`, as bootstrap.go's `writeKubeconfigFromBootstrapping` does (`default-cluster`,
/// `default-auth`, `default-context`).
pub fn write_for_certificate(path: &Path, cluster: &Loaded, pem_path: &Path) -> Result<(), KubeconfigError> {
    let io = |source| KubeconfigError::Io {
        path: path.into(),
        source,
    };
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n- name: default-cluster\n  cluster:\n");
    text.push_str(&format!("    server: {}\n", quote(&cluster.server)));
    match &cluster.ca {
        Some(Material::File(f)) => {
            text.push_str(&format!("    certificate-authority: {}\n", quote(&f.to_string_lossy())))
        }
        Some(Material::Data(d)) => text.push_str(&format!(
            "    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(d)
        )),
        None => {}
    }
    if cluster.insecure {
        text.push_str("    insecure-skip-tls-verify: true\n");
    }
    if let Some(name) = &cluster.tls_server_name {
        text.push_str(&format!("    tls-server-name: {}\n", quote(name)));
    }
    let pem = quote(&pem_path.to_string_lossy());
    text.push_str(&format!(
        "users:\n- name: default-auth\n  user:\n    client-certificate: {pem}\n    client-key: {pem}\ncontexts:\n- name: default-context\n  context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\ncurrent-context: default-context\npreferences: {{}}\n"
    ));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&temporary);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// Whether `loaded` is the kubeconfig [`write_for_certificate`] writes for `cluster` and
/// `pem_path`: the same server and CA, and the certificate and key both at `pem_path`.
pub fn points_at(loaded: &Loaded, cluster: &Loaded, pem_path: &Path) -> bool {
    let pem = Material::File(pem_path.to_path_buf());
    loaded.server == cluster.server
        && loaded.ca == cluster.ca
        && loaded.client_cert.as_ref() == Some(&pem)
        && loaded.client_key.as_ref() == Some(&pem)
        && loaded.token.is_none()
        && loaded.token_file.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_current_context_with_absolute_paths_and_writes_one_for_the_store() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("bootstrap.kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority: pki/ca.crt\nusers:\n- name: u\n  user:\n    token: abcdef.0123456789abcdef\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
        )
        .expect("write");
        let loaded = Loaded::read(&path).expect("read");
        assert_eq!(loaded.server, "https://10.0.0.1:6443");
        assert_eq!(loaded.ca, Some(Material::File(dir.path().join("pki/ca.crt"))));
        assert_eq!(
            loaded
                .bearer_token()
                .expect("token")
                .map(|t| t.expose_secret().to_owned()),
            Some("abcdef.0123456789abcdef".to_owned())
        );
        assert!(
            !format!("{loaded:?}").contains("0123456789abcdef"),
            "no secret in Debug"
        );

        let out = dir.path().join("kubeconfig");
        let pem = dir.path().join("pki/kubelet-gate-client-current.pem");
        write_for_certificate(&out, &loaded, &pem).expect("write");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let written = Loaded::read(&out).expect("read back");
        assert!(points_at(&written, &loaded, &pem));
        assert_eq!(
            written.files(),
            [out.clone(), dir.path().join("pki/ca.crt"), pem.clone()]
        );
        assert!(!points_at(&loaded, &loaded, &pem));
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let e = Loaded::read(Path::new("/nonexistent/kubeconfig")).expect_err("missing");
        assert!(matches!(e, KubeconfigError::Io { .. }), "{e}");
        assert!(e.to_string().starts_with("/nonexistent/kubeconfig: "), "{e}");
    }
}
