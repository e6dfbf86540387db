//! The gateway's authorizer (built by the same start step, `app::authorization`) as the tools
//! use it, with a record of every review: the decision and why (the RBAC binding, role and rule
//! that granted it, or the API server's reason).

use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::authz::webhook::review_uncached;
use crate::authz::{AnyAuthorizer, Attributes, Authorizer, AuthzError, Decision};
use crate::config::Config;

/// One line for the reports: which authorizer answered.
pub fn describe(authorizer: &AnyAuthorizer, config: &Config) -> String {
    match authorizer {
        AnyAuthorizer::AlwaysAllow(_) => "AlwaysAllow".into(),
        AnyAuthorizer::Rbac(_) => {
            let files: Vec<String> = config
                .authorization
                .rbac_policy_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if files.is_empty() {
                "RBAC (the built-in roles only)".into()
            } else {
                format!("RBAC ({} and the built-in roles)", files.join(", "))
            }
        }
        AnyAuthorizer::Webhook(_) => match &config.kubeconfig {
            Some(k) => format!("Webhook (SubjectAccessReview through {})", k.display()),
            None => "Webhook (SubjectAccessReview through the in-cluster configuration)".into(),
        },
    }
}

/// One review as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    pub verb: String,
    pub resource: &'static str,
    pub subresource: String,
    pub name: String,
    pub allowed: bool,
    /// `allow`, `deny`, `noOpinion` or `error`.
    pub decision: &'static str,
    /// Why: the granting RBAC binding, or the API server's `reason` / `evaluationError`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Review {
    /// `get nodes/proxy`.
    pub fn request(&self) -> String {
        let verb = if self.verb.is_empty() { "\"\"" } else { &self.verb };
        format!("{verb} {}/{}", self.resource, self.subresource)
    }
}

/// The gateway's authorizer, recording each review it is asked for and why it decided so.
pub struct Recorder<'a> {
    authorizer: &'a AnyAuthorizer,
    reviews: Mutex<Vec<Review>>,
}

impl<'a> Recorder<'a> {
    pub fn new(authorizer: &'a AnyAuthorizer) -> Self {
        Recorder {
            authorizer,
            reviews: Mutex::new(Vec::new()),
        }
    }

    pub fn into_reviews(self) -> Vec<Review> {
        self.reviews.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, a: &Attributes<'_>, result: &Result<Decision, AuthzError>, reason: Option<String>) {
        let (decision, error) = match result {
            Ok(Decision::Allow) => ("allow", None),
            Ok(Decision::Deny) => ("deny", None),
            Ok(Decision::NoOpinion) => ("noOpinion", None),
            Err(e) => ("error", Some(e.0.clone())),
        };
        let review = Review {
            verb: a.verb.to_owned(),
            resource: Attributes::RESOURCE,
            subresource: a.subresource.to_owned(),
            name: a.node_name.to_owned(),
            allowed: decision == "allow",
            decision,
            reason,
            error,
        };
        self.reviews.lock().unwrap_or_else(PoisonError::into_inner).push(review);
    }
}

impl Authorizer for Recorder<'_> {
    async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, AuthzError> {
        let (result, reason) = match self.authorizer {
            AnyAuthorizer::AlwaysAllow(z) => (
                z.authorize(a).await,
                Some("authorization.mode is AlwaysAllow".to_owned()),
            ),
            AnyAuthorizer::Rbac(z) => {
                let reason = z.grant(a).map(|g| {
                    format!(
                        "RBAC: {} grants it through {}, rule {}",
                        g.binding, g.role, g.rule_index
                    )
                });
                (z.authorize(a).await, reason)
            }
            // The same review body and reading of the answer, without the cache: a one-shot
            // tool has nothing to cache, and wants the API server's reason.
            AnyAuthorizer::Webhook(sar) => match review_uncached(sar.api(), a).await {
                Ok((decision, status)) => {
                    let reason = match (status.reason, status.evaluation_error) {
                        (Some(r), Some(e)) if !r.is_empty() && !e.is_empty() => {
                            Some(format!("{r} (evaluation error: {e})"))
                        }
                        (_, Some(e)) if !e.is_empty() => Some(format!("evaluation error: {e}")),
                        (Some(r), _) if !r.is_empty() => Some(r),
                        _ => None,
                    };
                    (Ok(decision), reason)
                }
                Err(e) => (Err(AuthzError(e.to_string())), None),
            },
        };
        self.record(a, &result, reason);
        result
    }
}
