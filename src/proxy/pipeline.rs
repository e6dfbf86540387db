//! The request lifecycle, one phase after another: canonical path → mux → authenticate →
//! authorize → dispatch → handler. Each phase either hands a typed value to the next or
//! answers; nothing a client sends can skip one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::forward::Upstream;
use super::path::{self, Rejection};
use super::respond::{self, Body};
use super::routes::{self, Dispatch, Handler, Mux};
use crate::authn::{Authenticator, AuthnFailure, PeerIdentity};
use crate::authz::attributes::{request_verb, subresources};
use crate::authz::{AnyAuthorizer, Verdict, review};
use crate::logs::LogServer;
use crate::ops::observer::{Observer, Record};

/// What the gateway knows about the TLS connection a request arrived on.
pub struct Connection {
    pub peer: SocketAddr,
    pub identity: PeerIdentity,
}

/// Everything a request needs, built once at start and shared by every connection.
pub struct Gateway {
    pub node_name: String,
    pub authenticator: Authenticator,
    pub authorizer: AnyAuthorizer,
    pub upstream: Upstream,
    /// `/logs/` and `/containerLogs/`, served from the node's own files.
    pub logs: LogServer,
    pub fine_grained_authz: bool,
    pub exec_requires_create: bool,
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

impl Gateway {
    pub async fn handle(&self, conn: &Connection, request: Request<Incoming>) -> Response<Body> {
        let mut record = self
            .observer
            .begin(conn, request.method(), request.uri(), request.headers());
        let response = self.phases(conn, request, &mut record).await;
        self.observer.finish(record, response)
    }

    async fn phases(&self, conn: &Connection, request: Request<Incoming>, record: &mut Record) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let method = parts.method.clone();

        match path::check(&parts.uri, parts.version) {
            Ok(()) => {}
            Err(Rejection::TooLong) => {
                tracing::info!(peer = %conn.peer, %method, "refused: request target too long");
                return respond::uri_too_long();
            }
            Err(Rejection::BadRequest(why)) => {
                tracing::info!(peer = %conn.peer, %method, target = ?parts.uri, "refused: {why}");
                return respond::bad_request();
            }
        }
        let Some(target) = parts.uri.path_and_query().cloned() else {
            return respond::bad_request();
        };
        let path = target.path();

        let root = match routes::mux(path) {
            Mux::NotFound => return respond::mux_not_found(),
            Mux::Redirect(to) => {
                let with_body = method == Method::GET || method == Method::HEAD;
                return respond::mux_redirect(to, target.query(), with_body);
            }
            Mux::Known(root) => root,
        };

        self.stats.authentications.fetch_add(1, Ordering::Relaxed);
        let authenticated = match self
            .authenticator
            .authenticate(&mut parts.headers, &conn.identity)
            .await
        {
            Ok(a) => a,
            Err(failure) => {
                record.authenticated(Err(&failure));
                tracing::info!(peer = %conn.peer, %method, path, "unauthenticated: {failure:?}");
                return match failure {
                    AuthnFailure::Unauthorized(_) => respond::unauthorized(),
                    AuthnFailure::Ambiguous(_) => respond::bad_request(),
                    AuthnFailure::TooLarge => respond::header_too_large(),
                };
            }
        };
        record.authenticated(Ok(&authenticated));
        let user = &authenticated.user;

        let verb = request_verb(&method, path, self.exec_requires_create);
        let tried = subresources(path, self.fine_grained_authz);
        let verdict = review(
            &self.authorizer,
            user,
            verb,
            tried,
            &self.node_name,
            &self.stats.reviews,
        )
        .await;
        record.reviewed(verb, tried, &verdict);
        match verdict {
            Verdict::Allowed { subresource } => {
                tracing::debug!(user = %user.name, verb, subresource, %method, path, "allowed");
            }
            Verdict::Forbidden => {
                tracing::info!(user = %user.name, verb, subresources = ?tried, %method, path, "forbidden");
                return respond::forbidden(&user.name, verb, tried);
            }
            Verdict::Failed { subresource, error } => {
                tracing::warn!(user = %user.name, verb, subresource, %method, path, %error, "authorization error");
                return respond::authorization_error(&user.name, verb, subresource);
            }
        }

        match root.dispatch(&method, path) {
            Dispatch::NoRoute => respond::route_not_found(),
            Dispatch::MethodNotAllowed(allow) => respond::method_not_allowed(allow),
            Dispatch::Handle(Handler::Private(endpoint)) => respond::needs_private_api(endpoint),
            Dispatch::Handle(Handler::NodeLogs) => self.logs.node_logs(path, target.query(), &parts.headers).await,
            Dispatch::Handle(Handler::ContainerLogs) => self.logs.container_logs(path, target.query()).await,
            Dispatch::Handle(Handler::ReadOnly) => {
                parts.method = method;
                record.forwarded();
                self.upstream.forward(parts, body, target, conn.peer).await
            }
        }
    }
}
