//! The kubelet's own authenticated port (`upstream.secure`), moved off 10250 to loopback: the
//! endpoints the read-only port lacks (exec, attach, port-forward, run, configz, checkpoint,
//! the debug handlers; the read-only ones too when there is no read-only port) are forwarded
//! there over TLS with the gateway's client certificate, after the gateway has authorized the
//! caller. The kubelet's serving certificate is verified against `caFile`, and the host of
//! `url` must be one of its names. HTTP/1.1 only: that is what the kubelet streams over.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Uri;
use http::uri::Scheme;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::forward::{Port, UpstreamUrlError};
use crate::certs::CertError;
use crate::config::SecureUpstream;
use crate::tls::{ClientKey, KeySlot};

type Https = HttpsConnector<HttpConnector>;

/// The kubelet's port and the gateway's identity towards it.
pub struct SecurePort {
    /// The clients in use; replaced, with fresh pools, when the client certificate changes.
    port: ArcSwap<Port<Https>>,
    connector: Https,
    url: Uri,
    header_timeout: Duration,
    /// For readiness: no pool, so every probe is a new TLS handshake with the current key.
    probe: Client<Https, Empty<Bytes>>,
    healthz: Uri,
    /// The gateway's client certificate, swapped by the reloader when its files change.
    pub client_key: Arc<ClientKey>,
    /// An upgraded stream idle this long is closed.
    pub stream_idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurePortError {
    #[error("upstream.secure.url: {0}")]
    Url(#[from] UpstreamUrlError),
    #[error("upstream.secure.caFile {path}: {message}")]
    Ca { path: String, message: String },
    #[error("upstream.secure.certFile/keyFile: {0}")]
    ClientCert(#[from] CertError),
    #[error("upstream.secure: TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl SecurePort {
    /// Reads the CA bundle and the client pair (a missing or broken file names itself) and
    /// builds the client. Nothing is dialled until a request needs it.
    pub fn new(
        config: &SecureUpstream,
        connect: Duration,
        header_timeout: Duration,
        stream_idle_timeout: Duration,
    ) -> Result<SecurePort, SecurePortError> {
        let roots = load_roots(&config.ca_file)?;
        let client_key = Arc::new(ClientKey::new(crate::certs::load_pair(
            &config.cert_file,
            &config.key_file,
        )?));
        let mut tls = ClientConfig::builder_with_provider(crate::crypto::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_cert_resolver(client_key.clone());
        // No resumption: a resumed session keeps the identity of the one it resumes, so after a
        // rotation the kubelet would still see the old certificate (and one it no longer
        // trusts would go on working). Pooled connections keep full handshakes rare.
        tls.resumption = rustls::client::Resumption::disabled();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let healthz = format!("{}healthz", config.url)
            .parse::<Uri>()
            .map_err(|_| UpstreamUrlError::new(&config.url, "https"))?;
        Ok(SecurePort {
            probe: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(https.clone()),
            healthz,
            port: ArcSwap::from_pointee(Port::with_connector(
                &config.url,
                Scheme::HTTPS,
                https.clone(),
                header_timeout,
            )?),
            connector: https,
            url: config.url.clone(),
            header_timeout,
            client_key,
            stream_idle_timeout,
        })
    }
}

impl SecurePort {
    /// The clients to forward with now.
    pub fn port(&self) -> Arc<Port<Https>> {
        self.port.load_full()
    }

    /// For `/readyz`: a TLS handshake with the gateway's current certificate and the kubelet's
    /// `/healthz`. 401 and 403 are failures too: the kubelet does not accept (or does not
    /// authorize) the gateway, so nothing forwarded there would work.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let url = &self.healthz;
        match tokio::time::timeout(timeout, self.probe.get(url.clone())).await {
            Err(_) => Err(format!("{url} did not answer within {timeout:?}")),
            Ok(Err(e)) => Err(format!("{url}: {}", super::forward::error_chain(&e))),
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) if r.status() == http::StatusCode::UNAUTHORIZED => Err(format!(
                "{url}: 401: the kubelet does not accept the gateway's client certificate (its clientCAFile)"
            )),
            Ok(Ok(r)) if r.status() == http::StatusCode::FORBIDDEN => Err(format!(
                "{url}: 403: the gateway's identity may not use the kubelet API (bind it to system:kubelet-api-admin)"
            )),
            Ok(Ok(r)) => Err(format!("{url}: {}", r.status())),
        }
    }
}

/// A new client certificate: new connections present it, and the pooled ones (which would keep
/// the old identity, up to its expiry and past it) are left to finish and not reused, as the
/// kubelet closes its connections when its own client certificate rotates (client-go
/// `transport/cert_rotation.go`, kubelet `UpdateTransport`). Open streams keep their
/// connections.
impl KeySlot for SecurePort {
    fn store(&self, key: Arc<rustls::sign::CertifiedKey>) {
        self.client_key.store(key);
        match Port::with_connector(&self.url, Scheme::HTTPS, self.connector.clone(), self.header_timeout) {
            Ok(port) => self.port.store(Arc::new(port)),
            Err(e) => tracing::warn!(error = %e, "could not renew the connections to the kubelet's port"),
        }
    }
}

fn load_roots(path: &std::path::Path) -> Result<RootCertStore, SecurePortError> {
    let ca = |message: String| SecurePortError::Ca {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ca(format!("unreadable PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca("no CERTIFICATE block found".into()));
    }
    Ok(roots)
}
