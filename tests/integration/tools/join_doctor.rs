//! `diagnose --bootstrap-kubeconfig` against the stand-in cluster: the healthy join, and each
//! broken one named with its fix: a token of the wrong form (never sent), a token the cluster
//! does not know, a missing approval binding (first join or renewals), an API server
//! certificate the kubeconfig's CA does not verify, and a denied client CSR.

use super::*;

use kubelet_gate::tools::diagnose::join::{self, JoinOptions, JoinReport};

use crate::common::csr_api::CsrApi;

const TOKEN: &str = "abcdef.0123456789abcdef";
const GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

async fn cluster() -> CsrApi {
    let api = CsrApi::start("system:serviceaccount:kube-system:admin").await;
    api.add_bootstrap_token(TOKEN, &[GROUP]);
    api.kubeadm_bindings(GROUP);
    api
}

async fn doctor(bootstrap: &std::path::Path, admin: Option<PathBuf>) -> JoinReport {
    let o = JoinOptions {
        bootstrap_kubeconfig: bootstrap.to_path_buf(),
        kubeconfig: admin,
        node: Some(NODE.into()),
        timeout: Duration::from_secs(5),
    };
    join::run(&o, diagnose::unix_now()).await.expect("diagnose runs")
}

fn check<'r>(r: &'r JoinReport, id: &str, verdict: Verdict) -> &'r diagnose::Check {
    let c = r
        .check(id)
        .unwrap_or_else(|| panic!("no {id} check in\n{}", join::render(r)));
    assert_eq!(c.verdict, verdict, "{id}\n{}", join::render(r));
    c
}

fn failures(r: &JoinReport) -> Vec<&'static str> {
    r.checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id)
        .collect()
}

#[tokio::test]
async fn a_healthy_join_passes() {
    let api = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let bootstrap = api.write_bootstrap_kubeconfig(dir.path(), TOKEN);
    let r = doctor(&bootstrap, Some(api.write_kubeconfig(dir.path()))).await;
    assert!(r.ok, "{}", join::render(&r));
    for id in [
        "bootstrap-token",
        "apiserver-tls",
        "bootstrap-auth",
        "csr-create",
        "nodeclient",
        "selfnodeclient",
    ] {
        check(&r, id, Verdict::Pass);
    }
    assert_eq!(
        check(&r, "bootstrap-auth", Verdict::Pass).summary,
        "the token authenticates as system:bootstrap:abcdef"
    );
    check(&r, "client-csr", Verdict::Info);
    let text = join::render(&r);
    assert!(
        !text.contains("0123456789abcdef"),
        "the secret is never printed: {text}"
    );
}

#[tokio::test]
async fn a_token_of_the_wrong_form_is_named_and_never_sent() {
    let api = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let bootstrap = api.write_bootstrap_kubeconfig(dir.path(), "abcdef:0123456789abcdef");
    let r = doctor(&bootstrap, None).await;
    assert_eq!(failures(&r), ["bootstrap-token"], "{}", join::render(&r));
    let c = check(&r, "bootstrap-token", Verdict::Fail);
    assert_eq!(
        c.error.as_deref(),
        Some("the bootstrap token is not of the form <token-id>.<token-secret> ([a-z0-9]{6}.[a-z0-9]{16})")
    );
    assert_eq!(c.evidence, ["23 characters and no '.'"]);
    assert!(
        c.fix.as_deref().is_some_and(|f| f.contains("kubeadm token create")),
        "{c:?}"
    );
    check(&r, "apiserver-tls", Verdict::Pass);
    check(&r, "bootstrap-auth", Verdict::Info);
    assert!(api.requests().is_empty(), "nothing was sent: {:?}", api.requests());
    assert!(!join::render(&r).contains("0123456789abcdef"));
}

#[tokio::test]
async fn a_token_the_cluster_does_not_know_is_named() {
    let api = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let bootstrap = api.write_bootstrap_kubeconfig(dir.path(), "zzzzzz.0123456789abcdef");
    let r = doctor(&bootstrap, None).await;
    assert_eq!(failures(&r), ["bootstrap-auth"], "{}", join::render(&r));
    let c = check(&r, "bootstrap-auth", Verdict::Fail);
    assert_eq!(c.summary, "the API server does not accept the token (401 Unauthorized)");
    assert!(
        c.fix
            .as_deref()
            .is_some_and(|f| f.contains("bootstrap-token-<id>") && f.contains("kubeadm token create"))
    );
}

#[tokio::test]
async fn a_missing_approval_binding_is_named_with_the_binding_to_create() {
    let api = cluster().await;
    api.unbind("kubeadm:node-autoapprove-bootstrap");
    api.unbind("kubeadm:node-autoapprove-certificate-rotation");
    let dir = tempfile::tempdir().expect("dir");
    let bootstrap = api.write_bootstrap_kubeconfig(dir.path(), TOKEN);
    let r = doctor(&bootstrap, Some(api.write_kubeconfig(dir.path()))).await;
    assert_eq!(failures(&r), ["nodeclient", "selfnodeclient"], "{}", join::render(&r));
    check(&r, "csr-create", Verdict::Pass);
    let first = check(&r, "nodeclient", Verdict::Fail);
    assert_eq!(
        first.fix.as_deref(),
        Some(
            "kubectl create clusterrolebinding node-autoapprove-bootstrap --clusterrole=system:certificates.k8s.io:certificatesigningrequests:nodeclient --group=system:bootstrappers:kubeadm:default-node-token"
        )
    );
    let renewals = check(&r, "selfnodeclient", Verdict::Fail);
    assert_eq!(
        renewals.fix.as_deref(),
        Some(
            "kubectl create clusterrolebinding node-autoapprove-certificate-rotation --clusterrole=system:certificates.k8s.io:certificatesigningrequests:selfnodeclient --group=system:nodes"
        )
    );
    assert_eq!(
        renewals.evidence,
        [
            "kubeadm:kubelet-bootstrap -> system:node-bootstrapper [Group system:bootstrappers:kubeadm:default-node-token]"
        ]
    );
    // Without an administrator's kubeconfig the bindings cannot be read: said, not guessed.
    let r = doctor(&bootstrap, None).await;
    assert_eq!(failures(&r), ["nodeclient"], "{}", join::render(&r));
    check(&r, "selfnodeclient", Verdict::Info);
}

#[tokio::test]
async fn an_api_server_certificate_the_kubeconfig_does_not_trust_is_named_and_the_token_kept() {
    let api = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let other = Ca::new("some-other-cluster-ca");
    let bootstrap = api.write_kubeconfig_as(
        dir.path(),
        "bootstrap-wrong-ca.kubeconfig",
        &format!("    token: {TOKEN}\n"),
        &other.cert_pem(),
    );
    let r = doctor(&bootstrap, None).await;
    assert_eq!(failures(&r), ["apiserver-tls"], "{}", join::render(&r));
    let c = check(&r, "apiserver-tls", Verdict::Fail);
    assert_eq!(
        c.error.as_deref(),
        Some("tls: failed to verify certificate: x509: certificate signed by unknown authority")
    );
    assert!(
        c.fix
            .as_deref()
            .is_some_and(|f| f.contains("certificate-authority-data") && f.contains("cluster CA"))
    );
    check(&r, "bootstrap-auth", Verdict::Info);
    assert!(
        api.requests().is_empty(),
        "the token went nowhere: {:?}",
        api.requests()
    );
}

#[tokio::test]
async fn a_denied_client_csr_is_shown_with_its_reason() {
    let api = cluster().await;
    api.set_controller(None);
    api.set_mode(crate::common::csr_api::Mode::AutoDeny {
        reason: "UnknownNode".into(),
        message: "not in the inventory".into(),
    });
    let dir = tempfile::tempdir().expect("dir");
    let bootstrap = api.write_bootstrap_kubeconfig(dir.path(), TOKEN);
    // The join's CSR, sent with the bootstrap token as the gateway sends it.
    let client = kubelet_gate::k8s::identity::client_for(&bootstrap).expect("client");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let pem = kubelet_gate::certs::csr::Template::node_client(NODE)
        .csr_pem(&key)
        .expect("csr");
    let kind = kubelet_gate::certs::csr::Kind {
        signer: kubelet_gate::certs::client::SIGNER,
        usages: &["digital signature", "client auth"],
    };
    let csr = kubelet_gate::certs::csr::request(&client, &pem, kind)
        .await
        .expect("created");
    let r = doctor(&bootstrap, None).await;
    assert_eq!(failures(&r), ["client-csr"], "{}", join::render(&r));
    let c = check(&r, "client-csr", Verdict::Fail);
    assert_eq!(c.summary, format!("{} is denied", csr.name));
    assert_eq!(
        c.error.as_deref(),
        Some("certificate signing request is denied, reason: UnknownNode, message: not in the inventory")
    );
    assert!(c.evidence[0].starts_with(&csr.name) && c.evidence[0].ends_with("(by system:bootstrap:abcdef)"));
}

#[tokio::test]
async fn the_join_doctor_on_the_command_line() {
    let api = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let good = api.write_bootstrap_kubeconfig(dir.path(), TOKEN).display().to_string();
    let (code, out, err) = cli(args(&["diagnose", "--bootstrap-kubeconfig", &good, "--node", NODE])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("a node joining with this bootstrap kubeconfig would get its client certificate"),
        "{out}"
    );
    let bad = api.write_bootstrap_kubeconfig(dir.path(), "nope").display().to_string();
    let (code, out, _) = cli(args(&["diagnose", "--bootstrap-kubeconfig", &bad, "--output", "json"])).await;
    assert_eq!(code, 1, "{out}");
    let json: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["ok"], false);
    assert_eq!(json["checks"][0]["id"], "bootstrap-token");
    assert_eq!(json["checks"][0]["verdict"], "fail");
    let (code, _, err) = cli(args(&[
        "diagnose",
        "--bootstrap-kubeconfig",
        "/nonexistent",
        "127.0.0.1",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(args(&[
        "diagnose",
        "--bootstrap-kubeconfig",
        "/nonexistent/bootstrap.conf",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--bootstrap-kubeconfig /nonexistent/bootstrap.conf"),
        "{err}"
    );
}
