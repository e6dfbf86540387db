//! Watches: the initial ADDED events or the replay from a resource version, then every change,
//! bookmarks and the end of the stream, one newline-delimited JSON event per frame.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::meta::uuid;
use super::selector::Selector;
use super::serve::{Body, Query, Resp, parse_bool, status_response};
use super::store::{Inner, Res};
use super::{DEFAULT_WATCH_TIMEOUT, INITIAL_EVENTS_END, lock};

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("serialize event");
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(res: Res, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": res.kind(), "apiVersion": res.api_version(), "metadata": metadata}),
    )
}

pub(super) fn start_watch(inner: &Arc<Inner>, res: Res, name: Option<&str>, query: &Query) -> Resp {
    let param = |name: &str| query.get(name);
    let mut selector = match Selector::parse(res, param("fieldSelector"), param("labelSelector")) {
        Ok(s) => s,
        Err(m) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &m, None),
    };
    if let Some(n) = name {
        selector.fields.push(("metadata.name".into(), true, n.to_string()));
    }
    let rv_param = param("resourceVersion").unwrap_or("");
    let since = match rv_param {
        "" | "0" => None,
        s => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(e) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resource version: strconv.ParseUint: parsing {s:?}: {e}"),
                    None,
                );
            }
        },
    };
    let timeout = match param("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        Some(t) if t > 0 => Duration::from_secs(t),
        _ => DEFAULT_WATCH_TIMEOUT,
    };
    let bookmarks = param("allowWatchBookmarks").and_then(parse_bool).unwrap_or(false);
    let initial_events = param("sendInitialEvents").and_then(parse_bool).unwrap_or(false);

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (lines, cursor, changed, expired) = {
        let state = lock(&inner.state);
        // Subscribed before the reply, so no change, bookmark or end request is missed.
        let changed = inner.changed.subscribe();
        let mut lines = Vec::new();
        let mut expired = false;
        match since {
            Some(n) if !initial_events && n < state.compacted => {
                expired = true;
                lines.push(event_line(
                    "ERROR",
                    &json!({
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": format!("too old resource version: {n} ({})", state.compacted),
                        "reason": "Expired",
                        "code": 410,
                    }),
                ));
            }
            // The events after N come from the history, in the task.
            Some(_) if !initial_events => {}
            _ => {
                for o in state.live(res).into_iter().filter(|o| selector.matches(res, o)) {
                    lines.push(event_line("ADDED", o));
                }
                if initial_events && bookmarks {
                    lines.push(bookmark_line(res, state.rv, true));
                }
            }
        }
        let cursor = match since {
            Some(n) if !initial_events => n,
            _ => state.rv,
        };
        (lines, cursor, changed, expired)
    };
    tokio::spawn(watch_task(
        inner.clone(),
        res,
        selector,
        WatchPlan {
            lines,
            cursor,
            changed,
            bookmark_rx: inner.bookmarks.subscribe(),
            end_rx: inner.end_watches.subscribe(),
            expired,
            timeout,
            bookmarks,
        },
        tx,
    ));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .header("audit-id", uuid())
        .body(Body::Stream(rx))
        .expect("response")
}

struct WatchPlan {
    lines: Vec<Bytes>,
    cursor: u64,
    changed: watch::Receiver<u64>,
    bookmark_rx: watch::Receiver<u64>,
    end_rx: watch::Receiver<u64>,
    expired: bool,
    timeout: Duration,
    bookmarks: bool,
}

async fn watch_task(inner: Arc<Inner>, res: Res, selector: Selector, plan: WatchPlan, tx: mpsc::Sender<Bytes>) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    let mut changed = plan.changed;
    let mut bookmark_rx = plan.bookmark_rx;
    let mut end_rx = plan.end_rx;
    for line in plan.lines {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    if plan.expired {
        return;
    }
    let mut cursor = plan.cursor;
    loop {
        let lines: Vec<Bytes> = {
            let state = lock(&inner.state);
            let start = state.events.partition_point(|e| e.rv <= cursor);
            let lines = state.events[start..]
                .iter()
                .filter(|e| e.res == res && selector.matches(res, &e.object))
                .map(|e| event_line(e.kind, &e.object))
                .collect();
            cursor = cursor.max(state.rv);
            lines
        };
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            r = changed.changed() => if r.is_err() { return },
            r = bookmark_rx.changed() => {
                if r.is_err() {
                    return;
                }
                if plan.bookmarks && tx.send(bookmark_line(res, cursor, false)).await.is_err() {
                    return;
                }
            }
            _ = end_rx.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
