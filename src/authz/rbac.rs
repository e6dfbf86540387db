//! Offline Kubernetes RBAC for the gateway: loads Role/ClusterRole/RoleBinding/ClusterRoleBinding
//! manifests (plus the bootstrap policy in `rbac_builtin`) and answers cluster-scoped resource
//! requests such as `get nodes/proxy` the way kube-apiserver's RBAC authorizer does
//! (`plugin/pkg/auth/authorizer/rbac/rbac.go`, `pkg/registry/rbac/validation/rule.go`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::rbac_builtin;

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

    /// Evaluates a cluster-scoped resource request. Returns the first grant found, or None
    /// (deny / no opinion).
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
    ) -> Option<Grant> {
        let g = self.authorize_ref(user, groups, verb, api_group, resource, subresource, name)?;
        let (binding, role) = (g.binding.to_owned(), g.role.to_owned());
        Some(Grant {
            binding,
            role,
            rule_index: g.rule_index,
        })
    }

    /// Allocation-free [`RbacPolicy::authorize`]. Upstream visits bindings in informer order,
    /// which is unspecified; the earliest-loaded granting binding (built-ins, then files in
    /// order) is reported so `explain` output is stable.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize_ref(
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
struct Subject {
    kind: Option<String>,
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
        for (name, labels, rules) in rbac_builtin::cluster_roles() {
            let def = ClusterRoleDef {
                labels,
                rules,
                selectors: None,
            };
            b.cluster_roles.put(name, true, def, &mut b.warnings);
        }
        for (name, cluster_role, users, groups) in rbac_builtin::cluster_role_bindings() {
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
        let name = name.ok_or_else(|| doc.invalid(format!("{at}{kind:?}: metadata.name: Required value")))?;
        let fail = |what: String| doc.invalid(format!("{at}{kind:?} {name:?}: {what}"));
        let namespaced = matches!(kind, Kind::Role | Kind::RoleBinding);
        match body {
            Body::Role(d) => {
                validate_rules(&d.rules, namespaced).map_err(fail)?;
                if namespaced {
                    return Ok(()); // a Role can only serve a RoleBinding, which never applies here
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
                let mut unmatchable = Vec::new();
                let mut def = subjects(&d.subjects, namespaced, &mut unmatchable).map_err(fail)?;
                // A RoleBinding only ever grants inside its namespace, so it cannot allow a
                // cluster-scoped request: validated above, never indexed.
                if let (false, Some(cluster_role)) = (namespaced, cluster_role) {
                    for sa in unmatchable {
                        let why = "has no namespace and never matches";
                        self.warnings
                            .push(format!("ClusterRoleBinding {name}: ServiceAccount subject {sa} {why}"));
                    }
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

fn validate_rules(rules: &[Rule], namespaced: bool) -> Result<(), String> {
    for (i, r) in rules.iter().enumerate() {
        let mixed = !(r.api_groups.is_empty() && r.resources.is_empty() && r.resource_names.is_empty());
        let problem = if r.verbs.is_empty() {
            "verbs: Required value: verbs must contain at least one value"
        } else if !r.non_resource_urls.is_empty() && namespaced {
            "nonResourceURLs: namespaced rules cannot apply to non-resource URLs"
        } else if !r.non_resource_urls.is_empty() && mixed {
            "nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs"
        } else if !r.non_resource_urls.is_empty() {
            continue;
        } else if r.api_groups.is_empty() {
            "apiGroups: Required value: resource rules must supply at least one api group"
        } else if r.resources.is_empty() {
            "resources: Required value: resource rules must supply at least one resource"
        } else if !r.resource_names.is_empty() && r.resources.len() > 1 {
            "resourceNames: resource names cannot apply to multiple resources"
        } else {
            continue;
        };
        return Err(format!("rules[{i}].{problem}"));
    }
    Ok(())
}

/// Returns the ClusterRole a binding refers to (None for a Role).
fn validate_role_ref(role_ref: Option<RoleRef>, namespaced: bool) -> Result<Option<String>, String> {
    let r = role_ref.ok_or("roleRef: Required value")?;
    // Upstream also rejects an omitted apiGroup; that changes nothing here, so it is tolerated.
    if let Some(g) = r.api_group.filter(|g| !g.is_empty() && g != RBAC_GROUP) {
        return Err(format!("roleRef.apiGroup: Unsupported value: {g:?}"));
    }
    let name = r.name.filter(|n| !n.is_empty()).ok_or("roleRef.name: Required value")?;
    match r.kind.as_deref() {
        Some("ClusterRole") => Ok(Some(name)),
        Some("Role") if namespaced => Ok(None),
        other => Err(format!("roleRef.kind: Unsupported value: {:?}", other.unwrap_or(""))),
    }
}

/// Returns the subjects in `appliesToUser` terms, collecting ServiceAccounts without a namespace
/// (which a ClusterRoleBinding can never match) into `unmatchable`.
fn subjects(list: &[Subject], namespaced: bool, unmatchable: &mut Vec<String>) -> Result<BindingDef, String> {
    let (mut users, mut groups) = (Vec::new(), Vec::new());
    for (i, s) in list.iter().enumerate() {
        let name = s.name.clone().filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| format!("subjects[{i}].name: Required value"))?;
        match (s.kind.as_deref(), s.namespace.as_deref().filter(|n| !n.is_empty())) {
            (Some("User"), _) => users.push(name),
            (Some("Group"), _) => groups.push(name),
            (Some("ServiceAccount"), Some(ns)) => users.push(format!("system:serviceaccount:{ns}:{name}")),
            // A RoleBinding defaults the namespace to its own; upstream validation would reject
            // the ClusterRoleBinding case, and `appliesToUser` never matches it.
            (Some("ServiceAccount"), None) => unmatchable.extend((!namespaced).then_some(name)),
            (other, _) => {
                return Err(format!(
                    "subjects[{i}].kind: Unsupported value: {:?}",
                    other.unwrap_or("")
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn try_load(yaml: &str) -> Result<RbacPolicy, RbacError> {
        RbacPolicy::from_sources(&[("policy.yaml".to_owned(), yaml.to_owned())])
    }

    fn load(yaml: &str) -> RbacPolicy {
        try_load(yaml).unwrap_or_else(|e| panic!("load failed: {e}"))
    }

    fn load_err(yaml: &str) -> RbacError {
        try_load(yaml).err().expect("loading should fail")
    }

    /// ClusterRoleBinding `name` of ClusterRole `role` to flow-style `subjects`.
    fn crb(name: &str, role: &str, subjects: &str) -> String {
        let role_ref = format!("{{apiGroup: {RBAC_GROUP}, kind: ClusterRole, name: {role}}}");
        format!(
            "---\nkind: ClusterRoleBinding\nmetadata: {{name: {name}}}\nroleRef: {role_ref}\nsubjects: [{subjects}]\n"
        )
    }

    /// ClusterRole `r` holding the flow-style `rule`, bound to User alice.
    fn bound(rule: &str) -> RbacPolicy {
        let role = format!("apiVersion: {RBAC_GROUP}/v1\nkind: ClusterRole\nmetadata: {{name: r}}\nrules: [{rule}]\n");
        load(&(role + &crb("b", "r", "{kind: User, name: alice}")))
    }

    fn rule(resource: &str, verb: &str) -> RbacPolicy {
        bound(&format!(
            "{{apiGroups: [\"\"], resources: [\"{resource}\"], verbs: [\"{verb}\"]}}"
        ))
    }

    fn can(p: &RbacPolicy, user: &str, groups: &[&str], verb: &str, sub: &str) -> bool {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        p.authorize(user, &groups, verb, "", "nodes", sub, "node-1").is_some()
    }

    #[test]
    fn verbs_match_exactly_or_by_wildcard_and_the_empty_verb_only_by_wildcard() {
        let p = rule("nodes/proxy", "get");
        assert!(can(&p, "alice", &[], "get", "proxy") && !can(&p, "bob", &[], "get", "proxy"));
        assert!(!can(&p, "alice", &[], "create", "proxy") && !can(&p, "alice", &[], "", "proxy"));
        let p = rule("nodes/proxy", "*");
        assert!(can(&p, "alice", &[], "create", "proxy") && can(&p, "alice", &[], "", "proxy"));
    }

    #[test]
    fn api_groups_match_exactly_or_by_wildcard() {
        let star = bound("{apiGroups: [\"*\"], resources: [nodes/proxy], verbs: [get]}");
        let apps = bound("{apiGroups: [apps], resources: [nodes/proxy], verbs: [get]}");
        let ask = |p: &RbacPolicy, group| p.authorize("alice", &[], "get", group, "nodes", "proxy", "n").is_some();
        assert!(ask(&star, "") && ask(&star, "apps"));
        assert!(!ask(&apps, "") && ask(&apps, "apps"));
    }

    #[test]
    fn resources_follow_upstream_resource_matches() {
        let cases = [
            ("*", "proxy", true),
            ("nodes/proxy", "proxy", true),
            ("nodes/proxy", "stats", false),
            ("*/proxy", "proxy", true),
            ("*/proxy", "stats", false),
            // Not a wildcard in kube-apiserver: only `*` and `*/<sub>` are (evaluation_helpers.go).
            ("nodes/*", "proxy", false),
            ("nodes", "proxy", false),
            ("nodes", "", true),
            ("*/proxy", "", false),
        ];
        for (resource, sub, want) in cases {
            let got = can(&rule(resource, "get"), "alice", &[], "get", sub);
            assert_eq!(got, want, "{resource} vs nodes/{sub}");
        }
        for near_miss in ["nodes//proxy", "xnodes/proxy", "nodes/proxyx", "*/proxyx"] {
            assert!(!resource_matches(near_miss, "nodes", "proxy"), "{near_miss}");
        }
    }

    #[test]
    fn resource_names_restrict_when_present() {
        let p = bound("{apiGroups: [\"\"], resources: [nodes/proxy], resourceNames: [node-1], verbs: [get]}");
        assert!(can(&p, "alice", &[], "get", "proxy"));
        assert!(
            p.authorize("alice", &[], "get", "", "nodes", "proxy", "node-2")
                .is_none()
        );
    }

    #[test]
    fn non_resource_url_rules_never_match_resource_requests() {
        let p = bound("{nonResourceURLs: [\"*\"], verbs: [\"*\"]}");
        assert!(!can(&p, "alice", &[], "get", "proxy") && !can(&p, "alice", &[], "get", ""));
    }

    #[test]
    fn users_groups_and_service_accounts() {
        let subjects = "{kind: Group, name: ops}, {kind: ServiceAccount, name: mon, namespace: obs}, \
                        {kind: ServiceAccount, name: orphan}, {kind: User, name: \"*\"}";
        let p = load(&crb("kubelet", "system:kubelet-api-admin", subjects));
        assert!(can(&p, "carol", &["dev", "ops"], "get", "proxy"));
        assert!(
            !can(&p, "ops", &["dev"], "get", "proxy"),
            "a user named like a group is not in it"
        );
        assert!(can(&p, "system:serviceaccount:obs:mon", &[], "get", "stats"));
        assert!(!can(&p, "system:serviceaccount:obs:monx", &[], "get", "stats"));
        assert!(!can(&p, "system:serviceaccount:ob:mon", &[], "get", "stats"));
        // Without a namespace, a ClusterRoleBinding's ServiceAccount subject matches nobody.
        for user in [
            "system:serviceaccount::orphan",
            "system:serviceaccount:default:orphan",
            "orphan",
        ] {
            assert!(!can(&p, user, &[], "get", "stats"), "{user}");
        }
        assert!(
            p.warnings()
                .iter()
                .any(|w| w.contains("orphan has no namespace and never matches"))
        );
        // `*` is a literal name in appliesToUser, not a wildcard.
        assert!(!can(&p, "bob", &[], "get", "proxy") && can(&p, "*", &[], "get", "proxy"));
    }

    #[test]
    fn role_bindings_never_grant_cluster_scoped_requests() {
        let yaml = "kind: RoleBinding
metadata: {name: rb, namespace: obs}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{kind: User, name: alice}, {kind: ServiceAccount, name: mon}]
---
kind: Role
metadata: {name: local, namespace: obs}
rules: [{apiGroups: [\"\"], resources: [nodes/proxy], verbs: [\"*\"]}]
---
kind: RoleBinding
metadata: {name: rb2, namespace: obs}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: local}
subjects: [{kind: User, name: alice}]
";
        let p = load(yaml);
        assert!(
            !can(&p, "alice", &[], "get", "proxy") && !can(&p, "system:serviceaccount:obs:mon", &[], "get", "proxy")
        );
        assert!(p.warnings().is_empty(), "{:?}", p.warnings());
        // Still validated: a Role cannot hold nonResourceURLs.
        let bad = "kind: Role\nmetadata: {name: x}\nrules: [{nonResourceURLs: [/x], verbs: [get]}]\n";
        assert!(
            load_err(bad)
                .to_string()
                .contains("namespaced rules cannot apply to non-resource URLs")
        );
    }

    #[test]
    fn binding_to_a_missing_role_grants_nothing_and_warns() {
        let p = load(&crb("foo", "bar", "{kind: User, name: alice}"));
        assert!(!can(&p, "alice", &[], "get", "proxy"));
        assert_eq!(
            p.warnings(),
            ["ClusterRoleBinding foo references ClusterRole bar, which is not defined"]
        );
    }

    #[test]
    fn multi_document_files_lists_and_unrelated_kinds() {
        let yaml = r#"# cluster dump
%YAML 1.2
---
apiVersion: v1
kind: Namespace
metadata: {name: obs}
--- # a List mixing kinds, as `kubectl get -o yaml` prints several resource types
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: mon, namespace: obs}
  rules: this item is not RBAC, so its fields are never typed
- apiVersion: example.com/v1
  kind: ClusterRole
  rules: {also: skipped}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata:
    name: reader
    labels: {app.kubernetes.io/name: mon}
    annotations: {rbac.authorization.kubernetes.io/autoupdate: "true"}
    creationTimestamp: "2024-01-01T00:00:00Z"
  rules:
  - apiGroups: [""]
    resources: [nodes/stats, nodes/metrics]
    verbs: [get, list]
...
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBindingList
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: reader, uid: 0b5c}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
  subjects:
  - {kind: ServiceAccount, name: mon, namespace: obs}
status: {phase: whatever}
"#;
        let p = load(yaml);
        let sa = "system:serviceaccount:obs:mon";
        assert!(can(&p, sa, &[], "get", "stats") && can(&p, sa, &[], "list", "metrics"));
        assert!(!can(&p, sa, &[], "get", "proxy"));
        assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    }

    #[test]
    fn splits_documents_on_markers_only() {
        let text = "# c\n%YAML 1.2\n---\na: 1\n--- # x\n---\nb: |\n  ---x\n  text\n...\n# tail\n--- {c: 3}\n";
        let docs = split_documents(text);
        assert_eq!(docs.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [1, 6, 11]);
        assert!(docs[0].1.starts_with("# c\n%YAML 1.2\n---\na: 1"));
        assert!(docs[1].1.contains("---x") && docs[1].1.ends_with("...\n"));
        assert_eq!(split_documents("x: 1").len(), 1);
        assert!(split_documents("# nothing\n---\n").is_empty());
    }

    #[test]
    fn malformed_rbac_documents_name_file_document_and_line() {
        let yaml =
            "kind: Namespace\nmetadata: {name: a}\n---\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n- verbs: get\n";
        let err = load_err(yaml);
        assert!(matches!(&err, RbacError::Parse { path, document: 2, line: Some(7), .. } if path == "policy.yaml"));
        let msg = err.to_string();
        assert!(
            msg.starts_with("policy.yaml: document 2:") && msg.contains("line 7"),
            "{msg}"
        );

        let no_ref = format!("kind: Namespace\n{}", crb("b", "r", "").replace("roleRef", "roleRf"));
        let err = load_err(&no_ref);
        assert!(matches!(&err, RbacError::Invalid { document: 2, message, .. }
            if message == "ClusterRoleBinding \"b\": roleRef: Required value"));
        let in_list =
            "kind: List\nitems:\n- kind: ClusterRole\n  metadata: {name: r}\n  rules: [{verbs: [get, [x]]}]\n";
        assert!(matches!(
            load_err(in_list),
            RbacError::Parse {
                document: 1,
                line: Some(5),
                ..
            }
        ));
        let checks = [
            (
                "kind: ClusterRole\nmetadata: {}\n",
                "ClusterRole: metadata.name: Required value",
            ),
            (
                "kind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [\"\"], resources: [nodes]}]",
                "rules[0].verbs",
            ),
            (
                "kind: Role\nmetadata: {name: r}\nrules: [{apiGroups: [\"\"], verbs: [get]}]\n",
                "rules[0].resources",
            ),
            (
                "kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\n",
                "roleRef.kind",
            ),
            (
                "kind: RoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: User}]",
                "subjects[0].name",
            ),
            (
                "kind: RoleBinding\nmetadata: {name: b}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: user, name: a}]",
                ".kind",
            ),
            ("kind: ClusterRole\nmetadata: {name: r\n", "line 2"),
        ];
        for (yaml, want) in checks {
            let msg = load_err(yaml).to_string();
            assert!(
                msg.starts_with("policy.yaml: document 1: ") && msg.contains(want),
                "{msg}"
            );
        }
        let missing = RbacPolicy::load(&[PathBuf::from("/nonexistent/rbac.yaml")]).err();
        assert!(matches!(missing, Some(RbacError::Io { .. })));
    }

    #[test]
    fn aggregation_adds_matching_cluster_roles_and_terminates_on_cycles() {
        let role = |name: &str, labels: &str, selector: &str, sub: &str| {
            let meta = format!("metadata: {{name: {name}, labels: {{{labels}}}}}");
            let rules = format!("rules: [{{apiGroups: [\"\"], resources: [nodes/{sub}], verbs: [get]}}]");
            let agg = format!("aggregationRule: {{clusterRoleSelectors: [{selector}]}}");
            let agg = if selector.is_empty() { String::new() } else { agg };
            format!("---\nkind: ClusterRole\n{meta}\n{rules}\n{agg}\n")
        };
        let yaml = [
            role(
                "agg",
                "pick: y",
                "{matchLabels: {pick: y}}, {matchExpressions: [{key: t, operator: In, values: [k]}]}",
                "log",
            ),
            role("a", "pick: y", "", "stats"),
            role("b", "t: k", "", "metrics"),
            role("c", "t: other", "", "proxy"),
            role("x", "ring: x", "{matchLabels: {ring: y}}", "pods"),
            role("y", "ring: y", "{matchLabels: {ring: x}}", "healthz"),
            crb("agg", "agg", "{kind: User, name: alice}"),
            crb("x", "x", "{kind: User, name: bob}"),
        ]
        .concat();
        let p = load(&yaml);
        for (sub, want) in [("log", true), ("stats", true), ("metrics", true), ("proxy", false)] {
            assert_eq!(can(&p, "alice", &[], "get", sub), want, "agg nodes/{sub}");
        }
        assert!(can(&p, "bob", &[], "get", "healthz") && can(&p, "bob", &[], "get", "pods"));
        let grant = p.authorize("alice", &[], "get", "", "nodes", "metrics", "n");
        assert_eq!(
            grant.map(|g| (g.role, g.rule_index)),
            Some(("ClusterRole/agg".to_owned(), 2))
        );

        let labels = BTreeMap::from([("t".to_owned(), "k".to_owned())]);
        let matches = |op: &str, values: &[&str]| {
            let values = values.iter().map(|v| (*v).to_owned()).collect();
            let requirement = Requirement {
                key: "t".to_owned(),
                operator: op.to_owned(),
                values,
            };
            selector_matches(
                &Selector {
                    match_labels: None,
                    match_expressions: vec![requirement],
                },
                &labels,
            )
        };
        assert!(matches("NotIn", &["other"]) && !matches("NotIn", &["k"]));
        assert!(matches("Exists", &[]) && !matches("DoesNotExist", &[]));
        assert!(
            !matches("In", &[]) && !matches("Exists", &["k"]),
            "invalid selectors select nothing"
        );
        let empty = Selector {
            match_labels: None,
            match_expressions: Vec::new(),
        };
        assert!(
            selector_matches(&empty, &BTreeMap::new()),
            "an empty selector selects everything"
        );
    }

    #[test]
    fn builtin_kubelet_api_admin_through_a_user_binding() {
        let p = load(&crb(
            "apiserver-kubelet",
            "system:kubelet-api-admin",
            "{kind: User, name: kube-apiserver}",
        ));
        let ask = |verb: &str, sub: &str| p.authorize("kube-apiserver", &[], verb, "", "nodes", sub, "node-1");
        let expected = Grant {
            binding: "ClusterRoleBinding/apiserver-kubelet".to_owned(),
            role: "ClusterRole/system:kubelet-api-admin".to_owned(),
            rule_index: 2,
        };
        assert_eq!(ask("get", "proxy"), Some(expected));
        assert!(ask("create", "proxy").is_some() && ask("get", "stats").is_some());
        assert_eq!(ask("get", "pods").map(|g| g.rule_index), Some(3));
        assert!(ask("get", "checkpoint").is_none() && ask("get", "spec").is_none());
        assert!(ask("proxy", "").is_some() && ask("delete", "").is_none());
        assert!(p.warnings().is_empty());
    }

    #[test]
    fn system_masters_get_everything_through_builtin_cluster_admin() {
        let p = load("");
        let masters = ["system:masters".to_owned()];
        for (verb, sub) in [("get", "proxy"), ("create", "checkpoint"), ("", "log")] {
            let grant = p
                .authorize("root", &masters, verb, "", "nodes", sub, "n")
                .expect("cluster-admin");
            assert_eq!(grant.binding, "ClusterRoleBinding/cluster-admin");
            assert_eq!(
                (grant.role.as_str(), grant.rule_index),
                ("ClusterRole/cluster-admin", 0)
            );
        }
        assert!(
            p.authorize("root", &masters, "delete", "apps", "deployments", "", "x")
                .is_some()
        );
        assert!(!can(&p, "root", &[], "get", "proxy"));
        assert!(can(&p, "system:kube-proxy", &[], "get", "") && !can(&p, "system:kube-proxy", &[], "get", "proxy"));
        assert!(p.warnings().is_empty());
    }

    #[test]
    fn declared_objects_replace_builtins_of_the_same_name() {
        let role = "kind: ClusterRole\nmetadata: {name: cluster-admin}\nrules: [{apiGroups: [\"\"], resources: [nodes/stats], verbs: [get]}]\n";
        let p = load(role);
        assert!(can(&p, "root", &["system:masters"], "get", "stats"));
        assert!(!can(&p, "root", &["system:masters"], "get", "proxy"));
        assert_eq!(
            p.warnings(),
            ["ClusterRole cluster-admin replaces the built-in ClusterRole of the same name"]
        );

        let p = load(&crb("cluster-admin", "cluster-admin", "{kind: Group, name: admins}"));
        assert!(!can(&p, "root", &["system:masters"], "get", "proxy") && can(&p, "root", &["admins"], "get", "proxy"));
        assert!(p.warnings()[0].contains("replaces the built-in ClusterRoleBinding"));
        let twice = crb("b", "cluster-admin", "{kind: User, name: a}") + &crb("b", "cluster-admin", "");
        let p = load(&twice);
        assert!(!can(&p, "a", &[], "get", "proxy"), "the later definition wins");
        assert!(p.warnings()[0].contains("defined more than once"));
    }

    #[test]
    fn earliest_loaded_binding_wins_and_borrowed_grants_agree() {
        let yaml = crb("one", "system:kubelet-api-admin", "{kind: Group, name: g}")
            + &crb("two", "cluster-admin", "{kind: User, name: alice}");
        let p = load(&yaml);
        let groups = ["g".to_owned()];
        let grant = p
            .authorize_ref("alice", &groups, "get", "", "nodes", "proxy", "n")
            .expect("granted");
        assert_eq!(
            (grant.binding, grant.role, grant.rule_index),
            ("ClusterRoleBinding/one", "ClusterRole/system:kubelet-api-admin", 2)
        );
        let owned = p
            .authorize("alice", &groups, "get", "", "nodes", "proxy", "n")
            .expect("granted");
        assert_eq!(
            (owned.binding.as_str(), owned.role.as_str(), owned.rule_index),
            (grant.binding, grant.role, 2)
        );
    }

    #[test]
    fn policy_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RbacPolicy>();
    }
}
