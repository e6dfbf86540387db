//! Real clients against a running gateway: curl with a client certificate and with a bearer
//! token, `kubectl get --raw`, and Prometheus scraping a node endpoint through the gateway and
//! the gateway's own metrics. A test whose client is not installed says so and passes; `.ci/run`
//! installs them all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::pki::ClientSpec;
use crate::common::upstream::PODS_JSON;
use crate::common::{Harness, Setup, TokenUser, grant_user, installed, plain_get};

const READER: TokenUser = TokenUser {
    token: "reader-secret-token",
    user: "reader",
    uid: "1",
    groups: &["readers"],
};

fn setup() -> Setup {
    Setup {
        tokens: vec![READER],
        rbac: vec![grant_user("reader", &["nodes/pods", "nodes/metrics"], &["get"])],
        ..Setup::default()
    }
}

/// Runs a client off the runtime's thread, so the gateway keeps serving meanwhile.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("client runs"))
        .await
        .expect("join")
}

/// The gateway's self-signed serving certificate and its CA, as a trust bundle.
fn ca_bundle(h: &Harness) -> PathBuf {
    h.path("pki/kubelet.crt")
}

fn curl(h: &Harness, curl: &Path, path: &str) -> Command {
    let mut c = Command::new(curl);
    c.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca_bundle(h))
        .arg(format!("https://127.0.0.1:{}{path}", h.addr.port()));
    c
}

fn split_status(out: &Output) -> (String, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_owned(), code.to_owned())
}

#[tokio::test]
async fn curl_with_a_client_certificate_and_with_a_bearer_token() {
    let Some(bin) = installed("curl") else { return };
    let h = Harness::start(setup()).await;

    let reader = h.client_ca.client(ClientSpec::new("reader"));
    reader.write(&h.path("reader.crt"), &h.path("reader.key"));
    let mut c = curl(&h, &bin, "/pods");
    c.arg("--cert")
        .arg(h.path("reader.crt"))
        .arg("--key")
        .arg(h.path("reader.key"));
    let out = run(c).await;
    assert_eq!(split_status(&out), (PODS_JSON.to_owned(), "200".to_owned()), "{out:?}");

    let mut c = curl(&h, &bin, "/pods");
    c.args(["-H", &format!("Authorization: Bearer {}", READER.token)]);
    let out = run(c).await;
    assert_eq!(split_status(&out), (PODS_JSON.to_owned(), "200".to_owned()), "{out:?}");

    let out = run(curl(&h, &bin, "/pods")).await;
    assert_eq!(split_status(&out).1, "401", "{out:?}");
    assert_eq!(h.upstream.count(), 2);
}

#[tokio::test]
async fn kubectl_get_raw_through_the_gateway() {
    let Some(bin) = installed("kubectl") else { return };
    let h = Harness::start(setup()).await;
    let kubeconfig = h.path("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: node\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\nusers:\n- name: reader\n  user:\n    token: {}\ncontexts:\n- name: node\n  context: {{cluster: node, user: reader}}\ncurrent-context: node\n",
            h.addr.port(),
            ca_bundle(&h).display(),
            READER.token
        ),
    )
    .expect("kubeconfig");
    let mut c = Command::new(bin);
    c.arg("--kubeconfig").arg(&kubeconfig).args(["get", "--raw", "/pods"]);
    c.env("HOME", h.path("")).stdin(Stdio::null());
    let out = run(c).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), PODS_JSON);
}

/// Kills the child (ours, by its handle) when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn prometheus_scrapes_cadvisor_through_the_gateway_and_the_gateway_itself() {
    let Some(bin) = installed("prometheus") else { return };
    let h = Harness::start(setup()).await;
    let web = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr")
    };
    let config = h.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n- job_name: cadvisor\n  scheme: https\n  metrics_path: /metrics/cadvisor\n  authorization: {{credentials: {token}}}\n  tls_config: {{ca_file: {ca}}}\n  static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n- job_name: kubelet-gate\n  static_configs: [{{targets: [\"{ops}\"]}}]\n",
            token = READER.token,
            ca = ca_bundle(&h).display(),
            port = h.addr.port(),
            ops = h.ops_addr,
        ),
    )
    .expect("prometheus.yml");
    let _prometheus = Child(
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", h.path("tsdb").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        if tokio::net::TcpStream::connect(web).await.is_ok() {
            let (_, body) = plain_get(web, "/api/v1/targets").await;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                let targets = v["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
                let up = |job: &str| targets.iter().any(|t| t["labels"]["job"] == job && t["health"] == "up");
                if up("cadvisor") && up("kubelet-gate") {
                    break;
                }
            }
            last = body;
        }
        assert!(Instant::now() < deadline, "targets not up within 20 s: {last}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let scraped = h.upstream.seen();
    assert!(scraped.iter().any(|s| s.path() == "/metrics/cadvisor"));
    assert!(
        scraped.iter().all(|s| s.header("authorization").is_none()),
        "the token never reaches the upstream"
    );
    assert!(
        h.metric(r#"kubelet_gate_requests_total{code="200",subresource="metrics",verb="get"}"#)
            .await
            >= 1.0
    );
}
