//! Bearer tokens checked by the API server (TokenReview: kubernetes/apiserver
//! plugin/pkg/authenticator/token/webhook/webhook.go and pkg/authentication/token/cache/
//! cached_token_authenticator.go),
//! behind a cache that is faithful to the kubelet where that is right (accepted and rejected
//! tokens cached for `cacheTTL`, errors never) and better where it is weak: bounded in size,
//! keyed by an HMAC so no token is ever held, and concurrent lookups of one token share one call.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};

use super::review_budget::ReviewBudget;
use super::secret::RandomError;
use super::user::UserInfo;
use crate::clock::Clock;
use crate::k8s::{ApiClient, CallError};
use crate::review_cache::{CacheStats, ReviewCache};

const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// The most tokens remembered at once; a flood of distinct tokens evicts, it does not grow.
pub const MAX_ENTRIES: u64 = 32 * 1024;

pub struct TokenReviewer {
    api: Arc<ApiClient>,
    /// The user for an accepted token, `None` for a rejected one.
    cache: ReviewCache<[u8; 32], Option<Arc<UserInfo>>>,
    key: hmac::Key,
    ttl: Duration,
    audiences: Vec<String>,
    /// Reviews sent for uncached tokens, per second.
    budget: Arc<ReviewBudget>,
}

impl TokenReviewer {
    pub fn new(
        api: Arc<ApiClient>,
        ttl: Duration,
        audiences: Vec<String>,
        stale_if_error: Duration,
        clock: Clock,
        budget: Arc<ReviewBudget>,
    ) -> Result<Self, RandomError> {
        let key = super::secret::hmac_key()?;
        let cache = ReviewCache::new(MAX_ENTRIES, ttl, stale_if_error, clock, "TokenReview result");
        Ok(TokenReviewer {
            api,
            cache,
            key,
            ttl,
            audiences,
            budget,
        })
    }

    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.cache.stats
    }

    /// `Ok(Some(user))` for a token the API server accepted, `Ok(None)` for one it rejected,
    /// `Err` when it could not be asked (the caller answers 401; nothing is cached). Accepted
    /// and rejected tokens are both remembered for `cacheTTL`, as the kubelet does.
    pub async fn authenticate(&self, token: &str, source: IpAddr) -> Result<Option<Arc<UserInfo>>, CallError> {
        let ttl = self.ttl;
        self.cache
            .get_or_fetch(self.cache_key(token), |_| ttl, self.review(token, source))
            .await
    }

    pub fn budget(&self) -> &Arc<ReviewBudget> {
        &self.budget
    }

    /// HMAC over the length-prefixed token and audiences, so neither the cache nor a heap dump
    /// holds a token, and no two (token, audiences) pairs share a key.
    fn cache_key(&self, token: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(token.len() as u64).to_be_bytes());
        ctx.update(token.as_bytes());
        ctx.update(&(self.audiences.len() as u64).to_be_bytes());
        for a in &self.audiences {
            ctx.update(&(a.len() as u64).to_be_bytes());
            ctx.update(a.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Runs only when the cache has no answer: the budget counts reviews, not lookups.
    async fn review(&self, token: &str, source: IpAddr) -> Result<Option<Arc<UserInfo>>, CallError> {
        self.budget.take(source).map_err(CallError::OverBudget)?;
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = self.api.create(PATH, &request).await?;
        interpret(answer, &self.audiences)
    }
}

/// The webhook authenticator's reading of a TokenReview answer.
fn interpret(answer: TokenReview, audiences: &[String]) -> Result<Option<Arc<UserInfo>>, CallError> {
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return match status.error.filter(|e| !e.is_empty()) {
            // An error in the answer is an error: not cached, 401.
            Some(e) => Err(CallError::Status {
                status: 200,
                message: e,
            }),
            None => Ok(None),
        };
    }
    if let Some(got) = status.audiences.filter(|a| !a.is_empty())
        && !audiences.is_empty()
        && !got.iter().any(|a| audiences.contains(a))
    {
        return Ok(None);
    }
    let user = status.user.unwrap_or_default();
    let name = user.username.unwrap_or_default();
    if name.is_empty() {
        return Err(CallError::Decode(
            "TokenReview authenticated a token without a username".into(),
        ));
    }
    let info = UserInfo {
        name,
        uid: user.uid.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default().into_iter().collect(),
    };
    Ok(Some(Arc::new(info.with_authenticated_group())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo as K8sUser};

    fn answer(status: TokenReviewStatus) -> TokenReview {
        TokenReview {
            status: Some(status),
            ..TokenReview::default()
        }
    }

    #[test]
    fn authenticated_answer_becomes_a_user_with_system_authenticated() {
        let a = answer(TokenReviewStatus {
            authenticated: Some(true),
            user: Some(K8sUser {
                username: Some("system:serviceaccount:ns:sa".into()),
                uid: Some("u1".into()),
                groups: Some(vec!["system:serviceaccounts".into()]),
                extra: Some(
                    [(
                        "authentication.kubernetes.io/pod-name".to_string(),
                        vec!["p".to_string()],
                    )]
                    .into(),
                ),
            }),
            ..TokenReviewStatus::default()
        });
        let user = interpret(a, &[]).expect("ok").expect("user");
        assert_eq!(user.name, "system:serviceaccount:ns:sa");
        assert_eq!(user.uid, "u1");
        assert_eq!(user.groups, ["system:serviceaccounts", "system:authenticated"]);
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["p"]);
    }

    #[test]
    fn rejections_errors_and_garbage() {
        let rejected = answer(TokenReviewStatus {
            authenticated: Some(false),
            ..Default::default()
        });
        assert_eq!(interpret(rejected, &[]).map(|u| u.is_none()), Ok(true));
        let error = answer(TokenReviewStatus {
            error: Some("webhook down".into()),
            ..Default::default()
        });
        assert!(interpret(error, &[]).is_err());
        let nameless = answer(TokenReviewStatus {
            authenticated: Some(true),
            ..Default::default()
        });
        assert!(interpret(nameless, &[]).is_err());
    }

    #[test]
    fn audiences_must_intersect_when_both_sides_name_some() {
        let with = |auds: Option<Vec<String>>| {
            answer(TokenReviewStatus {
                authenticated: Some(true),
                audiences: auds,
                user: Some(K8sUser {
                    username: Some("u".into()),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let wanted = ["gateway".to_string()];
        assert!(
            interpret(with(Some(vec!["other".into()])), &wanted)
                .expect("ok")
                .is_none()
        );
        assert!(
            interpret(with(Some(vec!["other".into(), "gateway".into()])), &wanted)
                .expect("ok")
                .is_some()
        );
        assert!(
            interpret(with(None), &wanted).expect("ok").is_some(),
            "none echoed: the implicit audiences"
        );
    }
}
