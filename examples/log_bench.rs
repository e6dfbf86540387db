//! Measures the native log endpoints on a 1 GiB container log, through the real gateway
//! binary over TLS, with curl as the client:
//!
//!     cargo build --release && cargo run --release --example log_bench -- target/release/kubelet-gate
//!
//! It writes a 1 GiB CRI log (one in five lines split into two partial records) under a
//! temporary pod log directory, starts `kubelet-gate serve` on a free loopback port with a
//! token and RBAC policy of its own, then fetches the file raw through `/logs/` and parsed
//! through `/containerLogs/` (with and without timestamps, and a `tailLines=10`), printing
//! curl's size, time and throughput for each and the gateway's peak resident memory (VmHWM
//! from /proc) after each. Arguments: the binary (default `target/release/kubelet-gate`),
//! then the size in MiB (default 1024).

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let binary = args.next().unwrap_or_else(|| "target/release/kubelet-gate".to_owned());
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let root = dir.path();

    let container = root.join("log/pods/default_bench-0_5f1e/app");
    std::fs::create_dir_all(&container)?;
    let log = container.join("0.log");
    let started = Instant::now();
    let (size, lines) = write_log(&log, mib << 20)?;
    println!(
        "wrote {} ({size} bytes, {lines} records) in {:.1?}",
        log.display(),
        started.elapsed()
    );

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let ops = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    std::fs::write(root.join("tokens.csv"), "bench-token,bench,uid-bench,\"\"\n")?;
    std::fs::write(
        root.join("rbac.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: logs\nrules:\n- apiGroups: [\"\"]\n  resources: [\"nodes/proxy\", \"nodes/log\"]\n  verbs: [\"get\"]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: logs\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: logs}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bench}\n",
    )?;
    let config = root.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: bench-node\naddress: 127.0.0.1\nport: {port}\ncertDir: pki\nnodeAddresses: [127.0.0.1]\nauthentication:\n  x509: {{clientCAFile: \"\"}}\n  webhook: {{enabled: false}}\n  tokenFile: tokens.csv\nauthorization:\n  mode: RBAC\n  rbac: {{policyFiles: [rbac.yaml]}}\nupstream:\n  readOnly: http://127.0.0.1:9\nlogs:\n  nodeLogDir: log\n  podLogDir: log/pods\nops:\n  address: 127.0.0.1:{ops}\n"
        ),
    )?;
    let gateway = Gateway(
        Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_for_port(port)?;
    let pid = gateway.0.id();
    println!("gateway pid {pid}: VmHWM after start {} kB", vm_hwm(pid)?);

    let base = format!("https://127.0.0.1:{port}");
    let runs = [
        (
            "raw file, /logs/, HTTP/1.1",
            "/logs/pods/default_bench-0_5f1e/app/0.log",
            "--http1.1",
        ),
        (
            "raw file, /logs/, HTTP/2",
            "/logs/pods/default_bench-0_5f1e/app/0.log",
            "--http2",
        ),
        (
            "CRI parsed, /containerLogs/, HTTP/1.1",
            "/containerLogs/default/bench-0/app",
            "--http1.1",
        ),
        (
            "CRI parsed, /containerLogs/, HTTP/2",
            "/containerLogs/default/bench-0/app",
            "--http2",
        ),
        (
            "CRI parsed + timestamps, HTTP/1.1",
            "/containerLogs/default/bench-0/app?timestamps=true",
            "--http1.1",
        ),
        (
            "tailLines=10 of 1 GiB, HTTP/1.1",
            "/containerLogs/default/bench-0/app?tailLines=10",
            "--http1.1",
        ),
    ];
    for (name, path, version) in runs {
        let out = Command::new("curl")
            .args([
                "-sk",
                version,
                "-o",
                "/dev/null",
                "-H",
                "Authorization: Bearer bench-token",
            ])
            .args(["-w", "%{http_code} %{size_download} %{time_total} %{speed_download}"])
            .arg(format!("{base}{path}"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [code, bytes, secs, speed] = fields.as_slice() else {
            return Err(format!("curl said {text:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        };
        let speed: f64 = speed.parse()?;
        println!(
            "{name}: HTTP {code}, {bytes} bytes in {secs} s = {:.0} MB/s ({:.0} MiB/s); gateway VmHWM now {} kB",
            speed / 1e6,
            speed / f64::from(1 << 20),
            vm_hwm(pid)?
        );
    }
    drop(gateway);
    Ok(())
}

/// Kills the gateway however `main` ends.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CRI log of about `target` bytes; returns its size and record count.
fn write_log(path: &Path, target: u64) -> std::io::Result<(u64, u64)> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let (mut size, mut i) = (0u64, 0u64);
    let mut line = String::with_capacity(256);
    while size < target {
        line.clear();
        let ts = format!(
            "2024-05-01T10:{:02}:{:02}.{:09}Z",
            i / 60_000_000 % 60,
            i / 1_000_000 % 60,
            i % 1_000_000_000
        );
        let text = format!(
            "{i:012} GET /api/v1/items/{} 200 served in {}ms by worker {}",
            i % 100_000,
            i % 1000,
            i % 7
        );
        if i.is_multiple_of(5) {
            let (a, b) = text.split_at(20);
            line.push_str(&format!("{ts} stdout P {a}\n{ts} stdout F {b}\n"));
        } else {
            let stream = if i.is_multiple_of(2) { "stdout" } else { "stderr" };
            line.push_str(&format!("{ts} {stream} F {text}\n"));
        }
        f.write_all(line.as_bytes())?;
        size += line.len() as u64;
        i += 1;
    }
    f.flush()?;
    // On disk before anything is measured: no writeback competing with the reads.
    f.get_ref().sync_all()?;
    Ok((size, i))
}

fn wait_for_port(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("the gateway did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Peak resident set size of `pid`, in kB.
fn vm_hwm(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/<pid>/status")?;
    Ok(line.split_whitespace().nth(1).ok_or("malformed VmHWM")?.parse()?)
}
