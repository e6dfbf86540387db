//! The CSR itself: parsing the request PEM, checking its signature, and the checks of the API
//! server (`validateCertificateSigningRequest`) and of the kubelet-serving signer, with their
//! messages.

use std::net::IpAddr;

use base64::Engine as _;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum KeyAlg {
    P256,
    P384,
    Rsa,
    Ed25519,
    Other(String),
}

/// What the stand-in needs from a CSR, owned.
pub(super) struct ParsedCsr {
    pub(super) subject_raw: Vec<u8>,
    common_name: String,
    orgs: Vec<String>,
    pub(super) dns: Vec<String>,
    pub(super) ips: Vec<IpAddr>,
    pub(super) emails: Vec<String>,
    pub(super) uris: Vec<String>,
    pub(super) key: KeyAlg,
    /// The subjectPublicKey BIT STRING contents.
    pub(super) public_key: Vec<u8>,
    signature_oid: String,
    info_raw: Vec<u8>,
    signature: Vec<u8>,
}

/// The first PEM block of `data` as (label, DER), like Go's `pem.Decode` (simplified).
pub(super) fn pem_first_block(data: &[u8]) -> Option<(String, Vec<u8>)> {
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
pub(super) fn parse_csr(pem: &[u8]) -> Result<ParsedCsr, String> {
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
pub(super) fn validate_kubelet_serving(csr: &ParsedCsr, usages: &[String]) -> Result<(), String> {
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

/// kube-controller-manager's check of a `kubernetes.io/kube-apiserver-client-kubelet` CSR
/// (pkg/apis/certificates/helpers.go `ValidateKubeletClientCSR`).
pub(super) fn validate_kubelet_client(csr: &ParsedCsr, usages: &[String]) -> Result<(), String> {
    if csr.orgs != ["system:nodes"] {
        return Err("subject organization is not system:nodes".to_string());
    }
    if !csr.dns.is_empty() {
        return Err("DNS subjectAltNames are not allowed".to_string());
    }
    if !csr.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".to_string());
    }
    if !csr.ips.is_empty() {
        return Err("IP subjectAltNames are not allowed".to_string());
    }
    if !csr.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".to_string());
    }
    if !csr.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".to_string());
    }
    let mut set: Vec<&str> = usages.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    let with_rsa = ["client auth", "digital signature", "key encipherment"];
    let without_rsa = ["client auth", "digital signature"];
    if set != with_rsa && set != without_rsa {
        return Err("usages did not match [client auth digital signature key encipherment]".to_string());
    }
    Ok(())
}

impl ParsedCsr {
    pub(super) fn common_name(&self) -> &str {
        &self.common_name
    }
}

/// One `field.Error`.
pub(super) struct FieldError {
    pub(super) field: String,
    /// FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueDuplicate.
    pub(super) reason: &'static str,
    /// `ErrorBody()`: the message without the field.
    pub(super) body: String,
}

/// Go's `%#v` of a `[]byte`.
fn go_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(|x| format!("{x:#x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

/// The v1 create validation of the spec (validateCertificateSigningRequest).
pub(super) fn validate_spec(
    request: &[u8],
    signer: &str,
    usages: &[String],
    expiration: Option<i64>,
) -> Vec<FieldError> {
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
