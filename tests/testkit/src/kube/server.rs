//! HTTP side of the test server: authentication, RBAC-style authorization, fault injection, routing and the
//! verbs (get, list, watch, create, update, patch, delete) over the [`Store`].

mod verbs;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::{self, ResourceDef};
use super::status::{self, ApiError};
use super::store::{Change, Store};
use super::{Fault, RequestRecord, Rule};
use verbs::resource_request;

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
