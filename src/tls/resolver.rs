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
    current: ArcSwapOption<Served>,
    /// Why there is no certificate yet (e.g. which CSR is pending), for the handshake log.
    pending: ArcSwapOption<String>,
}

/// A key, and the Unix second from which it is no longer served (`None`: never). Only a
/// bootstrapped certificate has one: the kubelet's certificate manager stops serving it when it
/// expires (client-go certificate_manager.go `Current`), while files are served as they are.
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    not_after: Option<i64>,
}

impl ServingCert {
    pub fn new(initial: Option<Arc<CertifiedKey>>) -> Self {
        ServingCert {
            current: ArcSwapOption::new(initial.map(|key| Arc::new(Served { key, not_after: None }))),
            pending: ArcSwapOption::empty(),
        }
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(Some(Arc::new(Served { key, not_after: None })));
    }

    /// A certificate served until `not_after` (Unix seconds), then no longer.
    pub fn set_until(&self, key: Arc<CertifiedKey>, not_after: i64) {
        self.current.store(Some(Arc::new(Served {
            key,
            not_after: Some(not_after),
        })));
    }

    pub fn set_pending(&self, why: Option<String>) {
        self.pending.store(why.map(Arc::new));
    }

    /// Why nothing is served: the reason last given, or else that the certificate expired.
    pub fn pending(&self) -> Option<Arc<String>> {
        if let Some(why) = self.pending.load_full() {
            return Some(why);
        }
        let served = self.current.load_full()?;
        let end = served.not_after?;
        crate::certs::rotation::is_past(end).then(|| {
            Arc::new(format!(
                "the serving certificate expired at {}",
                crate::certs::manager::rfc3339(end)
            ))
        })
    }

    /// The certificate to serve now, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let served = self.current.load_full()?;
        match served.not_after {
            Some(end) if crate::certs::rotation::is_past(end) => None,
            _ => Some(served.key.clone()),
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
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
