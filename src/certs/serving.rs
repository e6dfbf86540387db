//! `serverTLSBootstrap`: the serving certificate through the CSR API, as the kubelet's
//! (kubernetes pkg/kubelet/certificate/kubelet.go `NewKubeletServerCertificateManager`): a CSR
//! for `system:node:<node>` / `system:nodes` with the node's DNS and IP addresses, signer
//! `kubernetes.io/kubelet-serving`, in the `kubelet-server` store of `certDir`. The shared
//! [`Manager`](super::manager::Manager) does the rest; this file is the serving [`Flow`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use super::csr::{Kind, Template};
use super::manager::Flow;
use super::store::{Issued, Store};
use crate::config::NodeAddress;
use crate::k8s::ApiClient;
use crate::tls::ServingCert;

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The store's prefix: `kubelet-server-current.pem`, as the kubelet names it.
pub const PREFIX: &str = "kubelet-server";
pub const CURRENT: &str = "kubelet-server-current.pem";
/// `key encipherment` only for RSA keys (client-go `DefaultKubeletServingGetUsages`).
const USAGES: &[&str] = &["digital signature", "server auth"];

/// The serving store in `cert_dir`.
pub fn store(cert_dir: &Path) -> Store {
    Store::new(cert_dir, PREFIX)
}

/// The certificate stored by an earlier run, if it can be read (valid or not: an expired one
/// is not served, and the manager renews it at once).
pub fn load_current(cert_dir: &Path) -> Option<Issued> {
    match store(cert_dir).load() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the stored serving certificate cannot be used; requesting a new one");
            None
        }
    }
}

/// A serving template from addresses as the Node object lists them (`Hostname`,
/// `InternalIP`, ...): kubelet.go's `addressesToHostnamesAndIPs`.
pub fn template_from_node_addresses<'a>(
    node_name: &str,
    addresses: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Template {
    let mut t = serving_template(node_name);
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

/// A serving template from `nodeAddresses`.
pub fn template_from_configured(node_name: &str, addresses: &[NodeAddress]) -> Template {
    let mut t = serving_template(node_name);
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

fn serving_template(node_name: &str) -> Template {
    Template {
        dns: BTreeSet::new(),
        ips: BTreeSet::new(),
        ..Template::node_client(node_name)
    }
}

/// Where the addresses in the CSR come from.
pub enum Addresses {
    Configured(Vec<NodeAddress>),
    /// The Node object's `status.addresses`, read again before every request.
    FromNode,
}

/// The serving certificate's part: the node's addresses, the gateway's API identity, and the
/// listener's certificate slot.
pub struct ServingFlow {
    pub api: Arc<ApiClient>,
    pub node_name: String,
    pub addresses: Addresses,
    pub serving: Arc<ServingCert>,
}

impl Flow for ServingFlow {
    fn what(&self) -> &'static str {
        "serving certificate"
    }

    fn kind(&self) -> Kind {
        Kind {
            signer: SIGNER,
            usages: USAGES,
        }
    }

    async fn template(&self) -> Result<Template, String> {
        let t = match &self.addresses {
            Addresses::Configured(a) => template_from_configured(&self.node_name, a),
            Addresses::FromNode => {
                let client = self.api.kube_client().map_err(|e| e.to_string())?;
                let nodes: Api<Node> = Api::all(client);
                let node = nodes
                    .get(&self.node_name)
                    .await
                    .map_err(|e| format!("reading Node {}: {e}", self.node_name))?;
                let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
                template_from_node_addresses(
                    &self.node_name,
                    addresses.iter().map(|a| (a.type_.as_str(), a.address.as_str())),
                )
            }
        };
        if t.dns.is_empty() && t.ips.is_empty() {
            return Err("the node's addresses are not known yet".into());
        }
        Ok(t)
    }

    /// The serving CSR is always the node's own request, with the gateway's API identity.
    async fn requester(&self, _current: Option<&Issued>) -> Result<kube::Client, String> {
        self.api.kube_client().map_err(|e| e.to_string())
    }

    fn publish(&self, issued: &Issued) {
        self.serving.set_until(issued.key.clone(), issued.not_after);
        self.serving.set_pending(None);
        tracing::info!(not_after = issued.not_after, "serving certificate issued and in use");
    }

    fn unusable(&self, why: &str) {
        self.serving.set_pending(Some(why.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyPair;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;

    #[test]
    fn node_addresses_become_dns_and_ip_sans() {
        let t = template_from_node_addresses(
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
        let t = template_from_configured(
            "node-a",
            &[
                NodeAddress::Ip("10.0.0.5".parse().expect("ip")),
                NodeAddress::Dns("node-a".into()),
            ],
        );
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let pem = t.csr_pem(&key).expect("csr");
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
}
