//! The configured authorizer as the tools use it, with a record of every review: the decision
//! and why (the RBAC binding, role and rule that granted it, or the API server's reason). The
//! decisions themselves come from the gateway's own code: `RbacAuthorizer`, `AlwaysAllow`, and
//! for the webhook the same SubjectAccessReview body and the same reading of the answer, only
//! without the cache (a one-shot tool has nothing to cache).

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::app::StartError;
use crate::authz::rbac::RbacPolicy;
use crate::authz::webhook::review_uncached;
use crate::authz::{AlwaysAllow, Attributes, Authorizer, AuthzError, Decision, RbacAuthorizer};
use crate::config::{AuthorizationMode, Config};
use crate::k8s::{ApiServer, Backoff, CallPolicy};

/// The authorizer the configuration names.
pub enum Backend {
    AlwaysAllow,
    Rbac(RbacAuthorizer),
    /// SubjectAccessReviews through the API server of the configured kubeconfig.
    Webhook(Arc<ApiServer>),
}

impl Backend {
    /// Builds the authorizer as `app::build` does, without touching certificates or ports.
    /// Returns it with the warnings the gateway would log at start.
    pub async fn from_config(config: &Config) -> Result<(Backend, Vec<String>), StartError> {
        let mut warnings = Vec::new();
        let backend = match config.authorization.mode {
            AuthorizationMode::AlwaysAllow => {
                warnings.push("authorization.mode is AlwaysAllow: every authenticated request is allowed".into());
                Backend::AlwaysAllow
            }
            AuthorizationMode::Rbac => {
                let policy = RbacPolicy::load(&config.authorization.rbac_policy_files)?;
                warnings.extend(policy.warnings().iter().cloned());
                Backend::Rbac(RbacAuthorizer { policy })
            }
            AuthorizationMode::Webhook => {
                crate::tls::install_default_provider();
                let policy = CallPolicy {
                    deadline: config.api_server.request_timeout,
                    max_in_flight: config.api_server.max_in_flight,
                    backoff: Backoff::KUBELET,
                };
                Backend::Webhook(Arc::new(
                    ApiServer::connect(config.kubeconfig.as_deref(), policy).await?,
                ))
            }
        };
        Ok((backend, warnings))
    }

    /// One line for the reports: which authorizer answered.
    pub fn describe(&self, config: &Config) -> String {
        match self {
            Backend::AlwaysAllow => "AlwaysAllow".into(),
            Backend::Rbac(_) => {
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
            Backend::Webhook(_) => match &config.kubeconfig {
                Some(k) => format!("Webhook (SubjectAccessReview through {})", k.display()),
                None => "Webhook (SubjectAccessReview through the in-cluster configuration)".into(),
            },
        }
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

/// The backend, recording each review it is asked for.
pub struct Recorder<'a> {
    backend: &'a Backend,
    reviews: Mutex<Vec<Review>>,
}

impl<'a> Recorder<'a> {
    pub fn new(backend: &'a Backend) -> Self {
        Recorder {
            backend,
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
        let (result, reason) = match self.backend {
            Backend::AlwaysAllow => (
                AlwaysAllow.authorize(a).await,
                Some("authorization.mode is AlwaysAllow".to_owned()),
            ),
            Backend::Rbac(z) => {
                let reason = z.grant(a).map(|g| {
                    format!(
                        "RBAC: {} grants it through {}, rule {}",
                        g.binding, g.role, g.rule_index
                    )
                });
                (z.authorize(a).await, reason)
            }
            Backend::Webhook(api) => match review_uncached(api, a).await {
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
