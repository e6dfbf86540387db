//! `diagnose` against Go itself: for a table of healthy and broken nodes made at run time, a
//! stdlib-only Go client (tests/go/apiserver-dial, built here with the Go toolchain) dials each
//! node the way kube-apiserver does for `kubectl logs`, and `diagnose` must pass exactly what
//! Go accepts and report exactly the string Go printed, byte for byte, in `apiServerError` and
//! in its "kubectl logs would report:" line. The nodes are Go's TLS server too (what a real
//! kubelet runs), from the same program.
//!
//! Go is `$KUBELET_GATE_GO`, else /usr/lib/go-1.26/bin/go, else `go` on PATH, and must be Go
//! 1.24 or newer (the error strings are those of current Go). Without it the test says SKIPPED,
//! unless `KUBELET_GATE_REQUIRE_GO=1` (as in CI), when it fails.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kubelet_gate::tools::diagnose::{self, LOGS_PROBE, Options};
use serde_json::Value;

use crate::common::pki::{Ca, ClientSpec, Eku, IntermediateOpts, Leaf, Offset, ServerSpec};

mod cases;
mod go;

use cases::*;
use go::*;

pub(super) const BIN: &str = env!("CARGO_BIN_EXE_kubelet-gate");
pub(super) const APISERVER_USER: &str = "kube-apiserver-kubelet-client";
pub(super) const NODE: &str = "node-a";
pub(super) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The oldest Go whose strings diagnose emulates (no GODEBUG suffix on SHA-1, RSA-1024 allowed).
pub(super) const MIN_GO: (u32, u32) = (1, 24);

/// The Go client's verdict: went through (exit 0) or not (1), and its line.
fn go_dial(bin: &Path, c: &Case, target: &str, now: i64) -> (bool, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["dial", "-url", &format!("https://{target}{LOGS_PROBE}")])
        .arg("-cert")
        .arg(&c.client.0)
        .arg("-key")
        .arg(&c.client.1)
        .args(["-now", &now.to_string()]);
    if let Some(ca) = &c.ca {
        cmd.arg("-ca").arg(ca);
    }
    let out = cmd.output().expect("run the Go client");
    let line = String::from_utf8_lossy(&out.stdout);
    let line = line.strip_suffix('\n').unwrap_or(&line).to_owned();
    match out.status.code() {
        Some(0) => (true, line),
        Some(1) => (false, line),
        _ => panic!(
            "{}: the Go client failed: {}{}",
            c.name,
            line,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn diagnose_options(c: &Case, target: &str) -> Options {
    Options {
        target: Some(target.to_owned()),
        ca_file: c.ca.clone(),
        client_cert: Some(c.client.0.clone()),
        client_key: Some(c.client.1.clone()),
        timeout: Duration::from_secs(10),
        ..Options::default()
    }
}

/// The command line, for a case whose message does not depend on the second it runs in.
fn cli_json(c: &Case, target: &str) -> (i32, Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["diagnose", target, "--output", "json"])
        .arg("--kubelet-client-certificate")
        .arg(&c.client.0)
        .arg("--kubelet-client-key")
        .arg(&c.client.1);
    if let Some(ca) = &c.ca {
        cmd.arg("--kubelet-certificate-authority").arg(ca);
    }
    let out = cmd.output().expect("run kubelet-gate diagnose");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: diagnose --output json: {e}: {}",
            c.name,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

const REPORT: &str = "kubectl logs would report: ";

#[tokio::test]
async fn diagnose_says_what_a_go_client_says() {
    let bin = match build_go_side() {
        Ok(bin) => bin,
        Err(why) if std::env::var("KUBELET_GATE_REQUIRE_GO").as_deref() == Ok("1") => {
            panic!("KUBELET_GATE_REQUIRE_GO=1, but {why}")
        }
        Err(why) => {
            println!("SKIPPED: diagnose_says_what_a_go_client_says: {why}");
            return;
        }
    };
    let pki = Pki {
        dir: tempfile::tempdir().expect("dir"),
        bin: bin.clone(),
    };
    let table = cases(&pki);
    assert!(table.len() >= 20, "{} cases", table.len());
    let mut mismatches = Vec::new();
    for c in &table {
        let node = GoNode::start(&bin, c.serving.as_ref(), &pki.path("client-ca.crt"), c.authorized);
        let host = if c.by_name { "localhost" } else { "127.0.0.1" };
        let target = format!("{host}:{}", node.port);
        let now = diagnose::unix_now();
        let (go_ok, go_line) = go_dial(&bin, c, &target, now);
        println!(
            "{:<45} Go {}: {go_line}",
            c.name,
            if go_ok { "accepts" } else { "refuses" }
        );
        match (c.expect, go_ok) {
            (Expect::Accepted, true) => {}
            (Expect::Refused(part), false) if go_line.contains(part) => {}
            _ => {
                mismatches.push(format!(
                    "{}: the case does not show what it is for; Go said {go_line:?}",
                    c.name
                ));
                continue;
            }
        }

        let r = diagnose::run_at(&diagnose_options(c, &target), now)
            .await
            .expect("diagnose runs");
        let text = diagnose::render(&r);
        let reported: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(REPORT)).collect();
        let (want_error, want_lines) = if go_ok {
            (None, vec![])
        } else {
            (Some(go_line.clone()), vec![go_line.as_str()])
        };
        if r.ok != go_ok || r.apiserver_error != want_error || reported != want_lines {
            mismatches.push(format!(
                "{}:\n  Go:       {} {go_line:?}\n  diagnose: {} {:?}\n{text}",
                c.name,
                if go_ok { "accepts" } else { "refuses" },
                if r.ok { "accepts" } else { "refuses" },
                r.apiserver_error
            ));
            continue;
        }
        if !go_line.contains("current time") {
            let (code, json) = cli_json(c, &target);
            let want_code = if go_ok { 0 } else { 1 };
            if code != want_code || json["apiServerError"].as_str() != want_error.as_deref() {
                mismatches.push(format!(
                    "{}: the command line exits {code} with apiServerError {}, Go {}",
                    c.name, json["apiServerError"], go_line
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from Go:\n{}",
        mismatches.len(),
        table.len(),
        mismatches.join("\n")
    );
}

#[test]
fn go_versions_are_read() {
    assert_eq!(go_version("go1.26.11"), Some((1, 26)));
    assert_eq!(go_version("go1.24"), Some((1, 24)));
    assert_eq!(go_version("go1.25rc1"), Some((1, 25)));
    assert_eq!(go_version("go1.19.8"), Some((1, 19)));
    assert_eq!(go_version("devel go1.27-abcdef"), Some((u32::MAX, 0)));
    assert_eq!(go_version("gccgo"), None);
    assert!(go_version("go1.19.8") < Some(MIN_GO));
}
