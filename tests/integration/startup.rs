//! The command line: configuration errors name the field and line and exit 2, broken
//! certificate files stop the start naming the file, and the quick start runs as the README
//! says.

use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kubelet-gate");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run kubelet-gate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\n{body}"),
    )
    .expect("write");
    path.display().to_string()
}

/// `kubelet-gate serve` on a free port with the configuration `config(port)`, its log in
/// `gateway.log` beside it; returns once the port accepts connections.
async fn serve(
    dir: &std::path::Path,
    config: impl FnOnce(u16) -> String,
) -> (std::process::Child, std::net::SocketAddr) {
    let port = crate::common::free_port();
    let cfg = write_config(dir, &config(port));
    let log = std::fs::File::create(dir.join("gateway.log")).expect("log");
    let child = Command::new(BIN)
        .args(["serve", "--config", &cfg])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::common::until_listening(addr).await;
    (child, addr)
}

const OFFLINE: &str = "authentication:\n  webhook: {enabled: false}\nauthorization:\n  mode: RBAC\n";

#[test]
fn unknown_field_names_the_field_and_line_and_exits_2() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(
        dir.path(),
        "authentication:\n  webhook:\n    enabled: false\n    cachettl: 2m\n",
    );
    let (code, _, err) = run(&["check-config", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cachettl"), "{err}");
    assert!(err.contains(":6"), "line 6 named: {err}");
}

#[test]
fn ill_typed_value_exits_2() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(dir.path(), "port: abc\n");
    let (code, _, err) = run(&["check-config", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("port") && err.contains(":3"), "{err}");
}

/// `upstream.secure` needs its three files; a missing or broken one stops the start naming it
/// (check-config and serve alike), before anything is written.
#[test]
fn a_secure_upstream_with_a_missing_or_broken_file_stops_the_start_naming_it() {
    use crate::common::pki::Ca;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("kubelet-ca");
    ca.write_pem(&dir.path().join("kubelet-ca.crt"));
    let client = ca.client(crate::common::pki::ClientSpec::new("kubelet-gate"));
    client.write(&dir.path().join("gw.crt"), &dir.path().join("gw.key"));
    std::fs::write(dir.path().join("empty.crt"), "").expect("w");
    let secure = |ca: &str, cert: &str| {
        format!(
            "address: 127.0.0.1\nport: 1\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nupstream:\n  readOnly: \"\"\n  secure: {{url: \"https://127.0.0.1:10260\", caFile: {ca}, certFile: {cert}, keyFile: gw.key}}\n{OFFLINE}"
        )
    };
    for (ca, cert, named) in [
        ("missing-ca.crt", "gw.crt", "missing-ca.crt"),
        ("empty.crt", "gw.crt", "empty.crt"),
        ("kubelet-ca.crt", "missing.crt", "missing.crt"),
    ] {
        let cfg = write_config(dir.path(), &secure(ca, cert));
        for command in ["check-config", "serve"] {
            let (code, _, err) = run(&[command, "--config", &cfg]);
            assert_eq!(code, 2, "{command} {named}: {err}");
            assert!(err.contains(named), "{command} names {named}: {err}");
            assert!(!dir.path().join("pki").exists(), "nothing written first");
        }
    }
    let cfg = write_config(dir.path(), &secure("kubelet-ca.crt", "gw.crt"));
    let (code, out, err) = run(&["check-config", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("readOnly: ''") || out.contains("readOnly: \"\""), "{out}");
    assert!(out.contains("streamIdleTimeout: 4h"), "{out}");
}

#[test]
fn webhook_mode_without_a_reachable_client_configuration_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(
        dir.path(),
        "address: 127.0.0.1\nport: 1\nkubeconfig: missing.kubeconfig\n",
    );
    let (code, _, err) = run(&["serve", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.kubeconfig"), "{err}");
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let (code, out, err) = run(&["check-config", "--config", "config/quickstart.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kind: GatewayConfiguration"), "{out}");
    assert!(out.contains("mode: RBAC"), "{out}");
}

#[test]
fn a_missing_or_broken_certificate_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(
        dir.path(),
        &format!("address: 127.0.0.1\nport: 1\ntlsCertFile: missing.crt\ntlsPrivateKeyFile: missing.key\n{OFFLINE}"),
    );
    let (code, _, err) = run(&["serve", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.crt"), "{err}");

    std::fs::write(
        dir.path().join("bad.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .expect("w");
    std::fs::write(dir.path().join("bad.key"), "nothing").expect("w");
    let cfg = write_config(
        dir.path(),
        &format!("address: 127.0.0.1\nport: 1\ntlsCertFile: bad.crt\ntlsPrivateKeyFile: bad.key\n{OFFLINE}"),
    );
    let (code, _, err) = run(&["serve", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.crt"), "{err}");
}

#[tokio::test]
async fn quickstart_serves_and_answers_as_the_readme_says() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let certs = tempfile::tempdir().expect("dir");
    let ops: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            "config/quickstart.yaml",
            "--port",
            &port.to_string(),
        ])
        .args(["--cert-dir", &certs.path().display().to_string()])
        .args(["--ops-address", &ops.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert!(
        crate::common::until_listening(addr).await,
        "the quick start did not listen"
    );
    let crt = std::fs::read(certs.path().join("kubelet.crt")).expect("self-signed certificate");
    use rustls_pki_types::pem::PemObject;
    let ca = rustls_pki_types::CertificateDer::pem_slice_iter(&crt)
        .nth(1)
        .expect("CA")
        .expect("PEM");
    let client = crate::common::client::TlsClient::new(&[ca]);
    let no_credentials = client.get(addr, "/pods", &[]).await;
    let admin = client
        .get(addr, "/healthz", &[("authorization", "Bearer admin-token")])
        .await;
    let viewer = client
        .get(addr, "/pods", &[("authorization", "Bearer metrics-token")])
        .await;
    let unknown = client.get(addr, "/foo", &[]).await;
    let container_log = client
        .get(
            addr,
            "/containerLogs/default/web-0/app?tailLines=3&timestamps=true",
            &[("authorization", "Bearer admin-token")],
        )
        .await;
    let listing = client
        .get(addr, "/logs/", &[("authorization", "Bearer admin-token")])
        .await;
    let no_log_access = client
        .get(addr, "/logs/syslog", &[("authorization", "Bearer metrics-token")])
        .await;
    let bad_token = client
        .get(addr, "/pods", &[("authorization", "Bearer not-a-known-token")])
        .await;
    let healthz = crate::common::plain_get(ops, "/healthz").await;
    let readyz = crate::common::plain_get(ops, "/readyz").await;
    let metrics = crate::common::plain_get(ops, "/metrics").await;
    // SIGTERM, as systemd and the kubelet send it: a clean exit.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let output = child.wait_with_output().expect("exits");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "clean exit on SIGTERM: {log}");
    assert_eq!(bad_token.status, 401);
    for token in ["admin-token", "metrics-token", "not-a-known-token"] {
        assert!(!log.contains(token), "a token in the log: {log}");
    }
    assert!(
        log.contains("no audit log"),
        "the missing audit log is warned about: {log}"
    );
    assert_eq!(healthz, (200, "ok\n".to_owned()));
    assert_eq!(readyz.0, 503, "no kubelet read-only port here: {readyz:?}");
    assert!(readyz.1.contains("[-]upstream failed"), "{readyz:?}");
    assert!(readyz.1.contains("[+]serving-certificate ok"), "{readyz:?}");
    assert!(
        metrics
            .1
            .contains(r#"kubelet_gate_requests_total{code="401",subresource="",verb=""} 2"#),
        "{}",
        metrics.1
    );
    assert_eq!(
        (no_credentials.status.as_u16(), no_credentials.text().as_str()),
        (401, "Unauthorized")
    );
    assert_eq!(
        admin.status,
        502,
        "allowed, and no kubelet on this machine: {}",
        admin.text()
    );
    assert_eq!(
        viewer.text(),
        "Forbidden (user=metrics-reader, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
    );
    assert_eq!(unknown.text(), "404 page not found\n");
    assert_eq!(
        (container_log.status.as_u16(), container_log.text().as_str()),
        (
            200,
            "2024-05-01T10:00:01.250000000Z GET /healthz 200 OK\n2024-05-01T10:00:02.500000000Z warning: cache cold\n"
        )
    );
    assert_eq!(
        listing.text(),
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n\
         <a href=\"pods/\">pods/</a>\n<a href=\"syslog\">syslog</a>\n</pre>\n"
    );
    assert_eq!(
        no_log_access.text(),
        "Forbidden (user=metrics-reader, verb=get, resource=nodes, subresource(s)=[log])\n"
    );
}

#[test]
fn an_audit_log_that_cannot_be_opened_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(
        dir.path(),
        &format!(
            "address: 127.0.0.1\nport: 1\ncertDir: pki\nnodeAddresses: [127.0.0.1]\naudit: {{path: no-such-dir/audit.log}}\n{OFFLINE}"
        ),
    );
    let (code, _, err) = run(&["serve", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("audit.path") && err.contains("no-such-dir/audit.log"),
        "{err}"
    );
}

#[tokio::test]
async fn weak_settings_are_stated_loudly_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "address: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nops: {{address: \"127.0.0.1:0\"}}\nauthentication:\n  webhook: {{enabled: false}}\n  anonymous: {{enabled: true}}\nauthorization:\n  mode: AlwaysAllow\n"
        ),
    );
    let child = Command::new(BIN)
        .args(["serve", "--config", &cfg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    crate::common::until_listening(addr).await;
    // A completed handshake means the accept loop (and with it the SIGTERM handler) runs.
    let _ = crate::common::client::TlsClient::insecure().handshake(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let output = child.wait_with_output().expect("exits");
    let log = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("SECURITY WARNING")).collect();
    assert!(
        warnings.iter().any(|l| l.contains("anonymous access is enabled")),
        "{log}"
    );
    assert!(warnings.iter().any(|l| l.contains("AlwaysAllow")), "{log}");
}

/// A ClusterRole rule with several resources and `resourceNames`, as platform teams write them:
/// today's kube-apiserver accepts it, so every command that reads policy files must too.
#[tokio::test]
async fn a_multi_resource_rule_with_resource_names_loads_everywhere() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("rbac.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: node-a-metrics}\nrules:\n- apiGroups: [\"\"]\n  resources: [nodes/stats, nodes/metrics]\n  resourceNames: [node-a]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: node-a-metrics}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-a-metrics}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: scraper}\n",
    )
    .expect("rbac");
    let cfg = write_config(
        dir.path(),
        "nodeName: node-a\nauthentication:\n  webhook: {enabled: false}\nauthorization:\n  mode: RBAC\n  rbac: {policyFiles: [rbac.yaml]}\n",
    );
    let (code, _, err) = run(&["check-config", "--config", &cfg]);
    assert_eq!(code, 0, "check-config: {err}");
    let (code, out, err) = run(&[
        "explain",
        "--config",
        &cfg,
        "--user",
        "scraper",
        "--output",
        "json",
        "/stats/summary",
    ]);
    assert_eq!(code, 0, "explain: {err}");
    let x: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(x["decision"], "allow", "{out}");
    assert_eq!(x["reviews"][0]["subresource"], "stats", "{out}");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n- {name: stats, user: scraper, path: /stats/summary, expect: allow}\n- {name: metrics, user: scraper, path: /metrics, expect: allow}\n- {name: pods, user: scraper, path: /pods, expect: deny}\n",
    )
    .expect("cases");
    let (code, out, err) = run(&["policy-test", "--config", &cfg, &cases.display().to_string()]);
    assert_eq!(code, 0, "policy-test: {out}{err}");
}

/// A config whose start generates a self-signed certificate (logged), then fails to bind.
fn self_signed_config_on_a_busy_port(dir: &std::path::Path) -> (String, std::net::TcpListener) {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let cfg = write_config(
        dir,
        &format!("address: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\n{OFFLINE}"),
    );
    (cfg, busy)
}

#[test]
fn logs_are_plain_text_unless_on_a_terminal_without_no_color() {
    let dir = tempfile::tempdir().expect("dir");
    let (cfg, _busy) = self_signed_config_on_a_busy_port(dir.path());
    // stderr is a pipe here, as it is a file or journald on a node.
    let (code, _, err) = run(&["serve", "--config", &cfg]);
    assert_eq!(code, 1, "the port is taken: {err}");
    assert!(err.contains("generated a self-signed serving certificate"), "{err}");
    assert!(!err.contains('\u{1b}'), "no escape sequences in a file: {err:?}");

    // On a terminal (script(1) gives the command a pseudo-terminal) colour is on, unless
    // NO_COLOR says otherwise.
    let Some(script) = crate::common::installed("script") else {
        return;
    };
    let on_terminal = |no_color: Option<&str>| {
        std::fs::remove_dir_all(dir.path().join("pki")).expect("rm pki");
        let command = format!("{BIN} serve --config {cfg}");
        let mut c = Command::new(&script);
        c.args(["-qec", &command, "/dev/null"]);
        c.env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c.output().expect("script");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("generated a self-signed serving certificate"), "{text}");
        text.contains('\u{1b}')
    };
    assert!(on_terminal(None), "colour on a terminal");
    assert!(!on_terminal(Some("1")), "NO_COLOR turns it off");
}

#[test]
fn flags_are_validated_as_the_same_values_in_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(
        dir.path(),
        &format!("address: 127.0.0.1\nport: 10250\nnodeAddresses: [127.0.0.1]\n{OFFLINE}"),
    );
    for command in ["check-config", "serve"] {
        let (code, _, err) = run(&[command, "--config", &cfg, "--node-name", "Node_A"]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains("--node-name: nodeName: \"Node_A\" is not a valid node name"),
            "{command}: {err}"
        );
        let (code, _, err) = run(&[command, "--config", &cfg, "--ops-address", "127.0.0.1:10250"]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains("--ops-address: ops.address: 127.0.0.1:10250 conflicts with the gateway's listen address"),
            "{command}: {err}"
        );
        // The conflict is found whichever side the flag is on.
        let (code, _, err) = run(&[command, "--config", &cfg, "--port", "10251"]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains("ops.address: 127.0.0.1:10251 conflicts"),
            "{command}: {err}"
        );
    }
    // A relative --cert-dir is the working directory's, made absolute before anything uses it.
    let cwd = tempfile::tempdir().expect("cwd");
    let out = Command::new(BIN)
        .args(["check-config", "--config", &cfg, "--cert-dir", "rel/pki"])
        .current_dir(cwd.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("certDir: {}", cwd.path().join("rel/pki").display());
    assert!(out.status.success() && text.contains(&want), "{text}");
}

/// `check-config` reads every file `serve` reads, and `serve` reads them all before it writes.
#[test]
fn check_config_refuses_what_serve_refuses_and_serve_writes_nothing_first() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("broken-rbac.yaml"),
        "kind: ClusterRole\nmetadata: {name: r}\nrules: [{verbs: get}]\n",
    )
    .expect("w");
    std::fs::write(dir.path().join("tokens.csv"), "tok,alice,uid-1\n").expect("w");
    std::fs::write(dir.path().join("unreadable.crt"), "x").expect("w");
    std::fs::write(dir.path().join("unreadable.key"), "x").expect("w");
    let base = "address: 127.0.0.1\nport: 1\ncertDir: pki\nnodeAddresses: [127.0.0.1]\n";
    let cases = [
        (
            "authentication:\n  webhook: {enabled: false}\n  tokenFile: missing-tokens.csv\nauthorization:\n  mode: RBAC\n",
            "missing-tokens.csv",
        ),
        (
            "authentication:\n  webhook: {enabled: false}\nauthorization:\n  mode: RBAC\n  rbac: {policyFiles: [missing-rbac.yaml]}\n",
            "missing-rbac.yaml",
        ),
        (
            "authentication:\n  webhook: {enabled: false}\nauthorization:\n  mode: RBAC\n  rbac: {policyFiles: [broken-rbac.yaml]}\n",
            "broken-rbac.yaml",
        ),
        (
            "authentication:\n  webhook: {enabled: false}\n  x509: {clientCAFile: missing-ca.crt}\nauthorization:\n  mode: RBAC\n",
            "missing-ca.crt",
        ),
        (
            "tlsCertFile: unreadable.crt\ntlsPrivateKeyFile: unreadable.key\nauthentication:\n  webhook: {enabled: false}\nauthorization:\n  mode: RBAC\n",
            "unreadable.crt",
        ),
        (
            "audit: {path: no-such-dir/audit.log}\nauthentication:\n  webhook: {enabled: false}\nauthorization:\n  mode: RBAC\n",
            "no-such-dir/audit.log",
        ),
    ];
    for (body, file) in cases {
        let cfg = write_config(dir.path(), &format!("{base}{body}"));
        for command in ["check-config", "serve"] {
            let (code, out, err) = run(&[command, "--config", &cfg]);
            assert_eq!(code, 2, "{command} {file}: {out}{err}");
            assert!(err.contains(file), "{command} names {file}: {err}");
            assert!(
                !dir.path().join("pki").exists(),
                "{command} {file}: nothing written before the inputs are checked"
            );
            assert!(!dir.path().join("no-such-dir").exists());
        }
    }
    // And a configuration whose files are all there passes.
    let cfg = write_config(
        dir.path(),
        &format!(
            "{base}authentication:\n  webhook: {{enabled: false}}\n  tokenFile: tokens.csv\nauthorization:\n  mode: RBAC\n"
        ),
    );
    let (code, _, err) = run(&["check-config", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(!dir.path().join("pki").exists(), "check-config writes nothing");
}

/// A client certificate's CN with a newline and an escape sequence cannot forge a line of the
/// text log or repaint a terminal: the forbidden line holds it escaped.
#[tokio::test]
async fn a_common_name_cannot_forge_a_log_line() {
    use crate::common::pki::{Ca, ClientSpec};
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("clients");
    ca.write_pem(&dir.path().join("ca.crt"));
    let (mut child, addr) = serve(dir.path(), |port| {
        format!(
            "address: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nops: {{address: \"127.0.0.1:0\"}}\nauthentication:\n  x509: {{clientCAFile: ca.crt}}\n  webhook: {{enabled: false}}\nauthorization:\n  mode: RBAC\n"
        )
    })
    .await;
    let evil = "mallory\n2026-12-01T00:00:00.000000Z  INFO kubelet_gate: allowed user=admin\u{1b}[2K";
    let leaf = ca.client(ClientSpec::new(evil));
    let reply = crate::common::client::TlsClient::insecure()
        .with_identity(&leaf)
        .get(addr, "/pods", &[])
        .await;
    assert_eq!(reply.status.as_u16(), 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("gateway.log")).expect("log");
    let forbidden: Vec<&str> = text.lines().filter(|l| l.contains("forbidden")).collect();
    assert_eq!(forbidden.len(), 1, "{text}");
    assert!(
        forbidden[0]
            .contains(r"user=mallory\n2026-12-01T00:00:00.000000Z  INFO kubelet_gate: allowed user=admin\u{1b}[2K"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2026-12-01T00:00:00")),
        "no forged line: {text}"
    );
    assert!(!text.contains('\u{1b}'), "no raw escape: {text:?}");
}

/// logrotate renames the audit file and sends SIGHUP: the gateway keeps serving and the next
/// record goes to a new file at the path.
#[tokio::test]
async fn sighup_reopens_the_audit_log_and_does_not_stop_the_gateway() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, addr) = serve(dir.path(), |port| {
        format!(
            "address: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nops: {{address: \"127.0.0.1:0\"}}\naudit: {{path: audit.log}}\n{OFFLINE}"
        )
    })
    .await;
    let client = crate::common::client::TlsClient::insecure();
    let audit = dir.path().join("audit.log");
    let wait_for = |path: std::path::PathBuf, lines: usize| async move {
        for _ in 0..100 {
            if std::fs::read_to_string(&path).unwrap_or_default().lines().count() >= lines {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never had {lines} lines", path.display());
    };
    assert_eq!(client.get(addr, "/pods", &[]).await.status.as_u16(), 401);
    wait_for(audit.clone(), 1).await;
    std::fs::rename(&audit, dir.path().join("audit.log.1")).expect("rotate");
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(child.try_wait().expect("wait").is_none(), "still running after SIGHUP");
    assert_eq!(client.get(addr, "/healthz", &[]).await.status.as_u16(), 401);
    wait_for(audit.clone(), 1).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("gateway.log")).expect("log");
    assert!(text.contains("SIGHUP: reopening the audit log"), "{text}");
    assert!(std::fs::read_to_string(&audit).expect("new file").contains("/healthz"));
    assert!(
        std::fs::read_to_string(dir.path().join("audit.log.1"))
            .expect("old file")
            .contains("/pods")
    );
}
