//! Readiness, as named checks: a valid serving certificate is loaded, the read-only port
//! answers, the kubelet's own port accepts the gateway (when configured), (with a webhook) the
//! API server answers, and (with an audit log) the audit log is being written. The body names
//! the failing check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::k8s::ApiClient;
use crate::proxy::secure::SecurePort;
use crate::tls::ServingCert;

/// How long each check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Readiness {
    pub serving: Arc<ServingCert>,
    /// The read-only port's `/healthz`, unless there is none.
    pub upstream: Option<Uri>,
    /// The kubelet's own port, when configured.
    pub secure: Option<Arc<SecurePort>>,
    /// The API server, when a webhook needs it.
    pub api: Option<Arc<ApiClient>>,
    /// The audit writer, when an audit log is configured.
    pub audit: Option<Arc<crate::ops::audit::Health>>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// One line per check.
pub struct Report(Vec<(&'static str, Result<(), String>)>);

impl Report {
    pub fn ready(&self) -> bool {
        self.0.iter().all(|(_, r)| r.is_ok())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, result) in &self.0 {
            match result {
                Ok(()) => writeln!(f, "[+]{name} ok")?,
                Err(why) => writeln!(f, "[-]{name} failed: {why}")?,
            }
        }
        if self.ready() {
            writeln!(f, "readyz check passed")
        } else {
            writeln!(f, "readyz check failed")
        }
    }
}

impl Readiness {
    pub fn new(
        serving: Arc<ServingCert>,
        upstream: Option<&Uri>,
        secure: Option<Arc<SecurePort>>,
        api: Option<Arc<ApiClient>>,
    ) -> Self {
        let upstream = upstream.map(|upstream| {
            let mut parts = upstream.clone().into_parts();
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/healthz"));
            Uri::from_parts(parts).unwrap_or_else(|_| upstream.clone())
        });
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CHECK_TIMEOUT));
        Readiness {
            serving,
            upstream,
            secure,
            api,
            audit: None,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub async fn check(&self) -> Report {
        let (upstream, secure, api) = tokio::join!(self.upstream(), self.secure(), self.api());
        let mut checks = vec![("serving-certificate", self.certificate())];
        checks.extend(upstream.map(|r| ("upstream", r)));
        checks.extend(secure.map(|r| ("kubelet-port", r)));
        checks.extend(api.map(|r| ("apiserver", r)));
        checks.extend(self.audit.as_ref().map(|audit| ("audit", audit.check())));
        Report(checks)
    }

    /// Liveness (`/healthz`): `Err` once the serving certificate in use has expired, since then
    /// every handshake fails. A restart is the cure for a self-signed pair (a new one at start)
    /// and makes the fault visible for files or a CSR; no certificate yet (a CSR pending) is not
    /// one, since a restart would only start the wait again.
    pub fn liveness(&self) -> Result<(), String> {
        match self.serving.current() {
            None => Ok(()),
            Some(key) => unexpired(&key),
        }
    }

    fn certificate(&self) -> Result<(), String> {
        let Some(key) = self.serving.current() else {
            return Err(match self.serving.pending() {
                Some(why) => format!("no serving certificate yet ({why})"),
                None => "no serving certificate".into(),
            });
        };
        unexpired(&key)
    }

    async fn upstream(&self) -> Option<Result<(), String>> {
        let upstream = self.upstream.as_ref()?;
        Some(
            match tokio::time::timeout(CHECK_TIMEOUT, self.client.get(upstream.clone())).await {
                Err(_) => Err(format!("{upstream} did not answer within {CHECK_TIMEOUT:?}")),
                Ok(Err(e)) => Err(format!("{upstream}: {e}")),
                Ok(Ok(_)) => Ok(()),
            },
        )
    }

    async fn secure(&self) -> Option<Result<(), String>> {
        Some(self.secure.as_ref()?.probe(CHECK_TIMEOUT).await)
    }

    async fn api(&self) -> Option<Result<(), String>> {
        let api = self.api.as_ref()?;
        Some(api.probe(CHECK_TIMEOUT).await.map_err(|e| e.to_string()))
    }
}

fn unexpired(key: &rustls::sign::CertifiedKey) -> Result<(), String> {
    let not_after = key
        .cert
        .first()
        .and_then(super::metrics::not_after)
        .ok_or("the serving certificate does not parse")?;
    if not_after <= time::OffsetDateTime::now_utc().unix_timestamp() {
        return Err("the serving certificate has expired".into());
    }
    Ok(())
}
