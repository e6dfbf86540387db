//! `policy-test`: a table of identities, requests and expected outcomes, each run through
//! [`explain`](super::explain) (the gateway's own decision code) against the configured
//! authorizer; a report of the mismatches.
//!
//! ```yaml
//! cases:
//! - name: the API server may exec
//!   user: kube-apiserver-kubelet-client
//!   groups: []
//!   method: POST          # default GET
//!   path: /exec/default/web/app
//!   expect: allow         # allow | deny | an HTTP status
//! ```
//!
//! `allow`: authorization allowed the request (it is forwarded, or answered by the handler
//! table, e.g. 405 for an endpoint that needs the kubelet's private API). `deny`: the gateway
//! refuses the caller, 401 (no acceptable credential) or 403 (not authorized). A status: the
//! status the gateway itself sends; a forwarded request's status is the upstream's, so only
//! `allow` can be expected of it. `anonymous: true` (or `user: system:anonymous`) is a request
//! without credentials.

use std::fmt::{self, Write as _};
use std::path::Path;

use http::Method;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::ToolError;
use super::explain::{Decision, Explainer, Explanation, Identity, Request};

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Allow,
    Deny,
    Status(u16),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allow => f.write_str("allow"),
            Expect::Deny => f.write_str("deny"),
            Expect::Status(s) => write!(f, "{s}"),
        }
    }
}

impl Serialize for Expect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expect::Status(n) => s.serialize_u16(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expect, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("allow, deny or an HTTP status (100-599)")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Expect, E> {
                match u16::try_from(n) {
                    Ok(s @ 100..=599) => Ok(Expect::Status(s)),
                    _ => Err(E::custom(format!("{n} is not an HTTP status (100-599)"))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Expect, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{n} is not an HTTP status (100-599)"))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Expect, E> {
                match s {
                    "allow" => Ok(Expect::Allow),
                    "deny" => Ok(Expect::Deny),
                    _ => match s.parse::<u64>() {
                        Ok(n) => self.visit_u64(n),
                        Err(_) => Err(E::custom(format!("expect: {s:?} is not allow, deny or an HTTP status"))),
                    },
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn default_method() -> String {
    "GET".into()
}

/// One row of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    pub expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    cases: Vec<Case>,
}

/// Reads and checks a cases file; every problem names the file (and the case or line).
pub fn load(path: &Path) -> Result<Vec<(Case, Request)>, ToolError> {
    let text = std::fs::read_to_string(path).map_err(|e| ToolError::Usage(format!("{}: {e}", path.display())))?;
    parse(&path.display().to_string(), &text)
}

pub fn parse(name: &str, text: &str) -> Result<Vec<(Case, Request)>, ToolError> {
    let file: CasesFile = serde_saphyr::from_str(text).map_err(|e| ToolError::Usage(format!("{name}: {e}")))?;
    if file.cases.is_empty() {
        return Err(ToolError::Usage(format!("{name}: no cases")));
    }
    let mut out = Vec::with_capacity(file.cases.len());
    for (i, case) in file.cases.into_iter().enumerate() {
        let bad = |why: String| ToolError::Usage(format!("{name}: case {} ({:?}): {why}", i + 1, case.name));
        let method = Method::from_bytes(case.method.as_bytes())
            .map_err(|_| bad(format!("method {:?} is not an HTTP method", case.method)))?;
        let identity = Identity::new(case.user.as_deref(), &case.groups, case.anonymous).map_err(bad)?;
        if case.path.is_empty() {
            return Err(bad("path is empty".into()));
        }
        let request = Request {
            method,
            target: case.path.clone(),
            identity,
        };
        out.push((case, request));
    }
    Ok(out)
}

/// Whether an explanation meets an expectation, and if not, why not in a few words.
pub fn judge(expect: Expect, x: &Explanation) -> Result<(), String> {
    let ok = match expect {
        Expect::Allow => x.decision == Decision::Allow,
        Expect::Deny => matches!(x.decision, Decision::Deny | Decision::Unauthenticated),
        Expect::Status(s) => x.status == Some(s),
    };
    if ok {
        return Ok(());
    }
    let got = outcome(x);
    Err(match (expect, x.forwarded()) {
        (Expect::Status(_), true) => {
            format!("got {got}; the upstream decides the status of a forwarded request: expect allow")
        }
        _ => format!("got {got}"),
    })
}

/// `403 (forbidden)`, `allow: forwarded`, ...
pub fn outcome(x: &Explanation) -> String {
    match (x.status, x.decision) {
        (None, _) => "allow: forwarded to the upstream".into(),
        (Some(s), Decision::Allow) => format!("allow: {s} from the handler table"),
        (Some(s), Decision::Deny) => format!("deny: {s} Forbidden"),
        (Some(s), Decision::Unauthenticated) => format!("deny: {s} Unauthorized"),
        (Some(s), Decision::Error) => format!("{s} authorization error"),
        (Some(s), Decision::Rejected) => format!("{s} before authentication"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub expect: Expect,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
    pub got: Explanation,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub authorizer: String,
    pub passed: usize,
    pub failed: usize,
    pub cases: Vec<CaseResult>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

pub async fn run(explainer: &Explainer, cases: &[(Case, Request)]) -> Report {
    let mut results = Vec::with_capacity(cases.len());
    for (case, request) in cases {
        let got = explainer.explain(request).await;
        let verdict = judge(case.expect, &got);
        results.push(CaseResult {
            name: case.name.clone(),
            expect: case.expect,
            passed: verdict.is_ok(),
            mismatch: verdict.err(),
            got,
        });
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    Report {
        authorizer: explainer.description.clone(),
        passed: results.len() - failed,
        failed,
        cases: results,
    }
}

/// The report for people: one line per case, details for each mismatch.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy-test against {}", report.authorizer);
    let width = report.cases.iter().map(|c| c.name.len()).max().unwrap_or(0).min(60);
    for c in &report.cases {
        let who = match &c.got.user {
            Some(u) if u.anonymous => "anonymous".to_owned(),
            Some(u) => u.name.clone(),
            None => String::new(),
        };
        let status = if c.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "{status} {:<width$}  {} {}{}{}: expect {}",
            c.name,
            c.got.method,
            c.got.target,
            if who.is_empty() { "" } else { " as " },
            who,
            c.expect
        );
        if let Some(m) = &c.mismatch {
            let _ = writeln!(out, "     {m}");
            for r in &c.got.reviews {
                let why = r.reason.as_deref().or(r.error.as_deref()).unwrap_or("");
                let sep = if why.is_empty() { "" } else { ": " };
                let _ = writeln!(out, "       review {} {}{sep}{why}", r.request(), r.decision);
            }
            if c.got.reviews.is_empty() {
                let _ = writeln!(out, "       {}", c.got.why);
            }
        }
    }
    let _ = writeln!(out, "{} passed, {} failed", report.passed, report.failed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cases_and_refuses_bad_ones() {
        let cases = parse(
            "c.yaml",
            "cases:\n- name: a\n  user: u\n  groups: [g]\n  path: /pods\n  expect: allow\n- name: b\n  anonymous: true\n  method: POST\n  path: /exec/a/b/c\n  expect: 401\n- name: c\n  user: u\n  path: /x\n  expect: \"404\"\n",
        )
        .expect("cases");
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[0].0.expect, Expect::Allow);
        assert_eq!(cases[0].1.method, Method::GET);
        assert_eq!(cases[1].1.identity, Identity::Anonymous);
        assert_eq!(cases[1].0.expect, Expect::Status(401));
        assert_eq!(cases[2].0.expect, Expect::Status(404));

        for (bad, needle) in [
            (
                "cases:\n- name: a\n  user: u\n  path: /pods\n  expect: maybe\n",
                "maybe",
            ),
            ("cases:\n- name: a\n  user: u\n  path: /pods\n  expect: 99\n", "99"),
            (
                "cases:\n- name: a\n  user: u\n  path: /pods\n  expect: allow\n  verb: get\n",
                "verb",
            ),
            ("cases:\n- name: a\n  path: /pods\n  expect: allow\n", "user name"),
            (
                "cases:\n- name: a\n  user: u\n  method: \"GE T\"\n  path: /pods\n  expect: allow\n",
                "method",
            ),
            ("cases: []\n", "no cases"),
        ] {
            let err = parse("c.yaml", bad).expect_err(bad).to_string();
            assert!(err.contains(needle) && err.contains("c.yaml"), "{bad}: {err}");
        }
    }
}
