//! The Entra ID token endpoint (client secret and workload identity) and the App Service managed-identity
//! endpoint.

use std::collections::HashMap;

use axum::http::Method;
use serde_json::json;

use super::http::{Reply, Req, apply_fault};
use super::state::{Service, Shared};
use super::{JWT_BEARER, MSI_API_VERSION};

pub(super) fn entra_error(status: u16, error: &str, code: u32, text: &str) -> Reply {
    let trace_id = crate::new_uuid();
    let correlation_id = crate::new_uuid();
    let timestamp = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%SZ").to_string();
    let description =
        format!("AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}");
    Reply::json(
        status,
        json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

fn missing_param(name: &str) -> Reply {
    entra_error(
        400,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

pub(super) async fn sts(shared: &Shared, req: &Req) -> (Reply, bool) {
    if let Some(reply) = apply_fault(shared, req, Service::Sts).await {
        return (reply, false);
    }
    let reply = sts_token(shared, req);
    let ok = reply.status == 200;
    (reply, ok)
}

fn sts_token(shared: &Shared, req: &Req) -> Reply {
    let cfg = &shared.cfg;
    if req.method != Method::POST {
        return entra_error(
            400,
            "invalid_request",
            900561,
            &format!("The endpoint only accepts POST, OPTIONS requests. Received a {} request.", req.method),
        );
    }
    let tenant = req.path.trim_start_matches('/').split('/').next().unwrap_or_default();
    if tenant != cfg.tenant_id {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body).into_owned().collect();
    let Some(grant_type) = form.get("grant_type") else {
        return missing_param("grant_type");
    };
    if grant_type != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let Some(client_id) = form.get("client_id") else {
        return missing_param("client_id");
    };
    if client_id != &cfg.client_id {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let Some(scope) = form.get("scope") else {
        return missing_param("scope");
    };
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let [single] = scopes.as_slice() else {
        return entra_error(
            400,
            "invalid_scope",
            70011,
            &format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    };
    let Some(resource) = single.strip_suffix("/.default") else {
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    if let Some(secret) = form.get("client_secret") {
        if secret != &cfg.client_secret {
            return entra_error(
                401,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
    } else if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return entra_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.");
        }
        if assertion.trim() != cfg.federated_token.trim() {
            return entra_error(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion. Assertion Audience: 'api://AzureADTokenExchange'.",
            );
        }
    } else {
        return entra_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let (token, _) = shared.issue_token(resource);
    Reply::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": cfg.token_lifetime,
            "ext_expires_in": cfg.token_lifetime,
            "access_token": token,
        }),
    )
    .header("pragma", "no-cache")
}

pub(super) async fn managed_identity(shared: &Shared, req: &Req) -> (Reply, bool) {
    if let Some(reply) = apply_fault(shared, req, Service::ManagedIdentity).await {
        return (reply, false);
    }
    let reply = msi_token(shared, req);
    let ok = reply.status == 200;
    (reply, ok)
}

fn msi_error(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({"statusCode": status, "message": message, "correlationId": crate::new_uuid()}))
}

fn msi_token(shared: &Shared, req: &Req) -> Reply {
    let cfg = &shared.cfg;
    if req.path != "/msi/token" {
        return msi_error(404, "Not found.");
    }
    if req.method != Method::GET {
        return msi_error(405, "Method not allowed.");
    }
    if req.header("x-identity-header") != Some(cfg.identity_header.as_str()) {
        return msi_error(400, "The X-IDENTITY-HEADER header is missing or invalid.");
    }
    if !req.header("metadata").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return msi_error(400, "Required metadata header not specified.");
    }
    if req.param("api-version") != Some(MSI_API_VERSION) {
        return msi_error(400, "The api-version is missing or not supported.");
    }
    let Some(resource) = req.param("resource").filter(|r| !r.is_empty()) else {
        return msi_error(400, "Required query parameter resource not specified.");
    };
    let identity_ok = match (req.param("client_id"), req.param("object_id"), req.param("msi_res_id")) {
        (None, None, None) => true,
        (Some(c), None, None) => c == cfg.client_id,
        (None, Some(o), None) => o == cfg.object_id,
        _ => false,
    };
    if !identity_ok {
        return msi_error(400, "Unable to load the proper Managed Identity.");
    }
    let (token, expires_on) = shared.issue_token(resource);
    Reply::json(
        200,
        json!({
            "access_token": token,
            // The App Service protocol sends expires_on as a string; azure_identity rejects a number.
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": cfg.client_id,
        }),
    )
}
