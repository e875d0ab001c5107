//! Watch streaming: the initial events or the replayed history, then live changes filtered by the selectors,
//! bookmarks and the stream's end (timeout, client gone, `close_watches`, a watcher too far behind).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Inner, truthy};
use crate::kube::resources::{self, ResourceDef};
use crate::kube::select::{FieldSelector, LabelSelector};
use crate::kube::status::{self, ApiError};
use crate::kube::store::{Change, ChangeType};
use crate::kube::table;

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// A watch event line; with `table` (the `includeObject` mode) the object is a one-row Table, as for `kubectl get -w`.
fn event_line(def: &ResourceDef, kind: &str, obj: &Value, table: Option<&str>) -> Bytes {
    match table {
        Some(include) => {
            let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
            line(kind, &table::render(def, std::slice::from_ref(obj), &rv, include))
        }
        None => line(kind, obj),
    }
}

fn bookmark(def: &ResourceDef, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta})
}

/// A watch: one JSON event per line, as a chunked response that stays open.
pub(super) fn watch_response(
    inner: &Arc<Inner>,
    def: &'static ResourceDef,
    ns: &str,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &HashMap<String, String>,
    table: Option<String>,
) -> Result<Response, ApiError> {
    let bookmarks = truthy(q, "allowWatchBookmarks");
    let send_initial = truthy(q, "sendInitialEvents");
    if send_initial && (!bookmarks || q.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan")) {
        return Err(status::invalid(
            "",
            "",
            "",
            &[status::FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
            )],
        ));
    }
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let timeout = q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs);
    let ns_filter = ns.to_string();
    let matches = move |o: &Value, change_ns: &str| -> bool {
        (ns_filter.is_empty() || ns_filter == change_ns) && labels.matches(o) && fields.matches(o)
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(256);
    let mut initial: Vec<Bytes> = Vec::new();
    let (mut rx, mut last_rv) = {
        let store = inner.store.lock().expect("store");
        let rx = inner.tx.subscribe();
        let current_rv = store.rv;
        if send_initial || rv_param.is_empty() || rv_param == "0" {
            for o in store.list(def, (!ns.is_empty()).then_some(ns)) {
                let ext = resources::to_external(def, o.clone());
                let o_ns = ext.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
                if matches(&ext, &o_ns) {
                    initial.push(event_line(def, "ADDED", &ext, table.as_deref()));
                }
            }
            if send_initial {
                initial.push(line("BOOKMARK", &bookmark(def, current_rv, true)));
            }
            (rx, current_rv)
        } else {
            let since: u64 =
                rv_param.parse().map_err(|_| status::bad_request(&format!("invalid resource version: {rv_param}")))?;
            match store.changes_since(since) {
                Err(oldest) => {
                    // The watch cache answers 200 and then a single ERROR event carrying 410 Expired.
                    let e = status::status(
                        410,
                        "Expired",
                        &format!("too old resource version: {since} ({})", oldest.saturating_sub(1)),
                        None,
                    );
                    initial.push(line("ERROR", &e.body));
                    drop(store);
                    let stream = futures::stream::iter(initial.into_iter().map(Ok::<_, Infallible>));
                    return Ok(stream_response(Body::from_stream(stream)));
                }
                Ok(changes) => {
                    for c in changes {
                        if let Some(l) = change_line(def, &c, &matches, table.as_deref()) {
                            initial.push(l);
                        }
                    }
                    (rx, current_rv.max(since))
                }
            }
        }
    };
    let interval = *inner.bookmark_interval.lock().expect("interval");
    let mut closed = inner.close_watches.subscribe();
    tokio::spawn(async move {
        for l in initial {
            if out_tx.send(l).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let sleep_until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep_until => return,
                _ = out_tx.closed() => return,
                _ = closed.changed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if out_tx.send(line("BOOKMARK", &bookmark(def, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                msg = rx.recv() => match msg {
                    Ok(c) => {
                        if c.rv <= last_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        if let Some(l) = change_line(def, &c, &matches, table.as_deref())
                            && out_tx.send(l).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that falls behind is closed, as the apiserver does; the client re-watches.
                    Err(_) => return,
                },
            }
        }
    });
    let stream =
        futures::stream::unfold(out_rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Ok(stream_response(Body::from_stream(stream)))
}

fn stream_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The line a change produces for one watch, taking selectors into account: an object that starts matching
/// is ADDED, one that stops matching is DELETED (as the watch cache does).
fn change_line(
    def: &ResourceDef,
    c: &Change,
    matches: &impl Fn(&Value, &str) -> bool,
    table: Option<&str>,
) -> Option<Bytes> {
    if c.storage != def.storage {
        return None;
    }
    let obj = resources::to_external(def, c.object.clone());
    let now = matches(&obj, &c.namespace);
    match c.kind {
        ChangeType::Added | ChangeType::Deleted => now.then(|| event_line(def, c.kind.as_str(), &obj, table)),
        ChangeType::Modified => {
            let before = c.old.as_ref().is_some_and(|o| matches(&resources::to_external(def, o.clone()), &c.namespace));
            let kind = match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            };
            Some(event_line(def, kind, &obj, table))
        }
    }
}
