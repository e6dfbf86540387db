//! Client-certificate authentication (kubernetes/apiserver pkg/authentication/request/x509/
//! x509.go, `CommonNameUserConversion`). The TLS layer only records
//! the chain a client presents; it is verified here against the client CA bundle, so a bad
//! certificate becomes an HTTP 401 (or falls through to a token) exactly as on the kubelet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::user::{CREDENTIAL_ID_KEY, UserInfo};

const UID_OID: &str = "0.9.2342.19200300.100.1.1";

#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    #[error("client CA file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("client CA file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Why a presented certificate did not yield an identity. Logged, never sent to the caller.
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("verifying certificate {id} failed: {source}")]
    Verify { id: String, source: rustls::Error },
    #[error("certificate SN={0} may sign certificates (keyCertSign or CA:TRUE), so it is no client identity")]
    NotEndEntity(String),
    #[error("parsing client certificate: {0}")]
    Parse(String),
    #[error("UID cannot be an empty string")]
    EmptyUid,
    #[error("unable to parse UID into a string")]
    UidNotString,
    #[error("expected 1 UID, but found multiple: {0:?}")]
    MultipleUids(Vec<String>),
}

/// The trusted client CA bundle and a verifier built from it.
pub struct ClientCa {
    verifier: Arc<dyn ClientCertVerifier>,
    roots: Arc<RootCertStore>,
    generation: u64,
}

/// Every bundle loaded gets a new number, so identities verified against an older bundle are
/// verified again after a reload.
static GENERATION: AtomicU64 = AtomicU64::new(1);

impl ClientCa {
    pub fn load(path: &Path) -> Result<ClientCa, ClientCaError> {
        let pem = std::fs::read(path).map_err(|source| ClientCaError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_pem(path, &pem)
    }

    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<ClientCa, ClientCaError> {
        let invalid = |message: String| ClientCaError::Invalid {
            path: path.into(),
            message,
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| invalid(format!("unreadable PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("missing content for CA bundle \"client-ca-bundle\"".into()));
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), crate::crypto::provider())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(ClientCa {
            verifier,
            roots,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The CA names to advertise in the TLS CertificateRequest.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// Verifies the chain (leaf first; the rest are client-supplied intermediates, never roots)
    /// and converts the leaf into a user as `CommonNameUserConversion` does. `Ok(None)` is "no
    /// credential": an empty chain, or a verified certificate without a CN.
    pub fn authenticate(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<Option<UserInfo>, X509Error> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Ok(None);
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|source| X509Error::Verify {
                id: certificate_identifier(leaf),
                source,
            })?;
        user_from_leaf(leaf)
    }
}

/// `CommonNameUserConversion`: user = CN, groups = every O, UID from the LDAP UID attribute,
/// and the credential id `X509SHA256=<hex of the leaf DER>`.
pub fn user_from_leaf(leaf: &CertificateDer<'_>) -> Result<Option<UserInfo>, X509Error> {
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| X509Error::Parse(e.to_string()))?;
    // Stricter than Go, which accepts a CA certificate as a leaf: a certificate that can issue certificates is a CA,
    // whatever its basic constraints say, and a CA is nobody's identity.
    let signs_certificates = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.key_cert_sign())
        || cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
    if signs_certificates {
        return Err(X509Error::NotEndEntity(cert.serial.to_string()));
    }
    let subject = cert.subject();
    // Go keeps the last CN when a subject carries several.
    let name = match subject.iter_common_name().last() {
        Some(cn) => cn.as_str().map_err(|e| X509Error::Parse(format!("common name: {e}")))?,
        None => "",
    };
    if name.is_empty() {
        return Ok(None);
    }
    let groups = subject
        .iter_organization()
        .map(|o| {
            o.as_str()
                .map(str::to_owned)
                .map_err(|e| X509Error::Parse(format!("organization: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let uid = uid_attribute(subject)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref());
    let user = UserInfo {
        name: name.to_owned(),
        uid,
        groups,
        extra: [(
            CREDENTIAL_ID_KEY.to_owned(),
            vec![format!("X509SHA256={}", hex(digest.as_ref()))],
        )]
        .into(),
    };
    Ok(Some(user.with_authenticated_group()))
}

fn uid_attribute(subject: &X509Name<'_>) -> Result<String, X509Error> {
    let mut uids = Vec::new();
    for attr in subject.iter_attributes() {
        if attr.attr_type().to_id_string() == UID_OID {
            uids.push(attr.as_str().map_err(|_| X509Error::UidNotString)?.to_owned());
        }
    }
    match uids.len() {
        0 => Ok(String::new()),
        1 if uids[0].is_empty() => Err(X509Error::EmptyUid),
        1 => Ok(uids.swap_remove(0)),
        _ => Err(X509Error::MultipleUids(uids)),
    }
}

/// `SN=<decimal>, SKID=<AA:BB>, AKID=<AA:BB>`, the identifier the API server logs.
fn certificate_identifier(leaf: &CertificateDer<'_>) -> String {
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return "SN=<unparsable>".into();
    };
    let mut skid = String::new();
    let mut akid = String::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => skid = colon_hex(k.0),
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                akid = a.key_identifier.as_ref().map(|k| colon_hex(k.0)).unwrap_or_default()
            }
            _ => {}
        }
    }
    format!("SN={}, SKID={skid}, AKID={akid}", cert.serial)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_formats() {
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
        assert_eq!(colon_hex(&[0x0a, 0xff]), "0A:FF");
    }

    #[test]
    fn empty_bundle_is_refused() {
        let err = ClientCa::from_pem(Path::new("ca.crt"), b"").err().expect("error");
        assert!(err.to_string().contains("missing content for CA bundle"), "{err}");
    }
}
