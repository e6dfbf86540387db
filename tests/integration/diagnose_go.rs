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

const BIN: &str = env!("CARGO_BIN_EXE_kubelet-gate");
const APISERVER_USER: &str = "kube-apiserver-kubelet-client";
const NODE: &str = "node-a";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The oldest Go whose strings diagnose emulates (no GODEBUG suffix on SHA-1, RSA-1024 allowed).
const MIN_GO: (u32, u32) = (1, 24);

// ---- finding and building the Go side ----

fn go_binary() -> Option<PathBuf> {
    if let Some(go) = std::env::var_os("KUBELET_GATE_GO") {
        return Some(PathBuf::from(go));
    }
    let debian = PathBuf::from("/usr/lib/go-1.26/bin/go");
    if debian.exists() {
        return Some(debian);
    }
    Command::new("go")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("go"))
}

/// `go1.26.11` → (1, 26); a development version counts as new.
fn go_version(version: &str) -> Option<(u32, u32)> {
    if version.starts_with("devel") {
        return Some((u32::MAX, 0));
    }
    let mut parts = version.trim().strip_prefix("go")?.split(['.', '-', ' ', 'r', 'b']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The Go environment: nothing from the user's, nothing downloaded, caches in cargo's test
/// scratch directory (so that a second run builds in a second).
fn go_command(go: &Path) -> Command {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut c = Command::new(go);
    c.env("GOCACHE", scratch.join("go-cache"))
        .env("GOPATH", scratch.join("go-path"))
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOWORK", "off")
        .env("GOENV", "off")
        .env_remove("GO111MODULE");
    c
}

/// Builds tests/go/apiserver-dial, or says why not (`Err`: skip, `panic`: broken).
fn build_go_side() -> Result<PathBuf, String> {
    let go = go_binary().ok_or("no Go toolchain ($KUBELET_GATE_GO, /usr/lib/go-1.26/bin/go, go on PATH)")?;
    let out = go_command(&go)
        .args(["env", "GOVERSION"])
        .output()
        .map_err(|e| format!("{}: {e}", go.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match go_version(&version) {
        Some(v) if v >= MIN_GO => {}
        _ => {
            return Err(format!(
                "{} is {version:?}; diagnose emulates Go >= {}.{}",
                go.display(),
                MIN_GO.0,
                MIN_GO.1
            ));
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/apiserver-dial");
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("apiserver-dial");
    let out = go_command(&go)
        .current_dir(&src)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg("main.go")
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build of {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(bin)
}

// ---- a node: the Go program's kubelet-like TLS server ----

/// Killed (and reaped) when dropped; it also exits when its stdin closes.
struct GoNode {
    child: Child,
    port: u16,
}

impl GoNode {
    fn start(bin: &Path, serving: Option<&(PathBuf, PathBuf)>, client_ca: &Path, authorized: bool) -> GoNode {
        let mut c = Command::new(bin);
        c.arg("serve").arg("-client-ca").arg(client_ca);
        if let Some((cert, key)) = serving {
            c.arg("-cert").arg(cert).arg("-key").arg(key);
        }
        if authorized {
            c.args(["-allow", APISERVER_USER]);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Go node");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("node stdout");
        BufReader::new(stdout).read_line(&mut line).expect("node address");
        let port = line
            .trim()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("the Go node printed {line:?}, not its address"));
        GoNode { child, port }
    }
}

impl Drop for GoNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the table ----

/// What Go must say for the case: the table says which failure each node is meant to show, so
/// that a case that silently stopped testing it fails too.
#[derive(Clone, Copy)]
enum Expect {
    Accepted,
    /// Go's line contains this.
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    /// What the node serves (chain and key files); `None`: no serving certificate yet.
    serving: Option<(PathBuf, PathBuf)>,
    /// `--kubelet-certificate-authority`.
    ca: Option<PathBuf>,
    /// `--kubelet-client-certificate` and `--kubelet-client-key`.
    client: (PathBuf, PathBuf),
    /// The node authorizes kube-apiserver's user (nodes/proxy, nodes/healthz).
    authorized: bool,
    /// Dialled as `localhost` instead of 127.0.0.1.
    by_name: bool,
    expect: Expect,
}

struct Pki {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn leaf(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let pair = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        leaf.write(&pair.0, &pair.1);
        pair
    }

    fn ca(&self, name: &str, ca: &Ca) -> PathBuf {
        let path = self.path(&format!("{name}.crt"));
        ca.write_pem(&path);
        path
    }

    /// The Go program's `issue` mode, for what rcgen cannot make.
    fn go_issue(&self, out: &str, args: &[&str]) -> (PathBuf, PathBuf) {
        let now = diagnose::unix_now();
        let status = Command::new(&self.bin)
            .args(["issue", "-out"])
            .arg(self.path(out))
            .args(args)
            .args(["-not-before", &(now - 3600).to_string()])
            .args(["-not-after", &(now + 30 * 86_400).to_string()])
            .status()
            .expect("run the Go issuer");
        assert!(status.success(), "apiserver-dial issue {out} {args:?}");
        (self.path(&format!("{out}.crt")), self.path(&format!("{out}.key")))
    }
}

fn serving_spec() -> ServerSpec {
    ServerSpec::new(&format!("system:node:{NODE}"))
        .dns(&[NODE, "localhost"])
        .ips(&[LOCALHOST])
}

fn cases(pki: &Pki) -> Vec<Case> {
    let cluster = Ca::new("kubernetes");
    let ca = Some(pki.ca("cluster-ca", &cluster));
    let client_ca = Ca::new("kubelet-client-ca");
    pki.ca("client-ca", &client_ca);
    let client = pki.leaf("client", &client_ca.client(ClientSpec::new(APISERVER_USER)));
    let wrong_client = pki.leaf(
        "wrong-client",
        &Ca::new("some-other-client-ca").client(ClientSpec::new(APISERVER_USER)),
    );
    let expired_client = pki.leaf(
        "expired-client",
        &client_ca.client(ClientSpec::new(APISERVER_USER).expired()),
    );

    let healthy = pki.leaf("healthy", &cluster.server_with(serving_spec()));
    let inter = cluster.intermediate("kubelet-serving-ca", IntermediateOpts::new());
    let via_intermediate = pki.leaf("via-intermediate", &inter.server_with(serving_spec()));
    let mut leaf_only = inter.server_with(serving_spec());
    leaf_only.chain.truncate(1);
    leaf_only.cert_pem = crate::common::pki::chain_pem(&leaf_only.chain);
    let intermediate_not_sent = pki.leaf("intermediate-not-sent", &leaf_only);
    let stamp = diagnose::unix_now();
    let node_ca = Ca::new(&format!("{NODE}-ca@{stamp}"));
    let kubelet_crt = pki.leaf(
        "kubelet-crt",
        &node_ca
            .server_with(
                ServerSpec::new(&format!("{NODE}@{stamp}"))
                    .dns(&[NODE])
                    .ips(&[LOCALHOST]),
            )
            .with_chain(vec![node_ca.cert_der()]),
    );
    let other_ca = pki.leaf("other-ca", &Ca::new("some-other-ca").server_with(serving_spec()));
    let dns_only = pki.leaf("dns-only", &cluster.server_with(ServerSpec::new(NODE).dns(&[NODE])));
    let expired = pki.leaf(
        "expired",
        &cluster.server_with(serving_spec().validity(Offset::days(-10), Offset::days(-1))),
    );
    let future = pki.leaf(
        "future",
        &cluster.server_with(serving_spec().validity(Offset::days(1), Offset::days(30))),
    );
    let old_root = Ca::with_validity("kubernetes", Offset::days(-30), Offset::days(-1));
    let old_root_ca = Some(pki.ca("old-root", &old_root));
    let from_old_root = pki.leaf("from-old-root", &old_root.server_with(serving_spec()));
    let future_root = Ca::with_validity("kubernetes", Offset::days(1), Offset::days(30));
    let future_root_ca = Some(pki.ca("future-root", &future_root));
    let from_future_root = pki.leaf("from-future-root", &future_root.server_with(serving_spec()));
    let old_inter = cluster.intermediate("kubelet-serving-ca", IntermediateOpts::new().expired());
    let via_old_intermediate = pki.leaf("via-old-intermediate", &old_inter.server_with(serving_spec()));
    let client_eku = pki.leaf("client-eku", &cluster.server_with(serving_spec().eku(Eku::ClientAuth)));
    let client_eku_dns_only = pki.leaf(
        "client-eku-dns-only",
        &cluster.server_with(ServerSpec::new(NODE).dns(&[NODE]).eku(Eku::ClientAuth)),
    );
    let client_eku_other_ca = pki.leaf(
        "client-eku-other-ca",
        &Ca::new("some-other-ca").server_with(serving_spec().eku(Eku::ClientAuth)),
    );
    let client_eku_expired = pki.leaf(
        "client-eku-expired",
        &cluster.server_with(
            serving_spec()
                .eku(Eku::ClientAuth)
                .validity(Offset::days(-10), Offset::days(-1)),
        ),
    );
    let impostor = pki.leaf("impostor", &Ca::new("kubernetes").server_with(serving_spec()));
    let not_ca = cluster.intermediate("not-a-ca", IntermediateOpts::new().not_ca());
    let via_not_ca = pki.leaf("via-not-ca", &not_ca.server_with(serving_spec()));
    let no_more = cluster.intermediate("path-len-0", IntermediateOpts::new().path_len(0));
    let below = no_more.intermediate("below-path-len-0", IntermediateOpts::new());
    let too_deep = pki.leaf("too-deep", &below.server_with(serving_spec()));
    let critical = pki.leaf(
        "critical",
        &cluster.client(
            ClientSpec::new(NODE)
                .eku(Eku::ClientAndServer)
                .unknown_critical_ext(true),
        ),
    );
    let legacy_cn = pki.leaf("legacy-cn", &cluster.server_with(ServerSpec::new("localhost")));

    // Go-made: a SHA-1 signature (by an RSA CA) and an RSA-1024 serving key (from the cluster CA).
    pki.go_issue("sha1-ca", &["-cn", "sha1-ca", "-is-ca", "-key", "rsa2048"]);
    let sha1_ca = Some(pki.path("sha1-ca.crt"));
    let sha1 = pki.go_issue(
        "sha1-leaf",
        &[
            "-ca",
            &pki.path("sha1-ca").display().to_string(),
            "-sig",
            "sha1",
            "-cn",
            NODE,
            "-ip",
            "127.0.0.1",
            "-dns",
            "localhost",
        ],
    );
    cluster.write_pair(&pki.path("cluster.crt"), &pki.path("cluster.key"));
    let rsa1024 = pki.go_issue(
        "rsa1024",
        &[
            "-ca",
            &pki.path("cluster").display().to_string(),
            "-key",
            "rsa1024",
            "-cn",
            NODE,
            "-ip",
            "127.0.0.1",
            "-dns",
            "localhost",
        ],
    );

    let case = |name, serving: &(PathBuf, PathBuf), ca: &Option<PathBuf>, expect| Case {
        name,
        serving: Some(serving.clone()),
        ca: ca.clone(),
        client: client.clone(),
        authorized: true,
        by_name: false,
        expect,
    };
    let unknown = Expect::Refused("x509: certificate signed by unknown authority");
    let expired_now = Expect::Refused("x509: certificate has expired or is not yet valid: current time");
    let usage = Expect::Refused("x509: certificate specifies an incompatible key usage");
    vec![
        case("healthy, dialled by IP", &healthy, &ca, Expect::Accepted),
        Case {
            by_name: true,
            ..case("healthy, dialled by name", &healthy, &ca, Expect::Accepted)
        },
        case(
            "healthy, through an intermediate",
            &via_intermediate,
            &ca,
            Expect::Accepted,
        ),
        case("RSA-1024 serving key", &rsa1024, &ca, Expect::Accepted),
        case("self-signed kubelet.crt", &kubelet_crt, &ca, unknown),
        case("from another CA", &other_ca, &ca, unknown),
        case("intermediate not sent", &intermediate_not_sent, &ca, unknown),
        case(
            "no IP SAN",
            &dns_only,
            &ca,
            Expect::Refused("doesn't contain any IP SANs"),
        ),
        Case {
            by_name: true,
            ..case(
                "wrong DNS name",
                &dns_only,
                &ca,
                Expect::Refused("is valid for node-a, not localhost"),
            )
        },
        Case {
            by_name: true,
            ..case(
                "legacy CN only",
                &legacy_cn,
                &ca,
                Expect::Refused("relies on legacy Common Name field"),
            )
        },
        case("expired leaf", &expired, &ca, expired_now),
        case("not-yet-valid leaf", &future, &ca, expired_now),
        case("expired root", &from_old_root, &old_root_ca, expired_now),
        case("not-yet-valid root", &from_future_root, &future_root_ca, expired_now),
        case("expired intermediate", &via_old_intermediate, &ca, expired_now),
        case("serverAuth missing", &client_eku, &ca, usage),
        case(
            "serverAuth missing and no IP SAN",
            &client_eku_dns_only,
            &ca,
            Expect::Refused("doesn't contain any IP SANs"),
        ),
        case("serverAuth missing and another CA", &client_eku_other_ca, &ca, unknown),
        case("serverAuth missing and expired", &client_eku_expired, &ca, expired_now),
        case(
            "SHA-1 signed leaf",
            &sha1,
            &sha1_ca,
            Expect::Refused("insecure algorithm SHA1-RSA"),
        ),
        case(
            "CA with the cluster CA's name, another key",
            &impostor,
            &ca,
            Expect::Refused("ECDSA verification failure"),
        ),
        case(
            "an intermediate that is no CA",
            &via_not_ca,
            &ca,
            Expect::Refused("parent certificate cannot sign this kind of certificate"),
        ),
        case(
            "path length constraint exceeded",
            &too_deep,
            &ca,
            Expect::Refused("x509: too many intermediates for path length constraint"),
        ),
        case(
            "unhandled critical extension",
            &critical,
            &ca,
            Expect::Refused("x509: unhandled critical extension"),
        ),
        Case {
            serving: None,
            ..case(
                "no serving certificate yet",
                &healthy,
                &ca,
                Expect::Refused("remote error: tls: internal error"),
            )
        },
        case(
            "no CA flag: self-signed kubelet.crt",
            &kubelet_crt,
            &None,
            Expect::Accepted,
        ),
        case("no CA flag: expired leaf", &expired, &None, Expect::Accepted),
        case("no CA flag: SHA-1 signed leaf", &sha1, &None, Expect::Accepted),
        case("no CA flag: RSA-1024 serving key", &rsa1024, &None, Expect::Accepted),
        Case {
            authorized: false,
            ..case(
                "client certificate not authorized",
                &healthy,
                &ca,
                Expect::Refused(
                    "403 Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, subresource(s)=[proxy])",
                ),
            )
        },
        Case {
            client: wrong_client.clone(),
            ..case(
                "client certificate from another CA",
                &healthy,
                &ca,
                Expect::Refused("401 Unauthorized"),
            )
        },
        Case {
            client: expired_client.clone(),
            ..case(
                "expired client certificate",
                &healthy,
                &ca,
                Expect::Refused("401 Unauthorized"),
            )
        },
    ]
}

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
