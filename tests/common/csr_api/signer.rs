//! The `kubernetes.io/kubelet-serving` signer: its CA ([`SignerCa`]), the certificate it issues
//! for a CSR, and the DER surgery that copies the CSR's subject into it byte for byte.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData,
    SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::csr::{KeyAlg, ParsedCsr, parse_csr};
use super::meta::{next_id, unix_secs};
use crate::common::pki::{Leaf, chain_pem, pem_encode};

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

    /// A client certificate as the `kubernetes.io/kube-apiserver-client-kubelet` signer issues
    /// it (CN `system:node:<node>`, O `system:nodes`, usages digital signature + client auth),
    /// with a fresh P-256 key, valid from `not_before` to `not_after` (either may be in the
    /// past): the kubelet's `kubelet-client-current.pem`, or an expired one.
    pub fn kubelet_client(&self, node: &str, not_before: SystemTime, not_after: SystemTime) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate P-256 key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("system:node:{node}"));
        let pem = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .expect("serialize CSR");
        let csr = parse_csr(pem.as_bytes()).expect("parse CSR");
        let usages = ["digital signature".to_string(), "client auth".to_string()];
        let leaf = self
            .sign_between(&csr, &usages, not_before, not_after)
            .expect("sign kubelet client certificate");
        let chain = vec![leaf];
        Leaf {
            cert_pem: chain_pem(&chain),
            chain,
            key: PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der())),
            key_pem: key.serialize_pem(),
        }
    }

    pub(super) fn sign(
        &self,
        csr: &ParsedCsr,
        usages: &[String],
        lifetime: Duration,
    ) -> Result<CertificateDer<'static>, String> {
        let now = SystemTime::now();
        self.sign_between(csr, usages, now - Duration::from_secs(1), now + lifetime)
    }

    fn sign_between(
        &self,
        csr: &ParsedCsr,
        usages: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertificateDer<'static>, String> {
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
        params.not_before = not_before.into();
        params.not_after = not_after.min(self.not_after).into();
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
