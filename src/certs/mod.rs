//! Certificates the gateway holds: the serving certificate (files named in the configuration,
//! a self-signed pair kept in `certDir`, or `serverTLSBootstrap`), and the gateway's client
//! identity towards the API server when it joins with a bootstrap token.
//!
//! The two CSR flows share one mechanism, as the kubelet's do: [`csr`] (what a CSR asks for,
//! creating it, waiting on it), [`store`] (the `<prefix>-<time>.pem` files and the
//! `<prefix>-current.pem` link), [`rotation`] (when to renew, how to back off) and [`manager`]
//! (the loop); [`serving`] and [`client`] are what differs.

pub mod client;
pub mod csr;
pub mod manager;
pub mod rotation;
pub mod self_signed;
pub mod serving;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

fn invalid(path: &Path, message: impl Into<String>) -> CertError {
    CertError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Loads a certificate chain and its key from PEM files; every failure names the file.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| CertError::Io {
        path: cert_path.into(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| CertError::Io {
        path: key_path.into(),
        source,
    })?;
    pair_from_pem(cert_path, &cert_pem, key_path, &key_pem)
}

pub fn pair_from_pem(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert_path, format!("unreadable PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert_path, "no CERTIFICATE block found"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid(key_path, format!("no usable private key: {e}")))?;
    let key = crate::crypto::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|e| {
        invalid(
            key_path,
            format!("the key does not match the certificate in {}: {e}", cert_path.display()),
        )
    })?;
    Ok(Arc::new(certified))
}
