//! Evaluation: does a rule allow a request? Pure functions over loaded rules, as upstream's
//! `RuleAllows` (`plugin/pkg/auth/authorizer/rbac/rbac.go`) combines the matchers of
//! `pkg/apis/rbac/v1/evaluation_helpers.go`, plus the label-selector test that aggregation uses.

use std::collections::{BTreeMap, HashMap};

use super::Request;
use super::manifest::{Rule, Selector};

/// A ClusterRole's effective rules, indexed by the resource they name (up to any `/`) so that a
/// request only checks rules that can match it, even when a subject is bound to large roles.
pub(super) struct CompiledRole {
    pub(super) label: String,
    rules: Vec<Rule>,
    by_resource: HashMap<String, Vec<usize>>,
    /// Rules naming `*` or `*/<sub>`, which can match any resource.
    wildcard: Vec<usize>,
}

impl CompiledRole {
    pub(super) fn new(label: String, rules: Vec<Rule>) -> CompiledRole {
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
    pub(super) fn first_match(&self, request: &Request<'_>) -> Option<usize> {
        let allows = |&i: &usize| self.rules[i].allows(request);
        let resource = request.resource;
        let head = resource.split('/').next().unwrap_or(resource);
        let named = self
            .by_resource
            .get(head)
            .and_then(|list| list.iter().copied().find(allows));
        let earlier = |&i: &usize| named.is_none_or(|n| i < n);
        self.wildcard.iter().copied().take_while(earlier).find(allows).or(named)
    }
}

impl Rule {
    /// `RuleAllows` for a resource request: nonResourceURLs are never consulted, as upstream.
    fn allows(&self, r: &Request<'_>) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == r.verb)
            && self.api_groups.iter().any(|g| g == "*" || g == r.api_group)
            && self
                .resources
                .iter()
                .any(|x| resource_matches(x, r.resource, r.subresource))
            && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == r.name))
    }
}

/// `ResourceMatches`: `*`, exactly `resource/sub`, or `*/sub`; `nodes/*` is not a wildcard.
pub(super) fn resource_matches(rule: &str, resource: &str, sub: &str) -> bool {
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
pub(super) fn selector_matches(s: &Selector, labels: &BTreeMap<String, String>) -> bool {
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
