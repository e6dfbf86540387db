#![allow(dead_code)]
//! A stand-in for kube-apiserver as the gateway uses it: HTTPS (h2 and HTTP/1.1) on 127.0.0.1:0
//! serving `TokenReview` and `SubjectAccessReview` creation like the real server
//! (kubernetes/apiserver plugin/pkg/authenticator/token/webhook, plugin/pkg/authorizer/
//! webhook), scripted Nodes and kubelet-serving CSRs to read (for `diagnose`), scriptable
//! faults (status codes,
//! garbage, hangs, dropped connections, huge bodies, stop and restart on the same port), and a
//! record of every request it received.
//!
//! Request handling, in order (what kube-apiserver's filter chain does, simplified):
//! 1. the body is read (at most [`MAX_REQUEST_BYTES`]) and the request recorded;
//! 2. on a review path, the next behaviour is taken (the script first, else the standing one);
//!    the transport and gateway-level faults (`Hang`, `CloseConnection`, `Status`, `Garbage`,
//!    `Html`) answer now, before any check, as an overloaded or broken server would;
//! 3. authentication: a client certificate issued by [`ApiServer::client_ca`] or the bearer
//!    token [`GATEWAY_TOKEN`], else 401;
//! 4. routing: 404 for any other path, 405 for a method other than POST;
//! 5. content negotiation: 413 over [`MAX_REQUEST_BYTES`], 415 for a body that is not JSON
//!    (protobuf included), 406 for an `Accept` that excludes JSON;
//! 6. decoding and validation: 400 for bad JSON or a wrong `apiVersion`/`kind`, 400 for a
//!    TokenReview without a token, 422 for an invalid SubjectAccessReview spec;
//! 7. the answer: the request object echoed back with `status` filled from the rules, or as the
//!    semantic behaviours (`WrongKind`, `EmptyUsername`, `StatusError`, `AllowedAndDenied`, `Huge`)
//!    say. Error answers are `metav1.Status` JSON.
//!
//! Counting calls: kube 5's `Client` retries 429, 503 and 504 by itself (a tower retry layer,
//! up to 15 retries, honouring `Retry-After`) unless `Config::default_retry` is false, so one
//! `create` through a default client can be several calls here.

use super::serving::{Restartable, Running, wait_stop};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::pki::{Ca, ClientSpec, Leaf};

/// The bearer token the API server accepts from the gateway (the kubeconfig's user).
pub const GATEWAY_TOKEN: &str = "gateway-token";
/// Who the gateway is to the API server when it uses [`GATEWAY_TOKEN`] (appears in 403 messages).
pub const GATEWAY_USER: &str = "system:serviceaccount:kube-system:kubelet-gate";
/// Common name of the client certificate in [`ApiServer::write_kubeconfig_with_cert`].
pub const GATEWAY_CERT_CN: &str = "kubelet-gate";
/// The API server's own audience: what a TokenReview without `spec.audiences` is checked
/// against, and what `status.audiences` then says.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
pub const TOKENREVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// Nodes are read at `NODES_PATH/<name>` (GET only).
pub const NODES_PATH: &str = "/api/v1/nodes";
/// CertificateSigningRequests are listed here (GET only; a `fieldSelector` is ignored).
pub const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
pub const SAR_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// Size of a [`Behaviour::Huge`] body.
pub const HUGE_BYTES: usize = 10 * 1024 * 1024;
/// Request bodies above this get 413 (kube-apiserver's limit is 3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// Body of [`Behaviour::Garbage`].
pub const GARBAGE_BODY: &str = "this is not json";
/// Body of [`Behaviour::Html`].
pub const HTML_BODY: &str =
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>";
/// Reason in an allowed SubjectAccessReview.
pub const ALLOW_REASON: &str = "allowed by the stand-in API server";
/// Reason in a denied SubjectAccessReview.
pub const DENY_REASON: &str = "denied by the stand-in API server";

/// The user a token stands for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReviewUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl ReviewUser {
    /// A user with this name and no uid, groups or extra.
    pub fn new(username: &str) -> ReviewUser {
        ReviewUser {
            username: username.to_string(),
            ..ReviewUser::default()
        }
    }
    pub fn uid(mut self, uid: &str) -> ReviewUser {
        self.uid = uid.to_string();
        self
    }
    pub fn groups(mut self, groups: &[&str]) -> ReviewUser {
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }
    pub fn extra(mut self, key: &str, values: &[&str]) -> ReviewUser {
        self.extra
            .insert(key.to_string(), values.iter().map(|v| v.to_string()).collect());
        self
    }

    /// `UserInfo` as Go marshals it: every field omitempty.
    fn to_json(&self) -> Value {
        let mut user = Map::new();
        if !self.username.is_empty() {
            user.insert("username".into(), json!(self.username));
        }
        if !self.uid.is_empty() {
            user.insert("uid".into(), json!(self.uid));
        }
        if !self.groups.is_empty() {
            user.insert("groups".into(), json!(self.groups));
        }
        if !self.extra.is_empty() {
            user.insert("extra".into(), json!(self.extra));
        }
        Value::Object(user)
    }
}

/// One request as the stand-in received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The body as JSON; `Value::Null` if it was not JSON (see `raw`).
    pub body: serde_json::Value,
    pub content_type: Option<String>,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    pub at: Instant,
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub version: http::Version,
    pub accept: Option<String>,
    /// The caller presented a client certificate (it was verified against the client CA).
    pub client_cert: bool,
    /// The body bytes (empty if it exceeded [`MAX_REQUEST_BYTES`] or could not be read).
    pub raw: Bytes,
}

impl Recorded {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// `spec.token` of a TokenReview body.
    pub fn token(&self) -> Option<&str> {
        self.body.pointer("/spec/token").and_then(Value::as_str)
    }
    /// `spec.user` of a SubjectAccessReview body.
    pub fn sar_user(&self) -> Option<&str> {
        self.body.pointer("/spec/user").and_then(Value::as_str)
    }
    /// `spec.resourceAttributes.<field>` of a SubjectAccessReview body.
    pub fn resource_attr(&self, field: &str) -> Option<&str> {
        self.body
            .pointer(&format!("/spec/resourceAttributes/{field}"))
            .and_then(Value::as_str)
    }
}

/// How the stand-in answers a review call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer from the tokens and rules (the default).
    Normal,
    /// That status with a `metav1.Status` body (`reason` from the code: InternalError,
    /// TooManyRequests, Forbidden, NotFound, ...), plus `Retry-After` (and
    /// `details.retryAfterSeconds`) if set.
    Status { code: u16, retry_after: Option<u64> },
    /// 200, `Content-Type: application/json`, body [`GARBAGE_BODY`].
    Garbage,
    /// 200, `Content-Type: text/html; charset=utf-8`, body [`HTML_BODY`].
    Html,
    /// 200 JSON with kind "Pod", apiVersion "v1".
    WrongKind,
    /// TokenReview only: `authenticated: true` with an empty username (Go omits it, so the
    /// `user` object is `{}`). On a SubjectAccessReview: `Normal`.
    EmptyUsername,
    /// TokenReview: `authenticated` false with `status.error` = the string. SubjectAccessReview:
    /// `allowed: false` with `evaluationError` = the string.
    StatusError(String),
    /// SubjectAccessReview only: `allowed: true` and `denied: true`. On a TokenReview: `Normal`.
    AllowedAndDenied,
    /// 200 with a [`HUGE_BYTES`] JSON body: the `Normal` answer padded with a huge string in
    /// `metadata.annotations["padding"]`.
    Huge,
    /// Wait, then answer `Normal`.
    Delay(Duration),
    /// Read the request, never answer (until the connection ends or the server stops).
    Hang,
    /// Read the request, then close the TCP connection without any response (over h2 this
    /// ends every stream of the connection).
    CloseConnection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Review {
    Token,
    Sar,
}

impl Review {
    fn of(path: &str) -> Option<Review> {
        match path {
            TOKENREVIEW_PATH => Some(Review::Token),
            SAR_PATH => Some(Review::Sar),
            _ => None,
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Review::Token => "TokenReview",
            Review::Sar => "SubjectAccessReview",
        }
    }
    fn group(self) -> &'static str {
        match self {
            Review::Token => "authentication.k8s.io",
            Review::Sar => "authorization.k8s.io",
        }
    }
    fn api_version(self) -> String {
        format!("{}/v1", self.group())
    }
    fn resource(self) -> &'static str {
        match self {
            Review::Token => "tokenreviews",
            Review::Sar => "subjectaccessreviews",
        }
    }
}

struct TokenEntry {
    user: ReviewUser,
    /// None: valid for any audience (the requested ones are echoed).
    audiences: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Rule {
    user: String,
    verb: String,
    subresource: String,
}

impl Rule {
    fn matches(&self, user: &str, verb: &str, subresource: &str) -> bool {
        let m = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        m(&self.user, user) && m(&self.verb, verb) && m(&self.subresource, subresource)
    }
}

struct Script {
    tokens: HashMap<String, TokenEntry>,
    nodes: HashMap<String, Value>,
    csrs: Vec<Value>,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    unknown_token_error: Option<String>,
    tokenreview: Behaviour,
    sar: Behaviour,
    tokenreview_script: VecDeque<Behaviour>,
    sar_script: VecDeque<Behaviour>,
}

#[derive(Default)]
struct Records {
    all: Vec<Recorded>,
    tokenreviews: Vec<Recorded>,
    sars: Vec<Recorded>,
}

/// What the serving tasks share. Holds no stop signal, so tasks never keep the server alive.
struct Inner {
    script: Mutex<Script>,
    records: Mutex<Records>,
    tls: Arc<rustls::ServerConfig>,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stand-in API server. Clones share it; it serves until `stop()` or until every clone is
/// dropped.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
    /// Held only by `ApiServer` handles: dropping the last one stops serving.
    control: Arc<Restartable>,
    ca: Ca,
    client_ca: Ca,
    gateway_cert: Arc<Leaf>,
}

impl fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServer").field("addr", &self.control.addr()).finish()
    }
}

impl ApiServer {
    /// HTTPS on 127.0.0.1:0 (ALPN h2, http/1.1) with a serving certificate for "localhost" and
    /// 127.0.0.1 from its own CA; client certificates are requested, not required.
    pub async fn start() -> ApiServer {
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
        ApiServer {
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
    /// [`ApiServer::write_kubeconfig_with_cert`].
    pub fn gateway_cert(&self) -> Leaf {
        (*self.gateway_cert).clone()
    }

    /// Writes `apiserver-<port>.kubeconfig` in `dir`: the server with its CA inline
    /// (`certificate-authority-data`) and a user with the token [`GATEWAY_TOKEN`].
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        self.write_kubeconfig_with_token(dir, GATEWAY_TOKEN)
    }

    /// Same as [`ApiServer::write_kubeconfig`] with another token (e.g. a wrong one: 401),
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

    /// Writes `apiserver-<port>-cert.kubeconfig` in `dir`: like [`ApiServer::write_kubeconfig`],
    /// but the user authenticates with [`ApiServer::gateway_cert`] (`client-certificate-data` /
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

fn rule(user: &str, verb: &str, subresource: &str) -> Rule {
    Rule {
        user: user.to_string(),
        verb: verb.to_string(),
        subresource: subresource.to_string(),
    }
}

fn next_file_id() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Inner {
    fn next_behaviour(&self, review: Review) -> Behaviour {
        let mut guard = lock(&self.script);
        let s = &mut *guard;
        let (queue, standing) = match review {
            Review::Token => (&mut s.tokenreview_script, s.tokenreview.clone()),
            Review::Sar => (&mut s.sar_script, s.sar.clone()),
        };
        queue.pop_front().unwrap_or(standing)
    }
}

// ---------------------------------------------------------------------------------------
// Serving

fn spawn_server(listener: TcpListener, inner: Arc<Inner>) -> Running {
    Running::spawn(listener, move |tcp, stop_rx| {
        inner.connections.fetch_add(1, Ordering::Relaxed);
        serve_conn(tcp, inner.clone(), stop_rx)
    })
}

/// What a request handler knows about its connection.
#[derive(Clone)]
struct Conn {
    inner: Arc<Inner>,
    client_cert: bool,
    /// `CloseConnection`: ends the connection task, which drops the socket.
    kill: Arc<Notify>,
    /// Changes (the sender is dropped) once the connection task has ended.
    closed: watch::Receiver<()>,
}

impl Conn {
    async fn wait_closed(&mut self) {
        while self.closed.changed().await.is_ok() {}
    }
}

async fn serve_conn(tcp: TcpStream, inner: Arc<Inner>, mut stop_rx: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let (_closed_tx, closed_rx) = watch::channel(());
    let acceptor = tokio_rustls::TlsAcceptor::from(inner.tls.clone());
    let tls = tokio::select! {
        _ = wait_stop(&mut stop_rx) => return,
        r = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            _ => return,
        },
    };
    let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
    let kill = Arc::new(Notify::new());
    let conn = Conn {
        inner,
        client_cert,
        kill: kill.clone(),
        closed: closed_rx,
    };
    let svc = service_fn(move |req| handle(req, conn.clone()));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let serve = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        biased;
        _ = kill.notified() => {}
        _ = wait_stop(&mut stop_rx) => {}
        _ = serve => {}
    }
    // Dropping `serve` here closes the TCP connection (no TLS close_notify, no response);
    // `_closed_tx` goes with it.
}

/// Ends the exchange without an HTTP answer.
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("API server stand-in drops the connection")
    }
}

impl std::error::Error for Dropped {}

type Resp = Response<Full<Bytes>>;

/// Counts a request in flight while alive.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn enter(inner: &Arc<Inner>) -> InFlight {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn handle(req: Request<Incoming>, mut conn: Conn) -> Result<Resp, Dropped> {
    let inner = conn.inner.clone();
    let _in_flight = InFlight::enter(&inner);
    let (parts, body) = req.into_parts();
    let raw = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .ok();
    let review = Review::of(parts.uri.path());
    let content_type = header_string(&parts.headers, header::CONTENT_TYPE);
    let recorded = Recorded {
        body: raw
            .as_ref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null),
        content_type: content_type.clone(),
        authorization: header_string(&parts.headers, header::AUTHORIZATION),
        at: Instant::now(),
        method: parts.method.as_str().to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.to_string()),
        version: parts.version,
        accept: header_string(&parts.headers, header::ACCEPT),
        client_cert: conn.client_cert,
        raw: raw.clone().unwrap_or_default(),
    };
    {
        let mut records = lock(&inner.records);
        match review {
            Some(Review::Token) => records.tokenreviews.push(recorded.clone()),
            Some(Review::Sar) => records.sars.push(recorded.clone()),
            None => {}
        }
        records.all.push(recorded);
    }

    let behaviour = review.map_or(Behaviour::Normal, |r| inner.next_behaviour(r));
    match &behaviour {
        Behaviour::Hang => {
            conn.wait_closed().await;
            return Err(Dropped);
        }
        Behaviour::CloseConnection => {
            conn.kill.notify_one();
            conn.wait_closed().await;
            return Err(Dropped);
        }
        Behaviour::Delay(d) => tokio::time::sleep(*d).await,
        Behaviour::Status { code, retry_after } => {
            let caller = if conn.client_cert {
                GATEWAY_CERT_CN
            } else {
                GATEWAY_USER
            };
            return Ok(scripted_status(*code, *retry_after, review, caller));
        }
        Behaviour::Garbage => return Ok(plain(StatusCode::OK, "application/json", GARBAGE_BODY)),
        Behaviour::Html => return Ok(plain(StatusCode::OK, "text/html; charset=utf-8", HTML_BODY)),
        _ => {}
    }

    // Authentication: a verified client certificate, or the gateway's bearer token.
    if !conn.client_cert && !bearer_is_gateway(&parts.headers) {
        return Ok(status_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ));
    }
    if review.is_none()
        && parts.method == Method::GET
        && let Some(answer) = read_object(&inner, parts.uri.path())
    {
        return Ok(answer);
    }
    let Some(review) = review else {
        return Ok(status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ));
    };
    if parts.method != Method::POST {
        return Ok(status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ));
    }
    let Some(raw) = raw else {
        return Ok(status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
            None,
        ));
    };
    if !is_json_media(content_type.as_deref()) {
        return Ok(status_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (the stand-in speaks JSON only; got {:?})",
                content_type.unwrap_or_default()
            ),
            None,
        ));
    }
    if !accepts_json(header_string(&parts.headers, header::ACCEPT).as_deref()) {
        return Ok(status_response(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "only the following media types are accepted: application/json",
            None,
        ));
    }
    let object = match decode(&raw, review) {
        Ok(o) => o,
        Err(message) => return Ok(status_response(StatusCode::BAD_REQUEST, "BadRequest", &message, None)),
    };
    let answer = match review {
        Review::Token => token_review(&inner, object, &behaviour),
        Review::Sar => subject_access_review(&inner, object, &behaviour),
    };
    Ok(answer)
}

/// GET of a scripted Node or of the CSR list; None for any other path.
fn read_object(inner: &Inner, path: &str) -> Option<Resp> {
    let script = lock(&inner.script);
    if let Some(name) = path.strip_prefix(NODES_PATH).and_then(|p| p.strip_prefix('/')) {
        return Some(match script.nodes.get(name) {
            Some(node) => json_response(StatusCode::OK, node),
            None => status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("nodes \"{name}\" not found"),
                Some(json!({"name": name, "kind": "nodes"})),
            ),
        });
    }
    if path == CSR_PATH {
        let list = json!({
            "kind": "CertificateSigningRequestList",
            "apiVersion": "certificates.k8s.io/v1",
            "metadata": {"resourceVersion": "1"},
            "items": script.csrs,
        });
        return Some(json_response(StatusCode::OK, &list));
    }
    None
}

fn bearer_is_gateway(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next().unwrap_or("");
    let token = parts.next().unwrap_or("");
    scheme.eq_ignore_ascii_case("bearer") && parts.next().is_none() && token == GATEWAY_TOKEN
}

/// No Content-Type counts as JSON (the apiserver defaults to its first serializer).
fn is_json_media(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let media = ct.split(';').next().unwrap_or("").trim();
            media.is_empty() || media.eq_ignore_ascii_case("application/json")
        }
    }
}

fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(media.as_str(), "application/json" | "application/*" | "*/*")
    })
}

/// The request object, or the 400 message.
fn decode(raw: &[u8], review: Review) -> Result<Map<String, Value>, String> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
    let Value::Object(object) = value else {
        return Err("couldn't get version/kind; json parse error: not a JSON object".to_string());
    };
    let expected = review.api_version();
    match object.get("apiVersion") {
        None => {}
        Some(Value::String(v)) if *v == expected => {}
        Some(v) => {
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            return Err(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            ));
        }
    }
    match object.get("kind") {
        None => {}
        Some(Value::String(k)) if k == review.kind() => {}
        Some(k) => {
            let k = k.as_str().map(str::to_string).unwrap_or_else(|| k.to_string());
            return Err(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                review.kind()
            ));
        }
    }
    if object.get("spec").is_some_and(|s| !s.is_object() && !s.is_null()) {
        return Err(format!("{}.spec: expected an object", review.kind()));
    }
    Ok(object)
}

/// The request object as the answer's base: kind, apiVersion, metadata filled in.
fn echo(mut object: Map<String, Value>, review: Review) -> Map<String, Value> {
    object.insert("kind".into(), json!(review.kind()));
    object.insert("apiVersion".into(), json!(review.api_version()));
    if !object.get("metadata").is_some_and(Value::is_object) {
        object.insert("metadata".into(), json!({}));
    }
    if !object.get("spec").is_some_and(Value::is_object) {
        object.insert("spec".into(), json!({}));
    }
    object
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

fn token_review(inner: &Inner, object: Map<String, Value>, behaviour: &Behaviour) -> Resp {
    let review = Review::Token;
    let token = object
        .get("spec")
        .and_then(|s| s.get("token"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if token.is_empty() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "token is required for TokenReview in authentication",
            None,
        );
    }
    if *behaviour == Behaviour::WrongKind {
        return wrong_kind();
    }
    let requested = str_list(object.get("spec").and_then(|s| s.get("audiences")));
    let mut answer = echo(object, review);
    let mut status = Map::new();
    match behaviour {
        Behaviour::EmptyUsername => {
            status.insert("authenticated".into(), json!(true));
            status.insert("user".into(), json!({}));
        }
        Behaviour::StatusError(error) => {
            status.insert("user".into(), json!({}));
            status.insert("error".into(), json!(error));
        }
        _ => {
            let script = lock(&inner.script);
            let targets = if requested.is_empty() {
                vec![API_AUDIENCE.to_string()]
            } else {
                requested.clone()
            };
            match script.tokens.get(&token) {
                None => {
                    status.insert("user".into(), json!({}));
                    if let Some(e) = &script.unknown_token_error {
                        status.insert("error".into(), json!(e));
                    }
                }
                Some(entry) => {
                    let audiences = match &entry.audiences {
                        None => targets.clone(),
                        Some(bound) => targets.iter().filter(|t| bound.contains(t)).cloned().collect(),
                    };
                    if audiences.is_empty() {
                        let bound = entry.audiences.clone().unwrap_or_default();
                        status.insert("user".into(), json!({}));
                        status.insert(
                            "error".into(),
                            json!(format!(
                                "token audiences {} is invalid for the target audiences {}",
                                go_quote_list(&bound),
                                go_quote_list(&targets)
                            )),
                        );
                    } else {
                        status.insert("authenticated".into(), json!(true));
                        status.insert("user".into(), entry.user.to_json());
                        status.insert("audiences".into(), json!(audiences));
                    }
                }
            }
        }
    }
    answer.insert("status".into(), Value::Object(status));
    finish(answer, behaviour)
}

fn subject_access_review(inner: &Inner, object: Map<String, Value>, behaviour: &Behaviour) -> Resp {
    let review = Review::Sar;
    let spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
    let user = spec.get("user").and_then(Value::as_str).unwrap_or("").to_string();
    let groups = str_list(spec.get("groups"));
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let mut causes = Vec::new();
    if resource.is_some() && non_resource.is_some() {
        causes.push((
            "spec.nonResourceAttributes",
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if resource.is_none() && non_resource.is_none() {
        causes.push((
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if user.is_empty() && groups.is_empty() {
        causes.push(("spec.user", "at least one of user or group must be specified"));
    }
    if !causes.is_empty() {
        let messages: Vec<String> = causes
            .iter()
            .map(|(field, m)| format!("{field}: Invalid value: \"\": {m}"))
            .collect();
        let message = if messages.len() == 1 {
            messages[0].clone()
        } else {
            format!("[{}]", messages.join(", "))
        };
        let details = json!({
            "group": review.group(),
            "kind": review.kind(),
            "causes": causes.iter().map(|(field, m)| json!({
                "reason": "FieldValueInvalid",
                "message": format!("Invalid value: \"\": {m}"),
                "field": field,
            })).collect::<Vec<_>>(),
        });
        return status_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("SubjectAccessReview.authorization.k8s.io \"\" is invalid: {message}"),
            Some(details),
        );
    }
    if *behaviour == Behaviour::WrongKind {
        return wrong_kind();
    }
    let attr = |name: &str| {
        resource
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (verb, subresource) = match (resource, non_resource) {
        (Some(_), _) => (attr("verb"), attr("subresource")),
        (None, Some(n)) => (
            n.get("verb").and_then(Value::as_str).unwrap_or("").to_string(),
            // A non-resource request has no subresource: only a "*" rule matches it.
            "\u{0}non-resource".to_string(),
        ),
        (None, None) => (String::new(), String::new()),
    };
    let mut status = Map::new();
    match behaviour {
        Behaviour::AllowedAndDenied => {
            status.insert("allowed".into(), json!(true));
            status.insert("denied".into(), json!(true));
            status.insert("reason".into(), json!("both allowed and denied by the stand-in"));
        }
        Behaviour::StatusError(error) => {
            status.insert("allowed".into(), json!(false));
            status.insert("evaluationError".into(), json!(error));
        }
        _ => {
            let script = lock(&inner.script);
            if script.deny.iter().any(|r| r.matches(&user, &verb, &subresource)) {
                status.insert("allowed".into(), json!(false));
                status.insert("denied".into(), json!(true));
                status.insert("reason".into(), json!(DENY_REASON));
            } else if script.allow.iter().any(|r| r.matches(&user, &verb, &subresource)) {
                status.insert("allowed".into(), json!(true));
                status.insert("reason".into(), json!(ALLOW_REASON));
            } else {
                status.insert("allowed".into(), json!(false));
            }
        }
    }
    let mut answer = echo(object, review);
    answer.insert("status".into(), Value::Object(status));
    finish(answer, behaviour)
}

/// 200 with the answer, padded to [`HUGE_BYTES`] for `Huge`.
fn finish(mut answer: Map<String, Value>, behaviour: &Behaviour) -> Resp {
    if *behaviour != Behaviour::Huge {
        return json_response(StatusCode::OK, &Value::Object(answer));
    }
    let metadata = answer.entry("metadata").or_insert_with(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.insert("annotations".into(), json!({ "padding": "" }));
    }
    let base = serde_json::to_vec(&answer).expect("serialize review").len() + 1;
    let pad = HUGE_BYTES.saturating_sub(base);
    if let Some(a) = answer.get_mut("metadata").and_then(|m| m.get_mut("annotations")) {
        a["padding"] = Value::String("x".repeat(pad));
    }
    json_response(StatusCode::OK, &Value::Object(answer))
}

fn wrong_kind() -> Resp {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "not-a-review", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            "status": {"phase": "Running"},
        }),
    )
}

/// `Behaviour::Status`: the Status kube-apiserver would send with that code.
fn scripted_status(code: u16, retry_after: Option<u64>, review: Option<Review>, caller: &str) -> Resp {
    let status = StatusCode::from_u16(code).expect("valid HTTP status code");
    let (group, resource) = review.map_or(("", ""), |r| (r.group(), r.resource()));
    let (reason, message): (&str, String) = match code {
        400 => (
            "BadRequest",
            "the server rejected our request for an unknown reason".into(),
        ),
        401 => ("Unauthorized", "Unauthorized".into()),
        403 => (
            "Forbidden",
            format!(
                "{resource}.{group} is forbidden: User \"{caller}\" cannot create resource \"{resource}\" in API group \"{group}\" at the cluster scope"
            ),
        ),
        404 => ("NotFound", "the server could not find the requested resource".into()),
        405 => (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
        ),
        406 => (
            "NotAcceptable",
            "the server was unable to respond with a content type that the client supports".into(),
        ),
        409 => ("Conflict", "the server reported a conflict".into()),
        410 => ("Expired", "the server reported the resource as gone".into()),
        413 => (
            "RequestEntityTooLarge",
            "the server rejected the request as too large".into(),
        ),
        415 => (
            "UnsupportedMediaType",
            "the body of the request was in an unknown format".into(),
        ),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request".into(),
        ),
        429 => ("TooManyRequests", "Too many requests, please try again later.".into()),
        500 => (
            "InternalError",
            "Internal error occurred: stand-in API server failure".into(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request"
                .into(),
        ),
        _ => (
            "",
            format!("the server responded with the status code {code} but did not return more information"),
        ),
    };
    let mut details = Map::new();
    if code == 403 || code == 404 {
        details.insert("group".into(), json!(group));
        details.insert("kind".into(), json!(resource));
    }
    if let Some(s) = retry_after {
        details.insert("retryAfterSeconds".into(), json!(s));
    }
    let details = (!details.is_empty() || code == 404).then_some(Value::Object(details));
    let mut r = status_response(status, reason, &message, details);
    if let Some(s) = retry_after {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            http::HeaderValue::from_str(&s.to_string()).expect("Retry-After value"),
        );
    }
    r
}

/// A `metav1.Status` answer (Go omitempty: no empty reason or details).
fn status_response(status: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let mut body = Map::new();
    body.insert("kind".into(), json!("Status"));
    body.insert("apiVersion".into(), json!("v1"));
    body.insert("metadata".into(), json!({}));
    let outcome = if status.is_success() { "Success" } else { "Failure" };
    body.insert("status".into(), json!(outcome));
    if !message.is_empty() {
        body.insert("message".into(), json!(message));
    }
    if !reason.is_empty() {
        body.insert("reason".into(), json!(reason));
    }
    if let Some(d) = details {
        body.insert("details".into(), d);
    }
    body.insert("code".into(), json!(status.as_u16()));
    json_response(status, &Value::Object(body))
}

fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut bytes = serde_json::to_vec(body).expect("serialize JSON answer");
    bytes.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .header("audit-id", audit_id())
        .body(Full::new(Bytes::from(bytes)))
        .expect("response")
}

fn plain(status: StatusCode, content_type: &str, body: &'static str) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("audit-id", audit_id())
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("response")
}

/// A UUID-shaped id, as kube-apiserver puts in `Audit-Id`.
fn audit_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b[..8].copy_from_slice(&(next_file_id() as u64).to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
