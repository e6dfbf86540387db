//! The handle tests hold: [`CsrApi::start`], the kubeconfig and kube client for it, scripting
//! (mode, approve, deny, issue, Nodes, compaction, bookmarks, stop and restart) and observation
//! (CSRs, requests, connections).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::approver::Mode;
use super::meta::{next_id, rfc3339, uuid};
use super::record::{CsrRecord, record_of};
use super::serve::spawn_server;
use super::signer::SignerCa;
use super::store::{Event, Inner, Res, State, b64};
use super::{APPROVE_MESSAGE, APPROVE_REASON, FAILED_REASON, GATEWAY_TOKEN, lock};
use crate::common::pki::Ca;
use crate::common::serving::Restartable;

/// The stand-in. Clones share it; it serves until `stop()` or until every clone is dropped.
#[derive(Clone)]
pub struct CsrApi {
    pub(super) inner: Arc<Inner>,
    /// Held only by `CsrApi` handles: dropping the last one stops serving.
    control: Arc<Restartable>,
    ca: Ca,
    signer: Arc<SignerCa>,
}

impl fmt::Debug for CsrApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrApi")
            .field("addr", &self.control.addr())
            .field("identity", &self.inner.identity)
            .finish()
    }
}

impl CsrApi {
    /// HTTPS on 127.0.0.1:0 (ALPN h2, http/1.1) with a serving certificate for "localhost" and
    /// 127.0.0.1 from its own CA. `node_identity` is who [`GATEWAY_TOKEN`] is: it becomes
    /// `spec.username` of every CSR, with groups `system:nodes` (if it starts with
    /// `system:node:`) and `system:authenticated`.
    pub async fn start(node_identity: &str) -> CsrApi {
        let ca = Ca::new("csr-api-stand-in-ca");
        let serving = ca.server(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client_signer = Arc::new(SignerCa::new("csr-api-stand-in-kube-apiserver-client-kubelet-signer"));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(client_signer.cert_der())
            .expect("the client signer is a valid trust anchor");
        let client_verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .expect("client certificate verifier");
        // As kube-apiserver: a client certificate is asked for and let through the handshake;
        // the x509 authenticator judges it on every request (`authn.rs`).
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions supported by aws-lc-rs")
            .with_client_cert_verifier(Arc::new(kubelet_gate::tls::client_auth::RequestClientCert::new(
                Vec::new(),
            )))
            .with_single_cert(serving.chain.clone(), serving.key.clone_key())
            .expect("serving certificate and key");
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let signer = Arc::new(SignerCa::new("csr-api-stand-in-kubelet-serving-signer"));
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                rv: 100,
                compacted: 0,
                csrs: Vec::new(),
                csr_index: HashMap::new(),
                nodes: BTreeMap::new(),
                events: Vec::new(),
                mode: Mode::Pending,
                leaf_only: false,
                failing_watches: 0,
                cluster: Default::default(),
            }),
            requests: Mutex::new(Vec::new()),
            tls: Arc::new(tls),
            identity: node_identity.to_string(),
            signer: signer.clone(),
            client_signer,
            client_verifier,
            calls: Mutex::new(Vec::new()),
            changed: watch::Sender::new(100),
            bookmarks: watch::Sender::new(0),
            end_watches: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind CSR API stand-in on 127.0.0.1:0");
        let addr = listener.local_addr().expect("CSR API stand-in local addr");
        let running = spawn_server(listener, inner.clone());
        CsrApi {
            inner,
            control: Arc::new(Restartable::new(addr, running)),
            ca,
            signer,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.control.addr()
    }

    /// "https://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("https://{}", self.control.addr())
    }

    /// The CA of the serving certificate, as PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.cert_der()
    }

    /// The identity [`GATEWAY_TOKEN`] authenticates as.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// Writes `csr-api-<port>.kubeconfig` in `dir`: the server with its CA inline
    /// (`certificate-authority-data`) and a user with the token [`GATEWAY_TOKEN`].
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        self.write_kubeconfig_with_token(dir, GATEWAY_TOKEN)
    }

    /// Same with another token (anything else gets 401), in `csr-api-<port>-token-<n>.kubeconfig`.
    pub fn write_kubeconfig_with_token(&self, dir: &Path, token: &str) -> PathBuf {
        let name = if token == GATEWAY_TOKEN {
            format!("csr-api-{}.kubeconfig", self.control.addr().port())
        } else {
            format!("csr-api-{}-token-{}.kubeconfig", self.control.addr().port(), next_id())
        };
        let path = dir.join(name);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: csr-api-stand-in\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: kubelet-gate\n  user:\n    token: {}\ncontexts:\n- name: kubelet-gate@csr-api-stand-in\n  context:\n    cluster: csr-api-stand-in\n    user: kubelet-gate\ncurrent-context: kubelet-gate@csr-api-stand-in\npreferences: {{}}\n",
            self.url(),
            b64(self.ca.cert_pem().as_bytes()),
            yaml_quote(token),
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
        path
    }

    /// A kube client for this server with [`GATEWAY_TOKEN`] (through a kubeconfig in a
    /// temporary directory, removed again).
    pub async fn kube_client(&self) -> kube::Client {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = self.write_kubeconfig(dir.path());
        let file = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config from kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    /// The `kubernetes.io/kubelet-serving` signer: trust its certificate to verify what the
    /// gateway serves after bootstrap.
    pub fn signer_ca(&self) -> &SignerCa {
        &self.signer
    }

    // ---- scripting ----

    /// What happens to CSRs created from now on.
    pub fn set_mode(&self, mode: Mode) {
        lock(&self.inner.state).mode = mode;
    }

    /// `status.certificate` holds the leaf only (kube-controller-manager's signer) instead of
    /// the leaf followed by the signer CA (the default).
    pub fn set_leaf_only(&self, leaf_only: bool) {
        lock(&self.inner.state).leaf_only = leaf_only;
    }

    /// `kubectl certificate approve`: condition Approved, reason [`APPROVE_REASON`]. A no-op if
    /// already approved; panics if unknown or denied.
    pub fn approve(&self, name: &str) {
        self.approve_with(name, APPROVE_REASON, APPROVE_MESSAGE);
    }

    /// Approved with this reason and message (an external approver's).
    pub fn approve_with(&self, name: &str, reason: &str, message: &str) {
        if let Err(e) = self.inner.add_condition(name, "Approved", reason, message) {
            panic!("approve: {e}");
        }
    }

    /// Condition Denied ([`DENY_REASON`]/[`DENY_MESSAGE`] are kubectl's). A no-op if already
    /// denied; panics if unknown or approved.
    pub fn deny(&self, name: &str, reason: &str, message: &str) {
        if let Err(e) = self.inner.add_condition(name, "Denied", reason, message) {
            panic!("deny: {e}");
        }
    }

    /// Condition Failed, reason [`FAILED_REASON`], as the signer sets it.
    pub fn fail(&self, name: &str, message: &str) {
        if let Err(e) = self.inner.add_condition(name, "Failed", FAILED_REASON, message) {
            panic!("fail: {e}");
        }
    }

    /// The signer, now, on an approved CSR: for `kubernetes.io/kubelet-serving`, a CSR that
    /// fails kube-controller-manager's checks (O `system:nodes` only, a DNS or IP SAN, no email
    /// or URI SAN, usages {digital signature, [key encipherment,] server auth}, CN
    /// `system:node:*`) gets `Failed` with that message instead; otherwise `status.certificate`
    /// is set (see [`SignerCa`]), valid for the shorter of `lifetime` and
    /// `spec.expirationSeconds`. Any other signer name is signed without checks. Panics if the
    /// CSR is unknown, not approved, denied, failed or already issued.
    pub fn issue(&self, name: &str, lifetime: Duration) {
        if let Err(e) = self.inner.issue(name, lifetime) {
            panic!("issue: {e}");
        }
    }

    /// Deletes a CSR (as the CSR cleaner does): watches see DELETED; `csrs()` keeps it, marked.
    /// Panics if unknown.
    pub fn delete_csr(&self, name: &str) {
        if self.inner.delete_csr(name).is_none() {
            panic!("delete_csr: no CertificateSigningRequest {name:?}");
        }
    }

    /// Creates or updates the Node: `status.addresses` as (type, address) pairs, e.g.
    /// `("InternalIP", "10.0.0.5")`, `("Hostname", "node-a")`, and
    /// `status.daemonEndpoints.kubeletEndpoint.Port`. Watches see ADDED or MODIFIED.
    pub fn set_node(&self, name: &str, addresses: &[(&str, &str)], port: i32) {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        let rv = {
            let mut state = lock(&self.inner.state);
            let rv = state.bump();
            let (kind, mut object) = match state.nodes.get(name) {
                Some(existing) => ("MODIFIED", existing.clone()),
                None => (
                    "ADDED",
                    json!({
                        "kind": "Node",
                        "apiVersion": "v1",
                        "metadata": {
                            "name": name,
                            "uid": uuid(),
                            "creationTimestamp": rfc3339(SystemTime::now()),
                            "labels": {
                                "kubernetes.io/hostname": name,
                                "kubernetes.io/os": "linux",
                            },
                        },
                        "spec": {},
                        "status": {},
                    }),
                ),
            };
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            object["status"]["addresses"] = json!(addresses);
            object["status"]["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
            state.nodes.insert(name.to_string(), object.clone());
            state.events.push(Event {
                rv,
                res: Res::Node,
                kind,
                object,
            });
            rv
        };
        self.inner.changed.send_replace(rv);
    }

    /// Removes the Node (watches see DELETED); a no-op if unknown.
    pub fn remove_node(&self, name: &str) {
        let rv = {
            let mut state = lock(&self.inner.state);
            let Some(mut object) = state.nodes.remove(name) else {
                return;
            };
            let rv = state.bump();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.events.push(Event {
                rv,
                res: Res::Node,
                kind: "DELETED",
                object,
            });
            rv
        };
        self.inner.changed.send_replace(rv);
    }

    /// From now on, a watch from a resourceVersion older than the current one gets an ERROR
    /// event with 410 Expired ("too old resource version"), as after an etcd compaction.
    pub fn compact(&self) {
        let mut state = lock(&self.inner.state);
        state.compacted = state.rv;
    }

    /// Sends a BOOKMARK (current resourceVersion) on every open watch that allowed bookmarks.
    pub fn send_bookmarks(&self) {
        self.inner.bookmarks.send_modify(|n| *n += 1);
    }

    /// The next `count` watch requests are refused with 429 Too Many Requests and
    /// `Retry-After: 1`, as an overloaded kube-apiserver (API priority and fairness) refuses them.
    pub fn fail_watches(&self, count: u32) {
        lock(&self.inner.state).failing_watches = count;
    }

    /// Ends every open watch stream cleanly (as kube-apiserver does at its timeout).
    pub fn end_watches(&self) {
        self.inner.end_watches.send_modify(|n| *n += 1);
    }

    /// Closes the listener and every live connection (watches included); connections are
    /// refused afterwards. All state and records are kept.
    pub async fn stop(&self) {
        self.control.stop().await;
    }

    /// Listens again on the same port (stopping first if running), keeping all state.
    pub async fn restart(&self) {
        let inner = self.inner.clone();
        self.control
            .restart(move |listener| spawn_server(listener, inner))
            .await;
    }

    // ---- observation ----

    /// Every CSR created, in creation order (deleted ones included), as stored now.
    pub fn csrs(&self) -> Vec<CsrRecord> {
        lock(&self.inner.state).csrs.iter().map(record_of).collect()
    }

    /// The live CSR of that name.
    pub fn csr(&self, name: &str) -> Option<CsrRecord> {
        let state = lock(&self.inner.state);
        state.csr_index.get(name).map(|i| record_of(&state.csrs[*i]))
    }

    /// Waits until at least `count` CSRs have been created; panics after `timeout`.
    pub async fn wait_for_csrs(&self, count: usize, timeout: Duration) -> Vec<CsrRecord> {
        self.wait_until(timeout, |csrs| csrs.len() >= count)
            .await
            .unwrap_or_else(|| panic!("fewer than {count} CSRs after {timeout:?}: {:?}", self.csrs()))
    }

    /// Waits until `pred(csrs())` holds; None after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&[CsrRecord]) -> bool) -> Option<Vec<CsrRecord>> {
        let mut changed = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let csrs = self.csrs();
            if pred(&csrs) {
                return Some(csrs);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Every request received (unauthenticated ones included): method and path with query,
    /// as sent.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.inner.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.requests).clear();
    }

    /// The resource version of the last change.
    pub fn resource_version(&self) -> u64 {
        lock(&self.inner.state).rv
    }

    /// TCP connections accepted so far (across restarts).
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
