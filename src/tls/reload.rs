//! The TLS material reloaded without a restart ([`crate::reload`] does the watching): the
//! serving certificate from its files, the client CA bundle (which rebuilds the listener's
//! configuration, so the CertificateRequest names the new CAs), and any other certificate and
//! key pair kept in a [`KeySlot`] (the gateway's client certificate for the kubelet's port).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::KeySlot;
use crate::authn::x509::ClientCa;
use crate::reload::Source;

/// Rebuilds the listener's TLS configuration for a new client CA bundle (its names go into the
/// CertificateRequest).
pub type RebuildTls = Box<dyn Fn(Option<&ClientCa>) -> Result<ServerConfig, super::TlsError> + Send + Sync>;

/// A certificate chain and its key in PEM files, kept in a slot. A pair replaces the old one only
/// when it parses and the key matches the certificate, so a key written before its certificate
/// never takes effect on its own.
pub struct PairFiles {
    pub what: &'static str,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub slot: Arc<dyn KeySlot>,
}

impl Source for PairFiles {
    fn what(&self) -> &'static str {
        self.what
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone()]
    }

    fn apply(&self, contents: &[Vec<u8>]) -> Result<(), String> {
        let [cert, key] = contents else {
            return Err("expected a certificate and a key".into());
        };
        let pair = crate::certs::pair_from_pem(&self.cert, cert, &self.key, key).map_err(|e| e.to_string())?;
        self.slot.store(pair);
        Ok(())
    }
}

/// The client CA bundle, and the listener's configuration built from it.
pub struct ClientCaFile {
    pub path: PathBuf,
    pub current: Arc<ArcSwap<ClientCa>>,
    pub tls: Arc<ArcSwap<ServerConfig>>,
    pub rebuild: RebuildTls,
}

impl Source for ClientCaFile {
    fn what(&self) -> &'static str {
        "client CA bundle"
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn apply(&self, contents: &[Vec<u8>]) -> Result<(), String> {
        let [bytes] = contents else {
            return Err("expected one file".into());
        };
        let ca = ClientCa::from_pem(&self.path, bytes).map_err(|e| e.to_string())?;
        let tls = (self.rebuild)(Some(&ca)).map_err(|e| e.to_string())?;
        self.current.store(Arc::new(ca));
        self.tls.store(Arc::new(tls));
        Ok(())
    }
}
