//! The request lifecycle, one phase after another: canonical path → mux → authenticate →
//! authorize → dispatch → handler. The phases compute one [`Outcome`]; the response is read
//! from it (or a handler gives it), and so is everything the observer records. Nothing a
//! client sends can skip a phase.
//!
//! [`route`] and [`review`] are the phases that need no network; `explain` and `policy-test`
//! run them too, so the tools and the gateway cannot decide differently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::forward::ReadOnlyPort;
use super::outcome::{Answer, Outcome, Rejected, Review, Serve};
use super::path;
use super::respond::{self, Body};
use super::routes::{self, Mux, Root};
use crate::authn::{Authentication, Authenticator, Connection, UserInfo};
use crate::authz::attributes::{request_verb, subresources};
use crate::authz::{AnyAuthorizer, Authorizer, Verdict};
use crate::logs::LogServer;
use crate::ops::observer::Observer;

/// What the decision depends on besides the identity and the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub node_name: String,
    /// Feature gate `KubeletFineGrainedAuthz`.
    pub fine_grained_authz: bool,
    /// exec, attach, portForward and run are reviewed as `create` whatever the method.
    pub exec_requires_create: bool,
}

/// Everything a request needs, built once at start and shared by every connection.
pub struct Pipeline {
    pub policy: Policy,
    pub authenticator: Authenticator,
    pub authorizer: AnyAuthorizer,
    pub read_only: ReadOnlyPort,
    /// `/logs/` and `/containerLogs/`, served from the node's own files.
    pub logs: LogServer,
    pub stats: Stats,
    /// Metrics and the audit log: the last phase.
    pub observer: Arc<Observer>,
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
    let dispatch = matches!(verdict, Verdict::Allowed { .. }).then(|| root.dispatch(method, path));
    Outcome::Reviewed(Review {
        target,
        user,
        verb,
        tried,
        verdict,
        dispatch,
    })
}

impl Pipeline {
    pub async fn handle(&self, conn: &Connection, request: Request<Incoming>) -> Response<Body> {
        let mut record = self.observer.begin(conn, request.method(), request.uri());
        let (mut parts, body) = request.into_parts();
        let outcome = match route(&parts.method, &parts.uri, parts.version) {
            Err(rejected) => Outcome::Rejected(rejected),
            Ok((target, root)) => {
                self.stats.authentications.fetch_add(1, Ordering::Relaxed);
                let Authentication { result, presented } = self
                    .authenticator
                    .authenticate(&mut parts.headers, &conn.identity)
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
        let response = match outcome.answer() {
            Answer::Response(response) if parts.method == Method::HEAD => respond::without_body(response),
            Answer::Response(response) => response,
            Answer::Serve(Serve::NodeLogs, target) => {
                self.logs.node_logs(target.path(), target.query(), &parts.headers).await
            }
            Answer::Serve(Serve::ContainerLogs, target) => {
                self.logs.container_logs(target.path(), target.query()).await
            }
            Answer::Serve(Serve::ReadOnly, target) => {
                record.forwarded();
                let target = target.clone();
                self.read_only.forward(parts, body, target, conn.peer).await
            }
        };
        self.observer.finish(record, response)
    }
}

/// One log line per decision, at the level its kind deserves. Why goes here, never to the caller.
fn log(outcome: &Outcome, conn: &Connection, method: &Method, uri: &Uri) {
    let peer = conn.peer;
    let path = uri.path();
    match outcome {
        Outcome::Rejected(Rejected::Path(_)) => {
            let why = outcome.reason().unwrap_or_default();
            tracing::info!(%peer, %method, target = ?uri, "refused: {why}");
        }
        Outcome::Rejected(_) => {}
        Outcome::Unauthenticated(failure) => {
            tracing::info!(%peer, %method, path, "unauthenticated: {failure:?}");
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
