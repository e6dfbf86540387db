//! `serverTLSBootstrap`: the serving certificate through the CSR API, as the kubelet's
//! certificate manager does it (kubernetes pkg/kubelet/certificate/kubelet.go
//! `NewKubeletServerCertificateManager`, client-go util/certificate/certificate_manager.go). A fresh ECDSA P-256 key, a CSR for
//! `system:node:<node>` / `system:nodes` with the node's DNS and IP addresses, signer
//! `kubernetes.io/kubelet-serving`; wait for approval and issuance with a watch; store
//! `kubelet-server-<time>.pem` and swap the `kubelet-server-current.pem` link; rotate at a
//! random point between 70% and 90% of the lifetime, or at once when the addresses change.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::CertError;
use crate::config::NodeAddress;
use crate::k8s::ApiClient;
use crate::tls::ServingCert;

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
pub const CURRENT: &str = "kubelet-server-current.pem";
const UPDATED: &str = "kubelet-server-updated.pem";

/// What a serving certificate for this node must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub node_name: String,
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Template {
    pub fn common_name(&self) -> String {
        format!("system:node:{}", self.node_name)
    }

    /// From addresses as the Node object lists them (`Hostname`, `InternalIP`, ...).
    pub fn from_node_addresses<'a>(
        node_name: &str,
        addresses: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Template {
        let mut t = Template {
            node_name: node_name.to_owned(),
            dns: BTreeSet::new(),
            ips: BTreeSet::new(),
        };
        for (kind, address) in addresses {
            match (kind, address.parse::<IpAddr>()) {
                ("Hostname" | "InternalIP" | "ExternalIP", Ok(ip)) => {
                    t.ips.insert(ip);
                }
                ("Hostname" | "InternalDNS" | "ExternalDNS", Err(_)) => {
                    t.dns.insert(address.to_owned());
                }
                _ => {}
            }
        }
        t
    }

    pub fn from_configured(node_name: &str, addresses: &[NodeAddress]) -> Template {
        let mut t = Template {
            node_name: node_name.to_owned(),
            dns: BTreeSet::new(),
            ips: BTreeSet::new(),
        };
        for a in addresses {
            match a {
                NodeAddress::Ip(ip) => {
                    t.ips.insert(*ip);
                }
                NodeAddress::Dns(d) => {
                    t.dns.insert(d.clone());
                }
            }
        }
        t
    }

    /// The certificate manager's check: same CN, O, DNS and IP SANs.
    pub fn matches(&self, cert: &X509Certificate<'_>) -> bool {
        let subject = cert.subject();
        let cn: Vec<&str> = subject.iter_common_name().filter_map(|a| a.as_str().ok()).collect();
        let orgs: Vec<&str> = subject.iter_organization().filter_map(|a| a.as_str().ok()).collect();
        let (mut dns, mut ips) = (BTreeSet::new(), BTreeSet::new());
        for ext in cert.extensions() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => {
                            dns.insert((*d).to_owned());
                        }
                        GeneralName::IPAddress(b) => {
                            if let Some(ip) = ip_from_bytes(b) {
                                ips.insert(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        cn == [self.common_name().as_str()] && orgs == ["system:nodes"] && dns == self.dns && ips == self.ips
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A certificate in use, with its validity in Unix seconds.
#[derive(Clone)]
pub struct Current {
    pub key: Arc<CertifiedKey>,
    pub leaf: CertificateDer<'static>,
    pub not_before: i64,
    pub not_after: i64,
    /// Drawn once per certificate, so restarts or rechecks do not move it.
    pub rotate_at: i64,
}

impl Current {
    fn from_pem(pem: &[u8], path: &Path) -> Result<Current, CertError> {
        let invalid = |m: String| CertError::Invalid {
            path: path.into(),
            message: m,
        };
        let key = super::pair_from_pem(path, pem, path, pem)?;
        let leaf = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or_else(|| invalid("no certificate".into()))?
            .map_err(|e| invalid(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(&leaf).map_err(|e| invalid(e.to_string()))?;
        let (not_before, not_after) = (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        Ok(Current {
            key,
            leaf,
            not_before,
            not_after,
            rotate_at: rotation_deadline(not_before, not_after, random_unit()),
        })
    }

    fn matches(&self, template: &Template) -> bool {
        X509Certificate::from_der(&self.leaf).is_ok_and(|(_, c)| template.matches(&c))
    }
}

/// `NotBefore + jitter(total, 0.2) - 0.3·total`: uniformly in 70–90 % of the lifetime.
pub fn rotation_deadline(not_before: i64, not_after: i64, unit: f64) -> i64 {
    let total = (not_after - not_before).max(0) as f64;
    not_before + (total * (0.7 + 0.2 * unit.clamp(0.0, 1.0))).round() as i64
}

fn random_unit() -> f64 {
    let mut r = [0u8; 4];
    match aws_lc_rs::rand::fill(&mut r) {
        Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The certificate stored by an earlier run, if it is still valid (and, when the template is
/// known, still matches it): the kubelet store's first choice.
pub fn load_current(cert_dir: &Path, template: Option<&Template>) -> Option<Current> {
    let path = cert_dir.join(CURRENT);
    let pem = std::fs::read(&path).ok()?;
    let current = Current::from_pem(&pem, &path).ok()?;
    let now = now_unix();
    let usable = current.not_before <= now && now < current.not_after && template.is_none_or(|t| current.matches(t));
    usable.then_some(current)
}

/// Where the addresses in the CSR come from.
pub enum Addresses {
    Configured(Vec<NodeAddress>),
    /// The Node object's `status.addresses`, read again before every request.
    FromNode,
}

pub struct Bootstrap {
    pub api: Arc<ApiClient>,
    pub node_name: String,
    pub cert_dir: PathBuf,
    pub addresses: Addresses,
    pub serving: Arc<ServingCert>,
    /// How long to wait for approval and issuance of one CSR (the kubelet: 15 minutes).
    pub wait_timeout: Duration,
    /// The first retry delay after a failure; doubles up to 32 s, as the kubelet's backoff.
    pub retry_initial: Duration,
    /// How often to re-read the node's addresses while a certificate is valid.
    pub recheck: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the node's addresses are not known yet")]
    NoAddresses,
    #[error("reading Node {0}: {1}")]
    Node(String, String),
    #[error("creating the CSR: {0}")]
    Create(String),
    #[error("certificate signing request {name} is denied, reason: {reason}, message: {message}")]
    Denied {
        name: String,
        reason: String,
        message: String,
    },
    #[error("certificate signing request {name} failed: {message}")]
    Failed { name: String, message: String },
    #[error("timed out waiting for CSR {0} to be signed")]
    Timeout(String),
    #[error("watching CSR {0}: {1}")]
    Watch(String, String),
    #[error("the issued certificate: {0}")]
    Issued(String),
    #[error("storing the certificate: {0}")]
    Store(String),
}

impl Bootstrap {
    /// Keeps a valid certificate in place for as long as the process runs.
    pub async fn run(self, mut current: Option<Current>) {
        let mut delay = self.retry_initial;
        loop {
            let template = match self.template().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "serving certificate: waiting for the node's addresses");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(32));
                    continue;
                }
            };
            if let Some(c) = &current {
                let now = now_unix();
                if now < c.rotate_at && c.matches(&template) {
                    let until_rotation = Duration::from_secs((c.rotate_at - now).max(0) as u64);
                    tokio::time::sleep(until_rotation.min(self.recheck)).await;
                    continue;
                }
                if !c.matches(&template) {
                    tracing::info!("the node's addresses changed: requesting a new serving certificate");
                }
            }
            match self.obtain(&template).await {
                Ok(new) => {
                    tracing::info!(not_after = new.not_after, "serving certificate issued and in use");
                    self.serving.set(new.key.clone());
                    self.serving.set_pending(None);
                    current = Some(new);
                    delay = self.retry_initial;
                }
                Err(e) => {
                    if current.is_none() {
                        self.serving.set_pending(Some(e.to_string()));
                    }
                    tracing::warn!(error = %e, "serving certificate request failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(32));
                }
            }
        }
    }

    async fn template(&self) -> Result<Template, BootstrapError> {
        let t = match &self.addresses {
            Addresses::Configured(a) => Template::from_configured(&self.node_name, a),
            Addresses::FromNode => {
                let nodes: Api<Node> = Api::all(self.api.kube_client());
                let node = nodes
                    .get(&self.node_name)
                    .await
                    .map_err(|e| BootstrapError::Node(self.node_name.clone(), e.to_string()))?;
                let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
                Template::from_node_addresses(
                    &self.node_name,
                    addresses.iter().map(|a| (a.type_.as_str(), a.address.as_str())),
                )
            }
        };
        if t.dns.is_empty() && t.ips.is_empty() {
            return Err(BootstrapError::NoAddresses);
        }
        Ok(t)
    }

    /// One CSR: create, wait, store.
    async fn obtain(&self, template: &Template) -> Result<Current, BootstrapError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| BootstrapError::Create(e.to_string()))?;
        let request = csr_pem(template, &key).map_err(BootstrapError::Create)?;
        let csrs: Api<CertificateSigningRequest> = Api::all(self.api.kube_client());
        let object = CertificateSigningRequest {
            metadata: ObjectMeta {
                generate_name: Some("csr-".into()),
                ..ObjectMeta::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: SIGNER.into(),
                // `key encipherment` only for RSA keys (DefaultKubeletServingGetUsages).
                usages: Some(vec!["digital signature".into(), "server auth".into()]),
                ..CertificateSigningRequestSpec::default()
            },
            ..CertificateSigningRequest::default()
        };
        let created = csrs
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| BootstrapError::Create(e.to_string()))?;
        let name = created.metadata.name.clone().unwrap_or_default();
        tracing::info!(csr = %name, "serving certificate requested; waiting for approval");
        self.serving.set_pending(Some(format!("CSR {name} is pending")));
        let chain = tokio::time::timeout(self.wait_timeout, wait_for_certificate(&csrs, &name))
            .await
            .map_err(|_| BootstrapError::Timeout(name.clone()))??;
        let mut pem = chain;
        pem.extend_from_slice(key.serialize_pem().as_bytes());
        let path = self.store(&pem)?;
        Current::from_pem(&pem, &path).map_err(|e| BootstrapError::Issued(e.to_string()))
    }

    /// `kubelet-server-<time>.pem` (0600), then the `current` link swapped through `updated`.
    fn store(&self, pem: &[u8]) -> Result<PathBuf, BootstrapError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| BootstrapError::Store(e.to_string());
        std::fs::create_dir_all(&self.cert_dir).map_err(err)?;
        let name = format!("kubelet-server-{}.pem", timestamp_name(SystemTime::now()));
        let path = self.cert_dir.join(&name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        f.write_all(pem).map_err(err)?;
        f.sync_all().map_err(err)?;
        let updated = self.cert_dir.join(UPDATED);
        let _ = std::fs::remove_file(&updated);
        std::os::unix::fs::symlink(&name, &updated).map_err(err)?;
        std::fs::rename(&updated, self.cert_dir.join(CURRENT)).map_err(err)?;
        Ok(path)
    }
}

/// The PEM CSR for `template`, signed with `key`.
pub fn csr_pem(template: &Template, key: &KeyPair) -> Result<String, String> {
    let mut params =
        CertificateParams::new(template.dns.iter().cloned().collect::<Vec<_>>()).map_err(|e| e.to_string())?;
    params
        .subject_alt_names
        .extend(template.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params
        .distinguished_name
        .push(DnType::CommonName, template.common_name());
    params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| e.to_string())
}

/// Watches one CSR until it is issued (Approved with a certificate), denied or failed.
async fn wait_for_certificate(csrs: &Api<CertificateSigningRequest>, name: &str) -> Result<Vec<u8>, BootstrapError> {
    let watch_err = |e: &dyn std::fmt::Display| BootstrapError::Watch(name.to_owned(), e.to_string());
    loop {
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(290);
        let mut events = csrs.watch(&params, "0").await.map_err(|e| watch_err(&e))?.boxed();
        while let Some(event) = events.next().await {
            let object = match event.map_err(|e| watch_err(&e))? {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
                WatchEvent::Deleted(_) => return Err(watch_err(&"the CSR was deleted")),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => return Err(watch_err(&e.message)),
            };
            if let Some(outcome) = outcome(name, &object) {
                return outcome;
            }
        }
        // The server ended the watch (its timeout): watch again.
    }
}

/// `None` while the CSR is pending or approved without a certificate yet.
fn outcome(name: &str, csr: &CertificateSigningRequest) -> Option<Result<Vec<u8>, BootstrapError>> {
    let status = csr.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        let (reason, message) = (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        );
        match c.type_.as_str() {
            "Denied" => {
                return Some(Err(BootstrapError::Denied {
                    name: name.into(),
                    reason,
                    message,
                }));
            }
            "Failed" => {
                return Some(Err(BootstrapError::Failed {
                    name: name.into(),
                    message,
                }));
            }
            _ => {}
        }
    }
    let approved = status.conditions.iter().flatten().any(|c| c.type_ == "Approved");
    match &status.certificate {
        Some(ByteString(pem)) if approved && !pem.is_empty() => Some(Ok(pem.clone())),
        _ => None,
    }
}

/// `YYYY-MM-DD-HH-MM-SS` in UTC, the kubelet store's file-name format.
fn timestamp_name(t: SystemTime) -> String {
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_lands_between_70_and_90_percent() {
        assert_eq!(rotation_deadline(1000, 2000, 0.0), 1700);
        assert_eq!(rotation_deadline(1000, 2000, 1.0), 1900);
        assert_eq!(rotation_deadline(1000, 2000, 0.5), 1800);
        for _ in 0..100 {
            let d = rotation_deadline(0, 100_000, random_unit());
            assert!((70_000..=90_000).contains(&d), "{d}");
        }
    }

    #[test]
    fn node_addresses_become_dns_and_ip_sans() {
        let t = Template::from_node_addresses(
            "node-a",
            [
                ("Hostname", "node-a"),
                ("InternalIP", "10.0.0.5"),
                ("ExternalIP", "203.0.113.7"),
                ("InternalDNS", "node-a.internal"),
                ("Hostname", "10.0.0.6"),
            ],
        );
        assert_eq!(
            t.dns,
            BTreeSet::from(["node-a".to_string(), "node-a.internal".to_string()])
        );
        let ips: BTreeSet<IpAddr> = ["10.0.0.5", "10.0.0.6", "203.0.113.7"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        assert_eq!(t.ips, ips);
    }

    #[test]
    fn the_csr_names_the_node() {
        let t = Template::from_configured(
            "node-a",
            &[
                NodeAddress::Ip("10.0.0.5".parse().expect("ip")),
                NodeAddress::Dns("node-a".into()),
            ],
        );
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let pem = csr_pem(&t, &key).expect("csr");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).expect("der");
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).expect("parse");
        let subject = csr.certification_request_info.subject.to_string();
        assert!(
            subject.contains("CN=system:node:node-a") && subject.contains("O=system:nodes"),
            "{subject}"
        );
    }

    #[test]
    fn file_names_use_the_kubelet_format() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_325_143);
        assert_eq!(timestamp_name(t), "2026-11-22-05-25-43");
    }
}
