//! The view of a stored CSR that tests read: [`CsrRecord`] and its [`Condition`]s, decoded from
//! the object as the API serves it.

use rustls_pki_types::CertificateDer;
use serde_json::Value;

use super::csr::pem_first_block;
use super::store::{CsrEntry, decoded, str_at, str_list};

/// One entry of `status.conditions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// "Approved", "Denied" or "Failed".
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339, seconds.
    pub last_update_time: String,
    pub last_transition_time: String,
}

/// A CSR as stored now (or when it was deleted).
#[derive(Clone, Debug)]
pub struct CsrRecord {
    pub name: String,
    pub uid: String,
    pub resource_version: u64,
    /// `spec.request`, decoded (normally the PEM CERTIFICATE REQUEST).
    pub request_pem: String,
    pub signer_name: String,
    pub usages: Vec<String>,
    /// Set by the server: the requesting identity and its groups.
    pub username: String,
    pub groups: Vec<String>,
    pub expiration_seconds: Option<i64>,
    pub conditions: Vec<Condition>,
    /// `status.certificate`, decoded (PEM, leaf first).
    pub certificate_pem: Option<String>,
    pub deleted: bool,
    /// The object exactly as the API serves it.
    pub object: Value,
}

impl CsrRecord {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
    pub fn is_approved(&self) -> bool {
        self.condition("Approved").is_some()
    }
    pub fn is_denied(&self) -> bool {
        self.condition("Denied").is_some()
    }
    pub fn is_failed(&self) -> bool {
        self.condition("Failed").is_some()
    }
    /// No Approved, Denied or Failed condition and no certificate.
    pub fn is_pending(&self) -> bool {
        self.conditions.is_empty() && self.certificate_pem.is_none()
    }
    /// The first certificate of `status.certificate`, as DER.
    pub fn leaf_der(&self) -> Option<CertificateDer<'static>> {
        let pem = self.certificate_pem.as_ref()?;
        let (label, der) = pem_first_block(pem.as_bytes())?;
        (label == "CERTIFICATE").then(|| CertificateDer::from(der))
    }
}

pub(super) fn conditions_of(object: &Value) -> Vec<Condition> {
    let Some(list) = object.pointer("/status/conditions").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|c| Condition {
            type_: str_at(c, "/type"),
            status: str_at(c, "/status"),
            reason: str_at(c, "/reason"),
            message: str_at(c, "/message"),
            last_update_time: str_at(c, "/lastUpdateTime"),
            last_transition_time: str_at(c, "/lastTransitionTime"),
        })
        .collect()
}

pub(super) fn record_of(entry: &CsrEntry) -> CsrRecord {
    let o = &entry.object;
    let text = |p: &str| decoded(o, p).map(|b| String::from_utf8_lossy(&b).into_owned());
    CsrRecord {
        name: str_at(o, "/metadata/name"),
        uid: str_at(o, "/metadata/uid"),
        resource_version: str_at(o, "/metadata/resourceVersion").parse().unwrap_or(0),
        request_pem: text("/spec/request").unwrap_or_default(),
        signer_name: str_at(o, "/spec/signerName"),
        usages: str_list(o.pointer("/spec/usages")),
        username: str_at(o, "/spec/username"),
        groups: str_list(o.pointer("/spec/groups")),
        expiration_seconds: o.pointer("/spec/expirationSeconds").and_then(Value::as_i64),
        conditions: conditions_of(o),
        certificate_pem: text("/status/certificate"),
        deleted: entry.deleted,
        object: o.clone(),
    }
}

/// One request as authenticated: who it was, with which credential, and the status answered.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// `None`: not authenticated (401).
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub credential: Credential,
    pub status: u16,
}

/// What a request authenticated with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    None,
    /// The gateway's own token ([`super::GATEWAY_TOKEN`]).
    GatewayToken,
    /// A bootstrap token, by its id (the public half).
    BootstrapToken(String),
    /// A client certificate, by its serial (hex) and notAfter (Unix seconds); `valid` is whether
    /// it verified at the time of the request.
    Certificate {
        serial: String,
        not_after: i64,
        valid: bool,
    },
}

impl Call {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}
