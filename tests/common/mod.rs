//! Shared helpers for the integration tests: test PKI made at run time, a TLS client, a
//! recording stand-in for the kubelet's read-only port, and the real gateway on 127.0.0.1:0.
#![allow(dead_code)]

pub mod apiserver;
pub mod client;
pub mod csr_api;
pub mod kubelet_port;
pub mod pki;
pub mod serving;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kubelet_gate::app::BuildOptions;
use kubelet_gate::config::Config;
use kubelet_gate::proxy::pipeline::Pipeline;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::oneshot;

use client::TlsClient;
use pki::{Ca, Leaf};
use upstream::ReadOnlyStandIn;

pub const NODE: &str = "node-a";

/// A token-file entry: token, user, uid, groups.
pub struct TokenUser {
    pub token: &'static str,
    pub user: &'static str,
    pub uid: &'static str,
    pub groups: &'static [&'static str],
}

/// How to configure the gateway under test. Defaults: client CA on, tokens on, anonymous off,
/// RBAC with the policy given.
pub struct Setup {
    pub anonymous: bool,
    pub client_ca: bool,
    pub tokens: Vec<TokenUser>,
    pub rbac: Vec<String>,
    pub mode: &'static str,
    pub exec_requires_create: bool,
    pub fine_grained: bool,
    pub upstream: Option<String>,
    pub extra_yaml: String,
    /// Enables the TokenReview webhook through this kubeconfig (mode Webhook sets the SAR one).
    pub kubeconfig: Option<PathBuf>,
    pub token_webhook: bool,
    pub audiences: Vec<&'static str>,
    /// `certDir` (default: `pki` in the test's directory) and `nodeAddresses` (YAML list).
    pub cert_dir: Option<PathBuf>,
    pub node_addresses: &'static str,
    /// Top-level YAML added to the file, e.g. an `apiServer:` block.
    pub top_yaml: String,
    pub options: BuildOptions,
    /// `logs.nodeLogDir` and `logs.podLogDir`.
    pub log_dirs: Option<(PathBuf, PathBuf)>,
    /// Feature gate `PodLogsQuerySplitStreams`.
    pub split_streams: bool,
    /// Lines inside the `upstream:` block after `readOnly` (indented two spaces), e.g. the
    /// `secure:` block a [`kubelet_port::KubeletPortStandIn`] writes.
    pub upstream_yaml: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            anonymous: false,
            client_ca: true,
            tokens: Vec::new(),
            rbac: Vec::new(),
            mode: "RBAC",
            exec_requires_create: true,
            fine_grained: true,
            upstream: None,
            extra_yaml: String::new(),
            kubeconfig: None,
            token_webhook: false,
            audiences: Vec::new(),
            cert_dir: None,
            node_addresses: "[127.0.0.1, localhost]",
            top_yaml: String::new(),
            options: BuildOptions::default(),
            log_dirs: None,
            split_streams: false,
            upstream_yaml: String::new(),
        }
    }
}

/// A ClusterRole granting `verbs` on `resources` and a ClusterRoleBinding of it to a user.
/// An installed program, or `None` after saying the test that needs it does nothing (`.ci/run`
/// installs every program a test asks for).
pub fn installed(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed here (.ci/run installs it)");
    }
    found
}

pub fn grant_user(user: &str, resources: &[&str], verbs: &[&str]) -> String {
    grant("User", user, resources, verbs)
}

pub fn grant_group(group: &str, resources: &[&str], verbs: &[&str]) -> String {
    grant("Group", group, resources, verbs)
}

fn grant(kind: &str, name: &str, resources: &[&str], verbs: &[&str]) -> String {
    let id = format!("{kind}-{name}-{}-{}", resources.join("."), verbs.join("."))
        .replace([':', '/', '*', ' '], "_")
        .to_lowercase();
    let list = |items: &[&str]| items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r-{id}\nrules:\n- apiGroups: [\"\"]\n  resources: [{}]\n  verbs: [{}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: b-{id}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: r-{id}\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: {kind}\n  name: \"{name}\"\n",
        list(resources),
        list(verbs)
    )
}

/// A running gateway, its stand-in upstream, and the PKI around them.
pub struct Harness {
    pub addr: SocketAddr,
    pub upstream: ReadOnlyStandIn,
    pub pipeline: Arc<Pipeline>,
    pub client_ca: Ca,
    pub serving_ca: Option<CertificateDer<'static>>,
    pub reload_stats: Arc<kubelet_gate::reload::ReloadStats>,
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The ops listener: `/healthz`, `/readyz`, `/metrics`.
    pub ops_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Harness {
    pub async fn start(setup: Setup) -> Harness {
        let upstream = ReadOnlyStandIn::start().await;
        Self::start_with(setup, upstream).await
    }

    pub async fn start_with(setup: Setup, upstream: ReadOnlyStandIn) -> Harness {
        Self::start_full(setup, upstream, "").await
    }

    /// With the webhooks pointed at a stand-in API server (a kubeconfig is written for it).
    pub async fn start_with_api(mut setup: Setup, api: &apiserver::ApiServerStandIn) -> Harness {
        let dir = tempfile::tempdir().expect("dir");
        setup.kubeconfig = Some(api.write_kubeconfig(dir.path()));
        let h = Self::start(setup).await;
        // The kubeconfig is read at build time; the directory can go.
        drop(dir);
        h
    }

    /// With extra top-level YAML fields (e.g. `tlsMinVersion`).
    pub async fn start_with_top(setup: Setup, top_yaml: &str) -> Harness {
        Self::start_full(setup, ReadOnlyStandIn::start().await, top_yaml).await
    }

    async fn start_full(setup: Setup, upstream: ReadOnlyStandIn, top_yaml: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let client_ca = Ca::new("test-client-ca");
        let ca_path = dir.path().join("client-ca.crt");
        client_ca.write_pem(&ca_path);
        let yaml = format!(
            "{top_yaml}{}{}",
            setup.top_yaml,
            config_yaml(&setup, dir.path(), &upstream)
        );
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let config = Config::load(&config_path).expect("test config is valid");
        let gateway = kubelet_gate::app::build_with(&config, setup.options.clone())
            .await
            .expect("gateway builds");
        let pipeline = gateway.pipeline.clone();
        let reload_stats = gateway.reload_stats.clone();
        // The product's own wiring on ephemeral ports: `app::serve` is what `serve` runs.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind ops");
        let ops_addr = ops_listener.local_addr().expect("ops addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(kubelet_gate::app::serve(gateway, listener, ops_listener, async move {
            let _ = rx.await;
        }));
        // The self-signed CA (second block of kubelet.crt); with configured files, the test
        // trusts its own CA and leaves this empty.
        let serving_ca = std::fs::read(dir.path().join("pki/kubelet.crt"))
            .map(|crt| {
                CertificateDer::pem_slice_iter(&crt)
                    .nth(1)
                    .expect("CA after the leaf")
                    .expect("PEM")
            })
            .ok();
        Harness {
            addr,
            upstream,
            pipeline,
            client_ca,
            serving_ca,
            reload_stats,
            dir,
            config,
            ops_addr,
            shutdown: Some(tx),
        }
    }

    /// A client that trusts the gateway's serving CA and presents no certificate.
    pub fn client(&self) -> TlsClient {
        TlsClient::new(self.serving_ca.as_slice())
    }

    /// A client presenting `leaf`.
    pub fn client_with(&self, leaf: &Leaf) -> TlsClient {
        self.client().with_identity(leaf)
    }

    pub fn reviews(&self) -> u64 {
        self.pipeline.stats.reviews.load(Ordering::Relaxed)
    }

    pub fn authentications(&self) -> u64 {
        self.pipeline.stats.authentications.load(Ordering::Relaxed)
    }

    /// GET on the ops listener (plain HTTP/1.1): status and body.
    pub async fn ops_get(&self, path: &str) -> (u16, String) {
        plain_get(self.ops_addr, path).await
    }

    /// Starts the graceful shutdown, as SIGTERM does: the 10250 listener stops accepting, open
    /// requests finish, then the ops listener stops.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// One sample from `/metrics`, by its full name with labels as printed
    /// (e.g. `kubelet_gate_requests_total{code="200",subresource="pods",verb="get"}`); 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.ops_get("/metrics").await;
        sample(&body, series)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn config_yaml(setup: &Setup, dir: &std::path::Path, upstream: &ReadOnlyStandIn) -> String {
    let mut tokens = String::new();
    for t in &setup.tokens {
        tokens.push_str(&format!(
            "{},{},{},\"{}\"\n",
            t.token,
            t.user,
            t.uid,
            t.groups.join(",")
        ));
    }
    std::fs::write(dir.join("tokens.csv"), tokens).expect("tokens");
    let mut policy_files = Vec::new();
    for (i, doc) in setup.rbac.iter().enumerate() {
        let name = format!("rbac-{i}.yaml");
        std::fs::write(dir.join(&name), doc).expect("rbac");
        policy_files.push(name);
    }
    let client_ca = if setup.client_ca { "client-ca.crt" } else { "" };
    let upstream_url = setup.upstream.clone().unwrap_or_else(|| upstream.url());
    let cert_dir = setup
        .cert_dir
        .as_ref()
        .map_or_else(|| "pki".to_owned(), |d| d.display().to_string());
    let kubeconfig = setup
        .kubeconfig
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let logs = match &setup.log_dirs {
        Some((node, pods)) => format!(
            "logs:\n  nodeLogDir: \"{}\"\n  podLogDir: \"{}\"\n",
            node.display(),
            pods.display()
        ),
        None => String::new(),
    };
    format!(
        "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: {NODE}\naddress: 127.0.0.1\nport: 10250\ncertDir: {cert_dir}\nnodeAddresses: {}\nkubeconfig: \"{kubeconfig}\"\nauthentication:\n  x509: {{clientCAFile: \"{client_ca}\"}}\n  webhook: {{enabled: {}, audiences: [{}]}}\n  anonymous: {{enabled: {}}}\n  tokenFile: tokens.csv\nauthorization:\n  mode: {}\n  rbac: {{policyFiles: [{}]}}\n  execRequiresCreate: {}\nfeatureGates: {{KubeletFineGrainedAuthz: {}, PodLogsQuerySplitStreams: {}}}\nupstream:\n  readOnly: {upstream_url}\n{}{logs}{}",
        setup.node_addresses,
        setup.token_webhook,
        setup.audiences.join(", "),
        setup.anonymous,
        setup.mode,
        policy_files.join(", "),
        setup.exec_requires_create,
        setup.fine_grained,
        setup.split_streams,
        setup.upstream_yaml,
        setup.extra_yaml,
    )
}

/// One sample of an OpenMetrics text body; 0 if absent.
pub fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A port nothing listens on now (for a gateway started as its own process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until `addr` accepts connections (a gateway started as its own process), for at most
/// 10 s; `false` if it never did (callers that ignore it let their first request say so).
pub async fn until_listening(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A memory field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB; 0 if unreadable.
pub fn process_memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces `path` by rename, as a careful writer does: readers see the old or the new file.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A plain HTTP/1.1 GET: status and body.
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // HTTP/1.0: never a chunked answer.
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
