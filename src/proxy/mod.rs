//! The request path from an accepted TLS connection to a response: canonical-path gate,
//! route table, the pipeline that runs authentication and authorization, and the handlers.

pub mod forward;
pub mod outcome;
pub mod path;
pub mod pipeline;
pub mod quota;
pub mod replay;
pub mod respond;
pub mod routes;
pub mod secure;
pub mod tunnel;

/// The path gate's promise over generated targets: whatever the gate lets
/// through is classified the same way on the raw path (what the gateway authorizes and
/// forwards) as on the decoded path (what the kubelet's Go router and authorizer see).
#[cfg(test)]
mod invariants {
    use super::{path, routes};
    use crate::authz::attributes::{request_verb, subresources};
    use http::Method;

    /// Go's `url.PathUnescape`, for the kubelet's view of a path the gate accepted.
    fn decode(raw: &str) -> Vec<u8> {
        let b = raw.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && let Some(v) = raw.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    const PIECES: &[&str] = &[
        "/",
        "/",
        "/",
        "pods",
        "exec",
        "metrics",
        "stats",
        "logs",
        "healthz",
        "configz",
        "checkpoint",
        "run",
        "attach",
        "portForward",
        "containerLogs",
        "runningpods",
        "debug",
        "pprof",
        "summary",
        "ns",
        "p",
        "c",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%3b",
        "%70",
        "%65",
        "%00",
        "%0a",
        "%25",
        "%",
        "%zz",
        ";",
        "\\",
        "//",
        "x",
        "Exec",
        "METRICS",
        "-",
        "_",
        "~",
        "%41",
        "%7e",
    ];

    #[test]
    fn raw_and_decoded_paths_are_classified_alike() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let methods = [Method::GET, Method::POST, Method::PUT, Method::HEAD];
        let (mut accepted, mut routed) = (0, 0);
        for _ in 0..100_000 {
            let mut p = String::from("/");
            for _ in 0..(next() % 7) {
                p.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if path::check_path(&p).is_err() {
                continue;
            }
            accepted += 1;
            let decoded = decode(&p);
            let decoded = std::str::from_utf8(&decoded).expect("the gate only lets ASCII through");
            // The kubelet's mux would not redirect: the decoded path is already clean.
            assert!(
                !decoded.contains("//") && !decoded.split('/').any(|s| s == "." || s == ".."),
                "{p} -> {decoded}"
            );
            assert!(!decoded.contains('\\') && !decoded.contains(';'), "{p} -> {decoded}");
            let routes::Mux::Known(root) = routes::mux(&p) else {
                continue;
            };
            routed += 1;
            assert_eq!(
                routes::mux(decoded),
                routes::Mux::Known(root),
                "{p} -> {decoded}: another route"
            );
            for fine in [true, false] {
                assert_eq!(subresources(&p, fine), subresources(decoded, fine), "{p} -> {decoded}");
            }
            let m = &methods[(next() % methods.len() as u64) as usize];
            let raw_verb = request_verb(m, &p, true);
            let kubelet_verb = request_verb(m, decoded, false);
            assert!(
                raw_verb == kubelet_verb || raw_verb == "create",
                "{m} {p}: {raw_verb} vs {kubelet_verb}"
            );
        }
        assert!(
            accepted > 1_000 && routed > 100,
            "the generator exercises the gate: {accepted} accepted, {routed} routed"
        );
    }
}
