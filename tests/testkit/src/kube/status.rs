//! `Status` bodies exactly as kube-apiserver writes them (`k8s.io/apimachinery/pkg/api/errors`).
//!
//! Every message format here was checked against `../shared/kube-api-facts.md` (recorded from v1.32) or the
//! constructor of the same name in apimachinery (`NewNotFound`, `NewConflict`, `NewForbidden`, `NewInvalid`, …).

use serde_json::{Value, json};

use super::resources::ResourceDef;

/// An API error: the HTTP code and the `Status` object sent as the body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub body: Value,
    /// `Retry-After` header in seconds (429 and some 5xx).
    pub retry_after: Option<u64>,
}

/// Builds a `Status` failure body. `details` is omitted when `None` (as for 401 and 400).
pub(crate) fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> ApiError {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    body["code"] = json!(code);
    ApiError { code, body, retry_after: None }
}

/// `details` as apimachinery fills them: `name` and `group` only when non-empty, `kind` = the resource (plural).
pub(crate) fn details(def: &ResourceDef, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !def.group.is_empty() {
        d.insert("group".into(), json!(def.group));
    }
    d.insert("kind".into(), json!(def.plural));
    Value::Object(d)
}

/// 404 `secrets "nope" not found` / `deployments.apps "istiod" not found`.
pub(crate) fn not_found(def: &ResourceDef, name: &str) -> ApiError {
    status(404, "NotFound", &format!("{} \"{}\" not found", def.qualified(), name), Some(details(def, name)))
}

/// 409 AlreadyExists on a duplicate create.
pub(crate) fn already_exists(def: &ResourceDef, name: &str) -> ApiError {
    status(409, "AlreadyExists", &format!("{} \"{}\" already exists", def.qualified(), name), Some(details(def, name)))
}

/// 409 Conflict for a stale `metadata.resourceVersion` (PUT, or a patch that carries one as precondition).
pub(crate) fn conflict(def: &ResourceDef, name: &str) -> ApiError {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            def.qualified(),
            name
        ),
        Some(details(def, name)),
    )
}

/// 409 Conflict for a failed `DeleteOptions.preconditions.resourceVersion` (`NewConflict` with the storage error text).
pub(crate) fn delete_precondition_conflict(def: &ResourceDef, name: &str, want: &str, have: &str) -> ApiError {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{}\": the ResourceVersion in the precondition ({}) does not match the ResourceVersion in record ({}). The object might have been modified",
            def.qualified(),
            name,
            want,
            have
        ),
        Some(details(def, name)),
    )
}

/// 401 for a missing or wrong bearer token: message `Unauthorized`, no details.
pub(crate) fn unauthorized() -> ApiError {
    status(401, "Unauthorized", "Unauthorized", None)
}

/// 403 the way RBAC denies: `secrets "cacerts" is forbidden: User "…" cannot patch resource "secrets" in API group "" in the namespace "istio-system"`.
pub(crate) fn forbidden(
    def: &ResourceDef,
    name: &str,
    user: &str,
    verb: &str,
    subresource: Option<&str>,
    namespace: &str,
) -> ApiError {
    let resource = match subresource {
        Some(s) => format!("{}/{}", def.plural, s),
        None => def.plural.to_string(),
    };
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{namespace}\"")
    };
    let reason =
        format!("User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}", def.group);
    let message = if name.is_empty() {
        format!("{} is forbidden: {reason}", def.qualified())
    } else {
        format!("{} \"{name}\" is forbidden: {reason}", def.qualified())
    };
    status(403, "Forbidden", &message, Some(details(def, name)))
}

/// 400 BadRequest (no details), e.g. a body that cannot be decoded or a bad selector.
pub(crate) fn bad_request(message: &str) -> ApiError {
    status(400, "BadRequest", message, None)
}

/// 405 for a verb the resource does not support.
pub(crate) fn method_not_supported(def: &ResourceDef, verb: &str) -> ApiError {
    status(
        405,
        "MethodNotAllowed",
        &format!("{verb} is not supported on resources of kind \"{}\"", def.qualified()),
        Some(json!({"group": def.group, "kind": def.plural})),
    )
}

/// One field error of an Invalid (422) status, as `field.Error` renders it.
pub(crate) struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, …
    pub reason: &'static str,
    pub field: String,
    /// The error body (`Invalid value: "x": field is immutable`, `Required value`, …).
    pub body: String,
}

impl FieldError {
    /// `field.Invalid(path, value, detail)` for a string value (`%q`-quoted).
    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        let quoted = serde_json::to_string(value).unwrap_or_default();
        let body = if detail.is_empty() {
            format!("Invalid value: {quoted}")
        } else {
            format!("Invalid value: {quoted}: {detail}")
        };
        Self { reason: "FieldValueInvalid", field: field.into(), body }
    }
    /// `field.Required(path, "")`.
    pub fn required(field: &str) -> Self {
        Self { reason: "FieldValueRequired", field: field.into(), body: "Required value".into() }
    }
    /// `field.Required(path, detail)`.
    pub fn required_detail(field: &str, detail: &str) -> Self {
        Self { reason: "FieldValueRequired", field: field.into(), body: format!("Required value: {detail}") }
    }
    /// `field.Forbidden(path, detail)`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self { reason: "FieldValueForbidden", field: field.into(), body: format!("Forbidden: {detail}") }
    }
}

/// 422 Invalid as `errors.NewInvalid(kind, name, errs)` builds it: one error is printed bare, several in `[a, b]`.
pub(crate) fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> ApiError {
    let rendered: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.field, e.body)).collect();
    let agg = if rendered.len() == 1 { rendered[0].clone() } else { format!("[{}]", rendered.join(", ")) };
    let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let message = format!("{qualified_kind} \"{name}\" is invalid: {agg}");
    let causes: Vec<Value> =
        errs.iter().map(|e| json!({"reason": e.reason, "message": e.body, "field": e.field})).collect();
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    d.insert("causes".into(), Value::Array(causes));
    status(422, "Invalid", &message, Some(Value::Object(d)))
}

/// A `Status` for an injected fault: the reason apimachinery pairs with `code`.
pub(crate) fn for_code(code: u16, message: Option<&str>) -> ApiError {
    let (reason, default_message) = match code {
        400 => ("BadRequest", "the server rejected our request for an unknown reason"),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "forbidden"),
        404 => ("NotFound", "the server could not find the requested resource"),
        405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
        409 => ("Conflict", "the server reported a conflict"),
        410 => ("Expired", "the resource version is too old"),
        422 => ("Invalid", "the server rejected our request due to an error in our request"),
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        500 => ("InternalError", "an error on the server (\"\") has prevented the request from succeeding"),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request",
        ),
        _ => ("", "unknown"),
    };
    status(code, reason, message.unwrap_or(default_message), None)
}
