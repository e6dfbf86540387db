//! Policy files as text and as data: the serde shapes of the RBAC objects, and the `---`
//! document splitter with serde-saphyr parsing that places errors at the file's own lines.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::RbacError;

pub(super) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

// ---- manifest shapes (unknown fields are ignored on purpose) ----

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Rule {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) verbs: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) api_groups: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) resources: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) resource_names: Vec<String>,
    #[serde(default, rename = "nonResourceURLs", deserialize_with = "null_as_empty")]
    pub(super) non_resource_urls: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct Header {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    pub(super) kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ListHeader {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) items: Vec<Option<Header>>,
}

#[derive(Deserialize, Default)]
pub(super) struct Meta {
    pub(super) name: Option<String>,
    pub(super) labels: Option<BTreeMap<String, String>>,
}

/// A Role or ClusterRole (only the latter may aggregate).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RoleDoc {
    pub(super) metadata: Option<Meta>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) rules: Vec<Rule>,
    pub(super) aggregation_rule: Option<AggregationRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AggregationRule {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) cluster_role_selectors: Vec<Selector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Selector {
    pub(super) match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) match_expressions: Vec<Requirement>,
}

#[derive(Deserialize)]
pub(super) struct Requirement {
    pub(super) key: String,
    pub(super) operator: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BindingDoc {
    pub(super) metadata: Option<Meta>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) subjects: Vec<Subject>,
    pub(super) role_ref: Option<RoleRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Subject {
    pub(super) kind: Option<String>,
    pub(super) api_group: Option<String>,
    pub(super) name: Option<String>,
    pub(super) namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RoleRef {
    pub(super) api_group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) name: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

pub(super) enum Body {
    Role(RoleDoc),
    Binding(BindingDoc),
}

impl Kind {
    /// RBAC kinds of the rbac.authorization.k8s.io group (any version: they share a schema);
    /// same-named kinds of other groups, e.g. CRDs, are someone else's objects.
    pub(super) fn of(header: &Header) -> Option<Kind> {
        let group = header.api_version.as_deref().map(|v| v.split('/').next());
        if group.is_some_and(|g| g != Some(RBAC_GROUP)) {
            return None;
        }
        match header.kind.as_deref()? {
            "Role" => Some(Kind::Role),
            "ClusterRole" => Some(Kind::ClusterRole),
            "RoleBinding" => Some(Kind::RoleBinding),
            "ClusterRoleBinding" => Some(Kind::ClusterRoleBinding),
            _ => None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Kind {
    type Value = Body;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Body, D::Error> {
        Ok(match self {
            Kind::Role | Kind::ClusterRole => Body::Role(RoleDoc::deserialize(d)?),
            _ => Body::Binding(BindingDoc::deserialize(d)?),
        })
    }
}

/// Reads a `kind: *List` document (as a map) and its `items` (as a sequence), typing only the
/// items already known to be RBAC objects: the others may have any shape and are skipped.
#[derive(Clone, Copy)]
pub(super) struct ListSeed<'a>(pub(super) &'a [Option<Kind>]);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<(usize, Kind, Body)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Vec<(usize, Kind, Body)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes List with a sequence of items")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                items = map.next_value_seed(self)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(items)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        for index in 0.. {
            if let Some(kind) = self.0.get(index).copied().flatten() {
                match seq.next_element_seed(kind)? {
                    Some(body) => out.push((index, kind, body)),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

// ---- documents ----

fn is_marker(line: &str, marker: &str) -> bool {
    let rest = line.strip_prefix(marker);
    rest.is_some_and(|r| r.chars().next().is_none_or(|c| c.is_ascii_whitespace()))
}

/// Whether a line holds document content (not blank, comment, directive or bare marker).
fn is_content(line: &str) -> bool {
    let marker = is_marker(line, "---") || is_marker(line, "...");
    let body = if marker { &line[3..] } else { line }.trim();
    !line.starts_with('%') && !body.is_empty() && !body.starts_with('#')
}

/// Splits a source into (first line, text) documents at `---`/`...` lines. YAML forbids those
/// markers at column 0 inside content, even in block scalars, so this matches the spec and keeps
/// exact line numbers, which serde-saphyr's `from_multiple` cannot give per document.
pub(super) fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    let mut flush = |start: &mut usize, start_line: &mut usize, end: usize, next_line: usize| {
        let body = &text[*start..end];
        if body.lines().any(is_content) {
            docs.push((*start_line, body));
        } else if !body.lines().any(|l| is_marker(l, "---") || is_marker(l, "...")) {
            return; // only comments or directives so far: they belong to the next document
        }
        (*start, *start_line) = (end, next_line);
    };
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if is_marker(line, "---") {
            flush(&mut start, &mut start_line, offset, index + 1);
        }
        offset += line.len();
        if is_marker(line, "...") {
            flush(&mut start, &mut start_line, offset, index + 2);
        }
    }
    flush(&mut start, &mut start_line, offset, 0);
    docs
}

pub(super) struct Doc<'a> {
    pub(super) path: &'a str,
    pub(super) number: usize,
    pub(super) first_line: usize,
    pub(super) text: &'a str,
}

impl<'a> Doc<'a> {
    pub(super) fn parse<T>(
        &self,
        f: impl for<'e> FnOnce(serde_saphyr::Deserializer<'a, 'e>) -> Result<T, serde_saphyr::Error>,
    ) -> Result<T, RbacError> {
        // Policy files are the operator's own, and one `kubectl get -o yaml` List of a large
        // cluster's roles outgrows the library's default node and event budgets.
        let budget = serde_saphyr::budget! { max_events: 50_000_000, max_nodes: 20_000_000 };
        let options = serde_saphyr::options! { with_snippet: false, budget: budget };
        let err = match serde_saphyr::with_deserializer_from_str_with_options(self.text, options, f) {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let offset = self.first_line - 1;
        let render = serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
            line_offset: offset as u64,
        };
        let line = err.location().map(|l| l.line() as usize).filter(|&l| l > 0);
        Err(RbacError::Parse {
            path: self.path.to_owned(),
            document: self.number,
            line: line.map(|l| l + offset),
            message: err.render_with_options(render),
        })
    }

    pub(super) fn invalid(&self, message: String) -> RbacError {
        let (path, document) = (self.path.to_owned(), self.number);
        RbacError::Invalid {
            path,
            document,
            message,
        }
    }
}
