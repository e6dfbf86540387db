//! The splice's cost, side by side in one run: a 1 GiB port-forward stream read straight from the
//! kubelet's-port stand-in and the same stream through the gateway (the release binary, its own
//! process), and the gateway's memory with 200 exec streams open through it.
//!
//!     cargo bench --bench streams            (BENCH_GIB=4 for a longer stream)
//!
//! Not a test: nothing here fails on a figure. The throughputs are printed with their ratio,
//! which is what carries from one machine to another; the stand-in, the client and the gateway
//! share this machine's cores, so the gateway's figure includes its two TLS legs competing with
//! both ends.

// The test stand-ins and client, shared with tests/integration.rs (which uses all of them).
#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::free_port;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use common::client::TlsClient;
use common::kubelet_port::{KubeletPortStandIn, StreamMode};

const TOKEN: &str = "bench-token";
const STREAMS: usize = 200;
const RUNS: usize = 3;

struct Gateway {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// `/proc/<pid>/status` fields, in KiB.
    fn memory(&self, field: &str) -> u64 {
        common::process_memory_kib(self.child.id(), field)
    }
}

/// The release gateway in front of `kubelet` only (no read-only port), a static token allowed
/// `create` on nodes/proxy, a self-signed serving certificate, no audit log.
async fn gateway(kubelet: &KubeletPortStandIn) -> Gateway {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::write(d.join("tokens.csv"), format!("{TOKEN},bench,u1,\n")).expect("tokens");
    std::fs::write(
        d.join("rbac.yaml"),
        common::grant_user("bench", &["nodes/proxy"], &["*"]),
    )
    .expect("rbac");
    let (port, ops) = (free_port(), free_port());
    let config = format!(
        "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: node-a\naddress: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nops: {{address: \"127.0.0.1:{ops}\"}}\nauthentication:\n  webhook: {{enabled: false}}\n  tokenFile: tokens.csv\nauthorization:\n  mode: RBAC\n  rbac: {{policyFiles: [rbac.yaml]}}\nupstream:\n  readOnly: \"\"\n{}",
        kubelet.write_files(d)
    );
    std::fs::write(d.join("config.yaml"), config).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
        .args(["serve", "--config", &d.join("config.yaml").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the gateway");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let ready: SocketAddr = format!("127.0.0.1:{ops}").parse().expect("addr");
    let started = Instant::now();
    loop {
        if TcpStream::connect(ready).await.is_ok() && common::plain_get(ready, "/readyz").await.0 == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Gateway { child, addr, _dir: dir }
}

/// Sends a SPDY upgrade for `target` and reads the answer's head; returns the stream and the
/// bytes read past the head.
async fn upgrade(client: &TlsClient, addr: SocketAddr, target: &str) -> (TlsStream<TcpStream>, Vec<u8>) {
    let mut tls = client.tls_h1(addr).await;
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: node-a:10250\r\nAuthorization: Bearer {TOKEN}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            return (tls, buf[end + 4..].to_vec());
        }
        let n = tls.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before a head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one whole port-forward stream; returns its throughput in MiB/s.
async fn port_forward(client: &TlsClient, addr: SocketAddr, bytes: u64) -> f64 {
    let started = Instant::now();
    let (mut tls, rest) = upgrade(client, addr, "/portForward/default/web").await;
    let mut total = rest.len() as u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match tls.read(&mut buf).await.expect("read") {
            0 => break,
            n => total += n as u64,
        }
    }
    assert_eq!(total, bytes, "the whole stream");
    bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let gib: u64 = std::env::var("BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let bytes = gib << 30;
    let kubelet = KubeletPortStandIn::start().await;
    let gateway = gateway(&kubelet).await;
    let direct = TlsClient::new(&[kubelet.pki().serving_ca.cert_der()]).with_identity(&kubelet.pki().gateway);
    let through = TlsClient::insecure();

    kubelet.set_stream_mode(StreamMode::Send { bytes, seed: 7 });
    let (mut straight, mut gated) = (Vec::new(), Vec::new());
    // Alternating runs, so that a busy moment of the machine falls on both sides.
    for _ in 0..RUNS {
        straight.push(port_forward(&direct, kubelet.addr(), bytes).await);
        gated.push(port_forward(&through, gateway.addr, bytes).await);
    }
    let (straight, gated) = (median(straight), median(gated));
    println!("port-forward, {gib} GiB from the kubelet's side, median of {RUNS}:");
    println!("  direct to the stand-in          {straight:>8.0} MiB/s");
    println!("  through the gateway             {gated:>8.0} MiB/s");
    println!("  gateway / direct                {:>8.2}", gated / straight);

    kubelet.set_stream_mode(StreamMode::Echo);
    let idle = gateway.memory("VmRSS:");
    let mut open = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        let (mut tls, _) = upgrade(
            &through,
            gateway.addr,
            &format!("/exec/default/web-{i}/app?command=sh&input=1&output=1"),
        )
        .await;
        // A round trip on each, so every stream's buffers have carried data.
        let line = format!("echo {i}\n");
        tls.write_all(line.as_bytes()).await.expect("write");
        let mut back = vec![0u8; line.len()];
        tls.read_exact(&mut back).await.expect("echo");
        open.push(tls);
    }
    let (rss, peak) = (gateway.memory("VmRSS:"), gateway.memory("VmHWM:"));
    println!("gateway memory, {STREAMS} exec streams open (each with one round trip done):");
    println!("  RSS before the streams          {:>8.1} MiB", idle as f64 / 1024.0);
    println!("  RSS with the streams open       {:>8.1} MiB", rss as f64 / 1024.0);
    println!("  peak RSS (VmHWM), whole run     {:>8.1} MiB", peak as f64 / 1024.0);
    println!(
        "  per open stream                 {:>8.1} KiB",
        (rss.saturating_sub(idle)) as f64 / STREAMS as f64
    );
    drop(open);
}
