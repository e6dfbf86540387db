//! The request lifecycle, one phase after another: canonical path → mux → authenticate →
//! authorize → dispatch → handler. The phases compute one [`Outcome`]; the response is read
//! from it (or a handler gives it), and so is everything the observer records. Nothing a
//! client sends can skip a phase.
//!
//! [`route`] and [`review`] are the phases that need no network; `explain` and `policy-test`
//! run them too, so the tools and the gateway cannot decide differently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::forward::{ReadOnlyPort, RequestBody, upgrade_protocol};
use super::outcome::{Answer, Outcome, Rejected, Review, Route, Serve};
use super::path;
use super::quota::Quotas;
use super::respond::{self, Body, Holding};
use super::routes::{self, Dispatch, Handler, Mux, Root};
use super::secure::SecurePort;
use super::tunnel::{Streams, Tunnel};
use crate::authn::{Authentication, Authenticator, Connection, UserInfo};
use crate::authz::attributes::{request_verb, subresources};
use crate::authz::{AnyAuthorizer, Authorizer, Verdict};
use crate::logs::LogServer;
use crate::ops::observer::{Observer, Port};
use http_body_util::BodyExt as _;

/// What the decision depends on besides the identity and the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub node_name: String,
    /// Feature gate `KubeletFineGrainedAuthz`.
    pub fine_grained_authz: bool,
    /// exec, attach, portForward and run are reviewed as `create` whatever the method.
    pub exec_requires_create: bool,
    /// Which of the kubelet's ports the gateway forwards to: the read-only one for the
    /// read-only endpoints, the secure one for the rest (and for everything without the first).
    pub read_only_port: bool,
    pub secure_port: bool,
}

impl Policy {
    /// What answers a request the route table gave to `handler`, with these ports.
    pub fn serve(&self, handler: Handler, root: &'static str) -> Route {
        match handler {
            Handler::NodeLogs => Route::Serve(Serve::NodeLogs),
            Handler::ContainerLogs => Route::Serve(Serve::ContainerLogs),
            Handler::ReadOnly if self.read_only_port => Route::Serve(Serve::ReadOnly),
            Handler::ReadOnly => Route::Serve(Serve::Secure {
                endpoint: root.trim_matches('/'),
                streaming: false,
            }),
            Handler::Private(endpoint) if self.secure_port => Route::Serve(Serve::Secure {
                endpoint,
                streaming: STREAMING.contains(&endpoint),
            }),
            Handler::Private(endpoint) => Route::NeedsSecurePort(endpoint),
        }
    }
}

/// The endpoints whose upgrades (SPDY, WebSocket) are kept and spliced.
const STREAMING: [&str; 3] = ["exec", "attach", "portForward"];

/// Everything a request needs, built once at start and shared by every connection.
pub struct Pipeline {
    pub policy: Policy,
    pub authenticator: Authenticator,
    pub authorizer: AnyAuthorizer,
    /// `upstream.readOnly`, unless it is empty.
    pub read_only: Option<ReadOnlyPort>,
    /// `upstream.secure`, when configured (shared with the readiness check).
    pub secure: Option<Arc<SecurePort>>,
    /// The upgraded streams open now.
    pub streams: Arc<Streams>,
    /// `/logs/` and `/containerLogs/`, served from the node's own files.
    pub logs: LogServer,
    pub stats: Stats,
    /// Metrics and the audit log: the last phase.
    pub observer: Arc<Observer>,
    /// Long-lived streams per user and log streams per connection.
    pub quotas: Arc<Quotas>,
    /// A forwarded request's body, bytes (`limits.maxRequestBodyBytes`).
    pub body_limit: u64,
}

/// Counters of what the pipeline did; the tests read them.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests that reached authentication.
    pub authentications: AtomicU64,
    /// Authorizer calls, one per subresource reviewed.
    pub reviews: AtomicU64,
}

/// The phases before authentication: the canonical-path gate, then the mux. On success, the
/// origin-form target (exactly what is authorized and forwarded) and its mux root.
pub fn route(method: &Method, uri: &Uri, version: Version) -> Result<(PathAndQuery, Root), Rejected> {
    // A CONNECT's target is an authority, not a path: forwarded, it would ask the kubelet for a
    // tunnel to somewhere other than what was authorized. No kubelet endpoint takes one.
    if method == Method::CONNECT {
        return Err(Rejected::Path(path::Rejection::BadRequest("CONNECT is not served")));
    }
    path::check(uri, version).map_err(Rejected::Path)?;
    let target = uri
        .path_and_query()
        .cloned()
        .ok_or(Rejected::Path(path::Rejection::BadRequest("no path")))?;
    match routes::mux(target.path()) {
        Mux::NotFound => Err(Rejected::NotFound),
        Mux::Redirect(location) => Err(Rejected::Redirect {
            location,
            query: target.query().map(str::to_owned),
            with_body: method == Method::GET || method == Method::HEAD,
        }),
        Mux::Known(root) => Ok((target, root)),
    }
}

/// Authorization as the kubelet's filter loop runs it (fine-grained subresources first), then,
/// once allowed, the REST routes under the mux root.
pub async fn review<A: Authorizer>(
    authorizer: &A,
    policy: &Policy,
    user: Arc<UserInfo>,
    method: &Method,
    root: Root,
    target: PathAndQuery,
) -> Outcome {
    let path = target.path();
    let verb = request_verb(method, path, policy.exec_requires_create);
    let tried = subresources(path, policy.fine_grained_authz);
    let verdict = crate::authz::review(authorizer, &user, verb, tried, &policy.node_name).await;
    let route = matches!(verdict, Verdict::Allowed { .. }).then(|| match root.dispatch(method, path) {
        Dispatch::Handle(handler) => policy.serve(handler, root.prefix),
        Dispatch::NoRoute => Route::NoRoute,
        Dispatch::MethodNotAllowed(allow) => Route::MethodNotAllowed(allow),
    });
    Outcome::Reviewed(Review {
        target,
        user,
        verb,
        tried,
        verdict,
        route,
    })
}

impl Pipeline {
    pub async fn handle(&self, conn: &Arc<Connection>, request: Request<Incoming>) -> Response<Body> {
        let mut record = self.observer.begin(conn, request.method(), request.uri());
        let (mut parts, body) = request.into_parts();
        let outcome = match route(&parts.method, &parts.uri, parts.version) {
            Err(rejected) => Outcome::Rejected(rejected),
            Ok((target, root)) => {
                self.stats.authentications.fetch_add(1, Ordering::Relaxed);
                let Authentication { result, presented } = self
                    .authenticator
                    .authenticate(&mut parts.headers, &conn.identity, conn.peer.ip())
                    .await;
                record.authenticated(&result, presented);
                match result {
                    Err(failure) => Outcome::Unauthenticated(failure),
                    Ok(a) => review(&self.authorizer, &self.policy, a.user, &parts.method, root, target).await,
                }
            }
        };
        self.stats
            .reviews
            .fetch_add(outcome.reviews() as u64, Ordering::Relaxed);
        log(&outcome, conn, &parts.method, &parts.uri);
        record.decided(&outcome);
        let user = match &outcome {
            Outcome::Reviewed(r) => r.user.name.as_str(),
            _ => "",
        };
        let response = match outcome.answer() {
            Answer::Response(response) if parts.method == Method::HEAD => respond::without_body(response),
            Answer::Response(response) => response,
            Answer::Serve(serve @ (Serve::NodeLogs | Serve::ContainerLogs), target) => {
                match self.quotas.log_stream(user, conn) {
                    Err(_) => respond::too_many_requests(),
                    Ok(slot) => {
                        let response = match serve {
                            Serve::NodeLogs => self.logs.node_logs(target.path(), target.query(), &parts.headers).await,
                            _ => self.logs.container_logs(target.path(), target.query()).await,
                        };
                        // The slot is given back when the body ends or the client goes.
                        response.map(|body| Holding { body, held: slot }.boxed_unsync())
                    }
                }
            }
            Answer::Serve(Serve::ReadOnly, target) => match (&self.read_only, self.limit_body(&parts, body)) {
                (_, None) => respond::payload_too_large(),
                (Some(port), Some(body)) => {
                    record.forwarded(Port::ReadOnly);
                    port.forward(parts, body, target.clone(), conn.peer).await
                }
                // `Policy::serve` sends nothing here without the port.
                (None, Some(_)) => respond::bad_gateway(),
            },
            Answer::Serve(Serve::Secure { endpoint, streaming }, target) => {
                let slot = match streaming {
                    true => self.quotas.tunnel(user).map(Some),
                    false => Ok(None),
                };
                match (&self.secure, self.limit_body(&parts, body), slot) {
                    (_, _, Err(_)) => respond::too_many_requests(),
                    (_, None, _) => respond::payload_too_large(),
                    (Some(secure), Some(body), Ok(slot)) => {
                        record.forwarded(Port::Secure);
                        let target = target.clone();
                        match self.forward_secure(secure, parts, body, target, conn, streaming).await {
                            Secured::Response(response) => response,
                            Secured::Tunnel(response, tunnel) => {
                                let stream = self.observer.stream_started(record, &response, endpoint);
                                let streams = self.streams.clone();
                                tokio::spawn(async move {
                                    // The user's place is given back when the stream ends.
                                    let _slot = slot;
                                    stream.run(tunnel, streams).await;
                                });
                                return response;
                            }
                        }
                    }
                    (None, Some(_), _) => respond::bad_gateway(),
                }
            }
        };
        self.observer.finish(record, response)
    }

    /// The request's body, within `limits.maxRequestBodyBytes`; `None` for a declared length
    /// over it (answered 413 at once). A body that grows past it while streaming fails the
    /// forwarded request with 413.
    fn limit_body(&self, parts: &Parts, body: Incoming) -> Option<RequestBody> {
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(n) if n > self.body_limit => None,
            _ => Some(http_body_util::Limited::new(
                body,
                usize::try_from(self.body_limit).unwrap_or(usize::MAX),
            )),
        }
    }

    /// Forwards to the kubelet's port, keeping the upgrade of a streaming request over HTTP/1.1.
    /// An accepted upgrade comes back with the tunnel to splice once the `101` is sent.
    async fn forward_secure(
        &self,
        secure: &SecurePort,
        mut parts: Parts,
        body: RequestBody,
        target: PathAndQuery,
        conn: &Connection,
        streaming: bool,
    ) -> Secured {
        let protocol = streaming.then(|| upgrade_protocol(&parts)).flatten();
        // The client's side of the upgrade; without it (never on HTTP/1.1) nothing is upgraded.
        let client = protocol.as_ref().and_then(|_| parts.extensions.remove::<OnUpgrade>());
        let protocol = protocol.filter(|_| client.is_some());
        let forwarded = secure
            .port()
            .forward_upgradable(parts, body, target, conn.peer, protocol)
            .await;
        match (client, forwarded.upgraded) {
            (Some(client), Some(upstream)) => Secured::Tunnel(
                forwarded.response,
                Tunnel {
                    client,
                    upstream,
                    idle_timeout: secure.stream_idle_timeout,
                },
            ),
            _ => Secured::Response(forwarded.response),
        }
    }
}

/// The kubelet's port's answer: a response, or a `101` with the tunnel behind it.
enum Secured {
    Response(Response<Body>),
    Tunnel(Response<Body>, Tunnel),
}

/// Refusals before authorization come from anyone, as fast as they can send: their log lines
/// are throttled (the audit log keeps every one).
static REFUSED_LOG: crate::ops::throttle::Throttle = crate::ops::throttle::Throttle::new(10);

/// One log line per decision, at the level its kind deserves. Why goes here, never to the caller.
fn log(outcome: &Outcome, conn: &Connection, method: &Method, uri: &Uri) {
    let peer = conn.peer;
    let path = uri.path();
    match outcome {
        Outcome::Rejected(Rejected::Path(_)) => {
            let Some(suppressed) = REFUSED_LOG.admit() else { return };
            let why = outcome.reason().unwrap_or_default();
            let target = uri
                .path_and_query()
                .map_or_else(|| uri.to_string(), |p| p.as_str().to_owned());
            let target = crate::ops::redact::target(&target);
            tracing::info!(%peer, %method, %target, suppressed, "refused: {why}");
        }
        Outcome::Rejected(_) => {}
        Outcome::Unauthenticated(failure) => {
            let Some(suppressed) = REFUSED_LOG.admit() else { return };
            tracing::info!(%peer, %method, path, suppressed, "unauthenticated: {failure:?}");
        }
        Outcome::Reviewed(r) => match &r.verdict {
            Verdict::Allowed { subresource } => {
                tracing::debug!(user = %r.user.name, verb = r.verb, subresource, %method, path, "allowed");
            }
            Verdict::Forbidden => {
                tracing::info!(user = %r.user.name, verb = r.verb, subresources = ?r.tried, %method, path, "forbidden");
            }
            Verdict::Failed { subresource, error } => {
                tracing::warn!(user = %r.user.name, verb = r.verb, subresource, %method, path, %error, "authorization error");
            }
        },
    }
}
