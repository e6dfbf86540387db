//! SubjectAccessReview through the API server (kubelet-behaviour.md §2.5), cached as the
//! kubelet caches it (allowed for `cacheAuthorizedTTL`, denied for `cacheUnauthorizedTTL`,
//! errors never), keyed by the whole review spec, bounded, with concurrent identical misses
//! sharing one call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};

use super::{Attributes, AuthzError, Decision};
use crate::clock::Clock;
use crate::k8s::{ApiServer, CallError};

const PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// The kubelet's LRU holds 8192 decisions.
pub const MAX_ENTRIES: u64 = 8192;
/// Attributes this long are not cached (`maxControlledAttrCacheSize`).
const MAX_CACHED_ATTRIBUTE_BYTES: usize = 10_000;

#[derive(Clone, Copy)]
struct Entry {
    decision: Decision,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct SarStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub stale_uses: AtomicU64,
    /// Entries dropped for room or age (the cache's listener counts them).
    pub evictions: Arc<AtomicU64>,
}

pub struct SarAuthorizer {
    api: Arc<ApiServer>,
    cache: moka::future::Cache<String, Entry>,
    allow_ttl: Duration,
    deny_ttl: Duration,
    stale_if_error: Duration,
    clock: Clock,
    pub stats: SarStats,
}

impl SarAuthorizer {
    pub fn new(
        api: Arc<ApiServer>,
        allow_ttl: Duration,
        deny_ttl: Duration,
        stale_if_error: Duration,
        clock: Clock,
    ) -> Self {
        let stats = SarStats::default();
        let cache = moka::future::Cache::builder()
            .max_capacity(MAX_ENTRIES)
            .eviction_listener({
                let evictions = stats.evictions.clone();
                move |_, _, cause| {
                    if cause.was_evicted() {
                        evictions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .time_to_live(allow_ttl.max(deny_ttl) + stale_if_error + Duration::from_secs(1))
            .build();
        SarAuthorizer {
            api,
            cache,
            allow_ttl,
            deny_ttl,
            stale_if_error,
            clock,
            stats,
        }
    }

    fn ttl(&self, d: Decision) -> Duration {
        if d == Decision::Allow {
            self.allow_ttl
        } else {
            self.deny_ttl
        }
    }

    pub async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, AuthzError> {
        let review = review_for(a);
        let spec = &review.spec;
        let attribute_bytes = a.verb.len() + a.subresource.len() + a.node_name.len() + "nodesv1".len();
        if attribute_bytes >= MAX_CACHED_ATTRIBUTE_BYTES {
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            return self.ask(&review).await.map_err(|e| AuthzError(e.to_string()));
        }
        // serde_json writes struct fields in declaration order and `extra` is a BTreeMap, so
        // the key is canonical: equal specs give equal keys, and every field is in it.
        let key = serde_json::to_string(spec).map_err(|e| AuthzError(e.to_string()))?;
        let now = self.clock.now();
        let previous = self.cache.get(&key).await;
        if let Some(entry) = previous {
            if now.saturating_duration_since(entry.at) < self.ttl(entry.decision) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.decision);
            }
            self.cache.invalidate(&key).await;
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let fetched = self
            .cache
            .try_get_with(key, async {
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                let decision = self.ask(&review).await?;
                Ok::<_, CallError>(Entry {
                    decision,
                    at: self.clock.now(),
                })
            })
            .await;
        match fetched {
            Ok(entry) => Ok(entry.decision),
            Err(error) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                match previous {
                    Some(entry)
                        if now.saturating_duration_since(entry.at) < self.ttl(entry.decision) + self.stale_if_error =>
                    {
                        self.stats.stale_uses.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "API server unavailable: using an expired SubjectAccessReview result (staleIfError)");
                        Ok(entry.decision)
                    }
                    _ => Err(AuthzError(error.to_string())),
                }
            }
        }
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
    api: &ApiServer,
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
