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

/// OID of the `UID` subject attribute (0.9.2342.19200300.100.1.1).
pub const OID_UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
/// OID used for the unknown critical extension (a private-enterprise arc nobody implements).
pub const OID_UNKNOWN_EXT: &[u64] = &[1, 3, 6, 1, 4, 1, 55555, 42, 1];
const OID_CN: &[u64] = &[2, 5, 4, 3];
const OID_O: &[u64] = &[2, 5, 4, 10];

/// A point in time relative to "now" (when the certificate is generated), in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset(pub i64);

impl Offset {
    pub const NOW: Offset = Offset(0);
    pub const fn secs(s: i64) -> Offset {
        Offset(s)
    }
    pub const fn hours(h: i64) -> Offset {
        Offset(h * 3600)
    }
    pub const fn days(d: i64) -> Offset {
        Offset(d * 86_400)
    }
    /// The absolute time this offset designates, from the current clock.
    pub fn at(self) -> SystemTime {
        let now = SystemTime::now();
        if self.0 >= 0 {
            now + Duration::from_secs(self.0.unsigned_abs())
        } else {
            now - Duration::from_secs(self.0.unsigned_abs())
        }
    }
}

/// Extended key usage of a client leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eku {
    ClientAuth,
    ServerAuthOnly,
    /// No EKU extension at all.
    None,
    ClientAndServer,
}

/// Everything that can be varied in a client certificate.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// "" = no CN attribute at all.
    pub cn: String,
    /// One `O` attribute (own RDN) per entry, in order.
    pub orgs: Vec<String>,
    pub eku: Eku,
    pub not_before: Offset,
    pub not_after: Offset,
    /// basicConstraints CA:TRUE (otherwise an explicit CA:FALSE).
    pub is_ca: bool,
    /// keyUsage keyCertSign (digitalSignature is always present).
    pub key_cert_sign: bool,
    /// One `UID` (0.9.2342.19200300.100.1.1) attribute per entry.
    pub uids: Vec<String>,
    /// Adds a critical extension with an unknown OID ([`OID_UNKNOWN_EXT`]).
    pub unknown_critical_ext: bool,
}

impl ClientSpec {
    /// CN as given, no orgs, EKU clientAuth, valid now-1h .. now+1d.
    pub fn new(cn: &str) -> Self {
        ClientSpec {
            cn: cn.to_string(),
            orgs: Vec::new(),
            eku: Eku::ClientAuth,
            not_before: Offset::hours(-1),
            not_after: Offset::days(1),
            is_ca: false,
            key_cert_sign: false,
            uids: Vec::new(),
            unknown_critical_ext: false,
        }
    }
    pub fn cn(mut self, cn: &str) -> Self {
        self.cn = cn.to_string();
        self
    }
    pub fn orgs(mut self, o: &[&str]) -> Self {
        self.orgs = o.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn eku(mut self, e: Eku) -> Self {
        self.eku = e;
        self
    }
    pub fn not_before(mut self, at: Offset) -> Self {
        self.not_before = at;
        self
    }
    pub fn not_after(mut self, at: Offset) -> Self {
        self.not_after = at;
        self
    }
    pub fn validity(self, not_before: Offset, not_after: Offset) -> Self {
        self.not_before(not_before).not_after(not_after)
    }
    /// Valid now-2d .. now-1d.
    pub fn expired(self) -> Self {
        self.validity(Offset::days(-2), Offset::days(-1))
    }
    /// Valid now+1d .. now+2d.
    pub fn not_yet_valid(self) -> Self {
        self.validity(Offset::days(1), Offset::days(2))
    }
    pub fn ca(mut self, v: bool) -> Self {
        self.is_ca = v;
        self
    }
    pub fn key_cert_sign(mut self, v: bool) -> Self {
        self.key_cert_sign = v;
        self
    }
    pub fn uids(mut self, u: &[&str]) -> Self {
        self.uids = u.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn unknown_critical_ext(mut self, v: bool) -> Self {
        self.unknown_critical_ext = v;
        self
    }
}

/// Everything that can be varied in a serving certificate (for `diagnose`'s broken setups).
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub cn: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// `ServerAuthOnly` is the healthy case; `ClientAuth` a client certificate served by mistake.
    pub eku: Eku,
    pub not_before: Offset,
    pub not_after: Offset,
}

impl ServerSpec {
    /// CN as given, no SANs, EKU serverAuth, valid now-1h .. now+30d.
    pub fn new(cn: &str) -> Self {
        ServerSpec {
            cn: cn.to_string(),
            dns: Vec::new(),
            ips: Vec::new(),
            eku: Eku::ServerAuthOnly,
            not_before: Offset::hours(-1),
            not_after: Offset::days(30),
        }
    }
    pub fn dns(mut self, names: &[&str]) -> Self {
        self.dns = names.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn ips(mut self, ips: &[IpAddr]) -> Self {
        self.ips = ips.to_vec();
        self
    }
    pub fn eku(mut self, e: Eku) -> Self {
        self.eku = e;
        self
    }
    pub fn validity(mut self, not_before: Offset, not_after: Offset) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

/// Options for [`Ca::intermediate`]. `Default` (= [`IntermediateOpts::new`]) is a valid CA:TRUE
/// intermediate without path length or name constraints.
#[derive(Clone, Debug)]
pub struct IntermediateOpts {
    /// Valid now-30d .. now-1d.
    pub expired: bool,
    /// false = basicConstraints CA:FALSE (key usage still says keyCertSign).
    pub is_ca: bool,
    pub path_len: Option<u8>,
    /// Name constraint: permitted subtree directoryName `O=<value>`.
    pub permitted_org: Option<String>,
}

impl Default for IntermediateOpts {
    fn default() -> Self {
        IntermediateOpts {
            expired: false,
            is_ca: true,
            path_len: None,
            permitted_org: None,
        }
    }
}

impl IntermediateOpts {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }
    pub fn not_ca(mut self) -> Self {
        self.is_ca = false;
        self
    }
    pub fn path_len(mut self, n: u8) -> Self {
        self.path_len = Some(n);
        self
    }
    pub fn permitted_org(mut self, o: &str) -> Self {
        self.permitted_org = Some(o.to_string());
        self
    }
}

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

/// PEM-encodes a sequence of DER certificates.
pub fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    chain.iter().map(|c| pem_encode("CERTIFICATE", c)).collect()
}

/// PEM-encodes one DER blob under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
        out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
        if chunk.len() > 1 {
            out.push(char::from(ALPHABET[(n >> 6) as usize & 63]));
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(char::from(ALPHABET[n as usize & 63]));
        } else {
            out.push('=');
        }
    }
    out
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

// ---- minimal DER writing/reading, enough to swap a certificate's subject ----

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
fn read_header(buf: &[u8]) -> (usize, usize) {
    assert!(buf.len() >= 2, "truncated DER");
    let first = buf[1];
    if first < 0x80 {
        return (2, first as usize);
    }
    let n = (first & 0x7f) as usize;
    assert!(n > 0 && n <= 4 && buf.len() >= 2 + n, "unsupported DER length");
    let len = buf[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    (2 + n, len)
}

fn encode_oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let mut push_arc = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        content.extend(tmp);
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    for a in &arcs[2..] {
        push_arc(*a);
    }
    tlv(0x06, &content)
}

/// A Name: one RDN (SET of one AttributeTypeAndValue) per attribute, values as UTF8String.
fn encode_name(attrs: &[(&[u64], &str)]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for (oid, value) in attrs {
        let mut atv = encode_oid(oid);
        atv.extend(tlv(0x0c, value.as_bytes()));
        rdns.extend(tlv(0x31, &tlv(0x30, &atv)));
    }
    tlv(0x30, &rdns)
}

fn replace_subject(cert: &[u8], placeholder: &[u8], subject: &[u8], issuer_key: &KeyPair) -> Vec<u8> {
    let (h, l) = read_header(cert);
    let content = &cert[h..h + l];
    let (th, tl) = read_header(content);
    let tbs_content = &content[th..th + tl];
    let rest = &content[th + tl..];
    let pos = tbs_content
        .windows(placeholder.len())
        .position(|w| w == placeholder)
        .expect("placeholder subject present in TBS");
    let mut new_tbs_content = tbs_content[..pos].to_vec();
    new_tbs_content.extend_from_slice(subject);
    new_tbs_content.extend_from_slice(&tbs_content[pos + placeholder.len()..]);
    let new_tbs = tlv(0x30, &new_tbs_content);
    let sig = issuer_key.sign(&new_tbs).expect("sign TBS");
    let (ah, al) = read_header(rest);
    let alg = &rest[..ah + al];
    let mut bits = vec![0u8];
    bits.extend(sig);
    let mut body = new_tbs;
    body.extend_from_slice(alg);
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
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
