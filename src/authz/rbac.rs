//! Offline Kubernetes RBAC for the gateway: loads Role/ClusterRole/RoleBinding/ClusterRoleBinding
//! manifests (plus the bootstrap policy in `builtin`) and answers cluster-scoped resource
//! requests such as `get nodes/proxy` the way kube-apiserver's RBAC authorizer does
//! (`plugin/pkg/auth/authorizer/rbac/rbac.go`, `pkg/registry/rbac/validation/rule.go`).

mod builtin;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Why a request was allowed: enough for an `explain` command to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub binding: String,
    pub role: String,
    pub rule_index: usize,
}

/// Borrowed [`Grant`], so the hot path can decide without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantRef<'a> {
    pub binding: &'a str,
    pub role: &'a str,
    pub rule_index: usize,
}

impl GrantRef<'_> {
    pub fn to_grant(self) -> Grant {
        Grant {
            binding: self.binding.to_owned(),
            role: self.role.to_owned(),
            rule_index: self.rule_index,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("cannot read RBAC policy {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `message` already names the absolute line and column when serde-saphyr knew them.
    #[error("{path}: document {document}: {message}")]
    Parse {
        path: String,
        document: usize,
        line: Option<usize>,
        message: String,
    },
    #[error("{path}: document {document}: {message}")]
    Invalid {
        path: String,
        document: usize,
        message: String,
    },
}

pub struct RbacPolicy {
    roles: Vec<CompiledRole>,
    /// ClusterRoleBindings whose role exists, as ("ClusterRoleBinding/<name>", role index).
    bindings: Vec<(String, usize)>,
    /// Users and `system:serviceaccount:<ns>:<name>` share one map: upstream's
    /// `serviceaccount.MatchesUsername` is exactly equality with that concatenation.
    by_user: HashMap<String, Vec<usize>>,
    by_group: HashMap<String, Vec<usize>>,
    warnings: Vec<String>,
}

impl RbacPolicy {
    /// Loads every file (in order) plus the built-ins.
    pub fn load(paths: &[PathBuf]) -> Result<RbacPolicy, RbacError> {
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(path);
            let text = text.map_err(|source| RbacError::Io {
                path: path.clone(),
                source,
            })?;
            sources.push((path.display().to_string(), text));
        }
        Self::from_sources(&sources)
    }

    /// The same from in-memory sources: (a name used in errors, the YAML text).
    pub fn from_sources(sources: &[(String, String)]) -> Result<RbacPolicy, RbacError> {
        let mut builder = Builder::with_builtins();
        for (name, text) in sources {
            builder.add_source(name, text)?;
        }
        Ok(builder.finish())
    }

    /// Evaluates a cluster-scoped resource request: the first grant found, or None (no
    /// opinion), without allocating. Upstream visits bindings in informer order,
    /// which is unspecified; the earliest-loaded granting binding (built-ins, then files in
    /// order) is reported so `explain` output is stable.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize(
        &self,
        user: &str,
        groups: &[String],
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        name: &str,
    ) -> Option<GrantRef<'_>> {
        let mut best: Option<(usize, usize)> = None;
        let by_group = groups.iter().filter_map(|g| self.by_group.get(g.as_str()));
        for candidates in self.by_user.get(user).into_iter().chain(by_group) {
            for &b in candidates {
                if best.is_some_and(|(found, _)| b >= found) {
                    break; // candidate lists are ascending
                }
                let role = &self.roles[self.bindings[b].1];
                if let Some(rule) = role.first_match(verb, api_group, resource, subresource, name) {
                    best = Some((b, rule));
                    break;
                }
            }
        }
        let (b, rule_index) = best?;
        let (binding, role) = &self.bindings[b];
        Some(GrantRef {
            binding,
            role: &self.roles[*role].label,
            rule_index,
        })
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

// ---- evaluation (pkg/apis/rbac/v1/evaluation_helpers.go) ----

/// A ClusterRole's effective rules, indexed by the resource they name (up to any `/`) so that a
/// request only checks rules that can match it, even when a subject is bound to large roles.
struct CompiledRole {
    label: String,
    rules: Vec<Rule>,
    by_resource: HashMap<String, Vec<usize>>,
    /// Rules naming `*` or `*/<sub>`, which can match any resource.
    wildcard: Vec<usize>,
}

impl CompiledRole {
    fn new(label: String, rules: Vec<Rule>) -> CompiledRole {
        let (mut by_resource, mut wildcard) = (HashMap::<String, Vec<usize>>::new(), Vec::new());
        for (i, rule) in rules.iter().enumerate() {
            for resource in &rule.resources {
                let list = match resource.split_once('/') {
                    _ if resource == "*" => &mut wildcard,
                    Some(("*", _)) => &mut wildcard,
                    Some((head, _)) => by_resource.entry(head.to_owned()).or_default(),
                    None => by_resource.entry(resource.clone()).or_default(),
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        CompiledRole {
            label,
            rules,
            by_resource,
            wildcard,
        }
    }

    /// Index of the first rule allowing the request, as upstream's in-order visit finds it.
    fn first_match(&self, verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Option<usize> {
        let allows = |&i: &usize| self.rules[i].allows(verb, group, resource, sub, name);
        let head = resource.split('/').next().unwrap_or(resource);
        let named = self
            .by_resource
            .get(head)
            .and_then(|list| list.iter().copied().find(allows));
        let earlier = |&i: &usize| named.is_none_or(|n| i < n);
        self.wildcard.iter().copied().take_while(earlier).find(allows).or(named)
    }
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

impl Rule {
    /// `RuleAllows` for a resource request: nonResourceURLs are never consulted, as upstream.
    fn allows(&self, verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
            && self.api_groups.iter().any(|g| g == "*" || g == group)
            && self.resources.iter().any(|r| resource_matches(r, resource, sub))
            && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name))
    }
}

/// `ResourceMatches`: `*`, exactly `resource/sub`, or `*/sub`; `nodes/*` is not a wildcard.
fn resource_matches(rule: &str, resource: &str, sub: &str) -> bool {
    if rule == "*" {
        return true;
    }
    if sub.is_empty() {
        return rule == resource;
    }
    // Compared piecewise so no "resource/sub" string is built per request.
    let exact = rule.strip_prefix(resource).and_then(|r| r.strip_prefix('/')) == Some(sub);
    exact || (rule.len() == sub.len() + 2 && rule.starts_with("*/") && rule.ends_with(sub))
}

/// `metav1.LabelSelectorAsSelector` semantics: an empty selector matches every role. A selector
/// upstream would reject (unknown operator, wrong values) makes the controller aggregate
/// nothing from it, so it matches nothing here.
fn selector_matches(s: &Selector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            let listed = value.is_some_and(|v| e.values.contains(v));
            match (e.operator.as_str(), e.values.is_empty()) {
                ("In", false) => listed,
                ("NotIn", false) => !listed,
                ("Exists", true) => value.is_some(),
                ("DoesNotExist", true) => value.is_none(),
                _ => false,
            }
        })
}

// ---- manifest shapes (unknown fields are ignored on purpose) ----

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct Header {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ListHeader {
    #[serde(default, deserialize_with = "null_as_empty")]
    items: Vec<Option<Header>>,
}

#[derive(Deserialize, Default)]
struct Meta {
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

/// A Role or ClusterRole (only the latter may aggregate).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleDoc {
    metadata: Option<Meta>,
    #[serde(default, deserialize_with = "null_as_empty")]
    rules: Vec<Rule>,
    aggregation_rule: Option<AggregationRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregationRule {
    #[serde(default, deserialize_with = "null_as_empty")]
    cluster_role_selectors: Vec<Selector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    match_expressions: Vec<Requirement>,
}

#[derive(Deserialize)]
struct Requirement {
    key: String,
    operator: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingDoc {
    metadata: Option<Meta>,
    #[serde(default, deserialize_with = "null_as_empty")]
    subjects: Vec<Subject>,
    role_ref: Option<RoleRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subject {
    kind: Option<String>,
    api_group: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleRef {
    api_group: Option<String>,
    kind: Option<String>,
    name: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

enum Body {
    Role(RoleDoc),
    Binding(BindingDoc),
}

impl Kind {
    /// RBAC kinds of the rbac.authorization.k8s.io group (any version: they share a schema);
    /// same-named kinds of other groups, e.g. CRDs, are someone else's objects.
    fn of(header: &Header) -> Option<Kind> {
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
struct ListSeed<'a>(&'a [Option<Kind>]);

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
fn split_documents(text: &str) -> Vec<(usize, &str)> {
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

struct Doc<'a> {
    path: &'a str,
    number: usize,
    first_line: usize,
    text: &'a str,
}

impl<'a> Doc<'a> {
    fn parse<T>(
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

    fn invalid(&self, message: String) -> RbacError {
        let (path, document) = (self.path.to_owned(), self.number);
        RbacError::Invalid {
            path,
            document,
            message,
        }
    }
}

// ---- loading, validation (pkg/apis/rbac/validation/validation.go) and indexing ----

struct ClusterRoleDef {
    labels: BTreeMap<String, String>,
    rules: Vec<Rule>,
    selectors: Option<Vec<Selector>>,
}

struct BindingDef {
    cluster_role: String,
    /// User names (service accounts already spelled as users) and group names.
    users: Vec<String>,
    groups: Vec<String>,
}

/// Named objects in load order; a later definition replaces an earlier one in place.
struct Store<T> {
    kind: &'static str,
    items: Vec<(String, bool, T)>,
    index: HashMap<String, usize>,
}

impl<T> Store<T> {
    fn new(kind: &'static str) -> Self {
        Store {
            kind,
            items: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn put(&mut self, name: String, builtin: bool, value: T, warnings: &mut Vec<String>) {
        let Some(&i) = self.index.get(&name) else {
            self.index.insert(name.clone(), self.items.len());
            return self.items.push((name, builtin, value));
        };
        let kind = self.kind;
        warnings.push(if self.items[i].1 {
            format!("{kind} {name} replaces the built-in {kind} of the same name")
        } else {
            format!("{kind} {name} is defined more than once; the last definition wins")
        });
        self.items[i] = (name, builtin, value);
    }
}

struct Builder {
    cluster_roles: Store<ClusterRoleDef>,
    bindings: Store<BindingDef>,
    warnings: Vec<String>,
}

impl Builder {
    fn with_builtins() -> Builder {
        let mut b = Builder {
            cluster_roles: Store::new("ClusterRole"),
            bindings: Store::new("ClusterRoleBinding"),
            warnings: Vec::new(),
        };
        for (name, labels, rules) in builtin::cluster_roles() {
            let def = ClusterRoleDef {
                labels,
                rules,
                selectors: None,
            };
            b.cluster_roles.put(name, true, def, &mut b.warnings);
        }
        for (name, cluster_role, users, groups) in builtin::cluster_role_bindings() {
            let def = BindingDef {
                cluster_role,
                users,
                groups,
            };
            b.bindings.put(name, true, def, &mut b.warnings);
        }
        b
    }

    fn add_source(&mut self, path: &str, text: &str) -> Result<(), RbacError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, (first_line, text)) in split_documents(text).into_iter().enumerate() {
            let doc = Doc {
                path,
                number: i + 1,
                first_line,
                text,
            };
            let Some(header) = doc.parse(|de| Option::<Header>::deserialize(de))? else {
                continue;
            };
            if let Some(kind) = Kind::of(&header) {
                let body = doc.parse(|de| kind.deserialize(de))?;
                self.add_object(kind, body, &doc, String::new())?;
            } else if header.kind.as_deref().is_some_and(|k| k.ends_with("List")) {
                let list = doc.parse(|de| ListHeader::deserialize(de))?;
                let kinds: Vec<_> = list.items.iter().map(|h| h.as_ref().and_then(Kind::of)).collect();
                if kinds.iter().any(Option::is_some) {
                    for (n, kind, body) in doc.parse(|de| ListSeed(&kinds).deserialize(de))? {
                        self.add_object(kind, body, &doc, format!("items[{n}]: "))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn add_object(&mut self, kind: Kind, body: Body, doc: &Doc<'_>, at: String) -> Result<(), RbacError> {
        let meta = match &body {
            Body::Role(d) => &d.metadata,
            Body::Binding(d) => &d.metadata,
        };
        let name = meta.as_ref().and_then(|m| m.name.clone()).filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| doc.invalid(format!("{at}{kind:?}: {}", required("metadata.name", ""))))?;
        let fail = |what: String| doc.invalid(format!("{at}{kind:?} {name:?}: {what}"));
        validate_name("metadata.name", &name).map_err(fail)?;
        let namespaced = matches!(kind, Kind::Role | Kind::RoleBinding);
        match body {
            Body::Role(d) => {
                validate_rules(&d.rules, namespaced).map_err(fail)?;
                if namespaced {
                    return Ok(()); // a Role can only serve a RoleBinding, which never applies here
                }
                if let Some(rule) = &d.aggregation_rule {
                    validate_aggregation(rule).map_err(fail)?;
                }
                let labels = d.metadata.and_then(|m| m.labels).unwrap_or_default();
                let selectors = d.aggregation_rule.map(|a| a.cluster_role_selectors);
                let def = ClusterRoleDef {
                    labels,
                    rules: d.rules,
                    selectors,
                };
                self.cluster_roles.put(name, false, def, &mut self.warnings);
            }
            Body::Binding(d) => {
                let cluster_role = validate_role_ref(d.role_ref, namespaced).map_err(fail)?;
                let mut def = subjects(&d.subjects, namespaced).map_err(fail)?;
                // A RoleBinding only ever grants inside its namespace, so it cannot allow a
                // cluster-scoped request: validated above, never indexed.
                if let (false, Some(cluster_role)) = (namespaced, cluster_role) {
                    def.cluster_role = cluster_role;
                    self.bindings.put(name, false, def, &mut self.warnings);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> RbacPolicy {
        let roles = aggregate(&self.cluster_roles.items);
        let (mut bindings, mut by_user, mut by_group) = (Vec::new(), HashMap::new(), HashMap::new());
        for (name, _, def) in &self.bindings.items {
            let Some(&role) = self.cluster_roles.index.get(&def.cluster_role) else {
                self.warnings.push(format!(
                    "ClusterRoleBinding {name} references ClusterRole {}, which is not defined",
                    def.cluster_role
                ));
                continue;
            };
            index_subjects(&mut by_user, &def.users, bindings.len());
            index_subjects(&mut by_group, &def.groups, bindings.len());
            bindings.push((format!("ClusterRoleBinding/{name}"), role));
        }
        RbacPolicy {
            roles,
            bindings,
            by_user,
            by_group,
            warnings: self.warnings,
        }
    }
}

fn index_subjects(map: &mut HashMap<String, Vec<usize>>, names: &[String], binding: usize) {
    for name in names {
        let list = map.entry(name.clone()).or_default();
        if list.last() != Some(&binding) {
            list.push(binding);
        }
    }
}

// Error texts are apimachinery's `field.Error` forms (`field.Required`, `field.Invalid`,
// `field.NotSupported`, `field.Forbidden` in k8s.io/apimachinery/pkg/util/validation/field/
// errors.go), so a refused manifest reads as `kubectl apply` would report it.

fn required(field: &str, detail: &str) -> String {
    match detail {
        "" => format!("{field}: Required value"),
        d => format!("{field}: Required value: {d}"),
    }
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> String {
    let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "{field}: Unsupported value: {value:?}: supported values: {}",
        supported.join(", ")
    )
}

/// Go's `%#v` of a `[]string`, as `field.Invalid` prints a list value.
fn go_strings(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// `ValidatePolicyRule` (kubernetes/kubernetes pkg/apis/rbac/validation/validation.go), rule by
/// rule and in its order. Today's upstream has no rule against `resourceNames` with several
/// resources (it was dropped long ago), so neither has this.
fn validate_rules(rules: &[Rule], namespaced: bool) -> Result<(), String> {
    for (i, r) in rules.iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        if r.verbs.is_empty() {
            return Err(required(&at("verbs"), "verbs must contain at least one value"));
        }
        if !r.non_resource_urls.is_empty() {
            let urls = go_strings(&r.non_resource_urls);
            if namespaced {
                return Err(format!(
                    "{}: Invalid value: {urls}: namespaced rules cannot apply to non-resource URLs",
                    at("nonResourceURLs")
                ));
            }
            if !(r.api_groups.is_empty() && r.resources.is_empty() && r.resource_names.is_empty()) {
                return Err(format!(
                    "{}: Invalid value: {urls}: rules cannot apply to both regular resources and non-resource URLs",
                    at("nonResourceURLs")
                ));
            }
            continue;
        }
        if r.api_groups.is_empty() {
            return Err(required(
                &at("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if r.resources.is_empty() {
            return Err(required(
                &at("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    Ok(())
}

/// `ValidateClusterRole`'s aggregation checks (same file): at least one selector, and each
/// requirement as `ValidateLabelSelectorRequirement` (k8s.io/apimachinery/pkg/apis/meta/v1/
/// validation/validation.go) has it. Label key and value syntax is not checked: a selector with
/// an odd key selects nothing here, as it would select nothing in a cluster.
fn validate_aggregation(rule: &AggregationRule) -> Result<(), String> {
    let at = "aggregationRule.clusterRoleSelectors";
    if rule.cluster_role_selectors.is_empty() {
        return Err(required(
            at,
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        ));
    }
    for (i, selector) in rule.cluster_role_selectors.iter().enumerate() {
        for (j, e) in selector.match_expressions.iter().enumerate() {
            let field = |f: &str| format!("{at}[{i}].matchExpressions[{j}].{f}");
            match (e.operator.as_str(), e.values.is_empty()) {
                ("In" | "NotIn", true) => {
                    return Err(required(
                        &field("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err(format!(
                        "{}: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                        field("values")
                    ));
                }
                ("In" | "NotIn" | "Exists" | "DoesNotExist", _) => {}
                (op, _) => {
                    return Err(format!(
                        "{}: Invalid value: {op:?}: not a valid selector operator",
                        field("operator")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `path.IsValidPathSegmentName` (k8s.io/apimachinery/pkg/api/validation/path/name.go), the
/// name rule `ValidateRBACName` applies to every RBAC object and to `roleRef.name`.
fn validate_name(field: &str, name: &str) -> Result<(), String> {
    let problem = match name {
        "." => "may not be '.'",
        ".." => "may not be '..'",
        n if n.contains('/') => "may not contain '/'",
        n if n.contains('%') => "may not contain '%'",
        _ => return Ok(()),
    };
    Err(format!("{field}: Invalid value: {name:?}: {problem}"))
}

/// Returns the ClusterRole a binding refers to (None for a Role). `ValidateRoleBinding` and
/// `ValidateClusterRoleBinding` (pkg/apis/rbac/validation/validation.go), after the v1 defaulting
/// that fills an omitted `roleRef.apiGroup` (pkg/apis/rbac/v1/defaults.go).
fn validate_role_ref(role_ref: Option<RoleRef>, namespaced: bool) -> Result<Option<String>, String> {
    let r = role_ref.ok_or_else(|| required("roleRef", ""))?;
    if let Some(g) = r.api_group.filter(|g| !g.is_empty() && g != RBAC_GROUP) {
        return Err(not_supported("roleRef.apiGroup", &g, &[RBAC_GROUP]));
    }
    let kind = r.kind.unwrap_or_default();
    let supported: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !supported.contains(&kind.as_str()) {
        return Err(not_supported("roleRef.kind", &kind, supported));
    }
    let name = r
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| required("roleRef.name", ""))?;
    validate_name("roleRef.name", &name)?;
    Ok((kind == "ClusterRole").then_some(name))
}

/// Returns the subjects in `appliesToUser` terms. `ValidateRoleBindingSubject` (same file), after
/// `SetDefaults_Subject` (pkg/apis/rbac/v1/defaults.go) fills an omitted `apiGroup`: users and
/// groups belong to the RBAC group, service accounts to the core group, and a ClusterRoleBinding's
/// service account needs its namespace. Not ported: the DNS-subdomain syntax of service account
/// names (a misspelt one matches nobody either way).
fn subjects(list: &[Subject], namespaced: bool) -> Result<BindingDef, String> {
    let (mut users, mut groups) = (Vec::new(), Vec::new());
    for (i, s) in list.iter().enumerate() {
        let at = |field: &str| format!("subjects[{i}].{field}");
        let name = s
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| required(&at("name"), ""))?;
        let kind = s.kind.as_deref().unwrap_or("");
        let group = s.api_group.as_deref().unwrap_or("");
        let namespace = s.namespace.as_deref().filter(|n| !n.is_empty());
        match kind {
            "User" | "Group" if !group.is_empty() && group != RBAC_GROUP => {
                return Err(not_supported(&at("apiGroup"), group, &[RBAC_GROUP]));
            }
            "ServiceAccount" if !group.is_empty() => {
                return Err(not_supported(&at("apiGroup"), group, &[""]));
            }
            "User" => users.push(name),
            "Group" => groups.push(name),
            "ServiceAccount" => match namespace {
                Some(ns) => users.push(format!("system:serviceaccount:{ns}:{name}")),
                None if !namespaced => return Err(required(&at("namespace"), "")),
                // A RoleBinding's service account defaults to the binding's namespace; such a
                // binding is never indexed (it cannot grant a cluster-scoped request).
                None => {}
            },
            other => {
                return Err(not_supported(&at("kind"), other, &["ServiceAccount", "User", "Group"]));
            }
        }
    }
    Ok(BindingDef {
        cluster_role: String::new(),
        users,
        groups,
    })
}

/// What the clusterrole-aggregation controller converges to, iterated to a fixed point so that
/// chains terminate and cycles (or self-selection, which upstream skips) cannot loop. Deviation
/// by design: upstream replaces an aggregated role's rules with the union; its own rules are kept
/// too, so a `kubectl get` dump (whose rules already hold the union) stays complete even when
/// some source roles are not in the files.
fn aggregate(defs: &[(String, bool, ClusterRoleDef)]) -> Vec<CompiledRole> {
    let mut rules: Vec<Vec<Rule>> = defs.iter().map(|(_, _, d)| d.rules.clone()).collect();
    let mut by_name: Vec<usize> = (0..defs.len()).collect();
    by_name.sort_by(|&a, &b| defs[a].0.cmp(&defs[b].0));
    let mut changed = true;
    while changed {
        changed = false;
        for (i, (_, _, def)) in defs.iter().enumerate() {
            let Some(selectors) = &def.selectors else {
                continue;
            };
            for &j in &by_name {
                if i == j || !selectors.iter().any(|s| selector_matches(s, &defs[j].2.labels)) {
                    continue;
                }
                for rule in rules[j].clone() {
                    if !rules[i].contains(&rule) {
                        rules[i].push(rule);
                        changed = true;
                    }
                }
            }
        }
    }
    let labels = defs.iter().map(|(name, _, _)| format!("ClusterRole/{name}"));
    labels
        .zip(rules)
        .map(|(label, rules)| CompiledRole::new(label, rules))
        .collect()
}
