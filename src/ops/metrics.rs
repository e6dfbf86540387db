//! The gateway's own metrics, `kubelet_gate_*`: counters the request path updates as it goes,
//! and values read at scrape time from the counters other modules already keep (caches,
//! reloads, the API server client, the serving certificate).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::k8s::ApiClient;
use crate::proxy::quota::QuotaStats;
use crate::proxy::tunnel::Streams;
use crate::reload::ReloadStats;
use crate::review_cache::CacheStats;
use crate::tls::ServingCert;

type Labels = Vec<(&'static str, String)>;

/// What the request path counts. Clones share the counters.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    /// By status code, the subresource that allowed the request (or none) and the SAR verb.
    pub requests: Family<Labels, Counter>,
    /// By credential kind and result.
    pub authentications: Family<Labels, Counter>,
    /// allow, deny or error.
    pub decisions: Family<Labels, Counter>,
    /// Time to the upstream's response headers.
    pub upstream_latency: Histogram,
    pub upstream_errors: Counter,
    /// Requests forwarded to the kubelet's own port that it did not answer.
    pub secure_upstream_errors: Counter,
    /// Spliced streams started, by endpoint.
    pub streams: Family<Labels, Counter>,
    pub in_flight: Gauge,
    /// Audit records lost: the queue was full, or the writer could not open or write the file.
    pub audit_dropped: Counter,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            requests: Family::default(),
            authentications: Family::default(),
            decisions: Family::default(),
            upstream_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            upstream_errors: Counter::default(),
            secure_upstream_errors: Counter::default(),
            streams: Family::default(),
            in_flight: Gauge::default(),
            audit_dropped: Counter::default(),
        }
    }
}

impl RequestMetrics {
    pub fn request(&self, status: u16, subresource: &str, verb: &str) {
        self.requests
            .get_or_create(&vec![
                ("code", status.to_string()),
                ("subresource", subresource.to_owned()),
                ("verb", verb.to_owned()),
            ])
            .inc();
    }

    pub fn authentication(&self, method: &str, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.authentications
            .get_or_create(&vec![("method", method.to_owned()), ("result", result.to_owned())])
            .inc();
    }

    pub fn stream(&self, endpoint: &str) {
        self.streams
            .get_or_create(&vec![("endpoint", endpoint.to_owned())])
            .inc();
    }

    pub fn decision(&self, decision: &str) {
        self.decisions
            .get_or_create(&vec![("decision", decision.to_owned())])
            .inc();
    }
}

/// The 10250 listener's connections: held now, refused at a cap, and closed at a deadline.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    pub refused_limit: AtomicU64,
    pub refused_peer: AtomicU64,
    /// Closed to make room, before they had sent a request.
    pub evicted: AtomicU64,
    /// Closed at a deadline, by [`ConnectionStats::REASONS`].
    closed: [AtomicU64; 4],
}

impl ConnectionStats {
    pub const HANDSHAKE_TIMEOUT: usize = 0;
    pub const FIRST_REQUEST_TIMEOUT: usize = 1;
    pub const HEADER_TIMEOUT: usize = 2;
    pub const IDLE: usize = 3;
    const REASONS: [&'static str; 4] = ["handshake_timeout", "first_request_timeout", "header_timeout", "idle"];

    /// A connection closed at the deadline `reason` (one of the constants).
    pub fn closed(&self, reason: usize) {
        if let Some(c) = self.closed.get(reason) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What `/metrics` reads at scrape time.
pub struct Sources {
    /// What the request path counts (the observer's).
    pub requests: RequestMetrics,
    /// The TokenReview and SubjectAccessReview caches, when the webhooks are on.
    pub token_cache: Option<Arc<CacheStats>>,
    /// The TokenReview budget, with the webhook.
    pub review_budget: Option<Arc<crate::authn::review_budget::ReviewBudget>>,
    pub sar_cache: Option<Arc<CacheStats>>,
    pub serving: Arc<ServingCert>,
    pub reload: Arc<ReloadStats>,
    /// The token file's and the RBAC policy files' reloads.
    pub policy_reload: Arc<ReloadStats>,
    pub api: Option<Arc<ApiClient>>,
    pub streams: Arc<Streams>,
    pub connections: Arc<ConnectionStats>,
    pub quotas: Arc<QuotaStats>,
}

/// The registry behind `/metrics`.
pub fn registry(sources: Sources) -> Registry {
    let mut r = Registry::with_prefix("kubelet_gate");
    let m = sources.requests.clone();
    r.register(
        "requests",
        "Requests answered, by HTTP status, the subresource that allowed them and the verb",
        m.requests,
    );
    r.register(
        "authentications",
        "Authentication results by credential kind",
        m.authentications,
    );
    r.register(
        "authorization_decisions",
        "Authorization outcomes per request",
        m.decisions,
    );
    r.register(
        "upstream_request_duration_seconds",
        "Time to the read-only port's response headers",
        m.upstream_latency,
    );
    r.register(
        "upstream_errors",
        "Forwarded requests the read-only port did not answer",
        m.upstream_errors,
    );
    r.register(
        "secure_upstream_errors",
        "Forwarded requests the kubelet's own port did not answer",
        m.secure_upstream_errors,
    );
    r.register(
        "streams",
        "Upgraded streams (exec, attach, port-forward) spliced, by endpoint",
        m.streams,
    );
    r.register("requests_in_flight", "Requests being served", m.in_flight);
    r.register(
        "audit_records_dropped",
        "Audit records lost: the queue was full, or the audit file could not be opened or written",
        m.audit_dropped,
    );
    if let Some(api) = &sources.api {
        r.register(
            "apiserver_request_duration_seconds",
            "API server calls (TokenReview, SubjectAccessReview, CSR), retries included",
            api.stats.latency.clone(),
        );
    }
    r.register_collector(Box::new(Derived(sources)));
    r
}

/// Values other modules count, read on each scrape.
struct Derived(Sources);

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived")
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
    for (labels, v) in values {
        ConstCounter::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Collector for Derived {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let cache = |name: &str| vec![("cache", name.to_owned())];
        let mut hits = Vec::new();
        let mut misses = Vec::new();
        let mut evictions = Vec::new();
        let mut stale = Vec::new();
        for (name, stats) in [("tokenreview", &s.token_cache), ("subjectaccessreview", &s.sar_cache)] {
            if let Some(stats) = stats {
                hits.push((cache(name), load(&stats.hits)));
                misses.push((cache(name), load(&stats.misses)));
                evictions.push((cache(name), load(&stats.evictions)));
                stale.push((cache(name), load(&stats.stale_uses)));
            }
        }
        counter(&mut e, "cache_hits", "Webhook cache hits", &hits)?;
        counter(&mut e, "cache_misses", "Webhook cache misses", &misses)?;
        counter(
            &mut e,
            "cache_evictions",
            "Webhook cache entries evicted for room or age",
            &evictions,
        )?;
        counter(
            &mut e,
            "cache_stale_uses",
            "Expired answers used because the API server could not answer (apiServer.staleIfError)",
            &stale,
        )?;
        if let Some(api) = &s.api {
            counter(
                &mut e,
                "apiserver_request_errors",
                "API server calls that failed",
                &[(Vec::new(), load(&api.stats.errors))],
            )?;
        }
        if let Some(b) = &s.review_budget {
            counter(
                &mut e,
                "tokenreviews_refused",
                "Uncached tokens answered 429 without a TokenReview: over limits.tokenReviewsPerSecondPerPeer (per_peer) or limits.tokenReviewsPerSecond (global)",
                &[
                    (vec![("limit", "per_peer".to_owned())], load(&b.refused[0])),
                    (vec![("limit", "global".to_owned())], load(&b.refused[1])),
                ],
            )?;
        }
        let q = &s.quotas;
        gauge(
            &mut e,
            "log_streams_open",
            "Log responses (/logs/, /containerLogs/) being streamed now",
            load(&q.log_streams_open) as f64,
        )?;
        let limit = |l: &str| vec![("limit", l.to_owned())];
        counter(
            &mut e,
            "streams_refused",
            "Streams answered 429: over limits.maxStreamsPerUser (per_user) or limits.maxLogStreamsPerConnection (per_connection)",
            &[
                (limit("per_user"), load(&q.refused_per_user)),
                (limit("per_connection"), load(&q.refused_per_connection)),
            ],
        )?;
        let c = &s.connections;
        gauge(
            &mut e,
            "connections_open",
            "Connections the 10250 listener holds now",
            load(&c.open) as f64,
        )?;
        let reason = |r: &str| vec![("reason", r.to_owned())];
        counter(
            &mut e,
            "connections_refused",
            "Connections refused at limits.maxConnections (limit) or limits.maxConnectionsPerPeer (peer_limit)",
            &[
                (reason("limit"), load(&c.refused_limit)),
                (reason("peer_limit"), load(&c.refused_peer)),
            ],
        )?;
        let mut closed: Vec<(Labels, u64)> = ConnectionStats::REASONS
            .iter()
            .zip(&c.closed)
            .map(|(r, n)| (reason(r), load(n)))
            .collect();
        closed.push((reason("evicted"), load(&c.evicted)));
        counter(
            &mut e,
            "connections_closed",
            "Connections the gateway closed at a deadline, or to make room at the connection limit (evicted)",
            &closed,
        )?;
        gauge(
            &mut e,
            "streams_open",
            "Upgraded streams open now",
            s.streams.open() as f64,
        )?;
        counter(
            &mut e,
            "stream_bytes",
            "Bytes spliced through upgraded streams, by direction",
            &[
                (
                    vec![("direction", "client_to_upstream".to_owned())],
                    load(&s.streams.client_to_upstream),
                ),
                (
                    vec![("direction", "upstream_to_client".to_owned())],
                    load(&s.streams.upstream_to_client),
                ),
            ],
        )?;
        counter(
            &mut e,
            "certificate_reloads",
            "Certificate and client CA reloads by result",
            &[
                (vec![("result", "success".to_owned())], load(&s.reload.successes)),
                (vec![("result", "failure".to_owned())], load(&s.reload.failures)),
            ],
        )?;
        counter(
            &mut e,
            "policy_reloads",
            "Token file and RBAC policy file reloads by result",
            &[
                (vec![("result", "success".to_owned())], load(&s.policy_reload.successes)),
                (vec![("result", "failure".to_owned())], load(&s.policy_reload.failures)),
            ],
        )?;
        let expiry = s.serving.current().and_then(|k| k.cert.first().and_then(not_after));
        gauge(
            &mut e,
            "serving_certificate_loaded",
            "1 when a serving certificate is loaded",
            if expiry.is_some() { 1.0 } else { 0.0 },
        )?;
        if let Some(at) = expiry {
            gauge(
                &mut e,
                "serving_certificate_expiry_timestamp_seconds",
                "The serving certificate's notAfter, in seconds since the epoch",
                at as f64,
            )?;
        }
        Ok(())
    }
}

/// A certificate's notAfter in seconds since the epoch.
pub fn not_after(der: &rustls_pki_types::CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}
