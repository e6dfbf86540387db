//! What tests script: the user a token stands for ([`ReviewUser`]), the SAR allow and deny rules,
//! and how a review call is answered ([`Behaviour`]), standing or queued per review.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::reviews::Review;
use super::{Inner, lock};

/// The user a token stands for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReviewUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl ReviewUser {
    /// A user with this name and no uid, groups or extra.
    pub fn new(username: &str) -> ReviewUser {
        ReviewUser {
            username: username.to_string(),
            ..ReviewUser::default()
        }
    }
    pub fn uid(mut self, uid: &str) -> ReviewUser {
        self.uid = uid.to_string();
        self
    }
    pub fn groups(mut self, groups: &[&str]) -> ReviewUser {
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }
    pub fn extra(mut self, key: &str, values: &[&str]) -> ReviewUser {
        self.extra
            .insert(key.to_string(), values.iter().map(|v| v.to_string()).collect());
        self
    }

    /// `UserInfo` as Go marshals it: every field omitempty.
    pub(super) fn to_json(&self) -> Value {
        let mut user = Map::new();
        if !self.username.is_empty() {
            user.insert("username".into(), json!(self.username));
        }
        if !self.uid.is_empty() {
            user.insert("uid".into(), json!(self.uid));
        }
        if !self.groups.is_empty() {
            user.insert("groups".into(), json!(self.groups));
        }
        if !self.extra.is_empty() {
            user.insert("extra".into(), json!(self.extra));
        }
        Value::Object(user)
    }
}

/// How the stand-in answers a review call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer from the tokens and rules (the default).
    Normal,
    /// That status with a `metav1.Status` body (`reason` from the code: InternalError,
    /// TooManyRequests, Forbidden, NotFound, ...), plus `Retry-After` (and
    /// `details.retryAfterSeconds`) if set.
    Status { code: u16, retry_after: Option<u64> },
    /// 200, `Content-Type: application/json`, body [`GARBAGE_BODY`].
    Garbage,
    /// 200, `Content-Type: text/html; charset=utf-8`, body [`HTML_BODY`].
    Html,
    /// 200 JSON with kind "Pod", apiVersion "v1".
    WrongKind,
    /// TokenReview only: `authenticated: true` with an empty username (Go omits it, so the
    /// `user` object is `{}`). On a SubjectAccessReview: `Normal`.
    EmptyUsername,
    /// TokenReview: `authenticated` false with `status.error` = the string. SubjectAccessReview:
    /// `allowed: false` with `evaluationError` = the string.
    StatusError(String),
    /// SubjectAccessReview only: `allowed: true` and `denied: true`. On a TokenReview: `Normal`.
    AllowedAndDenied,
    /// 200 with a [`HUGE_BYTES`] JSON body: the `Normal` answer padded with a huge string in
    /// `metadata.annotations["padding"]`.
    Huge,
    /// Wait, then answer `Normal`.
    Delay(Duration),
    /// Read the request, never answer (until the connection ends or the server stops).
    Hang,
    /// Read the request, then close the TCP connection without any response (over h2 this
    /// ends every stream of the connection).
    CloseConnection,
}

pub(super) struct TokenEntry {
    pub(super) user: ReviewUser,
    /// None: valid for any audience (the requested ones are echoed).
    pub(super) audiences: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub(super) struct Rule {
    user: String,
    verb: String,
    subresource: String,
}

impl Rule {
    pub(super) fn matches(&self, user: &str, verb: &str, subresource: &str) -> bool {
        let m = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        m(&self.user, user) && m(&self.verb, verb) && m(&self.subresource, subresource)
    }
}

pub(super) struct Script {
    pub(super) tokens: HashMap<String, TokenEntry>,
    pub(super) nodes: HashMap<String, Value>,
    pub(super) csrs: Vec<Value>,
    pub(super) allow: Vec<Rule>,
    pub(super) deny: Vec<Rule>,
    pub(super) unknown_token_error: Option<String>,
    pub(super) tokenreview: Behaviour,
    pub(super) sar: Behaviour,
    pub(super) tokenreview_script: VecDeque<Behaviour>,
    pub(super) sar_script: VecDeque<Behaviour>,
}

pub(super) fn rule(user: &str, verb: &str, subresource: &str) -> Rule {
    Rule {
        user: user.to_string(),
        verb: verb.to_string(),
        subresource: subresource.to_string(),
    }
}

impl Inner {
    pub(super) fn next_behaviour(&self, review: Review) -> Behaviour {
        let mut guard = lock(&self.script);
        let s = &mut *guard;
        let (queue, standing) = match review {
            Review::Token => (&mut s.tokenreview_script, s.tokenreview.clone()),
            Review::Sar => (&mut s.sar_script, s.sar.clone()),
        };
        queue.pop_front().unwrap_or(standing)
    }
}
