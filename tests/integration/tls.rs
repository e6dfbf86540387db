//! The listener's TLS: ALPN, protocol versions, the CertificateRequest only with a client CA,
//! and a serving certificate that verifies for the node's names and IPs.

use rustls::version::{TLS12, TLS13};

use crate::common::pki::ClientSpec;
use crate::common::{Harness, Setup};

#[tokio::test]
async fn alpn_selects_h2_or_http1() {
    let h = Harness::start(Setup::default()).await;
    let c = h.client();
    assert_eq!(
        c.clone().with_alpn(&[b"h2"]).handshake(h.addr).await.expect("h2"),
        Some(b"h2".to_vec())
    );
    assert_eq!(
        c.clone().with_alpn(&[b"http/1.1"]).handshake(h.addr).await.expect("h1"),
        Some(b"http/1.1".to_vec())
    );
    assert_eq!(c.clone().with_alpn(&[]).handshake(h.addr).await.expect("none"), None);
    // No ALPN at all is HTTP/1.1.
    let reply = c.clone().with_alpn(&[]).get(h.addr, "/foo", &[]).await;
    assert_eq!((reply.status.as_u16(), reply.version), (404, http::Version::HTTP_11));
    // h2c is not offered: the handshake fails rather than guessing.
    assert!(c.with_alpn(&[b"h2c"]).handshake(h.addr).await.is_err());
}

#[tokio::test]
async fn tls12_and_tls13_by_default_and_tls13_only_when_configured() {
    let h = Harness::start(Setup::default()).await;
    assert!(
        h.client().with_versions(&[&TLS12]).handshake(h.addr).await.is_ok(),
        "TLS 1.2"
    );
    assert!(
        h.client().with_versions(&[&TLS13]).handshake(h.addr).await.is_ok(),
        "TLS 1.3"
    );
    let h = Harness::start_with_top(Setup::default(), "tlsMinVersion: VersionTLS13\n").await;
    assert!(
        h.client().with_versions(&[&TLS12]).handshake(h.addr).await.is_err(),
        "TLS 1.2 refused"
    );
    assert!(
        h.client().with_versions(&[&TLS13]).handshake(h.addr).await.is_ok(),
        "TLS 1.3"
    );
}

#[tokio::test]
async fn the_serving_certificate_verifies_for_the_node_ip_and_name() {
    let h = Harness::start(Setup::default()).await;
    for name in ["localhost", "127.0.0.1", "node-a"] {
        let reply = h.client().server_name(name).get(h.addr, "/foo", &[]).await;
        assert_eq!(reply.status, 404, "verified as {name}");
    }
    assert!(
        h.client()
            .server_name("elsewhere.example")
            .handshake(h.addr)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_client_certificate_is_requested_only_with_a_client_ca() {
    let h = Harness::start(Setup::default()).await;
    let leaf = h.client_ca.client(ClientSpec::new("x"));
    // With a CA a certificate is asked for, so it is sent and used: 403 names the user.
    let reply = h.client_with(&leaf).get(h.addr, "/pods", &[]).await;
    assert_eq!(reply.status, 403);
    // A certificate that fails verification does not fail the handshake.
    let expired = h.client_ca.client(ClientSpec::new("x").expired());
    assert!(h.client_with(&expired).handshake(h.addr).await.is_ok());
}
