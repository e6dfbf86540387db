//! The checks' verdicts and words: what each observation means for kube-apiserver, the exact
//! error it prints, and the fix. Observations come in as the diagnosis proceeds; `finish` puts
//! the checks in a fixed order and decides the report's verdict. The serving side's checks are
//! in `serving`, the client side's in `client`.

mod client;
mod serving;

use rustls::AlertDescription;

use super::cluster::{Csr, CsrState, Node, NodeAddress};
use super::connect::{ConnectError, Session};
use super::x509::error::go_quote;
use super::{Check, LOGS_PROBE, Report, Trust, Verdict, host_port};

/// The report's order, whatever the order of discovery.
const ORDER: [&str; 16] = [
    "node",
    "connect",
    "serving-csr",
    "chain",
    "self-signed",
    "names",
    "validity",
    "clock",
    "server-auth",
    "trust",
    "node-cn",
    "anonymous-probe",
    "client-certificate",
    "client-ca",
    "client-probe",
    "logs-probe",
];

/// Allowed clock difference between the node and this machine before it is worth a warning.
const SKEW_WARNING_SECS: i64 = 30;

pub(super) struct Findings<'a> {
    trust: Option<&'a Trust>,
    node: Option<String>,
    host: String,
    port: u16,
    /// The Node address type the host came from.
    via: Option<String>,
    now: i64,
    checks: Vec<Check>,
    /// The first error kube-apiserver hits when it connects (dial, handshake, verification).
    connect_error: Option<String>,
    /// The kubelet's answer to kube-apiserver when the connection works but the call does not.
    kubelet_error: Option<String>,
    alert: Option<AlertDescription>,
    handshake_done: bool,
}

impl<'a> Findings<'a> {
    pub(super) fn new(trust: Option<&'a Trust>, node: Option<String>, now: i64) -> Self {
        Findings {
            trust,
            node,
            host: String::new(),
            port: 0,
            via: None,
            now,
            checks: Vec::new(),
            connect_error: None,
            kubelet_error: None,
            alert: None,
            handshake_done: false,
        }
    }

    /// Fail when kube-apiserver verifies (it would refuse), warn when it does not (it would
    /// refuse once `--kubelet-certificate-authority` is set).
    fn severe(&self) -> Verdict {
        if self.trust.is_some() {
            Verdict::Fail
        } else {
            Verdict::Warn
        }
    }

    fn push(&mut self, c: Check) {
        self.checks.push(c);
    }

    /// The URL of the `kubectl logs` request kube-apiserver makes (pkg/registry/core/pod
    /// `LogLocation`), for the probe's pod.
    fn url(&self) -> String {
        format!("https://{}{LOGS_PROBE}", host_port(&self.host, self.port))
    }

    /// An error of the GET as net/http reports it: src/net/http/client.go wraps it in a
    /// `url.Error`, whose `Error()` is `Op %q: Err` (src/net/url/url.go).
    fn get_error(&self, err: &str) -> String {
        format!("Get {}: {err}", go_quote(&self.url()))
    }

    fn note_tls_error(&mut self, tls: &str) {
        if self.connect_error.is_none() {
            self.connect_error = Some(self.get_error(tls));
        }
    }

    pub(super) fn node(
        &mut self,
        node: &Node,
        chosen: Result<NodeAddress, String>,
        preferred: &[String],
        given: Option<&(String, Option<u16>)>,
    ) {
        let addresses = format!("status.addresses: {}", node.addresses_go());
        let port = if node.reported_port > 0 {
            format!("status.daemonEndpoints.kubeletEndpoint.Port: {}", node.reported_port)
        } else {
            format!(
                "status.daemonEndpoints.kubeletEndpoint.Port is unset: kube-apiserver uses {}",
                node.port()
            )
        };
        let order = format!("--kubelet-preferred-address-types: {}", preferred.join(","));
        let c = match chosen {
            Ok(a) => {
                let mut c = Check::new(
                    "node",
                    Verdict::Pass,
                    format!(
                        "kube-apiserver dials node {} at {} (its {}), port {}",
                        node.name,
                        a.address,
                        a.kind,
                        node.port()
                    ),
                )
                .evidence(addresses)
                .evidence(port)
                .evidence(order);
                if let Some((h, _)) = given
                    && *h != a.address
                {
                    c.verdict = Verdict::Warn;
                    c = c.evidence(format!(
                        "diagnosing {h} as asked, but kube-apiserver would dial {}",
                        a.address
                    ));
                }
                c
            }
            Err(e) => Check::new("node", Verdict::Fail, "kube-apiserver finds no address to dial")
                .error(e.clone())
                .evidence(addresses)
                .evidence(order)
                .fix("Make the node report an address of a preferred type (the kubelet's --node-ip, or a cloud provider), or add the types it has to kube-apiserver's --kubelet-preferred-address-types."),
        };
        if c.verdict == Verdict::Fail {
            self.connect_error = c.error.clone();
        }
        self.push(c);
    }

    pub(super) fn node_error(&mut self, name: &str, error: &str) {
        let c = Check::new("node", Verdict::Fail, format!("cannot read Node {name} from the API server"))
            .error(error)
            .fix("Check the node name (kubectl get nodes) and that the kubeconfig may get nodes and list certificatesigningrequests.");
        self.push(c);
    }

    pub(super) fn dialled(&mut self, host: &str, port: u16, via: Option<String>) {
        self.host = host.to_owned();
        self.port = port;
        self.via = via;
    }

    pub(super) fn connected(&mut self, s: &Session) {
        self.handshake_done = true;
        let c = Check::new(
            "connect",
            Verdict::Pass,
            format!(
                "{} handshake with {}: the node sent {} certificate(s)",
                s.protocol,
                s.peer,
                s.chain.len()
            ),
        );
        self.push(c);
    }

    pub(super) fn connect_failed(&mut self, e: &ConnectError) {
        self.alert = e.alert;
        let addr = host_port(&self.host, self.port);
        let mut c = Check::new("connect", Verdict::Fail, format!("cannot connect to {addr}")).error(&e.message);
        c = match e.alert {
            Some(AlertDescription::InternalError) => {
                c.summary = "the node fails every TLS handshake with internal_error: it has no serving certificate yet".into();
                c.evidence("a kubelet (and kubelet-gate) answers internal_error while serverTLSBootstrap is on and no serving CSR has been approved and signed: it has no certificate to offer")
                    .fix("Approve the node's serving CSR: kubectl get csr --field-selector spec.signerName=kubernetes.io/kubelet-serving, then kubectl certificate approve <name> (or run an approver such as kubelet-csr-approver); kube-controller-manager must be able to sign kubelet-serving CSRs (--cluster-signing-cert-file/--cluster-signing-key-file).")
            }
            Some(_) => c.fix("The node ended the handshake: compare its tlsMinVersion and tlsCipherSuites with what kube-apiserver offers (TLS 1.2 or 1.3, ECDHE AEAD suites)."),
            None if e.message.contains("connection refused") => c.fix(format!(
                "Nothing listens on {addr}: is the kubelet (or kubelet-gate) running, and is {} the port the Node reports (status.daemonEndpoints.kubeletEndpoint.Port)?",
                self.port
            )),
            None if e.message.contains("lookup") => c.fix(format!(
                "kube-apiserver must resolve {}: make the name resolvable where kube-apiserver runs, or prefer IP addresses (--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname).",
                self.host
            )),
            None if e.message.contains("timeout") => c.fix(format!(
                "No answer from {addr}: a firewall or security group between kube-apiserver and the node drops port {}, or the address is not reachable from kube-apiserver.",
                self.port
            )),
            None => c,
        };
        self.connect_error = Some(self.get_error(&e.message));
        self.push(c);
    }

    pub(super) fn csrs(&mut self, csrs: &Result<Vec<Csr>, String>) {
        let user = format!("system:node:{}", self.node.as_deref().unwrap_or(""));
        let no_cert = self.alert == Some(AlertDescription::InternalError);
        let list = match csrs {
            Err(e) => {
                let c = Check::new("serving-csr", Verdict::Warn, "cannot list the node's serving CSRs")
                    .error(e)
                    .fix("The kubeconfig needs list on certificatesigningrequests.certificates.k8s.io.");
                return self.push(c);
            }
            Ok(list) => list,
        };
        let evidence: Vec<String> = list.iter().rev().take(5).map(|c| c.describe(self.now)).collect();
        let Some(latest) = list.last() else {
            let c = if no_cert {
                Check::new(
                    "serving-csr",
                    Verdict::Fail,
                    format!("no kubernetes.io/kubelet-serving CSR from {user}: the node has not asked for a serving certificate"),
                )
                .fix("Check that the kubelet runs with serverTLSBootstrap: true and read its log (certificate manager) for why it does not request one.")
            } else {
                Check::new(
                    "serving-csr",
                    Verdict::Info,
                    format!("no kubernetes.io/kubelet-serving CSRs from {user}"),
                )
            };
            return self.push(c);
        };
        let approve = format!(
            "kubectl certificate approve {} (check first that its DNS names and IPs are the node's), or run an approver such as kubelet-csr-approver",
            latest.name
        );
        let c = match (&latest.state, no_cert) {
            (CsrState::Pending, true) => Check::new(
                "serving-csr",
                Verdict::Fail,
                format!("the node's serving CSR {} is Pending: nobody approved it, so the node has no certificate", latest.name),
            )
            .fix(approve),
            (CsrState::Pending, false) => Check::new(
                "serving-csr",
                Verdict::Warn,
                format!("a renewal CSR ({}) is waiting for approval", latest.name),
            )
            .fix(approve),
            (CsrState::Denied { reason, message }, _) => Check::new(
                "serving-csr",
                if no_cert { Verdict::Fail } else { Verdict::Warn },
                format!("the node's latest serving CSR {} was denied ({reason}: {message})", latest.name),
            )
            .fix("Find out why it was denied (an approver refuses CSRs whose names or IPs do not match the Node's addresses); the kubelet asks again with a new CSR, approve that one once the cause is fixed."),
            (CsrState::Failed { reason, message }, _) => Check::new(
                "serving-csr",
                if no_cert { Verdict::Fail } else { Verdict::Warn },
                format!("the node's latest serving CSR {} failed ({reason}: {message})", latest.name),
            )
            .fix("The signer refused to sign it: read kube-controller-manager's log (csrsigning)."),
            (CsrState::Approved, _) => Check::new(
                "serving-csr",
                if no_cert { Verdict::Fail } else { Verdict::Warn },
                format!("the node's serving CSR {} is approved but not signed", latest.name),
            )
            .fix("kube-controller-manager signs kubernetes.io/kubelet-serving CSRs only with --cluster-signing-cert-file and --cluster-signing-key-file (or --cluster-signing-kubelet-serving-*): check its flags and log."),
            (CsrState::Issued, true) => Check::new(
                "serving-csr",
                Verdict::Fail,
                format!("the serving CSR {} was issued, yet the node serves no certificate", latest.name),
            )
            .fix("Read the kubelet's log: it may have failed to store kubelet-server-current.pem in its cert dir."),
            (CsrState::Issued, false) => Check::new(
                "serving-csr",
                Verdict::Pass,
                format!("the node's latest serving CSR {} was approved and issued", latest.name),
            ),
        };
        let mut c = c;
        c.evidence = evidence;
        self.push(c);
    }

    pub(super) fn finish(mut self, target: String) -> Report {
        self.checks
            .sort_by_key(|c| ORDER.iter().position(|id| *id == c.id).unwrap_or(ORDER.len()));
        let ok = !self.checks.iter().any(|c| c.verdict == Verdict::Fail);
        let apiserver_error = if ok {
            None
        } else {
            self.connect_error.or(self.kubelet_error)
        };
        Report {
            target,
            node: self.node,
            ca_file: self.trust.map(|t| t.path.clone()),
            checks: self.checks,
            apiserver_error,
            ok,
        }
    }
}

const SELF_SIGNED_FIX: &str = "Give the node a certificate from a CA kube-apiserver trusts: set serverTLSBootstrap: true in the KubeletConfiguration and approve its kubernetes.io/kubelet-serving CSRs (e.g. with kubelet-csr-approver), or set tlsCertFile/tlsPrivateKeyFile to a certificate signed by the CA in --kubelet-certificate-authority (kubelet-gate takes the same two settings).";

/// `CN=x, O=y` of a DER Name (with or without its outer SEQUENCE).
fn dn(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    match x509_parser::x509::X509Name::from_der(der) {
        Ok((_, name)) => name.to_string(),
        Err(_) => {
            let wrapped = wrap_sequence(der);
            x509_parser::x509::X509Name::from_der(&wrapped)
                .map(|(_, n)| n.to_string())
                .unwrap_or_else(|_| "(unparsable name)".into())
        }
    }
}

fn same_name(hint: &[u8], raw: &[u8]) -> bool {
    hint == raw || wrap_sequence(hint) == raw
}

fn wrap_sequence(inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    let len = inner.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(inner);
    out
}

/// The user in a kubelet 403 body: `Forbidden (user=U, verb=V, ...)`.
fn forbidden_user(body: &str) -> Option<String> {
    let rest = body.split_once("user=")?.1;
    let end = rest.find(", verb=")?;
    Some(rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_user_of_a_forbidden_body() {
        assert_eq!(
            forbidden_user(
                "Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource(s)=[proxy])\n"
            ),
            Some("kube-apiserver-kubelet-client".into())
        );
        assert_eq!(forbidden_user("Unauthorized"), None);
    }

    #[test]
    fn names_compare_with_or_without_the_outer_sequence() {
        let inner = [0x31, 0x03, 0x02, 0x01, 0x05];
        let wrapped = wrap_sequence(&inner);
        assert!(same_name(&wrapped, &wrapped));
        assert!(same_name(&inner, &wrapped));
        assert!(!same_name(&[0x31, 0x00], &wrapped));
    }
}
