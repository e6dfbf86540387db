//! The API server as the gateway calls it: a `kube` client from a kubeconfig (or the pod's
//! in-cluster configuration), and `create` of review objects (and `get` of the Node and CSR
//! objects the operator tools read) with the kubelet's retries (kubernetes/apiserver
//! pkg/util/webhook/webhook.go `DefaultShouldRetry`), an overall deadline, and a cap on calls
//! in flight, so a slow or failing API server can neither hang a request nor be flooded by the gateway.
//!
//! The client's identity lives in [`identity`] and is rebuilt when its files change;
//! [`kubeconfig`] reads and writes the files.

pub mod identity;
pub mod kubeconfig;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep, timeout_at};

/// A review answer larger than this is refused unread: no review is that big, and a broken or
/// hostile API server must not make the gateway buffer without bound.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("API client: {0}")]
    Client(String),
}

/// Why a call failed. Never cached, and never an allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no answer from the API server within {0:?}")]
    Deadline(Duration),
    #[error("API server answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("API server unreachable: {0}")]
    Transport(String),
    #[error("unreadable answer from the API server: {0}")]
    Decode(String),
    /// Nothing to authenticate with: a join not finished, or a certificate that expired.
    #[error("no client identity for the API server: {0}")]
    NoIdentity(String),
    /// Not sent: the caller's review budget was spent (`limits.tokenReviewsPerSecond*`).
    #[error("not sent: over the TokenReview budget ({})", .0.label())]
    OverBudget(crate::authn::review_budget::Bound),
}

/// Exponential backoff between attempts, as `wait.Backoff`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub jitter: f64,
    pub steps: u32,
}

impl Backoff {
    /// `DefaultAuthWebhookRetryBackoff`: 500ms ×1.5, jitter 0.2, 5 attempts.
    pub const KUBELET: Backoff = Backoff {
        initial: Duration::from_millis(500),
        factor: 1.5,
        jitter: 0.2,
        steps: 5,
    };

    /// The wait after attempt `n` (0-based): `initial × factor^n`, plus up to `jitter` of it.
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.powi(i32::try_from(n).unwrap_or(i32::MAX));
        let mut r = [0u8; 4];
        let random = match aws_lc_rs::rand::fill(&mut r) {
            Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        Duration::try_from_secs_f64(base * (1.0 + self.jitter * random)).unwrap_or(Duration::MAX)
    }
}

/// How calls to the API server are made.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    /// Overall deadline of one call, retries and waits for a slot included.
    pub deadline: Duration,
    pub max_in_flight: usize,
    pub backoff: Backoff,
}

pub struct ApiClient {
    identity: identity::Slot,
    slots: Semaphore,
    policy: CallPolicy,
    pub stats: ApiStats,
}

/// What the metrics endpoint and the readiness check read about calls to the API server.
#[derive(Debug)]
pub struct ApiStats {
    /// Seconds per call, retries included.
    pub latency: prometheus_client::metrics::histogram::Histogram,
    pub errors: std::sync::atomic::AtomicU64,
    /// When the API server last answered at all (any HTTP status).
    last_answer: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for ApiStats {
    fn default() -> Self {
        ApiStats {
            latency: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 12),
            ),
            errors: Default::default(),
            last_answer: Default::default(),
        }
    }
}

impl ApiStats {
    fn record<T>(&self, started: std::time::Instant, result: &Result<T, CallError>) {
        self.latency.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if matches!(result, Ok(_) | Err(CallError::Status { .. } | CallError::Decode(_))) {
            *self.last_answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        }
    }

    /// How long ago the API server last answered, if ever.
    pub fn since_last_answer(&self) -> Option<Duration> {
        self.last_answer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|at| at.elapsed())
    }
}

enum Attempt<T> {
    Done(T),
    Retry(CallError, Option<Duration>),
    Fail(CallError),
}

impl ApiClient {
    /// A client from `kubeconfig`, or the in-cluster configuration when there is none.
    pub async fn connect(kubeconfig: Option<&Path>, policy: CallPolicy) -> Result<ApiClient, ClientError> {
        let source = match kubeconfig {
            Some(path) => identity::IdentitySource::Kubeconfig(path.to_path_buf()),
            None => identity::IdentitySource::InCluster,
        };
        Ok(ApiClient::with(identity::Slot::ready(source)?, policy))
    }

    /// A client with no identity yet (a join in progress): every call fails with `why` until
    /// [`ApiClient::rebuild`] finds `kubeconfig` usable.
    pub fn without_identity(kubeconfig: &Path, policy: CallPolicy, why: String) -> ApiClient {
        let source = identity::IdentitySource::Kubeconfig(kubeconfig.to_path_buf());
        ApiClient::with(identity::Slot::pending(Some(source), why), policy)
    }

    fn with(identity: identity::Slot, policy: CallPolicy) -> ApiClient {
        ApiClient {
            identity,
            slots: Semaphore::new(policy.max_in_flight.max(1)),
            policy,
            stats: ApiStats::default(),
        }
    }

    /// Builds the client again from its kubeconfig (or service account) and puts it in use;
    /// calls in flight finish on the previous one. On error the previous one stays.
    pub fn rebuild(&self) -> Result<(), ClientError> {
        self.identity.rebuild()?;
        tracing::info!("API client identity rebuilt");
        Ok(())
    }

    /// Stops presenting the current identity: calls fail with `why` until the next rebuild.
    pub fn set_pending(&self, why: String) {
        self.identity.set_pending(why);
    }

    /// The kubeconfig and the files it names (or the service account's files).
    pub fn identity_files(&self) -> Vec<PathBuf> {
        self.identity.files()
    }

    /// The client in use now, for typed calls (the CSR flow).
    pub fn kube_client(&self) -> Result<kube::Client, CallError> {
        self.identity.client()
    }

    /// POSTs `object` to `path` and decodes the answer, retrying connection errors, 5xx and
    /// 429 (after `Retry-After` when given) with backoff, never past the deadline.
    pub async fn create<T: Serialize + DeserializeOwned>(&self, path: &str, object: &T) -> Result<T, CallError> {
        let body = Bytes::from(serde_json::to_vec(object).map_err(|e| CallError::Decode(e.to_string()))?);
        self.call(Method::POST, path, Some(body)).await
    }

    /// GETs `path` (an object or a list, for the operator tools) with the same retries,
    /// deadline and cap on calls in flight as `create`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        self.call(Method::GET, path, None).await
    }

    /// Asks the API server for `/version` within `wait`: any HTTP answer, even a refusal,
    /// shows that it is there. For the readiness check.
    pub async fn probe(&self, wait: Duration) -> Result<(), CallError> {
        match tokio::time::timeout(wait, self.get::<serde_json::Value>("/version")).await {
            Err(_) => Err(CallError::Deadline(wait)),
            Ok(Ok(_) | Err(CallError::Status { .. } | CallError::Decode(_))) => Ok(()),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<T, CallError> {
        let started = std::time::Instant::now();
        let result = self.call_with_retries(method, path, body).await;
        self.stats.record(started, &result);
        result
    }

    async fn call_with_retries<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, CallError> {
        let deadline = Instant::now() + self.policy.deadline;
        let timed_out = || CallError::Deadline(self.policy.deadline);
        let _slot = timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| timed_out())?;
        let mut attempt = 0;
        loop {
            let outcome = timeout_at(deadline, self.attempt(method.clone(), path, body.clone()))
                .await
                .map_err(|_| timed_out())?;
            let (error, retry_after) = match outcome {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, retry_after) => (e, retry_after),
            };
            attempt += 1;
            if attempt >= self.policy.backoff.steps {
                return Err(error);
            }
            let wait = retry_after.unwrap_or_else(|| self.policy.backoff.delay(attempt - 1));
            if Instant::now() + wait >= deadline {
                return Err(error);
            }
            tracing::debug!(path, attempt, %error, ?wait, "retrying API server call");
            sleep(wait).await;
        }
    }

    async fn attempt<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Bytes>) -> Attempt<T> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(kube::client::Body::from(body.map(|b| b.to_vec()).unwrap_or_default()));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Attempt::Fail(CallError::Transport(e.to_string())),
        };
        let client = match self.identity.client() {
            Ok(c) => c,
            Err(e) => return Attempt::Fail(e),
        };
        let response = match client.send(request).await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(CallError::Transport(e.to_string()), None),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if status.is_success() => return Attempt::Fail(CallError::Decode(e.to_string())),
            Err(e) => return Attempt::Retry(CallError::Transport(e.to_string()), None),
        };
        if status.is_success() {
            return match serde_json::from_slice(&bytes) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fail(CallError::Decode(e.to_string())),
            };
        }
        let error = CallError::Status {
            status: status.as_u16(),
            message: status_message(&bytes),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry(error, retry_after)
        } else {
            Attempt::Fail(error)
        }
    }
}

/// The `message` of a `metav1.Status` body, or a short excerpt of whatever came.
fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_backoff_grows_by_half_with_up_to_a_fifth_of_jitter() {
        let b = Backoff::KUBELET;
        for (n, base) in [(0u32, 500.0), (1, 750.0), (2, 1125.0), (3, 1687.5)] {
            let d = b.delay(n).as_secs_f64() * 1000.0;
            assert!(d >= base && d <= base * 1.2 + 0.001, "attempt {n}: {d}ms");
        }
    }

    #[test]
    fn status_messages() {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"boom","code":500}"#;
        assert_eq!(status_message(status), "boom");
        assert_eq!(status_message(b"<html>"), "<html>");
    }
}
