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

#[test]
fn features_not_in_this_version_are_refused_not_ignored() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = write_config(
        dir.path(),
        &format!("upstream: {{secure: {{url: \"https://127.0.0.1:10250\"}}}}\n{OFFLINE}"),
    );
    let (code, _, err) = run(&["check-config", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("upstream.secure.url"), "{err}");
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
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the quick start did not listen");
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
fn the_deployment_examples_pass_check_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, out, err) = run(&[
        "check-config",
        "--config",
        &format!("{root}/examples/deploy/gateway.yaml"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/var/log/kubelet-gate/audit.log"), "{out}");

    // The DaemonSet's ConfigMap holds the same kind of file.
    let daemonset = std::fs::read_to_string(format!("{root}/examples/deploy/daemonset.yaml")).expect("daemonset");
    let (_, rest) = daemonset.split_once("config.yaml: |\n").expect("ConfigMap");
    let embedded: String = rest
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, embedded).expect("write");
    let (code, _, err) = run(&["check-config", "--config", &path.display().to_string()]);
    assert_eq!(code, 0, "{err}");
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
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
