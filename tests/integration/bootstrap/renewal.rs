//! Renewal of the bootstrapped serving certificate when things go wrong: the API server fails
//! while the CSR is pending (one CSR, followed to its approval), rotations leave only the
//! current and the previous pair in `certDir`, an expired certificate is no longer served, a
//! Node that becomes readable again leaves no grown backoff behind, and a restart does not move
//! the rotation deadline.

use super::*;
use crate::common::free_port;

use std::process::{Child, Command, Stdio};

/// Watch requests the stand-in has received.
fn watches(api: &CsrApi) -> usize {
    api.requests().iter().filter(|(_, t)| t.contains("watch=")).count()
}

#[tokio::test]
async fn a_failed_rewatch_keeps_waiting_on_the_same_csr_until_it_is_approved() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    let dir = tempfile::tempdir().expect("dir");
    let h = gateway(&api, &dir.path().join("pki"), "[127.0.0.1, localhost]").await;
    let csrs = api.wait_for_csrs(1, Duration::from_secs(10)).await;
    let name = csrs[0].name.clone();
    eventually("the CSR is watched", Duration::from_secs(10), || async {
        watches(&api) >= 1
    })
    .await;

    // A control-plane upgrade: the API server goes away and comes back on the same port...
    api.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = watches(&api);
    // ...answers the next two watches with 429...
    api.fail_watches(2);
    api.restart().await;
    eventually(
        "the CSR is watched again past the 429s",
        Duration::from_secs(20),
        || async { watches(&api) >= before + 3 },
    )
    .await;
    // ...and compacts its history: resuming from the old resourceVersion gets ERROR 410 Expired.
    api.set_node("unrelated", &[("InternalIP", "10.9.9.9")], 10250);
    api.compact();
    let before = watches(&api);
    api.end_watches();
    eventually(
        "the CSR is read and watched again after the 410",
        Duration::from_secs(20),
        || async { watches(&api) >= before + 2 },
    )
    .await;

    // The approval given to the first (and only) CSR is picked up.
    api.approve(&name);
    api.issue(&name, Duration::from_secs(3600));
    eventually("the issued certificate is served", Duration::from_secs(10), || {
        let c = client(&api);
        async move { c.handshake(h.addr).await.is_ok() }
    })
    .await;
    let served = client(&api).peer_chain(h.addr).await;
    assert_eq!(served.first(), api.csr(&name).and_then(|c| c.leaf_der()).as_ref());
    assert_eq!(
        api.csrs().iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        [name],
        "exactly one CSR for the attempt"
    );
    let reads = api
        .requests()
        .iter()
        .filter(|(m, t)| m == "GET" && t.starts_with(&format!("{}/csr-", crate::common::csr_api::CSR_PATH)))
        .count();
    assert!(
        reads >= 2,
        "the CSR was read again by name after the failures ({reads})"
    );
}

/// The `kubelet-server-<time>.pem` files in `dir`.
fn pairs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("cert dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kubelet-server-2") && n.ends_with(".pem"))
        .collect();
    names.sort();
    names
}

fn leaf_of(file: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(file).expect("pair file");
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .expect("PEM")
}

#[tokio::test]
async fn rotations_keep_only_the_current_and_the_previous_pair() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    api.set_mode(Mode::AutoIssue {
        lifetime: Duration::from_secs(2),
    });
    let dir = tempfile::tempdir().expect("dir");
    let cert_dir = dir.path().join("pki");
    let _h = gateway(&api, &cert_dir, "[127.0.0.1, localhost]").await;
    // Three certificates: the first and two rotations (each due after 1.1-1.7 s).
    let issued =
        |csrs: &[crate::common::csr_api::CsrRecord]| csrs.iter().filter(|c| c.certificate_pem.is_some()).count();
    api.wait_until(Duration::from_secs(30), |csrs| issued(csrs) >= 3)
        .await
        .expect("two rotations");
    api.set_mode(Mode::Pending);
    let csrs = api.csrs();
    let leaves: Vec<CertificateDer<'static>> = csrs.iter().filter_map(|c| c.leaf_der()).collect();
    let newest = leaves.last().expect("issued").clone();
    let link = cert_dir.join("kubelet-server-current.pem");
    eventually("the newest certificate is current", Duration::from_secs(10), || {
        let (link, newest) = (link.clone(), newest.clone());
        async move { std::fs::read(&link).is_ok() && leaf_of(&link) == newest }
    })
    .await;

    let files = pairs(&cert_dir);
    assert_eq!(files.len(), 2, "the current and the previous pair only: {files:?}");
    let current = std::fs::read_link(&link).expect("link");
    assert_eq!(current.to_string_lossy(), files[1]);
    assert_eq!(leaf_of(&cert_dir.join(&files[1])), newest);
    assert_eq!(
        leaf_of(&cert_dir.join(&files[0])),
        leaves[leaves.len() - 2],
        "the previous pair is the one it replaced"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_no_longer_served_while_renewal_fails() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    api.set_mode(Mode::AutoIssue {
        lifetime: Duration::from_secs(3),
    });
    let dir = tempfile::tempdir().expect("dir");
    let h = gateway(&api, &dir.path().join("pki"), "[127.0.0.1, localhost]").await;
    api.wait_until(Duration::from_secs(10), |csrs| {
        csrs.iter().any(|c| c.certificate_pem.is_some())
    })
    .await
    .expect("the first certificate");
    // Every renewal is denied from now on.
    api.set_mode(Mode::AutoDeny {
        reason: "NotNow".into(),
        message: "renewals are frozen".into(),
    });
    eventually("the certificate is served", Duration::from_secs(5), || {
        let c = client(&api);
        async move { c.handshake(h.addr).await.is_ok() }
    })
    .await;

    // After notAfter the listener answers as with no certificate at all.
    eventually("an expired certificate is refused", Duration::from_secs(15), || {
        let c = TlsClient::insecure();
        async move {
            matches!(c.handshake(h.addr).await, Err(e) if alert_of(&e) == Some(rustls::AlertDescription::InternalError))
        }
    })
    .await;
    // (On a busy machine a renewal may have been issued before the mode changed: the last
    // certificate issued is the one that expired.)
    let csrs = api.csrs();
    let last_issued = csrs.iter().rposition(|c| c.certificate_pem.is_some()).expect("issued");
    let leaf = csrs[last_issued].leaf_der().expect("leaf");
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).expect("parse");
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now as i64 >= not_after, "refused only once expired");
    let csrs = api
        .wait_until(Duration::from_secs(10), |csrs| csrs.len() > last_issued + 1)
        .await
        .expect("a renewal is attempted");
    assert!(
        csrs[last_issued + 1..].iter().all(|c| c.is_denied()),
        "the renewals after it were denied"
    );
    let refused = TlsClient::insecure()
        .handshake(h.addr)
        .await
        .expect_err("still refused");
    assert_eq!(alert_of(&refused), Some(rustls::AlertDescription::InternalError));
    let (status, body) = h.ops_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]serving-certificate failed: no serving certificate yet ("),
        "{body}"
    );
}

#[tokio::test]
async fn a_node_that_becomes_readable_leaves_no_grown_backoff_for_the_csr() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    api.set_mode(Mode::AutoDeny {
        reason: "NotAllowedHere".into(),
        message: "no".into(),
    });
    let dir = tempfile::tempdir().expect("dir");
    // Addresses from the Node, which does not exist yet: its reads fail and back off
    // (100 ms doubling to 1.6 s).
    let _h = gateway(&api, &dir.path().join("pki"), "[]").await;
    let node_reads = || {
        api.requests()
            .iter()
            .filter(|(_, t)| t.starts_with(&format!("{}/{NODE}", crate::common::csr_api::NODES_PATH)))
            .count()
    };
    eventually("the Node is read six times", Duration::from_secs(20), || async {
        node_reads() >= 6
    })
    .await;
    api.set_node(NODE, &[("InternalIP", "127.0.0.1")], 10250);

    api.wait_for_csrs(1, Duration::from_secs(20)).await;
    let first = Instant::now();
    api.wait_for_csrs(2, Duration::from_secs(20)).await;
    let gap = first.elapsed();
    // The CSR's own backoff starts at 100 ms; the Node's grown one (1.6 s, or more) must not
    // carry over.
    assert!(
        gap < Duration::from_millis(1500),
        "the retry after the denial took {gap:?}"
    );
}

/// `kubelet-gate serve` with `serverTLSBootstrap` in `dir`, its log in `log`.
fn spawn_serve(dir: &Path, kubeconfig: &Path, log: &Path) -> Child {
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: {NODE}\naddress: 127.0.0.1\nport: {}\ncertDir: pki\nserverTLSBootstrap: true\nnodeAddresses: [127.0.0.1, localhost]\nkubeconfig: {}\nauthentication:\n  webhook: {{enabled: false}}\nauthorization:\n  mode: RBAC\nops:\n  address: 127.0.0.1:{}\n",
            free_port(),
            kubeconfig.display(),
            free_port(),
        ),
    )
    .expect("config");
    Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
        .args(["serve", "--config"])
        .arg(dir.join("config.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("spawn")
}

/// The `rotation deadline is ...` of the serving certificate, from the gateway's log.
async fn logged_deadline(log: &Path) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("serving certificate: certificate expiration is"))
        {
            let at = line.find("rotation deadline is ").expect("deadline") + "rotation deadline is ".len();
            return line[at..].trim().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no deadline logged: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_restart_does_not_move_the_rotation_deadline() {
    let api = CsrApi::start(&format!("system:node:{NODE}")).await;
    let dir = tempfile::tempdir().expect("dir");
    let cert_dir = dir.path().join("pki");
    std::fs::create_dir_all(&cert_dir).expect("cert dir");
    // A stored certificate from an earlier run, valid for an hour.
    let leaf = api.signer_ca().kubelet_serving(
        NODE,
        &["localhost"],
        &[std::net::IpAddr::from([127, 0, 0, 1])],
        Duration::from_secs(3600),
    );
    let name = "kubelet-server-2026-01-01-00-00-00.pem";
    std::fs::write(cert_dir.join(name), format!("{}{}", leaf.cert_pem, leaf.key_pem)).expect("pair");
    std::os::unix::fs::symlink(name, cert_dir.join("kubelet-server-current.pem")).expect("link");
    let kubeconfig = api.write_kubeconfig(dir.path());

    let mut deadlines = Vec::new();
    for run in 0..3 {
        let log = dir.path().join(format!("gateway-{run}.log"));
        let mut child = spawn_serve(dir.path(), &kubeconfig, &log);
        let deadline = logged_deadline(&log).await;
        let _ = child.kill();
        let _ = child.wait();
        deadlines.push(deadline);
    }
    assert!(deadlines[0].starts_with("20"), "{deadlines:?}");
    assert_eq!(deadlines[0], deadlines[1], "{deadlines:?}");
    assert_eq!(deadlines[1], deadlines[2], "{deadlines:?}");
    assert!(api.csrs().is_empty(), "a valid stored certificate needs no CSR");
}
