//! The gateway's own identity towards the API server, against the stand-in CSR API (which
//! authenticates client certificates on every request, bootstrap tokens and the gateway's
//! token, answers TokenReviews, and plays kube-controller-manager's approver and signer):
//! `borrowed.rs` follows a kubeconfig whose certificate or token the kubelet renews; `join.rs`
//! joins with a bootstrap token (kubernetes pkg/kubelet/certificate/bootstrap/bootstrap.go);
//! `rotation.rs` renews the joined certificate under load and when it has expired.

mod borrowed;
mod join;
mod rotation;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubelet_gate::app::BuildOptions;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::common::client::TlsClient;
use crate::common::csr_api::{Call, Credential, CsrApi, TOKENREVIEW_PATH};
use crate::common::pki::Leaf;
use crate::common::{Harness, NODE, Setup};

fn fast() -> BuildOptions {
    BuildOptions {
        bootstrap_retry: Duration::from_millis(100),
        bootstrap_recheck: Duration::from_millis(200),
        reload_interval: Duration::from_millis(250),
        ..BuildOptions::default()
    }
}

/// The gateway with the TokenReview webhook through `kubeconfig` (and `top_yaml`, e.g. a
/// `bootstrapKubeconfig:`), every authenticated request allowed.
async fn gateway(kubeconfig: &Path, top_yaml: &str, options: BuildOptions) -> Harness {
    gateway_in(kubeconfig, top_yaml, options, None).await
}

/// The same with `certDir` at `cert_dir` (kept across restarts).
async fn gateway_in(kubeconfig: &Path, top_yaml: &str, options: BuildOptions, cert_dir: Option<&Path>) -> Harness {
    Harness::start(Setup {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        token_webhook: true,
        mode: "AlwaysAllow",
        // The load below sends a new token with each request to make each one a TokenReview:
        // the TokenReview budget (threats.md DS-08) would answer most of them 429.
        top_yaml: format!("{top_yaml}limits: {{tokenReviewsPerSecond: 0, tokenReviewsPerSecondPerPeer: 0}}\n"),
        options,
        cert_dir: cert_dir.map(Path::to_path_buf),
        ..Setup::default()
    })
    .await
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The hex serial and notAfter of a certificate, as the stand-in records them.
fn serial_and_end(der: &[u8]) -> (String, i64) {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    (
        cert.raw_serial_as_string().replace(':', ""),
        cert.validity().not_after.timestamp(),
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The TokenReviews the stand-in received.
fn token_reviews(api: &CsrApi) -> Vec<Call> {
    api.calls()
        .into_iter()
        .filter(|c| c.path() == TOKENREVIEW_PATH)
        .collect()
}

/// One request through the gateway with a token TokenReview knows: its status.
async fn reviewed_request(h: &Harness, api: &CsrApi, token: &str) -> u16 {
    api.add_review_token(token, "alice", &["team"]);
    TlsClient::insecure()
        .get(h.addr, "/healthz", &[("authorization", &format!("Bearer {token}"))])
        .await
        .status
        .as_u16()
}

/// Requests through the gateway, each with a fresh token (so each is a TokenReview), from a
/// few tasks at once, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<u16>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(h: &Harness, api: &CsrApi, tasks: usize) -> Load {
        let (stop, ok, failed) = (Arc::default(), Arc::default(), Arc::default());
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (stop, ok, failed): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<Mutex<Vec<u16>>>) =
                (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            let (client, addr, api) = (TlsClient::insecure(), h.addr, api.clone());
            handles.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let token = format!("load-{t}-{n}");
                    api.add_review_token(&token, "alice", &["team"]);
                    let status = client
                        .get(addr, "/healthz", &[("authorization", &format!("Bearer {token}"))])
                        .await
                        .status
                        .as_u16();
                    match status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        s => {
                            failed.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                            0
                        }
                    };
                }
            }));
        }
        Load {
            stop,
            ok,
            failed,
            tasks: handles,
        }
    }

    /// Stops and returns (answered 200, every other status).
    async fn finish(self) -> (u64, Vec<u16>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

/// Writes `pem` as `<dir>/<name>` and points `<dir>/<link>` at it atomically, as the kubelet's
/// certificate store swaps `kubelet-client-current.pem`.
fn install(dir: &Path, name: &str, link: &str, pem: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join(name), pem).expect("pair");
    let updated = dir.join(format!("{link}.updated"));
    let _ = std::fs::remove_file(&updated);
    std::os::unix::fs::symlink(name, &updated).expect("link");
    std::fs::rename(&updated, dir.join(link)).expect("swap");
    dir.join(link)
}

fn pair_pem(leaf: &Leaf) -> String {
    format!("{}{}", leaf.cert_pem, leaf.key_pem)
}

fn is_certificate(c: &Call, serial: &str) -> bool {
    matches!(&c.credential, Credential::Certificate { serial: s, .. } if s == serial)
}

/// A bootstrap token and the extra group kubeadm gives it.
const TOKEN: &str = "abcdef.0123456789abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
const GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A cluster that admits nodes joining with [`TOKEN`]: the token, and kubeadm's three bindings.
async fn cluster() -> CsrApi {
    let api = CsrApi::start("system:serviceaccount:kube-system:admin").await;
    api.add_bootstrap_token(TOKEN, &[GROUP]);
    api.kubeadm_bindings(GROUP);
    api
}

/// A node image: a bootstrap kubeconfig with [`TOKEN`], no kubeconfig yet, an empty `certDir`.
struct NodeImage {
    dir: tempfile::TempDir,
    bootstrap: PathBuf,
    kubeconfig: PathBuf,
    cert_dir: PathBuf,
}

impl NodeImage {
    fn new(api: &CsrApi) -> NodeImage {
        NodeImage::with_token(api, TOKEN)
    }

    fn with_token(api: &CsrApi, token: &str) -> NodeImage {
        let dir = tempfile::tempdir().expect("dir");
        let bootstrap = api.write_bootstrap_kubeconfig(dir.path(), token);
        NodeImage {
            kubeconfig: dir.path().join("kubeconfig"),
            cert_dir: dir.path().join("pki"),
            bootstrap,
            dir,
        }
    }

    fn top_yaml(&self) -> String {
        format!("bootstrapKubeconfig: {}\n", self.bootstrap.display())
    }

    async fn start(&self, options: BuildOptions) -> Harness {
        gateway_in(&self.kubeconfig, &self.top_yaml(), options, Some(&self.cert_dir)).await
    }

    fn link(&self) -> PathBuf {
        self.cert_dir.join("kubelet-gate-client-current.pem")
    }

    /// The certificate the link points at now, as DER.
    fn current_leaf(&self) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(self.link()).expect("current pair");
        rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .next()
            .expect("a certificate")
            .expect("PEM")
            .to_vec()
    }
}

/// Waits until a request through the gateway is reviewed (the join is done).
async fn joined(h: &Harness, api: &CsrApi) {
    let mut n = 0;
    eventually(
        "a request is reviewed with the joined identity",
        Duration::from_secs(20),
        || {
            n += 1;
            let token = format!("probe-{n}");
            async move { reviewed_request(h, api, &token).await == 200 }
        },
    )
    .await;
}
