//! kubelet-gate: the kubelet's port-10250 security in front of a node API that has none.
//!
//! A request travels through the modules in this order:
//!
//! 1. [`server`] accepts TCP on port 10250, completes the TLS handshake ([`tls`], with a
//!    serving certificate from [`certs`]) and records the client's certificate chain without
//!    judging it.
//! 2. [`proxy::pipeline`] runs the phases and computes one [`proxy::outcome::Outcome`]:
//!    [`proxy::path`] refuses any non-canonical target (400), [`proxy::routes`] answers unknown
//!    paths (404) as the kubelet's mux does, [`authn`] finds the caller in the kubelet's order
//!    (client certificate, bearer token, WebSocket token, anonymous), and [`authz`] reviews
//!    `nodes/<subresource>` as the kubelet does, fine-grained subresources first.
//! 3. The outcome is the answer: the kubelet's refusal, or an allowed request forwarded by
//!    [`proxy::forward`] to the kubelet's read-only port, or answered from the node's log files by
//!    [`logs`] (`/logs/`, `/containerLogs/`).
//!
//! With the webhook backends, [`k8s`] is the API server client (TokenReview,
//! SubjectAccessReview), whose identity is rebuilt when its files change or when [`certs`]
//! joins the cluster with a bootstrap token and renews the gateway's client certificate;
//! [`clock`] is the monotonic clock the caches read. [`crypto`] names the one crypto provider;
//! [`reload`] re-reads certificate files when they change.
//!
//! Last, [`ops`] counts the request for `/metrics` (served on a separate local listener with
//! `/healthz` and `/readyz`) and writes its audit record when the response ends, from values the
//! pipeline hands it.
//!
//! [`config`] turns the YAML file into a validated [`config::Config`] once; [`app`] reads every
//! input, builds the parts, and [`app::serve`]s them on listeners it is given.
//!
//! [`tools`] holds the commands that never serve: `explain` and `policy-test` run requests
//! through the same phases ([`proxy::pipeline::route`], [`proxy::pipeline::review`]) and read the
//! same outcome without a network, and `diagnose` connects to a node as kube-apiserver does.

pub mod app;
pub mod authn;
pub mod authz;
pub mod certs;
pub mod clock;
pub mod config;
pub mod crypto;
#[doc(hidden)]
pub mod fuzzing;
pub mod k8s;
pub mod logs;
pub mod ops;
pub mod proxy;
pub mod reload;
pub mod review_cache;
pub mod server;
pub mod tls;
pub mod tools;
