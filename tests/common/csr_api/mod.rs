#![allow(dead_code)]
//! A stand-in for kube-apiserver as a node meets it when it gets its certificates (client-go
//! util/certificate/csr and the certificates.k8s.io/v1 API) and joins the cluster:
//! HTTPS (h2 and HTTP/1.1) on 127.0.0.1:0 serving the `certificates.k8s.io/v1`
//! CertificateSigningRequest API (create, get, list, watch, delete), the Node API (get, list,
//! watch), TokenReview, SelfSubjectReview, SelfSubjectAccessReview and the ClusterRoleBinding
//! list, plus a scriptable approver and `kubernetes.io/kubelet-serving` signer playing
//! `kubectl certificate approve|deny`'s part, and kube-controller-manager's CSR approver and
//! `kubernetes.io/kube-apiserver-client-kubelet` signer (`cluster.rs`).
//!
//! Request handling, in order (kube-apiserver's filter chain, simplified):
//! 1. the request (method, path and query) is recorded;
//! 2. authentication (`authn.rs`): a client certificate from [`CsrApi::client_signer`],
//!    verified at the time of each request (so one that expires on an open connection is
//!    refused from then on), else the bearer token: [`GATEWAY_TOKEN`] is the identity given to
//!    [`CsrApi::start`] (e.g. `system:node:node-a`, allowed everything), a bootstrap token is
//!    `system:bootstrap:<id>` in `system:bootstrappers`; anything else gets 401. Every request
//!    is also recorded with who it was ([`CsrApi::calls`]);
//! 3. authorization (`cluster.rs`): everything for the gateway's token; for others the bootstrap
//!    policy's roles through [`CsrApi::bind`], the Node authorizer's grants to `system:nodes`,
//!    and self reviews for everyone; else 403 with kube-apiserver's message;
//! 4. routing: [`CSR_PATH`] and `CSR_PATH/{name}` (also `/status` and `/approval`, GET only),
//!    [`NODES_PATH`] and `NODES_PATH/{name}`, the reviews (`reviews.rs`); 404 elsewhere, 405 for
//!    other methods;
//! 5. the verb. Errors are `metav1.Status` JSON with kube-apiserver's reasons and messages:
//!    400 BadRequest (bad JSON, wrong kind, unsupported field selector), 404 NotFound,
//!    409 AlreadyExists, 413, 415, 422 Invalid (the v1 validation: request PEM and signature,
//!    usages, signerName, expirationSeconds), 429 for watches refused by [`CsrApi::fail_watches`].
//!
//! Watches (`?watch=true|1`) stream newline-delimited `{"type":..,"object":..}` events, one
//! chunk (HTTP/1.1) or DATA frame (h2) each: with `resourceVersion` absent or "0", an ADDED per
//! matching object first, then every later change; with `resourceVersion=N`, the changes after
//! N from the full history kept here (an ERROR 410 Expired event if N predates
//! [`CsrApi::compact`]). `sendInitialEvents=true` adds the `k8s.io/initial-events-end`
//! BOOKMARK; [`CsrApi::send_bookmarks`] sends BOOKMARKs to watches that allowed them. The stream
//! ends after `timeoutSeconds` (default [`DEFAULT_WATCH_TIMEOUT`]), on [`CsrApi::end_watches`],
//! `stop()`, or when the client goes away. Field selectors: `metadata.name` (both resources),
//! `spec.signerName` (CSRs), `spec.unschedulable` (nodes), with `=`, `==`, `!=`; label selectors:
//! `k`, `!k`, `k=v`, `k==v`, `k!=v`.
//!
//! What differs from the real server: JSON only (no protobuf, no gzip), no managedFields, no
//! `limit`/`continue` paging, a few roles only, a list ignores `resourceVersion`, and the
//! history is never compacted unless [`CsrApi::compact`] says so.
//!
//! Layout: [`CsrApi`] in `handle.rs` is what a test holds (start, kubeconfig, scripting,
//! observation), with more kubeconfigs in `kubeconfigs.rs`; `serve.rs` takes a request from the
//! socket to an answer (routing, list and get, `metav1.Status` bodies), `authn.rs` and
//! `cluster.rs` decide who may do what, `create.rs`, `watch.rs` and `reviews.rs` do those verbs,
//! `selector.rs` parses selectors; `store.rs` keeps the objects and their history,
//! `approver.rs`, `cluster.rs` and `signer.rs` play the controllers' parts, `csr.rs` parses and
//! validates the request PEM, `record.rs` is the view tests read, `meta.rs` makes uids, names
//! and times.

mod approver;
mod authn;
mod cluster;
mod create;
mod csr;
mod handle;
mod kubeconfigs;
mod meta;
mod record;
mod reviews;
mod selector;
mod serve;
mod signer;
mod store;
mod watch;

pub use approver::Mode;
// The cluster's names, for the join tests.
#[allow(unused_imports)]
pub use cluster::{
    Binding, CLIENT_KUBELET_SIGNER, NODE_BOOTSTRAPPER, NODE_CLIENT, NODE_CLIENT_APPROVED, SELF_NODE_CLIENT,
    SELF_NODE_CLIENT_APPROVED,
};
pub use handle::CsrApi;
pub use record::{Call, Credential};
#[allow(unused_imports)]
pub use reviews::{API_AUDIENCE, CLUSTER_ROLE_BINDINGS_PATH, TOKENREVIEW_PATH};
// Paths as before the split; no test names these types today.
#[allow(unused_imports)]
pub use record::{Condition, CsrRecord};
#[allow(unused_imports)]
pub use signer::SignerCa;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The bearer token the stand-in accepts (the kubeconfig's user), as in `apiserver.rs`.
pub const GATEWAY_TOKEN: &str = "gateway-token";
pub const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
pub const NODES_PATH: &str = "/api/v1/nodes";
/// The signer this stand-in implements.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// What `kubectl certificate approve` writes.
pub const APPROVE_REASON: &str = "KubectlApprove";
pub const APPROVE_MESSAGE: &str = "This CSR was approved by kubectl certificate approve.";
/// What `kubectl certificate deny` writes.
pub const DENY_REASON: &str = "KubectlDeny";
pub const DENY_MESSAGE: &str = "This CSR was denied by kubectl certificate deny.";
/// The reason kube-controller-manager's signer gives a `Failed` condition.
pub const FAILED_REASON: &str = "SignerValidationFailure";
/// The `k8s.io/initial-events-end` bookmark annotation (`sendInitialEvents=true`).
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";
/// A watch without `timeoutSeconds` ends after this (kube-apiserver: a random 30–60 min).
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Request bodies above this get 413 (kube-apiserver's limit is 3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

const CSR_GROUP: &str = "certificates.k8s.io";
const CSR_API_VERSION: &str = "certificates.k8s.io/v1";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
