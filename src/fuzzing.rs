//! The fuzz targets' invariants, one function per target: each takes the fuzzer's bytes, runs
//! one parser or phase on them and panics when an invariant breaks. The cargo-fuzz targets in
//! `fuzz/fuzz_targets/` call these, and so does `tests/fuzz_corpus.rs`, which replays every
//! file of `fuzz/corpus/<target>/` on stable: a corpus entry that once broke an invariant stays
//! a regression test. Not part of the gateway's API.

use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::authn::UserInfo;
use crate::authn::bearer::{self, BearerHeader, MAX_TOKEN_BYTES};
use crate::authn::token_file::TokenFile;
use crate::authn::websocket::{self, ProtocolTokenError};
use crate::authz::attributes::{method_verb, request_verb, subresources};
use crate::authz::rbac::{RbacPolicy, Request};
use crate::authz::{Attributes, Authorizer, AuthzError, Decision, Verdict};
use crate::config::Config;
use crate::logs::cri::{self, Instant, Stream, Timestamp};
use crate::logs::options::{self, QueryError, Streams};
use crate::logs::reader::{Lines, Progress, Pumped, Records, Settings};
use crate::proxy::outcome::Rejected;
use crate::proxy::routes::{Dispatch, Mux};
use crate::proxy::{forward, path, pipeline, routes};

/// A target's invariant: panics on input that breaks it.
pub type Check = fn(&[u8]);

/// Every target, by the name of its corpus directory and fuzz target.
pub const TARGETS: &[(&str, Check)] = &[
    ("path_router", path_router),
    ("attributes", attributes),
    ("bearer", bearer),
    ("websocket", websocket),
    ("token_file", token_file),
    ("rbac", rbac),
    ("cri_log", cri_log),
    ("docker_json", docker_json),
    ("log_options", log_options),
    ("config", config),
];

const METHODS: [Method; 8] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
];

/// The request target (bytes as hyper hands them over). Whatever the canonical-path gate
/// accepts is routed the same on the raw path (what the gateway authorizes and forwards) and on
/// the percent-decoded path (what the kubelet's Go router sees): same mux root or redirect, same
/// subresources and verb, same REST route. The only allowed difference fails closed: a raw path
/// the gateway does not route (404) may name a route once decoded (`/%70ods`).
pub fn path_router(data: &[u8]) {
    if let Ok(raw) = std::str::from_utf8(data) {
        raw_and_decoded_route_alike(raw);
    }
    let Ok(uri) = Uri::try_from(data) else { return };
    for version in [Version::HTTP_11, Version::HTTP_2] {
        for method in &METHODS {
            match pipeline::route(method, &uri, version) {
                Ok((target, root)) => {
                    assert_ne!(method, Method::CONNECT, "CONNECT is refused before authentication");
                    // What is authorized is what is forwarded, byte for byte.
                    assert_eq!(target.path(), uri.path());
                    assert_eq!(target.query(), uri.query());
                    assert_eq!(path::check_path(target.path()), Ok(()));
                    assert_eq!(routes::mux(target.path()), Mux::Known(root));
                }
                Err(Rejected::Redirect { location, query, .. }) => {
                    assert_eq!(routes::mux(uri.path()), Mux::Redirect(location));
                    assert_eq!(query.as_deref(), uri.query());
                }
                Err(Rejected::NotFound) => assert_eq!(routes::mux(uri.path()), Mux::NotFound),
                Err(Rejected::Path(_)) => {}
            }
        }
    }
}

fn raw_and_decoded_route_alike(raw: &str) {
    if path::check_path(raw).is_err() {
        return;
    }
    let decoded = crate::logs::percent_decode(raw).expect("the gate lets only well-formed escapes through");
    let decoded = String::from_utf8(decoded).expect("the gate lets only ASCII through");
    // The kubelet's mux would neither clean nor redirect the decoded path.
    assert!(
        decoded.is_ascii() && !decoded.contains('\\') && !decoded.contains(';'),
        "{raw} -> {decoded}"
    );
    assert!(
        !decoded.contains("//") && !decoded.split('/').any(|s| s == "." || s == ".."),
        "{raw} -> {decoded}"
    );
    let mux = routes::mux(raw);
    if mux != Mux::NotFound {
        assert_eq!(routes::mux(&decoded), mux, "{raw} -> {decoded}: another mux entry");
    }
    let Mux::Known(root) = mux else { return };
    for fine in [true, false] {
        assert_eq!(
            subresources(raw, fine),
            subresources(&decoded, fine),
            "{raw} -> {decoded}: other subresources"
        );
    }
    for method in &METHODS {
        for create in [true, false] {
            assert_eq!(
                request_verb(method, raw, create),
                request_verb(method, &decoded, create),
                "{method} {raw} -> {decoded}: another verb"
            );
        }
        let dispatch = root.dispatch(method, raw);
        // NoRoute on the raw path is the gateway's 404 after authorization: nothing is served.
        if dispatch != Dispatch::NoRoute {
            assert_eq!(
                root.dispatch(method, &decoded),
                dispatch,
                "{method} {raw} -> {decoded}: another route"
            );
        }
    }
}

const VERBS: [&str; 6] = ["create", "get", "update", "patch", "delete", ""];
const SUBRESOURCES: [&str; 9] = [
    "stats",
    "metrics",
    "log",
    "checkpoint",
    "proxy",
    "statusz",
    "configz",
    "pods",
    "healthz",
];
/// The pre-1.32 set, without fine-grained authorization.
const COARSE_SUBRESOURCES: [&str; 5] = ["stats", "metrics", "log", "checkpoint", "proxy"];
const NODE: &str = "node-a";

/// `METHOD path`, then optional lines: user name, uid, comma-separated groups. The verb and
/// subresources come from the known sets (fine-grained ones only refine `proxy`, which stays
/// the fallback), the SubjectAccessReview is the kubelet's (`nodes/<subresource>` of this node,
/// version v1, no group or namespace), and the filter loop asks exactly the listed
/// subresources, in order.
pub fn attributes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, path) = first.split_once(' ').unwrap_or(("GET", first));
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let user = UserInfo {
        name: lines.next().unwrap_or_default().to_owned(),
        uid: lines.next().unwrap_or_default().to_owned(),
        groups: lines
            .next()
            .map(|g| g.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        ..UserInfo::default()
    };
    let plain = method_verb(&method);
    assert!(VERBS.contains(&plain), "{method}: {plain:?}");
    assert_eq!(request_verb(&method, path, false), plain);
    let verb = request_verb(&method, path, true);
    assert!(verb == plain || verb == "create", "{method} {path}: {verb:?}");
    let coarse = subresources(path, false);
    assert!(
        coarse.len() == 1 && COARSE_SUBRESOURCES.contains(&coarse[0]),
        "{path}: {coarse:?}"
    );
    let fine = subresources(path, true);
    assert!(
        !fine.is_empty() && fine.iter().all(|s| SUBRESOURCES.contains(s)),
        "{path}: {fine:?}"
    );
    assert!(
        fine == coarse || coarse == ["proxy"],
        "{path}: {fine:?} refines {coarse:?}"
    );
    if fine.len() > 1 {
        assert_eq!(fine.last(), Some(&"proxy"), "{path}: proxy stays the fallback");
    }
    for &subresource in fine {
        let review = crate::authz::webhook::review_for(&Attributes {
            user: &user,
            verb,
            subresource,
            node_name: NODE,
        });
        let spec = &review.spec;
        let ra = spec.resource_attributes.as_ref().expect("a resource request");
        assert_eq!(ra.resource.as_deref(), Some("nodes"));
        assert_eq!(ra.version.as_deref(), Some("v1"));
        assert_eq!(ra.subresource.as_deref(), Some(subresource));
        assert_eq!(ra.name.as_deref(), Some(NODE));
        assert_eq!(ra.verb.as_deref().unwrap_or_default(), verb);
        assert!(ra.group.is_none() && ra.namespace.is_none());
        assert!(spec.non_resource_attributes.is_none());
        assert_eq!(spec.user.as_deref().unwrap_or_default(), user.name);
        assert_eq!(spec.groups.as_deref().unwrap_or_default(), user.groups);
        serde_json::to_vec(&review).expect("a review serialises");
    }
    let recorder = Recorder(Mutex::new(Vec::new()));
    let verdict = crate::authz::review(&recorder, &user, verb, fine, NODE);
    let verdict = futures_util::FutureExt::now_or_never(verdict).expect("no await point");
    assert_eq!(verdict, Verdict::Forbidden);
    assert_eq!(*recorder.0.lock().expect("lock"), fine);
}

/// Has no opinion, and writes down what it was asked.
struct Recorder(Mutex<Vec<&'static str>>);

impl Authorizer for Recorder {
    async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, AuthzError> {
        assert_eq!((a.node_name, Attributes::RESOURCE), (NODE, "nodes"));
        self.0.lock().expect("lock").push(a.subresource);
        Ok(Decision::NoOpinion)
    }
}

/// `Authorization` header values, one a line. The token is what `bearertoken.go` reads (the
/// second space-separated field after a case-insensitive `Bearer`), never has a space, is
/// within the size limit, and `Bearer <token>` reads back as the same token; two headers are
/// ambiguous and a non-ASCII one is invalid.
pub fn bearer(data: &[u8]) {
    if let Ok(value) = std::str::from_utf8(data) {
        bearer_value(value);
    }
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(AUTHORIZATION, v);
        }
    }
    let values: Vec<&HeaderValue> = headers.get_all(AUTHORIZATION).iter().collect();
    let parsed = bearer::parse(&headers);
    match values.as_slice() {
        [] => assert_eq!(parsed, BearerHeader::Absent),
        [one] => match one.to_str() {
            Ok(v) => assert_eq!(parsed, bearer::parse_value(v)),
            Err(_) => assert_eq!(parsed, BearerHeader::Invalid),
        },
        _ => assert_eq!(parsed, BearerHeader::Duplicate),
    }
}

fn bearer_value(value: &str) {
    let trimmed = value.trim_matches(|c: char| c.is_ascii_whitespace()).as_bytes();
    // `Bearer` (any case), one space, then a token that starts with anything but a space.
    let offered =
        trimmed.len() > 7 && trimmed[..6].eq_ignore_ascii_case(b"bearer") && trimmed[6] == b' ' && trimmed[7] != b' ';
    match bearer::parse_value(value) {
        BearerHeader::Token(token) => {
            assert!(offered, "{value:?}");
            assert!(!token.is_empty() && !token.contains(' ') && token.len() <= MAX_TOKEN_BYTES);
            let rest = &trimmed[7..];
            assert!(rest.starts_with(token.as_bytes()), "{value:?}: {token:?}");
            assert!(
                matches!(rest.get(token.len()), None | Some(b' ')),
                "{value:?}: {token:?}"
            );
            // A third field keeps the token's own trailing tabs from being trimmed as the value's.
            assert_eq!(
                bearer::parse_value(&format!("Bearer {token} x")),
                BearerHeader::Token(token)
            );
        }
        BearerHeader::TooLarge => {
            assert!(offered, "{value:?}");
            let token = trimmed[7..].split(|&b| b == b' ').next().unwrap_or_default();
            assert!(token.len() > MAX_TOKEN_BYTES);
        }
        BearerHeader::Absent => assert!(!offered, "{value:?}: a token was offered"),
        other => panic!("{value:?}: parse_value never answers {other:?}"),
    }
}

const TOKEN_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// A header block, `Name: value` a line. The subprotocol token is found only in a WebSocket
/// request, only once, and decodes to what it encodes; the protocols forwarded in its place are
/// the others, in order. Whatever authenticated, the forwarded headers keep no
/// `Authorization` and no token entry.
pub fn websocket(data: &[u8]) {
    let headers = header_block(data);
    let entries: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let tokens: Vec<&str> = entries.iter().filter_map(|p| p.strip_prefix(TOKEN_PREFIX)).collect();
    let others: Vec<&str> = entries
        .iter()
        .copied()
        .filter(|p| !p.starts_with(TOKEN_PREFIX))
        .collect();
    let is_websocket = websocket::is_websocket_request(&headers);
    match websocket::extract(&headers) {
        Ok(Some(found)) => {
            assert!(is_websocket && tokens.len() == 1 && !others.is_empty());
            assert!(!found.token.is_empty());
            assert_eq!(
                websocket::RAW_URL_ENCODING.decode(tokens[0]).ok(),
                Some(found.token.clone().into_bytes())
            );
            assert_eq!(found.remaining, others.join(","));
        }
        Ok(None) => assert!(
            !is_websocket
                || tokens.is_empty()
                || (tokens.len() == 1
                    && websocket::RAW_URL_ENCODING
                        .decode(tokens[0])
                        .is_ok_and(|t| t.is_empty())),
            "a token was ignored: {entries:?}"
        ),
        Err(e) => {
            assert!(is_websocket && !tokens.is_empty(), "{e}");
            match e {
                ProtocolTokenError::Multiple => assert!(tokens.len() > 1),
                ProtocolTokenError::TooLarge => assert!(tokens[0].len() > MAX_TOKEN_BYTES * 4 / 3),
                ProtocolTokenError::Encoding => assert!(websocket::RAW_URL_ENCODING.decode(tokens[0]).is_err()),
                ProtocolTokenError::NotUtf8 => {
                    assert!(
                        websocket::RAW_URL_ENCODING
                            .decode(tokens[0])
                            .is_ok_and(|t| String::from_utf8(t).is_err())
                    );
                }
                ProtocolTokenError::MissingSubprotocol => assert!(others.is_empty()),
            }
        }
    }
    let mut forwarded = headers.clone();
    forward::sanitize_request_headers(&mut forwarded);
    assert!(forwarded.get(AUTHORIZATION).is_none());
    let kept: Vec<&str> = forwarded
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .map(|v| v.to_str().expect("only text is kept"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    assert!(
        kept.iter().all(|p| !p.starts_with(TOKEN_PREFIX)),
        "a token entry is forwarded: {kept:?}"
    );
    let named_hop_by_hop = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(SEC_WEBSOCKET_PROTOCOL.as_str()));
    if !tokens.is_empty() && !named_hop_by_hop {
        let wanted: Vec<&str> = others.iter().copied().filter(|p| !p.is_empty()).collect();
        assert_eq!(kept, wanted, "the other protocols are kept, in order");
    }
}

/// `Name: value` lines; lines that are no valid header are skipped.
fn header_block(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    headers
}

/// A `--token-auth-file`. Loaded, every non-empty token authenticates as the last record that
/// lists it (user, uid, groups, plus `system:authenticated`), and nothing else does; refused,
/// the error names the file.
pub fn token_file(data: &[u8]) {
    let name = Path::new("fuzz.csv");
    let parsed = TokenFile::parse(name, data);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let records: Result<Vec<csv::StringRecord>, _> = reader.records().collect();
    let file = match (parsed, records) {
        (Err(e), records) => {
            assert!(e.to_string().starts_with("token file 'fuzz.csv'"), "{e}");
            let well_formed = records.is_ok_and(|r| r.iter().all(|r| r.len() >= 3));
            assert!(!well_formed, "a well-formed file is refused: {e}");
            return;
        }
        (Ok(_), Err(e)) => panic!("a file the CSV reader refuses is loaded: {e}"),
        (Ok(file), Ok(records)) => {
            assert!(records.iter().all(|r| r.len() >= 3), "a record of fewer than 3 columns");
            (file, records)
        }
    };
    let (file, records) = file;
    let mut last = std::collections::HashMap::new();
    for r in &records {
        if !r[0].is_empty() {
            last.insert(&r[0], r);
        }
    }
    assert_eq!(file.len(), last.len());
    for (token, r) in last {
        let user = file.lookup(token).expect("a listed token authenticates");
        assert_eq!((user.name.as_str(), user.uid.as_str()), (&r[1], &r[2]));
        let mut groups: Vec<String> = r
            .get(3)
            .map(|g| g.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if !groups
            .iter()
            .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
            && user.name != "system:anonymous"
        {
            groups.push("system:authenticated".to_owned());
        }
        assert_eq!(user.groups, groups);
    }
    assert!(file.lookup("").is_none(), "the empty token authenticates nobody");
    let unlisted = "fuzz-token-listed-nowhere";
    if !records.iter().any(|r| &r[0] == unlisted) {
        assert!(file.lookup(unlisted).is_none(), "a token listed nowhere authenticates");
    }
}

/// RBAC policy YAML. Refused, the error names the source and document. Loaded: a user named
/// nowhere in it, without groups, is granted nothing, and (unless the text could name the
/// built-in `cluster-admin`) `system:masters` is still granted everything.
pub fn rbac(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let sources = [("fuzz.yaml".to_owned(), text)];
    let policy = match RbacPolicy::from_sources(&sources) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.yaml: document "), "{e}");
            return;
        }
    };
    let text = &sources[0].1;
    let stranger = "fuzz-stranger";
    let masters = ["system:masters".to_owned()];
    for verb in ["get", "create", "list", "watch", "proxy", "*", ""] {
        for &subresource in SUBRESOURCES.iter().chain(&[""]) {
            if !text.contains(stranger) && !text.contains('\\') && !text.contains('!') {
                let grant = policy.authorize(&node_request(stranger, &[], verb, subresource));
                assert_eq!(grant, None, "{verb} nodes/{subresource}: a stranger is granted");
            }
            let request = node_request("u", &masters, verb, subresource);
            let grant = policy.authorize(&request).map(|g| g.to_grant());
            assert_eq!(
                grant,
                policy.authorize(&request).map(|g| g.to_grant()),
                "the same answer twice"
            );
            if !text.contains("cluster-admin") && !text.contains('\\') && !text.contains('!') && !text.contains('%') {
                assert!(grant.is_some(), "{verb} nodes/{subresource}: system:masters is refused");
            }
        }
    }
}

fn node_request<'a>(user: &'a str, groups: &'a [String], verb: &'a str, subresource: &'a str) -> Request<'a> {
    Request {
        user,
        groups,
        verb,
        api_group: "",
        resource: "nodes",
        subresource,
        name: NODE,
    }
}

/// Lines of a CRI log file. A parsed record re-serialises to its input when the input is
/// canonical (nine fraction digits, tag `P` or `F`), and its canonical form reads back as the
/// same record otherwise. The whole file read through the reader gives the same bytes however
/// it is buffered and chunked, within `limitBytes`, and without filters exactly the records'
/// contents (a partial record without its newline).
pub fn cri_log(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let Ok(header) = cri::parse_header(line) else { continue };
        let content = &line[header.content..];
        let mut canonical = Vec::with_capacity(line.len() + 16);
        header.timestamp.write_fixed(&mut canonical);
        let ts_len = canonical.len();
        canonical.extend_from_slice(match header.stream {
            Stream::Stdout => b" stdout ",
            Stream::Stderr => b" stderr ",
        });
        canonical.extend_from_slice(if header.partial { b"P " } else { b"F " });
        canonical.extend_from_slice(content);
        let tag_at = line.iter().position(|&b| b == b' ').expect("a timestamp field") + 8;
        let is_canonical = line[..ts_len.min(line.len())] == canonical[..ts_len]
            && line.get(ts_len) == Some(&b' ')
            && matches!(line.get(tag_at..tag_at + 2), Some(b"P " | b"F "));
        if is_canonical {
            assert_eq!(canonical, line, "a canonical record re-serialises to itself");
        }
        match cri::parse_header(&canonical) {
            Ok(again) => {
                assert_eq!(
                    (again.timestamp, again.stream, again.partial),
                    (header.timestamp, header.stream, header.partial)
                );
                assert_eq!(&canonical[again.content..], content);
            }
            Err(e) => assert!(
                go_offset_overflow(&canonical[..ts_len]),
                "{e}: {:?}",
                String::from_utf8_lossy(&canonical)
            ),
        }
    }
    read_alike(data);
}

/// Go writes an offset of `+24:60` (which it reads) as `+25:00` (which it does not).
fn go_offset_overflow(fixed: &[u8]) -> bool {
    matches!(fixed.get(fixed.len().saturating_sub(6)..), Some(b"+25:00" | b"-25:00"))
}

/// Docker JSON-file lines. A parsed record written back as JSON with its time in the kubelet's
/// format reads back as the same record.
pub fn docker_json(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let Some(record) = cri::parse_docker_json(line) else {
            continue;
        };
        let mut time = Vec::new();
        record.timestamp.write_fixed(&mut time);
        let time = String::from_utf8(time).expect("ASCII");
        let json = serde_json::json!({"log": record.log, "stream": record.stream, "time": time});
        let json = serde_json::to_vec(&json).expect("serialises");
        match cri::parse_docker_json(&json) {
            Some(again) => assert_eq!(again, record),
            None => assert!(go_offset_overflow(time.as_bytes()), "{time}"),
        }
    }
    read_alike(data);
}

/// The settings the file readers are tried with.
fn reader_settings() -> [Settings; 5] {
    let plain = Settings {
        timestamps: false,
        since: None,
        streams: Streams::All,
        limit_bytes: None,
        max_records: None,
    };
    [
        plain,
        Settings {
            timestamps: true,
            ..plain
        },
        Settings {
            timestamps: true,
            limit_bytes: Some(40),
            ..plain
        },
        Settings {
            max_records: Some(2),
            streams: Streams::Stderr,
            ..plain
        },
        Settings {
            since: Some(Instant {
                secs: 1_475_713_029,
                nanos: 0,
            }),
            streams: Streams::Stdout,
            ..plain
        },
    ]
}

/// Reads `data` as a whole log file, as a request without `follow` does: the output, and the
/// error text the request ends with.
fn read_file(data: &[u8], settings: Settings, buffer: usize, chunk: usize) -> (Vec<u8>, Option<String>) {
    let mut records = Records::new(settings);
    let mut lines = Lines::new(buffer);
    let mut out = Vec::new();
    let mut src = data;
    if records.finished() {
        return (out, None);
    }
    loop {
        match lines.pump(&mut src, &mut records, &mut out, chunk).expect("in memory") {
            Pumped::Chunk => {}
            Pumped::Eof => {
                return match lines.finish(&mut records, &mut out) {
                    Progress::Failed(m) => (out, Some(m)),
                    Progress::More | Progress::Done => (out, None),
                };
            }
            Pumped::Done => return (out, None),
            Pumped::Failed(m) => return (out, Some(m)),
        }
    }
}

fn read_alike(data: &[u8]) {
    const BUFFER: usize = 64 * 1024;
    let longest = data.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
    for settings in reader_settings() {
        let whole = read_file(data, settings, BUFFER, BUFFER);
        if let Some(limit) = settings.limit_bytes {
            assert!(
                whole.0.len() as u64 <= limit,
                "{} bytes over limitBytes={limit}",
                whole.0.len()
            );
        }
        assert_eq!(read_file(data, settings, BUFFER, 1), whole, "another output chunk size");
        if longest < BUFFER {
            // A buffer just larger than the longest line: reads that end mid-line.
            assert_eq!(read_file(data, settings, longest + 1, 7), whole, "another read buffer");
        }
        if settings.timestamps || settings.limit_bytes.is_some() || settings.max_records.is_some() {
            continue;
        }
        if settings.since.is_none()
            && longest < BUFFER
            && data
                .split(|&b| b == b'\n')
                .next()
                .is_some_and(|l| cri::parse_header(l).is_ok())
        {
            assert_eq!(whole, (cri_contents(data), None), "the records' contents");
        }
    }
}

/// The contents of a CRI file's records: a full record's line keeps its `\n`, a partial one's
/// does not; lines that are no record are skipped.
fn cri_contents(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if last && line.is_empty() {
            break;
        }
        let Ok(h) = cri::parse_header(line) else { continue };
        out.extend_from_slice(&line[h.content..]);
        if !h.partial && !last {
            out.push(b'\n');
        }
    }
    out
}

/// The `/containerLogs` query. Accepted options satisfy `ValidatePodLogOptions`, and written
/// back as a query they read back the same; a refusal is the kubelet's 400 or 422.
pub fn log_options(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let _ = options::parse_query(query);
    let parsed = options::parse(query);
    assert_eq!(parsed, options::parse(query), "the same query, the same answer");
    let o = match parsed {
        Ok(o) => o,
        Err(QueryError::Decode | QueryError::Invalid) => return,
    };
    assert!(o.tail_lines.is_none_or(|n| n >= 0), "{o:?}");
    assert!(o.limit_bytes.is_none_or(|n| n >= 1), "{o:?}");
    assert!(o.since_seconds.is_none_or(|n| n >= 1), "{o:?}");
    assert!(!(o.since_seconds.is_some() && o.since_time.is_some()), "{o:?}");
    assert!(
        o.stream
            .as_deref()
            .is_none_or(|s| s == "All" || (matches!(s, "Stdout" | "Stderr") && o.tail_lines.is_none())),
        "{o:?}"
    );
    assert_eq!(o.streams(false).is_ok(), o.stream.as_deref().is_none_or(|s| s == "All"));
    assert!(o.streams(true).is_ok());
    for now in [
        Instant { secs: 0, nanos: 0 },
        Instant::now(),
        Instant {
            secs: i64::MAX,
            nanos: 999_999_999,
        },
    ] {
        let _ = o.since(now);
    }
    // Written back as a query, the options read back the same.
    let mut q = vec![
        format!("follow={}", o.follow),
        format!("previous={}", o.previous),
        format!("timestamps={}", o.timestamps),
    ];
    let number = |key: &str, n: Option<i64>| n.map(|n| format!("{key}={n}"));
    q.extend(number("sinceSeconds", o.since_seconds));
    q.extend(number("tailLines", o.tail_lines));
    q.extend(number("limitBytes", o.limit_bytes));
    if let Some(t) = o.since_time {
        let mut text = Vec::new();
        if t != Timestamp::ZERO {
            t.write_fixed(&mut text);
        }
        if go_offset_overflow(&text) {
            return;
        }
        let text = String::from_utf8(text).expect("ASCII").replace('+', "%2B");
        q.push(format!("sinceTime={text}"));
    }
    if let Some(s) = &o.stream {
        q.push(format!("stream={s}"));
    }
    assert_eq!(options::parse(&q.join("&")), Ok(o), "{}", q.join("&"));
}

/// A configuration file, as `Config::load` reads it. Refused, the one-line error names the
/// field or the line; accepted, its effective configuration (`check-config --print`) loads
/// back as the same configuration.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let base = Path::new("/etc/kubelet-gate");
    match Config::from_yaml(text, base) {
        Err(e) => {
            assert!(
                e.field().is_some() || e.line().is_some(),
                "names neither field nor line: {e}"
            );
            assert!(!e.to_string().contains('\n'), "more than one line: {e:?}");
        }
        Ok(config) => {
            let printed = config.to_yaml();
            match Config::from_yaml(&printed, base) {
                Ok(again) => assert_eq!(again, config, "{printed}"),
                Err(e) => panic!("the printed configuration is refused: {e}\n{printed}"),
            }
        }
    }
}
