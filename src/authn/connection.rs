//! What the gateway knows about a TLS connection: the peer, and the client certificate chain it
//! presented, with the verified identity remembered so later requests on it skip verification.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::user::UserInfo;
use super::x509::ClientCa;

/// A TLS connection, shared by every request on it.
pub struct Connection {
    pub peer: std::net::SocketAddr,
    pub identity: PeerIdentity,
    /// Log responses open on it now (`limits.maxLogStreamsPerConnection`, kept by
    /// `proxy::quota`).
    pub log_streams: AtomicUsize,
}

impl Connection {
    pub fn new(peer: std::net::SocketAddr, identity: PeerIdentity) -> Connection {
        Connection {
            peer,
            identity,
            log_streams: AtomicUsize::new(0),
        }
    }
}

/// What the connection presented, shared by every request on it.
#[derive(Default)]
pub struct PeerIdentity {
    chain: Vec<CertificateDer<'static>>,
    /// The last successful verification. A reloaded bundle or the chain's expiry makes it
    /// stale; the next request verifies again and replaces it.
    verified: ArcSwapOption<Verified>,
}

struct Verified {
    user: Option<Arc<UserInfo>>,
    /// The client CA bundle it was verified against; a reloaded bundle verifies again.
    ca_generation: u64,
    /// The earliest notAfter in the presented chain: past it the cached result is not used.
    valid_until: u64,
}

impl PeerIdentity {
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        PeerIdentity {
            chain,
            verified: ArcSwapOption::empty(),
        }
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The identity the chain proves, verified on first use and again whenever the remembered
    /// verdict is stale (another bundle generation, or past the chain's earliest notAfter).
    /// Failures are not remembered, so a not-yet-valid certificate starts working when its time
    /// comes, as on the kubelet. `verifications` counts the chain verifications actually run.
    pub fn authenticate(&self, ca: &ClientCa, verifications: &AtomicU64) -> Result<Option<Arc<UserInfo>>, String> {
        if self.chain.is_empty() {
            return Ok(None);
        }
        let now = UnixTime::now();
        if let Some(v) = &*self.verified.load()
            && now.as_secs() < v.valid_until
            && v.ca_generation == ca.generation()
        {
            return Ok(v.user.clone());
        }
        verifications.fetch_add(1, Ordering::Relaxed);
        let user = ca
            .authenticate(&self.chain, now)
            .map_err(|e| e.to_string())?
            .map(Arc::new);
        self.verified.store(Some(Arc::new(Verified {
            user: user.clone(),
            ca_generation: ca.generation(),
            valid_until: earliest_not_after(&self.chain),
        })));
        Ok(user)
    }
}

fn earliest_not_after(chain: &[CertificateDer<'_>]) -> u64 {
    chain
        .iter()
        .filter_map(|c| X509Certificate::from_der(c).ok())
        .map(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).unwrap_or(0))
        .min()
        .unwrap_or(0)
}
