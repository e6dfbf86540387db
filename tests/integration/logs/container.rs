//! `/containerLogs/{ns}/{pod}/{container}`: every query parameter of the kubelet's
//! `getContainerLogs` (kubernetes pkg/kubelet/server/server.go),
//! byte for byte, and the kubelet's error bodies.

use std::time::{Duration, SystemTime};

use super::{AS_ADMIN, SECRET, Tree, cri, gateway, rfc3339, write};
use crate::common::Harness;

/// The current container (restart 1) of `default/web-0/app`: stdout and stderr interleaved, a
/// line the runtime split into three partial records, a stderr line split around a stdout one,
/// a timestamp with an offset, and a line that is not a record.
fn app_current() -> String {
    [
        cri("2024-05-01T10:00:00.000000001Z", "stdout", "F", "starting app"),
        cri("2024-05-01T10:00:01.5Z", "stderr", "F", "warning: low disk"),
        cri(
            "2024-05-01T10:00:02Z",
            "stdout",
            "P",
            "a very long line that the runtime ",
        ),
        cri("2024-05-01T10:00:02.1Z", "stdout", "P", "split into three "),
        cri("2024-05-01T10:00:02.2Z", "stdout", "F", "records"),
        "this line is not a CRI record\n".to_owned(),
        cri("2024-05-01T10:00:03+02:00", "stderr", "F", "offset timestamp"),
        cri("2024-05-01T10:00:04.25Z", "stdout", "F", "request 1"),
        cri("2024-05-01T10:00:05Z", "stderr", "P", "err-part-1 "),
        cri("2024-05-01T10:00:05.5Z", "stdout", "F", "interleaved stdout"),
        cri("2024-05-01T10:00:06Z", "stderr", "F", "err-part-2"),
        cri("2024-05-01T10:00:07Z", "stdout", "F", "done"),
    ]
    .concat()
}

/// The whole log as the kubelet writes it without parameters.
const APP: &str = "starting app\n\
warning: low disk\n\
a very long line that the runtime split into three records\n\
offset timestamp\n\
request 1\n\
err-part-1 interleaved stdout\n\
err-part-2\n\
done\n";

const APP_TIMESTAMPS: &str = "2024-05-01T10:00:00.000000001Z starting app\n\
2024-05-01T10:00:01.500000000Z warning: low disk\n\
2024-05-01T10:00:02.000000000Z a very long line that the runtime split into three records\n\
2024-05-01T10:00:03.000000000+02:00 offset timestamp\n\
2024-05-01T10:00:04.250000000Z request 1\n\
2024-05-01T10:00:05.000000000Z err-part-1 interleaved stdout\n\
2024-05-01T10:00:06.000000000Z err-part-2\n\
2024-05-01T10:00:07.000000000Z done\n";

/// Several pods, restarts, rotated files, a recreated pod, an empty container.
fn pods(tree: &Tree) {
    let app = tree.container("default", "web-0", "0f9c2a1e-5b7d-4c1a-9e3f-2d8b6a4c1e70", "app");
    write(&app.join("1.log"), app_current());
    write(
        &app.join("0.log"),
        cri("2024-05-01T09:00:00Z", "stdout", "F", "previous run")
            + &cri("2024-05-01T09:59:59Z", "stderr", "F", "crashed: exit 1"),
    );
    // Rotated files of the current container: the kubelet never reads them.
    write(
        &app.join("1.log.20240501-095959"),
        cri("2024-05-01T09:59:59Z", "stdout", "F", "rotated away"),
    );
    write(&app.join("0.log.20240501-090000.gz"), b"\x1f\x8b\x08\x00garbage");

    let sidecar = tree.container("default", "web-0", "0f9c2a1e-5b7d-4c1a-9e3f-2d8b6a4c1e70", "sidecar");
    let now = SystemTime::now();
    write(
        &sidecar.join("0.log"),
        [
            cri(
                &rfc3339(now - Duration::from_secs(7200)),
                "stdout",
                "F",
                "two hours ago",
            ),
            cri(
                &rfc3339(now - Duration::from_secs(30)),
                "stdout",
                "F",
                "thirty seconds ago",
            ),
            cri(
                &rfc3339(now - Duration::from_secs(5)),
                "stderr",
                "F",
                "five seconds ago",
            ),
        ]
        .concat(),
    );
    tree.container("default", "web-0", "0f9c2a1e-5b7d-4c1a-9e3f-2d8b6a4c1e70", "init");
    write(
        &tree.container("kube-system", "web-0", "7d1e", "app").join("0.log"),
        cri("2024-05-01T10:00:00Z", "stdout", "F", "another namespace"),
    );
    write(&tree.container("default", "empty-0", "e1", "app").join("0.log"), "");

    // A pod recreated under the same name: the newer directory is the pod.
    let old = tree.container("default", "job-1", "old-uid", "main");
    write(
        &old.join("0.log"),
        cri("2024-05-01T08:00:00Z", "stdout", "F", "old pod"),
    );
    let new = tree.container("default", "job-1", "new-uid", "main");
    write(
        &new.join("0.log"),
        cri("2024-05-01T09:00:00Z", "stdout", "F", "new pod"),
    );
    let dir = |uid: &str| tree.pods.join(format!("default_job-1_{uid}"));
    let set = |uid: &str, t: SystemTime| {
        std::fs::File::open(dir(uid))
            .and_then(|f| f.set_modified(t))
            .expect("set directory mtime");
    };
    set("old-uid", SystemTime::now() - Duration::from_secs(3600));
    set("new-uid", SystemTime::now() - Duration::from_secs(60));
}

async fn get(h: &Harness, target: &str) -> (u16, String) {
    let reply = h.client().get(h.addr, target, AS_ADMIN).await;
    (reply.status.as_u16(), reply.text())
}

#[tokio::test]
async fn each_parameter_byte_for_byte() {
    let tree = Tree::new();
    pods(&tree);
    let h = gateway(&tree, false).await;
    let logs = "/containerLogs/default/web-0/app";
    let cases: &[(&str, &str)] = &[
        ("", APP),
        ("?timestamps=true", APP_TIMESTAMPS),
        ("?timestamps=1&follow=false", APP_TIMESTAMPS),
        ("?timestamps=false", APP),
        // The last three lines of the file.
        ("?tailLines=3", "interleaved stdout\nerr-part-2\ndone\n"),
        ("?tail=3", "interleaved stdout\nerr-part-2\ndone\n"),
        ("?tailLines=7&tail=3", "interleaved stdout\nerr-part-2\ndone\n"),
        ("?tail=all&tailLines=3", APP),
        ("?tailLines=0", ""),
        ("?tailLines=4", "err-part-1 interleaved stdout\nerr-part-2\ndone\n"),
        // Lines of the file, not of the output: the tail starts inside the split line, and
        // the non-record line takes a line of the tail without giving one.
        (
            "?tailLines=9&timestamps=true",
            "2024-05-01T10:00:02.100000000Z split into three records\n\
             2024-05-01T10:00:03.000000000+02:00 offset timestamp\n\
             2024-05-01T10:00:04.250000000Z request 1\n\
             2024-05-01T10:00:05.000000000Z err-part-1 interleaved stdout\n\
             2024-05-01T10:00:06.000000000Z err-part-2\n\
             2024-05-01T10:00:07.000000000Z done\n",
        ),
        ("?tailLines=100", APP),
        // Records before sinceTime are skipped, compared as instants (+02:00 is 08:00Z).
        (
            "?sinceTime=2024-05-01T10:00:02Z",
            "a very long line that the runtime split into three records\nrequest 1\n\
             err-part-1 interleaved stdout\nerr-part-2\ndone\n",
        ),
        (
            "?sinceTime=2024-05-01T12:00:02%2B02:00",
            "a very long line that the runtime split into three records\nrequest 1\n\
             err-part-1 interleaved stdout\nerr-part-2\ndone\n",
        ),
        // A skipped partial record still ends "the line" as far as timestamps go: the rest of
        // the split line comes out without a prefix, as from the kubelet.
        (
            "?sinceTime=2024-05-01T10:00:02.05Z&timestamps=true",
            "split into three records\n\
             2024-05-01T10:00:04.250000000Z request 1\n\
             2024-05-01T10:00:05.000000000Z err-part-1 interleaved stdout\n\
             2024-05-01T10:00:06.000000000Z err-part-2\n\
             2024-05-01T10:00:07.000000000Z done\n",
        ),
        ("?sinceTime=2030-01-01T00:00:00Z", ""),
        ("?sinceTime=", APP),
        // limitBytes counts the timestamp prefix and cuts mid-line.
        ("?limitBytes=20", "starting app\nwarning"),
        (
            "?limitBytes=40&timestamps=true",
            "2024-05-01T10:00:00.000000001Z starting ",
        ),
        ("?limitBytes=1000000", APP),
        ("?tailLines=2&limitBytes=5", "err-p"),
        // The previous container is restart 0.
        ("?previous=true", "previous run\ncrashed: exit 1\n"),
        (
            "?previous=true&tailLines=1&timestamps=true",
            "2024-05-01T09:59:59.000000000Z crashed: exit 1\n",
        ),
        ("?stream=All", APP),
        // Unknown parameters are ignored, as by the codec.
        ("?container=other&insecureSkipTLSVerifyBackend=true&foo=bar", APP),
    ];
    for (query, want) in cases {
        let (status, body) = get(&h, &format!("{logs}{query}")).await;
        assert_eq!((status, body.as_str()), (200, *want), "{query}");
    }

    // Another namespace, the recreated pod, an empty log.
    assert_eq!(
        get(&h, "/containerLogs/kube-system/web-0/app").await,
        (200, "another namespace\n".to_owned())
    );
    assert_eq!(
        get(&h, "/containerLogs/default/job-1/main").await,
        (200, "new pod\n".to_owned())
    );
    assert_eq!(
        get(&h, "/containerLogs/default/empty-0/app").await,
        (200, String::new())
    );

    // sinceSeconds, against the clock.
    assert_eq!(
        get(&h, "/containerLogs/default/web-0/sidecar?sinceSeconds=60").await,
        (200, "thirty seconds ago\nfive seconds ago\n".to_owned())
    );
    assert_eq!(
        get(&h, "/containerLogs/default/web-0/sidecar?sinceSeconds=10").await,
        (200, "five seconds ago\n".to_owned())
    );
}

#[tokio::test]
async fn headers_and_streaming_over_http1_and_h2() {
    let tree = Tree::new();
    pods(&tree);
    let h = gateway(&tree, false).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let reply = h
            .client()
            .with_alpn(&[alpn])
            .get(h.addr, "/containerLogs/default/web-0/app", AS_ADMIN)
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), APP);
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(reply.header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(reply.header("content-length"), None, "streamed, no length");
        if alpn == b"http/1.1" {
            assert_eq!(reply.header("transfer-encoding").as_deref(), Some("chunked"));
        }
    }
    assert_eq!(h.upstream.count(), 0, "never forwarded");
}

#[tokio::test]
async fn split_streams_behind_the_feature_gate() {
    let tree = Tree::new();
    pods(&tree);
    let off = gateway(&tree, false).await;
    assert_eq!(
        get(&off, "/containerLogs/default/web-0/app?stream=Stdout").await,
        (
            400,
            "unable to return the given log stream: \"Stdout\". Please enable PodLogsQuerySplitStreams feature gate in kubelet"
                .to_owned()
        )
    );
    let on = gateway(&tree, true).await;
    assert_eq!(
        get(&on, "/containerLogs/default/web-0/app?stream=Stdout").await,
        (
            200,
            "starting app\na very long line that the runtime split into three records\nrequest 1\n\
             interleaved stdout\ndone\n"
                .to_owned()
        )
    );
    assert_eq!(
        get(&on, "/containerLogs/default/web-0/app?stream=Stderr").await,
        (
            200,
            "warning: low disk\noffset timestamp\nerr-part-1 err-part-2\n".to_owned()
        )
    );
    // Bytes of the other stream are not charged to limitBytes.
    assert_eq!(
        get(&on, "/containerLogs/default/web-0/app?stream=Stderr&limitBytes=20").await,
        (200, "warning: low disk\nof".to_owned())
    );
    assert_eq!(
        get(&on, "/containerLogs/default/web-0/app?stream=All").await,
        (200, APP.to_owned())
    );
    for query in ["stream=stdout", "stream=Stdout&tailLines=1", "stream="] {
        assert_eq!(
            get(&on, &format!("/containerLogs/default/web-0/app?{query}")).await,
            (422, r#"{"message": "Invalid request."}"#.to_owned()),
            "{query}"
        );
    }
}

#[tokio::test]
async fn the_kubelets_error_answers() {
    let tree = Tree::new();
    pods(&tree);
    let h = gateway(&tree, false).await;
    let invalid = (422, r#"{"message": "Invalid request."}"#.to_owned());
    let undecodable = (400, r#"{"message": "Unable to decode query."}"#.to_owned());
    let app = "/containerLogs/default/web-0/app";
    for query in [
        "tail=-1",
        "tailLines=-1",
        "limitBytes=0",
        "sinceSeconds=0",
        "sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
        "stream=stdout",
    ] {
        assert_eq!(get(&h, &format!("{app}?{query}")).await, invalid, "{query}");
    }
    for query in [
        "tail=abc",
        "tailLines=",
        "limitBytes=1k",
        "sinceSeconds=1.5",
        "sinceTime=yesterday",
    ] {
        assert_eq!(get(&h, &format!("{app}?{query}")).await, undecodable, "{query}");
    }
    // The query is judged before the pod is looked up.
    assert_eq!(get(&h, "/containerLogs/default/nope/app?tail=-1").await, invalid);
    assert_eq!(
        get(&h, "/containerLogs/default/nope/app").await,
        (404, "pod \"nope\" does not exist".to_owned())
    );
    assert_eq!(
        get(&h, "/containerLogs/other-ns/web-0/app").await,
        (404, "pod \"web-0\" does not exist".to_owned())
    );
    assert_eq!(
        get(&h, "/containerLogs/default/web-0/nope").await,
        (404, "container \"nope\" not found in pod \"web-0\"".to_owned())
    );
    assert_eq!(
        get(&h, "/containerLogs/default/web-0/sidecar?previous=true").await,
        (
            400,
            "previous terminated container \"sidecar\" in pod \"web-0\" not found".to_owned()
        )
    );
    assert_eq!(
        get(&h, "/containerLogs/default/web-0/init").await,
        (400, "container \"init\" in pod \"web-0\" is not available".to_owned())
    );
    // go-restful's answers for other shapes and methods, after authorization: a POST is
    // reviewed as `create` first, which `get` does not grant.
    assert_eq!(
        get(&h, "/containerLogs/default/web-0").await,
        (404, "404: Page Not Found".to_owned())
    );
    let reply = h
        .client()
        .request(h.addr, "POST", "/containerLogs/default/web-0/app", AS_ADMIN)
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text()),
        (
            403,
            "Forbidden (user=admin, verb=create, resource=nodes, subresource(s)=[proxy])\n".to_owned()
        )
    );
}

#[tokio::test]
async fn authorized_as_nodes_proxy() {
    let tree = Tree::new();
    pods(&tree);
    let h = gateway(&tree, false).await;
    let c = h.client();
    let reply = c
        .get(
            h.addr,
            "/containerLogs/default/web-0/app",
            &[("authorization", "Bearer log-token")],
        )
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.text()),
        (
            403,
            "Forbidden (user=log-reader, verb=get, resource=nodes, subresource(s)=[proxy])\n".to_owned()
        )
    );
    let reply = c
        .get(
            h.addr,
            "/containerLogs/default/web-0/app",
            &[("authorization", "Bearer proxy-token")],
        )
        .await;
    assert_eq!((reply.status.as_u16(), reply.text()), (200, APP.to_owned()));
    let reply = c.get(h.addr, "/containerLogs/default/web-0/app", &[]).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn names_and_links_never_lead_outside_the_pod_log_directory() {
    let tree = Tree::new();
    pods(&tree);
    // A container whose log is a link to a file outside podLogDir (what a hostPath pod could
    // plant), and one whose directory is such a link.
    let evil = tree.container("default", "evil", "u1", "app");
    std::os::unix::fs::symlink(&tree.secret, evil.join("0.log")).expect("symlink");
    let pod = tree.pods.join("default_evil_u1");
    std::os::unix::fs::symlink(tree.dir.path(), pod.join("escape")).expect("symlink");
    let h = gateway(&tree, false).await;
    let (status, body) = get(&h, "/containerLogs/default/evil/app").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "failed to open log file for container \"app\" in pod \"evil\"")
    );
    assert_eq!(
        get(&h, "/containerLogs/default/evil/escape").await,
        (404, "container \"escape\" not found in pod \"evil\"".to_owned())
    );
    // Encoded forms are refused before anything else.
    for target in [
        "/containerLogs/default/web-0/%2e%2e",
        "/containerLogs/default/web-0/..%2f..%2fsecret",
        "/containerLogs/default/%2E%2E/app",
    ] {
        assert_eq!(get(&h, target).await.0, 400, "{target}");
    }
    // Direct calls, without the gateway's path gate in front.
    let logs = &h.pipeline.logs;
    for path in [
        "/containerLogs/default/web-0/..",
        "/containerLogs/default/web-0/.",
        "/containerLogs/default/web-0/%2e%2e",
        "/containerLogs/default/web-0/app%2f..%2f..%2f..%2fsecret",
        "/containerLogs/default/web-0/app%00",
        "/containerLogs/../../..",
    ] {
        let r = logs.container_logs(path, None).await;
        let status = r.status();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains(SECRET), "{path}");
    }
}

/// A large CRI log is parsed and streamed whole and intact, with partial records joined.
#[tokio::test]
async fn a_large_container_log_streams_intact() {
    use std::io::Write;
    let tree = Tree::new();
    let dir = tree.container("default", "big-0", "u1", "app");
    let mut want = super::Fnv::new();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("0.log")).expect("create"));
    let mut size = 0u64;
    let mut i = 0u64;
    while size < 16 << 20 {
        let text = format!("{i:012} request served in {}ms by worker {}", i % 1000, i % 7);
        let record = if i.is_multiple_of(5) {
            // Split in two partial records, as the runtime does for long lines.
            let (a, b) = text.split_at(10);
            cri("2024-05-01T10:00:00.123456789Z", "stdout", "P", a)
                + &cri("2024-05-01T10:00:00.123456790Z", "stdout", "F", b)
        } else {
            cri(
                "2024-05-01T10:00:01Z",
                if i.is_multiple_of(2) { "stdout" } else { "stderr" },
                "F",
                &text,
            )
        };
        want.update(text.as_bytes());
        want.update(b"\n");
        f.write_all(record.as_bytes()).expect("write");
        size += record.len() as u64;
        i += 1;
    }
    f.flush().expect("flush");
    drop(f);
    let h = gateway(&tree, false).await;
    let started = std::time::Instant::now();
    let mut s = h
        .client()
        .open(
            h.addr,
            crate::common::client::build_request(
                "GET",
                "/containerLogs/default/big-0/app",
                AS_ADMIN,
                bytes::Bytes::new(),
            ),
        )
        .await
        .expect("request");
    assert_eq!(s.status, 200);
    let mut got = super::Fnv::new();
    assert!(s.for_each_chunk(Duration::from_secs(120), |c| got.update(c)).await);
    assert_eq!(got, want);
    eprintln!("{size} bytes of CRI log in {:?}", started.elapsed());
}
