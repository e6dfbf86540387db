//! Offline Kubernetes RBAC for the gateway: loads Role/ClusterRole/RoleBinding/ClusterRoleBinding
//! manifests (plus the bootstrap policy in `builtin`) and answers cluster-scoped resource
//! requests such as `get nodes/proxy` the way kube-apiserver's RBAC authorizer does
//! (`plugin/pkg/auth/authorizer/rbac/rbac.go`, `pkg/registry/rbac/validation/rule.go`).
//!
//! A policy file travels `manifest` (documents and their serde shapes) → `validation` (the API
//! server's checks) → `load` (replacement, aggregation, indexing by subject); a request is then
//! answered here from the index with the pure matchers of `evaluation`.

mod builtin;
mod evaluation;
mod load;
mod manifest;
pub mod reload;
#[cfg(test)]
mod tests;
mod validation;

use std::collections::HashMap;
use std::path::PathBuf;

use evaluation::CompiledRole;
use load::Builder;

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

/// A cluster-scoped resource request, borrowed from the caller: the parts of upstream's
/// `authorizer.Attributes` that RBAC reads when the namespace is empty. More general than the
/// gateway's own `authz::Attributes` (always `nodes` in the core group), so policies can be
/// checked against any resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    /// `""` for the core group.
    pub api_group: &'a str,
    pub resource: &'a str,
    /// `""` when the request names no subresource.
    pub subresource: &'a str,
    /// The object's name, which `resourceNames` restricts; `""` for a collection.
    pub name: &'a str,
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
    /// ClusterRoleBindings whose role exists, as (`ClusterRoleBinding/<name>`, role index).
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
    pub fn authorize(&self, request: &Request<'_>) -> Option<GrantRef<'_>> {
        let mut best: Option<(usize, usize)> = None;
        let by_group = request.groups.iter().filter_map(|g| self.by_group.get(g.as_str()));
        for candidates in self.by_user.get(request.user).into_iter().chain(by_group) {
            for &b in candidates {
                if best.is_some_and(|(found, _)| b >= found) {
                    break; // candidate lists are ascending
                }
                let role = &self.roles[self.bindings[b].1];
                if let Some(rule) = role.first_match(request) {
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
