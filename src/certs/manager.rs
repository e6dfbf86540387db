//! The certificate manager the serving and the client certificate share, the kubelet's
//! (client-go util/certificate/certificate_manager.go `manager.Start`, `rotateCerts`,
//! `nextRotationDeadline`): keep a valid certificate in the store and in use for as long as the
//! process runs. Sleep until the rotation deadline, or act at once when there is no certificate,
//! it has expired, or it no longer satisfies the template; then a fresh ECDSA P-256 key, one CSR
//! ([`super::csr`]), the issued pair stored ([`super::store`]) and handed to the [`Flow`].
//! What differs between the two certificates (the template, who asks, where the result goes) is
//! the [`Flow`].

use std::future::Future;
use std::time::{Duration, SystemTime};

use rcgen::KeyPair;

use super::csr::{self, CsrError, Kind, Template};
use super::rotation::{RetryBackoff, now_unix};
use super::store::{Issued, Store, StoreError};

/// What one managed certificate is for.
pub trait Flow: Send + Sync + 'static {
    /// For the log: `serving certificate`, `client certificate`.
    fn what(&self) -> &'static str;
    /// The CSR's signer and usages.
    fn kind(&self) -> Kind;
    /// What the next certificate must say; `Err` while that cannot be known yet (the Node's
    /// addresses).
    fn template(&self) -> impl Future<Output = Result<Template, String>> + Send;
    /// The API client to request with, given the certificate in use when it is still valid
    /// (client-go's `ClientsetFn`).
    fn requester(&self, current: Option<&Issued>) -> impl Future<Output = Result<kube::Client, String>> + Send;
    /// A new certificate is stored: put it in use.
    fn publish(&self, issued: &Issued);
    /// There is no valid certificate (none yet, or it expired), and this is why.
    fn unusable(&self, why: &str);
}

/// How long to wait for one CSR, the first retry delay, and how often to re-read the template
/// while a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `certificateWaitTimeout`: 15 minutes.
    pub wait: Duration,
    /// 2 s in the kubelet ([`RetryBackoff`]).
    pub retry: Duration,
    pub recheck: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("no API client to request a certificate with: {0}")]
    Requester(String),
    #[error("generating the key or the CSR: {0}")]
    Generate(String),
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("storing the certificate: {0}")]
    Store(#[from] StoreError),
}

pub struct Manager<F: Flow> {
    pub flow: F,
    pub store: Store,
    pub timing: Timing,
}

impl<F: Flow> Manager<F> {
    /// Runs until the process ends, starting from the stored certificate (if any).
    pub async fn run(self, mut current: Option<Issued>) {
        let what = self.flow.what();
        if let Some(c) = &current {
            log_schedule(what, c);
        }
        // Two schedules: a template that cannot be had yet (the Node unreadable) says nothing
        // about the CSR API, and its recovery must not leave a grown delay behind for the CSR.
        let mut template_backoff = RetryBackoff::new(self.timing.retry);
        let mut request_backoff = RetryBackoff::new(self.timing.retry);
        loop {
            let template = match self.flow.template().await {
                Ok(t) => {
                    template_backoff.reset();
                    t
                }
                Err(e) => {
                    let delay = template_backoff.next_delay();
                    tracing::warn!(error = %e, "{what}: no certificate template yet; trying again in {delay:?}");
                    if !current.as_ref().is_some_and(|c| c.valid_now()) {
                        self.flow.unusable(&e);
                    }
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let now = now_unix();
            let usable = current.as_ref().filter(|c| c.valid_now());
            if let Some(c) = usable {
                let satisfied = c.with_leaf(|leaf| template.matches(leaf)).unwrap_or(false);
                if now < c.rotate_at && satisfied {
                    let until = Duration::from_secs(u64::try_from(c.rotate_at - now).unwrap_or(0));
                    tokio::time::sleep(until.min(self.timing.recheck)).await;
                    continue;
                }
                if !satisfied {
                    tracing::info!("{what}: the current certificate does not match the template; rotating");
                }
            } else if let Some(c) = &current {
                let why = format!("the {what} expired at {}", rfc3339(c.not_after));
                tracing::warn!("{why}; requesting a new one");
                self.flow.unusable(&why);
            }
            tracing::info!("{what}: rotating certificates");
            match self.obtain(&template, usable).await {
                Ok(issued) => {
                    request_backoff.reset();
                    log_schedule(what, &issued);
                    self.flow.publish(&issued);
                    current = Some(issued);
                }
                Err(e) => {
                    let delay = request_backoff.next_delay();
                    tracing::warn!(error = %e, "{what} request failed; retrying in {delay:?}");
                    if !current.as_ref().is_some_and(|c| c.valid_now()) {
                        self.flow.unusable(&e.to_string());
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One attempt: a fresh key, one CSR, the wait on it, the store.
    async fn obtain(&self, template: &Template, usable: Option<&Issued>) -> Result<Issued, ManagerError> {
        let what = self.flow.what();
        let client = self.flow.requester(usable).await.map_err(ManagerError::Requester)?;
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| ManagerError::Generate(e.to_string()))?;
        let pem = template.csr_pem(&key).map_err(ManagerError::Generate)?;
        let requested = csr::request(&client, &pem, self.flow.kind()).await?;
        tracing::info!(csr = %requested.name, "{what} requested; waiting for approval");
        if usable.is_none() {
            self.flow.unusable(&format!("CSR {} is pending", requested.name));
        }
        let chain = tokio::time::timeout(self.timing.wait, csr::wait(&client, &requested, self.timing.retry))
            .await
            .map_err(|_| CsrError::Timeout(requested.name.clone()))??;
        let issued = self
            .store
            .update(&chain, key.serialize_pem().as_bytes(), SystemTime::now())?;
        tracing::info!(csr = %requested.name, file = %issued.path.display(), "{what} issued and stored");
        Ok(issued)
    }
}

/// The kubelet's line (`nextRotationDeadline`): when the certificate expires and when it will
/// be renewed.
fn log_schedule(what: &str, c: &Issued) {
    tracing::info!(
        "{what}: certificate expiration is {}, rotation deadline is {}",
        rfc3339(c.not_after),
        rfc3339(c.rotate_at)
    );
}

/// Unix seconds as RFC 3339 in UTC.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
