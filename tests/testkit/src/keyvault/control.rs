//! The `/_emulator/…` control surface and small helpers.

use std::time::Duration;

use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::count_requests;
use super::http::{Reply, Req, bad_parameter, secret_not_found};
use super::state::{Fault, Shared};
use super::vault::valid_name;

#[derive(Deserialize)]
struct FaultSpec {
    status: u16,
    count: Option<usize>,
    retry_after: Option<u64>,
    latency_ms: Option<u64>,
    method: Option<String>,
    path_contains: Option<String>,
}

pub(super) fn control(shared: &Shared, req: &Req) -> Reply {
    let rest = req.path.trim_start_matches("/_emulator").trim_start_matches('/');
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &req.method;
    match (m.clone(), segs.as_slice()) {
        (Method::GET, ["info"]) => Reply::json(200, shared.info.clone()),
        (Method::PUT | Method::POST, ["secrets", name]) => {
            if !valid_name(name) {
                return bad_parameter(&format!("The request URI contains an invalid name: {name}"));
            }
            let value = String::from_utf8_lossy(&req.body).into_owned();
            let version = shared.set_secret(name, &value);
            Reply::json(200, json!({"name": name, "version": version}))
        }
        (Method::GET, ["secrets", name, "versions"]) => {
            let versions: Vec<String> = shared
                .lock()
                .secrets
                .get(&name.to_ascii_lowercase())
                .map(|e| e.versions.iter().map(|v| v.id.clone()).collect())
                .unwrap_or_default();
            Reply::json(200, json!({"versions": versions}))
        }
        (Method::POST, ["secrets", name, "deny"]) => {
            shared.lock().denied.insert(name.to_ascii_lowercase());
            Reply::json(200, json!({"denied": name}))
        }
        (Method::POST, ["secrets", name, "allow"]) => {
            shared.lock().denied.remove(&name.to_ascii_lowercase());
            Reply::json(200, json!({"allowed": name}))
        }
        (Method::POST, ["secrets", name, action @ ("disable" | "enable")]) => {
            if shared.set_enabled(name, *action == "enable") {
                Reply::json(200, json!({"name": name, "enabled": *action == "enable"}))
            } else {
                secret_not_found(name)
            }
        }
        (Method::POST, ["faults"]) => match serde_json::from_slice::<FaultSpec>(&req.body) {
            Ok(spec) => {
                let fault = Fault {
                    method: spec.method,
                    path_contains: spec.path_contains,
                    status: spec.status,
                    count: spec.count.unwrap_or(1),
                    retry_after: spec.retry_after,
                    latency: spec.latency_ms.map(Duration::from_millis),
                };
                shared.lock().faults.push(fault);
                Reply::json(200, json!({"ok": true}))
            }
            Err(e) => bad_parameter(&format!("invalid fault: {e}")),
        },
        (Method::DELETE, ["faults"]) => {
            shared.lock().faults.clear();
            Reply::json(200, json!({"ok": true}))
        }
        (Method::GET, ["requests"]) => Reply::json(200, json!(shared.lock().requests)),
        (Method::GET, ["requests", "count"]) => {
            let n = count_requests(
                &shared.lock().requests,
                req.param("method").unwrap_or(""),
                req.param("path_prefix").unwrap_or(""),
            );
            Reply::json(200, json!({"count": n}))
        }
        (Method::DELETE, ["requests"]) => {
            shared.lock().requests.clear();
            Reply::json(200, json!({"ok": true}))
        }
        _ => Reply::kv_error(404, "NotFound", "Unknown emulator control endpoint.", None),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers

pub(super) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

pub(super) fn new_version_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(super) fn normalize_audience(a: &str) -> String {
    a.strip_suffix("/.default").unwrap_or(a).trim_end_matches('/').to_owned()
}

pub(super) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// A JWT-shaped (unsigned) federated token like the one AKS projects into pods. The emulator compares it
/// byte for byte; its claims only make it look right to a person reading the file.
pub(super) fn fake_federated_jwt(client_id: &str) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "emulator"});
    let now = now();
    let claims = json!({
        "aud": ["api://AzureADTokenExchange"],
        "iss": "https://oidc.emulator.test/",
        "sub": "system:serviceaccount:istio-system:cacerts-sync",
        "azp": client_id,
        "iat": now,
        "nbf": now,
        "exp": now + 86_400,
        "jti": crate::new_uuid(),
    });
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    format!("{}.{}.{sig}", b64(&header), b64(&claims))
}
