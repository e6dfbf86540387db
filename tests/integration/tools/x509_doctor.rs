//! `diagnose` against the real gateway: the healthy setup and each classic broken one, the node
//! read from the API server, the client certificate's probes, and the command line.

use super::*;

fn binding(user: &str, role: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: bind-{}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: {user}\n",
        user.replace(':', "-")
    )
}

/// A cluster's PKI as kube-apiserver sees it: the CA in `--kubelet-certificate-authority`, and
/// files written for the flags.
struct Pki {
    cluster_ca: Ca,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            cluster_ca: Ca::new("kubernetes"),
            dir: tempfile::tempdir().expect("dir"),
        };
        pki.cluster_ca.write_pem(&pki.path("ca.crt"));
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A healthy serving certificate for the node: DNS and IP SANs, server auth, current.
    fn healthy_spec(&self) -> ServerSpec {
        ServerSpec::new(&format!("system:node:{NODE}"))
            .dns(&[NODE, "localhost"])
            .ips(&[LOCALHOST])
    }

    fn write(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let (cert, key) = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        leaf.write(&cert, &key);
        (cert, key)
    }
}

/// The real gateway, serving `serving` (or its self-signed pair), with the API server's client
/// identity bound to system:kubelet-api-admin unless `rbac` is false.
async fn node(pki: &Pki, serving: Option<Leaf>, rbac: bool) -> Harness {
    let mut setup = Setup::default();
    if let Some(leaf) = serving {
        let (cert, key) = pki.write("serving", &leaf);
        setup.top_yaml = format!(
            "tlsCertFile: {}\ntlsPrivateKeyFile: {}\n",
            cert.display(),
            key.display()
        );
    }
    if rbac {
        setup.rbac = vec![binding(APISERVER_USER, "system:kubelet-api-admin")];
    }
    Harness::start(setup).await
}

/// kube-apiserver's kubelet client certificate, issued by the node's client CA.
fn apiserver_client(pki: &Pki, h: &Harness) -> (PathBuf, PathBuf) {
    let leaf = h.client_ca.client(ClientSpec::new(APISERVER_USER));
    pki.write("apiserver-kubelet-client", &leaf)
}

fn options(target: String, ca: Option<PathBuf>, client: Option<(PathBuf, PathBuf)>) -> Options {
    let (client_cert, client_key) = client.map_or((None, None), |(c, k)| (Some(c), Some(k)));
    Options {
        target: Some(target),
        ca_file: ca,
        client_cert,
        client_key,
        timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

async fn diagnose(o: &Options) -> Report {
    diagnose::run(o).await.expect("diagnose runs")
}

fn ip_target(h: &Harness) -> String {
    format!("127.0.0.1:{}", h.addr.port())
}

/// The check, which must have this verdict.
fn check<'r>(r: &'r Report, id: &str, verdict: Verdict) -> &'r diagnose::Check {
    let c = r
        .check(id)
        .unwrap_or_else(|| panic!("no {id} check in\n{}", diagnose::render(r)));
    assert_eq!(c.verdict, verdict, "{id}\n{}", diagnose::render(r));
    c
}

fn failures(r: &Report) -> Vec<&'static str> {
    r.checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id)
        .collect()
}

fn contains(haystack: &Option<String>, needle: &str) -> bool {
    haystack.as_deref().is_some_and(|h| h.contains(needle))
}

// ---- diagnose: the healthy setup and each classic broken one --------------------------------

#[tokio::test]
async fn diagnose_passes_a_healthy_node() {
    let pki = Pki::new();
    let h = node(&pki, Some(pki.cluster_ca.server_with(pki.healthy_spec())), true).await;
    let client = apiserver_client(&pki, &h);
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), Some(client.clone()))).await;
    assert!(r.ok, "{}", diagnose::render(&r));
    assert_eq!(r.apiserver_error, None);
    for id in [
        "connect",
        "self-signed",
        "names",
        "validity",
        "clock",
        "server-auth",
        "trust",
        "anonymous-probe",
    ] {
        check(&r, id, Verdict::Pass);
    }
    check(&r, "client-certificate", Verdict::Pass);
    check(&r, "client-ca", Verdict::Pass);
    let probe = check(&r, "client-probe", Verdict::Pass);
    assert!(probe.summary.contains(APISERVER_USER), "{}", probe.summary);
    check(&r, "logs-probe", Verdict::Pass);

    // The command line: exit 0, and JSON for scripts.
    let (code, out, err) = cli(args(&[
        "diagnose",
        &ip_target(&h),
        "--kubelet-certificate-authority",
        &pki.path("ca.crt").display().to_string(),
        "--kubelet-client-certificate",
        &client.0.display().to_string(),
        "--kubelet-client-key",
        &client.1.display().to_string(),
        "--output",
        "json",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(json["ok"], true);
    assert!(json["checks"].as_array().is_some_and(|c| c.len() >= 12), "{out}");
}

#[tokio::test]
async fn diagnose_names_the_self_signed_kubelet_certificate() {
    let pki = Pki::new();
    let h = node(&pki, None, true).await; // the gateway's own self-signed pair
    let client = apiserver_client(&pki, &h);
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), Some(client.clone()))).await;
    assert!(!r.ok);
    let trust = check(&r, "trust", Verdict::Fail);
    assert_eq!(
        trust.error.as_deref(),
        Some("x509: certificate signed by unknown authority")
    );
    let self_signed = check(&r, "self-signed", Verdict::Fail);
    assert!(
        self_signed.summary.contains(&format!("{NODE}-ca@")),
        "{}",
        self_signed.summary
    );
    assert!(
        contains(&self_signed.fix, "serverTLSBootstrap"),
        "{:?}",
        self_signed.fix
    );
    assert_eq!(failures(&r), ["self-signed", "trust"]);
    assert!(
        contains(
            &r.apiserver_error,
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        ),
        "{:?}",
        r.apiserver_error
    );

    // Without --kubelet-certificate-authority kube-apiserver verifies nothing: warnings only.
    let r = diagnose(&options(ip_target(&h), None, Some(client))).await;
    assert!(r.ok, "{}", diagnose::render(&r));
    let trust = check(&r, "trust", Verdict::Warn);
    assert!(trust.summary.contains("not verified (insecure)"), "{}", trust.summary);
    check(&r, "self-signed", Verdict::Warn);
}

#[tokio::test]
async fn diagnose_names_the_missing_ip_san_and_the_wrong_name() {
    let pki = Pki::new();
    let dns_only = pki.cluster_ca.server_with(ServerSpec::new(NODE).dns(&[NODE]));
    let h = node(&pki, Some(dns_only), true).await;
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), None)).await;
    let names = check(&r, "names", Verdict::Fail);
    assert_eq!(
        names.error.as_deref(),
        Some("x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs")
    );
    assert!(contains(&names.fix, "IP SAN for 127.0.0.1"), "{:?}", names.fix);
    check(&r, "trust", Verdict::Pass);
    assert_eq!(failures(&r), ["names"]);
    assert!(contains(&r.apiserver_error, "doesn't contain any IP SANs"));

    let r = diagnose(&options(
        format!("localhost:{}", h.addr.port()),
        Some(pki.path("ca.crt")),
        None,
    ))
    .await;
    let names = check(&r, "names", Verdict::Fail);
    assert_eq!(
        names.error.as_deref(),
        Some("x509: certificate is valid for node-a, not localhost")
    );
}

#[tokio::test]
async fn diagnose_names_a_certificate_from_another_ca() {
    let pki = Pki::new();
    let other = Ca::new("some-other-ca");
    let h = node(&pki, Some(other.server_with(pki.healthy_spec())), true).await;
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), None)).await;
    let trust = check(&r, "trust", Verdict::Fail);
    assert_eq!(
        trust.error.as_deref(),
        Some("x509: certificate signed by unknown authority")
    );
    assert!(contains(&trust.fix, "some-other-ca"), "{:?}", trust.fix);
    assert!(
        trust.evidence.iter().any(|e| e.contains("CN=kubernetes")),
        "{:?}",
        trust.evidence
    );
    check(&r, "self-signed", Verdict::Pass);
    assert_eq!(failures(&r), ["trust"]);
}

#[tokio::test]
async fn diagnose_names_expired_and_not_yet_valid_certificates() {
    let pki = Pki::new();
    let expired = pki
        .cluster_ca
        .server_with(pki.healthy_spec().validity(Offset::days(-10), Offset::days(-1)));
    let h = node(&pki, Some(expired), true).await;
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), None)).await;
    let validity = check(&r, "validity", Verdict::Fail);
    let error = validity.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("x509: certificate has expired or is not yet valid: current time ")
            && error.contains(" is after "),
        "{error}"
    );
    assert!(contains(&validity.fix, "kubelet.crt"), "{:?}", validity.fix);
    check(&r, "trust", Verdict::Pass);
    assert_eq!(failures(&r), ["validity"]);
    assert!(contains(
        &r.apiserver_error,
        "certificate has expired or is not yet valid"
    ));

    let future = pki
        .cluster_ca
        .server_with(pki.healthy_spec().validity(Offset::days(1), Offset::days(30)));
    let h = node(&pki, Some(future), true).await;
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), None)).await;
    let validity = check(&r, "validity", Verdict::Fail);
    assert!(contains(&validity.error, " is before "), "{:?}", validity.error);
    assert!(contains(&validity.fix, "clock"), "{:?}", validity.fix);
}

#[tokio::test]
async fn diagnose_names_a_client_certificate_served_as_serving_certificate() {
    let pki = Pki::new();
    let client_only = pki.cluster_ca.server_with(pki.healthy_spec().eku(Eku::ClientAuth));
    let h = node(&pki, Some(client_only), true).await;
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), None)).await;
    let usage = check(&r, "server-auth", Verdict::Fail);
    assert_eq!(
        usage.error.as_deref(),
        Some("x509: certificate specifies an incompatible key usage")
    );
    assert!(contains(&usage.fix, "client certificate"), "{:?}", usage.fix);
    check(&r, "trust", Verdict::Pass);
    assert_eq!(failures(&r), ["server-auth"]);
}

/// A node that fails every handshake with `internal_error`, as a kubelet does while its serving
/// CSR is pending: it reads the ClientHello and answers with the alert.
async fn node_without_certificate() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hello = [0u8; 4096];
                let _ = tcp.read(&mut hello).await;
                // TLS record: alert, TLS 1.2 framing, length 2, fatal (2), internal_error (80).
                let _ =
                    tokio::io::AsyncWriteExt::write_all(&mut tcp, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50]).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn diagnose_explains_a_pending_serving_csr() {
    let kubelet = node_without_certificate().await;
    let api = ApiServerStandIn::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = api.write_kubeconfig(dir.path());
    api.add_serving_csr(
        "csr-old",
        NODE,
        7200,
        Some(("Denied", "NotNodeAddress", "IP 10.9.9.9 is not the node's")),
        false,
    );
    api.add_serving_csr("csr-new", NODE, 60, None, false);
    api.add_serving_csr("csr-other-node", "node-b", 30, None, false);
    // kubelet-gate itself waiting for its serving certificate (the stand-in never signs).
    let gate = Harness::start(Setup {
        top_yaml: "serverTLSBootstrap: true\n".into(),
        kubeconfig: Some(kubeconfig.clone()),
        ..Setup::default()
    })
    .await;
    let o = Options {
        target: None,
        node: Some(NODE.into()),
        kubeconfig: Some(kubeconfig.clone()),
        ..Options::default()
    };
    for port in [kubelet.port(), gate.addr.port()] {
        api.set_node(
            NODE,
            &[("InternalIP", "127.0.0.1"), ("ExternalIP", "203.0.113.7")],
            port,
        );
        let r = diagnose(&o).await;
        let node = check(&r, "node", Verdict::Pass);
        assert!(node.summary.contains("127.0.0.1 (its InternalIP)"), "{}", node.summary);
        assert_eq!(r.target, format!("127.0.0.1:{port}"));
        let connect = check(&r, "connect", Verdict::Fail);
        assert_eq!(connect.error.as_deref(), Some("remote error: tls: internal error"));
        assert!(
            connect.summary.contains("no serving certificate"),
            "{}",
            connect.summary
        );
        let csr = check(&r, "serving-csr", Verdict::Fail);
        assert!(csr.summary.contains("csr-new is Pending"), "{}", csr.summary);
        assert!(
            contains(&csr.fix, "kubectl certificate approve csr-new"),
            "{:?}",
            csr.fix
        );
        assert!(
            csr.evidence
                .iter()
                .any(|e| e.contains("csr-old Denied: NotNodeAddress")),
            "{:?}",
            csr.evidence
        );
        assert!(
            !csr.evidence.iter().any(|e| e.contains("csr-other-node")),
            "{:?}",
            csr.evidence
        );
        assert!(contains(&r.apiserver_error, "remote error: tls: internal error"));
    }

    // The latest one denied: the denial's reason is the cause.
    api.add_serving_csr(
        "csr-newest",
        NODE,
        5,
        Some(("Denied", "NotNodeAddress", "IP 10.9.9.9 is not the node's")),
        false,
    );
    let r = diagnose(&o).await;
    let csr = check(&r, "serving-csr", Verdict::Fail);
    assert!(
        csr.summary
            .contains("csr-newest was denied (NotNodeAddress: IP 10.9.9.9 is not the node's)"),
        "{}",
        csr.summary
    );

    // kube-apiserver's address choice: no address of the preferred types.
    let o = Options {
        preferred_address_types: vec!["Hostname".into(), "InternalDNS".into()],
        ..o
    };
    let r = diagnose(&o).await;
    let node = check(&r, "node", Verdict::Fail);
    assert_eq!(
        node.error.as_deref(),
        Some("no preferred addresses found; known addresses: [{InternalIP 127.0.0.1} {ExternalIP 203.0.113.7}]")
    );
    assert!(r.check("connect").is_none());
}

#[tokio::test]
async fn diagnose_reads_the_node_of_a_healthy_gateway() {
    let pki = Pki::new();
    let h = node(&pki, Some(pki.cluster_ca.server_with(pki.healthy_spec())), true).await;
    let client = apiserver_client(&pki, &h);
    let api = ApiServerStandIn::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = api.write_kubeconfig(dir.path());
    api.set_node(NODE, &[("InternalIP", "127.0.0.1")], h.addr.port());
    api.add_serving_csr(
        "csr-1",
        NODE,
        600,
        Some(("Approved", "AutoApproved", "approved by the approver")),
        true,
    );
    let (code, out, err) = cli(args(&[
        "diagnose",
        "--node",
        NODE,
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--kubelet-preferred-address-types",
        "InternalIP,ExternalIP,Hostname",
        "--kubelet-certificate-authority",
        &pki.path("ca.crt").display().to_string(),
        "--kubelet-client-certificate",
        &client.0.display().to_string(),
        "--kubelet-client-key",
        &client.1.display().to_string(),
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS node"), "{out}");
    assert!(out.contains("PASS serving-csr"), "{out}");
    assert!(out.contains("PASS node-cn"), "{out}");
    assert!(out.contains("kube-apiserver would accept this node"), "{out}");
}

#[tokio::test]
async fn diagnose_names_a_client_certificate_from_the_wrong_ca() {
    let pki = Pki::new();
    let h = node(&pki, Some(pki.cluster_ca.server_with(pki.healthy_spec())), true).await;
    let wrong = Ca::new("wrong-client-ca").client(ClientSpec::new(APISERVER_USER));
    let client = pki.write("wrong-client", &wrong);
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), Some(client))).await;
    let ca = check(&r, "client-ca", Verdict::Fail);
    assert!(ca.summary.contains("CN=wrong-client-ca"), "{}", ca.summary);
    assert!(
        ca.evidence.iter().any(|e| e.contains("CN=test-client-ca")),
        "{:?}",
        ca.evidence
    );
    let probe = check(&r, "client-probe", Verdict::Fail);
    assert_eq!(probe.error.as_deref(), Some("Unauthorized"));
    assert!(contains(&probe.fix, "clientCAFile"), "{:?}", probe.fix);
    check(&r, "logs-probe", Verdict::Info);
    check(&r, "client-certificate", Verdict::Pass);
    assert_eq!(failures(&r), ["client-ca", "client-probe"]);
    assert_eq!(r.apiserver_error.as_deref(), Some("401 Unauthorized"));

    // An expired one from the right CA: the certificate check says why.
    let expired = h.client_ca.client(ClientSpec::new(APISERVER_USER).expired());
    let client = pki.write("expired-client", &expired);
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), Some(client))).await;
    let cert = check(&r, "client-certificate", Verdict::Fail);
    assert!(contains(&cert.error, "is after"), "{:?}", cert.error);
    check(&r, "client-probe", Verdict::Fail);
}

#[tokio::test]
async fn diagnose_names_the_identity_that_lacks_rbac() {
    let pki = Pki::new();
    let h = node(&pki, Some(pki.cluster_ca.server_with(pki.healthy_spec())), false).await;
    let client = apiserver_client(&pki, &h);
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), Some(client))).await;
    check(&r, "client-ca", Verdict::Pass);
    let probe = check(&r, "client-probe", Verdict::Fail);
    assert!(
        probe.summary.contains(&format!("accepted as {APISERVER_USER}")),
        "{}",
        probe.summary
    );
    assert!(probe.summary.contains("nodes/healthz"), "{}", probe.summary);
    assert_eq!(
        probe.error.as_deref(),
        Some(
            "Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource(s)=[healthz proxy])"
        )
    );
    assert!(
        contains(
            &probe.fix,
            "--clusterrole=system:kubelet-api-admin --user=kube-apiserver-kubelet-client"
        ),
        "{:?}",
        probe.fix
    );
    let logs = check(&r, "logs-probe", Verdict::Fail);
    assert!(logs.summary.contains("nodes/proxy"), "{}", logs.summary);
    assert_eq!(failures(&r), ["client-probe", "logs-probe"]);
}

/// What kubectl logs reports is the kubelet's 403 to the logs request itself, not the /healthz
/// probe's (whose body names other subresources).
#[tokio::test]
async fn diagnose_reports_the_403_of_the_kubectl_logs_request() {
    let pki = Pki::new();
    let h = node(&pki, Some(pki.cluster_ca.server_with(pki.healthy_spec())), false).await;
    let client = apiserver_client(&pki, &h);
    let r = diagnose(&options(ip_target(&h), Some(pki.path("ca.crt")), Some(client))).await;
    let logs_body = "Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource(s)=[proxy])";
    let logs = check(&r, "logs-probe", Verdict::Fail);
    assert_eq!(logs.error.as_deref(), Some(logs_body));
    let healthz = check(&r, "client-probe", Verdict::Fail);
    assert_ne!(healthz.error.as_deref(), Some(logs_body));
    assert_eq!(r.apiserver_error, Some(format!("403 {logs_body}")));
    let text = diagnose::render(&r);
    assert!(
        text.lines()
            .any(|l| l == format!("kubectl logs would report: 403 {logs_body}")),
        "{text}"
    );
}

#[tokio::test]
async fn diagnose_command_line_exit_codes() {
    let dir = tempfile::tempdir().expect("dir");
    // Nothing listens: a finding, exit 1.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (code, out, _) = cli(args(&["diagnose", &format!("127.0.0.1:{port}")])).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("connection refused"), "{out}");
    // Usage: no target, a bad flag value, an unreadable file: exit 2.
    let (code, _, err) = cli(args(&["diagnose"])).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(args(&[
        "diagnose",
        "127.0.0.1",
        "--kubelet-preferred-address-types",
        "InternalIP,Bogus",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Bogus"), "{err}");
    let missing = dir.path().join("missing.crt").display().to_string();
    let (code, _, err) = cli(args(&[
        "diagnose",
        "127.0.0.1",
        "--kubelet-certificate-authority",
        &missing,
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.crt"), "{err}");
}
