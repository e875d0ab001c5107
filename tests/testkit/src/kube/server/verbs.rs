//! The resource verbs: get, list (and the hand-off to watch), create, update, patch in its four flavours and
//! delete, each authorized against the caller's rules.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::watch::watch_response;
use super::{CorruptData, Identity, Inner, Target, authorize, json_response, manager_of, parse_body, truthy};
use crate::kube::patch::{self, Scope};
use crate::kube::resources::{self, ResourceDef};
use crate::kube::select::{FieldSelector, LabelSelector};
use crate::kube::status::{self, ApiError};
use crate::kube::store::{self, Origin, Ownership, WriteOpts};
use crate::kube::table;

pub(super) async fn resource_request(
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
                return Ok(json_response(200, &table::render(def, &[obj], &rv, include_object(q))));
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
                    &table::render(def, &matching, &store.rv.to_string(), include_object(q)),
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
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(table::wants_table)
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
                &[status::FieldError::required_detail("fieldManager", "is required for apply patch")],
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
        let now = store::now_rfc3339();
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
