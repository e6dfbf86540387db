//! `serverTLSBootstrap` against a stand-in CSR API (the kubelet's flow: kubernetes
//! pkg/kubelet/certificate/kubelet.go, client-go util/certificate): the
//! CSR's subject, SANs, usages, signer and key; the pending-state `internal_error`; the files
//! and the link; reuse across a restart; rotation of a short-lived certificate while clients
//! keep connecting; a denied CSR's reason in the log. `renewal.rs`: waiting on one CSR through
//! API server failures, the store's pruning, an expired certificate, the backoffs, and a
//! rotation deadline that a restart does not move.

mod renewal;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kubelet_gate::app::BuildOptions;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::common::client::{TlsClient, alert_of};
use crate::common::csr_api::{CsrApi, Mode};
use crate::common::{Harness, NODE, Setup};

fn fast() -> BuildOptions {
    BuildOptions {
        bootstrap_retry: Duration::from_millis(100),
        bootstrap_recheck: Duration::from_millis(200),
        ..BuildOptions::default()
    }
}

async fn gateway(api: &CsrApi, cert_dir: &Path, node_addresses: &'static str) -> Harness {
    let kubeconfig = api.write_kubeconfig(cert_dir.parent().expect("parent"));
    Harness::start(Setup {
        top_yaml: "serverTLSBootstrap: true\n".into(),
        kubeconfig: Some(kubeconfig),
        cert_dir: Some(cert_dir.to_path_buf()),
        node_addresses,
        options: fast(),
        ..Setup::default()
    })
    .await
}

fn client(api: &CsrApi) -> TlsClient {
    TlsClient::new(&[api.signer_ca().cert_der()])
}

/// The DNS and IP SANs a PEM CSR asks for, as text.
fn requested_sans(pem: &str) -> Vec<String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).expect("pem");
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).expect("csr");
    let mut out = Vec::new();
    for ext in parsed.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(s) = ext {
            for name in &s.general_names {
                match name {
                    GeneralName::DNSName(d) => out.push((*d).to_owned()),
                    GeneralName::IPAddress(b) if b.len() == 4 => {
                        out.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
                    }
                    other => out.push(format!("{other:?}")),
                }
            }
        }
    }
    out.sort();
    out
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_pending_csr_fails_handshakes_with_internal_error_then_the_issued_certificate_is_served() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    let dir = tempfile::tempdir().expect("dir");
    let cert_dir = dir.path().join("pki");
    let h = gateway(&api, &cert_dir, "[127.0.0.1, localhost]").await;
    eventually("a CSR is created", Duration::from_secs(5), || async {
        !api.csrs().is_empty()
    })
    .await;

    let err = client(&api).handshake(h.addr).await.expect_err("no certificate yet");
    assert_eq!(alert_of(&err), Some(rustls::AlertDescription::InternalError), "{err}");

    let csr = &api.csrs()[0];
    assert_eq!(csr.signer_name, "kubernetes.io/kubelet-serving");
    assert_eq!(csr.usages, ["digital signature", "server auth"]);
    assert_eq!(csr.username, format!("system:node:{NODE}"));
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.request_pem.as_bytes()).expect("pem");
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).expect("csr");
    let info = &parsed.certification_request_info;
    assert_eq!(
        info.subject.to_string(),
        format!("CN=system:node:{NODE}, O=system:nodes")
    );
    let key_alg = info.subject_pki.algorithm.algorithm.to_id_string();
    let curve = info
        .subject_pki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    assert_eq!(
        (key_alg.as_str(), curve.as_deref()),
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")),
        "ECDSA P-256"
    );
    assert_eq!(requested_sans(&csr.request_pem), ["127.0.0.1", "localhost"]);

    api.approve(&csr.name);
    api.issue(&csr.name, Duration::from_secs(3600));
    eventually("the issued certificate is served", Duration::from_secs(5), || {
        let c = client(&api);
        async move { c.handshake(h.addr).await.is_ok() }
    })
    .await;
    let presented = client(&api).peer_chain(h.addr).await;
    let issued = api.csrs()[0].certificate_pem.clone().expect("issued");
    let issued_leaf = CertificateDer::pem_slice_iter(issued.as_bytes())
        .next()
        .expect("leaf")
        .expect("pem");
    assert_eq!(presented.first(), Some(&issued_leaf));

    // The files: kubelet-server-<time>.pem (0600) and the current link pointing at it.
    let link = cert_dir.join("kubelet-server-current.pem");
    let target = std::fs::read_link(&link).expect("current is a symbolic link");
    let target_name = target.to_string_lossy().into_owned();
    assert!(
        target_name.starts_with("kubelet-server-2") && target_name.ends_with(".pem"),
        "{target_name}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cert_dir.join(&target))
        .expect("file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&link).expect("read");
    assert!(stored.contains("BEGIN CERTIFICATE") && stored.contains("PRIVATE KEY"));

    // A restart reuses it: no new CSR, served at once.
    drop(h);
    let h = gateway(&api, &cert_dir, "[127.0.0.1, localhost]").await;
    let chain = client(&api).peer_chain(h.addr).await;
    assert_eq!(
        chain.first(),
        Some(&issued_leaf),
        "the stored certificate is served after a restart"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.csrs().len(), 1, "no new CSR for a valid, matching certificate");
}

#[tokio::test]
async fn a_short_lived_certificate_rotates_before_it_expires_while_clients_connect() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    api.set_mode(Mode::AutoIssue {
        lifetime: Duration::from_secs(4),
    });
    let dir = tempfile::tempdir().expect("dir");
    let h = gateway(&api, &dir.path().join("pki"), "[127.0.0.1, localhost]").await;
    let c = client(&api);
    eventually("the first certificate is served", Duration::from_secs(5), || {
        let c = c.clone();
        async move { c.handshake(h.addr).await.is_ok() }
    })
    .await;
    let first = c.peer_chain(h.addr).await;

    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = {
        let (stop, ok, failed, c) = (stop.clone(), ok.clone(), failed.clone(), c.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.handshake(h.addr).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Rotation is due at 70-90 % of 4 s, i.e. 2.8-3.6 s after issuance.
    eventually("a second certificate is served", Duration::from_secs(6), || {
        let (c, first) = (c.clone(), first.clone());
        async move { c.peer_chain(h.addr).await.first() != first.first() }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    assert!(api.csrs().len() >= 2);
    let (_, cert) = X509Certificate::from_der(first[0].as_ref()).expect("first");
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(lifetime <= 6, "a short-lived certificate: {lifetime}s");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no handshake failed ({} ok)",
        ok.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn addresses_come_from_the_node_object_when_not_configured() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    api.set_node(
        NODE,
        &[
            ("Hostname", NODE),
            ("InternalIP", "127.0.0.1"),
            ("ExternalIP", "203.0.113.9"),
        ],
        10250,
    );
    let dir = tempfile::tempdir().expect("dir");
    let _h = gateway(&api, &dir.path().join("pki"), "[]").await;
    eventually("a CSR is created", Duration::from_secs(5), || async {
        !api.csrs().is_empty()
    })
    .await;
    assert_eq!(
        requested_sans(&api.csrs()[0].request_pem),
        ["127.0.0.1", "203.0.113.9", NODE]
    );
}

#[tokio::test]
async fn a_denied_csr_is_logged_with_its_reason_and_retried() {
    use std::process::{Command, Stdio};
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    api.set_mode(Mode::AutoDeny {
        reason: "NotAllowedHere".into(),
        message: "ask the platform team".into(),
    });
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = api.write_kubeconfig(dir.path());
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    };
    let port = free_port();
    // Its own ops port: the default one may be taken by another gateway a test runs.
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: {NODE}\naddress: 127.0.0.1\nport: {port}\ncertDir: pki\nserverTLSBootstrap: true\nnodeAddresses: [127.0.0.1]\nkubeconfig: {}\nauthentication:\n  webhook: {{enabled: false}}\nauthorization:\n  mode: RBAC\nops:\n  address: 127.0.0.1:{}\n",
            kubeconfig.display(),
            free_port()
        ),
    )
    .expect("config");
    let log_path = dir.path().join("gateway.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
        .args(["serve", "--config"])
        .arg(dir.path().join("config.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let started = Instant::now();
    // Generous bounds: a busy machine only makes this slower.
    while api.csrs().is_empty() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = client(&api).handshake(addr).await.expect_err("no certificate");
    assert_eq!(alert_of(&refused), Some(rustls::AlertDescription::InternalError));
    // The first retry waits 2 s (the kubelet's backoff), so a second CSR shows the retry.
    while api.csrs().len() < 2 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(api.csrs().len() >= 2, "retried after the denial: {log}");
    assert!(
        log.contains("is denied, reason: NotAllowedHere, message: ask the platform team"),
        "{log}"
    );
}

#[tokio::test]
async fn a_change_of_the_node_addresses_requests_a_new_certificate_at_once() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    api.set_mode(Mode::AutoIssue {
        lifetime: Duration::from_secs(3600),
    });
    api.set_node(NODE, &[("Hostname", NODE), ("InternalIP", "127.0.0.1")], 10250);
    let dir = tempfile::tempdir().expect("dir");
    let h = gateway(&api, &dir.path().join("pki"), "[]").await;
    eventually("the first certificate is issued", Duration::from_secs(5), || async {
        api.csrs().iter().any(|c| c.certificate_pem.is_some())
    })
    .await;
    eventually("the first certificate is served", Duration::from_secs(5), || {
        // The Node names no "localhost": verify as its IP.
        let c = client(&api).server_name("127.0.0.1");
        async move { c.handshake(h.addr).await.is_ok() }
    })
    .await;
    api.set_node(
        NODE,
        &[
            ("Hostname", NODE),
            ("InternalIP", "127.0.0.1"),
            ("InternalIP", "10.1.2.3"),
        ],
        10250,
    );
    let csrs = api.wait_for_csrs(2, Duration::from_secs(5)).await;
    assert_eq!(requested_sans(&csrs[1].request_pem), ["10.1.2.3", "127.0.0.1", NODE]);
}
