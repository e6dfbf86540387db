//! Certificates swappable while connections use them: the serving certificate (with no
//! certificate yet, a pending CSR, every handshake fails, as the kubelet's does) and the
//! gateway's own client certificate for the kubelet's authenticated port.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where a reloaded certificate and key go.
pub trait KeySlot: Send + Sync {
    fn store(&self, key: Arc<CertifiedKey>);
}

#[derive(Debug, Default)]
pub struct ServingCert {
    current: ArcSwapOption<CertifiedKey>,
    /// Why there is no certificate yet (e.g. which CSR is pending), for the handshake log.
    pending: ArcSwapOption<String>,
}

impl ServingCert {
    pub fn new(initial: Option<Arc<CertifiedKey>>) -> Self {
        ServingCert {
            current: ArcSwapOption::new(initial),
            pending: ArcSwapOption::empty(),
        }
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(Some(key));
    }

    pub fn set_pending(&self, why: Option<String>) {
        self.pending.store(why.map(Arc::new));
    }

    pub fn pending(&self) -> Option<Arc<String>> {
        self.pending.load_full()
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl KeySlot for ServingCert {
    fn store(&self, key: Arc<CertifiedKey>) {
        self.set(key);
    }
}

/// The gateway's client certificate, presented on every new connection to the kubelet's port;
/// a reload takes effect for the next handshake, open connections keep theirs.
#[derive(Debug)]
pub struct ClientKey {
    current: ArcSwap<CertifiedKey>,
}

impl ClientKey {
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        ClientKey {
            current: ArcSwap::new(initial),
        }
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl KeySlot for ClientKey {
    fn store(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesClientCert for ClientKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
