//! What the cluster says about a node: the Node's addresses and kubelet port, the address
//! kube-apiserver dials (`GetPreferredNodeAddress` with `--kubelet-preferred-address-types`),
//! and the node's serving CSRs (signer `kubernetes.io/kubelet-serving`). Only the fields the
//! checks read are decoded.

use serde::Deserialize;

use crate::k8s::{ApiClient, CallError};

/// kube-apiserver's default `--kubelet-preferred-address-types`.
pub const DEFAULT_PREFERRED: [&str; 5] = ["Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"];
const ADDRESS_TYPES: [&str; 5] = DEFAULT_PREFERRED;
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
/// The kubelet's port when the Node does not report one.
pub const DEFAULT_PORT: u16 = 10250;

/// Parses `--kubelet-preferred-address-types` (comma-separated `NodeAddressType`s).
pub fn parse_preferred(list: &str) -> Result<Vec<String>, String> {
    let types: Vec<String> = list.split(',').map(|t| t.trim().to_owned()).collect();
    for t in &types {
        if !ADDRESS_TYPES.contains(&t.as_str()) {
            return Err(format!(
                "--kubelet-preferred-address-types: {t:?} is not one of {}",
                ADDRESS_TYPES.join(", ")
            ));
        }
    }
    Ok(types)
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeAddress {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DaemonEndpoint {
    #[serde(rename = "Port", default)]
    port: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DaemonEndpoints {
    #[serde(default)]
    kubelet_endpoint: DaemonEndpoint,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeStatus {
    #[serde(default)]
    addresses: Vec<NodeAddress>,
    #[serde(default)]
    daemon_endpoints: DaemonEndpoints,
}

#[derive(Debug, Clone, Deserialize)]
struct NodeObject {
    #[serde(default)]
    status: NodeStatus,
}

/// The Node as kube-apiserver reads it to reach the kubelet.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub addresses: Vec<NodeAddress>,
    /// `status.daemonEndpoints.kubeletEndpoint.Port`, 0 when unset.
    pub reported_port: i64,
}

impl Node {
    /// `NodeConnectionInfoGetter`: the reported port when it is positive, else the default.
    pub fn port(&self) -> u16 {
        u16::try_from(self.reported_port)
            .ok()
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_PORT)
    }

    /// `GetPreferredNodeAddress`: the first address of the first preferred type that has one,
    /// or its error, `no preferred addresses found; known addresses: [...]`.
    pub fn preferred_address(&self, preferred: &[String]) -> Result<&NodeAddress, String> {
        for kind in preferred {
            if let Some(a) = self.addresses.iter().find(|a| &a.kind == kind) {
                return Ok(a);
            }
        }
        Err(format!(
            "no preferred addresses found; known addresses: {}",
            self.addresses_go()
        ))
    }

    /// The addresses as Go's `%v` prints `[]NodeAddress`: `[{InternalIP 10.0.0.5} ...]`.
    pub fn addresses_go(&self) -> String {
        let items: Vec<String> = self
            .addresses
            .iter()
            .map(|a| format!("{{{} {}}}", a.kind, a.address))
            .collect();
        format!("[{}]", items.join(" "))
    }
}

pub async fn node(api: &ApiClient, name: &str) -> Result<Node, CallError> {
    let object: NodeObject = api.get(&format!("/api/v1/nodes/{name}")).await?;
    Ok(Node {
        name: name.to_owned(),
        addresses: object.status.addresses,
        reported_port: object.status.daemon_endpoints.kubelet_endpoint.port,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    creation_timestamp: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CsrSpec {
    #[serde(default)]
    signer_name: String,
    #[serde(default)]
    username: String,
    /// The PEM request, base64.
    #[serde(default)]
    request: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Condition {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct CsrStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    certificate: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct CsrObject {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: CsrSpec,
    #[serde(default)]
    status: CsrStatus,
}

#[derive(Debug, Clone, Deserialize)]
struct CsrList {
    #[serde(default)]
    items: Vec<CsrObject>,
}

/// Where a CSR stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrState {
    Pending,
    /// Approved, but the signer has not issued the certificate (yet).
    Approved,
    Issued,
    Denied {
        reason: String,
        message: String,
    },
    Failed {
        reason: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Csr {
    pub name: String,
    /// Unix seconds, when known.
    pub created: Option<i64>,
    pub state: CsrState,
    /// Who asked (`spec.username`).
    pub requester: String,
    /// The subject's common name the request asks for, when it parses.
    pub common_name: Option<String>,
}

impl Csr {
    pub fn describe(&self, now: i64) -> String {
        let age = self
            .created
            .map(|c| format!(", created {} ago", human_age(now - c)))
            .unwrap_or_default();
        let state = match &self.state {
            CsrState::Pending => "Pending (awaiting approval)".to_owned(),
            CsrState::Approved => "Approved, not issued yet".to_owned(),
            CsrState::Issued => "Approved,Issued".to_owned(),
            CsrState::Denied { reason, message } => format!("Denied: {reason}: {message}"),
            CsrState::Failed { reason, message } => format!("Failed: {reason}: {message}"),
        };
        format!("{} {state}{age}", self.name)
    }
}

/// The serving CSRs of `system:node:<node>`, oldest first.
pub async fn serving_csrs(api: &ApiClient, node: &str) -> Result<Vec<Csr>, CallError> {
    let user = format!("system:node:{node}");
    Ok(csrs_of_signer(api, SERVING_SIGNER)
        .await?
        .into_iter()
        .filter(|c| c.requester == user)
        .collect())
}

/// The CSRs of one signer, oldest first.
pub async fn csrs_of_signer(api: &ApiClient, signer: &str) -> Result<Vec<Csr>, CallError> {
    let list: CsrList = api
        .get(&format!(
            "{CSR_PATH}?fieldSelector=spec.signerName%3D{}",
            signer.replace('/', "%2F")
        ))
        .await?;
    let mut csrs: Vec<Csr> = list
        .items
        .into_iter()
        .filter(|c| c.spec.signer_name == signer)
        .map(csr_of)
        .collect();
    csrs.sort_by_key(|c| c.created.unwrap_or(0));
    Ok(csrs)
}

fn csr_of(c: CsrObject) -> Csr {
    let condition = |kind: &str| {
        c.status
            .conditions
            .iter()
            .find(|x| x.kind == kind && x.status != "False")
            .map(|x| {
                (
                    x.reason.clone().unwrap_or_default(),
                    x.message.clone().unwrap_or_default(),
                )
            })
    };
    let state = if let Some((reason, message)) = condition("Denied") {
        CsrState::Denied { reason, message }
    } else if let Some((reason, message)) = condition("Failed") {
        CsrState::Failed { reason, message }
    } else if condition("Approved").is_some() {
        match &c.status.certificate {
            Some(cert) if !cert.is_empty() => CsrState::Issued,
            _ => CsrState::Approved,
        }
    } else {
        CsrState::Pending
    };
    let created = c.metadata.creation_timestamp.as_deref().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    });
    Csr {
        common_name: requested_common_name(&c.spec.request),
        name: c.metadata.name,
        created,
        state,
        requester: c.spec.username,
    }
}

/// The CN a base64 PEM CSR asks for.
fn requested_common_name(request_b64: &str) -> Option<String> {
    use base64::Engine as _;
    use rustls_pki_types::pem::PemObject as _;
    use x509_parser::prelude::FromDer as _;
    let pem = base64::engine::general_purpose::STANDARD.decode(request_b64).ok()?;
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(&pem).ok()?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).ok()?;
    csr.certification_request_info
        .subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .next()
        .map(str::to_owned)
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{}s", s.max(0)),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(addresses: &[(&str, &str)]) -> Node {
        Node {
            name: "n".into(),
            addresses: addresses
                .iter()
                .map(|(k, a)| NodeAddress {
                    kind: (*k).into(),
                    address: (*a).into(),
                })
                .collect(),
            reported_port: 0,
        }
    }

    #[test]
    fn preferred_address_follows_the_type_order_not_the_list_order() {
        let n = node(&[
            ("InternalIP", "10.0.0.5"),
            ("Hostname", "node-a"),
            ("InternalIP", "10.0.0.6"),
        ]);
        let default: Vec<String> = DEFAULT_PREFERRED.iter().map(|s| s.to_string()).collect();
        assert_eq!(n.preferred_address(&default).map(|a| a.address.as_str()), Ok("node-a"));
        let kubeadm = parse_preferred("InternalIP,ExternalIP,Hostname").expect("types");
        assert_eq!(
            n.preferred_address(&kubeadm).map(|a| a.address.as_str()),
            Ok("10.0.0.5")
        );
        let external = parse_preferred("ExternalIP").expect("types");
        assert_eq!(
            n.preferred_address(&external).map(|a| a.address.as_str()),
            Err("no preferred addresses found; known addresses: [{InternalIP 10.0.0.5} {Hostname node-a} {InternalIP 10.0.0.6}]".to_owned())
        );
        assert!(parse_preferred("InternalIP,LegacyHostIP").is_err());
        assert_eq!(n.port(), 10250);
    }
}
