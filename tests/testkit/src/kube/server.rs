//! HTTP side of the test server: authentication, RBAC-style authorization, fault injection, routing and the
//! verbs (get, list, watch, create, update, patch, delete) over the [`Store`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::patch::{self, Scope};
use super::resources::{self, ResourceDef};
use super::select::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};
use super::store::{Change, ChangeType, Origin, Ownership, Store, WriteOpts};
use super::{Fault, RequestRecord, Rule};

/// What a bearer token authenticates as.
#[derive(Clone)]
pub(crate) struct Identity {
    pub user: String,
    /// `None`: cluster-admin; `Some(rules)`: only what a rule grants.
    pub rules: Option<Vec<Rule>>,
}

pub(crate) struct FaultState {
    pub fault: Fault,
    pub remaining: Option<usize>,
}

/// Shared state behind the router and the handle.
pub(crate) struct Inner {
    pub store: Mutex<Store>,
    pub tx: broadcast::Sender<Arc<Change>>,
    pub tokens: Mutex<HashMap<String, Identity>>,
    pub faults: Mutex<Vec<FaultState>>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub bookmark_interval: Mutex<Duration>,
    pub server_address: Mutex<String>,
    /// Bumped by [`close_watches`](super::KubeTestServer::close_watches): every open watch stream ends.
    pub close_watches: tokio::sync::watch::Sender<u64>,
}

impl Rule {
    fn allows(&self, verb: &str, group: &str, resource: &str, name: &str) -> bool {
        let any = |list: &[String], x: &str| list.iter().any(|v| v == "*" || v == x);
        any(&self.verbs, verb)
            && (self.group == "*" || self.group == group)
            && any(&self.resources, resource)
            && (self.resource_names.is_empty() || (!name.is_empty() && self.resource_names.iter().any(|n| n == name)))
    }
}

/// A parsed resource URL.
struct Target {
    def: &'static ResourceDef,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Version,
    Api,
    ApiGroupList,
    ApiGroup(String),
    ResourceList(String, String),
    OpenApiV3Index,
    OpenApiV3(String),
    Resource(Target),
    NotFound,
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["openapi", "v3"] => return Route::OpenApiV3Index,
        ["openapi", "v3", gv @ ..] => return Route::OpenApiV3(gv.join("/")),
        ["api"] => return Route::Api,
        ["apis"] => return Route::ApiGroupList,
        ["apis", g] => return Route::ApiGroup((*g).to_string()),
        ["api", v] => return Route::ResourceList(String::new(), (*v).to_string()),
        ["apis", g, v] => return Route::ResourceList((*g).to_string(), (*v).to_string()),
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Route::NotFound,
    };
    // `namespaces/{ns}/{resource}…` unless the third part is a namespace subresource (apiserver RequestInfo).
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, tail @ ..] if !matches!(*r, "status" | "finalize") => ((*ns).to_string(), {
            let mut v = vec![*r];
            v.extend_from_slice(tail);
            v
        }),
        other => (String::new(), other.to_vec()),
    };
    let Some(def) = rest.first().and_then(|r| resources::find(group, version, r)) else {
        return Route::NotFound;
    };
    if def.namespaced == namespace.is_empty() && rest.len() > 1 {
        return Route::NotFound;
    }
    let name = rest.get(1).map(|s| (*s).to_string());
    let subresource = rest.get(2).map(|s| (*s).to_string());
    if rest.len() > 3 || subresource.as_deref().is_some_and(|s| s != "status" || !def.status_subresource) {
        return Route::NotFound;
    }
    Route::Resource(Target { def, namespace, name, subresource })
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut r = (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.body);
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn parse_query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "1" || v == "true")
}

/// The field manager of a non-apply write: `fieldManager`, else the user agent up to the first `/`.
fn manager_of(q: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    ua.split('/').next().unwrap_or(ua).chars().take(128).collect()
}

fn parse_body(bytes: &Bytes, content_type: &str, def: &ResourceDef) -> Result<Value, ApiError> {
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        // A real apiserver decodes protobuf for every built-in kind; for a body it can't decode for the resource
        // it answers 415 `UnsupportedMediaType` with this message (apimachinery `NewUnsupportedMediaTypeError`).
        return super::protobuf::decode(bytes).map_err(|e| {
            let message = format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf ({e})"
            );
            status::status(415, "UnsupportedMediaType", &message, None)
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| status::bad_request(&e.to_string()))?;
    let parsed = if content_type.contains("yaml") {
        serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        status::bad_request(&format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            def.kind, def.version, def.kind
        ))
    })
}

/// The authenticated router entry point.
pub(crate) async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let q = parse_query(&query);
    let is_watch = method == Method::GET && truthy(&q, "watch");
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        status: 0,
        user: String::new(),
        is_watch,
    };
    let response = serve(&inner, req, &q, &mut record).await;
    record.status = response.status().as_u16();
    inner.requests.lock().expect("requests").push(record);
    response
}

/// Set on a request by a [`Fault::corrupt_data`] fault: the `data` key to corrupt in its merge patch.
#[derive(Clone)]
struct CorruptData(String);

async fn serve(
    inner: &Arc<Inner>,
    mut req: Request,
    q: &HashMap<String, String>,
    record: &mut RequestRecord,
) -> Response {
    let headers = req.headers().clone();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let Some(identity) = inner.tokens.lock().expect("tokens").get(&token).cloned() else {
        return error_response(&status::unauthorized());
    };
    record.user = identity.user.clone();
    let method = req.method().clone();
    let path = req.uri().path().to_string();

    // Injected faults, like the Key Vault emulator's: latency first, then an optional status.
    let fault = {
        let mut faults = inner.faults.lock().expect("faults");
        let hit = faults.iter_mut().find(|f| {
            f.remaining != Some(0)
                && f.fault.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
                && f.fault.path.as_deref().is_none_or(|p| path.contains(p))
        });
        hit.map(|f| {
            if let Some(n) = f.remaining.as_mut() {
                *n -= 1;
            }
            f.fault.clone()
        })
    };
    if let Some(f) = &fault {
        if let Some(d) = f.latency {
            tokio::time::sleep(d).await;
        }
        if let Some(code) = f.status {
            return error_response(&fault_error(code, f, &path));
        }
        if let Some(key) = &f.corrupt_data {
            req.extensions_mut().insert(CorruptData(key.clone()));
        }
    }

    let result = match route(&path) {
        Route::Version => Ok(json_response(200, &resources::version())),
        Route::Api => Ok(json_response(200, &resources::api_versions(&inner.server_address.lock().expect("addr")))),
        Route::ApiGroupList => Ok(json_response(200, &resources::api_group_list())),
        Route::ApiGroup(g) => resources::api_group(&g).map(|d| json_response(200, &d)).ok_or_else(page_not_found),
        Route::ResourceList(g, v) => {
            resources::api_resource_list(&g, &v).map(|d| json_response(200, &d)).ok_or_else(page_not_found)
        }
        Route::OpenApiV3Index => Ok(json_response(200, &resources::openapi_v3_index())),
        Route::OpenApiV3(gv) => {
            resources::openapi_v3_doc(&gv).map(|d| json_response(200, &d)).ok_or_else(page_not_found)
        }
        Route::NotFound => Err(page_not_found()),
        Route::Resource(t) => resource_request(inner, req, q, &identity, t).await,
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// 404 for a path nothing serves (the apiserver's body for unknown paths).
fn page_not_found() -> ApiError {
    status::status(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
}

fn fault_error(code: u16, f: &Fault, path: &str) -> ApiError {
    let mut e = match (code, route(path)) {
        (409, Route::Resource(Target { def, name: Some(n), .. })) if f.message.is_none() => status::conflict(def, &n),
        (404, Route::Resource(Target { def, name: Some(n), .. })) if f.message.is_none() => status::not_found(def, &n),
        (429, _) => {
            let mut e = status::status(
                429,
                "TooManyRequests",
                f.message.as_deref().unwrap_or("Too many requests, please try again later."),
                Some(json!({"retryAfterSeconds": f.retry_after.unwrap_or(1)})),
            );
            e.retry_after = Some(f.retry_after.unwrap_or(1));
            e
        }
        _ => status::for_code(code, f.message.as_deref()),
    };
    if f.retry_after.is_some() {
        e.retry_after = f.retry_after;
    }
    e
}

fn authorize(identity: &Identity, verb: &str, t: &Target, name: &str) -> Result<(), ApiError> {
    let Some(rules) = &identity.rules else {
        return Ok(());
    };
    let resource = match &t.subresource {
        Some(s) => format!("{}/{s}", t.def.plural),
        None => t.def.plural.to_string(),
    };
    if rules.iter().any(|r| r.allows(verb, t.def.group, &resource, name)) {
        return Ok(());
    }
    Err(status::forbidden(t.def, name, &identity.user, verb, t.subresource.as_deref(), &t.namespace))
}

async fn resource_request(
    inner: &Arc<Inner>,
    req: Request,
    q: &HashMap<String, String>,
    identity: &Identity,
    t: Target,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let headers = req.headers().clone();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let corrupt = req.extensions().get::<CorruptData>().cloned();
    let mut body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .map_err(|e| status::bad_request(&format!("failed to read the request body: {e}")))?;
    if let Some(CorruptData(key)) = corrupt
        && let Ok(mut patch) = serde_json::from_slice::<Value>(&body)
        && patch.get("data").is_some_and(Value::is_object)
    {
        patch["data"][key.as_str()] = json!("*not base64*");
        body = Bytes::from(patch.to_string());
    }
    let def = t.def;
    let ns = t.namespace.clone();
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let sub = t.subresource.clone();
    match (method.as_str(), t.name.clone()) {
        ("GET", Some(name)) => {
            authorize(identity, "get", &t, &name)?;
            let store = inner.store.lock().expect("store");
            let obj = store.get(def, &ns, &name).cloned().ok_or_else(|| status::not_found(def, &name))?;
            let obj = resources::to_external(def, obj);
            if wants_table(&headers) {
                let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
                return Ok(json_response(200, &super::table::render(def, &[obj], &rv, include_object(q))));
            }
            Ok(json_response(200, &obj))
        }
        ("GET", None) => {
            let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
                .map_err(|e| status::bad_request(&e))?;
            let fields = FieldSelector::parse(def, q.get("fieldSelector").map(String::as_str).unwrap_or(""))
                .map_err(|e| status::bad_request(&e))?;
            let watch = truthy(q, "watch");
            let verb = if watch { "watch" } else { "list" };
            authorize(identity, verb, &t, fields.single_name().unwrap_or(""))?;
            if watch {
                let table = wants_table(&headers).then(|| include_object(q).to_string());
                return watch_response(inner, def, &ns, labels, fields, q, table);
            }
            let store = inner.store.lock().expect("store");
            let ns_filter = (!ns.is_empty()).then_some(ns.as_str());
            let matching: Vec<Value> = store
                .list(def, ns_filter)
                .into_iter()
                .map(|o| resources::to_external(def, o.clone()))
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            if wants_table(&headers) {
                return Ok(json_response(
                    200,
                    &super::table::render(def, &matching, &store.rv.to_string(), include_object(q)),
                ));
            }
            let items: Vec<Value> = matching
                .into_iter()
                .map(|mut o| {
                    // Items of a built-in list carry no kind/apiVersion of their own.
                    let m = o.as_object_mut().expect("object");
                    m.remove("kind");
                    m.remove("apiVersion");
                    o
                })
                .collect();
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", def.kind),
                    "apiVersion": def.api_version(),
                    "metadata": {"resourceVersion": store.rv.to_string()},
                    "items": items,
                }),
            ))
        }
        ("POST", None) => {
            authorize(identity, "create", &t, "")?;
            let obj = parse_body(&body, &content_type, def)?;
            check_body_namespace(&obj, &ns)?;
            let manager = manager_of(q, &headers);
            let mut store = inner.store.lock().expect("store");
            let opts = WriteOpts { manager: &manager, dry_run, subresource: None, origin: Origin::Body };
            let created = store.create(def, &ns, obj, &opts)?;
            Ok(json_response(201, &resources::to_external(def, created)))
        }
        ("PUT", Some(name)) => {
            authorize(identity, "update", &t, &name)?;
            let obj = parse_body(&body, &content_type, def)?;
            check_body_namespace(&obj, &ns)?;
            let body_name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            if body_name != name {
                return Err(status::bad_request(&format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            let manager = manager_of(q, &headers);
            let mut store = inner.store.lock().expect("store");
            let current = store.get(def, &ns, &name).cloned();
            if current.is_none() && (!def.create_on_update || sub.is_some()) {
                return Err(status::not_found(def, &name));
            }
            let opts = WriteOpts { manager: &manager, dry_run, subresource: sub.as_deref(), origin: Origin::Body };
            let (obj, created) = store.write(def, &ns, &name, current, obj, &opts, Ownership::Update)?;
            Ok(json_response(if created { 201 } else { 200 }, &resources::to_external(def, obj)))
        }
        ("PATCH", Some(name)) => {
            authorize(identity, "patch", &t, &name)?;
            patch_request(inner, def, &ns, &name, sub.as_deref(), &content_type, &body, q, &headers, dry_run)
        }
        ("DELETE", Some(name)) => {
            authorize(identity, "delete", &t, &name)?;
            let opts: Value =
                if body.is_empty() { json!({}) } else { serde_json::from_slice(&body).unwrap_or(json!({})) };
            let pre_rv = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str);
            let pre_uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
            let dry =
                dry_run || opts.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
            let mut store = inner.store.lock().expect("store");
            let deleted = store.delete(def, &ns, &name, pre_rv, pre_uid, dry)?;
            if def.plural == "namespaces" {
                let mut ns_obj = resources::to_external(def, deleted);
                ns_obj["status"] = json!({"phase": "Terminating"});
                return Ok(json_response(200, &ns_obj));
            }
            let mut details = status::details(def, &name);
            details["uid"] = deleted["metadata"]["uid"].clone();
            Ok(json_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            ))
        }
        (m, _) => {
            let verb = match m {
                "DELETE" => "deletecollection",
                "POST" => "create",
                other => other,
            };
            Err(status::method_not_supported(def, verb))
        }
    }
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(super::table::wants_table)
}

fn include_object(q: &HashMap<String, String>) -> &str {
    q.get("includeObject").map(String::as_str).unwrap_or("PartialObjectMetadata")
}

fn check_body_namespace(obj: &Value, ns: &str) -> Result<(), ApiError> {
    let body_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    if !body_ns.is_empty() && body_ns != ns {
        return Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn patch_request(
    inner: &Arc<Inner>,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &Bytes,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let text = std::str::from_utf8(body).map_err(|e| status::bad_request(&e.to_string()))?;
    let mut store = inner.store.lock().expect("store");
    let current = store.get(def, ns, name).cloned();
    let scope =
        if sub == Some("status") { Scope::Status } else { Scope::Main { ignore_status: def.status_subresource } };
    if media == "application/apply-patch+yaml" {
        let manager = q.get("fieldManager").cloned().unwrap_or_default();
        if manager.is_empty() {
            return Err(status::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[super::status::FieldError::required_detail("fieldManager", "is required for apply patch")],
            ));
        }
        let applied: Value =
            serde_saphyr::from_str(text).map_err(|e| status::bad_request(&format!("error decoding YAML: {e}")))?;
        if !applied.is_object() {
            return Err(status::bad_request("error decoding YAML: not an object"));
        }
        if current.is_none() && sub.is_some() {
            return Err(status::not_found(def, name));
        }
        let force = truthy(q, "force");
        let current_ext = current.clone().map(|c| resources::to_external(def, c));
        let entries = current.as_ref().map(patch::read_managed).unwrap_or_default();
        let now = super::store::now_rfc3339();
        let (obj, entries) = patch::apply(
            current_ext.as_ref(),
            &applied,
            entries,
            &manager,
            force,
            &def.api_version(),
            sub,
            scope,
            &now,
        )
        .map_err(|conflicts| {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| {
                    json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": patch::path_string(&c.path)})
                })
                .collect();
            status::status(409, "Conflict", &patch::conflict_message(&conflicts), Some(json!({"causes": causes})))
        })?;
        let opts = WriteOpts { manager: &manager, dry_run, subresource: sub, origin: Origin::Patch };
        let (obj, created) = store.write(def, ns, name, current, obj, &opts, Ownership::Precomputed(entries))?;
        return Ok(json_response(if created { 201 } else { 200 }, &resources::to_external(def, obj)));
    }
    let Some(current) = current else {
        return Err(status::not_found(def, name));
    };
    let patch_doc: Value = serde_json::from_str(text).map_err(|e| status::bad_request(&e.to_string()))?;
    let mut doc = resources::to_external(def, current.clone());
    match media {
        "application/merge-patch+json" => patch::merge_patch(&mut doc, &patch_doc),
        "application/strategic-merge-patch+json" => {
            if !patch_doc.is_object() {
                return Err(status::bad_request("unable to decode the patch: it is not a JSON object"));
            }
            patch::strategic_merge(&mut doc, &patch_doc)
        }
        "application/json-patch+json" => {
            patch::json_patch(&mut doc, &patch_doc).map_err(|e| status::status(422, "Invalid", &e, None))?
        }
        _ => {
            return Err(status::status(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                None,
            ));
        }
    }
    let manager = manager_of(q, headers);
    let opts = WriteOpts { manager: &manager, dry_run, subresource: sub, origin: Origin::Patch };
    let (obj, _) = store.write(def, ns, name, Some(current), doc, &opts, Ownership::Update)?;
    Ok(json_response(200, &resources::to_external(def, obj)))
}

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
            line(kind, &super::table::render(def, std::slice::from_ref(obj), &rv, include))
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
fn watch_response(
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
