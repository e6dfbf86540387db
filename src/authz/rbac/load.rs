//! Loading: each source's documents become validated ClusterRole and ClusterRoleBinding
//! definitions (a later one replacing an earlier one of the same name), which `finish` turns
//! into the policy: aggregated roles, bindings whose role exists, and the subject index.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde::de::DeserializeSeed;

use super::evaluation::{CompiledRole, selector_matches};
use super::manifest::{Body, Doc, Header, Kind, ListHeader, ListSeed, Rule, Selector, split_documents};
use super::validation::{required, subjects, validate_aggregation, validate_name, validate_role_ref, validate_rules};
use super::{RbacError, RbacPolicy, builtin};

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

pub(super) struct Builder {
    cluster_roles: Store<ClusterRoleDef>,
    bindings: Store<BindingDef>,
    warnings: Vec<String>,
}

impl Builder {
    pub(super) fn with_builtins() -> Builder {
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

    pub(super) fn add_source(&mut self, path: &str, text: &str) -> Result<(), RbacError> {
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
                let (users, groups) = subjects(&d.subjects, namespaced).map_err(fail)?;
                // A RoleBinding only ever grants inside its namespace, so it cannot allow a
                // cluster-scoped request: validated above, never indexed.
                if let (false, Some(cluster_role)) = (namespaced, cluster_role) {
                    let def = BindingDef {
                        cluster_role,
                        users,
                        groups,
                    };
                    self.bindings.put(name, false, def, &mut self.warnings);
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> RbacPolicy {
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
