//! The answers to TokenReview and SubjectAccessReview (step 7): the request echoed back with
//! `status` filled from the tokens and rules, or as the semantic behaviours say.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::answers::{json_response, status_response};
use super::script::Behaviour;
use super::serve::Resp;
use super::{ALLOW_REASON, API_AUDIENCE, DENY_REASON, HUGE_BYTES, Inner, SAR_PATH, TOKENREVIEW_PATH, lock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Review {
    Token,
    Sar,
}

impl Review {
    pub(super) fn of(path: &str) -> Option<Review> {
        match path {
            TOKENREVIEW_PATH => Some(Review::Token),
            SAR_PATH => Some(Review::Sar),
            _ => None,
        }
    }
    pub(super) fn kind(self) -> &'static str {
        match self {
            Review::Token => "TokenReview",
            Review::Sar => "SubjectAccessReview",
        }
    }
    pub(super) fn group(self) -> &'static str {
        match self {
            Review::Token => "authentication.k8s.io",
            Review::Sar => "authorization.k8s.io",
        }
    }
    pub(super) fn api_version(self) -> String {
        format!("{}/v1", self.group())
    }
    pub(super) fn resource(self) -> &'static str {
        match self {
            Review::Token => "tokenreviews",
            Review::Sar => "subjectaccessreviews",
        }
    }
}

/// The request object as the answer's base: kind, apiVersion, metadata filled in.
fn echo(mut object: Map<String, Value>, review: Review) -> Map<String, Value> {
    object.insert("kind".into(), json!(review.kind()));
    object.insert("apiVersion".into(), json!(review.api_version()));
    if !object.get("metadata").is_some_and(Value::is_object) {
        object.insert("metadata".into(), json!({}));
    }
    if !object.get("spec").is_some_and(Value::is_object) {
        object.insert("spec".into(), json!({}));
    }
    object
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

pub(super) fn token_review(inner: &Inner, object: Map<String, Value>, behaviour: &Behaviour) -> Resp {
    let review = Review::Token;
    let token = object
        .get("spec")
        .and_then(|s| s.get("token"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if token.is_empty() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "token is required for TokenReview in authentication",
            None,
        );
    }
    if *behaviour == Behaviour::WrongKind {
        return wrong_kind();
    }
    let requested = str_list(object.get("spec").and_then(|s| s.get("audiences")));
    let mut answer = echo(object, review);
    let mut status = Map::new();
    match behaviour {
        Behaviour::EmptyUsername => {
            status.insert("authenticated".into(), json!(true));
            status.insert("user".into(), json!({}));
        }
        Behaviour::StatusError(error) => {
            status.insert("user".into(), json!({}));
            status.insert("error".into(), json!(error));
        }
        _ => {
            let script = lock(&inner.script);
            let targets = if requested.is_empty() {
                vec![API_AUDIENCE.to_string()]
            } else {
                requested.clone()
            };
            match script.tokens.get(&token) {
                None => {
                    status.insert("user".into(), json!({}));
                    if let Some(e) = &script.unknown_token_error {
                        status.insert("error".into(), json!(e));
                    }
                }
                Some(entry) => {
                    let audiences = match &entry.audiences {
                        None => targets.clone(),
                        Some(bound) => targets.iter().filter(|t| bound.contains(t)).cloned().collect(),
                    };
                    if audiences.is_empty() {
                        let bound = entry.audiences.clone().unwrap_or_default();
                        status.insert("user".into(), json!({}));
                        status.insert(
                            "error".into(),
                            json!(format!(
                                "token audiences {} is invalid for the target audiences {}",
                                go_quote_list(&bound),
                                go_quote_list(&targets)
                            )),
                        );
                    } else {
                        status.insert("authenticated".into(), json!(true));
                        status.insert("user".into(), entry.user.to_json());
                        status.insert("audiences".into(), json!(audiences));
                    }
                }
            }
        }
    }
    answer.insert("status".into(), Value::Object(status));
    finish(answer, behaviour)
}

pub(super) fn subject_access_review(inner: &Inner, object: Map<String, Value>, behaviour: &Behaviour) -> Resp {
    let review = Review::Sar;
    let spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
    let user = spec.get("user").and_then(Value::as_str).unwrap_or("").to_string();
    let groups = str_list(spec.get("groups"));
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let mut causes = Vec::new();
    if resource.is_some() && non_resource.is_some() {
        causes.push((
            "spec.nonResourceAttributes",
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if resource.is_none() && non_resource.is_none() {
        causes.push((
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if user.is_empty() && groups.is_empty() {
        causes.push(("spec.user", "at least one of user or group must be specified"));
    }
    if !causes.is_empty() {
        let messages: Vec<String> = causes
            .iter()
            .map(|(field, m)| format!("{field}: Invalid value: \"\": {m}"))
            .collect();
        let message = if messages.len() == 1 {
            messages[0].clone()
        } else {
            format!("[{}]", messages.join(", "))
        };
        let details = json!({
            "group": review.group(),
            "kind": review.kind(),
            "causes": causes.iter().map(|(field, m)| json!({
                "reason": "FieldValueInvalid",
                "message": format!("Invalid value: \"\": {m}"),
                "field": field,
            })).collect::<Vec<_>>(),
        });
        return status_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("SubjectAccessReview.authorization.k8s.io \"\" is invalid: {message}"),
            Some(details),
        );
    }
    if *behaviour == Behaviour::WrongKind {
        return wrong_kind();
    }
    let attr = |name: &str| {
        resource
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (verb, subresource) = match (resource, non_resource) {
        (Some(_), _) => (attr("verb"), attr("subresource")),
        (None, Some(n)) => (
            n.get("verb").and_then(Value::as_str).unwrap_or("").to_string(),
            // A non-resource request has no subresource: only a "*" rule matches it.
            "\u{0}non-resource".to_string(),
        ),
        (None, None) => (String::new(), String::new()),
    };
    let mut status = Map::new();
    match behaviour {
        Behaviour::AllowedAndDenied => {
            status.insert("allowed".into(), json!(true));
            status.insert("denied".into(), json!(true));
            status.insert("reason".into(), json!("both allowed and denied by the stand-in"));
        }
        Behaviour::StatusError(error) => {
            status.insert("allowed".into(), json!(false));
            status.insert("evaluationError".into(), json!(error));
        }
        _ => {
            let script = lock(&inner.script);
            if script.deny.iter().any(|r| r.matches(&user, &verb, &subresource)) {
                status.insert("allowed".into(), json!(false));
                status.insert("denied".into(), json!(true));
                status.insert("reason".into(), json!(DENY_REASON));
            } else if script.allow.iter().any(|r| r.matches(&user, &verb, &subresource)) {
                status.insert("allowed".into(), json!(true));
                status.insert("reason".into(), json!(ALLOW_REASON));
            } else {
                status.insert("allowed".into(), json!(false));
            }
        }
    }
    let mut answer = echo(object, review);
    answer.insert("status".into(), Value::Object(status));
    finish(answer, behaviour)
}

/// 200 with the answer, padded to [`HUGE_BYTES`] for `Huge`.
fn finish(mut answer: Map<String, Value>, behaviour: &Behaviour) -> Resp {
    if *behaviour != Behaviour::Huge {
        return json_response(StatusCode::OK, &Value::Object(answer));
    }
    let metadata = answer.entry("metadata").or_insert_with(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.insert("annotations".into(), json!({ "padding": "" }));
    }
    let base = serde_json::to_vec(&answer).expect("serialize review").len() + 1;
    let pad = HUGE_BYTES.saturating_sub(base);
    if let Some(a) = answer.get_mut("metadata").and_then(|m| m.get_mut("annotations")) {
        a["padding"] = Value::String("x".repeat(pad));
    }
    json_response(StatusCode::OK, &Value::Object(answer))
}

fn wrong_kind() -> Resp {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "not-a-review", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            "status": {"phase": "Running"},
        }),
    )
}
