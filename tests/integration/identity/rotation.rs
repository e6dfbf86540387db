//! The joined certificate over its life: renewed with itself (`selfnodeclient`) at 70–90 % of
//! its lifetime while requests keep coming, without a failed API call and without the old
//! certificate being presented after it expires; an expired certificate replaced through the
//! bootstrap kubeconfig when it is still there, and reported when it is gone; a start with an
//! expired kubeconfig, with and without the bootstrap kubeconfig.

use super::*;

use crate::common::csr_api::{NODE_CLIENT_APPROVED, SELF_NODE_CLIENT_APPROVED};

/// The pairs in the client store.
fn pairs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("cert dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kubelet-gate-client-2"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_renewal_under_load_fails_no_call_and_the_old_certificate_is_never_used_after_it_expires() {
    let api = cluster().await;
    // The first certificate is short-lived; its renewal is not (an hour).
    api.next_client_lifetimes(&[Duration::from_secs(4)]);
    let node = NodeImage::new(&api);
    let h = node.start(fast()).await;
    joined(&h, &api).await;
    let first = node.current_leaf();
    let (old_serial, old_end) = serial_and_end(&first);
    let kubeconfig_before = std::fs::read(&node.kubeconfig).expect("kubeconfig");

    let load = Load::start(&h, &api, 4);
    eventually("the old certificate expires", Duration::from_secs(30), || async {
        unix_now() > old_end + 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.finish().await;

    assert!(failed.is_empty(), "no request failed: {failed:?} ({ok} ok)");
    assert!(ok >= 20, "the load ran ({ok})");
    assert_eq!(h.metric("kubelet_gate_apiserver_request_errors_total").await, 0.0);
    // Two CSRs: the join (nodeclient) and the renewal, asked for with the current certificate.
    let csrs = api.csrs();
    assert_eq!(csrs.len(), 2, "{csrs:?}");
    assert_eq!(csrs[0].username, "system:bootstrap:abcdef");
    assert_eq!(csrs[1].username, format!("system:node:{NODE}"));
    assert_eq!(
        api.auto_approval(&csrs[1].name).as_deref(),
        Some(SELF_NODE_CLIENT_APPROVED)
    );
    let renewed = node.current_leaf();
    assert_eq!(renewed, csrs[1].leaf_der().expect("issued").to_vec());
    let (new_serial, _) = serial_and_end(&renewed);
    let reviews = token_reviews(&api);
    assert!(
        reviews.iter().all(|c| c.status == 201),
        "every TokenReview was accepted"
    );
    let last_old = reviews
        .iter()
        .rposition(|c| is_certificate(c, &old_serial))
        .expect("old used");
    assert!(
        reviews[last_old + 1..].iter().all(|c| is_certificate(c, &new_serial)),
        "after the switch only the renewed certificate"
    );
    assert!(
        api.calls()
            .iter()
            .all(|c| !matches!(&c.credential, Credential::Certificate { valid: false, .. })),
        "no expired certificate was ever presented"
    );
    // The kubeconfig names the link, so the renewal needed no rewrite; the store keeps two.
    assert_eq!(std::fs::read(&node.kubeconfig).expect("kubeconfig"), kubeconfig_before);
    assert_eq!(pairs(&node.cert_dir).len(), 2);
}

/// A join with a certificate that expires soon, in a cluster that never approves renewals
/// (no `selfnodeclient` binding): the node's renewals stay pending.
async fn joined_with_expiring_certificate(api: &CsrApi, node: &NodeImage) -> Harness {
    api.unbind("kubeadm:node-autoapprove-certificate-rotation");
    api.set_controller(Some(Duration::from_secs(4)));
    let options = BuildOptions {
        bootstrap_wait: Duration::from_secs(1),
        ..fast()
    };
    let h = node.start(options).await;
    joined(&h, api).await;
    h
}

/// When a CSR was created, in Unix seconds.
fn created(c: &crate::common::csr_api::CsrRecord) -> i64 {
    let t = c.object["metadata"]["creationTimestamp"]
        .as_str()
        .expect("creationTimestamp");
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp()
}

fn by_bootstrap(c: &crate::common::csr_api::CsrRecord) -> bool {
    c.username == "system:bootstrap:abcdef"
}

#[tokio::test]
async fn an_expired_certificate_is_replaced_through_the_bootstrap_kubeconfig() {
    let api = cluster().await;
    let node = NodeImage::new(&api);
    let h = joined_with_expiring_certificate(&api, &node).await;
    let (_, end) = serial_and_end(&node.current_leaf());
    // Renewals by the node stay pending; once the certificate has expired, the next attempt
    // asks with the bootstrap token and is approved as a first join.
    let csrs = api
        .wait_until(Duration::from_secs(30), |csrs| {
            csrs.iter()
                .skip(1)
                .any(|c| by_bootstrap(c) && c.certificate_pem.is_some() && created(c) >= end)
        })
        .await
        .unwrap_or_else(|| {
            let seen: Vec<String> = api
                .csrs()
                .iter()
                .map(|c| {
                    format!(
                        "{} by {} {:?} issued={}",
                        c.name,
                        c.username,
                        c.conditions,
                        c.certificate_pem.is_some()
                    )
                })
                .collect();
            panic!("no new certificate through the bootstrap kubeconfig: {seen:#?}")
        });
    let rejoin = csrs
        .iter()
        .skip(1)
        .find(|c| by_bootstrap(c) && created(c) >= end)
        .expect("the new join");
    assert_eq!(api.auto_approval(&rejoin.name).as_deref(), Some(NODE_CLIENT_APPROVED));
    assert!(
        csrs.iter()
            .filter(|c| !by_bootstrap(c))
            .all(|c| c.username == format!("system:node:{NODE}") && c.is_pending()),
        "the node's own renewals were never approved: {csrs:?}"
    );
    assert!(
        csrs.iter()
            .filter(|c| by_bootstrap(c))
            .all(|c| c.certificate_pem.is_some()),
        "every request with the bootstrap token was a join, approved"
    );
    joined(&h, &api).await;
}

#[tokio::test]
async fn an_expired_certificate_without_the_bootstrap_kubeconfig_is_reported() {
    let api = cluster().await;
    let node = NodeImage::new(&api);
    let h = joined_with_expiring_certificate(&api, &node).await;
    std::fs::remove_file(&node.bootstrap).expect("remove the bootstrap kubeconfig");
    let removed = unix_now();
    let (_, end) = serial_and_end(&node.current_leaf());
    eventually("the certificate expires", Duration::from_secs(30), || async {
        unix_now() > end + 1
    })
    .await;
    let body = Arc::new(Mutex::new(String::new()));
    eventually("readiness names what is missing", Duration::from_secs(30), || {
        let (h, body) = (&h, body.clone());
        async move {
            let (status, text) = h.ops_get("/readyz").await;
            let gone =
                text.contains("is gone: there is no valid client certificate and nothing to request a new one with");
            *body.lock().unwrap_or_else(|p| p.into_inner()) = text;
            status == 503 && gone
        }
    })
    .await;
    let body = body.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        body.contains("[-]apiserver failed: no client identity for the API server"),
        "{body}"
    );
    assert_eq!(reviewed_request(&h, &api, "after-expiry").await, 401);
    assert!(
        api.calls()
            .iter()
            .all(|c| !matches!(&c.credential, Credential::Certificate { valid: false, .. })),
        "the expired certificate is not presented"
    );
    assert!(
        api.csrs()
            .iter()
            .filter(|c| by_bootstrap(c))
            .all(|c| created(c) <= removed),
        "no join once the bootstrap kubeconfig was gone"
    );
}

#[tokio::test]
async fn a_start_with_an_expired_kubeconfig_joins_again_or_fails_naming_both_files() {
    let api = cluster().await;
    let node = NodeImage::new(&api);
    // A kubeconfig left from an earlier life, its certificate expired.
    let now = std::time::SystemTime::now();
    let expired =
        api.client_signer()
            .kubelet_client(NODE, now - Duration::from_secs(7200), now - Duration::from_secs(3600));
    let link = install(
        &node.cert_dir,
        "kubelet-gate-client-2026-01-01-00-00-00.pem",
        "kubelet-gate-client-current.pem",
        &pair_pem(&expired),
    );
    let old = api.write_kubeconfig_with_cert_files(node.dir.path(), &link, &link);
    std::fs::rename(&old, &node.kubeconfig).expect("kubeconfig");

    // Without the bootstrap kubeconfig: the start fails, naming both files.
    let hidden = node.dir.path().join("bootstrap.hidden");
    std::fs::rename(&node.bootstrap, &hidden).expect("hide");
    let config_yaml = format!(
        "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: {NODE}\ncertDir: {}\nkubeconfig: {}\n{}authentication: {{webhook: {{enabled: true}}}}\nauthorization: {{mode: AlwaysAllow}}\n",
        node.cert_dir.display(),
        node.kubeconfig.display(),
        node.top_yaml()
    );
    let config = kubelet_gate::config::Config::from_yaml(&config_yaml, node.dir.path()).expect("config");
    let err = match kubelet_gate::app::build_with(&config, fast()).await {
        Ok(_) => panic!("no identity and no bootstrap kubeconfig"),
        Err(e) => e,
    };
    assert!(err.is_configuration());
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("kubeconfig {} cannot be used (", node.kubeconfig.display()))
            && message.contains("its client certificate expired at")
            && message.ends_with(&format!(
                "and bootstrapKubeconfig {}: does not exist",
                node.bootstrap.display()
            )),
        "{message}"
    );
    assert!(api.requests().is_empty());

    // With it: a new join into the same store (the kubeconfig already names its link).
    std::fs::rename(&hidden, &node.bootstrap).expect("restore");
    let h = node.start(fast()).await;
    joined(&h, &api).await;
    let csrs = api.csrs();
    assert_eq!(csrs.len(), 1);
    assert_eq!(csrs[0].username, "system:bootstrap:abcdef");
    assert_ne!(node.current_leaf(), expired.chain[0].to_vec());
    let (serial, _) = serial_and_end(&node.current_leaf());
    assert!(token_reviews(&api).iter().all(|c| is_certificate(c, &serial)));
}
