//! The handle tests hold: [`ApiServerStandIn::start`], its CAs and the gateway's client certificate,
//! kubeconfigs (token or certificate), scripting (tokens, Nodes, CSRs, rules, behaviours, stop and
//! restart) and observation (requests, reviews, connections, calls in flight).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::record::{Recorded, Records};
use super::script::{Behaviour, ReviewUser, Script, TokenEntry, rule};
use super::serve::spawn_server;
use super::{GATEWAY_CERT_CN, GATEWAY_TOKEN, Inner, lock, next_file_id};
use crate::common::pki::{Ca, ClientSpec, Leaf};
use crate::common::serving::Restartable;

/// The stand-in API server. Clones share it; it serves until `stop()` or until every clone is
/// dropped.
#[derive(Clone)]
pub struct ApiServerStandIn {
    inner: Arc<Inner>,
    /// Held only by `ApiServerStandIn` handles: dropping the last one stops serving.
    control: Arc<Restartable>,
    ca: Ca,
    client_ca: Ca,
    gateway_cert: Arc<Leaf>,
}

impl fmt::Debug for ApiServerStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServerStandIn")
            .field("addr", &self.control.addr())
            .finish()
    }
}

impl ApiServerStandIn {
    /// HTTPS on 127.0.0.1:0 (ALPN h2, http/1.1) with a serving certificate for "localhost" and
    /// 127.0.0.1 from its own CA; client certificates are requested, not required.
    pub async fn start() -> ApiServerStandIn {
        let ca = Ca::new("apiserver-stand-in-ca");
        let client_ca = Ca::new("apiserver-stand-in-client-ca");
        let serving = ca.server(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let gateway_cert = client_ca.client(ClientSpec::new(GATEWAY_CERT_CN).orgs(&["kubelet-gate"]));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(client_ca.cert_der())
            .expect("client CA is a valid trust anchor");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .expect("client certificate verifier");
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions supported by aws-lc-rs")
            .with_client_cert_verifier(verifier)
            .with_single_cert(serving.chain.clone(), serving.key.clone_key())
            .expect("serving certificate and key");
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let inner = Arc::new(Inner {
            script: Mutex::new(Script {
                tokens: HashMap::new(),
                nodes: HashMap::new(),
                csrs: Vec::new(),
                allow: Vec::new(),
                deny: Vec::new(),
                unknown_token_error: None,
                tokenreview: Behaviour::Normal,
                sar: Behaviour::Normal,
                tokenreview_script: VecDeque::new(),
                sar_script: VecDeque::new(),
            }),
            records: Mutex::new(Records::default()),
            tls: Arc::new(tls),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind API server stand-in on 127.0.0.1:0");
        let addr = listener.local_addr().expect("API server stand-in local addr");
        let running = spawn_server(listener, inner.clone());
        ApiServerStandIn {
            inner,
            control: Arc::new(Restartable::new(addr, running)),
            ca,
            client_ca,
            gateway_cert: Arc::new(gateway_cert),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.control.addr()
    }

    /// "https://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("https://{}", self.control.addr())
    }

    /// The CA that signed the serving certificate, as PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// The CA that signed the serving certificate, as DER (for `TlsClient::new`).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.cert_der()
    }

    /// The CA whose client certificates the server accepts as the gateway.
    pub fn client_ca(&self) -> Ca {
        self.client_ca.clone()
    }

    /// The gateway's client certificate (CN [`GATEWAY_CERT_CN`]), as written by
    /// [`ApiServerStandIn::write_kubeconfig_with_cert`].
    pub fn gateway_cert(&self) -> Leaf {
        (*self.gateway_cert).clone()
    }

    /// Writes `apiserver-<port>.kubeconfig` in `dir`: the server with its CA inline
    /// (`certificate-authority-data`) and a user with the token [`GATEWAY_TOKEN`].
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        self.write_kubeconfig_with_token(dir, GATEWAY_TOKEN)
    }

    /// Same as [`ApiServerStandIn::write_kubeconfig`] with another token (e.g. a wrong one: 401),
    /// in `apiserver-<port>-token-<n>.kubeconfig` unless the token is [`GATEWAY_TOKEN`].
    pub fn write_kubeconfig_with_token(&self, dir: &Path, token: &str) -> PathBuf {
        let name = if token == GATEWAY_TOKEN {
            format!("apiserver-{}.kubeconfig", self.control.addr().port())
        } else {
            format!(
                "apiserver-{}-token-{}.kubeconfig",
                self.control.addr().port(),
                next_file_id()
            )
        };
        let user = format!("    token: {}\n", yaml_quote(token));
        self.write_kubeconfig_file(&dir.join(name), &user)
    }

    /// Writes `apiserver-<port>-cert.kubeconfig` in `dir`: like [`ApiServerStandIn::write_kubeconfig`],
    /// but the user authenticates with [`ApiServerStandIn::gateway_cert`] (`client-certificate-data` /
    /// `client-key-data`, PKCS#8).
    pub fn write_kubeconfig_with_cert(&self, dir: &Path) -> PathBuf {
        let b64 = base64::engine::general_purpose::STANDARD;
        let user = format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64.encode(&self.gateway_cert.cert_pem),
            b64.encode(&self.gateway_cert.key_pem)
        );
        let name = format!("apiserver-{}-cert.kubeconfig", self.control.addr().port());
        self.write_kubeconfig_file(&dir.join(name), &user)
    }

    fn write_kubeconfig_file(&self, path: &Path, user_fields: &str) -> PathBuf {
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: apiserver-stand-in\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: kubelet-gate\n  user:\n{user_fields}contexts:\n- name: kubelet-gate@apiserver-stand-in\n  context:\n    cluster: apiserver-stand-in\n    user: kubelet-gate\ncurrent-context: kubelet-gate@apiserver-stand-in\npreferences: {{}}\n",
            self.url(),
            b64.encode(self.ca.cert_pem()),
        );
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
        path.to_path_buf()
    }

    // ---- scripting ----

    /// The token authenticates (for any audience: `status.audiences` echoes `spec.audiences`,
    /// or is [`API_AUDIENCE`] when the request names none) as `user`. Replaces an earlier entry.
    pub fn add_token(&self, token: &str, user: ReviewUser) {
        lock(&self.inner.script)
            .tokens
            .insert(token.to_string(), TokenEntry { user, audiences: None });
    }

    /// The token authenticates only for these audiences, like a bound service-account token:
    /// the requested audiences (`spec.audiences`, or [`API_AUDIENCE`] when none) must intersect
    /// them; `status.audiences` is the intersection. Otherwise the answer is unauthenticated with
    /// the real server's `token audiences [..] is invalid for the target audiences [..]` error.
    pub fn add_token_with_audiences(&self, token: &str, user: ReviewUser, audiences: &[&str]) {
        lock(&self.inner.script).tokens.insert(
            token.to_string(),
            TokenEntry {
                user,
                audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            },
        );
    }

    /// Serves this Node at `GET /api/v1/nodes/<name>`: `addresses` as (type, address), and
    /// `status.daemonEndpoints.kubeletEndpoint.Port` (0: left out, as for a node that reports none).
    pub fn set_node(&self, name: &str, addresses: &[(&str, &str)], port: u16) {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|(kind, address)| json!({"type": kind, "address": address}))
            .collect();
        let mut status = json!({"addresses": addresses});
        if port > 0 {
            status["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
        }
        let node = json!({
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": status,
        });
        lock(&self.inner.script).nodes.insert(name.to_string(), node);
    }

    /// Adds a kubelet-serving CSR of `system:node:<node>` to the list at [`CSR_PATH`], created
    /// `age_secs` ago. `condition`: None for Pending, or (type, reason, message) with type
    /// Approved, Denied or Failed; `issued` adds a `status.certificate`.
    pub fn add_serving_csr(
        &self,
        name: &str,
        node: &str,
        age_secs: i64,
        condition: Option<(&str, &str, &str)>,
        issued: bool,
    ) {
        let created = time::OffsetDateTime::now_utc() - time::Duration::seconds(age_secs);
        let created = created
            .replace_nanosecond(0)
            .expect("whole seconds")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
        let mut status = json!({});
        if let Some((kind, reason, message)) = condition {
            status["conditions"] = json!([{"type": kind, "status": "True", "reason": reason, "message": message}]);
        }
        if issued {
            status["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode("issued"));
        }
        let csr = json!({
            "kind": "CertificateSigningRequest",
            "apiVersion": "certificates.k8s.io/v1",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {
                "signerName": "kubernetes.io/kubelet-serving",
                "username": format!("system:node:{node}"),
                "groups": ["system:nodes", "system:authenticated"],
                "usages": ["digital signature", "server auth"],
                "request": "",
            },
            "status": status,
        });
        lock(&self.inner.script).csrs.push(csr);
    }

    pub fn remove_token(&self, token: &str) {
        lock(&self.inner.script).tokens.remove(token);
    }

    /// `status.error` for unknown tokens. Default `None`: `{"user":{}}` with no error (a clean
    /// "not authenticated"). The real kube-apiserver says `Some("invalid bearer token")` (or an
    /// aggregate such as `[invalid bearer token, ...]`), which a webhook client treats as an error.
    pub fn set_unknown_token_error(&self, error: Option<&str>) {
        lock(&self.inner.script).unknown_token_error = error.map(str::to_string);
    }

    /// SAR `allowed: true` for (user, verb, subresource), matched against `spec.user` and
    /// `spec.resourceAttributes.{verb,subresource}`; "*" matches anything, "" is "no
    /// subresource" (a non-resource SAR matches only a "*" subresource). Deny rules win.
    pub fn allow(&self, user: &str, verb: &str, subresource: &str) {
        lock(&self.inner.script).allow.push(rule(user, verb, subresource));
    }

    /// SAR `allowed: false, denied: true` for (user, verb, subresource); "*" matches anything.
    pub fn deny(&self, user: &str, verb: &str, subresource: &str) {
        lock(&self.inner.script).deny.push(rule(user, verb, subresource));
    }

    /// Forgets every allow and deny rule.
    pub fn clear_rules(&self) {
        let mut s = lock(&self.inner.script);
        s.allow.clear();
        s.deny.clear();
    }

    /// The standing behaviour of TokenReview calls (after any script is used up).
    pub fn set_tokenreview_behaviour(&self, b: Behaviour) {
        lock(&self.inner.script).tokenreview = b;
    }

    pub fn set_sar_behaviour(&self, b: Behaviour) {
        lock(&self.inner.script).sar = b;
    }

    /// Appends to the TokenReview script: one entry is used per TokenReview call received,
    /// before the standing behaviour applies again.
    pub fn push_tokenreview_script(&self, seq: Vec<Behaviour>) {
        lock(&self.inner.script).tokenreview_script.extend(seq);
    }

    pub fn push_sar_script(&self, seq: Vec<Behaviour>) {
        lock(&self.inner.script).sar_script.extend(seq);
    }

    /// Script entries not yet used: (TokenReview, SubjectAccessReview).
    pub fn script_remaining(&self) -> (usize, usize) {
        let s = lock(&self.inner.script);
        (s.tokenreview_script.len(), s.sar_script.len())
    }

    /// Closes the listener and every live connection (hanging requests included); connections
    /// are refused afterwards. Tokens, rules, behaviours, scripts and records are kept.
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

    /// Every request to the TokenReview path, in order (unauthenticated, malformed and
    /// scripted ones included).
    pub fn tokenreviews(&self) -> Vec<Recorded> {
        lock(&self.inner.records).tokenreviews.clone()
    }

    /// Every request to the SubjectAccessReview path, in order.
    pub fn sars(&self) -> Vec<Recorded> {
        lock(&self.inner.records).sars.clone()
    }

    /// Every request received, on any path, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner.records).all.clone()
    }

    pub fn tokenreview_count(&self) -> usize {
        lock(&self.inner.records).tokenreviews.len()
    }

    pub fn sar_count(&self) -> usize {
        lock(&self.inner.records).sars.len()
    }

    /// TCP connections accepted so far (across restarts).
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Requests being handled right now (hanging and delayed ones included).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests handled at once since the start or the last `clear`.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Forgets the records and the in-flight peak (not tokens, rules, behaviours or scripts).
    pub fn clear(&self) {
        *lock(&self.inner.records) = Records::default();
        self.inner
            .max_in_flight
            .store(self.inner.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
