//! `follow=true`: lines appended after the request started, a file rotated underneath, a
//! container restart, a file truncated in place (also refilled within one poll), a client going
//! away, and the request exactly as kube-apiserver sends it
//! for `kubectl logs -f --tail=10 --timestamps`. Every wait is bounded; the gateway polls
//! every 10 ms here (every second where two writes must land between two polls).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AS_ADMIN, Tree, append, cri, gateway, gateway_polling, write};
use crate::common::client::{Streaming, build_request};
use crate::common::pki::ClientSpec;
use crate::common::{Harness, Setup};

const WAIT: Duration = Duration::from_secs(10);

fn line(n: u32) -> String {
    cri(
        &format!("2024-05-01T10:00:{n:02}Z"),
        "stdout",
        "F",
        &format!("line {n}"),
    )
}

async fn open(h: &Harness, target: &str) -> Streaming {
    let s = h
        .client()
        .open(h.addr, build_request("GET", target, AS_ADMIN, bytes::Bytes::new()))
        .await
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    assert_eq!(s.status, 200, "{target}");
    s
}

async fn expect(s: &mut Streaming, want: &str) {
    let seen = s.read_until(WAIT, |got| got == want.as_bytes()).await;
    assert!(seen, "want {want:?}, have {:?}", s.text());
}

#[tokio::test]
async fn appended_lines_partials_rotation_and_restart() {
    let tree = Tree::new();
    let dir = tree.container("default", "app-0", "u1", "main");
    let log = dir.join("0.log");
    write(&log, [line(1), line(2), line(3)].concat());
    let h = gateway(&tree, false).await;

    let mut s = open(&h, "/containerLogs/default/app-0/main?follow=true&tailLines=1").await;
    expect(&mut s, "line 3\n").await;

    // Appended after the request started, including a line the runtime wrote in two parts,
    // the second part a moment later.
    append(&log, &line(4));
    append(&log, &cri("2024-05-01T10:00:05Z", "stderr", "P", "part-a "));
    expect(&mut s, "line 3\nline 4\npart-a ").await;
    append(&log, &cri("2024-05-01T10:00:05.5Z", "stderr", "F", "part-b"));
    expect(&mut s, "line 3\nline 4\npart-a part-b\n").await;

    // A record written without its newline yet is not sent until it is complete.
    append(&log, "2024-05-01T10:00:06Z stdout F line 6 is on its");
    let before = s.received.len();
    let early = s.read_until(Duration::from_millis(200), |got| got.len() > before).await;
    assert!(!early, "an unterminated record was sent: {:?}", s.text());
    append(&log, " way\n");
    expect(&mut s, "line 3\nline 4\npart-a part-b\nline 6 is on its way\n").await;

    // Rotation as the kubelet's container log manager does it: a line lands just before the
    // rename, the runtime then reopens the name as a new file.
    append(&log, &line(7));
    std::fs::rename(&log, dir.join("0.log.20240501-100008")).expect("rotate");
    write(&log, line(8));
    append(&log, &line(9));
    expect(
        &mut s,
        "line 3\nline 4\npart-a part-b\nline 6 is on its way\nline 7\nline 8\nline 9\n",
    )
    .await;

    // The container restarts: its file is complete, the stream ends; the new container's
    // lines are not part of it.
    append(&log, &line(10));
    write(&dir.join("1.log"), line(11));
    assert!(s.read_to_end(WAIT).await, "the stream ends after a restart");
    assert_eq!(
        s.text(),
        "line 3\nline 4\npart-a part-b\nline 6 is on its way\nline 7\nline 8\nline 9\nline 10\n"
    );
}

#[tokio::test]
async fn copytruncate_and_a_removed_pod() {
    let tree = Tree::new();
    let dir = tree.container("default", "app-1", "u1", "main");
    let log = dir.join("0.log");
    write(&log, [line(1), line(2)].concat());
    let h = gateway(&tree, false).await;
    let mut s = open(&h, "/containerLogs/default/app-1/main?follow=1").await;
    expect(&mut s, "line 1\nline 2\n").await;
    // Truncated in place, then written again: read from the top.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .expect("truncate");
    append(&log, &line(3));
    expect(&mut s, "line 1\nline 2\nline 3\n").await;
    // The pod is deleted: its directory goes, the stream ends.
    std::fs::remove_dir_all(tree.pods.join("default_app-1_u1")).expect("remove pod");
    assert!(s.read_to_end(WAIT).await, "the stream ends with the pod");
    assert_eq!(s.text(), "line 1\nline 2\nline 3\n");
}

#[tokio::test]
async fn copytruncate_refilled_past_the_old_offset_within_one_poll_is_read_from_the_top() {
    let tree = Tree::new();
    let dir = tree.container("default", "app-5", "u1", "main");
    let log = dir.join("0.log");
    write(&log, [line(1), line(2)].concat());
    // A poll long enough that the file is truncated and refilled between two looks at it.
    let h = gateway_polling(&tree, false, Duration::from_secs(1)).await;
    let mut s = open(&h, "/containerLogs/default/app-5/main?follow=true").await;
    expect(&mut s, "line 1\nline 2\n").await;
    // Truncated and written again, longer than before: its size alone says nothing.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, [line(3), line(4), line(5)].concat().as_bytes()))
        .expect("truncate and refill");
    expect(&mut s, "line 1\nline 2\nline 3\nline 4\nline 5\n").await;
}

#[tokio::test]
async fn previous_with_follow_reads_to_the_end_and_stops() {
    let tree = Tree::new();
    let dir = tree.container("default", "app-2", "u1", "main");
    write(
        &dir.join("0.log"),
        [line(1), "2024-05-01T10:00:02Z stdout F no newline".to_owned()].concat(),
    );
    write(&dir.join("1.log"), line(3));
    let h = gateway(&tree, false).await;
    let mut s = open(&h, "/containerLogs/default/app-2/main?follow=true&previous=true").await;
    assert!(s.read_to_end(WAIT).await);
    // A follower never writes an unterminated last line.
    assert_eq!(s.text(), "line 1\n");
}

/// Descriptors of this process (the gateway runs in it) open on `path`.
fn open_descriptors(path: &Path) -> usize {
    let real = std::fs::canonicalize(path).expect("canonical");
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|p| p == real))
        .count()
}

#[tokio::test]
async fn following_stops_when_the_client_goes_away() {
    let tree = Tree::new();
    let h = gateway(&tree, false).await;
    for (n, alpn) in [&b"h2"[..], b"http/1.1"].into_iter().enumerate() {
        let pod = format!("app-3{n}");
        let log: PathBuf = tree.container("default", &pod, "u1", "main").join("0.log");
        write(&log, line(1));
        let target = format!("/containerLogs/default/{pod}/main?follow=true");
        let mut s = h
            .client()
            .with_alpn(&[alpn])
            .open(h.addr, build_request("GET", &target, AS_ADMIN, bytes::Bytes::new()))
            .await
            .expect("request");
        expect(&mut s, "line 1\n").await;
        assert_eq!(open_descriptors(&log), 1, "the follower holds the file open");
        drop(s);
        let deadline = tokio::time::Instant::now() + WAIT;
        while open_descriptors(&log) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the follower outlived its client ({})",
                String::from_utf8_lossy(alpn)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn the_answer_starts_before_the_first_line() {
    let tree = Tree::new();
    let log = tree.container("default", "quiet-0", "u1", "main").join("0.log");
    write(&log, "");
    let h = gateway(&tree, false).await;
    for alpn in [&b"h2"[..], b"http/1.1"] {
        // As the kubelet flushes its headers before any log line: a client sees 200 at once.
        // (With a trailing slash, which go-restful's router treats as the same route.)
        let target = "/containerLogs/default/quiet-0/main/?follow=true";
        let mut s = h
            .client()
            .with_alpn(&[alpn])
            .with_timeout(Duration::from_secs(5))
            .open(h.addr, build_request("GET", target, AS_ADMIN, bytes::Bytes::new()))
            .await
            .expect("the head arrives with no line written");
        assert_eq!(s.status, 200);
        append(&log, &line(1));
        expect(&mut s, "line 1\n").await;
        drop(s);
        write(&log, "");
    }
}

#[tokio::test]
async fn kube_apiserver_kubectl_logs_follow_tail_timestamps() {
    let tree = Tree::new();
    let dir = tree.container("default", "web-0", "0f9c2a1e", "app");
    let log = dir.join("0.log");
    write(&log, (1..=15).map(line).collect::<String>());
    // kube-apiserver's kubelet client: a client certificate, bound to the built-in
    // system:kubelet-api-admin role as kubeadm does.
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: kube-apiserver-kubelet-api-admin\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: system:kubelet-api-admin\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: kube-apiserver-kubelet-client\n";
    let h = Harness::start(Setup {
        rbac: vec![binding.to_owned()],
        log_dirs: Some((tree.node.clone(), tree.pods.clone())),
        options: kubelet_gate::app::BuildOptions {
            follow_poll: Duration::from_millis(10),
            ..Default::default()
        },
        ..Setup::default()
    })
    .await;
    let leaf = h
        .client_ca
        .client(ClientSpec::new("kube-apiserver-kubelet-client").orgs(&["kubeadm:cluster-admins"]));
    // The request `kubectl logs -f --tail=10 --timestamps web-0` makes kube-apiserver send:
    // url.Values encoded (sorted keys), Go's HTTP/2 transport and its default headers.
    let target = "/containerLogs/default/web-0/app?follow=true&tailLines=10&timestamps=true";
    let request = build_request(
        "GET",
        target,
        &[("user-agent", "Go-http-client/2.0"), ("accept-encoding", "gzip")],
        bytes::Bytes::new(),
    );
    let mut s = h
        .client_with(&leaf)
        .with_alpn(&[b"h2"])
        .open(h.addr, request)
        .await
        .expect("request");
    assert_eq!(s.status, 200);
    assert_eq!(s.version, http::Version::HTTP_2);
    assert_eq!(s.headers.get("content-encoding"), None, "never compressed");
    let last_ten: String = (6..=15)
        .map(|n| format!("2024-05-01T10:00:{n:02}.000000000Z line {n}\n"))
        .collect();
    expect(&mut s, &last_ten).await;
    append(&log, &line(16));
    expect(&mut s, &format!("{last_ten}2024-05-01T10:00:16.000000000Z line 16\n")).await;
    assert!(!s.ended, "still streaming");
}
