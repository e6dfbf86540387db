//! Certificate changes under load, as the kubelet's dynamic certificate files reload them
//! (kubernetes/apiserver pkg/server/dynamiccertificates): the serving
//! certificate and the client CA bundle are replaced by atomic rename and by in-place rewrite
//! while handshakes run every few milliseconds; none fails, new handshakes see the new material
//! within the stated time, and broken files never replace good ones.

mod policy;

use crate::common::write_atomically;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::common::client::TlsClient;
use crate::common::pki::{Ca, ClientSpec, Leaf, Offset};
use crate::common::{Harness, Setup, grant_group};

/// New handshakes present new material within this time (file events; the periodic
/// re-check is the fallback).
const WITHIN: Duration = Duration::from_secs(3);

fn serving(ca: &Ca) -> Leaf {
    ca.server(&["localhost"], &["127.0.0.1".parse().expect("ip")])
}

async fn files_gateway(ca: &Ca) -> (Harness, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("dir").keep();
    let (cert, key) = (dir.join("serving.crt"), dir.join("serving.key"));
    serving(ca).write(&cert, &key);
    let top_yaml = format!(
        "tlsCertFile: {}\ntlsPrivateKeyFile: {}\n",
        cert.display(),
        key.display()
    );
    let h = Harness::start(Setup {
        top_yaml,
        ..Setup::default()
    })
    .await;
    (h, cert, key)
}

/// Handshakes every few milliseconds until stopped; counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(client: TlsClient, addr: std::net::SocketAddr) -> Load {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match client.handshake(addr).await {
                    Ok(_) => o.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("handshake failed: {e}");
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
        Load { stop, ok, failed, task }
    }

    /// Stops once at least `at_least` handshakes were made (so a busy machine only makes the
    /// test slower, never fail), and returns (succeeded, failed).
    async fn finish(self, at_least: u64) -> (u64, u64) {
        let started = Instant::now();
        while self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed) < at_least {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the load made no progress"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

/// Waits until new handshakes present `want`; returns how long that took.
async fn until_presented(client: &TlsClient, addr: std::net::SocketAddr, want: &CertificateDer<'_>) -> Duration {
    let started = Instant::now();
    while started.elapsed() < WITHIN {
        if client.peer_chain(addr).await.first() == Some(want) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the new certificate was not presented within {WITHIN:?}");
}

#[tokio::test]
async fn serving_certificate_rotates_under_load_with_no_failed_handshake() {
    let ca = Ca::new("serving-ca");
    let (h, cert, key) = files_gateway(&ca).await;
    let client = TlsClient::new(&[ca.cert_der()]);
    let load = Load::start(client.clone(), h.addr);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Atomic rename of both files.
    let second = serving(&ca);
    write_atomically(&key, second.key_pem.as_bytes());
    write_atomically(&cert, second.cert_pem.as_bytes());
    let took_rename = until_presented(&client, h.addr, second.der()).await;

    // In-place rewrite (truncate, then write), key first: for a moment the pair does not match.
    let third = serving(&ca);
    std::fs::write(&key, third.key_pem.as_bytes()).expect("key");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        client.peer_chain(h.addr).await.first(),
        Some(second.der()),
        "a mismatched pair never replaces a good one"
    );
    std::fs::write(&cert, third.cert_pem.as_bytes()).expect("cert");
    let took_rewrite = until_presented(&client, h.addr, third.der()).await;

    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ok, failed) = load.finish(50).await;
    eprintln!("rename: {took_rename:?}, rewrite: {took_rewrite:?}, handshakes ok {ok}, failed {failed}");
    assert_eq!(failed, 0, "no handshake failed during rotation");
    assert!(ok >= 50, "the load ran: {ok} handshakes");
    assert!(h.reload_stats.successes.load(Ordering::Relaxed) >= 2);
}

#[tokio::test]
async fn a_broken_serving_certificate_file_is_ignored_until_fixed() {
    let ca = Ca::new("serving-ca");
    let (h, cert, key) = files_gateway(&ca).await;
    let client = TlsClient::new(&[ca.cert_der()]);
    let first = client.peer_chain(h.addr).await;
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nhalf a file").expect("write");
    let started = Instant::now();
    while h.reload_stats.failures.load(Ordering::Relaxed) == 0 && started.elapsed() < WITHIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        h.reload_stats.failures.load(Ordering::Relaxed) >= 1,
        "the broken file was seen and refused"
    );
    assert_eq!(
        client.peer_chain(h.addr).await,
        first,
        "the old certificate is still served"
    );
    let fixed = serving(&ca);
    fixed.write(&cert, &key);
    until_presented(&client, h.addr, fixed.der()).await;
}

/// Records the CA names the server's CertificateRequest advertises, and presents no certificate.
#[derive(Debug, Default)]
struct RecordHints(Mutex<Vec<Vec<Vec<u8>>>>);

impl ResolvesClientCert for RecordHints {
    fn resolve(&self, hints: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(hints.iter().map(|h| h.to_vec()).collect());
        }
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

async fn advertised_ca_names(h: &Harness) -> Vec<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(h.serving_ca.clone().expect("self-signed")).expect("root");
    let recorder = Arc::new(RecordHints::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(recorder.clone());
    let tcp = tokio::net::TcpStream::connect(h.addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let _ = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let seen = recorder.0.lock().expect("lock");
    seen.last().cloned().unwrap_or_default()
}

fn mentions(names: &[Vec<u8>], cn: &str) -> bool {
    names.iter().any(|n| n.windows(cn.len()).any(|w| w == cn.as_bytes()))
}

#[tokio::test]
async fn client_ca_rotation_changes_who_is_accepted_and_the_advertised_names() {
    let h = Harness::start(Setup {
        rbac: vec![grant_group("system:authenticated", &["nodes/healthz"], &["get"])],
        ..Setup::default()
    })
    .await;
    let ca_path = h.path("client-ca.crt");
    let old_ca = h.client_ca.clone();
    let new_ca = Ca::new("new-client-ca");
    let old_leaf = old_ca.client(ClientSpec::new("old-user"));
    let new_leaf = new_ca.client(ClientSpec::new("new-user"));
    let status = |leaf: &Leaf| {
        let c = h.client_with(leaf);
        async move { c.get(h.addr, "/healthz", &[]).await.status.as_u16() }
    };
    assert_eq!((status(&old_leaf).await, status(&new_leaf).await), (200, 401));
    assert!(mentions(&advertised_ca_names(&h).await, "test-client-ca"));
    let load = Load::start(h.client().with_identity(&old_leaf), h.addr);

    // (a) old and new together: both accepted.
    write_atomically(
        &ca_path,
        format!("{}{}", old_ca.cert_pem(), new_ca.cert_pem()).as_bytes(),
    );
    let started = Instant::now();
    while status(&new_leaf).await != 200 {
        assert!(started.elapsed() < WITHIN, "the new CA was not trusted in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&old_leaf).await, 200);
    let names = advertised_ca_names(&h).await;
    assert!(
        mentions(&names, "test-client-ca") && mentions(&names, "new-client-ca"),
        "the CertificateRequest names both CAs"
    );

    // (b) old removed: a connection that was verified against the old bundle is verified again.
    let kept = h.client_with(&old_leaf);
    std::fs::write(&ca_path, new_ca.cert_pem()).expect("rewrite");
    let started = Instant::now();
    while status(&old_leaf).await != 401 {
        assert!(started.elapsed() < WITHIN, "the old CA was still trusted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kept.get(h.addr, "/healthz", &[]).await.status, 401);
    let names = advertised_ca_names(&h).await;
    assert!(!mentions(&names, "test-client-ca") && mentions(&names, "new-client-ca"));

    // (c) emptied: the previous bundle stays.
    let failures = h.reload_stats.failures.load(Ordering::Relaxed);
    std::fs::write(&ca_path, "").expect("empty");
    let started = Instant::now();
    while h.reload_stats.failures.load(Ordering::Relaxed) == failures && started.elapsed() < WITHIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.reload_stats.failures.load(Ordering::Relaxed) > failures);
    assert_eq!(status(&new_leaf).await, 200, "the previous bundle is kept");

    let (ok, failed) = load.finish(50).await;
    assert_eq!(failed, 0, "no handshake failed while the CA changed ({ok} ok)");
}

/// A connection remembers the identity its certificate proved. A reloaded client CA makes that
/// verdict stale: the next request verifies the chain again once, and the new verdict is then
/// remembered (not re-verified on every request), or refused when the new bundle does not
/// trust the chain.
#[tokio::test]
async fn a_connection_verifies_again_once_after_a_client_ca_reload() {
    let h = Harness::start(Setup {
        rbac: vec![grant_group("system:authenticated", &["nodes/healthz"], &["get"])],
        ..Setup::default()
    })
    .await;
    let ca_path = h.path("client-ca.crt");
    let old_ca = h.client_ca.clone();
    let other_ca = Ca::new("other-client-ca");
    let alice = old_ca.client(ClientSpec::new("alice"));
    let verified = || h.pipeline.authenticator.chain_verifications();
    let mut conn = h.client_with(&alice).keep_alive(h.addr).await;
    for _ in 0..3 {
        assert_eq!(conn.get("/healthz").await.status, 200);
    }
    assert_eq!(verified(), 1, "verified once for the connection");

    // A new bundle that still trusts alice's CA.
    let successes = h.reload_stats.successes.load(Ordering::Relaxed);
    write_atomically(
        &ca_path,
        format!("{}{}", old_ca.cert_pem(), other_ca.cert_pem()).as_bytes(),
    );
    let started = Instant::now();
    while h.reload_stats.successes.load(Ordering::Relaxed) == successes {
        assert!(started.elapsed() < WITHIN, "the bundle was not reloaded in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        assert_eq!(conn.get("/healthz").await.status, 200);
    }
    assert_eq!(verified(), 2, "verified again once, then remembered");

    // A bundle without it: the same connection is refused.
    let successes = h.reload_stats.successes.load(Ordering::Relaxed);
    write_atomically(&ca_path, other_ca.cert_pem().as_bytes());
    let started = Instant::now();
    while h.reload_stats.successes.load(Ordering::Relaxed) == successes {
        assert!(started.elapsed() < WITHIN, "the bundle was not reloaded in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(conn.get("/healthz").await.status, 401);
    assert_eq!(
        conn.get("/healthz").await.status,
        401,
        "a failure is not remembered as success"
    );
}

/// Past the certificate's notAfter, the connection's remembered identity is not used: the next
/// request on the same connection is verified again and refused as expired.
#[tokio::test]
async fn a_connection_whose_certificate_expires_is_refused_from_then_on() {
    let h = Harness::start(Setup {
        rbac: vec![grant_group("system:authenticated", &["nodes/healthz"], &["get"])],
        ..Setup::default()
    })
    .await;
    let short = h
        .client_ca
        .client(ClientSpec::new("short-lived").validity(Offset::secs(-60), Offset::secs(2)));
    let mut conn = h.client_with(&short).keep_alive(h.addr).await;
    assert_eq!(conn.get("/healthz").await.status, 200);
    assert_eq!(conn.get("/healthz").await.status, 200);
    assert_eq!(h.pipeline.authenticator.chain_verifications(), 1);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(conn.get("/healthz").await.status, 401, "expired on the same connection");
    assert_eq!(h.pipeline.authenticator.chain_verifications(), 2);
}
