//! A borrowed identity that its owner renews: the kubelet's kubeconfig, whose
//! `client-certificate` is the `kubelet-client-current.pem` link the kubelet swaps, and a
//! token file rewritten in place of the old token. The gateway follows both without a restart
//! and without a failed call, and stops using the old credential.

use super::*;

#[tokio::test]
async fn the_kubelets_renewed_client_certificate_is_used_before_the_old_one_expires() {
    let api = CsrApi::start("system:serviceaccount:kube-system:unused").await;
    let dir = tempfile::tempdir().expect("dir");
    let pki = dir.path().join("kubelet-pki");
    let now = std::time::SystemTime::now();
    // The kubelet's current certificate, close to its end.
    let old = api
        .client_signer()
        .kubelet_client(NODE, now - Duration::from_secs(3600), now + Duration::from_secs(6));
    let link = install(
        &pki,
        "kubelet-client-2026-01-01-00-00-00.pem",
        "kubelet-client-current.pem",
        &pair_pem(&old),
    );
    let kubeconfig = api.write_kubeconfig_with_cert_files(dir.path(), &link, &link);
    let h = gateway(&kubeconfig, "", fast()).await;
    assert_eq!(reviewed_request(&h, &api, "first").await, 200);

    let load = Load::start(&h, &api, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The kubelet renews: a new pair, and the link swapped to it.
    let renewed = api.client_signer().kubelet_client(
        NODE,
        std::time::SystemTime::now() - Duration::from_secs(1),
        std::time::SystemTime::now() + Duration::from_secs(3600),
    );
    install(
        &pki,
        "kubelet-client-2026-01-01-00-00-01.pem",
        "kubelet-client-current.pem",
        &pair_pem(&renewed),
    );
    let (old_serial, old_end) = serial_and_end(old.chain[0].as_ref());
    let (new_serial, _) = serial_and_end(renewed.chain[0].as_ref());
    // Load until the old certificate has been expired for a while.
    eventually("the old certificate expires", Duration::from_secs(30), || async {
        unix_now() > old_end + 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.finish().await;

    assert!(failed.is_empty(), "no request failed: {failed:?} ({ok} ok)");
    assert!(ok >= 20, "the load ran ({ok})");
    let reviews = token_reviews(&api);
    assert!(
        reviews.iter().all(|c| c.status == 201),
        "every TokenReview was accepted: {:?}",
        reviews.iter().filter(|c| c.status != 201).collect::<Vec<_>>()
    );
    assert!(
        reviews.iter().any(|c| is_certificate(c, &old_serial)),
        "the old one was used first"
    );
    assert!(
        reviews.iter().any(|c| is_certificate(c, &new_serial)),
        "then the renewed one"
    );
    let last_old = reviews
        .iter()
        .rposition(|c| is_certificate(c, &old_serial))
        .expect("old");
    assert!(
        reviews[last_old + 1..].iter().all(|c| is_certificate(c, &new_serial)),
        "once renewed, only the renewed certificate"
    );
    assert_eq!(h.metric("kubelet_gate_apiserver_request_errors_total").await, 0.0);
    assert!(
        h.reload_stats.successes.load(Ordering::Relaxed) >= 1,
        "rebuilt by the reloader"
    );
}

#[tokio::test]
async fn a_rewritten_token_file_is_used_without_waiting_for_the_old_token_to_fail() {
    let api = CsrApi::start("system:serviceaccount:kube-system:unused").await;
    // Two bootstrap-token identities allowed to create TokenReviews stand for a projected
    // service account token and its successor.
    let (first, second) = ("aaaaaa.0123456789abcdef", "bbbbbb.fedcba9876543210");
    api.add_bootstrap_token(first, &[]);
    api.add_bootstrap_token(second, &[]);
    api.bind(
        "reviewers",
        "system:auth-delegator",
        &[("Group", "system:bootstrappers")],
    );
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, first).expect("token");
    let kubeconfig = api.write_kubeconfig_with_token_file(dir.path(), &token_file);
    let h = gateway(&kubeconfig, "", fast()).await;
    assert_eq!(reviewed_request(&h, &api, "before").await, 200);
    let used = |id: &str| {
        let id = id.to_owned();
        move |c: &Call| c.credential == Credential::BootstrapToken(id.clone())
    };
    assert!(token_reviews(&api).iter().all(used("aaaaaa")));

    // The kubelet refreshes the projected token: a new file renamed into place.
    std::fs::write(dir.path().join(".token.new"), second).expect("new token");
    std::fs::rename(dir.path().join(".token.new"), &token_file).expect("swap");
    let mut n = 0;
    eventually("the new token is presented", Duration::from_secs(10), || {
        n += 1;
        let (h, api) = (&h, &api);
        let token = format!("during-{n}");
        async move {
            assert_eq!(reviewed_request(h, api, &token).await, 200);
            token_reviews(api).last().is_some_and(used("bbbbbb"))
        }
    })
    .await;
    // The old token is revoked: nothing fails.
    api.remove_bootstrap_token(first);
    let since = token_reviews(&api).len();
    for i in 0..10 {
        assert_eq!(reviewed_request(&h, &api, &format!("after-{i}")).await, 200);
    }
    let after = &token_reviews(&api)[since..];
    assert_eq!(after.len(), 10);
    assert!(after.iter().all(|c| c.status == 201 && used("bbbbbb")(c)), "{after:?}");
    assert_eq!(h.metric("kubelet_gate_apiserver_request_errors_total").await, 0.0);
}
