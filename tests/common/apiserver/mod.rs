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
//! 3. authentication: a client certificate issued by [`ApiServerStandIn::client_ca`] or the bearer
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
//!
//! Layout: [`ApiServerStandIn`] in `handle.rs` is what a test holds (start, kubeconfigs, scripting,
//! observation); `script.rs` holds what tests script (users, rules, behaviours), `record.rs`
//! what was received; `serve.rs` takes a request from the socket through steps 1 to 6,
//! `reviews.rs` computes the TokenReview and SubjectAccessReview answers (step 7), and
//! `answers.rs` writes the `metav1.Status`, JSON and plain bodies.

mod answers;
mod handle;
mod record;
mod reviews;
mod script;
mod serve;

pub use handle::ApiServerStandIn;
// The path as before the split; no test names the type today.
#[allow(unused_imports)]
pub use record::Recorded;
pub use script::{Behaviour, ReviewUser};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use record::Records;
use script::Script;

/// The bearer token the API server accepts from the gateway (the kubeconfig's user).
pub const GATEWAY_TOKEN: &str = "gateway-token";
/// Who the gateway is to the API server when it uses [`GATEWAY_TOKEN`] (appears in 403 messages).
pub const GATEWAY_USER: &str = "system:serviceaccount:kube-system:kubelet-gate";
/// Common name of the client certificate in [`ApiServerStandIn::write_kubeconfig_with_cert`].
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

fn next_file_id() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
