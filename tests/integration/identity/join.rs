//! Joining with nothing but a bootstrap token (kubernetes pkg/kubelet/certificate/bootstrap/
//! bootstrap.go): the CSR, the approval kube-controller-manager gives it, the stored pair and
//! the written kubeconfig, the first TokenReview with the new identity, a restart that reuses
//! it; a malformed token refused before anything is sent; a denied CSR, logged and retried,
//! with no token in any log line.

use super::*;
use crate::common::free_port;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use kubelet_gate::k8s::kubeconfig::{Loaded, Material};

use crate::common::csr_api::{CLIENT_KUBELET_SIGNER, Mode, NODE_CLIENT_APPROVED};

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).expect("file").permissions().mode() & 0o777
}

#[tokio::test]
async fn a_first_join_writes_the_kubeconfig_and_a_restart_reuses_the_certificate() {
    let api = cluster().await;
    let node = NodeImage::new(&api);
    let h = node.start(fast()).await;
    joined(&h, &api).await;

    // One CSR, as the kubelet sends it, approved for the token's group (nodeclient).
    let csrs = api.csrs();
    assert_eq!(csrs.len(), 1, "{csrs:?}");
    let csr = &csrs[0];
    assert_eq!(csr.signer_name, CLIENT_KUBELET_SIGNER);
    assert_eq!(csr.usages, ["digital signature", "client auth"]);
    assert_eq!(csr.username, "system:bootstrap:abcdef");
    assert_eq!(csr.groups, ["system:bootstrappers", GROUP, "system:authenticated"]);
    assert_eq!(api.auto_approval(&csr.name).as_deref(), Some(NODE_CLIENT_APPROVED));
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.request_pem.as_bytes()).expect("pem")
    };
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref()).expect("csr");
    let info = &request.certification_request_info;
    assert_eq!(
        info.subject.to_string(),
        format!("CN=system:node:{NODE}, O=system:nodes")
    );
    assert_eq!(
        info.subject_pki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string()),
        Some("1.2.840.10045.3.1.7".to_string()),
        "ECDSA P-256"
    );
    assert!(
        request.requested_extensions().into_iter().flatten().next().is_none(),
        "no SANs"
    );

    // The pair in certDir behind the current link, 0600, and the kubeconfig pointing at it.
    let target = std::fs::read_link(node.link()).expect("a link");
    let name = target.to_string_lossy().into_owned();
    assert!(
        name.starts_with("kubelet-gate-client-2") && name.ends_with(".pem"),
        "{name}"
    );
    assert_eq!(mode_of(&node.cert_dir.join(&target)), 0o600);
    let pair = std::fs::read_to_string(node.link()).expect("pair");
    assert!(pair.contains("BEGIN CERTIFICATE") && pair.contains("PRIVATE KEY"));
    assert_eq!(node.current_leaf(), csr.leaf_der().expect("issued").to_vec());
    assert_eq!(mode_of(&node.kubeconfig), 0o600);
    let written = Loaded::read(&node.kubeconfig).expect("kubeconfig");
    assert_eq!(written.server, api.url());
    assert_eq!(written.client_cert, Some(Material::File(node.link())));
    assert_eq!(written.client_key, Some(Material::File(node.link())));
    assert!(written.token.is_none() && written.token_file.is_none());

    // Reviews go with the new identity; the bootstrap token only ever asked for the CSR.
    let (serial, _) = serial_and_end(&node.current_leaf());
    let reviews = token_reviews(&api);
    assert!(!reviews.is_empty());
    assert!(
        reviews
            .iter()
            .all(|c| c.user.as_deref() == Some(&format!("system:node:{NODE}")[..]) && is_certificate(c, &serial)),
        "{reviews:?}"
    );
    let with_token: Vec<Call> = api
        .calls()
        .into_iter()
        .filter(|c| c.credential == Credential::BootstrapToken("abcdef".into()))
        .collect();
    assert!(!with_token.is_empty());
    assert!(
        with_token
            .iter()
            .all(|c| c.path().starts_with(crate::common::csr_api::CSR_PATH)),
        "{with_token:?}"
    );

    // A restart: the kubeconfig is valid, so no new CSR and no bootstrap token.
    drop(h);
    let calls_before = api.calls().len();
    let h = node.start(fast()).await;
    joined(&h, &api).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.csrs().len(), 1, "no new CSR after a restart");
    assert!(
        api.calls()[calls_before..]
            .iter()
            .all(|c| c.credential != Credential::BootstrapToken("abcdef".into())),
        "the bootstrap token is not used again"
    );
    assert!(token_reviews(&api).last().is_some_and(|c| is_certificate(c, &serial)));
}

/// A GatewayConfiguration for `kubelet-gate serve` in `dir`, joining with `bootstrap`.
fn serve_config(dir: &Path, node: &NodeImage, port: u16, ops_port: u16) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: {NODE}\naddress: 127.0.0.1\nport: {port}\ncertDir: {}\nnodeAddresses: [127.0.0.1]\nkubeconfig: {}\nbootstrapKubeconfig: {}\nauthentication:\n  webhook: {{enabled: true}}\nauthorization:\n  mode: AlwaysAllow\nupstream:\n  readOnly: http://127.0.0.1:9\nops:\n  address: 127.0.0.1:{ops_port}\n",
            node.cert_dir.display(),
            node.kubeconfig.display(),
            node.bootstrap.display()
        ),
    )
    .expect("config");
    path
}

#[tokio::test]
async fn a_malformed_or_empty_token_is_refused_before_any_request() {
    let api = cluster().await;
    for (token, why) in [
        (
            "abcdef-0123456789abcdef",
            "the bootstrap token is not of the form <token-id>.<token-secret> ([a-z0-9]{6}.[a-z0-9]{16})",
        ),
        ("", "the bootstrap token is empty"),
    ] {
        let node = NodeImage::with_token(&api, token);
        // In process: the build stops, naming the file.
        let config_path = serve_config(node.dir.path(), &node, free_port(), free_port());
        let config = kubelet_gate::config::Config::load(&config_path).expect("config");
        let err = match kubelet_gate::app::build_with(&config, fast()).await {
            Ok(_) => panic!("a malformed token must stop the start"),
            Err(e) => e,
        };
        assert!(err.is_configuration());
        assert_eq!(
            err.to_string(),
            format!("bootstrapKubeconfig {}: {why}", node.bootstrap.display())
        );
        // The binary: exit 2, the same message; check-config says the same.
        for command in ["serve", "check-config"] {
            let out = Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
                .args([command, "--config"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .output()
                .expect("run");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "kubelet-gate: bootstrapKubeconfig {}: {why}",
                    node.bootstrap.display()
                )),
                "{command}: {stderr}"
            );
            if !token.is_empty() {
                assert!(!stderr.contains(token) && !stderr.contains(TOKEN_SECRET), "{stderr}");
            }
        }
        assert!(!node.kubeconfig.exists() && !node.cert_dir.exists(), "nothing written");
    }
    assert!(api.requests().is_empty(), "nothing was sent: {:?}", api.requests());
}

#[tokio::test]
async fn a_denied_csr_is_logged_with_its_reason_and_retried_and_no_token_is_ever_logged() {
    use base64::Engine as _;
    let api = cluster().await;
    // kube-controller-manager is not approving: an operator denies.
    api.set_controller(None);
    api.set_mode(Mode::AutoDeny {
        reason: "UnknownNode".into(),
        message: "this node is not in the inventory".into(),
    });
    let node = NodeImage::new(&api);
    let (port, ops_port) = (free_port(), free_port());
    let config = serve_config(node.dir.path(), &node, port, ops_port);
    let log_path = node.dir.path().join("gateway.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("KUBELET_GATE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("spawn");
    // The retry comes after the kubelet's first backoff step, 2 s.
    let csrs = api.wait_for_csrs(2, Duration::from_secs(30)).await;
    assert!(csrs.iter().all(|c| c.is_denied() && c.certificate_pem.is_none()));
    assert!(!node.kubeconfig.exists(), "no kubeconfig without a certificate");
    // Now the controller runs: the next attempt is approved and the node joins.
    api.set_controller(Some(Duration::from_secs(3600)));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let review_token = "review-secret-token-1234";
    api.add_review_token(review_token, "alice", &["team"]);
    let mut status = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if node.kubeconfig.exists() {
            status = match TlsClient::insecure()
                .send(
                    addr,
                    crate::common::client::build_request(
                        "GET",
                        "/healthz",
                        &[("authorization", &format!("Bearer {review_token}"))],
                        bytes::Bytes::new(),
                    ),
                )
                .await
            {
                Ok(r) => r.status.as_u16(),
                Err(_) => 0,
            };
            if status != 401 && status != 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).expect("log");
    // 502: reviewed and allowed, then the read-only port (nothing listens) did not answer.
    assert_eq!(status, 502, "{log}");
    let name = &csrs[0].name;
    assert!(
        log.contains(&format!(
            "certificate signing request {name} is denied, reason: UnknownNode, message: this node is not in the inventory"
        )),
        "{log}"
    );
    assert!(log.contains("client certificate issued and in use"), "{log}");
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [TOKEN, TOKEN_SECRET, review_token] {
        assert!(!log.contains(secret), "{secret} appears in the log");
        assert!(
            !log.contains(&b64.encode(secret)),
            "{secret} (base64) appears in the log"
        );
    }
    assert!(log.contains("kubelet-gate listening"), "the log was captured: {log}");
}
