#![allow(dead_code)]
//! A stand-in for kube-apiserver as `serverTLSBootstrap` uses it (client-go util/certificate/csr and the
//! certificates.k8s.io/v1 API):
//! HTTPS (h2 and HTTP/1.1) on 127.0.0.1:0 serving the `certificates.k8s.io/v1`
//! CertificateSigningRequest API (create, get, list, watch, delete) and the Node API (get, list,
//! watch), plus a scriptable approver and `kubernetes.io/kubelet-serving` signer playing
//! kube-controller-manager's and `kubectl certificate approve|deny`'s parts.
//!
//! Request handling, in order (kube-apiserver's filter chain, simplified):
//! 1. the request (method, path and query) is recorded;
//! 2. authentication: the bearer token [`GATEWAY_TOKEN`] is the identity given to
//!    [`CsrApi::start`] (e.g. `system:node:node-a`), anything else gets 401;
//! 3. routing: [`CSR_PATH`] and `CSR_PATH/{name}` (also `/status` and `/approval`, GET only),
//!    [`NODES_PATH`] and `NODES_PATH/{name}`; 404 elsewhere, 405 for other methods;
//! 4. the verb. Errors are `metav1.Status` JSON with kube-apiserver's reasons and messages:
//!    400 BadRequest (bad JSON, wrong kind, unsupported field selector), 404 NotFound,
//!    409 AlreadyExists, 413, 415, 422 Invalid (the v1 validation: request PEM and signature,
//!    usages, signerName, expirationSeconds).
//!
//! Watches (`?watch=true|1`) stream newline-delimited `{"type":..,"object":..}` events, one
//! chunk (HTTP/1.1) or DATA frame (h2) each: with `resourceVersion` absent or "0", an ADDED per
//! matching object first, then every later change; with `resourceVersion=N`, the changes after
//! N from the full history kept here (an ERROR 410 Expired event if N predates
//! [`CsrApi::compact`]). `sendInitialEvents=true` adds the `k8s.io/initial-events-end`
//! BOOKMARK; [`CsrApi::send_bookmarks`] sends BOOKMARKs to watches that allowed them. The stream
//! ends after `timeoutSeconds` (default [`DEFAULT_WATCH_TIMEOUT`]), on [`CsrApi::end_watches`],
//! `stop()`, or when the client goes away. Field selectors: `metadata.name` (both resources),
//! `spec.signerName` (CSRs), `spec.unschedulable` (nodes), with `=`, `==`, `!=`; label selectors:
//! `k`, `!k`, `k=v`, `k==v`, `k!=v`.
//!
//! What differs from the real server: JSON only (no protobuf, no gzip), no managedFields, no
//! `limit`/`continue` paging, no authorization (the identity may do everything), a list ignores
//! `resourceVersion`, and the history is never compacted unless [`CsrApi::compact`] says so.

use super::serving::{Restartable, Running, wait_stop};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData,
    SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::pki::{Ca, Leaf, chain_pem, pem_encode};

/// The bearer token the stand-in accepts (the kubeconfig's user), as in `apiserver.rs`.
pub const GATEWAY_TOKEN: &str = "gateway-token";
pub const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
pub const NODES_PATH: &str = "/api/v1/nodes";
/// The signer this stand-in implements.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// What `kubectl certificate approve` writes.
pub const APPROVE_REASON: &str = "KubectlApprove";
pub const APPROVE_MESSAGE: &str = "This CSR was approved by kubectl certificate approve.";
/// What `kubectl certificate deny` writes.
pub const DENY_REASON: &str = "KubectlDeny";
pub const DENY_MESSAGE: &str = "This CSR was denied by kubectl certificate deny.";
/// The reason kube-controller-manager's signer gives a `Failed` condition.
pub const FAILED_REASON: &str = "SignerValidationFailure";
/// The `k8s.io/initial-events-end` bookmark annotation (`sendInitialEvents=true`).
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";
/// A watch without `timeoutSeconds` ends after this (kube-apiserver: a random 30–60 min).
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Request bodies above this get 413 (kube-apiserver's limit is 3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

const CSR_GROUP: &str = "certificates.k8s.io";
const CSR_API_VERSION: &str = "certificates.k8s.io/v1";
const LEGACY_UNKNOWN_SIGNER: &str = "kubernetes.io/legacy-unknown";
/// `allValidUsages` of the certificates API, sorted.
const VALID_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// What happens to each new CSR, right after it is stored (the 201 answer always shows it
/// pending). The automatic modes act like an approver plus kube-controller-manager's signer:
/// every change is its own resource version and MODIFIED event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Left pending until the test calls `approve`/`deny`/`fail`/`issue` (the default, and what a
    /// real cluster does: nothing auto-approves `kubelet-serving` CSRs).
    #[default]
    Pending,
    /// Approved ([`APPROVE_REASON`]) at once, never issued (a signer that is down).
    AutoApprove,
    /// Approved, then issued as [`CsrApi::issue`] does, at once.
    AutoIssue { lifetime: Duration },
    /// Pending for `delay`, then approved and issued.
    AutoIssueAfter { delay: Duration, lifetime: Duration },
    /// Denied at once with this reason and message.
    AutoDeny { reason: String, message: String },
    /// Approved, then `Failed` ([`FAILED_REASON`]) with this message, at once.
    AutoFail { message: String },
}

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

// ---------------------------------------------------------------------------------------
// The signer

/// The `kubernetes.io/kubelet-serving` signer's CA: a self-signed P-256 root (CA:TRUE,
/// keyCertSign + cRLSign, valid now-1h .. now+1y). What it issues: subject copied byte for byte
/// from the CSR, the CSR's DNS, IP, email and URI SANs (no other requested extension), key
/// usage and EKU from `spec.usages`, basicConstraints CA:FALSE, a random serial, the authority
/// key identifier; valid now-1s .. now+lifetime, capped at the CA's NotAfter.
pub struct SignerCa {
    params: CertificateParams,
    key: KeyPair,
    cert: CertificateDer<'static>,
    not_after: SystemTime,
}

impl fmt::Debug for SignerCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerCa").finish_non_exhaustive()
    }
}

impl SignerCa {
    pub fn new(cn: &str) -> SignerCa {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let now = SystemTime::now();
        let not_after = now + Duration::from_secs(365 * 86_400);
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = not_after.into();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate signer key");
        let cert = params.self_signed(&key).expect("self-sign the signer CA");
        SignerCa {
            cert: cert.der().clone(),
            params,
            key,
            // Whole seconds, as in the certificate.
            not_after: UNIX_EPOCH + Duration::from_secs(unix_secs(not_after)),
        }
    }

    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert)
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.cert_pem())
            .unwrap_or_else(|e| panic!("write signer CA PEM to {}: {e}", path.display()));
    }

    /// Signs a PEM CSR as the stand-in does for an approved CSR with these usages (no
    /// kubelet-serving checks here). Returns the leaf.
    pub fn sign_request(
        &self,
        request_pem: &str,
        usages: &[&str],
        lifetime: Duration,
    ) -> Result<CertificateDer<'static>, String> {
        let csr = parse_csr(request_pem.as_bytes())?;
        let usages: Vec<String> = usages.iter().map(|u| u.to_string()).collect();
        self.sign(&csr, &usages, lifetime)
    }

    /// A certificate as this signer issues it for the kubelet's CSR (CN `system:node:<node>`,
    /// O `system:nodes`, these SANs, usages digital signature + server auth), with a fresh P-256
    /// key: for a `kubelet-server-current.pem` made before the test. The chain is the leaf
    /// alone (pki.rs convention: no root); `.with_chain(vec![signer.cert_der()])` gives what
    /// `status.certificate` holds.
    pub fn kubelet_serving(&self, node: &str, dns: &[&str], ips: &[IpAddr], lifetime: Duration) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate P-256 key");
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).expect("DNS names are valid");
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("system:node:{node}"));
        let pem = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .expect("serialize CSR");
        let leaf = self
            .sign_request(&pem, &["digital signature", "server auth"], lifetime)
            .expect("sign kubelet-serving certificate");
        let chain = vec![leaf];
        Leaf {
            cert_pem: chain_pem(&chain),
            chain,
            key: PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der())),
            key_pem: key.serialize_pem(),
        }
    }

    fn sign(&self, csr: &ParsedCsr, usages: &[String], lifetime: Duration) -> Result<CertificateDer<'static>, String> {
        let alg: &'static SignatureAlgorithm = match &csr.key {
            KeyAlg::P256 => &PKCS_ECDSA_P256_SHA256,
            KeyAlg::P384 => &PKCS_ECDSA_P384_SHA384,
            KeyAlg::Rsa => &PKCS_RSA_SHA256,
            KeyAlg::Ed25519 => &PKCS_ED25519,
            KeyAlg::Other(oid) => return Err(format!("x509: unsupported public key algorithm {oid}")),
        };
        let placeholder = format!("csr-api-stand-in-placeholder-{}", next_id());
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, placeholder.as_str());
        params.distinguished_name = dn;
        let ia5 = |s: &str| rcgen::string::Ia5String::try_from(s.to_string()).map_err(|e| e.to_string());
        for d in &csr.dns {
            params.subject_alt_names.push(SanType::DnsName(ia5(d)?));
        }
        params
            .subject_alt_names
            .extend(csr.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        for e in &csr.emails {
            params.subject_alt_names.push(SanType::Rfc822Name(ia5(e)?));
        }
        for u in &csr.uris {
            params.subject_alt_names.push(SanType::URI(ia5(u)?));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        let (key_usages, ekus) = usages_for_rcgen(usages);
        params.key_usages = key_usages;
        params.extended_key_usages = ekus;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(1)).into();
        params.not_after = (now + lifetime).min(self.not_after).into();
        params.use_authority_key_identifier_extension = true;
        let public_key = CsrPublicKey {
            bytes: csr.public_key.clone(),
            alg,
        };
        let cert = params
            .signed_by(&public_key, &Issuer::from_params(&self.params, &self.key))
            .map_err(|e| format!("sign: {e}"))?;
        let der = replace_subject(cert.der(), &encode_cn_name(&placeholder), &csr.subject_raw, &self.key)?;
        Ok(CertificateDer::from(der))
    }
}

/// The CSR's public key, for rcgen.
struct CsrPublicKey {
    bytes: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

fn usages_for_rcgen(usages: &[String]) -> (Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>) {
    let mut ku = Vec::new();
    let mut eku = Vec::new();
    for u in usages {
        let k = match u.as_str() {
            "signing" | "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "content commitment" => Some(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => Some(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => Some(KeyUsagePurpose::DataEncipherment),
            "cert sign" => Some(KeyUsagePurpose::KeyCertSign),
            "crl sign" => Some(KeyUsagePurpose::CrlSign),
            "encipher only" => Some(KeyUsagePurpose::EncipherOnly),
            "decipher only" => Some(KeyUsagePurpose::DecipherOnly),
            _ => None,
        };
        let e = match u.as_str() {
            "any" => Some(ExtendedKeyUsagePurpose::Any),
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => Some(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => Some(ExtendedKeyUsagePurpose::EmailProtection),
            "ipsec end system" => Some(ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
            "ipsec tunnel" => Some(ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
            "ipsec user" => Some(ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
            "timestamping" => Some(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => Some(ExtendedKeyUsagePurpose::OcspSigning),
            "microsoft sgc" => Some(ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3])),
            "netscape sgc" => Some(ExtendedKeyUsagePurpose::Other(vec![2, 16, 840, 1, 113730, 4, 1])),
            _ => None,
        };
        if let Some(k) = k
            && !ku.contains(&k)
        {
            ku.push(k);
        }
        if let Some(e) = e
            && !eku.contains(&e)
        {
            eku.push(e);
        }
    }
    (ku, eku)
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b[8..].copy_from_slice(&next_id().to_be_bytes());
    }
    b[0] = (b[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&b)
}

// ---------------------------------------------------------------------------------------
// CSR parsing and the checks of the API server and the signer

#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyAlg {
    P256,
    P384,
    Rsa,
    Ed25519,
    Other(String),
}

/// What the stand-in needs from a CSR, owned.
struct ParsedCsr {
    subject_raw: Vec<u8>,
    common_name: String,
    orgs: Vec<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    emails: Vec<String>,
    uris: Vec<String>,
    key: KeyAlg,
    /// The subjectPublicKey BIT STRING contents.
    public_key: Vec<u8>,
    signature_oid: String,
    info_raw: Vec<u8>,
    signature: Vec<u8>,
}

/// The first PEM block of `data` as (label, DER), like Go's `pem.Decode` (simplified).
fn pem_first_block(data: &[u8]) -> Option<(String, Vec<u8>)> {
    let text = String::from_utf8_lossy(data);
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((label.to_string(), der))
}

/// `certificates.ParseCSR`: the first PEM block must be a CERTIFICATE REQUEST that parses.
fn parse_csr(pem: &[u8]) -> Result<ParsedCsr, String> {
    let not_csr = || "PEM block type must be CERTIFICATE REQUEST".to_string();
    let (label, der) = pem_first_block(pem).ok_or_else(not_csr)?;
    if label != "CERTIFICATE REQUEST" {
        return Err(not_csr());
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    if !rest.is_empty() {
        return Err("asn1: syntax error: trailing data".to_string());
    }
    let info = &csr.certification_request_info;
    let subject = &info.subject;
    let spki = &info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let key = match (spki.algorithm.algorithm.to_id_string().as_str(), curve.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => KeyAlg::P256,
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => KeyAlg::P384,
        ("1.2.840.113549.1.1.1", _) => KeyAlg::Rsa,
        ("1.3.101.112", _) => KeyAlg::Ed25519,
        (oid, _) => KeyAlg::Other(oid.to_string()),
    };
    let mut parsed = ParsedCsr {
        subject_raw: subject.as_raw().to_vec(),
        // Go keeps the last CN.
        common_name: subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .last()
            .unwrap_or("")
            .to_string(),
        orgs: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect(),
        dns: Vec::new(),
        ips: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        key,
        public_key: spki.subject_public_key.data.to_vec(),
        signature_oid: csr.signature_algorithm.algorithm.to_id_string(),
        info_raw: info.raw.to_vec(),
        signature: csr.signature_value.data.to_vec(),
    };
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => parsed.dns.push(d.to_string()),
                        GeneralName::RFC822Name(e) => parsed.emails.push(e.to_string()),
                        GeneralName::URI(u) => parsed.uris.push(u.to_string()),
                        GeneralName::IPAddress(b) => match b.len() {
                            4 => parsed.ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes"))),
                            16 => parsed
                                .ips
                                .push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes"))),
                            n => return Err(format!("x509: certificate contained IP address of length {n}")),
                        },
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(parsed)
}

/// `CertificateRequest.CheckSignature`, with Go's messages.
fn check_signature(csr: &ParsedCsr) -> Result<(), String> {
    use aws_lc_rs::signature as sig;
    let (alg, failure): (&'static dyn sig::VerificationAlgorithm, &str) = match (csr.signature_oid.as_str(), &csr.key) {
        ("1.2.840.10045.4.3.2", KeyAlg::P256) => (&sig::ECDSA_P256_SHA256_ASN1, "x509: ECDSA verification failure"),
        ("1.2.840.10045.4.3.3", KeyAlg::P256) => (&sig::ECDSA_P256_SHA384_ASN1, "x509: ECDSA verification failure"),
        ("1.2.840.10045.4.3.2", KeyAlg::P384) => (&sig::ECDSA_P384_SHA256_ASN1, "x509: ECDSA verification failure"),
        ("1.2.840.10045.4.3.3", KeyAlg::P384) => (&sig::ECDSA_P384_SHA384_ASN1, "x509: ECDSA verification failure"),
        ("1.2.840.113549.1.1.11", KeyAlg::Rsa) => (&sig::RSA_PKCS1_2048_8192_SHA256, "crypto/rsa: verification error"),
        ("1.2.840.113549.1.1.12", KeyAlg::Rsa) => (&sig::RSA_PKCS1_2048_8192_SHA384, "crypto/rsa: verification error"),
        ("1.2.840.113549.1.1.13", KeyAlg::Rsa) => (&sig::RSA_PKCS1_2048_8192_SHA512, "crypto/rsa: verification error"),
        ("1.3.101.112", KeyAlg::Ed25519) => (&sig::ED25519, "ed25519: invalid signature"),
        _ => return Err("x509: cannot verify signature: algorithm unimplemented".to_string()),
    };
    sig::UnparsedPublicKey::new(alg, &csr.public_key)
        .verify(&csr.info_raw, &csr.signature)
        .map_err(|_| failure.to_string())
}

/// `certificates.ValidateKubeletServingCSR`, in its order and with its messages.
fn validate_kubelet_serving(csr: &ParsedCsr, usages: &[String]) -> Result<(), String> {
    if csr.orgs != ["system:nodes"] {
        return Err("subject organization is not system:nodes".to_string());
    }
    if csr.dns.is_empty() && csr.ips.is_empty() {
        return Err("DNS or IP subjectAltName is required".to_string());
    }
    if !csr.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".to_string());
    }
    if !csr.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".to_string());
    }
    let mut set: Vec<&str> = usages.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    let with_rsa = ["digital signature", "key encipherment", "server auth"];
    let without_rsa = ["digital signature", "server auth"];
    if set != with_rsa && set != without_rsa {
        return Err(format!("usages did not match [{}]", with_rsa.join(" ")));
    }
    if !csr.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".to_string());
    }
    Ok(())
}

/// One `field.Error`.
struct FieldError {
    field: String,
    /// FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueDuplicate.
    reason: &'static str,
    /// `ErrorBody()`: the message without the field.
    body: String,
}

/// Go's `%#v` of a `[]byte`.
fn go_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(|x| format!("{x:#x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

/// The v1 create validation of the spec (validateCertificateSigningRequest).
fn validate_spec(request: &[u8], signer: &str, usages: &[String], expiration: Option<i64>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Err(e) = parse_csr(request).and_then(|c| check_signature(&c)) {
        errs.push(FieldError {
            field: "spec.request".into(),
            reason: "FieldValueInvalid",
            body: format!("Invalid value: {}: {e}", go_bytes(request)),
        });
    }
    if usages.is_empty() {
        errs.push(FieldError {
            field: "spec.usages".into(),
            reason: "FieldValueRequired",
            body: "Required value: usages must be provided".into(),
        });
    }
    for (i, u) in usages.iter().enumerate() {
        if !VALID_USAGES.contains(&u.as_str()) {
            let supported: Vec<String> = VALID_USAGES.iter().map(|v| format!("{v:?}")).collect();
            errs.push(FieldError {
                field: format!("spec.usages[{i}]"),
                reason: "FieldValueNotSupported",
                body: format!("Unsupported value: {u:?}: supported values: {}", supported.join(", ")),
            });
        }
    }
    for (i, u) in usages.iter().enumerate() {
        if usages[..i].contains(u) {
            errs.push(FieldError {
                field: format!("spec.usages[{i}]"),
                reason: "FieldValueDuplicate",
                body: format!("Duplicate value: {u:?}"),
            });
        }
    }
    if signer == LEGACY_UNKNOWN_SIGNER {
        errs.push(FieldError {
            field: "spec.signerName".into(),
            reason: "FieldValueInvalid",
            body: format!("Invalid value: {signer:?}: the legacy signerName is not allowed via this API version"),
        });
    } else if signer.is_empty() {
        errs.push(FieldError {
            field: "spec.signerName".into(),
            reason: "FieldValueRequired",
            body: "Required value".into(),
        });
    } else if signer.split('/').count() != 2 {
        errs.push(FieldError {
            field: "spec.signerName".into(),
            reason: "FieldValueInvalid",
            body: format!(
                "Invalid value: {signer:?}: must be a fully qualified domain and path of the form 'example.com/signer-name'"
            ),
        });
    }
    if let Some(s) = expiration
        && s < 600
    {
        errs.push(FieldError {
            field: "spec.expirationSeconds".into(),
            reason: "FieldValueInvalid",
            body: format!("Invalid value: {s}: may not specify a duration less than 600 seconds (10 minutes)"),
        });
    }
    errs
}

// ---------------------------------------------------------------------------------------
// State

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Res {
    Csr,
    Node,
}

impl Res {
    fn kind(self) -> &'static str {
        match self {
            Res::Csr => "CertificateSigningRequest",
            Res::Node => "Node",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Res::Csr => CSR_API_VERSION,
            Res::Node => "v1",
        }
    }
    fn plural(self) -> &'static str {
        match self {
            Res::Csr => "certificatesigningrequests",
            Res::Node => "nodes",
        }
    }
    fn group(self) -> &'static str {
        match self {
            Res::Csr => CSR_GROUP,
            Res::Node => "",
        }
    }
    /// `certificatesigningrequests.certificates.k8s.io`, `nodes`.
    fn qualified(self) -> String {
        match self {
            Res::Csr => format!("{}.{}", self.plural(), self.group()),
            Res::Node => self.plural().to_string(),
        }
    }
    /// The value of a supported field selector field, None if the field is not supported.
    fn field(self, object: &Value, field: &str) -> Option<String> {
        let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        match (self, field) {
            (_, "metadata.name") => Some(s("/metadata/name")),
            (Res::Csr, "spec.signerName") => Some(s("/spec/signerName")),
            (Res::Node, "spec.unschedulable") => Some(
                object
                    .pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ),
            _ => None,
        }
    }
}

struct Event {
    rv: u64,
    res: Res,
    kind: &'static str,
    object: Value,
}

struct CsrEntry {
    object: Value,
    deleted: bool,
}

struct State {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Expired.
    compacted: u64,
    /// Every CSR ever created, in order; `csr_index` maps live names to entries.
    csrs: Vec<CsrEntry>,
    csr_index: HashMap<String, usize>,
    nodes: BTreeMap<String, Value>,
    events: Vec<Event>,
    mode: Mode,
    leaf_only: bool,
}

impl State {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn live(&self, res: Res) -> Vec<&Value> {
        match res {
            Res::Csr => {
                let mut names: Vec<(&String, &usize)> = self.csr_index.iter().collect();
                names.sort();
                names.into_iter().map(|(_, i)| &self.csrs[*i].object).collect()
            }
            Res::Node => self.nodes.values().collect(),
        }
    }

    fn get(&self, res: Res, name: &str) -> Option<&Value> {
        match res {
            Res::Csr => self.csr_index.get(name).map(|i| &self.csrs[*i].object),
            Res::Node => self.nodes.get(name),
        }
    }
}

/// What the serving tasks share. Holds no stop signal, so tasks never keep the server alive.
struct Inner {
    state: Mutex<State>,
    requests: Mutex<Vec<(String, String)>>,
    tls: Arc<rustls::ServerConfig>,
    identity: String,
    signer: Arc<SignerCa>,
    /// The resource version after every change.
    changed: watch::Sender<u64>,
    bookmarks: watch::Sender<u64>,
    end_watches: watch::Sender<u64>,
    connections: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// Stores a changed CSR under a new resource version and records the event.
    fn modify_csr(&self, name: &str, f: impl FnOnce(&mut Value) -> Result<bool, String>) -> Result<(), String> {
        let rv = {
            let mut state = lock(&self.state);
            let index = *state
                .csr_index
                .get(name)
                .ok_or_else(|| format!("no CertificateSigningRequest {name:?}"))?;
            let mut object = state.csrs[index].object.clone();
            if !f(&mut object)? {
                return Ok(());
            }
            let rv = state.bump();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.csrs[index].object = object.clone();
            state.events.push(Event {
                rv,
                res: Res::Csr,
                kind: "MODIFIED",
                object,
            });
            rv
        };
        self.changed.send_replace(rv);
        Ok(())
    }

    /// Adds a condition the way the approval and status subresources allow: Approved and
    /// Denied exclude each other; an existing condition of the type is kept (no-op).
    fn add_condition(&self, name: &str, type_: &str, reason: &str, message: &str) -> Result<(), String> {
        self.modify_csr(name, |object| {
            let conditions = conditions_of(object);
            let has = |t: &str| conditions.iter().any(|c| c.type_ == t);
            if has(type_) {
                return Ok(false);
            }
            if (type_ == "Approved" && has("Denied")) || (type_ == "Denied" && has("Approved")) {
                return Err(format!(
                    "CSR {name}: Approved and Denied conditions are mutually exclusive"
                ));
            }
            let now = rfc3339(SystemTime::now());
            let status = status_object(object);
            let list = status.entry("conditions").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!({
                    "type": type_,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                }));
            }
            Ok(true)
        })
    }

    /// The signer's work on one approved CSR: kubelet-serving checks (a failure becomes a
    /// `Failed` condition, as kube-controller-manager does), then `status.certificate`.
    fn issue(&self, name: &str, lifetime: Duration) -> Result<(), String> {
        let (request, signer, usages, expiration, conditions, issued) = {
            let state = lock(&self.state);
            let object = state
                .get(Res::Csr, name)
                .ok_or_else(|| format!("no CertificateSigningRequest {name:?}"))?;
            (
                decoded(object, "/spec/request").unwrap_or_default(),
                str_at(object, "/spec/signerName"),
                str_list(object.pointer("/spec/usages")),
                object.pointer("/spec/expirationSeconds").and_then(Value::as_i64),
                conditions_of(object),
                object.pointer("/status/certificate").is_some(),
            )
        };
        let has = |t: &str| conditions.iter().any(|c| c.type_ == t);
        if !has("Approved") {
            return Err(format!(
                "CSR {name} is not approved: the signer issues only approved CSRs"
            ));
        }
        if has("Denied") || has("Failed") {
            return Err(format!("CSR {name} is denied or failed"));
        }
        if issued {
            return Err(format!("CSR {name} already has a certificate"));
        }
        let csr = parse_csr(&request)?;
        if signer == KUBELET_SERVING_SIGNER
            && let Err(message) = validate_kubelet_serving(&csr, &usages)
        {
            return self.add_condition(name, "Failed", FAILED_REASON, &message);
        }
        // kube-controller-manager: the shorter of its signing duration and expirationSeconds.
        let lifetime = match expiration {
            Some(s) if s > 0 => lifetime.min(Duration::from_secs(s.unsigned_abs())),
            _ => lifetime,
        };
        let leaf = self.signer.sign(&csr, &usages, lifetime)?;
        let leaf_only = lock(&self.state).leaf_only;
        let mut chain = vec![leaf];
        if !leaf_only {
            chain.push(self.signer.cert_der());
        }
        let pem = chain_pem(&chain);
        self.modify_csr(name, |object| {
            if object.pointer("/status/certificate").is_some() {
                return Err(format!("CSR {name} already has a certificate"));
            }
            status_object(object).insert("certificate".into(), json!(b64(pem.as_bytes())));
            Ok(true)
        })
    }

    /// Removes a live CSR (kept in the record, marked deleted); its last state, or None.
    fn delete_csr(&self, name: &str) -> Option<Value> {
        let (rv, object) = {
            let mut state = lock(&self.state);
            let index = state.csr_index.remove(name)?;
            let rv = state.bump();
            let mut object = state.csrs[index].object.clone();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.csrs[index].deleted = true;
            state.csrs[index].object = object.clone();
            state.events.push(Event {
                rv,
                res: Res::Csr,
                kind: "DELETED",
                object: object.clone(),
            });
            (rv, object)
        };
        self.changed.send_replace(rv);
        Some(object)
    }

    fn approve_and_issue(&self, name: &str, lifetime: Duration) {
        if self
            .add_condition(name, "Approved", APPROVE_REASON, APPROVE_MESSAGE)
            .is_ok()
            && let Err(e) = self.issue(name, lifetime)
        {
            let _ = self.add_condition(name, "Failed", FAILED_REASON, &e);
        }
    }

    /// Applies the mode to a CSR just created.
    fn apply_mode(self: &Arc<Self>, name: &str, mode: Mode) {
        match mode {
            Mode::Pending => {}
            Mode::AutoApprove => {
                let _ = self.add_condition(name, "Approved", APPROVE_REASON, APPROVE_MESSAGE);
            }
            Mode::AutoIssue { lifetime } => self.approve_and_issue(name, lifetime),
            Mode::AutoIssueAfter { delay, lifetime } => {
                let weak: Weak<Inner> = Arc::downgrade(self);
                let name = name.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(inner) = weak.upgrade() {
                        inner.approve_and_issue(&name, lifetime);
                    }
                });
            }
            Mode::AutoDeny { reason, message } => {
                let _ = self.add_condition(name, "Denied", &reason, &message);
            }
            Mode::AutoFail { message } => {
                let _ = self.add_condition(name, "Approved", APPROVE_REASON, APPROVE_MESSAGE);
                let _ = self.add_condition(name, "Failed", FAILED_REASON, &message);
            }
        }
    }
}

fn status_object(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    object["status"].as_object_mut().expect("status is an object")
}

fn conditions_of(object: &Value) -> Vec<Condition> {
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

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string()
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// A base64 (ByteString) field, decoded.
fn decoded(v: &Value, pointer: &str) -> Option<Vec<u8>> {
    let s = v.pointer(pointer).and_then(Value::as_str)?;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn record_of(entry: &CsrEntry) -> CsrRecord {
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

// ---------------------------------------------------------------------------------------
// The handle

/// The stand-in. Clones share it; it serves until `stop()` or until every clone is dropped.
#[derive(Clone)]
pub struct CsrApi {
    inner: Arc<Inner>,
    /// Held only by `CsrApi` handles: dropping the last one stops serving.
    control: Arc<Restartable>,
    ca: Ca,
    signer: Arc<SignerCa>,
}

impl fmt::Debug for CsrApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrApi")
            .field("addr", &self.control.addr())
            .field("identity", &self.inner.identity)
            .finish()
    }
}

impl CsrApi {
    /// HTTPS on 127.0.0.1:0 (ALPN h2, http/1.1) with a serving certificate for "localhost" and
    /// 127.0.0.1 from its own CA. `node_identity` is who [`GATEWAY_TOKEN`] is: it becomes
    /// `spec.username` of every CSR, with groups `system:nodes` (if it starts with
    /// `system:node:`) and `system:authenticated`.
    pub async fn start(node_identity: &str) -> CsrApi {
        let ca = Ca::new("csr-api-stand-in-ca");
        let serving = ca.server(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions supported by aws-lc-rs")
            .with_no_client_auth()
            .with_single_cert(serving.chain.clone(), serving.key.clone_key())
            .expect("serving certificate and key");
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let signer = Arc::new(SignerCa::new("csr-api-stand-in-kubelet-serving-signer"));
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                rv: 100,
                compacted: 0,
                csrs: Vec::new(),
                csr_index: HashMap::new(),
                nodes: BTreeMap::new(),
                events: Vec::new(),
                mode: Mode::Pending,
                leaf_only: false,
            }),
            requests: Mutex::new(Vec::new()),
            tls: Arc::new(tls),
            identity: node_identity.to_string(),
            signer: signer.clone(),
            changed: watch::Sender::new(100),
            bookmarks: watch::Sender::new(0),
            end_watches: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind CSR API stand-in on 127.0.0.1:0");
        let addr = listener.local_addr().expect("CSR API stand-in local addr");
        let running = spawn_server(listener, inner.clone());
        CsrApi {
            inner,
            control: Arc::new(Restartable::new(addr, running)),
            ca,
            signer,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.control.addr()
    }

    /// "https://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("https://{}", self.control.addr())
    }

    /// The CA of the serving certificate, as PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.cert_der()
    }

    /// The identity [`GATEWAY_TOKEN`] authenticates as.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// Writes `csr-api-<port>.kubeconfig` in `dir`: the server with its CA inline
    /// (`certificate-authority-data`) and a user with the token [`GATEWAY_TOKEN`].
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        self.write_kubeconfig_with_token(dir, GATEWAY_TOKEN)
    }

    /// Same with another token (anything else gets 401), in `csr-api-<port>-token-<n>.kubeconfig`.
    pub fn write_kubeconfig_with_token(&self, dir: &Path, token: &str) -> PathBuf {
        let name = if token == GATEWAY_TOKEN {
            format!("csr-api-{}.kubeconfig", self.control.addr().port())
        } else {
            format!("csr-api-{}-token-{}.kubeconfig", self.control.addr().port(), next_id())
        };
        let path = dir.join(name);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: csr-api-stand-in\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: kubelet-gate\n  user:\n    token: {}\ncontexts:\n- name: kubelet-gate@csr-api-stand-in\n  context:\n    cluster: csr-api-stand-in\n    user: kubelet-gate\ncurrent-context: kubelet-gate@csr-api-stand-in\npreferences: {{}}\n",
            self.url(),
            b64(self.ca.cert_pem().as_bytes()),
            yaml_quote(token),
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
        path
    }

    /// A kube client for this server with [`GATEWAY_TOKEN`] (through a kubeconfig in a
    /// temporary directory, removed again).
    pub async fn kube_client(&self) -> kube::Client {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = self.write_kubeconfig(dir.path());
        let file = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config from kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    /// The `kubernetes.io/kubelet-serving` signer: trust its certificate to verify what the
    /// gateway serves after bootstrap.
    pub fn signer_ca(&self) -> &SignerCa {
        &self.signer
    }

    // ---- scripting ----

    /// What happens to CSRs created from now on.
    pub fn set_mode(&self, mode: Mode) {
        lock(&self.inner.state).mode = mode;
    }

    /// `status.certificate` holds the leaf only (kube-controller-manager's signer) instead of
    /// the leaf followed by the signer CA (the default).
    pub fn set_leaf_only(&self, leaf_only: bool) {
        lock(&self.inner.state).leaf_only = leaf_only;
    }

    /// `kubectl certificate approve`: condition Approved, reason [`APPROVE_REASON`]. A no-op if
    /// already approved; panics if unknown or denied.
    pub fn approve(&self, name: &str) {
        self.approve_with(name, APPROVE_REASON, APPROVE_MESSAGE);
    }

    /// Approved with this reason and message (an external approver's).
    pub fn approve_with(&self, name: &str, reason: &str, message: &str) {
        if let Err(e) = self.inner.add_condition(name, "Approved", reason, message) {
            panic!("approve: {e}");
        }
    }

    /// Condition Denied ([`DENY_REASON`]/[`DENY_MESSAGE`] are kubectl's). A no-op if already
    /// denied; panics if unknown or approved.
    pub fn deny(&self, name: &str, reason: &str, message: &str) {
        if let Err(e) = self.inner.add_condition(name, "Denied", reason, message) {
            panic!("deny: {e}");
        }
    }

    /// Condition Failed, reason [`FAILED_REASON`], as the signer sets it.
    pub fn fail(&self, name: &str, message: &str) {
        if let Err(e) = self.inner.add_condition(name, "Failed", FAILED_REASON, message) {
            panic!("fail: {e}");
        }
    }

    /// The signer, now, on an approved CSR: for `kubernetes.io/kubelet-serving`, a CSR that
    /// fails kube-controller-manager's checks (O `system:nodes` only, a DNS or IP SAN, no email
    /// or URI SAN, usages {digital signature, [key encipherment,] server auth}, CN
    /// `system:node:*`) gets `Failed` with that message instead; otherwise `status.certificate`
    /// is set (see [`SignerCa`]), valid for the shorter of `lifetime` and
    /// `spec.expirationSeconds`. Any other signer name is signed without checks. Panics if the
    /// CSR is unknown, not approved, denied, failed or already issued.
    pub fn issue(&self, name: &str, lifetime: Duration) {
        if let Err(e) = self.inner.issue(name, lifetime) {
            panic!("issue: {e}");
        }
    }

    /// Deletes a CSR (as the CSR cleaner does): watches see DELETED; `csrs()` keeps it, marked.
    /// Panics if unknown.
    pub fn delete_csr(&self, name: &str) {
        if self.inner.delete_csr(name).is_none() {
            panic!("delete_csr: no CertificateSigningRequest {name:?}");
        }
    }

    /// Creates or updates the Node: `status.addresses` as (type, address) pairs, e.g.
    /// `("InternalIP", "10.0.0.5")`, `("Hostname", "node-a")`, and
    /// `status.daemonEndpoints.kubeletEndpoint.Port`. Watches see ADDED or MODIFIED.
    pub fn set_node(&self, name: &str, addresses: &[(&str, &str)], port: i32) {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        let rv = {
            let mut state = lock(&self.inner.state);
            let rv = state.bump();
            let (kind, mut object) = match state.nodes.get(name) {
                Some(existing) => ("MODIFIED", existing.clone()),
                None => (
                    "ADDED",
                    json!({
                        "kind": "Node",
                        "apiVersion": "v1",
                        "metadata": {
                            "name": name,
                            "uid": uuid(),
                            "creationTimestamp": rfc3339(SystemTime::now()),
                            "labels": {
                                "kubernetes.io/hostname": name,
                                "kubernetes.io/os": "linux",
                            },
                        },
                        "spec": {},
                        "status": {},
                    }),
                ),
            };
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            object["status"]["addresses"] = json!(addresses);
            object["status"]["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
            state.nodes.insert(name.to_string(), object.clone());
            state.events.push(Event {
                rv,
                res: Res::Node,
                kind,
                object,
            });
            rv
        };
        self.inner.changed.send_replace(rv);
    }

    /// Removes the Node (watches see DELETED); a no-op if unknown.
    pub fn remove_node(&self, name: &str) {
        let rv = {
            let mut state = lock(&self.inner.state);
            let Some(mut object) = state.nodes.remove(name) else {
                return;
            };
            let rv = state.bump();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.events.push(Event {
                rv,
                res: Res::Node,
                kind: "DELETED",
                object,
            });
            rv
        };
        self.inner.changed.send_replace(rv);
    }

    /// From now on, a watch from a resourceVersion older than the current one gets an ERROR
    /// event with 410 Expired ("too old resource version"), as after an etcd compaction.
    pub fn compact(&self) {
        let mut state = lock(&self.inner.state);
        state.compacted = state.rv;
    }

    /// Sends a BOOKMARK (current resourceVersion) on every open watch that allowed bookmarks.
    pub fn send_bookmarks(&self) {
        self.inner.bookmarks.send_modify(|n| *n += 1);
    }

    /// Ends every open watch stream cleanly (as kube-apiserver does at its timeout).
    pub fn end_watches(&self) {
        self.inner.end_watches.send_modify(|n| *n += 1);
    }

    /// Closes the listener and every live connection (watches included); connections are
    /// refused afterwards. All state and records are kept.
    pub async fn stop(&self) {
        self.control.stop().await;
    }

    /// Listens again on the same port (stopping first if running), keeping all state.
    pub async fn restart(&self) {
        let inner = self.inner.clone();
        self.control
            .restart(move |listener| spawn_server(listener, inner))
            .await;
    }

    // ---- observation ----

    /// Every CSR created, in creation order (deleted ones included), as stored now.
    pub fn csrs(&self) -> Vec<CsrRecord> {
        lock(&self.inner.state).csrs.iter().map(record_of).collect()
    }

    /// The live CSR of that name.
    pub fn csr(&self, name: &str) -> Option<CsrRecord> {
        let state = lock(&self.inner.state);
        state.csr_index.get(name).map(|i| record_of(&state.csrs[*i]))
    }

    /// Waits until at least `count` CSRs have been created; panics after `timeout`.
    pub async fn wait_for_csrs(&self, count: usize, timeout: Duration) -> Vec<CsrRecord> {
        self.wait_until(timeout, |csrs| csrs.len() >= count)
            .await
            .unwrap_or_else(|| panic!("fewer than {count} CSRs after {timeout:?}: {:?}", self.csrs()))
    }

    /// Waits until `pred(csrs())` holds; None after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&[CsrRecord]) -> bool) -> Option<Vec<CsrRecord>> {
        let mut changed = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let csrs = self.csrs();
            if pred(&csrs) {
                return Some(csrs);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Every request received (unauthenticated ones included): method and path with query,
    /// as sent.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.inner.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.requests).clear();
    }

    /// The resource version of the last change.
    pub fn resource_version(&self) -> u64 {
        lock(&self.inner.state).rv
    }

    /// TCP connections accepted so far (across restarts).
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }
}

fn next_id() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// RFC 3339 in UTC with whole seconds, as `metav1.Time` marshals.
fn rfc3339(t: SystemTime) -> String {
    let secs = unix_secs(t) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        for (i, x) in b.iter_mut().enumerate() {
            *x = (next_id() as u8).wrapping_add(i as u8);
        }
    }
    b
}

/// A version-4 UUID, as `metadata.uid` and `Audit-Id`.
fn uuid() -> String {
    let mut b: [u8; 16] = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `names.SimpleNameGenerator`: the base cut to 58 characters plus 5 random characters from
/// `utilrand`'s alphabet (lowercase consonants and digits).
fn generate_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base: String = base.chars().take(58).collect();
    let suffix: String = random_bytes::<5>()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("{base}{suffix}")
}

// ---------------------------------------------------------------------------------------
// Serving

fn spawn_server(listener: TcpListener, inner: Arc<Inner>) -> Running {
    Running::spawn(listener, move |tcp, stop_rx| {
        inner.connections.fetch_add(1, Ordering::Relaxed);
        serve_conn(tcp, inner.clone(), stop_rx)
    })
}

async fn serve_conn(tcp: TcpStream, inner: Arc<Inner>, mut stop_rx: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let acceptor = tokio_rustls::TlsAcceptor::from(inner.tls.clone());
    let tls = tokio::select! {
        _ = wait_stop(&mut stop_rx) => return,
        r = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            _ => return,
        },
    };
    let svc = service_fn(move |req| handle(req, inner.clone()));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let serve = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        _ = wait_stop(&mut stop_rx) => {}
        _ = serve => {}
    }
}

/// A response body: whole, or a watch stream fed by a task (one frame per event).
enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

type Resp = Response<Body>;

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn bearer_is_gateway(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next().unwrap_or("");
    let token = parts.next().unwrap_or("");
    scheme.eq_ignore_ascii_case("bearer") && parts.next().is_none() && token == GATEWAY_TOKEN
}

/// `%XX` and `+` decoding of one query component.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded query parameters; the first value of a name counts.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

enum Route {
    Collection(Res),
    /// The object (GET, DELETE for CSRs).
    Object(Res, String),
    /// A subresource that serves the object on GET (`status`, `approval`).
    Subresource(Res, String),
    Unknown,
}

fn route(path: &str) -> Route {
    let split = |prefix: &str| -> Option<Vec<String>> {
        let rest = path.strip_prefix(prefix)?;
        if rest.is_empty() || rest == "/" {
            return Some(Vec::new());
        }
        let rest = rest.strip_prefix('/')?;
        Some(rest.split('/').map(|s| percent_decode(s, false)).collect())
    };
    for (prefix, res) in [(CSR_PATH, Res::Csr), (NODES_PATH, Res::Node)] {
        if let Some(segments) = split(prefix) {
            let subresources: &[&str] = match res {
                Res::Csr => &["status", "approval"],
                Res::Node => &["status"],
            };
            return match segments.as_slice() {
                [] => Route::Collection(res),
                [name] if !name.is_empty() => Route::Object(res, name.clone()),
                [name, sub] if !name.is_empty() && subresources.contains(&sub.as_str()) => {
                    Route::Subresource(res, name.clone())
                }
                _ => Route::Unknown,
            };
        }
    }
    Route::Unknown
}

async fn handle(req: Request<Incoming>, inner: Arc<Inner>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.to_string());
    lock(&inner.requests).push((parts.method.as_str().to_string(), target));
    let raw = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .ok();
    if !bearer_is_gateway(&parts.headers) {
        return Ok(status_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ));
    }
    let query = Query(query_pairs(parts.uri.query().unwrap_or("")));
    let param = |name: &str| query.get(name);
    let is_watch = param("watch").and_then(parse_bool).unwrap_or(false);
    let answer = match (route(parts.uri.path()), &parts.method) {
        (Route::Unknown, _) => not_found_generic(),
        (Route::Collection(res), &Method::GET) if is_watch => start_watch(&inner, res, None, &query),
        (Route::Collection(res), &Method::GET) => list(&inner, res, &query),
        (Route::Collection(Res::Csr), &Method::POST) => {
            let content_type = header_string(&parts.headers, header::CONTENT_TYPE);
            create_csr(&inner, raw, content_type.as_deref(), param("dryRun").is_some())
        }
        (Route::Object(res, name), &Method::GET) if is_watch => start_watch(&inner, res, Some(&name), &query),
        (Route::Object(res, name) | Route::Subresource(res, name), &Method::GET) => {
            match lock(&inner.state).get(res, &name) {
                Some(object) => json_response(StatusCode::OK, object),
                None => not_found(res, &name),
            }
        }
        (Route::Object(Res::Csr, name), &Method::DELETE) => delete_csr_http(&inner, &name),
        _ => status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ),
    };
    Ok(answer)
}

fn delete_csr_http(inner: &Inner, name: &str) -> Resp {
    match inner.delete_csr(name) {
        Some(object) => json_response(StatusCode::OK, &object),
        None => not_found(Res::Csr, name),
    }
}

// ---- selectors ----

#[derive(Clone, Debug, Default)]
struct Selector {
    /// (field, equal?, value)
    fields: Vec<(String, bool, String)>,
    labels: Vec<LabelReq>,
}

#[derive(Clone, Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

impl Selector {
    fn parse(res: Res, fields: Option<&str>, labels: Option<&str>) -> Result<Selector, String> {
        let mut sel = Selector::default();
        for term in fields.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{term}'; can't understand '{term}'"));
            };
            let field = field.trim();
            if res.field(&json!({}), field).is_none() {
                return Err(format!("field label not supported: {field}"));
            }
            sel.fields.push((field.to_string(), eq, value.trim().to_string()));
        }
        for term in labels.unwrap_or("").split(',').filter(|t| !t.trim().is_empty()) {
            let term = term.trim();
            if term.contains('(') {
                return Err(format!(
                    "unable to parse requirement: the stand-in does not do set selectors: {term}"
                ));
            }
            let req = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::Absent(k.trim().into())
            } else {
                LabelReq::Exists(term.into())
            };
            sel.labels.push(req);
        }
        Ok(sel)
    }

    fn matches(&self, res: Res, object: &Value) -> bool {
        let fields_ok = self
            .fields
            .iter()
            .all(|(f, eq, v)| res.field(object, f).is_some_and(|actual| (actual == *v) == *eq));
        let label = |k: &str| {
            object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => label(k) != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::Absent(k) => label(k).is_none(),
        });
        fields_ok && labels_ok
    }
}

// ---- list and get ----

fn list(inner: &Inner, res: Res, query: &Query) -> Resp {
    let param = |name: &str| query.get(name);
    let selector = match Selector::parse(res, param("fieldSelector"), param("labelSelector")) {
        Ok(s) => s,
        Err(m) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &m, None),
    };
    let state = lock(&inner.state);
    let items: Vec<Value> = state
        .live(res)
        .into_iter()
        .filter(|o| selector.matches(res, o))
        .map(|o| {
            // List items carry no TypeMeta.
            let mut item = o.clone();
            if let Some(m) = item.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            item
        })
        .collect();
    let body = json!({
        "kind": format!("{}List", res.kind()),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": state.rv.to_string()},
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

// ---- watch ----

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("serialize event");
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(res: Res, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": res.kind(), "apiVersion": res.api_version(), "metadata": metadata}),
    )
}

fn start_watch(inner: &Arc<Inner>, res: Res, name: Option<&str>, query: &Query) -> Resp {
    let param = |name: &str| query.get(name);
    let mut selector = match Selector::parse(res, param("fieldSelector"), param("labelSelector")) {
        Ok(s) => s,
        Err(m) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &m, None),
    };
    if let Some(n) = name {
        selector.fields.push(("metadata.name".into(), true, n.to_string()));
    }
    let rv_param = param("resourceVersion").unwrap_or("");
    let since = match rv_param {
        "" | "0" => None,
        s => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(e) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resource version: strconv.ParseUint: parsing {s:?}: {e}"),
                    None,
                );
            }
        },
    };
    let timeout = match param("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        Some(t) if t > 0 => Duration::from_secs(t),
        _ => DEFAULT_WATCH_TIMEOUT,
    };
    let bookmarks = param("allowWatchBookmarks").and_then(parse_bool).unwrap_or(false);
    let initial_events = param("sendInitialEvents").and_then(parse_bool).unwrap_or(false);

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (lines, cursor, changed, expired) = {
        let state = lock(&inner.state);
        // Subscribed before the reply, so no change, bookmark or end request is missed.
        let changed = inner.changed.subscribe();
        let mut lines = Vec::new();
        let mut expired = false;
        match since {
            Some(n) if !initial_events && n < state.compacted => {
                expired = true;
                lines.push(event_line(
                    "ERROR",
                    &json!({
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": format!("too old resource version: {n} ({})", state.compacted),
                        "reason": "Expired",
                        "code": 410,
                    }),
                ));
            }
            // The events after N come from the history, in the task.
            Some(_) if !initial_events => {}
            _ => {
                for o in state.live(res).into_iter().filter(|o| selector.matches(res, o)) {
                    lines.push(event_line("ADDED", o));
                }
                if initial_events && bookmarks {
                    lines.push(bookmark_line(res, state.rv, true));
                }
            }
        }
        let cursor = match since {
            Some(n) if !initial_events => n,
            _ => state.rv,
        };
        (lines, cursor, changed, expired)
    };
    tokio::spawn(watch_task(
        inner.clone(),
        res,
        selector,
        WatchPlan {
            lines,
            cursor,
            changed,
            bookmark_rx: inner.bookmarks.subscribe(),
            end_rx: inner.end_watches.subscribe(),
            expired,
            timeout,
            bookmarks,
        },
        tx,
    ));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .header("audit-id", uuid())
        .body(Body::Stream(rx))
        .expect("response")
}

struct WatchPlan {
    lines: Vec<Bytes>,
    cursor: u64,
    changed: watch::Receiver<u64>,
    bookmark_rx: watch::Receiver<u64>,
    end_rx: watch::Receiver<u64>,
    expired: bool,
    timeout: Duration,
    bookmarks: bool,
}

async fn watch_task(inner: Arc<Inner>, res: Res, selector: Selector, plan: WatchPlan, tx: mpsc::Sender<Bytes>) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    let mut changed = plan.changed;
    let mut bookmark_rx = plan.bookmark_rx;
    let mut end_rx = plan.end_rx;
    for line in plan.lines {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    if plan.expired {
        return;
    }
    let mut cursor = plan.cursor;
    loop {
        let lines: Vec<Bytes> = {
            let state = lock(&inner.state);
            let start = state.events.partition_point(|e| e.rv <= cursor);
            let lines = state.events[start..]
                .iter()
                .filter(|e| e.res == res && selector.matches(res, &e.object))
                .map(|e| event_line(e.kind, &e.object))
                .collect();
            cursor = cursor.max(state.rv);
            lines
        };
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            r = changed.changed() => if r.is_err() { return },
            r = bookmark_rx.changed() => {
                if r.is_err() {
                    return;
                }
                if plan.bookmarks && tx.send(bookmark_line(res, cursor, false)).await.is_err() {
                    return;
                }
            }
            _ = end_rx.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

// ---- create ----

/// A create body that cannot be decoded: 400 with the decoder's message.
fn cannot_handle(detail: &str) -> Resp {
    status_response(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!(
            "CertificateSigningRequest in version \"v1\" cannot be handled as a CertificateSigningRequest: {detail}"
        ),
        None,
    )
}

fn create_csr(inner: &Arc<Inner>, raw: Option<Bytes>, content_type: Option<&str>, dry_run: bool) -> Resp {
    let Some(raw) = raw else {
        return status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
            None,
        );
    };
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if !media.is_empty() && !media.eq_ignore_ascii_case("application/json") {
        return status_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (the stand-in speaks JSON only; got {media:?})"
            ),
            None,
        );
    }
    let object = match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "couldn't get version/kind; json parse error: not a JSON object",
                None,
            );
        }
        Err(e) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("couldn't get version/kind; json parse error: {e}"),
                None,
            );
        }
    };
    match object
        .get("apiVersion")
        .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
    {
        None => {}
        Some(v) if v == CSR_API_VERSION => {}
        Some(v) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "the API version in the data ({v}) does not match the expected API version ({CSR_API_VERSION})"
                ),
                None,
            );
        }
    }
    match object
        .get("kind")
        .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
    {
        None => {}
        Some(k) if k == Res::Csr.kind() => {}
        Some(k) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    Res::Csr.kind()
                ),
                None,
            );
        }
    }
    let CreateBody {
        metadata,
        name,
        generate_name: generate_base,
        signer,
        request,
        usages,
        expiration,
    } = match decode_create(&object) {
        Ok(body) => body,
        Err(detail) => return cannot_handle(&detail),
    };

    let (rv, stored, name) = {
        let mut state = lock(&inner.state);
        let name = if !name.is_empty() {
            name
        } else if !generate_base.is_empty() {
            loop {
                let candidate = generate_name(&generate_base);
                if !state.csr_index.contains_key(&candidate) {
                    break candidate;
                }
            }
        } else {
            String::new()
        };
        let mut errors = Vec::new();
        if name.is_empty() {
            errors.push(FieldError {
                field: "metadata.name".into(),
                reason: "FieldValueRequired",
                body: "Required value: name or generateName is required".into(),
            });
        }
        errors.extend(validate_spec(&request, &signer, &usages, expiration));
        if !errors.is_empty() {
            return invalid(&name, &errors);
        }
        if state.csr_index.contains_key(&name) {
            return status_response(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", Res::Csr.qualified()),
                Some(json!({"name": name, "group": CSR_GROUP, "kind": Res::Csr.plural()})),
            );
        }
        let mut meta = Map::new();
        meta.insert("name".into(), json!(name));
        if !generate_base.is_empty() {
            meta.insert("generateName".into(), json!(generate_base));
        }
        for key in ["labels", "annotations"] {
            if let Some(v) = metadata.get(key).filter(|v| v.is_object()) {
                meta.insert(key.into(), v.clone());
            }
        }
        meta.insert("uid".into(), json!(uuid()));
        meta.insert("creationTimestamp".into(), json!(rfc3339(SystemTime::now())));
        let identity = inner.identity.clone();
        let mut groups = Vec::new();
        if identity.starts_with("system:node:") {
            groups.push("system:nodes");
        }
        groups.push("system:authenticated");
        let mut spec_out = Map::new();
        spec_out.insert("request".into(), json!(b64(&request)));
        spec_out.insert("signerName".into(), json!(signer));
        if let Some(e) = expiration {
            spec_out.insert("expirationSeconds".into(), json!(e));
        }
        spec_out.insert("usages".into(), json!(usages));
        spec_out.insert("username".into(), json!(identity));
        spec_out.insert("groups".into(), json!(groups));
        let mut stored = json!({
            "kind": Res::Csr.kind(),
            "apiVersion": CSR_API_VERSION,
            "metadata": Value::Object(meta),
            "spec": Value::Object(spec_out),
            "status": {},
        });
        if dry_run {
            stored["metadata"]["resourceVersion"] = json!("");
            return json_response(StatusCode::CREATED, &stored);
        }
        let rv = state.bump();
        stored["metadata"]["resourceVersion"] = json!(rv.to_string());
        let index = state.csrs.len();
        state.csrs.push(CsrEntry {
            object: stored.clone(),
            deleted: false,
        });
        state.csr_index.insert(name.clone(), index);
        state.events.push(Event {
            rv,
            res: Res::Csr,
            kind: "ADDED",
            object: stored.clone(),
        });
        (rv, stored, name)
    };
    inner.changed.send_replace(rv);
    let mode = lock(&inner.state).mode.clone();
    inner.apply_mode(&name, mode);
    json_response(StatusCode::CREATED, &stored)
}

/// What a create body says.
struct CreateBody {
    metadata: Map<String, Value>,
    name: String,
    generate_name: String,
    signer: String,
    request: Vec<u8>,
    usages: Vec<String>,
    expiration: Option<i64>,
}

/// The fields of a create body, or the decoder's complaint (a 400).
fn decode_create(object: &Map<String, Value>) -> Result<CreateBody, String> {
    let as_object = |v: Option<&Value>, field: &str| -> Result<Map<String, Value>, String> {
        match v {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => Err(format!(
                "json: cannot unmarshal {} into Go struct field CertificateSigningRequest.{field}",
                json_type(other)
            )),
        }
    };
    let metadata = as_object(object.get("metadata"), "metadata")?;
    let spec = as_object(object.get("spec"), "spec")?;
    let string_field = |m: &Map<String, Value>, key: &str, path: &str| -> Result<String, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "json: cannot unmarshal {} into Go struct field {path} of type string",
                json_type(other)
            )),
        }
    };
    let name = string_field(&metadata, "name", "ObjectMeta.metadata.name")?;
    let generate_name = string_field(&metadata, "generateName", "ObjectMeta.metadata.generateName")?;
    let signer = string_field(&spec, "signerName", "CertificateSigningRequestSpec.spec.signerName")?;
    let request = match spec.get("request") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            base64::engine::general_purpose::STANDARD
                .decode(&cleaned)
                .map_err(|e| format!("illegal base64 data: {e}"))?
        }
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field CertificateSigningRequestSpec.spec.request of type []uint8",
                json_type(other)
            ));
        }
    };
    let usages = match spec.get("usages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => str_list(spec.get("usages")),
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field CertificateSigningRequestSpec.spec.usages of type []v1.KeyUsage",
                json_type(other)
            ));
        }
    };
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64().filter(|n| i32::try_from(*n).is_ok()) {
            Some(n) => Some(n),
            None => {
                return Err(format!(
                    "json: cannot unmarshal {} into Go struct field CertificateSigningRequestSpec.spec.expirationSeconds of type int32",
                    json_type(v)
                ));
            }
        },
    };
    Ok(CreateBody {
        metadata,
        name,
        generate_name,
        signer,
        request,
        usages,
        expiration,
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// 422 Invalid, as `apierrors.NewInvalid` writes it.
fn invalid(name: &str, errors: &[FieldError]) -> Resp {
    let full: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.body)).collect();
    let summary = if full.len() == 1 {
        full[0].clone()
    } else {
        format!("[{}]", full.join(", "))
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.body, "field": e.field}))
        .collect();
    status_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!("{}.{CSR_GROUP} \"{name}\" is invalid: {summary}", Res::Csr.kind()),
        Some(json!({"name": name, "group": CSR_GROUP, "kind": Res::Csr.kind(), "causes": causes})),
    )
}

// ---- answers ----

fn not_found(res: Res, name: &str) -> Resp {
    let mut details = json!({"name": name, "kind": res.plural()});
    if !res.group().is_empty() {
        details["group"] = json!(res.group());
    }
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", res.qualified()),
        Some(details),
    )
}

fn not_found_generic() -> Resp {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// A `metav1.Status` answer (Go omitempty: no empty reason or details).
fn status_response(status: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let mut body = Map::new();
    body.insert("kind".into(), json!("Status"));
    body.insert("apiVersion".into(), json!("v1"));
    body.insert("metadata".into(), json!({}));
    let outcome = if status.is_success() { "Success" } else { "Failure" };
    body.insert("status".into(), json!(outcome));
    if !message.is_empty() {
        body.insert("message".into(), json!(message));
    }
    if !reason.is_empty() {
        body.insert("reason".into(), json!(reason));
    }
    if let Some(d) = details {
        body.insert("details".into(), d);
    }
    body.insert("code".into(), json!(status.as_u16()));
    json_response(status, &Value::Object(body))
}

fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut bytes = serde_json::to_vec(body).expect("serialize JSON answer");
    bytes.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .header("audit-id", uuid())
        .body(Body::Full(Some(Bytes::from(bytes))))
        .expect("response")
}

// ---- DER: swapping a certificate's subject for the CSR's, byte for byte ----

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// (header length, content length) of the DER element at the start of `buf`.
fn read_header(buf: &[u8]) -> Result<(usize, usize), String> {
    if buf.len() < 2 {
        return Err("truncated DER".into());
    }
    let first = buf[1];
    if first < 0x80 {
        return Ok((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 || buf.len() < 2 + n {
        return Err("unsupported DER length".into());
    }
    Ok((
        2 + n,
        buf[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
    ))
}

/// The Name rcgen writes for a lone CN (UTF8String).
fn encode_cn_name(cn: &str) -> Vec<u8> {
    let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03];
    atv.extend(tlv(0x0c, cn.as_bytes()));
    tlv(0x30, &tlv(0x31, &tlv(0x30, &atv)))
}

fn replace_subject(cert: &[u8], placeholder: &[u8], subject: &[u8], issuer_key: &KeyPair) -> Result<Vec<u8>, String> {
    let (h, l) = read_header(cert)?;
    let content = &cert[h..h + l];
    let (th, tl) = read_header(content)?;
    let tbs = &content[th..th + tl];
    let rest = &content[th + tl..];
    let pos = tbs
        .windows(placeholder.len())
        .position(|w| w == placeholder)
        .ok_or("placeholder subject not found in the TBS")?;
    let mut new_tbs = tbs[..pos].to_vec();
    new_tbs.extend_from_slice(subject);
    new_tbs.extend_from_slice(&tbs[pos + placeholder.len()..]);
    let new_tbs = tlv(0x30, &new_tbs);
    let signature = issuer_key.sign(&new_tbs).map_err(|e| format!("sign TBS: {e}"))?;
    let (ah, al) = read_header(rest)?;
    let mut bits = vec![0u8];
    bits.extend(signature);
    let mut body = new_tbs;
    body.extend_from_slice(&rest[..ah + al]);
    body.extend(tlv(0x03, &bits));
    Ok(tlv(0x30, &body))
}
