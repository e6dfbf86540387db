//! kubelet-gate: the kubelet's port-10250 security in front of a node API that has none.
//!
//! A request travels through the modules in this order:
//!
//! 1. [`server`] accepts TCP on port 10250, completes the TLS handshake ([`tls`], with a
//!    serving certificate from [`certs`]) and records the client's certificate chain without
//!    judging it.
//! 2. [`proxy::pipeline`] runs the phases: [`proxy::path`] refuses any non-canonical target
//!    (400), [`proxy::routes`] answers unknown paths (404) as the kubelet's mux does,
//!    [`authn`] finds the caller in the kubelet's order (client certificate, bearer token,
//!    WebSocket token, anonymous), and [`authz`] reviews `nodes/<subresource>` as the kubelet
//!    does, fine-grained subresources first.
//! 3. An allowed request is forwarded by [`proxy::forward`] to the kubelet's read-only port,
//!    answered from the node's log files by [`logs`] (`/logs/`, `/containerLogs/`), or
//!    answered by the gateway itself.
//!
//! With the webhook backends, [`k8s`] is the API server client (TokenReview,
//! SubjectAccessReview) and [`clock`] the monotonic clock the caches read.
//!
//! Last, [`ops`] counts the request for `/metrics` (served on a separate local listener with
//! `/healthz` and `/readyz`) and writes its audit record when the response ends.
//!
//! [`config`] turns the YAML file into a validated [`config::Config`] once; [`app`] wires the
//! parts together from it.
//!
//! [`tools`] holds the commands that never serve: `explain` and `policy-test` run requests
//! through the same phases (path gate, mux, attributes, review loop, responses) without a
//! network, and `diagnose` connects to a node as kube-apiserver does.

pub mod app;
pub mod authn;
pub mod authz;
pub mod certs;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod k8s;
pub mod logs;
pub mod ops;
pub mod proxy;
pub mod reload;
pub mod review_cache;
pub mod server;
pub mod tls;
pub mod tools;
