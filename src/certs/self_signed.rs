//! The self-signed serving certificate, as the kubelet makes it (a per-node CA and a leaf
//! signed by it, `kubelet.crt`/`kubelet.key` in `certDir`; client-go util/cert/cert.go
//! `GenerateSelfSignedCertKeyWithFixtures`) but with ECDSA P-256 keys and an IP SAN for every
//! node address: the missing IP SAN is the classic `kubectl logs` failure.
//!
//! Unlike the kubelet's, which is made once and never looked at again, it is renewed while the
//! process runs ([`Renewal`]): at a random point between 70% and 90% of its lifetime, the rule
//! of the CSR bootstrap ([`super::rotation::deadline_at`]), a new pair is written beside
//! the old one and renamed over it, then swapped into the listener; open connections keep the
//! old one. At start, a pair already past that point is replaced rather than reused. Each
//! renewal makes a new CA too (its key is never kept, as the kubelet keeps none): a client that
//! pinned the old CA must fetch the new one from `kubelet.crt`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
use super::rotation::deadline_at as rotation_deadline;
use crate::tls::ServingCert;

/// How long a generated pair is valid, backdating included: the kubelet's `maxAge` (one year).
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
/// How far `notBefore` lies in the past, for clocks a little behind: the kubelet's
/// `validFrom := time.Now().Add(-time.Hour)`, but never more than a tenth of a short lifetime.
const BACKDATE: std::time::Duration = std::time::Duration::from_secs(3600);
/// The longest the renewal sleeps before looking at the wall clock again (a suspended machine
/// or a clock step must not carry it past the renewal point).
const RECHECK: std::time::Duration = std::time::Duration::from_secs(600);
/// The first retry after a failed renewal; it doubles up to [`RETRY_MAX`].
const RETRY_INITIAL: std::time::Duration = std::time::Duration::from_secs(10);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);

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

/// When a pair is valid and when it is renewed (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
    /// Drawn once per certificate, between 70% and 90% of its lifetime.
    pub renew_at: i64,
}

/// A pair in place in `cert_dir`.
#[derive(Debug)]
pub struct Ensured {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generated: bool,
    pub validity: Validity,
}

/// Reuses the pair in `cert_dir` if it is readable, names everything in `subject` and has not
/// reached its renewal point; otherwise generates a new one valid for `lifetime`.
pub fn ensure(cert_dir: &Path, subject: &Subject, lifetime: std::time::Duration) -> Result<Ensured, CertError> {
    let (cert_path, key_path) = paths(cert_dir);
    let now = unix(SystemTime::now());
    if let Ok(cert_pem) = std::fs::read(&cert_path)
        && let Some(validity) = still_fits(&cert_pem, subject)
        && now < validity.renew_at
        && super::load_pair(&cert_path, &key_path).is_ok()
    {
        return Ok(Ensured {
            cert: cert_path,
            key: key_path,
            generated: false,
            validity,
        });
    }
    let validity = store(cert_dir, subject, lifetime)?;
    Ok(Ensured {
        cert: cert_path,
        key: key_path,
        generated: true,
        validity,
    })
}

/// Generates a pair and writes it over the one in `cert_dir`, each file replaced by a rename.
fn store(cert_dir: &Path, subject: &Subject, lifetime: std::time::Duration) -> Result<Validity, CertError> {
    let (cert_path, key_path) = paths(cert_dir);
    let (cert_pem, key_pem) = generate(subject, SystemTime::now(), lifetime)?;
    let validity = validity_of(cert_pem.as_bytes())
        .ok_or_else(|| super::invalid(&cert_path, "the generated certificate does not parse"))?;
    std::fs::create_dir_all(cert_dir).map_err(|source| CertError::Io {
        path: cert_dir.into(),
        source,
    })?;
    // The key first: between the two renames the old certificate and the new key do not match,
    // and a start in that moment generates a fresh pair rather than load a mismatched one.
    write(&key_path, key_pem.as_bytes(), 0o600)?;
    write(&cert_path, cert_pem.as_bytes(), 0o644)?;
    Ok(validity)
}

/// Keeps the self-signed certificate valid for as long as the process runs.
pub struct Renewal {
    pub cert_dir: PathBuf,
    pub subject: Subject,
    pub lifetime: std::time::Duration,
    pub serving: Arc<ServingCert>,
    /// The pair in use now.
    pub current: Validity,
}

impl Renewal {
    pub async fn run(mut self) {
        let mut delay = RETRY_INITIAL;
        loop {
            let now = unix(SystemTime::now());
            if now < self.current.renew_at {
                let until = std::time::Duration::from_secs(self.current.renew_at.saturating_sub(now).unsigned_abs());
                tokio::time::sleep(until.min(RECHECK)).await;
                continue;
            }
            match self.renew() {
                Ok(validity) => {
                    tracing::info!(
                        not_after = validity.not_after,
                        renew_at = validity.renew_at,
                        "renewed the self-signed serving certificate"
                    );
                    self.current = validity;
                    delay = RETRY_INITIAL;
                }
                Err(e) => {
                    tracing::warn!(error = %e, expires = self.current.not_after, "renewing the self-signed serving certificate failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// A new pair on disk and in the listener.
    fn renew(&self) -> Result<Validity, CertError> {
        let validity = store(&self.cert_dir, &self.subject, self.lifetime)?;
        let (cert, key) = paths(&self.cert_dir);
        self.serving.set(super::load_pair(&cert, &key)?);
        Ok(validity)
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CertError::Io {
        path: path.into(),
        source,
    };
    // Write beside the target and rename, so a crash never leaves half a key behind. Each file
    // has its own temporary name, made afresh: a leftover from a crash never lends its mode.
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Generates CA + leaf, valid for `lifetime` from a little before `now`. The PEM holds the leaf
/// then the CA, as the kubelet writes it.
pub fn generate(
    subject: &Subject,
    now: SystemTime,
    lifetime: std::time::Duration,
) -> Result<(String, String), CertError> {
    let err = |e: rcgen::Error| CertError::Generate(e.to_string());
    let unix = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let span = |d: std::time::Duration| Duration::try_from(d).unwrap_or(Duration::days(365));
    let not_before = OffsetDateTime::from(now) - span(BACKDATE.min(lifetime / 10));
    let not_after = not_before + span(lifetime);

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

/// The validity of the first certificate in `cert_pem`, with a renewal point drawn for it.
fn validity_of(cert_pem: &[u8]) -> Option<Validity> {
    let leaf = CertificateDer::pem_slice_iter(cert_pem).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(&leaf).ok()?;
    Some(validity(&cert))
}

fn validity(cert: &X509Certificate<'_>) -> Validity {
    let (not_before, not_after) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    Validity {
        not_before,
        not_after,
        renew_at: rotation_deadline(not_before, not_after, random_unit()),
    }
}

fn random_unit() -> f64 {
    let mut r = [0u8; 4];
    match aws_lc_rs::rand::fill(&mut r) {
        Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An existing certificate that can be kept, and its validity: unexpired, and naming every DNS
/// name and IP.
fn still_fits(cert_pem: &[u8], subject: &Subject) -> Option<Validity> {
    let leaf = CertificateDer::pem_slice_iter(cert_pem).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(&leaf).ok()?;
    if !cert.validity().is_valid() {
        return None;
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
    (subject.dns_names.is_subset(&dns) && subject.ips.is_subset(&ips)).then(|| validity(&cert))
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
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path().join("pki");
        let first = ensure(&dir, &subject(), LIFETIME).expect("generate");
        assert!(first.generated);
        let pem = std::fs::read(&first.cert).expect("cert");
        assert!(still_fits(&pem, &subject()).is_some());
        super::super::load_pair(&first.cert, &first.key).expect("loads");
        assert!(
            !ensure(&dir, &subject(), LIFETIME).expect("reuse").generated,
            "an unexpired pair naming every address is reused"
        );
        let mut more = subject();
        more.ips.insert("10.0.0.6".parse().expect("ip"));
        assert!(
            ensure(&dir, &more, LIFETIME).expect("regenerate").generated,
            "a new node address needs a new certificate"
        );
    }

    #[test]
    fn an_expired_certificate_is_replaced() {
        let old = SystemTime::now() - std::time::Duration::from_secs(400 * 24 * 3600);
        let (cert_pem, _) = generate(&subject(), old, LIFETIME).expect("generate");
        assert!(still_fits(cert_pem.as_bytes(), &subject()).is_none());
    }

    #[test]
    fn the_lifetime_and_renewal_point_follow_the_bootstrap_rule() {
        let now = SystemTime::now();
        let (pem, _) = generate(&subject(), now, LIFETIME).expect("generate");
        let v = validity_of(pem.as_bytes()).expect("parses");
        assert_eq!(v.not_before, unix(now) - 3600, "backdated an hour, as the kubelet does");
        assert_eq!(v.not_after - v.not_before, 365 * 24 * 3600);
        let total = v.not_after - v.not_before;
        assert!(
            (v.not_before + total * 7 / 10..=v.not_before + total * 9 / 10).contains(&v.renew_at),
            "{v:?}"
        );
        let short = std::time::Duration::from_secs(100);
        let (pem, _) = generate(&subject(), now, short).expect("generate");
        let v = validity_of(pem.as_bytes()).expect("parses");
        assert_eq!(
            (v.not_before, v.not_after),
            (unix(now) - 10, unix(now) + 90),
            "a tenth backdated"
        );
    }

    #[test]
    fn a_pair_past_its_renewal_point_is_replaced_at_start() {
        let dir = tempfile::tempdir().expect("dir");
        // 95% of its lifetime gone: still valid, but due for renewal whatever the draw.
        let lifetime = std::time::Duration::from_secs(2000);
        let (cert_pem, key_pem) = generate(
            &subject(),
            SystemTime::now() - std::time::Duration::from_secs(1700),
            lifetime,
        )
        .expect("generate");
        let (cert, key) = paths(dir.path());
        std::fs::write(&cert, &cert_pem).expect("cert");
        std::fs::write(&key, &key_pem).expect("key");
        let ensured = ensure(dir.path(), &subject(), LIFETIME).expect("ensure");
        assert!(ensured.generated, "a pair with seconds left is not reused");
        assert_ne!(std::fs::read_to_string(&cert).expect("cert"), cert_pem);
        assert_eq!(
            ensured.validity.not_after - ensured.validity.not_before,
            365 * 24 * 3600
        );
    }
}
