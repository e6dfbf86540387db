//! `diagnose`, the x509 doctor: connects to a node's port 10250 (a kubelet or a kubelet-gate)
//! the way kube-apiserver does and says, check by check, whether kube-apiserver would accept it,
//! with the evidence, the exact error kube-apiserver would print, and the fix. The address and
//! port are kube-apiserver's choice (kubernetes pkg/kubelet/client/kubelet_client.go
//! `NodeConnectionInfoGetter`, pkg/util/node `GetPreferredNodeAddress`), the request that of
//! `kubectl logs` (pkg/registry/core/pod/strategy.go `LogLocation`).
//!
//! kube-apiserver is a Go client: with `--kubelet-certificate-authority` it verifies the
//! serving certificate as Go's `crypto/x509` does (the leaf's validity, then the dialled name,
//! then the chain to the CA with each issuer's signature and validity, then the server-auth
//! usage across the chain; `x509` is that code, ported); without it, it verifies nothing, so
//! certificate problems are then warnings (what would break once the flag is set), not
//! failures. The verdict and the error reported are Go's, whatever rustls would accept.

pub mod cert;
pub mod cluster;
pub mod connect;
mod findings;
pub mod join;
pub mod x509;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;

use super::ToolError;
use crate::k8s::{ApiClient, Backoff, CallPolicy};
use cert::Facts;

/// What to diagnose, with kube-apiserver's own flag names.
#[derive(Debug, Clone)]
pub struct Options {
    /// `HOST[:PORT]`; from the Node when `None`.
    pub target: Option<String>,
    /// `--kubelet-certificate-authority`.
    pub ca_file: Option<PathBuf>,
    /// `--kubelet-client-certificate` and `--kubelet-client-key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `--kubelet-preferred-address-types`.
    pub preferred_address_types: Vec<String>,
    pub kubeconfig: Option<PathBuf>,
    pub node: Option<String>,
    /// `--kubelet-timeout`.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            preferred_address_types: cluster::DEFAULT_PREFERRED.iter().map(|s| s.to_string()).collect(),
            kubeconfig: None,
            node: None,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    Info,
}

/// One check: its verdict, what was seen, the error kube-apiserver prints (when there is one),
/// and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub verdict: Verdict,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub evidence: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(id: &'static str, verdict: Verdict, summary: impl Into<String>) -> Check {
        Check {
            id,
            verdict,
            summary: summary.into(),
            error: None,
            evidence: Vec::new(),
            fix: None,
        }
    }
    fn error(mut self, e: impl Into<String>) -> Check {
        self.error = Some(e.into());
        self
    }
    fn evidence(mut self, e: impl Into<String>) -> Check {
        self.evidence.push(e.into());
        self
    }
    fn fix(mut self, f: impl Into<String>) -> Check {
        self.fix = Some(f.into());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What kube-apiserver dials: `host:port`.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The `--kubelet-certificate-authority` used; `None`: kube-apiserver verifies nothing.
    #[serde(rename = "kubeletCertificateAuthority")]
    pub ca_file: Option<String>,
    pub checks: Vec<Check>,
    /// What kube-apiserver would report for `kubectl logs` against this node, if it fails.
    #[serde(rename = "apiServerError")]
    pub apiserver_error: Option<String>,
    /// Everything kube-apiserver needs holds.
    pub ok: bool,
}

impl Report {
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// The trust bundle kube-apiserver would use.
pub struct Trust {
    path: String,
    roots: x509::CertPool,
    subjects: Vec<String>,
}

/// The client certificate kube-apiserver presents.
pub struct ClientIdentity {
    path: String,
    key: Arc<CertifiedKey>,
    chain: Vec<Facts>,
}

/// client-go's `rootCertPool` with `AppendCertsFromPEM`: every CERTIFICATE block that parses;
/// the others are skipped, as Go skips them. None at all is bad usage.
fn load_trust(path: &Path) -> Result<Trust, ToolError> {
    let usage = |m: String| ToolError::Usage(format!("--kubelet-certificate-authority {}: {m}", path.display()));
    let pem = std::fs::read(path).map_err(|e| usage(e.to_string()))?;
    let mut roots = x509::CertPool::new();
    let mut subjects = Vec::new();
    let mut skipped = Vec::new();
    for der in CertificateDer::pem_slice_iter(&pem) {
        let der = der.map_err(|e| usage(format!("unreadable PEM: {e}")))?;
        match x509::Certificate::parse(&der) {
            Ok(c) => {
                subjects.push(c.subject.clone());
                roots.add(c);
            }
            Err(e) => skipped.push(e),
        }
    }
    if roots.is_empty() {
        return Err(usage(match skipped.first() {
            Some(e) => e.clone(),
            None => "no CERTIFICATE block".into(),
        }));
    }
    Ok(Trust {
        path: path.display().to_string(),
        roots,
        subjects,
    })
}

fn load_client(cert: &Path, key: &Path) -> Result<ClientIdentity, ToolError> {
    let certified = crate::certs::load_pair(cert, key)
        .map_err(|e| ToolError::Usage(format!("--kubelet-client-certificate/--kubelet-client-key: {e}")))?;
    let chain = certified
        .cert
        .iter()
        .map(Facts::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ToolError::Usage(format!("--kubelet-client-certificate {}: {e}", cert.display())))?;
    Ok(ClientIdentity {
        path: cert.display().to_string(),
        key: certified,
        chain,
    })
}

/// `HOST[:PORT]`, `[v6]:PORT` or a bare IPv6 address.
pub fn split_target(target: &str) -> Result<(String, Option<u16>), String> {
    let bad = |why: &str| format!("{target:?}: {why}");
    if target.is_empty() {
        return Err(bad("empty"));
    }
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"));
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        return match after {
            "" => Ok((host.to_owned(), None)),
            a => Ok((
                host.to_owned(),
                Some(port(a.strip_prefix(':').ok_or_else(|| bad("bad port"))?)?),
            )),
        };
    }
    if target.matches(':').count() > 1 {
        return Ok((target.to_owned(), None));
    }
    match target.split_once(':') {
        Some((host, p)) if !host.is_empty() => Ok((host.to_owned(), Some(port(p)?))),
        Some(_) => Err(bad("no host")),
        None => Ok((target.to_owned(), None)),
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs every check. `Err` only for bad usage (unreadable files, bad flags); everything about
/// the node itself, including "cannot connect", is a check in the report.
pub async fn run(o: &Options) -> Result<Report, ToolError> {
    run_at(o, unix_now()).await
}

/// `run` with kube-apiserver's clock at `now` (Unix seconds) for every certificate check.
pub async fn run_at(o: &Options, now: i64) -> Result<Report, ToolError> {
    crate::crypto::install_default_provider();
    let trust = o.ca_file.as_deref().map(load_trust).transpose()?;
    let client = match (&o.client_cert, &o.client_key) {
        (Some(c), Some(k)) => Some(load_client(c, k)?),
        (None, None) => None,
        _ => {
            return Err(ToolError::Usage(
                "--kubelet-client-certificate and --kubelet-client-key go together".into(),
            ));
        }
    };
    let given = o
        .target
        .as_deref()
        .map(split_target)
        .transpose()
        .map_err(ToolError::Usage)?;
    if given.is_none() && o.node.is_none() {
        return Err(ToolError::Usage(
            "diagnose needs HOST[:PORT], or --node with --kubeconfig".into(),
        ));
    }

    let mut f = findings::Findings::new(trust.as_ref(), o.node.clone(), now);

    // The Node and its serving CSRs.
    let mut from_node: Option<(String, u16, String)> = None;
    let mut csrs = None;
    if let Some(name) = &o.node {
        let policy = CallPolicy {
            deadline: o.timeout,
            max_in_flight: 4,
            backoff: Backoff {
                initial: Duration::from_millis(200),
                factor: 2.0,
                jitter: 0.2,
                steps: 2,
            },
        };
        let api = ApiClient::connect(o.kubeconfig.as_deref(), policy)
            .await
            .map_err(|e| ToolError::Usage(e.to_string()))?;
        match cluster::node(&api, name).await {
            Ok(node) => {
                let chosen = node.preferred_address(&o.preferred_address_types).cloned();
                if let Ok(a) = &chosen {
                    from_node = Some((a.address.clone(), node.port(), a.kind.clone()));
                }
                f.node(&node, chosen, &o.preferred_address_types, given.as_ref());
            }
            Err(e) => f.node_error(name, &e.to_string()),
        }
        csrs = Some(cluster::serving_csrs(&api, name).await.map_err(|e| e.to_string()));
    }

    let (host, port, via) = match (&given, &from_node) {
        (Some((h, p)), node) => {
            let default = node.as_ref().map_or(cluster::DEFAULT_PORT, |n| n.1);
            (h.clone(), p.unwrap_or(default), None)
        }
        (None, Some((h, p, kind))) => (h.clone(), *p, Some(kind.clone())),
        (None, None) => return Ok(f.finish(String::new())),
    };
    let target = host_port(&host, port);
    f.dialled(&host, port, via);

    // First connection: as kube-apiserver without its client certificate, to see the chain,
    // the CertificateRequest, and what a caller without credentials gets.
    let first = connect::connect(&host, port, None, o.timeout).await;
    let mut session = match first {
        Ok(s) => {
            f.connected(&s);
            Some(s)
        }
        Err(e) => {
            f.connect_failed(&e);
            None
        }
    };
    if let Some(csrs) = &csrs {
        f.csrs(csrs);
    }
    let Some(first) = session.as_mut() else {
        return Ok(f.finish(target));
    };
    f.certificate(&first.chain, &host);
    let anonymous = first.get("/healthz", o.timeout).await;
    f.anonymous_probe(&anonymous);
    f.client_side(client.as_ref(), first.client_cert_requested, &first.client_ca_hints);

    if let Some(client) = &client {
        match connect::connect(&host, port, Some(client.key.clone()), o.timeout).await {
            Ok(mut s) => {
                let healthz = s.get("/healthz", o.timeout).await;
                let logs = s.get(LOGS_PROBE, o.timeout).await;
                f.client_probes(client, &healthz, &logs);
            }
            Err(e) => f.client_connect_failed(&e),
        }
    }
    Ok(f.finish(target))
}

/// A `kubectl logs` request for a pod that does not exist: it needs `get nodes/proxy`, as every
/// `kubectl logs` does, and reads nothing.
pub const LOGS_PROBE: &str = "/containerLogs/kube-system/kubelet-gate-diagnose-probe/probe";

/// The report for people.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let how = match &r.ca_file {
        Some(ca) => format!("verifying with --kubelet-certificate-authority {ca}"),
        None => "without --kubelet-certificate-authority: kube-apiserver verifies nothing".into(),
    };
    if r.target.is_empty() {
        let _ = writeln!(out, "diagnose node {} ({how})", r.node.as_deref().unwrap_or(""));
    } else {
        let _ = writeln!(out, "diagnose https://{} as kube-apiserver dials it ({how})", r.target);
    }
    let _ = writeln!(out);
    render_checks(&mut out, &r.checks);
    let count = |v| r.checks.iter().filter(|c| c.verdict == v).count();
    let _ = writeln!(out);
    if r.ok {
        let _ = writeln!(
            out,
            "kube-apiserver would accept this node ({} warning(s)).",
            count(Verdict::Warn)
        );
    } else {
        let _ = writeln!(
            out,
            "kube-apiserver would NOT accept this node: {} failure(s), {} warning(s).",
            count(Verdict::Fail),
            count(Verdict::Warn)
        );
        if let Some(e) = &r.apiserver_error {
            let _ = writeln!(out, "kubectl logs would report: {e}");
        }
    }
    out
}

/// One block per check: verdict, id and summary, then the error, evidence and fix.
fn render_checks(out: &mut String, checks: &[Check]) {
    for c in checks {
        let tag = match c.verdict {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Info => "info",
        };
        let _ = writeln!(out, "{tag} {:<18} {}", c.id, c.summary);
        if let Some(e) = &c.error {
            let _ = writeln!(out, "     {:<18} {e}", "error:");
        }
        for (i, e) in c.evidence.iter().enumerate() {
            let label = if i == 0 { "evidence:" } else { "" };
            let _ = writeln!(out, "     {label:<18} {e}");
        }
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "     {:<18} {fix}", "fix:");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target("10.0.0.5"), Ok(("10.0.0.5".into(), None)));
        assert_eq!(split_target("node-a:10250"), Ok(("node-a".into(), Some(10250))));
        assert_eq!(split_target("[fd00::5]:10250"), Ok(("fd00::5".into(), Some(10250))));
        assert_eq!(split_target("fd00::5"), Ok(("fd00::5".into(), None)));
        assert!(split_target("node-a:0").is_err());
        assert!(split_target(":10250").is_err());
        assert!(split_target("node-a:x").is_err());
        assert_eq!(host_port("fd00::5", 1), "[fd00::5]:1");
    }
}
