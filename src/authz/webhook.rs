//! SubjectAccessReview through the API server (kubernetes/apiserver
//! plugin/pkg/authorizer/webhook/webhook.go, as the kubelet builds it), cached as the
//! kubelet caches it (allowed for `cacheAuthorizedTTL`, denied for `cacheUnauthorizedTTL`,
//! errors never), keyed by the whole review spec, bounded, with concurrent identical misses
//! sharing one call.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};

use super::{Attributes, AuthzError, Decision};
use crate::clock::Clock;
use crate::k8s::{ApiClient, CallError};
use crate::review_cache::{CacheStats, ReviewCache};

const PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// The kubelet's LRU holds 8192 decisions.
pub const MAX_ENTRIES: u64 = 8192;
/// Attributes this long are not cached (`maxControlledAttrCacheSize`).
const MAX_CACHED_ATTRIBUTE_BYTES: usize = 10_000;

pub struct SarAuthorizer {
    api: Arc<ApiClient>,
    /// Keyed by the JSON of the whole review spec.
    cache: ReviewCache<String, Decision>,
    allow_ttl: Duration,
    deny_ttl: Duration,
}

impl SarAuthorizer {
    pub fn new(
        api: Arc<ApiClient>,
        allow_ttl: Duration,
        deny_ttl: Duration,
        stale_if_error: Duration,
        clock: Clock,
    ) -> Self {
        let cache = ReviewCache::new(
            MAX_ENTRIES,
            allow_ttl.max(deny_ttl),
            stale_if_error,
            clock,
            "SubjectAccessReview decision",
        );
        SarAuthorizer {
            api,
            cache,
            allow_ttl,
            deny_ttl,
        }
    }

    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.cache.stats
    }

    /// The API server client, for [`review_uncached`].
    pub fn api(&self) -> &Arc<ApiClient> {
        &self.api
    }

    pub async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, AuthzError> {
        let review = review_for(a);
        let attribute_bytes = a.verb.len() + a.subresource.len() + a.node_name.len() + "nodesv1".len();
        if attribute_bytes >= MAX_CACHED_ATTRIBUTE_BYTES {
            self.cache.count_uncached_call();
            return self.ask(&review).await.map_err(|e| AuthzError(e.to_string()));
        }
        // serde_json writes struct fields in declaration order and `extra` is a BTreeMap, so
        // the key is canonical: equal specs give equal keys, and every field is in it.
        let key = serde_json::to_string(&review.spec).map_err(|e| AuthzError(e.to_string()))?;
        let (allow_ttl, deny_ttl) = (self.allow_ttl, self.deny_ttl);
        let ttl = |d: &Decision| if *d == Decision::Allow { allow_ttl } else { deny_ttl };
        self.cache
            .get_or_fetch(key, ttl, self.ask(&review))
            .await
            .map_err(|e| AuthzError(e.to_string()))
    }

    async fn ask(&self, review: &SubjectAccessReview) -> Result<Decision, CallError> {
        let answer = self.api.create(PATH, review).await?;
        decision(&answer.status.unwrap_or_default())
    }
}

/// One review without the cache, with the API server's whole status (reason, evaluation
/// error), for `explain`: the same request body and the same reading of the answer as every
/// request the gateway reviews.
pub async fn review_uncached(
    api: &ApiClient,
    a: &Attributes<'_>,
) -> Result<(Decision, SubjectAccessReviewStatus), CallError> {
    let answer = api.create(PATH, &review_for(a)).await?;
    let status = answer.status.unwrap_or_default();
    Ok((decision(&status)?, status))
}

/// The review the kubelet sends for these attributes: user, uid, groups, extra, and
/// `nodes/<subresource>` named after the node, version v1, empty group and namespace.
pub fn review_for(a: &Attributes<'_>) -> SubjectAccessReview {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let user = a.user;
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: non_empty(&user.name),
            uid: non_empty(&user.uid),
            groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                verb: non_empty(a.verb),
                version: Some(Attributes::API_VERSION.to_owned()),
                resource: Some(Attributes::RESOURCE.to_owned()),
                subresource: non_empty(a.subresource),
                name: non_empty(a.node_name),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// The webhook authorizer's reading of an answer: both allowed and denied is an error.
fn decision(status: &SubjectAccessReviewStatus) -> Result<Decision, CallError> {
    match (status.allowed, status.denied == Some(true)) {
        (true, true) => Err(CallError::Decode(
            "webhook subject access review returned both allow and deny response".into(),
        )),
        (_, true) => Ok(Decision::Deny),
        (true, false) => Ok(Decision::Allow),
        (false, false) => Ok(Decision::NoOpinion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::UserInfo;

    fn status(allowed: bool, denied: Option<bool>) -> SubjectAccessReviewStatus {
        SubjectAccessReviewStatus {
            allowed,
            denied,
            ..Default::default()
        }
    }

    #[test]
    fn status_mapping() {
        assert_eq!(decision(&status(true, None)), Ok(Decision::Allow));
        assert_eq!(decision(&status(false, Some(true))), Ok(Decision::Deny));
        assert_eq!(decision(&status(false, None)), Ok(Decision::NoOpinion));
        assert_eq!(decision(&status(false, Some(false))), Ok(Decision::NoOpinion));
        assert!(decision(&status(true, Some(true))).is_err());
    }

    #[test]
    fn review_body_matches_the_kubelet() {
        let user = UserInfo {
            name: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["g1".into(), "system:authenticated".into()],
            extra: [("k".to_string(), vec!["v".to_string()])].into(),
        };
        let a = Attributes {
            user: &user,
            verb: "get",
            subresource: "pods",
            node_name: "node-a",
        };
        let body = serde_json::to_value(review_for(&a)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "metadata": {},
                "spec": {
                    "user": "alice",
                    "uid": "u-1",
                    "groups": ["g1", "system:authenticated"],
                    "extra": {"k": ["v"]},
                    "resourceAttributes": {"verb": "get", "version": "v1", "resource": "nodes", "subresource": "pods", "name": "node-a"}
                }
            })
        );
        let anonymous = crate::authn::user::anonymous();
        let empty_verb = Attributes {
            user: &anonymous,
            verb: "",
            subresource: "metrics",
            node_name: "node-a",
        };
        let body = serde_json::to_value(review_for(&empty_verb)).expect("json");
        assert_eq!(
            body["spec"]["resourceAttributes"].get("verb"),
            None,
            "the empty verb is omitted, as Go's omitempty does"
        );
        assert_eq!(body["spec"].get("uid"), None);
    }
}
