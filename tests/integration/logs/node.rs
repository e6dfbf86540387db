//! `/logs/`: Go's file server over the node log directory (listings, redirects, ranges,
//! conditional requests), authorized as `nodes/log`, and never a byte from outside it.

use std::os::unix::fs::symlink;
use std::time::{Duration, UNIX_EPOCH};

use http::HeaderMap;
use http_body_util::BodyExt;

use super::{AS_ADMIN, SECRET, Tree, gateway, write};
use crate::common::Harness;
use crate::common::client::Reply;

const SYSLOG: &str = "May  1 10:00:00 node-a kernel: booting\nMay  1 10:00:01 node-a kubelet[42]: started\n";
/// 2024-05-01T10:00:00Z.
const MTIME: u64 = 1_714_557_600;
const MTIME_HTTP: &str = "Wed, 01 May 2024 10:00:00 GMT";

fn node_tree(tree: &Tree) {
    let n = &tree.node;
    write(&n.join("syslog"), SYSLOG);
    std::fs::File::options()
        .write(true)
        .open(n.join("syslog"))
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME)))
        .expect("mtime");
    write(&n.join("kubelet.log"), "I0501 kubelet\n");
    write(&n.join("a b.log"), "spaces\n");
    write(&n.join("<x>&'.log"), "markup\n");
    write(&n.join("c:d.log"), "colon\n");
    write(&n.join("empty.log"), "");
    std::fs::create_dir_all(n.join("journal/sub")).expect("mkdir");
    write(&n.join("journal/system.journal"), b"LPKSHHRH\x00\x00\x00\x01binary");
    symlink("syslog", n.join("link-in")).expect("symlink");
    symlink(&tree.secret, n.join("link-out")).expect("symlink");
    symlink(tree.dir.path(), n.join("dir-out")).expect("symlink");
    let fifo = n.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let sock = std::os::unix::net::UnixListener::bind(n.join("sock")).expect("bind");
    // The socket file stays after the listener is dropped.
    drop(sock);
}

async fn get(h: &Harness, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = AS_ADMIN.to_vec();
    all.extend_from_slice(headers);
    h.client().get(h.addr, target, &all).await
}

fn header(r: &Reply, name: &str) -> Option<String> {
    r.header(name)
}

#[tokio::test]
async fn listings_and_redirects_as_gos_file_server() {
    let tree = Tree::new();
    node_tree(&tree);
    let h = gateway(&tree, false).await;
    let r = get(&h, "/logs/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some("text/html; charset=utf-8"));
    assert!(header(&r, "last-modified").is_some());
    assert_eq!(
        r.text(),
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n\
         <a href=\"%3Cx%3E&%27.log\">&lt;x&gt;&amp;&#39;.log</a>\n\
         <a href=\"a%20b.log\">a b.log</a>\n\
         <a href=\"./c:d.log\">c:d.log</a>\n\
         <a href=\"dir-out\">dir-out</a>\n\
         <a href=\"empty.log\">empty.log</a>\n\
         <a href=\"fifo\">fifo</a>\n\
         <a href=\"journal/\">journal/</a>\n\
         <a href=\"kubelet.log\">kubelet.log</a>\n\
         <a href=\"link-in\">link-in</a>\n\
         <a href=\"link-out\">link-out</a>\n\
         <a href=\"pods/\">pods/</a>\n\
         <a href=\"sock\">sock</a>\n\
         <a href=\"syslog\">syslog</a>\n\
         </pre>\n"
    );
    let r = get(&h, "/logs/journal/", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            200,
            "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n\
             <a href=\"sub/\">sub/</a>\n<a href=\"system.journal\">system.journal</a>\n</pre>\n"
                .to_owned()
        )
    );
    // A directory without its slash, a file with one: relative redirects, query kept.
    for (target, location) in [
        ("/logs/journal", "journal/"),
        ("/logs/journal?x=1", "journal/?x=1"),
        ("/logs/journal/sub", "sub/"),
        ("/logs/syslog/", "../syslog"),
    ] {
        let r = get(&h, target, &[]).await;
        assert_eq!(r.status, 301, "{target}");
        assert_eq!(header(&r, "location").as_deref(), Some(location), "{target}");
        assert_eq!(r.body.len(), 0, "{target}");
    }
    // A listing is conditional on its directory's modification time.
    let last = header(&get(&h, "/logs/journal/", &[]).await, "last-modified").expect("last-modified");
    let r = get(&h, "/logs/journal/", &[("if-modified-since", &last)]).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (304, 0));
}

#[tokio::test]
async fn files_ranges_and_conditional_requests() {
    let tree = Tree::new();
    node_tree(&tree);
    let h = gateway(&tree, false).await;
    let size = SYSLOG.len();

    let r = get(&h, "/logs/syslog", &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, SYSLOG));
    assert_eq!(header(&r, "content-type").as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(header(&r, "accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(header(&r, "content-length"), Some(size.to_string()));
    assert_eq!(header(&r, "last-modified").as_deref(), Some(MTIME_HTTP));

    // Query parameters (NodeLogQuery's, with the gate off as by default) are ignored.
    let r = get(
        &h,
        "/logs/syslog?query=kubelet&pattern=.*&boot=-1&tailLines=1&sinceTime=x",
        &[],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, SYSLOG));

    for (range, start, end) in [
        ("bytes=0-4", 0, 4),
        ("bytes=-8", size - 8, size - 1),
        ("bytes=40-", 40, size - 1),
        ("bytes=70-9999", 70, size - 1),
    ] {
        let r = get(&h, "/logs/syslog", &[("range", range)]).await;
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.text(), SYSLOG[start..=end], "{range}");
        assert_eq!(
            header(&r, "content-range"),
            Some(format!("bytes {start}-{end}/{size}")),
            "{range}"
        );
        assert_eq!(
            header(&r, "content-length"),
            Some((end - start + 1).to_string()),
            "{range}"
        );
    }
    // Several ranges: the whole file (documented difference: Go sends multipart/byteranges).
    let r = get(&h, "/logs/syslog", &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, SYSLOG));
    let r = get(&h, "/logs/syslog", &[("range", "bytes=1000-")]).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (416, "invalid range: failed to overlap\n")
    );
    assert_eq!(header(&r, "content-range"), Some(format!("bytes */{size}")));
    let r = get(&h, "/logs/syslog", &[("range", "bytes=x-y")]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (416, "invalid range\n"));
    let r = get(&h, "/logs/empty.log", &[("range", "bytes=10-")]).await;
    assert_eq!(
        (r.status.as_u16(), r.body.len()),
        (200, 0),
        "an empty file ignores the range"
    );

    // Conditional requests against the modification time.
    let r = get(&h, "/logs/syslog", &[("if-modified-since", MTIME_HTTP)]).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (304, 0));
    assert_eq!(header(&r, "last-modified").as_deref(), Some(MTIME_HTTP));
    let r = get(
        &h,
        "/logs/syslog",
        &[("if-modified-since", "Tue, 30 Apr 2024 10:00:00 GMT")],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = get(
        &h,
        "/logs/syslog",
        &[("if-unmodified-since", "Tue, 30 Apr 2024 10:00:00 GMT")],
    )
    .await;
    assert_eq!(r.status, 412);
    let r = get(&h, "/logs/syslog", &[("range", "bytes=0-2"), ("if-range", MTIME_HTTP)]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (206, "May"));
    let r = get(
        &h,
        "/logs/syslog",
        &[("range", "bytes=0-2"), ("if-range", "Tue, 30 Apr 2024 10:00:00 GMT")],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, SYSLOG));

    // Names that need escaping, links inside, content types.
    for (target, body) in [
        ("/logs/a%20b.log", "spaces\n"),
        ("/logs/%3Cx%3E&'.log", "markup\n"),
        ("/logs/c:d.log", "colon\n"),
        ("/logs/link-in", SYSLOG),
    ] {
        let r = get(&h, target, &[]).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, body), "{target}");
    }
    let r = get(&h, "/logs/journal/system.journal", &[]).await;
    assert_eq!(header(&r, "content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(r.status, 200);
    assert_eq!(get(&h, "/logs/missing.log", &[]).await.text(), "404 page not found\n");
    let r = get(&h, "/logs/syslog", &[]).await;
    assert_eq!(h.upstream.count(), 0, "never forwarded");
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn authorized_as_nodes_log() {
    let tree = Tree::new();
    node_tree(&tree);
    let h = gateway(&tree, false).await;
    let c = h.client();
    let r = c
        .get(h.addr, "/logs/syslog", &[("authorization", "Bearer proxy-token")])
        .await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            403,
            "Forbidden (user=proxy-reader, verb=get, resource=nodes, subresource(s)=[log])\n".to_owned()
        )
    );
    let r = c
        .get(h.addr, "/logs/syslog", &[("authorization", "Bearer log-token")])
        .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, SYSLOG));
}

#[tokio::test]
async fn nothing_outside_the_directory_is_ever_served() {
    let tree = Tree::new();
    node_tree(&tree);
    let h = gateway(&tree, false).await;
    // Through the gateway: dot segments and encoded forms stop at the path gate (400);
    // links leading out and special files are not found (404), and nothing hangs on a FIFO.
    for (target, status) in [
        ("/logs/../secret", 400),
        ("/logs/%2e%2e/secret", 400),
        ("/logs/%2E%2E%2Fsecret", 400),
        ("/logs/..%5csecret", 400),
        ("/logs/journal/%2e%2e/%2e%2e/secret", 400),
        ("/logs/link-out", 404),
        ("/logs/dir-out/secret", 404),
        ("/logs/dir-out/", 404),
        ("/logs/dir-out", 404),
        ("/logs/fifo", 404),
        ("/logs/sock", 404),
    ] {
        let r = tokio::time::timeout(Duration::from_secs(10), get(&h, target, &[]))
            .await
            .unwrap_or_else(|_| panic!("{target} hung"));
        assert_eq!(r.status, status, "{target}: {}", r.text());
        assert!(!r.text().contains(SECRET), "{target}");
    }
    // Direct calls, without the gateway's path gate: `..` is resolved inside the root, as
    // http.Dir does, and links are checked all the same.
    let logs = &h.pipeline.logs;
    for (path, status) in [
        ("/logs/../secret", 404),
        ("/logs/../../../../secret", 404),
        ("/logs/%2e%2e/%2e%2e/secret", 404),
        ("/logs/..%2f..%2fsecret", 404),
        ("/logs/journal/..%2F..%2F..%2Fsecret", 404),
        ("/logs/dir-out/secret", 404),
        ("/logs/link-out", 404),
        ("/logs/fifo", 404),
        ("/logs/%00", 500),
        ("/logs/%zz", 400),
    ] {
        let r = tokio::time::timeout(Duration::from_secs(10), logs.node_logs(path, None, &HeaderMap::new()))
            .await
            .unwrap_or_else(|_| panic!("{path} hung"));
        let code = r.status().as_u16();
        let body = r.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(code, status, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains(SECRET), "{path}");
    }
    // A link planted after the gateway started is judged at request time.
    symlink(&tree.secret, tree.node.join("late")).expect("symlink");
    assert_eq!(get(&h, "/logs/late", &[]).await.status, 404);
}

/// A large file is streamed whole and intact (the 1 GiB figures come from
/// `examples/log_bench.rs`, run by hand).
#[tokio::test]
async fn a_large_file_streams_intact() {
    use std::io::Write;
    let tree = Tree::new();
    let path = tree.node.join("big.log");
    let mut want = super::Fnv::new();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut size = 0u64;
    let mut i = 0u64;
    while size < 64 << 20 {
        let line = format!("{i:012} the quick brown fox jumps over the lazy dog {}\n", i % 977);
        want.update(line.as_bytes());
        f.write_all(line.as_bytes()).expect("write");
        size += line.len() as u64;
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
            crate::common::client::build_request("GET", "/logs/big.log", AS_ADMIN, bytes::Bytes::new()),
        )
        .await
        .expect("request");
    assert_eq!(s.status, 200);
    assert_eq!(header_of(&s, "content-length"), Some(size.to_string()));
    let (mut got, mut n) = (super::Fnv::new(), 0u64);
    assert!(
        s.for_each_chunk(Duration::from_secs(120), |c| {
            got.update(c);
            n += c.len() as u64;
        })
        .await
    );
    assert_eq!((n, got), (size, want));
    eprintln!("64 MiB node file in {:?}", started.elapsed());
}

fn header_of(s: &crate::common::client::Streaming, name: &str) -> Option<String> {
    s.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
