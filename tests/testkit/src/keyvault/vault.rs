//! The Key Vault secrets routes: get/set/update/delete, deleted secrets, and the paged lists.

use std::collections::BTreeMap;

use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::MAX_PAGE_SIZE;
use super::control::{new_version_id, now, percent_decode};
use super::http::{Reply, Req, apply_fault, auth_gate, bad_parameter, forbidden, secret_not_found};
use super::state::{DeletedEntry, SecretEntry, Service, Shared, Version};

pub(super) async fn vault(shared: &Shared, req: &Req) -> (Reply, bool) {
    // The gate comes first: the SDK's first (unauthenticated) PUT has an empty body and must get the
    // challenge, not a 400.
    if let Err(reply) = auth_gate(shared, req) {
        return (reply, false);
    }
    if let Some(reply) = apply_fault(shared, req, Service::Vault).await {
        return (reply, true);
    }
    (vault_route(shared, req), true)
}

pub(super) fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn vault_route(shared: &Shared, req: &Req) -> Reply {
    let Some(api_version) = req.param("api-version").filter(|v| !v.is_empty()) else {
        return bad_parameter("The request URI has a missing api-version query parameter.");
    };
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = &req.method;
    match segs.as_slice() {
        ["secrets"] | ["secrets", ""] => {
            if m != Method::GET {
                return method_not_allowed(m);
            }
            list_secrets(shared, req, api_version)
        }
        ["secrets", name, rest @ ..] => {
            let name = percent_decode(name);
            if !valid_name(&name) {
                return bad_parameter(&format!("The request URI contains an invalid name: {name}"));
            }
            let op = match *m {
                Method::GET if rest == ["versions"] => "list",
                Method::GET => "get",
                Method::PUT | Method::PATCH => "set",
                Method::DELETE => "delete",
                _ => "get",
            };
            if shared.lock().denied.contains(&name.to_ascii_lowercase()) {
                return forbidden(shared, &req.host, op);
            }
            match (m.clone(), rest) {
                (Method::PUT, []) => put_secret(shared, req, &name),
                (Method::GET, [] | [""]) => get_secret(shared, req, &name, None),
                (Method::GET, ["versions"]) => list_versions(shared, req, &name, api_version),
                (Method::GET, [version]) => get_secret(shared, req, &name, Some(version)),
                (Method::PATCH, [] | [""]) => patch_secret(shared, req, &name, None),
                (Method::PATCH, [version]) => patch_secret(shared, req, &name, Some(version)),
                (Method::DELETE, []) => delete_secret(shared, req, &name),
                (_, [] | [""] | [_]) => method_not_allowed(m),
                _ => not_found_path(),
            }
        }
        ["deletedsecrets", name, rest @ ..] => {
            let name = percent_decode(name);
            match (m.clone(), rest) {
                (Method::GET, []) => get_deleted(shared, req, &name),
                (Method::DELETE, []) => purge_deleted(shared, &name),
                (Method::POST, ["recover"]) => recover_deleted(shared, req, &name),
                _ => not_found_path(),
            }
        }
        _ => not_found_path(),
    }
}

fn method_not_allowed(m: &Method) -> Reply {
    Reply::kv_error(405, "MethodNotAllowed", &format!("Method {m} is not allowed for this resource."), None)
}

fn not_found_path() -> Reply {
    Reply::kv_error(404, "NotFound", "The requested resource was not found.", None)
}

#[derive(Deserialize)]
struct SetBody {
    value: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

#[derive(Deserialize, Default)]
struct AttrsIn {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

#[derive(Deserialize)]
struct PatchBody {
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

fn put_secret(shared: &Shared, req: &Req, name: &str) -> Reply {
    let body: SetBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(_) => {
            return bad_parameter("The request body is not a valid SecretSetParameters JSON document.");
        }
    };
    let Some(value) = body.value else {
        return bad_parameter("Property 'value' is required.");
    };
    let key = name.to_ascii_lowercase();
    let now = now();
    let attrs = body.attributes.unwrap_or_default();
    let version = Version {
        id: new_version_id(),
        value,
        content_type: body.content_type,
        tags: body.tags,
        enabled: attrs.enabled.unwrap_or(true),
        nbf: attrs.nbf,
        exp: attrs.exp,
        created: now,
        updated: now,
    };
    let mut st = shared.lock();
    if let Some(deleted) = st.deleted.get(&key) {
        let msg = format!(
            "Secret {} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.",
            deleted.entry.name
        );
        return Reply::kv_error(409, "Conflict", &msg, Some("ObjectIsDeletedButRecoverable"));
    }
    let entry = st.secrets.entry(key).or_insert_with(|| SecretEntry { name: name.to_owned(), versions: Vec::new() });
    entry.versions.push(version);
    let bundle = secret_bundle(&req.host, &entry.name, entry.versions.last().expect("just pushed"), true);
    Reply::json(200, bundle)
}

fn find_version<'a>(entry: &'a SecretEntry, version: Option<&str>) -> Option<&'a Version> {
    match version {
        None => entry.versions.last(),
        Some(v) => entry.versions.iter().find(|x| x.id.eq_ignore_ascii_case(v)),
    }
}

fn get_secret(shared: &Shared, req: &Req, name: &str, version: Option<&str>) -> Reply {
    let st = shared.lock();
    let Some(entry) = st.secrets.get(&name.to_ascii_lowercase()) else {
        return secret_not_found(name);
    };
    let Some(v) = find_version(entry, version) else {
        return secret_not_found(&format!("{name}/{}", version.unwrap_or_default()));
    };
    if !v.enabled {
        // The real service's answer to a GET of a disabled version, verbatim (azure-sdk-for-js#24756,
        // azure-powershell#15378): 403, code `Forbidden`, inner error `SecretDisabled`. Only the inner code tells
        // it apart from a missing 'get' permission (403 `Forbidden` too).
        return Reply::kv_error(
            403,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    Reply::json(200, secret_bundle(&req.host, &entry.name, v, true))
}

fn patch_secret(shared: &Shared, req: &Req, name: &str, version: Option<&str>) -> Reply {
    let body: PatchBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(_) => {
            return bad_parameter("The request body is not a valid SecretUpdateParameters JSON document.");
        }
    };
    let mut st = shared.lock();
    let Some(entry) = st.secrets.get_mut(&name.to_ascii_lowercase()) else {
        return secret_not_found(name);
    };
    let display = entry.name.clone();
    let idx = match version {
        None => entry.versions.len().checked_sub(1),
        Some(v) => entry.versions.iter().position(|x| x.id.eq_ignore_ascii_case(v)),
    };
    let Some(idx) = idx else {
        return secret_not_found(&format!("{name}/{}", version.unwrap_or_default()));
    };
    let v = &mut entry.versions[idx];
    if let Some(ct) = body.content_type {
        v.content_type = Some(ct);
    }
    if let Some(tags) = body.tags {
        v.tags = Some(tags);
    }
    if let Some(a) = body.attributes {
        if let Some(e) = a.enabled {
            v.enabled = e;
        }
        if a.nbf.is_some() {
            v.nbf = a.nbf;
        }
        if a.exp.is_some() {
            v.exp = a.exp;
        }
    }
    v.updated = now();
    // The update response carries no value.
    Reply::json(200, secret_bundle(&req.host, &display, v, false))
}

fn deleted_bundle(host: &str, d: &DeletedEntry) -> Value {
    let v = d.entry.versions.last().expect("deleted secret has a version");
    let mut b = secret_bundle(host, &d.entry.name, v, false);
    b["recoveryId"] = json!(format!("https://{host}/deletedsecrets/{}", d.entry.name));
    b["deletedDate"] = json!(d.deleted_date);
    b["scheduledPurgeDate"] = json!(d.deleted_date + 90 * 86_400);
    b
}

fn delete_secret(shared: &Shared, req: &Req, name: &str) -> Reply {
    let key = name.to_ascii_lowercase();
    let mut st = shared.lock();
    let Some(entry) = st.secrets.remove(&key) else {
        return secret_not_found(name);
    };
    let d = DeletedEntry { entry, deleted_date: now() };
    let body = deleted_bundle(&req.host, &d);
    st.deleted.insert(key, d);
    Reply::json(200, body)
}

fn deleted_not_found(name: &str) -> Reply {
    Reply::kv_error(404, "SecretNotFound", &format!("Deleted Secret not found: {name}"), None)
}

fn get_deleted(shared: &Shared, req: &Req, name: &str) -> Reply {
    match shared.lock().deleted.get(&name.to_ascii_lowercase()) {
        Some(d) => Reply::json(200, deleted_bundle(&req.host, d)),
        None => deleted_not_found(name),
    }
}

fn purge_deleted(shared: &Shared, name: &str) -> Reply {
    match shared.lock().deleted.remove(&name.to_ascii_lowercase()) {
        Some(_) => Reply::empty(204),
        None => deleted_not_found(name),
    }
}

fn recover_deleted(shared: &Shared, req: &Req, name: &str) -> Reply {
    let key = name.to_ascii_lowercase();
    let mut st = shared.lock();
    let Some(d) = st.deleted.remove(&key) else {
        return deleted_not_found(name);
    };
    let body = secret_bundle(&req.host, &d.entry.name, d.entry.versions.last().expect("version"), false);
    st.secrets.insert(key, d.entry);
    Reply::json(200, body)
}

fn attributes(v: &Version) -> Value {
    let mut a = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    });
    if let Some(nbf) = v.nbf {
        a["nbf"] = json!(nbf);
    }
    if let Some(exp) = v.exp {
        a["exp"] = json!(exp);
    }
    a
}

/// A SecretBundle (`with_value`) or the bundle without value (update/delete responses).
fn secret_bundle(host: &str, name: &str, v: &Version, with_value: bool) -> Value {
    let mut b = json!({"id": format!("https://{host}/secrets/{name}/{}", v.id), "attributes": attributes(v)});
    if with_value {
        b["value"] = json!(v.value);
    }
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    if let Some(tags) = &v.tags {
        b["tags"] = json!(tags);
    }
    b
}

/// A SecretItem: `id` is unversioned for the secrets list, versioned for the versions list.
fn secret_item(id: String, v: &Version) -> Value {
    let mut b = json!({"id": id, "attributes": attributes(v)});
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    if let Some(tags) = &v.tags {
        b["tags"] = json!(tags);
    }
    b
}

/// Parses `maxresults` and `$skiptoken`; the skiptoken is the decimal offset of the next item.
fn page_params(req: &Req) -> Result<(usize, usize), Reply> {
    let max = match req.param("maxresults") {
        None => MAX_PAGE_SIZE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(bad_parameter(&format!("Invalid maxresults value {s}. It must be between 1 and 25.")));
            }
        },
    };
    let skip = match req.param("$skiptoken") {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| bad_parameter("The $skiptoken parameter is invalid."))?,
    };
    Ok((max, skip))
}

fn page(req: &Req, items: Vec<Value>, path: &str, api_version: &str) -> Reply {
    let (max, skip) = match page_params(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(max).collect();
    let next = skip + value.len();
    let next_link = if next < total {
        let api = url::form_urlencoded::byte_serialize(api_version.as_bytes()).collect::<String>();
        json!(format!("https://{}{path}?api-version={api}&$skiptoken={next}&maxresults={max}", req.host))
    } else {
        Value::Null
    };
    Reply::json(200, json!({"value": value, "nextLink": next_link}))
}

fn list_secrets(shared: &Shared, req: &Req, api_version: &str) -> Reply {
    let items: Vec<Value> = shared
        .lock()
        .secrets
        .values()
        .filter_map(|e| {
            let v = e.versions.last()?;
            Some(secret_item(format!("https://{}/secrets/{}", req.host, e.name), v))
        })
        .collect();
    page(req, items, "/secrets", api_version)
}

fn list_versions(shared: &Shared, req: &Req, name: &str, api_version: &str) -> Reply {
    let st = shared.lock();
    let Some(entry) = st.secrets.get(&name.to_ascii_lowercase()) else {
        return secret_not_found(name);
    };
    let items = entry
        .versions
        .iter()
        .map(|v| secret_item(format!("https://{}/secrets/{}/{}", req.host, entry.name, v.id), v))
        .collect();
    let path = format!("/secrets/{}/versions", entry.name);
    drop(st);
    page(req, items, &path, api_version)
}
