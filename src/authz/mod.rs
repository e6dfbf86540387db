//! Authorization: may this identity make this request? Every request is reviewed as the
//! kubelet reviews it (a resource request on `nodes/<subresource>` named after the node), by
//! one of several authorizers behind one trait.

pub mod attributes;
pub mod rbac;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::authn::UserInfo;

/// The resource attributes of one review. Namespace and API group are always empty, the
/// version `v1` and the resource `nodes`, as in the kubelet's attribute getter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: &'static str,
    pub subresource: &'static str,
    pub node_name: &'a str,
}

impl Attributes<'_> {
    pub const RESOURCE: &'static str = "nodes";
    pub const API_VERSION: &'static str = "v1";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// An authorizer failed to decide (for example, the API server did not answer).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthzError(pub String);

pub trait Authorizer: Send + Sync {
    fn authorize(&self, attrs: &Attributes<'_>) -> impl Future<Output = Result<Decision, AuthzError>> + Send;
}

/// Allows everything. For development only; the gateway says so loudly at start.
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    async fn authorize(&self, _: &Attributes<'_>) -> Result<Decision, AuthzError> {
        Ok(Decision::Allow)
    }
}

/// Kubernetes RBAC evaluated locally from policy files.
pub struct RbacAuthorizer {
    /// Replaced whole when the policy files are reloaded; each request reads one version.
    policy: Arc<ArcSwap<rbac::RbacPolicy>>,
}

impl RbacAuthorizer {
    pub fn new(policy: rbac::RbacPolicy) -> RbacAuthorizer {
        RbacAuthorizer {
            policy: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// The policy in force, to replace on reload.
    pub fn current(&self) -> &Arc<ArcSwap<rbac::RbacPolicy>> {
        &self.policy
    }

    fn request<'a>(a: &'a Attributes<'_>) -> rbac::Request<'a> {
        rbac::Request {
            user: &a.user.name,
            groups: &a.user.groups,
            verb: a.verb,
            api_group: "",
            resource: Attributes::RESOURCE,
            subresource: a.subresource,
            name: a.node_name,
        }
    }

    /// The binding, role and rule that grant these attributes, if any.
    pub fn grant(&self, a: &Attributes<'_>) -> Option<rbac::Grant> {
        self.policy
            .load()
            .authorize(&Self::request(a))
            .map(rbac::GrantRef::to_grant)
    }

    fn allows(&self, a: &Attributes<'_>) -> bool {
        self.policy.load().authorize(&Self::request(a)).is_some()
    }
}

impl Authorizer for RbacAuthorizer {
    async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, AuthzError> {
        // RBAC never denies; like the API server's, it has no opinion when nothing grants.
        Ok(if self.allows(a) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        })
    }
}

/// The configured authorizer. An enum rather than a trait object: the set is closed and the
/// hot path stays free of boxed futures.
pub enum AnyAuthorizer {
    AlwaysAllow(AlwaysAllow),
    Rbac(RbacAuthorizer),
    Webhook(webhook::SarAuthorizer),
}

impl Authorizer for AnyAuthorizer {
    async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, AuthzError> {
        match self {
            AnyAuthorizer::AlwaysAllow(z) => z.authorize(a).await,
            AnyAuthorizer::Rbac(z) => z.authorize(a).await,
            AnyAuthorizer::Webhook(z) => z.authorize(a).await,
        }
    }
}

/// The result of the kubelet's filter loop over the subresources of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed through this subresource.
    Allowed { subresource: &'static str },
    /// No subresource allowed the request.
    Forbidden,
    /// The authorizer failed on this subresource; the loop stops there (no fallback).
    Failed { subresource: &'static str, error: String },
}

/// The ≥1.32 filter loop: try each subresource in order; an error stops at once, an allow
/// wins, deny and no-opinion move on to the next.
pub async fn review<A: Authorizer>(
    authorizer: &A,
    user: &UserInfo,
    verb: &'static str,
    subresources: &'static [&'static str],
    node_name: &str,
) -> Verdict {
    for &subresource in subresources {
        let attrs = Attributes {
            user,
            verb,
            subresource,
            node_name,
        };
        match authorizer.authorize(&attrs).await {
            Err(e) => {
                return Verdict::Failed {
                    subresource,
                    error: e.0,
                };
            }
            Ok(Decision::Allow) => return Verdict::Allowed { subresource },
            Ok(Decision::Deny | Decision::NoOpinion) => {}
        }
    }
    Verdict::Forbidden
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Scripted decisions per subresource, recording what it was asked.
    struct Scripted {
        answers: Vec<(&'static str, Result<Decision, &'static str>)>,
        asked: Mutex<Vec<&'static str>>,
    }

    impl Authorizer for Scripted {
        async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, AuthzError> {
            self.asked.lock().expect("lock").push(a.subresource);
            let (_, answer) = self
                .answers
                .iter()
                .find(|(s, _)| *s == a.subresource)
                .expect("scripted");
            answer.map_err(|e| AuthzError(e.into()))
        }
    }

    fn scripted(answers: Vec<(&'static str, Result<Decision, &'static str>)>) -> Scripted {
        Scripted {
            answers,
            asked: Mutex::new(Vec::new()),
        }
    }

    fn run(z: &Scripted) -> Verdict {
        let user = UserInfo {
            name: "u".into(),
            ..UserInfo::default()
        };
        let fut = review(z, &user, "get", &["pods", "proxy"], "node-a");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(fut)
    }

    #[test]
    fn first_allow_wins_and_stops() {
        let z = scripted(vec![("pods", Ok(Decision::Allow)), ("proxy", Ok(Decision::Deny))]);
        assert_eq!(run(&z), Verdict::Allowed { subresource: "pods" });
        assert_eq!(*z.asked.lock().expect("lock"), ["pods"]);
    }

    #[test]
    fn deny_and_no_opinion_fall_through() {
        let z = scripted(vec![("pods", Ok(Decision::Deny)), ("proxy", Ok(Decision::Allow))]);
        assert_eq!(run(&z), Verdict::Allowed { subresource: "proxy" });
        let z = scripted(vec![
            ("pods", Ok(Decision::NoOpinion)),
            ("proxy", Ok(Decision::NoOpinion)),
        ]);
        assert_eq!(run(&z), Verdict::Forbidden);
        assert_eq!(*z.asked.lock().expect("lock"), ["pods", "proxy"]);
    }

    #[test]
    fn an_error_stops_the_loop() {
        let z = scripted(vec![("pods", Err("boom")), ("proxy", Ok(Decision::Allow))]);
        assert_eq!(
            run(&z),
            Verdict::Failed {
                subresource: "pods",
                error: "boom".into()
            }
        );
        assert_eq!(*z.asked.lock().expect("lock"), ["pods"]);
    }
}
