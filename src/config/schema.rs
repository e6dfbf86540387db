//! The on-disk YAML schema (every field optional, exactly as written by the operator) and a
//! source index that maps key paths such as `authentication.webhook.cacheTTL` to lines, so
//! both parse errors and later validation errors can say where the offending field is.

use serde::{Deserialize, Serialize};
use serde_saphyr::MessageFormatter as _;
use serde_saphyr::granit_parser::{Event, Parser};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConfig {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub node_name: Option<String>,
    pub address: Option<String>,
    // Wider than a port so an out-of-range value gets the kubelet's message, not a type error.
    pub port: Option<i64>,
    pub cert_dir: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub tls_min_version: Option<String>,
    pub tls_cipher_suites: Option<Vec<String>>,
    pub node_addresses: Option<Vec<String>>,
    pub kubeconfig: Option<String>,
    pub bootstrap_kubeconfig: Option<String>,
    pub api_server: Option<RawApiServer>,
    pub authentication: Option<RawAuthentication>,
    pub authorization: Option<RawAuthorization>,
    pub feature_gates: Option<RawFeatureGates>,
    pub upstream: Option<RawUpstream>,
    pub logs: Option<RawLogs>,
    pub ops: Option<RawOps>,
    pub audit: Option<RawAudit>,
    pub limits: Option<super::limits::RawLimits>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawApiServer {
    pub request_timeout: Option<String>,
    pub max_in_flight: Option<i64>,
    pub stale_if_error: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAuthentication {
    pub x509: Option<RawX509>,
    pub webhook: Option<RawAuthnWebhook>,
    pub anonymous: Option<RawAnonymous>,
    pub token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawX509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAuthnWebhook {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
    pub audiences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAnonymous {
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAuthorization {
    pub mode: Option<String>,
    pub webhook: Option<RawAuthzWebhook>,
    pub rbac: Option<RawRbac>,
    pub exec_requires_create: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAuthzWebhook {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<String>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRbac {
    pub policy_files: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawFeatureGates {
    #[serde(rename = "KubeletFineGrainedAuthz")]
    pub kubelet_fine_grained_authz: Option<bool>,
    #[serde(rename = "PodLogsQuerySplitStreams")]
    pub pod_logs_query_split_streams: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawUpstream {
    pub read_only: Option<String>,
    pub connect_timeout: Option<String>,
    pub response_header_timeout: Option<String>,
    pub stream_idle_timeout: Option<String>,
    pub secure: Option<RawSecureUpstream>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSecureUpstream {
    pub url: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLogs {
    pub node_log_dir: Option<String>,
    pub pod_log_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawOps {
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawAudit {
    pub path: Option<String>,
}

/// A parse failure reduced to what `ConfigError` shows: where, which field, and why.
#[derive(Debug)]
pub(super) struct ParseFailure {
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

/// Deserializes the document; on failure, names the field at the error position.
pub(super) fn parse(text: &str) -> Result<RawConfig, ParseFailure> {
    serde_saphyr::from_str::<RawConfig>(text).map_err(|e| describe(text, &e))
}

fn describe(text: &str, err: &serde_saphyr::Error) -> ParseFailure {
    let err = err.without_snippet();
    let location = err.location().filter(|l| l.line() > 0);
    let line = location.and_then(|l| usize::try_from(l.line()).ok());
    let position = location.and_then(|l| {
        Some(Position {
            line: usize::try_from(l.line()).ok()?,
            column: usize::try_from(l.column()).ok()?,
        })
    });
    let index = SourceIndex::build(text);
    match err {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => {
            let path = position
                .and_then(|p| index.path_at(p, true))
                .filter(|p| p.rsplit('.').next() == Some(field.as_str()))
                .unwrap_or_else(|| field.clone());
            let message = if path.starts_with("featureGates.") {
                format!("unrecognized feature gate: {field}")
            } else {
                format!("unknown field {field:?}, expected one of: {}", expected.join(", "))
            };
            ParseFailure {
                line,
                field: Some(path),
                message,
            }
        }
        other => {
            let prefer_key = matches!(other, serde_saphyr::Error::DuplicateMappingKey { .. });
            let field = position
                .and_then(|p| index.path_at(p, prefer_key))
                .filter(|p| !p.is_empty());
            let message = match other {
                serde_saphyr::Error::InvalidScalar { ty, .. } => {
                    let offending = location
                        .map(|l| l.span())
                        .and_then(|s| Some((usize::try_from(s.offset()).ok()?, s.len())))
                        .filter(|&(_, len)| len > 0 && len <= 80)
                        .and_then(|(offset, len)| {
                            let len = usize::try_from(len).ok()?;
                            Some(text.chars().skip(offset).take(len).collect::<String>())
                        });
                    match offending {
                        Some(v) => format!("invalid value {v:?}: expected {}", describe_type(ty)),
                        None => format!("invalid value: expected {}", describe_type(ty)),
                    }
                }
                serde_saphyr::Error::Unexpected {
                    expected: "string scalar",
                    ..
                } => "expected a string, not a list or mapping".to_owned(),
                serde_saphyr::Error::Unexpected {
                    expected: "sequence start",
                    ..
                } => "expected a list".to_owned(),
                serde_saphyr::Error::Unexpected {
                    expected: "mapping start",
                    ..
                } => "expected a mapping".to_owned(),
                other => {
                    let raw = serde_saphyr::UserMessageFormatter.format_message(other);
                    // Display must stay one line whatever the parser put in its message.
                    raw.chars().flat_map(char::escape_debug).collect::<String>()
                }
            };
            ParseFailure { line, field, message }
        }
    }
}

fn describe_type(ty: &str) -> &str {
    match ty {
        "bool" | "boolean" => "true or false",
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" => "an integer",
        "f32" | "f64" => "a number",
        other => other,
    }
}

/// A 1-based line and column, as serde-saphyr reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug)]
struct Entry {
    path: String,
    start: Position,
    end: Position,
    is_key: bool,
}

/// Every key and node of the document with its dotted path (`a.b`, `a.list[2]`).
#[derive(Debug, Default)]
pub(super) struct SourceIndex {
    entries: Vec<Entry>,
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
        entry: Option<usize>,
    },
    Seq {
        path: String,
        next: usize,
        entry: Option<usize>,
    },
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl SourceIndex {
    /// Indexes the first document of `text`. A document the parser rejects yields whatever was
    /// indexed before the error: enough to place errors in the part that did parse.
    pub(super) fn build(text: &str) -> SourceIndex {
        let mut entries: Vec<Entry> = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let start = Position {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            let end = Position {
                line: span.end.line(),
                column: span.end.col() + 1,
            };
            let opens = match &event {
                Event::MappingStart(..) => Some(true),
                Event::SequenceStart(..) => Some(false),
                Event::Scalar(..) | Event::Alias(..) | Event::UnresolvedAlias(..) => None,
                Event::MappingEnd | Event::SequenceEnd => {
                    if let Some(Frame::Map { entry, .. } | Frame::Seq { entry, .. }) = stack.pop()
                        && let Some(e) = entry.and_then(|i| entries.get_mut(i))
                    {
                        e.end = end;
                    }
                    continue;
                }
                Event::DocumentEnd => break,
                _ => continue,
            };
            let (path, is_key) = match stack.last_mut() {
                None => (String::new(), false),
                Some(Frame::Map { path, pending_key, .. }) => match pending_key.take() {
                    Some(key) => (join(path, &key), false),
                    None => {
                        // Keys are almost always scalars; a collection key gets a placeholder.
                        let key = match &event {
                            Event::Scalar(text, ..) => text.to_string(),
                            _ => "?".to_owned(),
                        };
                        let full = join(path, &key);
                        *pending_key = Some(key);
                        (full, true)
                    }
                },
                Some(Frame::Seq { path, next, .. }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    (p, false)
                }
            };
            entries.push(Entry {
                path: path.clone(),
                start,
                end,
                is_key,
            });
            let entry = (!is_key).then(|| entries.len() - 1);
            match opens {
                Some(true) => stack.push(Frame::Map {
                    path,
                    pending_key: None,
                    entry,
                }),
                Some(false) => stack.push(Frame::Seq { path, next: 0, entry }),
                None => {}
            }
        }
        SourceIndex { entries }
    }

    /// The line of `path`: its key for a mapping entry, the node itself for a list element.
    pub(super) fn line_of(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .filter(|e| e.path == path)
            .min_by_key(|e| !e.is_key)
            .map(|e| e.start.line)
    }

    /// The path of the node at `pos`. A block mapping starts where its first key does, so the
    /// caller says whether the error is about a key (unknown or duplicate field) or a value.
    fn path_at(&self, pos: Position, prefer_key: bool) -> Option<String> {
        let exact = self
            .entries
            .iter()
            .rev()
            .find(|e| e.start == pos && e.is_key == prefer_key);
        let containing = || {
            self.entries
                .iter()
                .filter(|e| e.start <= pos && pos <= e.end)
                .max_by_key(|e| e.start)
        };
        exact.or_else(containing).map(|e| e.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_block_and_flow() {
        let text = "a: 1\nb:\n  c: [x, {d: 2}]\n  e:\n  - f: 1\n    g: 2\nh: {i: j}\n";
        let index = SourceIndex::build(text);
        assert_eq!(index.line_of("a"), Some(1));
        assert_eq!(index.line_of("b.c"), Some(3));
        assert_eq!(index.line_of("b.c[1].d"), Some(3));
        assert_eq!(index.line_of("b.e[0].g"), Some(6));
        assert_eq!(index.line_of("h.i"), Some(7));
        assert_eq!(index.line_of("nope"), None);
        let at = |line, column, key| index.path_at(Position { line, column }, key);
        assert_eq!(at(6, 8, false).as_deref(), Some("b.e[0].g"));
        assert_eq!(at(6, 5, true).as_deref(), Some("b.e[0].g"));
        assert_eq!(at(3, 3, true).as_deref(), Some("b.c"));
        assert_eq!(at(3, 3, false).as_deref(), Some("b"));
        assert_eq!(at(3, 10, false).as_deref(), Some("b.c[1]"));
    }

    #[test]
    fn parse_failure_names_nested_field() {
        let text = "apiVersion: v\nauthentication:\n  webhook: {enabled: maybe}\n";
        let failure = parse(text).err();
        let failure = failure.as_ref();
        assert_eq!(failure.and_then(|f| f.line), Some(3));
        assert_eq!(
            failure.and_then(|f| f.field.as_deref()),
            Some("authentication.webhook.enabled")
        );
    }
}
