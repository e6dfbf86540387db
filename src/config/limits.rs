//! `limits:` every bound on what a client may hold on the 10250 listener: how long each
//! connection state may last, how many connections and streams may be open, how large a
//! request may be. Each is a setting with the default documented here and in the README;
//! the defaults follow the kubelet's server where it has one (pkg/kubelet/server/server.go:
//! `IdleTimeout: 90 * time.Second`) and threats.md's floors where it has none.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Validator;
use super::{ConfigError, format_go_duration};

/// The effective limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// TCP accepted to TLS handshake done.
    pub handshake_timeout: Duration,
    /// TLS done to the first request's headers (HTTP/1) or HEADERS frame (HTTP/2), the
    /// protocol sniff and the HTTP/2 preface included.
    pub first_request_timeout: Duration,
    /// An HTTP/1 request's headers, from their first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request open for this long is closed (HTTP/1 keep-alive and
    /// HTTP/2 alike; the HTTP/2 one with GOAWAY).
    pub idle_timeout: Duration,
    /// HTTP/2 liveness: a PING after this long without a frame from the client (zero: none)...
    pub http2_keep_alive_interval: Duration,
    /// ...and the connection is closed when its ACK has not come within this.
    pub http2_keep_alive_timeout: Duration,
    /// Connections open on the listener at once. At the cap, the oldest connection that has
    /// not yet sent a request is closed to admit the new one; with none, the new one is.
    pub max_connections: usize,
    /// Connections open at once from one source address.
    pub max_connections_per_peer: usize,
    /// A request's header block (HTTP/1 head, HTTP/2 header list), bytes: larger is 431.
    pub max_header_bytes: usize,
    /// Header fields in one request: more is 431.
    pub max_headers: usize,
    /// HTTP/2 streams open at once on one connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 flow control: what one stream's client may send before the gateway reads it...
    pub http2_stream_window_bytes: u32,
    /// ...and all the streams of one connection together.
    pub http2_connection_window_bytes: u32,
    /// HTTP/2: response bytes queued per stream beyond what the client's window lets out.
    pub http2_max_send_buffer_bytes: usize,
    /// A forwarded request's body (`/run`, `/checkpoint`, ...), bytes: larger is 413.
    pub max_request_body_bytes: u64,
    /// Long-lived streams (upgraded exec/attach/port-forward, followed logs) one user may
    /// have open at once: more is 429.
    pub max_streams_per_user: usize,
    /// Log streams (`/logs/`, `/containerLogs/`) open at once on one connection: more is 429.
    pub max_log_streams_per_connection: usize,
    /// TokenReviews sent per second for tokens not cached, in all (0: no bound)...
    pub token_reviews_per_second: u32,
    /// ...and per source address (0: no bound); over either, the request is 429.
    pub token_reviews_per_second_per_peer: u32,
    /// After SIGTERM: how long requests and streams in flight may still run.
    pub shutdown_grace_period: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            first_request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_peer: 256,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            http2_max_concurrent_streams: 250,
            // Go's http2.Server: 1 MiB per stream and per connection (MaxUploadBufferPer*).
            http2_stream_window_bytes: 1 << 20,
            http2_connection_window_bytes: 1 << 20,
            http2_max_send_buffer_bytes: 64 * 1024,
            max_request_body_bytes: 1 << 20,
            max_streams_per_user: 32,
            max_log_streams_per_connection: 16,
            // threats.md DS-08: 20 per source, 100 in all.
            token_reviews_per_second: 100,
            token_reviews_per_second_per_peer: 20,
            shutdown_grace_period: Duration::from_secs(10),
        }
    }
}

/// The `limits:` block as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLimits {
    pub handshake_timeout: Option<String>,
    pub first_request_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    #[serde(rename = "http2KeepAliveInterval")]
    pub http2_keep_alive_interval: Option<String>,
    #[serde(rename = "http2KeepAliveTimeout")]
    pub http2_keep_alive_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub max_connections_per_peer: Option<i64>,
    pub max_header_bytes: Option<i64>,
    pub max_headers: Option<i64>,
    #[serde(rename = "http2MaxConcurrentStreams")]
    pub http2_max_concurrent_streams: Option<i64>,
    #[serde(rename = "http2StreamWindowBytes")]
    pub http2_stream_window_bytes: Option<i64>,
    #[serde(rename = "http2ConnectionWindowBytes")]
    pub http2_connection_window_bytes: Option<i64>,
    #[serde(rename = "http2MaxSendBufferBytes")]
    pub http2_max_send_buffer_bytes: Option<i64>,
    pub max_request_body_bytes: Option<i64>,
    pub max_streams_per_user: Option<i64>,
    pub max_log_streams_per_connection: Option<i64>,
    pub token_reviews_per_second: Option<i64>,
    pub token_reviews_per_second_per_peer: Option<i64>,
    pub shutdown_grace_period: Option<String>,
}

impl Validator<'_> {
    pub(super) fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let positive = |field: &str, value: Option<String>, default: Duration| {
            let value = self.duration(field, value, default)?;
            match value.is_zero() {
                true => Err(self.error(field, "must be greater than 0s")),
                false => Ok(value),
            }
        };
        let count = |field: &str, value: Option<i64>, default: usize, min: usize| {
            let Some(value) = value else { return Ok(default) };
            usize::try_from(value)
                .ok()
                .filter(|&n| n >= min)
                .ok_or_else(|| self.error(field, format!("{value} must be at least {min}")))
        };
        let max_header_bytes = count("limits.maxHeaderBytes", raw.max_header_bytes, d.max_header_bytes, 8192)?;
        let streams = count(
            "limits.http2MaxConcurrentStreams",
            raw.http2_max_concurrent_streams,
            d.http2_max_concurrent_streams as usize,
            1,
        )?;
        let http2_max_concurrent_streams = u32::try_from(streams)
            .map_err(|_| self.error("limits.http2MaxConcurrentStreams", format!("{streams} is too large")))?;
        let rate = |field: &str, value: Option<i64>, default: u32| {
            let Some(value) = value else { return Ok(default) };
            u32::try_from(value)
                .map_err(|_| self.error(field, format!("{value} must be from 0 (no bound) to 4294967295")))
        };
        // RFC 9113 section 6.9.1: a window is at least the initial 65535 and at most 2^31-1.
        let window = |field: &str, value: Option<i64>, default: u32| {
            let Some(value) = value else { return Ok(default) };
            u32::try_from(value)
                .ok()
                .filter(|n| (65_535..=0x7fff_ffff).contains(n))
                .ok_or_else(|| self.error(field, format!("{value} must be from 65535 to 2147483647")))
        };
        let limits = Limits {
            handshake_timeout: positive("limits.handshakeTimeout", raw.handshake_timeout, d.handshake_timeout)?,
            first_request_timeout: positive(
                "limits.firstRequestTimeout",
                raw.first_request_timeout,
                d.first_request_timeout,
            )?,
            header_read_timeout: positive(
                "limits.headerReadTimeout",
                raw.header_read_timeout,
                d.header_read_timeout,
            )?,
            idle_timeout: positive("limits.idleTimeout", raw.idle_timeout, d.idle_timeout)?,
            http2_keep_alive_interval: self.duration(
                "limits.http2KeepAliveInterval",
                raw.http2_keep_alive_interval,
                d.http2_keep_alive_interval,
            )?,
            http2_keep_alive_timeout: positive(
                "limits.http2KeepAliveTimeout",
                raw.http2_keep_alive_timeout,
                d.http2_keep_alive_timeout,
            )?,
            max_connections: count("limits.maxConnections", raw.max_connections, d.max_connections, 1)?,
            max_connections_per_peer: count(
                "limits.maxConnectionsPerPeer",
                raw.max_connections_per_peer,
                d.max_connections_per_peer,
                1,
            )?,
            max_header_bytes,
            max_headers: count("limits.maxHeaders", raw.max_headers, d.max_headers, 1)?,
            http2_max_concurrent_streams,
            http2_stream_window_bytes: window(
                "limits.http2StreamWindowBytes",
                raw.http2_stream_window_bytes,
                d.http2_stream_window_bytes,
            )?,
            http2_connection_window_bytes: window(
                "limits.http2ConnectionWindowBytes",
                raw.http2_connection_window_bytes,
                d.http2_connection_window_bytes,
            )?,
            http2_max_send_buffer_bytes: count(
                "limits.http2MaxSendBufferBytes",
                raw.http2_max_send_buffer_bytes,
                d.http2_max_send_buffer_bytes,
                16_384,
            )?,
            max_request_body_bytes: count(
                "limits.maxRequestBodyBytes",
                raw.max_request_body_bytes,
                d.max_request_body_bytes as usize,
                0,
            )? as u64,
            max_streams_per_user: count(
                "limits.maxStreamsPerUser",
                raw.max_streams_per_user,
                d.max_streams_per_user,
                1,
            )?,
            max_log_streams_per_connection: count(
                "limits.maxLogStreamsPerConnection",
                raw.max_log_streams_per_connection,
                d.max_log_streams_per_connection,
                1,
            )?,
            token_reviews_per_second: rate(
                "limits.tokenReviewsPerSecond",
                raw.token_reviews_per_second,
                d.token_reviews_per_second,
            )?,
            token_reviews_per_second_per_peer: rate(
                "limits.tokenReviewsPerSecondPerPeer",
                raw.token_reviews_per_second_per_peer,
                d.token_reviews_per_second_per_peer,
            )?,
            shutdown_grace_period: self.duration(
                "limits.shutdownGracePeriod",
                raw.shutdown_grace_period,
                d.shutdown_grace_period,
            )?,
        };
        if limits.max_connections_per_peer > limits.max_connections {
            return Err(self.error(
                "limits.maxConnectionsPerPeer",
                format!(
                    "{} is more than limits.maxConnections ({})",
                    limits.max_connections_per_peer, limits.max_connections
                ),
            ));
        }
        Ok(limits)
    }
}

impl Limits {
    /// The block as `check-config` prints it: every field with its effective value.
    pub(super) fn to_raw(&self) -> RawLimits {
        let dur = |d: Duration| Some(format_go_duration(d));
        let int = |n: usize| Some(i64::try_from(n).unwrap_or(i64::MAX));
        RawLimits {
            handshake_timeout: dur(self.handshake_timeout),
            first_request_timeout: dur(self.first_request_timeout),
            header_read_timeout: dur(self.header_read_timeout),
            idle_timeout: dur(self.idle_timeout),
            http2_keep_alive_interval: dur(self.http2_keep_alive_interval),
            http2_keep_alive_timeout: dur(self.http2_keep_alive_timeout),
            max_connections: int(self.max_connections),
            max_connections_per_peer: int(self.max_connections_per_peer),
            max_header_bytes: int(self.max_header_bytes),
            max_headers: int(self.max_headers),
            http2_max_concurrent_streams: Some(i64::from(self.http2_max_concurrent_streams)),
            http2_stream_window_bytes: Some(i64::from(self.http2_stream_window_bytes)),
            http2_connection_window_bytes: Some(i64::from(self.http2_connection_window_bytes)),
            http2_max_send_buffer_bytes: int(self.http2_max_send_buffer_bytes),
            max_request_body_bytes: Some(i64::try_from(self.max_request_body_bytes).unwrap_or(i64::MAX)),
            max_streams_per_user: int(self.max_streams_per_user),
            max_log_streams_per_connection: int(self.max_log_streams_per_connection),
            token_reviews_per_second: Some(i64::from(self.token_reviews_per_second)),
            token_reviews_per_second_per_peer: Some(i64::from(self.token_reviews_per_second_per_peer)),
            shutdown_grace_period: dur(self.shutdown_grace_period),
        }
    }
}
