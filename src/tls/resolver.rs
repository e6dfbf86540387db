//! The serving certificate, swappable while the listener runs. With no certificate yet (a
//! pending CSR) every handshake fails, as the kubelet's does.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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
