//! The self-signed serving certificate, as the kubelet makes it (a per-node CA and a leaf
//! signed by it, `kubelet.crt`/`kubelet.key` in `certDir`) but with ECDSA P-256 keys and an
//! IP SAN for every node address: the missing IP SAN is the classic `kubectl logs` failure.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::CertError;

/// What the certificate must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub host: String,
    pub dns_names: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

/// Paths of the pair in `cert_dir`.
pub fn paths(cert_dir: &Path) -> (PathBuf, PathBuf) {
    (cert_dir.join("kubelet.crt"), cert_dir.join("kubelet.key"))
}

/// Reuses the pair in `cert_dir` if it is readable, unexpired and names everything in
/// `subject`; otherwise generates a new one. Returns the paths and whether it was generated.
pub fn ensure(cert_dir: &Path, subject: &Subject) -> Result<(PathBuf, PathBuf, bool), CertError> {
    let (cert_path, key_path) = paths(cert_dir);
    if let Ok(cert_pem) = std::fs::read(&cert_path)
        && still_fits(&cert_pem, subject)
        && super::load_pair(&cert_path, &key_path).is_ok()
    {
        return Ok((cert_path, key_path, false));
    }
    let (cert_pem, key_pem) = generate(subject, SystemTime::now())?;
    std::fs::create_dir_all(cert_dir).map_err(|source| CertError::Io {
        path: cert_dir.into(),
        source,
    })?;
    write(&cert_path, cert_pem.as_bytes(), 0o644)?;
    write(&key_path, key_pem.as_bytes(), 0o600)?;
    Ok((cert_path, key_path, true))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CertError::Io {
        path: path.into(),
        source,
    };
    // Write beside the target and rename, so a crash never leaves half a key behind.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Generates CA + leaf. The PEM holds the leaf then the CA, as the kubelet writes it.
pub fn generate(subject: &Subject, now: SystemTime) -> Result<(String, String), CertError> {
    let err = |e: rcgen::Error| CertError::Generate(e.to_string());
    let unix = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let not_before = OffsetDateTime::from(now) - Duration::hours(1);
    let not_after = not_before + Duration::days(365);

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name
        .push(DnType::CommonName, format!("{}-ca@{unix}", subject.host));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut leaf = CertificateParams::new(subject.dns_names.iter().cloned().collect::<Vec<_>>()).map_err(err)?;
    leaf.subject_alt_names
        .extend(subject.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{}@{unix}", subject.host));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;
    Ok((
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        leaf_key.serialize_pem(),
    ))
}

/// Whether an existing certificate can be kept: unexpired, and naming every DNS name and IP.
fn still_fits(cert_pem: &[u8], subject: &Subject) -> bool {
    let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(cert_pem).next() else {
        return false;
    };
    let Ok((_, cert)) = X509Certificate::from_der(&leaf) else {
        return false;
    };
    if !cert.validity().is_valid() {
        return false;
    }
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => {
                        dns.insert(d.to_string());
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
    subject.dns_names.is_subset(&dns) && subject.ips.is_subset(&ips)
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            host: "node-a".into(),
            dns_names: ["node-a".to_string()].into(),
            ips: ["10.0.0.5".parse().expect("ip"), "127.0.0.1".parse().expect("ip")].into(),
        }
    }

    #[test]
    fn generates_a_leaf_with_ip_sans_and_reuses_it() {
        let dir = std::env::temp_dir().join(format!("kg-selfsigned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key, generated) = ensure(&dir, &subject()).expect("generate");
        assert!(generated);
        let pem = std::fs::read(&cert).expect("cert");
        assert!(still_fits(&pem, &subject()));
        super::super::load_pair(&cert, &key).expect("loads");
        let (_, _, generated) = ensure(&dir, &subject()).expect("reuse");
        assert!(!generated, "an unexpired pair naming every address is reused");
        let mut more = subject();
        more.ips.insert("10.0.0.6".parse().expect("ip"));
        let (_, _, generated) = ensure(&dir, &more).expect("regenerate");
        assert!(generated, "a new node address needs a new certificate");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_expired_certificate_is_replaced() {
        let old = SystemTime::now() - std::time::Duration::from_secs(400 * 24 * 3600);
        let (cert_pem, _) = generate(&subject(), old).expect("generate");
        assert!(!still_fits(cert_pem.as_bytes(), &subject()));
    }
}
