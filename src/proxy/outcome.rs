//! What the gateway decided about one request, as one value: where it stopped (the path gate,
//! the mux, authentication, authorization) or which handler serves it. The response the
//! kubelet would send, the decision word of the metrics and the audit record, `explain` and
//! `policy-test` are all read from this value, so they cannot drift apart; a new kind of
//! refusal is a new variant here and nowhere else.

use std::sync::Arc;

use http::Response;
use http::uri::PathAndQuery;
use serde::Serialize;

use super::path::Rejection;
use super::respond::{self, Body};
use crate::authn::{AuthnFailure, UserInfo};
use crate::authz::Verdict;

/// The outcome of the decision phases.
#[derive(Debug)]
pub enum Outcome {
    /// Refused before authentication, by the path gate or the mux.
    Rejected(Rejected),
    /// No acceptable credential (401), or an ambiguous (400) or oversized (431) one.
    Unauthenticated(AuthnFailure),
    /// Reviewed: the attributes, the verdict and, once allowed, what the routes chose.
    Reviewed(Review),
}

/// The answers given before authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The canonical-path gate refused the target (400, or 414 when too long).
    Path(Rejection),
    /// No mux pattern matches the path: the mux's 404.
    NotFound,
    /// A subtree root requested without its slash: the mux's redirect.
    Redirect {
        location: &'static str,
        /// The query, carried over into `Location`.
        query: Option<String>,
        /// GET and HEAD get Go's little HTML body.
        with_body: bool,
    },
}

/// What answers a request.
pub enum Answer<'a> {
    Response(Response<Body>),
    /// An allowed request that a handler serves, with the target it serves.
    Serve(Serve, &'a PathAndQuery),
}

/// The handlers that answer an allowed request themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Forwarded to the read-only port.
    ReadOnly,
    /// Forwarded to the kubelet's own port (`upstream.secure`).
    Secure {
        /// The endpoint, for the metrics (`exec`, `configz`, or the mux root of a read-only one).
        endpoint: &'static str,
        /// exec, attach and portForward: an upgrade to SPDY or WebSocket is kept and spliced.
        streaming: bool,
    },
    /// `/logs/`, from the node log directory.
    NodeLogs,
    /// `/containerLogs/`, from the pod log directory.
    ContainerLogs,
}

/// The authorization phase's result.
#[derive(Debug)]
pub struct Review {
    /// The origin-form target: exactly what is authorized, and what a handler serves.
    pub target: PathAndQuery,
    pub user: Arc<UserInfo>,
    pub verb: &'static str,
    /// The subresources in the order they are tried.
    pub tried: &'static [&'static str],
    pub verdict: Verdict,
    /// What answers an allowed request; `None` otherwise.
    pub route: Option<Route>,
}

/// What the route table and the configured ports make of an allowed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Serve(Serve),
    /// go-restful's `404: Page Not Found`: no route under the mux root.
    NoRoute,
    /// go-restful's `405: Method Not Allowed`, with the `Allow` header value.
    MethodNotAllowed(&'static str),
    /// An endpoint of the kubelet's private API, and no `upstream.secure` to reach it: 405
    /// saying what to configure.
    NeedsSecurePort(&'static str),
}

/// The decision in one word, as the metrics, the audit record and the tools print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Refused before authentication: a non-canonical target, an unknown path, a redirect.
    Rejected,
    /// No acceptable credential.
    Unauthenticated,
    /// Authorization allowed it; a handler (or the route table) answers.
    Allow,
    /// No subresource was allowed.
    Deny,
    /// The authorizer failed.
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Rejected => "rejected",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

/// The phase that decided, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Path,
    Route,
    Authentication,
    Authorization,
    Handler,
}

impl Outcome {
    pub fn decision(&self) -> Decision {
        match self {
            Outcome::Rejected(_) => Decision::Rejected,
            Outcome::Unauthenticated(_) => Decision::Unauthenticated,
            Outcome::Reviewed(r) => match r.verdict {
                Verdict::Allowed { .. } => Decision::Allow,
                Verdict::Forbidden => Decision::Deny,
                Verdict::Failed { .. } => Decision::Error,
            },
        }
    }

    pub fn stage(&self) -> Stage {
        match self {
            Outcome::Rejected(Rejected::Path(_)) => Stage::Path,
            Outcome::Rejected(Rejected::NotFound | Rejected::Redirect { .. }) => Stage::Route,
            Outcome::Unauthenticated(_) => Stage::Authentication,
            Outcome::Reviewed(r) if r.route.is_some() => Stage::Handler,
            Outcome::Reviewed(_) => Stage::Authorization,
        }
    }

    /// The handler that serves an allowed request itself (forwarding, native logs), with the
    /// target it serves; `None` when the answer is [`Outcome::response`]'s.
    pub fn handler(&self) -> Option<(Serve, &PathAndQuery)> {
        match self {
            Outcome::Reviewed(Review {
                route: Some(Route::Serve(serve)),
                target,
                ..
            }) => Some((*serve, target)),
            _ => None,
        }
    }

    /// How many reviews the authorizer was asked for: the loop stops at the first allow or
    /// error.
    pub fn reviews(&self) -> usize {
        match self {
            Outcome::Reviewed(r) => match &r.verdict {
                Verdict::Allowed { subresource } | Verdict::Failed { subresource, .. } => r
                    .tried
                    .iter()
                    .position(|s| s == subresource)
                    .map_or(r.tried.len(), |i| i + 1),
                Verdict::Forbidden => r.tried.len(),
            },
            _ => 0,
        }
    }

    /// Why, in one line, for the log and the audit record (never for the caller).
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Rejected(Rejected::Path(Rejection::BadRequest(why))) => Some((*why).to_owned()),
            Outcome::Rejected(Rejected::Path(Rejection::TooLong)) => Some("request target too long".to_owned()),
            Outcome::Rejected(Rejected::NotFound) => Some("no endpoint has this path".to_owned()),
            Outcome::Rejected(Rejected::Redirect { location, .. }) => Some(format!("redirected to {location}")),
            Outcome::Unauthenticated(failure) => Some(match failure {
                AuthnFailure::Unauthorized(why) => why.clone(),
                AuthnFailure::Ambiguous(why) => (*why).to_owned(),
                AuthnFailure::TooLarge => "token too large".to_owned(),
                AuthnFailure::OverBudget(bound) => {
                    format!("token not reviewed: over the TokenReview budget ({})", bound.label())
                }
            }),
            Outcome::Reviewed(r) => match &r.verdict {
                Verdict::Allowed { .. } => None,
                Verdict::Forbidden => Some(format!("no {} on nodes/{} allowed", r.verb, r.tried.join(", nodes/"))),
                Verdict::Failed { subresource, error } => Some(format!("{subresource}: {error}")),
            },
        }
    }

    /// What answers the request: the kubelet's response for this outcome, or a handler.
    pub fn answer(&self) -> Answer<'_> {
        match (self.response(), self.handler()) {
            (_, Some((serve, target))) => Answer::Serve(serve, target),
            (Some(response), None) => Answer::Response(response),
            // `response` is `None` exactly when `handler` is `Some`.
            (None, None) => Answer::Response(respond::bad_request()),
        }
    }

    /// The kubelet's answer for this outcome, or `None` when a handler answers
    /// ([`Outcome::handler`]).
    pub fn response(&self) -> Option<Response<Body>> {
        Some(match self {
            Outcome::Rejected(Rejected::Path(Rejection::TooLong)) => respond::uri_too_long(),
            Outcome::Rejected(Rejected::Path(Rejection::BadRequest(_))) => respond::bad_request(),
            Outcome::Rejected(Rejected::NotFound) => respond::mux_not_found(),
            Outcome::Rejected(Rejected::Redirect {
                location,
                query,
                with_body,
            }) => respond::mux_redirect(location, query.as_deref(), *with_body),
            Outcome::Unauthenticated(AuthnFailure::Unauthorized(_)) => respond::unauthorized(),
            Outcome::Unauthenticated(AuthnFailure::Ambiguous(_)) => respond::bad_request(),
            Outcome::Unauthenticated(AuthnFailure::TooLarge) => respond::header_too_large(),
            Outcome::Unauthenticated(AuthnFailure::OverBudget(_)) => respond::too_many_requests(),
            Outcome::Reviewed(r) => match (&r.verdict, r.route) {
                (Verdict::Forbidden, _) => respond::forbidden(&r.user.name, r.verb, r.tried),
                (Verdict::Failed { subresource, .. }, _) => {
                    respond::authorization_error(&r.user.name, r.verb, subresource)
                }
                (Verdict::Allowed { .. }, Some(Route::NoRoute)) => respond::route_not_found(),
                (Verdict::Allowed { .. }, Some(Route::MethodNotAllowed(allow))) => respond::method_not_allowed(allow),
                (Verdict::Allowed { .. }, Some(Route::NeedsSecurePort(endpoint))) => {
                    respond::needs_private_api(endpoint)
                }
                (Verdict::Allowed { .. }, Some(Route::Serve(_)) | None) => return None,
            },
        })
    }
}
