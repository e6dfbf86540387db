//! The operator tools against real servers: `diagnose` names the cause and the fix of each
//! classic broken setup (the x509 failures behind `kubectl logs` errors) served by the real
//! gateway over TLS, and `explain` and `policy-test` agree with what the running gateway does for
//! the same requests. This file holds what both halves use.

mod join_doctor;
mod policy;
mod x509_doctor;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kubelet_gate::tools::diagnose::{self, Options, Report, Verdict};
use kubelet_gate::tools::explain::{Decision, Explainer, Identity, Request};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::common::apiserver::{ApiServerStandIn, Behaviour};
use crate::common::pki::{Ca, ClientSpec, Eku, Leaf, Offset, ServerSpec};
use crate::common::{Harness, NODE, Setup, TokenUser};

pub(super) const BIN: &str = env!("CARGO_BIN_EXE_kubelet-gate");
pub(super) const APISERVER_USER: &str = "kube-apiserver-kubelet-client";
pub(super) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Runs the real binary without blocking the runtime the servers run on.
pub(super) async fn cli(args: Vec<String>) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output())
        .await
        .expect("join")
        .expect("run kubelet-gate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(super) fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
