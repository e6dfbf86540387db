//! The private endpoints through the kubelet's port, after authorization; the kubelet's
//! certificate verified against `caFile`; a gateway without the read-only port; the gateway's
//! client certificate rotated under open streams; readiness.

use std::time::{Duration, Instant};

use super::*;
use crate::common::kubelet_port::GATEWAY_CN;
use crate::common::pki::{Ca, ClientSpec};

#[tokio::test]
async fn private_endpoints_are_forwarded_after_authorization_with_the_gateway_s_identity() {
    let r = rig(|_| {}).await;
    let auth = bearer(&OPERATOR);
    for (method, target, status, body) in [
        ("GET", "/configz", 200, r#"{"kubeletconfig":{"enableServer":true}}"#),
        (
            "GET",
            "/runningpods/",
            200,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#,
        ),
        (
            "POST",
            "/checkpoint/default/web/app",
            200,
            r#"{"items":["/var/lib/kubelet/checkpoints/checkpoint-web.tar"]}"#,
        ),
        ("GET", "/debug/pprof/heap", 200, "pprof\n"),
        ("POST", "/run/default/web/app?cmd=ls", 200, "ran\n"),
        (
            "POST",
            "/exec/default/web/app",
            400,
            "you must specify at least 1 of stdin, stdout, stderr",
        ),
    ] {
        let before = r.kubelet.count();
        let reply =
            r.h.client()
                .request(
                    r.h.addr,
                    method,
                    target,
                    &[("authorization", &auth), ("impersonate-user", "admin")],
                )
                .await;
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (status, body),
            "{method} {target}"
        );
        assert_eq!(r.kubelet.count(), before + 1, "{target} forwarded once");
        let seen = r.kubelet.seen().pop().expect("seen");
        assert_eq!(seen.target, target, "the authorized target, byte for byte");
        assert_eq!(seen.client_cn.as_deref(), Some(GATEWAY_CN));
        assert_eq!(seen.header("authorization"), None);
        assert_eq!(seen.header("impersonate-user"), None);
    }
    // Refused callers never reach it: the viewer may not checkpoint, anonymous may not exec.
    let before = r.kubelet.count();
    let reply =
        r.h.client()
            .request(
                r.h.addr,
                "POST",
                "/checkpoint/default/web/app",
                &[("authorization", &bearer(&VIEWER))],
            )
            .await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        r.h.client()
            .request(r.h.addr, "POST", "/run/default/web/app", &[])
            .await
            .status,
        401
    );
    assert_eq!(r.kubelet.count(), before);
}

/// A `caFile` that did not sign the kubelet's certificate: no connection, a generic 502.
#[tokio::test]
async fn a_kubelet_certificate_the_ca_file_does_not_trust_is_a_502() {
    let r = rig(|s| {
        s.upstream_yaml = s.upstream_yaml.replace("kubelet-ca.crt", "other-ca.crt");
    })
    .await;
    let reply =
        r.h.client()
            .get(r.h.addr, "/configz", &[("authorization", &bearer(&OPERATOR))])
            .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (502, "502 Bad Gateway\n")
    );
    assert_eq!(r.kubelet.count(), 0, "no request was sent");
    assert!(r.kubelet.handshakes().1 >= 1, "the handshake failed");
    assert_eq!(r.h.metric("kubelet_gate_secure_upstream_errors_total").await, 1.0);
}

/// `readOnly: ""`: a node with the read-only port off (kubeadm's default); every forwarded
/// endpoint goes to the kubelet's own port.
#[tokio::test]
async fn without_a_read_only_port_everything_goes_to_the_kubelet_s_port() {
    let r = rig(|s| s.upstream = Some("\"\"".into())).await;
    let auth = bearer(&OPERATOR);
    for (target, body) in [
        (
            "/pods",
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#,
        ),
        ("/healthz", "ok"),
    ] {
        let reply = r.h.client().get(r.h.addr, target, &[("authorization", &auth)]).await;
        assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, body), "{target}");
    }
    assert_eq!(r.h.upstream.count(), 0, "the read-only stand-in is not configured");
    assert_eq!(r.kubelet.count(), 2);
    let (status, body) = r.h.ops_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("[+]kubelet-port ok") && !body.contains("upstream"),
        "{body}"
    );
}

/// The gateway's client certificate is replaced while a stream is open: the stream goes on,
/// new connections present the new certificate.
#[tokio::test]
async fn the_client_certificate_rotates_under_open_streams() {
    let r = rig(|_| {}).await;
    let headers = spdy(OPERATOR.token);
    let (mut open, head, _) = upgrade(&r.h, "POST", "/portForward/default/web", &borrowed(&headers)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let first = r.kubelet.seen().pop().expect("seen").client_sha256;

    let next = r.kubelet.pki().client_ca.client(ClientSpec::new(GATEWAY_CN));
    let (cert, key) = crate::common::kubelet_port::KubeletPortStandIn::paths(r.dir.path());
    // Key first, then certificate, each by atomic rename (as cert-manager writes them).
    std::fs::write(key.with_extension("key.tmp"), &next.key_pem).expect("key");
    std::fs::write(cert.with_extension("crt.tmp"), &next.cert_pem).expect("cert");
    std::fs::rename(key.with_extension("key.tmp"), &key).expect("rename");
    std::fs::rename(cert.with_extension("crt.tmp"), &cert).expect("rename");

    let started = Instant::now();
    let rotated = loop {
        let reply =
            r.h.client()
                .get(r.h.addr, "/configz", &[("authorization", &bearer(&OPERATOR))])
                .await;
        assert_eq!(reply.status, 200);
        let now = r.kubelet.seen().pop().expect("seen").client_sha256;
        if now != first {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the new certificate was never presented"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(rotated, first);
    // The stream opened with the old certificate is undisturbed.
    assert_eq!(echo(&mut open, b"still here").await, b"still here");
}

/// `/readyz` checks the kubelet's port: a handshake with the gateway's certificate and its
/// `/healthz`. A certificate the kubelet does not accept fails the check.
#[tokio::test]
async fn readiness_checks_the_kubelet_s_port() {
    let r = rig(|_| {}).await;
    let (status, body) = r.h.ops_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[+]kubelet-port ok"), "{body}");

    let foreign = Ca::new("not-the-kubelet-s-client-ca").client(ClientSpec::new(GATEWAY_CN));
    let r = rig(|_| {}).await;
    let (cert, key) = crate::common::kubelet_port::KubeletPortStandIn::paths(r.dir.path());
    foreign.write(&cert, &key);
    let started = Instant::now();
    loop {
        let (status, body) = r.h.ops_get("/readyz").await;
        if status == 503 {
            assert!(body.contains("[-]kubelet-port failed"), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A forwarded body over `limits.maxRequestBodyBytes` is refused with 413 before anything is
/// sent; one within the limit is forwarded whole.
#[tokio::test]
async fn a_request_body_over_the_limit_is_413_and_never_forwarded() {
    let r = rig(|s| s.top_yaml = "limits: {maxRequestBodyBytes: 1024}\n".into()).await;
    let auth = bearer(&OPERATOR);
    let headers = [("authorization", auth.as_str())];
    let before = r.kubelet.count();
    let run = |bytes: usize| {
        let client = r.h.client();
        async move {
            client
                .request_with_body(
                    r.h.addr,
                    "POST",
                    "/run/default/web/app?cmd=ls",
                    &headers,
                    vec![b'x'; bytes],
                )
                .await
        }
    };
    let reply = run(4096).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (413, "http: request body too large\n")
    );
    assert_eq!(r.kubelet.count(), before, "nothing reached the kubelet");
    let reply = run(1024).await;
    assert_eq!(reply.status.as_u16(), 200, "at the limit is within it");
    assert_eq!(r.kubelet.count(), before + 1);
}
