//! One certificate signing request from creation to its certificate, for the serving and the
//! client certificate alike: what it asks for ([`Template`]), creating it ([`request`]) and
//! waiting on that same CSR until it is issued, denied or failed ([`wait`]); client-go
//! util/certificate/csr/csr.go `RequestCertificate`, `WaitForCertificate`.
//!
//! `WaitForCertificate` waits with `watchtools.UntilWithSync`, a reflector: when a watch fails
//! (the API server restarts, answers 429, or sends an ERROR event such as 410 Expired) it lists
//! the CSR again and watches from there, with backoff, so one CSR is followed until the overall
//! deadline. [`wait`] does the same with a GET by name and a watch from its resourceVersion; the
//! caller bounds it (`certificateWaitTimeout`, 15 minutes).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use x509_parser::prelude::{GeneralName, ParsedExtension, X509Certificate};

use super::rotation::RetryBackoff;

/// What a certificate for this node must say: the subject, and the SANs (serving only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Template {
    /// `CN=system:node:<node>, O=system:nodes`, no SANs: the kubelet's client certificate
    /// (pkg/kubelet/certificate/kubelet.go `NewKubeletClientCertificateManager`).
    pub fn node_client(node_name: &str) -> Template {
        Template {
            common_name: format!("system:node:{node_name}"),
            organizations: vec!["system:nodes".into()],
            dns: BTreeSet::new(),
            ips: BTreeSet::new(),
        }
    }

    /// The certificate manager's check (`certSatisfiesTemplateLocked`): same CN, organizations,
    /// DNS and IP SANs.
    pub fn matches(&self, cert: &X509Certificate<'_>) -> bool {
        let subject = cert.subject();
        let cn: Vec<&str> = subject.iter_common_name().filter_map(|a| a.as_str().ok()).collect();
        let orgs: BTreeSet<&str> = subject.iter_organization().filter_map(|a| a.as_str().ok()).collect();
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
        let wanted_orgs: BTreeSet<&str> = self.organizations.iter().map(String::as_str).collect();
        cn == [self.common_name.as_str()] && orgs == wanted_orgs && dns == self.dns && ips == self.ips
    }

    /// The PEM CSR, signed with `key`.
    pub fn csr_pem(&self, key: &KeyPair) -> Result<String, String> {
        let mut params =
            CertificateParams::new(self.dns.iter().cloned().collect::<Vec<_>>()).map_err(|e| e.to_string())?;
        params
            .subject_alt_names
            .extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name.clone());
        for o in &self.organizations {
            params.distinguished_name.push(DnType::OrganizationName, o.clone());
        }
        params
            .serialize_request(key)
            .and_then(|r| r.pem())
            .map_err(|e| e.to_string())
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The CSR object's own fields.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub signer: &'static str,
    pub usages: &'static [&'static str],
}

/// A CSR the API server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("creating the CSR: {0}")]
    Create(String),
    #[error("certificate signing request {name} is denied, reason: {reason}, message: {message}")]
    Denied {
        name: String,
        reason: String,
        message: String,
    },
    #[error("certificate signing request {name} failed, reason: {reason}, message: {message}")]
    Failed {
        name: String,
        reason: String,
        message: String,
    },
    #[error("csr {0:?} was deleted")]
    Deleted(String),
    #[error("csr {0:?} changed UIDs")]
    ChangedUid(String),
    #[error("timed out waiting for CSR {0} to be signed")]
    Timeout(String),
}

/// Creates the CSR (`generateName: csr-`); the API server fills in who asked.
pub async fn request(client: &kube::Client, pem: &str, kind: Kind) -> Result<Requested, CsrError> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let object = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.as_bytes().to_vec()),
            signer_name: kind.signer.into(),
            usages: Some(kind.usages.iter().map(|u| (*u).to_owned()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        ..CertificateSigningRequest::default()
    };
    let created = csrs
        .create(&PostParams::default(), &object)
        .await
        .map_err(|e| CsrError::Create(e.to_string()))?;
    Ok(Requested {
        name: created.metadata.name.unwrap_or_default(),
        uid: created.metadata.uid.unwrap_or_default(),
    })
}

/// Follows `csr` until it has a certificate (returned as PEM), is denied or failed, or is
/// deleted. A watch that ends is resumed at once; one that fails is resumed after a backoff
/// starting at `retry`, from a fresh read of the CSR by name. Never returns on its own while the
/// CSR is pending: the caller bounds the wait.
pub async fn wait(client: &kube::Client, csr: &Requested, retry: Duration) -> Result<Vec<u8>, CsrError> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let name = csr.name.as_str();
    let mut backoff = RetryBackoff::new(retry);
    // Where the next watch starts; `None`: read the CSR first.
    let mut since: Option<String> = None;
    loop {
        if since.is_none() {
            match csrs.get_opt(name).await {
                Ok(Some(object)) => {
                    if let Some(done) = outcome(csr, &object) {
                        return done;
                    }
                    since = object.metadata.resource_version.clone();
                }
                Ok(None) => return Err(CsrError::Deleted(name.to_owned())),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::info!(csr = name, error = %e, "reading the CSR failed; trying again in {delay:?}");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
        }
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(290);
        let from = since.clone().unwrap_or_else(|| "0".into());
        let started = tokio::time::Instant::now();
        let failure = match csrs.watch(&params, &from).await {
            Err(e) => e.to_string(),
            Ok(events) => {
                let mut events = events.boxed();
                let mut failure = None;
                while let Some(event) = events.next().await {
                    let object = match event {
                        Err(e) => {
                            failure = Some(e.to_string());
                            break;
                        }
                        Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => o,
                        Ok(WatchEvent::Deleted(_)) => return Err(CsrError::Deleted(name.to_owned())),
                        Ok(WatchEvent::Bookmark(b)) => {
                            since = Some(b.metadata.resource_version);
                            continue;
                        }
                        Ok(WatchEvent::Error(status)) => {
                            failure = Some(format!("watch error event {}: {}", status.code, status.message));
                            break;
                        }
                    };
                    backoff.reset();
                    if let Some(done) = outcome(csr, &object) {
                        return done;
                    }
                    since = object.metadata.resource_version.clone();
                }
                match failure {
                    Some(f) => f,
                    // A server that closes every watch at once would make this spin.
                    None if started.elapsed() < Duration::from_secs(1) => "the watch ended at once".into(),
                    // The server ended the watch (its timeout): resume from where it was.
                    None => continue,
                }
            }
        };
        since = None;
        let delay = backoff.next_delay();
        tracing::info!(csr = name, error = %failure, "watching the CSR failed; reading it again in {delay:?}");
        tokio::time::sleep(delay).await;
    }
}

/// `None` while the CSR is pending, or approved without a certificate yet.
fn outcome(csr: &Requested, object: &CertificateSigningRequest) -> Option<Result<Vec<u8>, CsrError>> {
    let name = csr.name.as_str();
    if !csr.uid.is_empty() && object.metadata.uid.as_deref().is_some_and(|uid| uid != csr.uid) {
        return Some(Err(CsrError::ChangedUid(name.to_owned())));
    }
    let status = object.status.as_ref()?;
    let mut approved = false;
    for c in status.conditions.iter().flatten() {
        let (reason, message) = (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        );
        match c.type_.as_str() {
            "Denied" => {
                return Some(Err(CsrError::Denied {
                    name: name.into(),
                    reason,
                    message,
                }));
            }
            "Failed" => {
                return Some(Err(CsrError::Failed {
                    name: name.into(),
                    reason,
                    message,
                }));
            }
            "Approved" => approved = true,
            _ => {}
        }
    }
    match &status.certificate {
        Some(ByteString(pem)) if approved && !pem.is_empty() => {
            tracing::debug!(csr = name, "certificate signing request is issued");
            Some(Ok(pem.clone()))
        }
        _ => {
            if approved {
                tracing::debug!(
                    csr = name,
                    "certificate signing request is approved, waiting to be issued"
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;

    #[test]
    fn the_client_csr_names_the_node_and_nothing_else() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let pem = Template::node_client("node-a").csr_pem(&key).expect("csr");
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).expect("der");
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).expect("parse");
        let subject = csr.certification_request_info.subject.to_string();
        assert_eq!(subject, "CN=system:node:node-a, O=system:nodes");
        assert!(csr.requested_extensions().into_iter().flatten().next().is_none());
    }

    fn object(uid: &str, conditions: &[(&str, &str, &str)], certificate: Option<&str>) -> CertificateSigningRequest {
        use k8s_openapi::api::certificates::v1::{CertificateSigningRequestCondition, CertificateSigningRequestStatus};
        CertificateSigningRequest {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            status: Some(CertificateSigningRequestStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, r, m)| CertificateSigningRequestCondition {
                            type_: (*t).into(),
                            status: "True".into(),
                            reason: Some((*r).into()),
                            message: Some((*m).into()),
                            ..CertificateSigningRequestCondition::default()
                        })
                        .collect(),
                ),
                certificate: certificate.map(|c| ByteString(c.as_bytes().to_vec())),
            }),
            ..CertificateSigningRequest::default()
        }
    }

    #[test]
    fn outcomes_follow_client_go() {
        let csr = Requested {
            name: "csr-1".into(),
            uid: "u1".into(),
        };
        assert!(outcome(&csr, &object("u1", &[], None)).is_none());
        assert!(outcome(&csr, &object("u1", &[("Approved", "AutoApproved", "")], None)).is_none());
        let issued = outcome(&csr, &object("u1", &[("Approved", "AutoApproved", "")], Some("PEM")));
        assert_eq!(issued.and_then(Result::ok), Some(b"PEM".to_vec()));
        let denied = outcome(&csr, &object("u1", &[("Denied", "NoWay", "ask")], None)).and_then(Result::err);
        assert_eq!(
            denied.map(|e| e.to_string()).as_deref(),
            Some("certificate signing request csr-1 is denied, reason: NoWay, message: ask")
        );
        let failed = outcome(
            &csr,
            &object(
                "u1",
                &[("Approved", "A", ""), ("Failed", "SignerValidationFailure", "bad")],
                None,
            ),
        )
        .and_then(Result::err);
        assert_eq!(
            failed.map(|e| e.to_string()).as_deref(),
            Some("certificate signing request csr-1 failed, reason: SignerValidationFailure, message: bad")
        );
        let other = outcome(&csr, &object("u2", &[], None)).and_then(Result::err);
        assert!(matches!(other, Some(CsrError::ChangedUid(_))));
    }
}
