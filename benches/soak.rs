//! Faults and soak: the release gateway, its own process with an audit log, in webhook mode
//! against the API server and read-only port stand-ins, through the faults a node sees.
//!
//!     cargo bench --bench soak       (SOAK_TOKENS=1000000, SOAK_OUTAGE_SECS=60 by default)
//!
//! Not a test and not in CI: it runs for minutes and its figures depend on the machine. Each
//! phase prints what it sent, what came back (every status counted), what the gateway did, and
//! a verdict against the goal issue 14 sets; the table at the end is the README's. Nothing is
//! hidden: a connection error, an unexpected status or a slow answer is counted and fails the
//! phase's verdict, and the process exits 1 when any phase failed.

// The test stand-ins and client, shared with tests/integration.rs.
#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::free_port;
use common::write_atomically;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::apiserver::{ApiServerStandIn, ReviewUser};
use common::client::TlsClient;
use common::pki::{Ca, ClientSpec, Leaf};
use common::upstream::ReadOnlyStandIn;

const WARM: usize = 50;
const RATE: u64 = 200;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

struct Gateway {
    child: Child,
    addr: SocketAddr,
    ops: SocketAddr,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// `/proc/<pid>/status` field, MiB.
    fn memory(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
            / 1024.0
    }

    async fn metric(&self, series: &str) -> f64 {
        common::sample(&common::plain_get(self.ops, "/metrics").await.1, series)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn serving_leaf(ca: &Ca) -> Leaf {
    ca.server(&["localhost"], &["127.0.0.1".parse().expect("ip")])
}

async fn start_gateway(dir: &Path, api: &ApiServerStandIn, upstream: &ReadOnlyStandIn) -> Gateway {
    let (port, ops) = (free_port(), free_port());
    let kubeconfig = api.write_kubeconfig(dir);
    let config = format!(
        "apiVersion: kubelet-gate/v1alpha1\nkind: GatewayConfiguration\nnodeName: node-a\naddress: 127.0.0.1\nport: {port}\n\
         tlsCertFile: serving.crt\ntlsPrivateKeyFile: serving.key\nnodeAddresses: [127.0.0.1]\nkubeconfig: {}\n\
         apiServer: {{requestTimeout: {}s, maxInFlight: 64, staleIfError: 0s}}\n\
         ops: {{address: \"127.0.0.1:{ops}\"}}\naudit: {{path: audit.log}}\n\
         limits: {{tokenReviewsPerSecond: 0, tokenReviewsPerSecondPerPeer: 0}}\n\
         authentication:\n  x509: {{clientCAFile: client-ca.crt}}\n  webhook: {{enabled: true, cacheTTL: 2m}}\n  anonymous: {{enabled: false}}\n\
         authorization:\n  mode: Webhook\n  webhook: {{cacheAuthorizedTTL: 5m, cacheUnauthorizedTTL: 30s}}\n\
         upstream:\n  readOnly: {}\n",
        kubeconfig.display(),
        REQUEST_TIMEOUT.as_secs(),
        upstream.url()
    );
    std::fs::write(dir.join("config.yaml"), config).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_kubelet-gate"))
        .args(["serve", "--config", &dir.join("config.yaml").display().to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("gateway.log")).expect("log file"))
        .spawn()
        .expect("spawn the gateway");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let ops: SocketAddr = format!("127.0.0.1:{ops}").parse().expect("addr");
    let started = Instant::now();
    while !(tokio::net::TcpStream::connect(ops).await.is_ok() && common::plain_get(ops, "/readyz").await.0 == 200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Gateway {
        child,
        addr,
        ops,
        dir: dir.to_path_buf(),
    }
}

/// What came back, by status (0: no answer: a connection or protocol error), and the slowest.
#[derive(Default, Clone)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    slowest: Duration,
}

impl Tally {
    fn add(&mut self, status: u16, took: Duration) {
        *self.statuses.entry(status).or_default() += 1;
        self.slowest = self.slowest.max(took);
    }

    fn merge(&mut self, other: &Tally) {
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.slowest = self.slowest.max(other.slowest);
    }

    fn total(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn only(&self, allowed: &[u16]) -> bool {
        self.statuses.keys().all(|s| allowed.contains(s))
    }

    fn show(&self) -> String {
        let parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| {
                if *s == 0 {
                    format!("{n} errors")
                } else {
                    format!("{n}×{s}")
                }
            })
            .collect();
        format!("{} (slowest {} ms)", parts.join(", "), self.slowest.as_millis())
    }
}

/// Paced GETs of `/pods` over kept HTTP/1.1 connections, one warm token per worker; each answer
/// is counted under the epoch current when its request was sent.
struct Load {
    stop: Arc<AtomicBool>,
    epoch: Arc<AtomicUsize>,
    tallies: Arc<Mutex<Vec<Tally>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &TlsClient, addr: SocketAddr, rate: u64, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicUsize::new(0));
        let tallies = Arc::new(Mutex::new(vec![Tally::default(); 8]));
        let interval = Duration::from_secs_f64(workers as f64 / rate as f64);
        let tasks = (0..workers)
            .map(|w| {
                let (client, stop, epoch, tallies) = (client.clone(), stop.clone(), epoch.clone(), tallies.clone());
                tokio::spawn(async move {
                    let header = format!("Bearer warm-{}", w % WARM);
                    let mut conn = None;
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let e = epoch.load(Ordering::Relaxed);
                        let sent = Instant::now();
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => conn.insert(client.keep_alive(addr).await),
                        };
                        let headers = [("authorization", header.as_str())];
                        let status =
                            match tokio::time::timeout(Duration::from_secs(10), c.try_get("/pods", &headers)).await {
                                Ok(Ok(r)) => r.status.as_u16(),
                                _ => 0,
                            };
                        if status == 0 || conn.as_ref().is_some_and(|c| c.is_closed()) {
                            conn = None;
                        }
                        let mut t = tallies.lock().unwrap_or_else(|p| p.into_inner());
                        t[e.min(7)].add(status, sent.elapsed());
                    }
                })
            })
            .collect();
        Load {
            stop,
            epoch,
            tallies,
            tasks,
        }
    }

    fn next_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    async fn finish(self) -> Vec<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let t = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        t.clone()
    }
}

struct Row {
    phase: &'static str,
    load: String,
    outcome: String,
    ok: bool,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One request on a fresh TLS connection, its status (0: no answer) and time.
async fn once(client: &TlsClient, addr: SocketAddr, token: Option<&str>) -> (u16, Duration) {
    let started = Instant::now();
    let header = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", h.as_str())).collect();
    let req = common::client::build_request("GET", "/pods", &headers, bytes::Bytes::new());
    let status = match client.send(addr, req).await {
        Ok(r) => r.status.as_u16(),
        Err(_) => 0,
    };
    (status, started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let outage = Duration::from_secs(env_u64("SOAK_OUTAGE_SECS", 60));
    let tokens = env_u64("SOAK_TOKENS", 1_000_000);
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let serving_ca = Ca::new("soak-serving-ca");
    serving_leaf(&serving_ca).write(&d.join("serving.crt"), &d.join("serving.key"));
    let client_ca = Ca::new("soak-client-ca");
    client_ca.write_pem(&d.join("client-ca.crt"));
    let api = ApiServerStandIn::start().await;
    for i in 0..WARM {
        api.add_token(&format!("warm-{i}"), ReviewUser::new(&format!("warm-{i}")));
    }
    for i in 0..20 {
        api.add_token(&format!("cold-{i}"), ReviewUser::new(&format!("cold-{i}")));
    }
    api.allow("*", "*", "*");
    let upstream = ReadOnlyStandIn::start().await;
    let mut gw = start_gateway(d, &api, &upstream).await;
    let client = TlsClient::new(&[serving_ca.cert_der()]).with_alpn(&[b"http/1.1"]);
    let mut rows = Vec::new();
    let mut sent_total = 0u64;

    // 1. The API server down for `outage` with warm caches; cold identities during it.
    for i in 0..WARM {
        let (status, _) = once(&client, gw.addr, Some(&format!("warm-{i}"))).await;
        assert_eq!(status, 200, "warming warm-{i}");
    }
    sent_total += WARM as u64;
    let reviews_before = (api.tokenreview_count(), api.sar_count());
    let load = Load::start(&client, gw.addr, RATE, 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.stop().await;
    load.next_epoch();
    let down_at = Instant::now();
    let mut cold = Tally::default();
    let cold_cert = client
        .clone()
        .with_identity(&client_ca.client(ClientSpec::new("cold-cert")));
    while down_at.elapsed() < outage {
        tokio::time::sleep(outage / 10).await;
        let i = cold.total() as usize;
        let (s, t) = once(&client, gw.addr, Some(&format!("cold-{}", i % 20))).await;
        cold.add(s, t);
        let (s, t) = once(&cold_cert, gw.addr, None).await;
        cold.add(s, t);
    }
    api.restart().await;
    load.next_epoch();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = load.finish().await;
    let during = &t[1];
    let mut all = Tally::default();
    t.iter().for_each(|x| all.merge(x));
    sent_total += all.total() + cold.total();
    rows.push(Row {
        phase: "API server down, warm caches",
        load: format!("{RATE} req/s, {} s outage, {} requests", outage.as_secs(), all.total()),
        outcome: format!(
            "during the outage {}; reviews sent then: {}",
            during.show(),
            (api.tokenreview_count() + api.sar_count()) - (reviews_before.0 + reviews_before.1)
        ),
        ok: all.only(&[200]) && during.total() > 0,
    });
    rows.push(Row {
        phase: "cold identities during the outage",
        load: format!("{} fresh connections (token, certificate)", cold.total()),
        outcome: cold.show(),
        ok: !cold.statuses.keys().any(|s| (200..300).contains(s) || *s == 0)
            && cold.slowest <= REQUEST_TIMEOUT + Duration::from_millis(500),
    });
    api.clear();

    // 2. The read-only port restarting under load.
    let load = Load::start(&client, gw.addr, RATE, 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.next_epoch();
    upstream.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    upstream.restart().await;
    load.next_epoch();
    // Allow one pooled-connection retry round to settle, then judge the rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.next_epoch();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t = load.finish().await;
    sent_total += t.iter().map(Tally::total).sum::<u64>();
    rows.push(Row {
        phase: "read-only port restarted",
        load: format!("{RATE} req/s, port down 5 s"),
        outcome: format!(
            "before {}; down {}; after restart {}",
            t[0].show(),
            t[1].show(),
            t[3].show()
        ),
        ok: t[0].only(&[200]) && t[1].only(&[200, 502]) && t[1].count(502) > 0 && t[3].only(&[200]) && t[3].total() > 0,
    });
    upstream.clear();

    // 3. The serving certificate and the client CA rotated under load: a fresh handshake per
    // request, with a client certificate.
    let old_leaf = client_ca.client(ClientSpec::new("warm-cert"));
    let new_ca = Ca::new("soak-client-ca-2");
    let new_leaf = new_ca.client(ClientSpec::new("warm-cert-2"));
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(Mutex::new(Tally::default()));
    let spawn_handshakes = |leaf: &Leaf| {
        let (c, stop, tally, addr) = (
            client.clone().with_identity(leaf),
            stop.clone(),
            handshakes.clone(),
            gw.addr,
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (s, t) = once(&c, addr, None).await;
                tally.lock().unwrap_or_else(|p| p.into_inner()).add(s, t);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let old_task = spawn_handshakes(&old_leaf);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = client.peer_chain(gw.addr).await;
    let rotated = serving_leaf(&serving_ca);
    let (crt, key) = (d.join("serving.crt"), d.join("serving.key"));
    // Written beside, then renamed into place: key first, then certificate (the reloader
    // keeps the old pair until the two match).
    rotated.write(&d.join("rotated.crt"), &d.join("rotated.key"));
    std::fs::rename(d.join("rotated.key"), &key).expect("rename key");
    std::fs::rename(d.join("rotated.crt"), &crt).expect("rename certificate");
    write_atomically(
        &d.join("client-ca.crt"),
        format!("{}{}", client_ca.cert_pem(), new_ca.cert_pem()).as_bytes(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_task = spawn_handshakes(&new_leaf);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = (old_task.await, new_task.await);
    let after = client.peer_chain(gw.addr).await;
    let h = handshakes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    sent_total += h.total();
    let presented_new = before.first() != after.first() && after.first() == Some(rotated.der());
    rows.push(Row {
        phase: "serving certificate and client CA rotated",
        load: format!("{} handshakes, one request each", h.total()),
        outcome: format!("{}; new serving certificate presented: {presented_new}", h.show()),
        ok: h.only(&[200]) && presented_new,
    });

    // 4. Distinct bearer tokens against the webhook caches: RSS stays bounded. The TokenReview
    // budget (limits.tokenReviewsPerSecond*) is off in this configuration, so that every token
    // reaches the cache; with it on, all but 20 a second would be 429.
    let rss_before = gw.memory("VmRSS:");
    let next = Arc::new(AtomicU64::new(0));
    let flood = Arc::new(Mutex::new(Tally::default()));
    let peak = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (c, next, flood, addr) = (client.clone(), next.clone(), flood.clone(), gw.addr);
            tokio::spawn(async move {
                let mut conn = c.keep_alive(addr).await;
                let mut local = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tokens {
                        break;
                    }
                    let header = format!("Bearer flood-{i:08}");
                    let sent = Instant::now();
                    let status = match conn.try_get("/pods", &[("authorization", &header)]).await {
                        Ok(r) => r.status.as_u16(),
                        Err(_) => 0,
                    };
                    local.add(status, sent.elapsed());
                    if status == 0 || conn.is_closed() {
                        conn = c.keep_alive(addr).await;
                    }
                }
                flood.lock().unwrap_or_else(|p| p.into_inner()).merge(&local);
            })
        })
        .collect();
    let mut last_report = 0;
    while next.load(Ordering::Relaxed) < tokens {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = gw.memory("VmRSS:");
        peak.fetch_max((rss * 1024.0) as u64, Ordering::Relaxed);
        api.clear();
        let done = next.load(Ordering::Relaxed);
        if done / 100_000 > last_report {
            last_report = done / 100_000;
            eprintln!("  {done} tokens, gateway RSS {rss:.1} MiB");
        }
    }
    for w in workers {
        let _ = w.await;
    }
    let took = started.elapsed();
    let f = flood.lock().unwrap_or_else(|p| p.into_inner()).clone();
    sent_total += f.total();
    let (rss_after, hwm) = (gw.memory("VmRSS:"), gw.memory("VmHWM:"));
    let peak_rss = (peak.load(Ordering::Relaxed) as f64 / 1024.0).max(rss_after);
    rows.push(Row {
        phase: "distinct bearer tokens",
        load: format!(
            "{tokens} tokens, 32 connections, {:.0} req/s",
            tokens as f64 / took.as_secs_f64()
        ),
        outcome: format!(
            "{}; RSS {rss_before:.1} MiB before, {peak_rss:.1} MiB peak while flooding, {rss_after:.1} after (VmHWM {hwm:.1})",
            f.show()
        ),
        ok: f.only(&[401]) && f.total() == tokens && peak_rss < rss_before + 128.0,
    });

    // 5. 2000 silent connections (TLS done, nothing sent) from 8 source addresses, under the
    // per-peer cap; legitimate requests keep answering.
    let silent_started = Instant::now();
    let mut silent = Vec::new();
    let insecure = TlsClient::insecure().with_alpn(&[b"http/1.1"]);
    for i in 0..2000 {
        let source = format!("127.0.0.{}", 2 + i % 8);
        let tcp = common::client::tcp_from(&source, gw.addr).await;
        silent.push(insecure.tls_over(tcp).await);
    }
    let opened_in = silent_started.elapsed();
    let mut legit = Tally::default();
    for i in 0..50 {
        let (s, t) = once(&client, gw.addr, Some(&format!("warm-{}", i % WARM))).await;
        legit.add(s, t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent_total += legit.total();
    let open = gw.metric("kubelet_gate_connections_open").await;
    drop(silent);
    rows.push(Row {
        phase: "2000 silent connections",
        load: format!(
            "2000 TLS connections from 8 addresses in {:.1} s, then 50 requests",
            opened_in.as_secs_f64()
        ),
        outcome: format!("{}; connections held: {open}", legit.show()),
        ok: legit.only(&[200]) && legit.slowest < Duration::from_millis(100),
    });

    // Nothing lost: every answer has its audit record, none dropped, the process still up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dropped = gw.metric("kubelet_gate_audit_records_dropped_total").await;
    let audited = std::fs::read(gw.dir.join("audit.log"))
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .unwrap_or(0);
    let alive = gw.alive();
    rows.push(Row {
        phase: "nothing lost",
        load: format!("{sent_total} requests sent in all"),
        outcome: format!("{audited} audit records, {dropped} dropped; gateway running: {alive}"),
        ok: dropped == 0.0 && audited >= sent_total && alive,
    });

    println!("\n| Phase | Load | Outcome | Goal met |\n|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.phase,
            r.load,
            r.outcome,
            if r.ok { "yes" } else { "NO" }
        );
    }
    if rows.iter().any(|r| !r.ok) {
        eprintln!("kept for a look: {} (gateway.log, audit.log)", gw.dir.display());
        drop(gw);
        let _ = dir.keep();
        std::process::exit(1);
    }
}
