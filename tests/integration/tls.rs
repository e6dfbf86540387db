//! The listener's TLS: ALPN, protocol versions, the CertificateRequest only with a client CA,
//! a serving certificate that verifies for the node's names and IPs, a self-signed one renewed
//! while the gateway runs (and not reused at start with seconds left), and liveness failing on
//! an expired one.

use std::path::Path;
use std::time::{Duration, Instant};

use kubelet_gate::app::BuildOptions;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::common::client::TlsClient;
use crate::common::pki::{Ca, ClientSpec, Offset, ServerSpec};
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

/// The certificates in a PEM file, in order.
fn pem_chain(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

fn not_after(der: &CertificateDer<'_>) -> i64 {
    x509_parser::parse_x509_certificate(der)
        .expect("X.509")
        .1
        .validity()
        .not_after
        .timestamp()
}

#[tokio::test]
async fn a_self_signed_certificate_is_renewed_before_it_expires_without_a_restart() {
    // A 15 s lifetime: renewed between 70% and 90% of it, so 10 to 14 s after it was made.
    let h = Harness::start(Setup {
        options: BuildOptions {
            self_signed_lifetime: Duration::from_secs(15),
            ..BuildOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let stored = h.path("pki/kubelet.crt");
    let first = pem_chain(&stored);
    let presented = TlsClient::insecure().peer_chain(h.addr).await;
    assert_eq!(presented[0], first[0]);

    let deadline = Instant::now() + Duration::from_secs(40);
    let renewed = loop {
        let presented = TlsClient::insecure().peer_chain(h.addr).await;
        if presented[0] != first[0] {
            break presented;
        }
        assert!(
            Instant::now() < deadline,
            "the self-signed certificate was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let now_stored = pem_chain(&stored);
    assert_eq!(
        renewed[0], now_stored[0],
        "what is served is what is stored in kubelet.crt"
    );
    assert!(not_after(&renewed[0]) > not_after(&first[0]));
    // The new pair verifies with its own (new) CA, the second block of kubelet.crt, for the
    // node's names, on the same listener.
    for name in ["localhost", "127.0.0.1", "node-a"] {
        let reply = TlsClient::new(&now_stored[1..2])
            .server_name(name)
            .get(h.addr, "/foo", &[])
            .await;
        assert_eq!(reply.status, 404, "verified as {name}");
    }
    crate::common::client::TlsClient::new(&now_stored[1..2])
        .handshake(h.addr)
        .await
        .expect("handshake with the new CA");
    assert_eq!(h.ops_get("/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = h.ops_get("/readyz").await;
    assert!(status == 200 && body.contains("[+]serving-certificate ok"), "{body}");
}

#[tokio::test]
async fn a_self_signed_pair_with_seconds_left_is_replaced_at_start() {
    let certs = tempfile::tempdir().expect("dir");
    // Valid, naming every address, but with 20 s of its day left.
    let ca = Ca::new("old-self-signed-ca");
    let old = ca.server_with(
        ServerSpec::new("node-a")
            .dns(&["node-a", "localhost"])
            .ips(&["127.0.0.1".parse().expect("ip")])
            .validity(Offset::days(-1), Offset::secs(20)),
    );
    let (cert, key) = (certs.path().join("kubelet.crt"), certs.path().join("kubelet.key"));
    old.clone().with_chain(vec![ca.cert_der()]).write(&cert, &key);
    let h = Harness::start(Setup {
        cert_dir: Some(certs.path().to_path_buf()),
        ..Setup::default()
    })
    .await;
    let presented = TlsClient::insecure().peer_chain(h.addr).await;
    assert_ne!(&presented[0], old.der(), "a pair about to expire is not reused");
    assert_eq!(presented[0], pem_chain(&cert)[0], "a new one is generated in its place");
    let year = 364 * 24 * 3600;
    assert!(not_after(&presented[0]) > time::OffsetDateTime::now_utc().unix_timestamp() + year);
}

#[tokio::test]
async fn an_expired_serving_certificate_fails_liveness_as_well_as_readiness() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("serving-ca");
    let expired = ca.server_with(
        ServerSpec::new("node-a")
            .dns(&["localhost"])
            .validity(Offset::days(-2), Offset::days(-1)),
    );
    let (cert, key) = (dir.path().join("serving.crt"), dir.path().join("serving.key"));
    expired.write(&cert, &key);
    let h = Harness::start(Setup {
        top_yaml: format!(
            "tlsCertFile: {}\ntlsPrivateKeyFile: {}\n",
            cert.display(),
            key.display()
        ),
        ..Setup::default()
    })
    .await;
    let (status, body) = h.ops_get("/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (
            500,
            "[-]serving-certificate failed: the serving certificate has expired\nhealthz check failed\n"
        )
    );
    assert_eq!(h.ops_get("/livez").await.0, 500);
    let (status, body) = h.ops_get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("[-]serving-certificate failed: the serving certificate has expired"),
        "{body}"
    );
}
