//! Validation of RBAC objects as kube-apiserver admits them
//! (pkg/apis/rbac/validation/validation.go): a manifest the API server would refuse is refused
//! here too, with the message `kubectl apply` would print.

use super::manifest::{AggregationRule, RBAC_GROUP, RoleRef, Rule, Subject};

// Error texts are apimachinery's `field.Error` forms (`field.Required`, `field.Invalid`,
// `field.NotSupported`, `field.Forbidden` in k8s.io/apimachinery/pkg/util/validation/field/
// errors.go), so a refused manifest reads as `kubectl apply` would report it.

pub(super) fn required(field: &str, detail: &str) -> String {
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
pub(super) fn validate_rules(rules: &[Rule], namespaced: bool) -> Result<(), String> {
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
pub(super) fn validate_aggregation(rule: &AggregationRule) -> Result<(), String> {
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
pub(super) fn validate_name(field: &str, name: &str) -> Result<(), String> {
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
pub(super) fn validate_role_ref(role_ref: Option<RoleRef>, namespaced: bool) -> Result<Option<String>, String> {
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
pub(super) fn subjects(list: &[Subject], namespaced: bool) -> Result<(Vec<String>, Vec<String>), String> {
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
    Ok((users, groups))
}
