//! TLS for the 10250 listener: the serving-certificate resolver, and client certificates that
//! are requested but never judged during the handshake. Built with [`crate::crypto::provider`].

pub mod client_auth;
pub mod reload;
pub mod resolver;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::NoClientAuth;
use rustls::{ServerConfig, SupportedCipherSuite};

use arc_swap::ArcSwap;

use crate::authn::x509::ClientCa;
use crate::config::{CipherSuiteName, TlsVersion};
use client_auth::RequestClientCert;
pub use resolver::{ClientKey, KeySlot, ServingCert};

/// What the listener needs per connection: the TLS configuration in force (rebuilt when the
/// client CA changes) and the serving certificate (absent while a CSR is pending).
#[derive(Clone)]
pub struct TlsState {
    pub config: Arc<ArcSwap<ServerConfig>>,
    pub serving: Arc<ServingCert>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tlsCipherSuites leaves no cipher suite usable with {0}")]
    NoSuites(&'static str),
}

/// The listener's configuration: ALPN h2 and http/1.1, the configured minimum version and
/// TLS 1.2 suites, and a CertificateRequest only when a client CA is configured (naming its
/// subjects), exactly when the kubelet sends one.
pub fn server_config(
    serving: Arc<ServingCert>,
    client_ca: Option<&ClientCa>,
    min_version: TlsVersion,
    suites: &[CipherSuiteName],
) -> Result<ServerConfig, TlsError> {
    let mut provider = CryptoProvider::clone(&crate::crypto::provider());
    if !suites.is_empty() {
        provider.cipher_suites.retain(|s| match s {
            SupportedCipherSuite::Tls13(_) => true,
            SupportedCipherSuite::Tls12(_) => suites.iter().any(|n| n.rustls_suite() == Some(s.suite())),
        });
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    if min_version == TlsVersion::Tls12
        && !provider
            .cipher_suites
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
    {
        return Err(TlsError::NoSuites("TLS 1.2"));
    }
    let builder = ServerConfig::builder_with_provider(Arc::new(provider)).with_protocol_versions(versions)?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(RequestClientCert::new(ca.roots().subjects()))),
        None => builder.with_client_cert_verifier(Arc::new(NoClientAuth)),
    };
    let mut config = builder.with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
