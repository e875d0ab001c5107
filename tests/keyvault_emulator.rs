//! Fidelity proof of the Key Vault + Entra + managed-identity emulator (`cacerts_testkit::keyvault`): the
//! official, unmodified Azure SDK for Rust (`azure_security_keyvault_secrets` 1.0.x, `azure_identity` 1.0,
//! `azure_core` 1.x) drives it, configured only through settings an SDK user can set (options structs, an
//! injected reqwest 0.13 `Transport` that trusts the emulator CA, fast retry options).
//!
//! This file: the secrets API (set, get, list and paging, 404, 403, throttling and server errors, TLS trust), the
//! raw wire checks and the HTTP control surface. The credentials (client secret and workload identity errors, the
//! 401 challenge and its verification, credentials configured from the process environment) are tested in
//! `tests/keyvault_emulator_auth.rs`; the SDK clients both files use are in `tests/keyvault_common/mod.rs`.
//!
//! Run: `cargo test --test keyvault_emulator --test keyvault_emulator_auth`.

mod keyvault_common;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{RetryOptions, StatusCode, headers::HeaderName};
use azure_security_keyvault_secrets::ResourceExt;
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::models::{
    SecretClientListSecretPropertiesOptions, SecretClientListSecretPropertiesVersionsOptions,
};
use cacerts_testkit::keyvault::{Fault, KeyVaultEmulator, Service};
use cacerts_testkit::tls::TestCa;
use futures::TryStreamExt;
use keyvault_common::{
    client_for, fast_retry, http_error, secret_client, secret_credential, set_params, transport, vault_requests,
};

#[tokio::test]
async fn client_secret_credential_sets_and_gets_latest_and_versions() {
    let emu = KeyVaultEmulator::start().await;
    let client = client_for(&emu);

    let first = client.set_secret("ca-cert", set_params("v1").try_into().unwrap(), None).await.unwrap();
    let first = first.into_model().unwrap();
    let first_id = first.resource_id().unwrap();
    assert_eq!(first_id.vault_url, emu.vault_url());
    assert_eq!(first_id.name, "ca-cert");
    let first_version = first_id.version.clone().unwrap();
    assert_eq!(first_version.len(), 32);
    assert!(first_version.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(first.attributes.as_ref().unwrap().created.is_some());

    let second = emu.set_secret("ca-cert", "v2");
    assert_eq!(emu.secret_versions("ca-cert"), vec![first_version.clone(), second.clone()]);

    let latest = client.get_secret("ca-cert", None).await.unwrap().into_model().unwrap();
    assert_eq!(latest.value.as_deref(), Some("v2"));
    assert_eq!(latest.resource_id().unwrap().version, Some(second));

    let old = client
        .get_secret(
            "ca-cert",
            Some(SecretClientGetSecretOptions { secret_version: Some(first_version), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(old.value.as_deref(), Some("v1"));

    // The wire sequence of the notes: unauthenticated PUT (empty body) -> 401 challenge -> token -> PUT 200.
    let reqs = emu.requests();
    assert_eq!((reqs[0].method.as_str(), reqs[0].status, reqs[0].authorized), ("PUT", 401, false));
    assert_eq!(reqs[1].service, Service::Sts);
    assert_eq!(reqs[1].path, format!("/{}/oauth2/v2.0/token", emu.tenant_id()));
    assert_eq!((reqs[2].method.as_str(), reqs[2].status, reqs[2].authorized), ("PUT", 200, true));
    // Later calls reuse the cached scope and token: one STS request in total.
    assert_eq!(emu.request_count("POST", "/test-tenant/oauth2"), 1);
    assert_eq!(vault_requests(&emu, "GET", "/secrets/ca-cert/"), (1, 1));
}

#[tokio::test]
async fn listing_secrets_and_versions_pages_through_next_links() {
    let emu = KeyVaultEmulator::start().await;
    for name in ["a1", "a2", "a3", "a4", "a5"] {
        emu.set_secret(name, name);
    }
    let versions: Vec<String> = (0..3).map(|i| emu.set_secret("rotating", &format!("r{i}"))).collect();
    let client = client_for(&emu);

    let pager = client
        .list_secret_properties(Some(SecretClientListSecretPropertiesOptions {
            maxresults: Some(2),
            ..Default::default()
        }))
        .unwrap();
    let items: Vec<_> = pager.try_collect().await.unwrap();
    let names: Vec<String> = items.iter().map(|p| p.resource_id().unwrap().name).collect();
    assert_eq!(names, ["a1", "a2", "a3", "a4", "a5", "rotating"]);
    assert!(items.iter().all(|p| p.resource_id().unwrap().version.is_none()));
    // 6 items at 2 per page = 3 authorized page requests, the later ones through `$skiptoken` nextLinks.
    let pages: Vec<_> = emu.requests().into_iter().filter(|r| r.path == "/secrets" && r.authorized).collect();
    assert_eq!(pages.len(), 3);
    assert!(pages[1].query.contains("%24skiptoken=2"), "{}", pages[1].query);

    let pager = client
        .list_secret_properties_versions(
            "rotating",
            Some(SecretClientListSecretPropertiesVersionsOptions { maxresults: Some(2), ..Default::default() }),
        )
        .unwrap();
    let listed: Vec<String> = pager
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|p| p.resource_id().unwrap().version.unwrap())
        .collect();
    assert_eq!(listed, versions);
    assert_eq!(vault_requests(&emu, "GET", "/secrets/rotating/versions").1, 2);
}

#[tokio::test]
async fn missing_secret_is_404_secret_not_found_and_not_retried() {
    let emu = KeyVaultEmulator::start().await;
    let client = client_for(&emu);
    let err = client.get_secret("nope", None).await.unwrap_err();
    assert_eq!(http_error(&err), (StatusCode::NotFound, Some("SecretNotFound".to_owned())));
    assert!(err.to_string().contains("A secret with (name/id) nope was not found in this key vault"), "{err}");
    assert_eq!(vault_requests(&emu, "GET", "/secrets/nope/"), (2, 1));
}

#[tokio::test]
async fn listing_versions_of_an_unknown_secret_is_404() {
    let emu = KeyVaultEmulator::start().await;
    let client = client_for(&emu);
    let pager = client.list_secret_properties_versions("ghost", None).unwrap();
    let err = pager.try_collect::<Vec<_>>().await.unwrap_err();
    assert_eq!(http_error(&err).0, StatusCode::NotFound);
}

#[tokio::test]
async fn denied_secret_is_403_forbidden_until_access_is_granted_again() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("ca-key", "k");
    emu.deny_secret("ca-key");
    let client = client_for(&emu);
    let err = client.get_secret("ca-key", None).await.unwrap_err();
    assert_eq!(http_error(&err), (StatusCode::Forbidden, Some("Forbidden".to_owned())));
    let body: serde_json::Value = match err.kind() {
        ErrorKind::HttpResponse { raw_response: Some(raw), .. } => serde_json::from_slice(raw.body().as_ref()).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
    // 403 is not retried: one challenge probe plus one authorized attempt.
    assert_eq!(vault_requests(&emu, "GET", "/secrets/ca-key/"), (2, 1));

    emu.allow_secret("ca-key");
    let secret = client.get_secret("ca-key", None).await.unwrap().into_model().unwrap();
    assert_eq!(secret.value.as_deref(), Some("k"));
}

#[tokio::test]
async fn throttling_is_retried_honouring_retry_after_then_succeeds() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("root-cert", "r");
    emu.inject_fault(Fault::status(429).times(2).retry_after(1).path("/secrets/root-cert").method("GET"));
    let client = client_for(&emu);
    let secret = client.get_secret("root-cert", None).await.unwrap().into_model().unwrap();
    assert_eq!(secret.value.as_deref(), Some("r"));
    let statuses: Vec<u16> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path == "/secrets/root-cert/" && r.authorized)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[tokio::test]
async fn throttling_without_retries_surfaces_429_throttled_with_retry_after() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("root-cert", "r");
    emu.inject_fault(Fault::status(429).retry_after(7).path("/secrets/root-cert"));
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = secret_credential(&emu, &t, emu.client_secret());
    let client = secret_client(&emu.vault_url(), cred, &t, RetryOptions::none());
    let err = client.get_secret("root-cert", None).await.unwrap_err();
    assert_eq!(http_error(&err), (StatusCode::TooManyRequests, Some("Throttled".to_owned())));
    let ErrorKind::HttpResponse { raw_response: Some(raw), .. } = err.kind() else { unreachable!() };
    assert_eq!(raw.headers().get_optional_str(&HeaderName::from_static("retry-after")), Some("7"));
}

#[tokio::test]
async fn server_errors_are_retried_and_exhausted_retries_report_the_status() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("cert-chain", "c");
    emu.inject_fault(Fault::status(503).times(2).path("/secrets/cert-chain"));
    let client = client_for(&emu);
    assert_eq!(client.get_secret("cert-chain", None).await.unwrap().into_model().unwrap().value.as_deref(), Some("c"));
    assert_eq!(vault_requests(&emu, "GET", "/secrets/cert-chain/").1, 3);

    emu.inject_fault(Fault::status(500).always().path("/secrets/cert-chain"));
    let err = client.get_secret("cert-chain", None).await.unwrap_err();
    assert_eq!(http_error(&err), (StatusCode::InternalServerError, Some("InternalServerError".to_owned())));
    // fast_retry(3): the first try plus three retries.
    assert_eq!(vault_requests(&emu, "GET", "/secrets/cert-chain/").1, 3 + 4);
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_the_tls_handshake() {
    let emu = KeyVaultEmulator::start().await;
    let other = TestCa::new("some other CA");
    let t = transport(other.cert_pem(), None);
    let cred = secret_credential(&emu, &t, emu.client_secret());
    let client = secret_client(&emu.vault_url(), cred, &t, fast_retry(1));
    let err = client.get_secret("anything", None).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection, "{err:?}");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    assert!(emu.requests().is_empty(), "no request may get past the handshake");
}

// ------------------------------------------------------------------------------------------------------
// Raw wire checks and the HTTP control surface (plain reqwest, no SDK).

fn raw_http(emu: &KeyVaultEmulator) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(emu.ca_cert_pem().as_bytes()).unwrap()])
        .no_proxy()
        .build()
        .unwrap()
}

async fn vault_token(emu: &KeyVaultEmulator) -> String {
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = secret_credential(emu, &t, emu.client_secret());
    cred.get_token(&["https://vault.azure.net/.default"], None).await.unwrap().token.secret().to_owned()
}

#[tokio::test]
async fn the_auth_gate_answers_before_body_validation_and_errors_carry_x_ms_error_code() {
    let emu = KeyVaultEmulator::start().await;
    let http = raw_http(&emu);
    let url = |path: &str| format!("{}{path}?api-version=2025-07-01", emu.vault_url());
    // Unauthenticated, with a body that would be invalid: the challenge comes first.
    let rsp = http.put(url("/secrets/bad_name")).body("not json").send().await.unwrap();
    assert_eq!(rsp.status().as_u16(), 401);
    let body: serde_json::Value = rsp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "AKV10000: Request is missing a Bearer or PoP token.");

    let token = vault_token(&emu).await;
    let rsp = http.put(url("/secrets/bad_name")).bearer_auth(&token).body(r#"{"value":"x"}"#).send().await.unwrap();
    assert_eq!(rsp.status().as_u16(), 400);
    assert_eq!(rsp.headers()["x-ms-error-code"], "BadParameter");
    let rsp = http.put(url("/secrets/good-name")).bearer_auth(&token).body("{}").send().await.unwrap();
    assert_eq!(rsp.status().as_u16(), 400);
    let rsp = http.get(format!("{}/secrets/good-name/", emu.vault_url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(rsp.status().as_u16(), 400, "api-version is required");
    assert!(rsp.headers().contains_key("x-ms-request-id"));
}

#[tokio::test]
async fn the_http_control_surface_seeds_secrets_injects_faults_and_counts_requests() {
    let emu = KeyVaultEmulator::start().await;
    let http = raw_http(&emu);
    let base = format!("{}/_emulator", emu.vault_url());
    let rsp: serde_json::Value =
        http.put(format!("{base}/secrets/ca-key")).body("KEY").send().await.unwrap().json().await.unwrap();
    assert_eq!(emu.secret_versions("ca-key"), vec![rsp["version"].as_str().unwrap().to_owned()]);
    let fault = r#"{"status":503,"count":1,"method":"GET","path_contains":"/secrets/ca-key"}"#;
    assert!(http.post(format!("{base}/faults")).body(fault).send().await.unwrap().status().is_success());
    assert!(http.post(format!("{base}/secrets/ca-key/deny")).send().await.unwrap().status().is_success());

    let client = client_for(&emu);
    let err = client.get_secret("ca-key", None).await.unwrap_err();
    assert_eq!(http_error(&err).0, StatusCode::Forbidden, "the 503 was retried, then access was denied");
    assert!(http.post(format!("{base}/secrets/ca-key/allow")).send().await.unwrap().status().is_success());
    assert_eq!(client.get_secret("ca-key", None).await.unwrap().into_model().unwrap().value.as_deref(), Some("KEY"));

    let count: serde_json::Value = http
        .get(format!("{base}/requests/count?method=GET&path_prefix=/secrets/ca-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // probe 401, injected 503, 403, then 200.
    assert_eq!(count["count"], 4);
    let log: Vec<serde_json::Value> = http.get(format!("{base}/requests")).send().await.unwrap().json().await.unwrap();
    assert!(log.iter().all(|r| !r["path"].as_str().unwrap().starts_with("/_emulator")));
    http.delete(format!("{base}/requests")).send().await.unwrap();
    assert!(emu.requests().is_empty());
}
