//! Logs served natively, end to end through the TLS gateway: log trees built on disk in a temp
//! directory, every answer checked byte for byte against what the kubelet sends
//! (the sources are cited in src/logs/).

mod container;
mod follow;
mod node;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubelet_gate::app::BuildOptions;

use crate::common::{Harness, Setup, TokenUser, grant_user};

/// `get` on `nodes/proxy` and `nodes/log`.
pub const ADMIN: TokenUser = TokenUser {
    token: "admin-token",
    user: "admin",
    uid: "1",
    groups: &[],
};
/// `get nodes/log` only.
pub const LOG_READER: TokenUser = TokenUser {
    token: "log-token",
    user: "log-reader",
    uid: "2",
    groups: &[],
};
/// `get nodes/proxy` only.
pub const PROXY_READER: TokenUser = TokenUser {
    token: "proxy-token",
    user: "proxy-reader",
    uid: "3",
    groups: &[],
};

pub const AS_ADMIN: &[(&str, &str)] = &[("authorization", "Bearer admin-token")];

/// A node log directory and a pod log directory, with a file outside both.
pub struct Tree {
    pub dir: tempfile::TempDir,
    pub node: PathBuf,
    pub pods: PathBuf,
    /// Outside both directories: never served.
    pub secret: PathBuf,
}

pub const SECRET: &str = "TOP-SECRET-CONTENT";

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = dir.path().join("var-log");
        let pods = node.join("pods");
        std::fs::create_dir_all(&pods).expect("mkdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, SECRET).expect("write");
        Tree {
            dir,
            node,
            pods,
            secret,
        }
    }

    /// `<pods>/<ns>_<pod>_<uid>/<container>/`, created.
    pub fn container(&self, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
        let dir = self.pods.join(format!("{ns}_{pod}_{uid}")).join(container);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}

/// One CRI record line.
pub fn cri(ts: &str, stream: &str, tag: &str, content: &str) -> String {
    format!("{ts} {stream} {tag} {content}\n")
}

pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn append(path: &Path, content: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open for append");
    f.write_all(content.as_bytes()).expect("append");
}

/// RFC 3339 with nanoseconds in UTC, as containerd writes it.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).expect("after 1970");
    let (days, secs) = ((d.as_secs() / 86_400) as i64, d.as_secs() % 86_400);
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        d.subsec_nanos()
    )
}

/// The gateway over `tree`, with the three users above and a fast follow poll.
pub async fn gateway(tree: &Tree, split_streams: bool) -> Harness {
    gateway_polling(tree, split_streams, Duration::from_millis(10)).await
}

/// [`gateway`] with this follow poll.
pub async fn gateway_polling(tree: &Tree, split_streams: bool, follow_poll: Duration) -> Harness {
    Harness::start(Setup {
        tokens: vec![ADMIN, LOG_READER, PROXY_READER],
        rbac: vec![
            grant_user("admin", &["nodes/proxy", "nodes/log"], &["get"]),
            grant_user("log-reader", &["nodes/log"], &["get"]),
            grant_user("proxy-reader", &["nodes/proxy"], &["get"]),
        ],
        log_dirs: Some((tree.node.clone(), tree.pods.clone())),
        split_streams,
        options: BuildOptions {
            follow_poll,
            ..BuildOptions::default()
        },
        ..Setup::default()
    })
    .await
}

#[test]
fn rfc3339_helper() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::new(1_714_557_600, 5)),
        "2024-05-01T10:00:00.000000005Z"
    );
}

/// FNV-1a over a byte stream, whatever the chunking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
