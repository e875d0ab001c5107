//! HTTP plumbing shared by every route (request parsing, reply building, fault injection), the Key Vault
//! error replies and the vault's bearer-token gate.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::control::{control, normalize_audience, now};
use super::entra::{entra_error, managed_identity, sts};
use super::state::{RequestRecord, Service, Shared};
use super::vault::vault;

const JSON_CT: &str = "application/json; charset=utf-8";

// ---------------------------------------------------------------------------------------------------------
// HTTP plumbing

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenerKind {
    Https,
    Http,
}

#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) shared: Arc<Shared>,
    pub(super) listener: ListenerKind,
}

/// A reply before the common headers are added.
pub(super) struct Reply {
    pub(super) status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Reply {
    pub(super) fn json(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body: Some(body) }
    }

    pub(super) fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: None }
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A Key Vault error: body `{"error":{"code","message"[,"innererror"]}}` and `x-ms-error-code`.
    pub(super) fn kv_error(status: u16, code: &str, message: &str, inner: Option<&str>) -> Self {
        let mut error = json!({"code": code, "message": message});
        if let Some(inner) = inner {
            error["innererror"] = json!({"code": inner});
        }
        Self::json(status, json!({"error": error})).header("x-ms-error-code", code)
    }
}

pub(super) struct Req {
    pub(super) method: Method,
    pub(super) path: String,
    query_raw: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) host: String,
}

impl Req {
    pub(super) fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(super) async fn handle(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query_raw = uri.query().unwrap_or("").to_owned();
    // Query keys arrive percent-encoded (`%24skiptoken`); decode both keys and values.
    let query = url::form_urlencoded::parse(query_raw.as_bytes()).into_owned().collect();
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| ctx.shared.cfg.authority.trim_start_matches("https://").to_owned());
    let req = Req { method, path: uri.path().to_owned(), query_raw, query, headers, body, host };
    let client_request_id = req.header("x-ms-client-request-id").map(str::to_owned);

    let (reply, record) = if req.path == "/_emulator" || req.path.starts_with("/_emulator/") {
        (control(&ctx.shared, &req), None)
    } else {
        let service = match ctx.listener {
            ListenerKind::Http => Service::ManagedIdentity,
            ListenerKind::Https if is_sts_path(&req.path) => Service::Sts,
            ListenerKind::Https => Service::Vault,
        };
        let (reply, authorized) = match service {
            Service::Vault => vault(&ctx.shared, &req).await,
            Service::Sts => sts(&ctx.shared, &req).await,
            Service::ManagedIdentity => managed_identity(&ctx.shared, &req).await,
        };
        let record = RequestRecord {
            service,
            method: req.method.as_str().to_owned(),
            path: req.path.clone(),
            query: req.query_raw.clone(),
            status: reply.status,
            authorized,
        };
        (reply, Some(record))
    };
    if let Some(record) = record {
        ctx.shared.lock().requests.push(record);
    }

    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", JSON_CT)
        .header("x-ms-request-id", crate::new_uuid())
        .header("cache-control", "no-cache");
    if let Some(id) = client_request_id {
        builder = builder.header("x-ms-client-request-id", id);
    }
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            builder = builder.header(name, v);
        }
    }
    let body = reply.body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
    builder.body(body).expect("emulator response")
}

fn is_sts_path(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    segs.len() == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token"
}

/// Applies an injected fault: sleeps its latency, then returns the fault reply (unless status 0).
pub(super) async fn apply_fault(shared: &Shared, req: &Req, service: Service) -> Option<Reply> {
    let fault = shared.take_fault(req.method.as_str(), &req.path)?;
    if let Some(latency) = fault.latency {
        tokio::time::sleep(latency).await;
    }
    if fault.status == 0 {
        return None;
    }
    let status = fault.status;
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let mut reply = match service {
        Service::Vault => match status {
            401 => unauthorized(shared, "AKV10000: Request is missing a Bearer or PoP token."),
            403 => forbidden(shared, &req.host, "get"),
            429 => Reply::kv_error(
                429,
                "Throttled",
                "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
                None,
            ),
            _ => {
                let code = match status {
                    400 => "BadParameter",
                    404 => "NotFound",
                    409 => "Conflict",
                    500 => "InternalServerError",
                    502 => "BadGateway",
                    503 => "ServiceUnavailable",
                    504 => "GatewayTimeout",
                    _ => reason,
                };
                let code = code.replace(' ', "");
                Reply::kv_error(status, &code, &format!("Injected fault: {reason}."), None)
            }
        },
        Service::Sts => {
            let (error, code, text) = match status {
                400 => ("invalid_request", 900144, "The request is invalid."),
                401 => ("invalid_client", 7000215, "Invalid client secret provided."),
                _ => ("temporarily_unavailable", 90033, "A transient error has occurred. Please try again."),
            };
            entra_error(status, error, code, text)
        }
        Service::ManagedIdentity => Reply::json(status, json!({"statusCode": status, "message": reason})),
    };
    match fault.retry_after {
        Some(secs) => reply = reply.header("retry-after", secs.to_string()),
        None if status == 429 => reply = reply.header("retry-after", "1"),
        None => {}
    }
    Some(reply)
}

// ---------------------------------------------------------------------------------------------------------
// Key Vault

// ---------------------------------------------------------------------------------------------------------
// Key Vault errors and the auth gate

fn unauthorized(shared: &Shared, message: &str) -> Reply {
    let challenge = format!(
        "Bearer authorization=\"{}/{}\", resource=\"{}\"",
        shared.cfg.authority, shared.cfg.tenant_id, shared.cfg.challenge_resource
    );
    Reply::kv_error(401, "Unauthorized", message, None).header("www-authenticate", challenge)
}

pub(super) fn forbidden(shared: &Shared, host: &str, op: &str) -> Reply {
    let vault = host.split(['.', ':']).next().unwrap_or(host);
    let message = format!(
        "The user, group or application 'appid={};oid={};iss=https://sts.windows.net/{}/' does not have secrets {op} permission on key vault '{vault};location=local'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
        shared.cfg.client_id, shared.cfg.object_id, shared.cfg.tenant_id
    );
    Reply::kv_error(403, "Forbidden", &message, Some("AccessDenied"))
}

pub(super) fn secret_not_found(name_or_id: &str) -> Reply {
    Reply::kv_error(
        404,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name_or_id} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

pub(super) fn bad_parameter(message: &str) -> Reply {
    Reply::kv_error(400, "BadParameter", message, None)
}

/// Checks the bearer token: `Ok(())` if valid for the vault, otherwise the 401 challenge reply.
pub(super) fn auth_gate(shared: &Shared, req: &Req) -> Result<(), Reply> {
    let token = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(unauthorized(shared, "AKV10000: Request is missing a Bearer or PoP token."));
    };
    let info = shared.lock().tokens.get(token).cloned();
    let expected = normalize_audience(&shared.cfg.challenge_resource);
    match info {
        None => Err(unauthorized(
            shared,
            "AKV10032: Invalid issuer or signature. The token was not issued by this emulator.",
        )),
        Some(t) if t.expires_at <= now() => Err(unauthorized(shared, "AKV10032: Token is expired.")),
        Some(t) if t.audience != expected => Err(unauthorized(
            shared,
            &format!("AKV10022: Invalid audience. Expected {expected}, found: {}.", t.audience),
        )),
        Some(_) => Ok(()),
    }
}
