//! The kubelet's own port behind the gateway (`upstream.secure`): exec, attach and port-forward
//! upgraded and spliced only after authorization and the kubelet's `101`, the private endpoints
//! forwarded, the caller's credentials never crossing, the gateway's client certificate and its
//! rotation, and the failures (an untrusted kubelet, a refused upgrade, an idle stream).

mod endpoints;
mod streams;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use crate::common::kubelet_port::KubeletPortStandIn;
use crate::common::{Harness, Setup, TokenUser, grant_user};

/// `create` on nodes/proxy: what `kubectl exec` through the API server needs.
const OPERATOR: TokenUser = TokenUser {
    token: "operator-token",
    user: "operator",
    uid: "u1",
    groups: &[],
};
/// Only `get` on nodes/proxy: enough to open exec on a real kubelet, never here.
const VIEWER: TokenUser = TokenUser {
    token: "viewer-token",
    user: "viewer",
    uid: "u2",
    groups: &[],
};

pub(super) struct Rig {
    pub h: Harness,
    pub kubelet: KubeletPortStandIn,
    pub dir: tempfile::TempDir,
}

/// The gateway in front of the stand-in's port, the read-only port kept unless `configure`
/// says otherwise.
pub(super) async fn rig(configure: impl FnOnce(&mut Setup)) -> Rig {
    let kubelet = KubeletPortStandIn::start().await;
    let dir = tempfile::tempdir().expect("dir");
    // A CA that signed nothing here, for a `caFile` that does not trust the kubelet.
    crate::common::pki::Ca::new("another-ca").write_pem(&dir.path().join("other-ca.crt"));
    let mut setup = Setup {
        tokens: vec![OPERATOR, VIEWER],
        rbac: vec![
            grant_user(
                OPERATOR.user,
                &["nodes/proxy", "nodes/pods", "nodes/checkpoint"],
                &["*"],
            ),
            grant_user(VIEWER.user, &["nodes/proxy"], &["get"]),
        ],
        upstream_yaml: kubelet.write_files(dir.path()),
        ..Setup::default()
    };
    configure(&mut setup);
    let h = Harness::start(setup).await;
    Rig { h, kubelet, dir }
}

pub(super) fn bearer(t: &TokenUser) -> String {
    format!("Bearer {}", t.token)
}

/// Sends an upgrade request by hand and reads the answer's head; returns the connection (for
/// the stream), the head, and whatever came after it.
pub(super) async fn upgrade(
    h: &Harness,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (TlsStream<tokio::net::TcpStream>, String, Vec<u8>) {
    let mut tls = h.client().tls_h1(h.addr).await;
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: node-a:10250\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let (head, rest) = read_head(&mut tls).await;
    (tls, head, rest)
}

pub(super) async fn read_head(tls: &mut TlsStream<tokio::net::TcpStream>) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return (head, buf[end + 4..].to_vec());
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before a head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A header's value in a raw head, by case-insensitive name.
pub(super) fn head_header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The SPDY exec upgrade kubectl sends (through the API server, which forwards it).
pub(super) fn spdy(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Authorization", format!("Bearer {token}")),
        ("Connection", "Upgrade".into()),
        ("Upgrade", "SPDY/3.1".into()),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io".into()),
        ("X-Stream-Protocol-Version", "v3.channel.k8s.io".into()),
    ]
}

pub(super) fn borrowed<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Writes `bytes` and reads the same number back.
pub(super) async fn echo(tls: &mut TlsStream<tokio::net::TcpStream>, bytes: &[u8]) -> Vec<u8> {
    tls.write_all(bytes).await.expect("write");
    let mut back = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut back))
        .await
        .expect("echoed in time")
        .expect("read");
    back
}
