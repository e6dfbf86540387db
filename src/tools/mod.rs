//! The operator tools, for the people who never run the gateway as a server.
//!
//! - [`explain`] runs one request through the gateway's own decision code, phase by phase
//!   (canonical path, mux, attributes, the review loop, the handler table, the exact bodies),
//!   against the configured authorizer, with a record of every review ([`authorizer`]).
//! - [`policy_test`] runs a table of requests and expected outcomes through the same code.
//! - [`diagnose`] connects to a node's port 10250 the way kube-apiserver does and says whether
//!   kube-apiserver would accept it, and why not.

pub mod authorizer;
pub mod diagnose;
pub mod explain;
pub mod policy_test;

/// How a tool prints its result: for people, or JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// A tool could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad usage or configuration: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A run-time failure: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    pub fn is_usage(&self) -> bool {
        matches!(self, ToolError::Usage(_))
    }
}

impl From<crate::app::StartError> for ToolError {
    fn from(e: crate::app::StartError) -> Self {
        if e.is_configuration() {
            ToolError::Usage(e.to_string())
        } else {
            ToolError::Failed(e.to_string())
        }
    }
}

/// Serializes a report for `--output json`, one document with a trailing newline.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
