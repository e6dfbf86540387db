//! The deployment examples (`examples/deploy/`) as an operator uses them: the files they name
//! pass `check-config` on a stand-in node, and the gateway started on `gateway.yaml`, with the
//! node-local CA that `node-local-ca.sh` makes, serves an exec through the kubelet's own port
//! (a stand-in that trusts only that CA, as `kubelet-config.yaml` configures the kubelet).

use crate::common::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::secure::{head_header, read_head};
use crate::common::apiserver::{ApiServerStandIn, ReviewUser};
use crate::common::client::TlsClient;
use crate::common::kubelet_port::{GATEWAY_CN, KubeletPortStandIn};
use crate::common::pki::{Ca, Leaf, certificates_in};
use crate::common::{installed, plain_get};

const BIN: &str = env!("CARGO_BIN_EXE_kubelet-gate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run kubelet-gate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/examples/deploy/{name}")).expect(name)
}

/// A node's files, made under `root`: the cluster CA, the kubelet's kubeconfig (the gateway
/// borrows it; here it points at nothing), and the node-local CA's files (rcgen-made: the
/// script has its own test below). Returns the example's YAML with its paths under `root`, and
/// the cluster CA.
fn on_a_stand_in_node(yaml: &str, root: &Path) -> (String, Ca) {
    let ca = Ca::new("kubernetes");
    for dir in [
        "etc/kubernetes/pki",
        "etc/kubelet-gate/pki",
        "var/lib/kubelet-gate/pki",
        "var/log/kubelet-gate",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    ca.write_pem(&root.join("etc/kubernetes/pki/ca.crt"));
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca.cert_pem());
    std::fs::write(
        root.join("etc/kubernetes/kubelet.conf"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"https://127.0.0.1:1\", certificate-authority-data: {b64}}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .expect("kubeconfig");
    let local = Ca::new("kubelet-gate node-local CA");
    let pki = root.join("etc/kubelet-gate/pki");
    local.write_pem(&pki.join("ca.crt"));
    let client = local.client(crate::common::pki::ClientSpec::new(GATEWAY_CN));
    client.write(&pki.join("gateway-client.crt"), &pki.join("gateway-client.key"));
    let r = root.display();
    let yaml = yaml
        .replace("/etc/kubernetes/", &format!("{r}/etc/kubernetes/"))
        .replace("/etc/kubelet-gate/", &format!("{r}/etc/kubelet-gate/"))
        .replace("/var/lib/kubelet-gate/", &format!("{r}/var/lib/kubelet-gate/"))
        .replace("/var/log/kubelet-gate/", &format!("{r}/var/log/kubelet-gate/"));
    (yaml, ca)
}

/// The gateway's configuration inside the DaemonSet's ConfigMap.
fn embedded_in_the_daemonset() -> String {
    let daemonset = example("daemonset.yaml");
    let (_, rest) = daemonset.split_once("config.yaml: |\n").expect("ConfigMap");
    rest.lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect()
}

#[test]
fn the_deployment_examples_pass_check_config() {
    let node = tempfile::tempdir().expect("node root");
    let (gateway, _) = on_a_stand_in_node(&example("gateway.yaml"), node.path());
    let path = node.path().join("gateway.yaml");
    std::fs::write(&path, gateway).expect("write");
    let config = path.display().to_string();
    // As the systemd unit runs it: the node's address from NODE_IP.
    let (code, out, err) = run(&["check-config", "--config", &config, "--address", "10.0.0.5"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/var/log/kubelet-gate/audit.log"), "{out}");
    assert!(out.contains("readOnly: ''") || out.contains("readOnly: \"\""), "{out}");
    // Without --address the gateway would listen on 0.0.0.0:10250, over the kubelet's
    // 127.0.0.1:10250: refused, naming the field and the fix.
    let (code, _, err) = run(&["check-config", "--config", &config]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("address: the listen address 0.0.0.0:10250 takes upstream.secure.url's 127.0.0.1:10250"),
        "{err}"
    );

    // The DaemonSet's ConfigMap holds the same file, but for the audit going to standard output.
    let without_audit_path = |yaml: &str| -> Vec<String> {
        let from = yaml.find("apiVersion:").expect("apiVersion");
        yaml[from..]
            .lines()
            .filter(|l| !l.trim_start().starts_with("path:"))
            .map(str::to_owned)
            .collect()
    };
    let raw = embedded_in_the_daemonset();
    assert_eq!(
        without_audit_path(&raw),
        without_audit_path(&example("gateway.yaml")),
        "the ConfigMap is gateway.yaml"
    );
    assert!(raw.contains("  path: \"-\""), "{raw}");
    let (embedded, _) = on_a_stand_in_node(&raw, node.path());
    let path = node.path().join("config.yaml");
    std::fs::write(&path, embedded).expect("write");
    let (code, _, err) = run(&[
        "check-config",
        "--config",
        &path.display().to_string(),
        "--address",
        "10.0.0.5",
        "--node-name",
        "node-a",
    ]);
    assert_eq!(code, 0, "{err}");

    // Without the node's files, check-config names one and exits 2.
    let (code, _, err) = run(&[
        "check-config",
        "--config",
        &format!("{ROOT}/examples/deploy/gateway.yaml"),
        "--address",
        "10.0.0.5",
    ]);
    if !Path::new("/etc/kubernetes/kubelet.conf").exists() {
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("/etc/"), "{err}");
    }
}

/// Runs `node-local-ca.sh DIR` as an operator would.
fn node_local_ca(dir: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(format!("{ROOT}/examples/deploy/node-local-ca.sh"))
        .arg(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run node-local-ca.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "node-local-ca.sh: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn node_local_ca_sh_makes_the_ca_once_and_renews_only_what_is_due() {
    if installed("openssl").is_none() {
        return;
    }
    let root = tempfile::tempdir().expect("root");
    let pki = root.path().join("pki");
    let first = node_local_ca(&pki, &[]);
    assert!(first.contains("made the node-local CA"), "{first}");
    assert!(
        first.contains("issued") && first.contains("gateway-client.crt"),
        "{first}"
    );
    // The CA's key is beside the directory that the DaemonSet mounts, not in it.
    assert!(root.path().join("node-local-ca.key").is_file());
    let mut names: Vec<String> = std::fs::read_dir(&pki)
        .expect("pki")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca.crt",
            "gateway-client.crt",
            "gateway-client.key",
            "kubelet-loopback.crt",
            "kubelet-loopback.key"
        ]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(pki.join("gateway-client.key")), 0o600);
    assert_eq!(mode(root.path().join("node-local-ca.key")), 0o600);
    assert_eq!(mode(pki.join("ca.crt")), 0o644);

    // A second run has nothing to do; a run inside the renewal window issues both leaves
    // again under the same CA.
    let ca = std::fs::read(pki.join("ca.crt")).expect("ca");
    let client = std::fs::read(pki.join("gateway-client.crt")).expect("client");
    assert_eq!(node_local_ca(&pki, &[]), "");
    assert_eq!(std::fs::read(pki.join("gateway-client.crt")).expect("client"), client);
    let renewed = node_local_ca(&pki, &[("RENEW_DAYS", "400")]);
    assert_eq!(renewed.matches("issued").count(), 2, "{renewed}");
    assert_eq!(std::fs::read(pki.join("ca.crt")).expect("ca"), ca);
    assert_ne!(std::fs::read(pki.join("gateway-client.crt")).expect("client"), client);
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubelet-gate serve` on `gateway.yaml`'s secure settings, with the node-local CA from the
/// script, in front of a kubelet that trusts only that CA: ready, with the kubelet's port
/// checked, and an exec spliced through it as the gateway's identity.
#[tokio::test]
async fn the_deployment_example_serves_exec_through_the_kubelets_own_port() {
    if installed("openssl").is_none() {
        return;
    }
    let node = tempfile::tempdir().expect("node root");
    let (yaml, cluster_ca) = on_a_stand_in_node(&example("gateway.yaml"), node.path());
    let pki = node.path().join("etc/kubelet-gate/pki");
    std::fs::remove_dir_all(&pki).expect("rm");
    node_local_ca(&pki, &[]);

    // The kubelet as kubelet-config.yaml configures it: the loopback pair, clientCAFile the
    // node-local CA alone.
    let local_ca = certificates_in(&pki.join("ca.crt")).remove(0);
    let kubelet = KubeletPortStandIn::start_with(
        Leaf::from_pem_files(&pki.join("kubelet-loopback.crt"), &pki.join("kubelet-loopback.key")),
        local_ca,
    )
    .await;
    // The API server behind the kubelet's kubeconfig.
    let api = ApiServerStandIn::start().await;
    api.add_token("operator-token", ReviewUser::new("operator"));
    api.allow("operator", "create", "proxy");
    let kubeconfig = api.write_kubeconfig(node.path());
    std::fs::copy(&kubeconfig, node.path().join("etc/kubernetes/kubelet.conf")).expect("kubeconfig");

    // The stand-in listens on another loopback port than 10250; the serving certificate comes
    // from files here (the CSR flow has its own tests).
    let serving = cluster_ca.server(&["node-a"], &["127.0.0.1".parse().expect("ip")]);
    let gateway_pki = node.path().join("var/lib/kubelet-gate/pki");
    serving.write(&gateway_pki.join("serving.crt"), &gateway_pki.join("serving.key"));
    assert!(yaml.contains("url: https://127.0.0.1:10250\n"), "{yaml}");
    let yaml = yaml
        .replace("url: https://127.0.0.1:10250\n", &format!("url: {}\n", kubelet.url()))
        .replace(
            "serverTLSBootstrap: true\n",
            &format!(
                "tlsCertFile: {0}/serving.crt\ntlsPrivateKeyFile: {0}/serving.key\n",
                gateway_pki.display()
            ),
        );
    let config = node.path().join("gateway.yaml");
    std::fs::write(&config, yaml).expect("write");
    let (port, ops) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["serve", "--config", &config.display().to_string()])
        .args(["--node-name", "node-a", "--address", "127.0.0.1"])
        .args([
            "--port",
            &port.to_string(),
            "--ops-address",
            &format!("127.0.0.1:{ops}"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(node.path().join("gateway.log")).expect("log"))
        .spawn()
        .expect("spawn");
    let _serving = Serving(child);
    let log = || std::fs::read_to_string(node.path().join("gateway.log")).unwrap_or_default();

    let ops: std::net::SocketAddr = format!("127.0.0.1:{ops}").parse().expect("addr");
    let started = Instant::now();
    let body = loop {
        if tokio::net::TcpStream::connect(ops).await.is_ok() {
            let (status, body) = plain_get(ops, "/readyz?verbose").await;
            if status == 200 {
                break body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not ready: {status} {body}\n{}",
                log()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not listening:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("[+]kubelet-port ok"), "{body}");
    assert!(!body.contains("[+]upstream"), "no read-only port: {body}");

    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let client = TlsClient::new(&[cluster_ca.cert_der()]).server_name("node-a");
    let mut tls = client.tls_h1(addr).await;
    tls.write_all(
        b"POST /exec/default/web/app?command=sh&stdin=1&stdout=1 HTTP/1.1\r\nHost: node-a:10250\r\n\
          Authorization: Bearer operator-token\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
          X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
    )
    .await
    .expect("write");
    let (head, _) = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(head_header(&head, "upgrade"), Some("SPDY/3.1"), "{head}");
    assert_eq!(super::secure::echo(&mut tls, b"id\n").await, b"id\n");

    let seen = kubelet.seen().pop().expect("the kubelet saw the exec");
    assert_eq!(seen.target, "/exec/default/web/app?command=sh&stdin=1&stdout=1");
    assert_eq!(
        seen.client_cn.as_deref(),
        Some(GATEWAY_CN),
        "the script's client certificate"
    );
    assert_eq!(seen.header("authorization"), None);
    let sars = api.sars();
    assert_eq!(sars.len(), 1);
    assert_eq!(sars[0].resource_attr("verb"), Some("create"));
    assert_eq!(sars[0].resource_attr("subresource"), Some("proxy"));
}
