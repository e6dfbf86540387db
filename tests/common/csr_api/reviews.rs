//! The reviews a joining node meets: TokenReview (the gateway's webhook, with the identity it
//! joined as), SelfSubjectReview (who am I: `diagnose`'s harmless request with a bootstrap
//! token) and SelfSubjectAccessReview (may I: what the CSR approver will find, asked by the
//! requester itself).

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::authn::Caller;
use super::cluster::Attributes;
use super::lock;
use super::serve::{Resp, json_response, status_response};
use super::store::Inner;

pub const TOKENREVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub const SELF_SUBJECT_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
pub const SELF_SUBJECT_ACCESS_REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
pub const CLUSTER_ROLE_BINDINGS_PATH: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
/// What `status.audiences` says when the request names none.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Review {
    Token,
    SelfSubject,
    SelfSubjectAccess,
}

impl Review {
    pub(super) fn of(path: &str) -> Option<Review> {
        match path {
            TOKENREVIEW_PATH => Some(Review::Token),
            SELF_SUBJECT_REVIEW_PATH => Some(Review::SelfSubject),
            SELF_SUBJECT_ACCESS_REVIEW_PATH => Some(Review::SelfSubjectAccess),
            _ => None,
        }
    }

    pub(super) fn group(self) -> &'static str {
        match self {
            Review::Token | Review::SelfSubject => "authentication.k8s.io",
            Review::SelfSubjectAccess => "authorization.k8s.io",
        }
    }

    pub(super) fn resource(self) -> &'static str {
        match self {
            Review::Token => "tokenreviews",
            Review::SelfSubject => "selfsubjectreviews",
            Review::SelfSubjectAccess => "selfsubjectaccessreviews",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Review::Token => "TokenReview",
            Review::SelfSubject => "SelfSubjectReview",
            Review::SelfSubjectAccess => "SelfSubjectAccessReview",
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn review_answer(inner: &Arc<Inner>, caller: &Caller, review: Review, raw: Option<Bytes>) -> Resp {
    let body: Value = match raw.as_deref().map(serde_json::from_slice::<Value>) {
        Some(Ok(v)) if v.is_object() => v,
        _ if review == Review::SelfSubject => json!({}),
        _ => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "couldn't get version/kind; json parse error",
                None,
            );
        }
    };
    let api_version = format!("{}/v1", review.group());
    let mut answer = json!({"kind": review.kind(), "apiVersion": api_version, "metadata": {}});
    match review {
        Review::Token => {
            let token = str_at(&body, "/spec/token");
            if token.is_empty() {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value",
                    None,
                );
            }
            let audiences = body
                .pointer("/spec/audiences")
                .cloned()
                .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
                .unwrap_or_else(|| json!([API_AUDIENCE]));
            answer["spec"] = body.get("spec").cloned().unwrap_or(json!({}));
            let known = lock(&inner.state).cluster.review_tokens.get(token).cloned();
            answer["status"] = match known {
                Some((user, groups)) => json!({
                    "authenticated": true,
                    "user": {"username": user, "uid": format!("uid-{user}"), "groups": groups},
                    "audiences": audiences,
                }),
                None => json!({"user": {}}),
            };
        }
        Review::SelfSubject => {
            answer["status"] = json!({"userInfo": {"username": caller.user, "groups": caller.groups}});
        }
        Review::SelfSubjectAccess => {
            let attrs = body.pointer("/spec/resourceAttributes").cloned().unwrap_or(json!({}));
            let a = Attributes {
                verb: str_at(&attrs, "/verb"),
                group: str_at(&attrs, "/group"),
                resource: str_at(&attrs, "/resource"),
                subresource: str_at(&attrs, "/subresource"),
            };
            let allowed = caller.may(inner, &a);
            answer["spec"] = body.get("spec").cloned().unwrap_or(json!({}));
            answer["status"] = if allowed {
                json!({"allowed": true, "reason": "RBAC: allowed by the stand-in's bindings"})
            } else {
                json!({"allowed": false})
            };
        }
    }
    json_response(StatusCode::CREATED, &answer)
}
