//! `explain`: what the gateway would do with one request from a given identity, phase by phase.
//!
//! The phases are the gateway's own: [`route`] (the path gate and the mux), then [`review`] (the
//! attributes, the review loop with a recording authorizer, and the route table), and the answer
//! is read from the same [`Outcome`] the gateway answers from. Authentication is given (user and
//! groups), not performed; only a request without credentials is judged, as the gateway judges it
//! (401 unless anonymous access is enabled).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use http::{Method, Uri, Version};
use http_body_util::BodyExt;
use serde::Serialize;

use super::authorizer::{Recorder, Review};
use crate::app::StartError;
use crate::authn::user::{self, ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP};
use crate::authn::{AuthnFailure, UserInfo};
use crate::authz::{AnyAuthorizer, Attributes, Verdict};
use crate::config::Config;
use crate::proxy::outcome::{Answer, Outcome, Rejected, Route, Serve};
pub use crate::proxy::outcome::{Decision, Stage};
use crate::proxy::path::{self, Rejection};
use crate::proxy::pipeline::{Policy, review, route};

/// Who makes the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A request without credentials.
    Anonymous,
    /// An authenticated user, with the groups its credential carries.
    User { name: String, groups: Vec<String> },
}

impl Identity {
    /// `system:anonymous` stands for a request without credentials: the gateway gives that
    /// identity to nothing else, and its group is always `system:unauthenticated` alone.
    pub fn new(user: Option<&str>, groups: &[String], anonymous: bool) -> Result<Identity, String> {
        let anonymous = anonymous || user == Some(ANONYMOUS_USER);
        if anonymous {
            if user.is_some_and(|u| u != ANONYMOUS_USER) {
                return Err(format!(
                    "an anonymous request has no user name (got {:?})",
                    user.unwrap_or("")
                ));
            }
            if groups.iter().any(|g| g != UNAUTHENTICATED_GROUP) {
                return Err(format!(
                    "an anonymous request carries exactly the group {UNAUTHENTICATED_GROUP}, not {groups:?}"
                ));
            }
            return Ok(Identity::Anonymous);
        }
        match user {
            Some(name) if !name.is_empty() => Ok(Identity::User {
                name: name.to_owned(),
                groups: groups.to_vec(),
            }),
            _ => Err("a user name is needed (or anonymous for a request without credentials)".into()),
        }
    }
}

/// One request to explain.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// An origin-form target (`/pods?x=y`) or a full URL (`https://10.0.0.5:10250/pods`).
    pub target: String,
    pub identity: Identity,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    pub groups: Vec<String>,
    pub anonymous: bool,
    /// `system:authenticated` was added, as the API server adds it to every authenticated user.
    #[serde(rename = "authenticatedGroupAdded")]
    pub authenticated_group_added: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttributesView {
    pub verb: String,
    pub resource: &'static str,
    pub name: String,
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// Tried in this order; the first allowed wins.
    pub subresources: Vec<String>,
    #[serde(rename = "execRequiresCreate")]
    pub exec_requires_create: bool,
    #[serde(rename = "fineGrained")]
    pub fine_grained: bool,
}

/// Everything `explain` found, in pipeline order. A phase that was never reached is `None`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub method: String,
    /// The target as given.
    pub target: String,
    /// The origin-form target the gateway would receive.
    #[serde(rename = "requestTarget")]
    pub request_target: Option<String>,
    /// Why the canonical-path gate refused the target, if it did.
    #[serde(rename = "pathRejected")]
    pub path_rejected: Option<String>,
    /// The mux pattern the path matched.
    pub route: Option<String>,
    pub user: Option<UserView>,
    pub attributes: Option<AttributesView>,
    pub reviews: Vec<Review>,
    /// The handler the REST routes chose after authorization.
    pub handler: Option<String>,
    pub stage: Stage,
    /// The same word the gateway's metrics and audit record use.
    pub decision: Decision,
    /// The status the gateway sends itself; `None` when the request is forwarded (the
    /// upstream's status is the answer).
    pub status: Option<u16>,
    pub body: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// The upstream a forwarded request goes to.
    #[serde(rename = "forwardedTo")]
    pub forwarded_to: Option<String>,
    /// One line on why the phase that answered did so.
    pub why: String,
}

impl Explanation {
    pub fn forwarded(&self) -> bool {
        self.forwarded_to.is_some()
    }
}

/// The parts of the configuration a decision depends on, and the gateway's authorizer.
pub struct Explainer {
    policy: Policy,
    anonymous_enabled: bool,
    /// The ports requests are forwarded to (`upstream.readOnly`, `upstream.secure.url`).
    read_only: Option<String>,
    secure: Option<String>,
    authorizer: AnyAuthorizer,
    /// What the authorizer is, for the reports.
    pub description: String,
    /// What the gateway would warn about at start (policy files, AlwaysAllow).
    pub warnings: Vec<String>,
}

impl Explainer {
    pub async fn load(config: &Config) -> Result<Explainer, StartError> {
        let (authorizer, warnings) = crate::app::authorization_alone(config).await?;
        Ok(Explainer {
            policy: Policy {
                node_name: config.node_name.clone(),
                fine_grained_authz: config.fine_grained_authz,
                exec_requires_create: config.authorization.exec_requires_create,
                read_only_port: config.upstream.read_only.is_some(),
                secure_port: config.upstream.secure.is_some(),
            },
            anonymous_enabled: config.authentication.anonymous,
            read_only: config.upstream.read_only.as_ref().map(ToString::to_string),
            secure: config.upstream.secure.as_ref().map(|s| s.url.to_string()),
            description: super::authorizer::describe(&authorizer, config),
            authorizer,
            warnings,
        })
    }

    /// Runs the request through the gateway's phases ([`route`], then [`review`] with a
    /// recording authorizer) and reads the answer from the same [`Outcome`] the gateway does.
    pub async fn explain(&self, request: &Request) -> Explanation {
        let mut x = Explanation {
            method: request.method.to_string(),
            target: request.target.clone(),
            request_target: None,
            path_rejected: None,
            route: None,
            user: None,
            attributes: None,
            reviews: Vec::new(),
            handler: None,
            stage: Stage::Path,
            decision: Decision::Rejected,
            status: None,
            body: None,
            headers: BTreeMap::new(),
            forwarded_to: None,
            why: String::new(),
        };
        let method = &request.method;

        let uri = match origin_form(&request.target) {
            Ok(uri) => uri,
            Err(why) => {
                // hyper itself refuses such a target with 400 before the gateway sees it.
                x.path_rejected = Some(why);
                let outcome = Outcome::Rejected(Rejected::Path(Rejection::BadRequest("not a valid request target")));
                return self.finish(x, outcome).await;
            }
        };
        x.request_target = uri.path_and_query().map(|t| t.to_string());
        let (target, root) = match route(method, &uri, Version::HTTP_11) {
            Ok(routed) => routed,
            Err(rejected) => return self.finish(x, Outcome::Rejected(rejected)).await,
        };
        x.route = Some(root.prefix.to_owned());

        // Authentication is given, not performed; only the absence of a credential is judged.
        let user = match &request.identity {
            Identity::Anonymous if !self.anonymous_enabled => {
                x.user = Some(UserView {
                    name: ANONYMOUS_USER.into(),
                    groups: vec![UNAUTHENTICATED_GROUP.into()],
                    anonymous: true,
                    authenticated_group_added: false,
                });
                let why = "no credential presented and anonymous access is disabled".to_owned();
                return self
                    .finish(x, Outcome::Unauthenticated(AuthnFailure::Unauthorized(why)))
                    .await;
            }
            Identity::Anonymous => user::anonymous(),
            Identity::User { name, groups } => Arc::new(
                UserInfo {
                    name: name.clone(),
                    groups: groups.clone(),
                    ..UserInfo::default()
                }
                .with_authenticated_group(),
            ),
        };
        let added = match &request.identity {
            Identity::User { groups, .. } => user.groups.len() > groups.len(),
            Identity::Anonymous => false,
        };
        x.user = Some(UserView {
            name: user.name.clone(),
            groups: user.groups.clone(),
            anonymous: request.identity == Identity::Anonymous,
            authenticated_group_added: added,
        });

        let recorder = Recorder::new(&self.authorizer);
        let outcome = review(&recorder, &self.policy, user, method, root, target).await;
        x.reviews = recorder.into_reviews();
        self.finish(x, outcome).await
    }

    /// Fills in what the outcome says: the stage, the decision, the answer, and why.
    async fn finish(&self, mut x: Explanation, outcome: Outcome) -> Explanation {
        x.stage = outcome.stage();
        x.decision = outcome.decision();
        match &outcome {
            Outcome::Rejected(Rejected::Path(Rejection::BadRequest(why))) => {
                x.path_rejected.get_or_insert_with(|| (*why).to_owned());
            }
            Outcome::Rejected(Rejected::Path(Rejection::TooLong)) => {
                x.path_rejected = Some(format!("request target longer than {} bytes", path::MAX_TARGET_BYTES));
            }
            Outcome::Rejected(Rejected::Redirect { location, .. }) => x.route = Some((*location).to_owned()),
            Outcome::Reviewed(r) => {
                x.attributes = Some(AttributesView {
                    verb: r.verb.to_owned(),
                    resource: Attributes::RESOURCE,
                    name: self.policy.node_name.clone(),
                    api_version: Attributes::API_VERSION,
                    subresources: r.tried.iter().map(|s| (*s).to_owned()).collect(),
                    exec_requires_create: self.policy.exec_requires_create,
                    fine_grained: self.policy.fine_grained_authz,
                });
                x.handler = r.route.map(|route| self.handler(route));
            }
            Outcome::Rejected(Rejected::NotFound) | Outcome::Unauthenticated(_) => {}
        }
        x.why = self.why(&outcome, x.path_rejected.as_deref());
        match outcome.answer() {
            Answer::Response(response) => {
                let (parts, body) = response.into_parts();
                x.status = Some(parts.status.as_u16());
                for (name, value) in &parts.headers {
                    x.headers.insert(
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    );
                }
                let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                x.body = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            Answer::Serve(Serve::ReadOnly, _) => x.forwarded_to = self.read_only.clone(),
            Answer::Serve(Serve::Secure { .. }, _) => x.forwarded_to = self.secure.clone(),
            Answer::Serve(Serve::NodeLogs | Serve::ContainerLogs, _) => {}
        }
        x
    }

    fn handler(&self, route: Route) -> String {
        match route {
            Route::NoRoute => "none: no route under this mux pattern".into(),
            Route::MethodNotAllowed(allow) => format!("none: the route takes {allow}"),
            Route::NeedsSecurePort(endpoint) => format!("{endpoint}: needs the kubelet's own port (upstream.secure)"),
            Route::Serve(Serve::NodeLogs) => "served by the gateway from logs.nodeLogDir".into(),
            Route::Serve(Serve::ContainerLogs) => "served by the gateway from logs.podLogDir".into(),
            Route::Serve(Serve::ReadOnly) => "read-only endpoint: forwarded to upstream.readOnly".into(),
            Route::Serve(Serve::Secure { endpoint, streaming }) => format!(
                "{endpoint}: forwarded to the kubelet's own port (upstream.secure){}",
                if streaming {
                    ", an upgrade spliced once the kubelet answers 101"
                } else {
                    ""
                }
            ),
        }
    }

    /// One line for people on why the deciding phase decided so.
    fn why(&self, outcome: &Outcome, path_rejected: Option<&str>) -> String {
        match outcome {
            Outcome::Rejected(Rejected::Path(Rejection::TooLong)) => path_rejected.unwrap_or_default().to_owned(),
            Outcome::Rejected(Rejected::Path(Rejection::BadRequest(why))) => match path_rejected {
                Some(parse) if parse != *why => parse.to_owned(),
                _ => format!("not a canonical path: {why} (refused before authentication)"),
            },
            Outcome::Rejected(Rejected::NotFound) => {
                "no endpoint of the kubelet has this path (answered before authentication)".into()
            }
            Outcome::Rejected(Rejected::Redirect { location, .. }) => {
                format!("{location} is registered with its trailing slash: redirected before authentication")
            }
            Outcome::Unauthenticated(_) => "no credential, and authentication.anonymous.enabled is false".into(),
            Outcome::Reviewed(r) => match (&r.verdict, r.route) {
                (Verdict::Forbidden, _) => "no subresource was allowed".into(),
                (Verdict::Failed { subresource, error }, _) => {
                    format!("the authorizer failed on nodes/{subresource}: {error}")
                }
                (Verdict::Allowed { .. }, Some(Route::NoRoute)) => "authorized, but no route matches the path".into(),
                (Verdict::Allowed { .. }, Some(Route::MethodNotAllowed(allow))) => {
                    format!("authorized, but the route takes only {allow}")
                }
                (Verdict::Allowed { .. }, Some(Route::NeedsSecurePort(endpoint))) => {
                    format!("authorized, but {endpoint} needs the kubelet's own port, and upstream.secure is not set")
                }
                (Verdict::Allowed { .. }, Some(Route::Serve(serve @ (Serve::ReadOnly | Serve::Secure { .. })))) => {
                    let port = match serve {
                        Serve::ReadOnly => self.read_only.as_deref(),
                        _ => self.secure.as_deref(),
                    };
                    format!(
                        "authorized and forwarded to {}: the status and body are the kubelet's",
                        port.unwrap_or("?")
                    )
                }
                (Verdict::Allowed { .. }, Some(Route::Serve(serve))) => {
                    let dir = if serve == Serve::NodeLogs {
                        "logs.nodeLogDir"
                    } else {
                        "logs.podLogDir"
                    };
                    format!("authorized and served from {dir}: the status and body depend on the files there")
                }
                (Verdict::Allowed { .. }, None) => "authorized".into(),
            },
        }
    }
}

/// The origin-form target of a full URL, or the target itself; parsed as hyper would.
fn origin_form(target: &str) -> Result<Uri, String> {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let is_url = lower.starts_with("https://") || lower.starts_with("http://");
    let uri: Uri = target
        .parse()
        .map_err(|e| format!("not a valid request target ({e}): the HTTP parser refuses it"))?;
    if !is_url {
        return Ok(uri);
    }
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    pq.parse().map_err(|e| format!("not a valid request target: {e}"))
}

/// The report for people.
pub fn render(x: &Explanation, authorizer: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", x.method, x.target);
    if !matches!(
        x.method.as_str(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
    ) {
        let _ = writeln!(
            out,
            "  (method names are case-sensitive: only GET, POST, PUT, PATCH and DELETE have a verb)"
        );
    }
    let _ = writeln!(out, "  authorizer: {authorizer}");
    let row = |out: &mut String, label: &str, text: &str| {
        let _ = writeln!(out, "  {label:<15} {text}");
    };
    match (&x.path_rejected, &x.request_target) {
        (Some(why), _) => row(&mut out, "path", &format!("refused: {why}")),
        (None, Some(t)) if t != &x.target => row(&mut out, "path", &format!("canonical (sent as {t})")),
        (None, _) => row(&mut out, "path", "canonical"),
    }
    if x.path_rejected.is_none() {
        match &x.route {
            Some(r) if x.stage == Stage::Route => row(&mut out, "route", &format!("redirect to {r}")),
            Some(r) => row(&mut out, "route", &format!("mux pattern {r}")),
            None => row(&mut out, "route", "no mux pattern matches"),
        }
    }
    if let Some(u) = &x.user {
        let mut text = format!("{} [{}]", u.name, u.groups.join(" "));
        if u.anonymous {
            text.push_str(" (a request without credentials)");
        }
        if u.authenticated_group_added {
            let _ = write!(
                text,
                " ({AUTHENTICATED_GROUP} added: every authenticated user carries it)"
            );
        }
        row(&mut out, "identity", &text);
    }
    if let Some(a) = &x.attributes {
        let mut verb = if a.verb.is_empty() {
            format!("verb=\"\" (no verb for {})", x.method)
        } else {
            format!("verb={}", a.verb)
        };
        if a.exec_requires_create && a.verb == "create" && x.method != "POST" {
            verb.push_str(" (execRequiresCreate: exec, attach, portForward and run are always create)");
        } else if !a.verb.is_empty() {
            let _ = write!(verb, " (from {})", x.method);
        }
        row(
            &mut out,
            "attributes",
            &format!(
                "{verb} resource={} name={} subresources=[{}]{}",
                a.resource,
                a.name,
                a.subresources.join(" "),
                if a.subresources.len() > 1 {
                    " (fine-grained: the first allowed wins)"
                } else {
                    ""
                }
            ),
        );
    }
    for (i, r) in x.reviews.iter().enumerate() {
        let mut text = format!("{:<24} {}", r.request(), r.decision);
        if let Some(reason) = &r.reason {
            let _ = write!(text, ": {reason}");
        }
        if let Some(e) = &r.error {
            let _ = write!(text, ": {e}");
        }
        row(&mut out, &format!("review {}", i + 1), &text);
    }
    if let Some(h) = &x.handler {
        row(&mut out, "handler", h);
    }
    match (x.status, &x.forwarded_to) {
        (_, Some(_)) => {
            let _ = writeln!(out, "result: allowed: {}", x.why);
        }
        (Some(status), None) => {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let _ = writeln!(out, "result: {status} {reason}: {}", x.why);
            for (name, value) in &x.headers {
                if matches!(name.as_str(), "allow" | "location") {
                    let _ = writeln!(out, "  {name}: {value}");
                }
            }
            if let Some(body) = &x.body
                && !body.is_empty()
            {
                let _ = writeln!(out, "  body: {:?}", body);
            }
        }
        (None, None) => {}
    }
    out
}

#[cfg(test)]
mod tests;
