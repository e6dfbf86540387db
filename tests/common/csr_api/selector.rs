//! Field and label selectors, as lists and watches take them.

use serde_json::{Value, json};

use super::store::Res;

#[derive(Clone, Debug, Default)]
pub(super) struct Selector {
    /// (field, equal?, value)
    pub(super) fields: Vec<(String, bool, String)>,
    labels: Vec<LabelReq>,
}

#[derive(Clone, Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

impl Selector {
    pub(super) fn parse(res: Res, fields: Option<&str>, labels: Option<&str>) -> Result<Selector, String> {
        let mut sel = Selector::default();
        for term in fields.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{term}'; can't understand '{term}'"));
            };
            let field = field.trim();
            if res.field(&json!({}), field).is_none() {
                return Err(format!("field label not supported: {field}"));
            }
            sel.fields.push((field.to_string(), eq, value.trim().to_string()));
        }
        for term in labels.unwrap_or("").split(',').filter(|t| !t.trim().is_empty()) {
            let term = term.trim();
            if term.contains('(') {
                return Err(format!(
                    "unable to parse requirement: the stand-in does not do set selectors: {term}"
                ));
            }
            let req = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::Absent(k.trim().into())
            } else {
                LabelReq::Exists(term.into())
            };
            sel.labels.push(req);
        }
        Ok(sel)
    }

    pub(super) fn matches(&self, res: Res, object: &Value) -> bool {
        let fields_ok = self
            .fields
            .iter()
            .all(|(f, eq, v)| res.field(object, f).is_some_and(|actual| (actual == *v) == *eq));
        let label = |k: &str| {
            object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => label(k) != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::Absent(k) => label(k).is_none(),
        });
        fields_ok && labels_ok
    }
}
