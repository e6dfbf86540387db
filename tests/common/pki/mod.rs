#![allow(dead_code)]
//! Test PKI generated at run time with rcgen 0.14 (ECDSA P-256): root and intermediate CAs,
//! client certificates of every shape the x509 authenticator must judge, and server
//! certificates. Subjects of client leaves are written by hand (rcgen keeps one value per type).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, PKCS_ECDSA_P256_SHA256, SanType,
    SigningKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

mod encoding;
mod spec;

pub use encoding::{chain_pem, pem_encode};
use encoding::{encode_name, replace_subject};
pub use spec::*;
/// OID of the `UID` subject attribute (0.9.2342.19200300.100.1.1).
pub const OID_UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
/// OID used for the unknown critical extension (a private-enterprise arc nobody implements).
pub const OID_UNKNOWN_EXT: &[u64] = &[1, 3, 6, 1, 4, 1, 55555, 42, 1];
const OID_CN: &[u64] = &[2, 5, 4, 3];
const OID_O: &[u64] = &[2, 5, 4, 10];

/// A CA certificate and its key, able to issue. Cheap to clone.
#[derive(Clone)]
pub struct Ca {
    params: Arc<CertificateParams>,
    key: Arc<KeyPair>,
    cert: CertificateDer<'static>,
    /// This CA's certificate and the intermediates above it, up to (not including) the root.
    /// Empty for a root.
    chain: Vec<CertificateDer<'static>>,
}

impl Ca {
    /// Self-signed root, CA:TRUE, keyCertSign + cRLSign, valid now-1h .. now+1y.
    pub fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn_cn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = Offset::hours(-1).at().into();
        params.not_after = Offset::days(365).at().into();
        let key = new_key();
        let cert = params.self_signed(&key).expect("self-sign root CA");
        Ca {
            params: Arc::new(params),
            key: Arc::new(key),
            cert: cert.der().clone(),
            chain: Vec::new(),
        }
    }

    /// An intermediate issued by this CA (which may itself be an intermediate).
    pub fn intermediate(&self, cn: &str, opts: IntermediateOpts) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn_cn(cn);
        params.is_ca = if opts.is_ca {
            match opts.path_len {
                Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
                None => IsCa::Ca(BasicConstraints::Unconstrained),
            }
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if opts.expired {
            params.not_before = Offset::days(-30).at().into();
            params.not_after = Offset::days(-1).at().into();
        } else {
            params.not_before = Offset::hours(-1).at().into();
            params.not_after = Offset::days(180).at().into();
        }
        if let Some(org) = &opts.permitted_org {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, org.as_str());
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DirectoryName(dn)],
                excluded_subtrees: Vec::new(),
            });
        }
        params.use_authority_key_identifier_extension = true;
        let key = new_key();
        let cert = params.signed_by(&key, &self.issuer()).expect("sign intermediate CA");
        let cert = cert.der().clone();
        let mut chain = vec![cert.clone()];
        chain.extend(self.chain.iter().cloned());
        Ca {
            params: Arc::new(params),
            key: Arc::new(key),
            cert,
            chain,
        }
    }

    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert)
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// This CA's certificate followed by the intermediates above it, without the root
    /// (empty for a root): what a leaf it issues carries after itself.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    /// Writes the CA certificate as PEM.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.cert_pem()).unwrap_or_else(|e| panic!("write CA PEM to {}: {e}", path.display()));
    }

    /// A client certificate as described by `spec`.
    pub fn client(&self, spec: ClientSpec) -> Leaf {
        let placeholder = format!("kubelet-gate-test-placeholder-{}", next_serial());
        let mut params = CertificateParams::default();
        params.distinguished_name = dn_cn(&placeholder);
        params.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.key_cert_sign {
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        params.extended_key_usages = match spec.eku {
            Eku::ClientAuth => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::ServerAuthOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::None => Vec::new(),
            Eku::ClientAndServer => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.not_before = spec.not_before.at().into();
        params.not_after = spec.not_after.at().into();
        params.use_authority_key_identifier_extension = true;
        if spec.unknown_critical_ext {
            let mut ext = CustomExtension::from_oid_content(OID_UNKNOWN_EXT, vec![0x05, 0x00]);
            ext.set_criticality(true);
            params.custom_extensions.push(ext);
        }
        let key = new_key();
        let cert = params.signed_by(&key, &self.issuer()).expect("sign client certificate");

        // rcgen keeps one value per attribute type, so write the real subject by hand and
        // re-sign: replace the placeholder Name, fix the lengths, sign with the issuer key.
        let mut attrs: Vec<(&[u64], &str)> = Vec::new();
        for o in &spec.orgs {
            attrs.push((OID_O, o));
        }
        if !spec.cn.is_empty() {
            attrs.push((OID_CN, &spec.cn));
        }
        for u in &spec.uids {
            attrs.push((OID_UID, u));
        }
        let der = replace_subject(
            cert.der(),
            &encode_name(&[(OID_CN, &placeholder)]),
            &encode_name(&attrs),
            &self.key,
        );
        self.leaf(CertificateDer::from(der), &key)
    }

    /// A server certificate: EKU serverAuth, SANs as given, CN = first DNS name (or IP),
    /// valid now-1h .. now+30d.
    pub fn server(&self, dns: &[&str], ips: &[IpAddr]) -> Leaf {
        let mut params = CertificateParams::default();
        let cn = dns
            .first()
            .map(|d| d.to_string())
            .or_else(|| ips.first().map(|ip| ip.to_string()))
            .unwrap_or_else(|| "kubelet-gate-test-server".to_string());
        params.distinguished_name = dn_cn(&cn);
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName(rcgen::string::Ia5String::try_from(d.to_string()).expect("DNS SAN is IA5")))
            .chain(ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = Offset::hours(-1).at().into();
        params.not_after = Offset::days(30).at().into();
        params.use_authority_key_identifier_extension = true;
        let key = new_key();
        let cert = params.signed_by(&key, &self.issuer()).expect("sign server certificate");
        self.leaf(cert.der().clone(), &key)
    }

    /// A serving certificate as described by `spec`.
    pub fn server_with(&self, spec: ServerSpec) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn_cn(&spec.cn);
        params.subject_alt_names = spec
            .dns
            .iter()
            .map(|d| SanType::DnsName(rcgen::string::Ia5String::try_from(d.to_string()).expect("DNS SAN is IA5")))
            .chain(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = match spec.eku {
            Eku::ClientAuth => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::ServerAuthOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::None => Vec::new(),
            Eku::ClientAndServer => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.not_before = spec.not_before.at().into();
        params.not_after = spec.not_after.at().into();
        params.use_authority_key_identifier_extension = true;
        let key = new_key();
        let cert = params.signed_by(&key, &self.issuer()).expect("sign server certificate");
        self.leaf(cert.der().clone(), &key)
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &*self.key)
    }

    fn leaf(&self, cert: CertificateDer<'static>, key: &KeyPair) -> Leaf {
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        let key_der: PrivateKeyDer<'static> = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        Leaf {
            cert_pem: chain_pem(&chain),
            chain,
            key: key_der,
            key_pem: key.serialize_pem(),
        }
    }
}

/// An issued certificate with its key.
#[derive(Debug)]
pub struct Leaf {
    /// Leaf first, then intermediates up to (not including) the root.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The whole chain as PEM.
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
}

impl Clone for Leaf {
    fn clone(&self) -> Self {
        Leaf {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

impl Leaf {
    /// A pair made elsewhere (openssl, a script under test): the chain PEM and the key PEM.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Leaf {
        use rustls_pki_types::pem::PemObject;
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let (cert_pem, key_pem) = (read(cert_path), read(key_path));
        let chain = certificates_in(cert_path);
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("a key in {}: {e:?}", key_path.display()));
        Leaf {
            chain,
            key,
            cert_pem,
            key_pem,
        }
    }

    /// The leaf certificate alone.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
    /// Lowercase hex SHA-256 of the leaf DER.
    pub fn sha256_hex(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.der());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Appends `extra` certificates after the current chain.
    pub fn with_chain(mut self, extra: Vec<CertificateDer<'static>>) -> Leaf {
        self.chain.extend(extra);
        self.cert_pem = chain_pem(&self.chain);
        self
    }
    /// Writes the chain PEM and the key PEM.
    pub fn write(&self, cert_path: &Path, key_path: &Path) {
        std::fs::write(cert_path, &self.cert_pem)
            .unwrap_or_else(|e| panic!("write cert PEM to {}: {e}", cert_path.display()));
        std::fs::write(key_path, &self.key_pem)
            .unwrap_or_else(|e| panic!("write key PEM to {}: {e}", key_path.display()));
    }
}

/// The certificates of a PEM file made elsewhere, at least one.
pub fn certificates_in(path: &Path) -> Vec<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("certificates in {}: {e:?}", path.display()));
    assert!(!chain.is_empty(), "no certificate in {}", path.display());
    chain
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate P-256 key")
}

fn next_serial() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn dn_cn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

// ---- for the Go differential test of `diagnose` (tests/integration/diagnose_go.rs) ----

impl Ca {
    /// A self-signed root like [`Ca::new`], valid from `not_before` to `not_after` (an expired
    /// or not-yet-valid cluster CA).
    pub fn with_validity(cn: &str, not_before: Offset, not_after: Offset) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn_cn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = not_before.at().into();
        params.not_after = not_after.at().into();
        let key = new_key();
        let cert = params.self_signed(&key).expect("self-sign root CA");
        Ca {
            params: Arc::new(params),
            key: Arc::new(key),
            cert: cert.der().clone(),
            chain: Vec::new(),
        }
    }

    /// Writes the CA's certificate and its key (PKCS#8 PEM), for a tool that issues from it.
    pub fn write_pair(&self, cert_path: &Path, key_path: &Path) {
        self.write_pem(cert_path);
        std::fs::write(key_path, self.key.serialize_pem())
            .unwrap_or_else(|e| panic!("write CA key PEM to {}: {e}", key_path.display()));
    }
}
