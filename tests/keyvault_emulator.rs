//! Fidelity proof of the Key Vault + Entra + managed-identity emulator (`cacerts_testkit::keyvault`): the
//! official, unmodified Azure SDK for Rust (`azure_security_keyvault_secrets` 1.0.x, `azure_identity` 1.0,
//! `azure_core` 1.x) drives it, configured only through settings an SDK user can set (options structs, an
//! injected reqwest 0.13 `Transport` that trusts the emulator CA, fast retry options).
//!
//! Managed identity reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the process environment inside
//! `ManagedIdentityCredential::new` and has no options override. Setting env vars in a multi-threaded test
//! process is racy (and `unsafe` in edition 2024), so those tests re-run this test binary as a child process
//! with the env set, filtered to the ignored helper test `sdk_child_process`. The same helper proves that
//! `KeyVaultEmulator::child_env` alone (variant A of the notes: `SSL_CERT_FILE`, `AZURE_AUTHORITY_HOST`, …)
//! configures unmodified credentials and the default SDK transport.
//!
//! Run: `cargo test --test keyvault_emulator`.

use std::net::SocketAddr;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{
    ClientOptions, ExponentialRetryOptions, RetryOptions, StatusCode, Transport, headers::HeaderName,
};
use azure_core::time::Duration;
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::models::{SecretClientGetSecretOptions, SetSecretParameters};
use azure_security_keyvault_secrets::models::{
    SecretClientListSecretPropertiesOptions, SecretClientListSecretPropertiesVersionsOptions,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use cacerts_testkit::keyvault::{EmulatorOptions, Fault, KeyVaultEmulator, Service};
use cacerts_testkit::tls::TestCa;
use futures::TryStreamExt;

/// A reqwest 0.13 client that trusts only `ca_pem` (and optionally resolves the fake vault/login names).
fn transport(ca_pem: &str, resolve_to: Option<SocketAddr>) -> Transport {
    let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    let mut builder =
        reqwest::Client::builder().tls_certs_only([cert]).no_proxy().redirect(reqwest::redirect::Policy::none());
    if let Some(addr) = resolve_to {
        builder = builder.resolve("myvault.vault.test", addr).resolve("login.test", addr);
    }
    Transport::new(Arc::new(builder.build().expect("reqwest client")))
}

fn fast_retry(max_retries: u32) -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: Duration::milliseconds(10),
        max_delay: Duration::milliseconds(50),
        max_retries,
        max_total_elapsed: Duration::seconds(30),
    })
}

fn client_options(transport: &Transport, authority_host: &str, retry: RetryOptions) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = authority_host.to_owned();
    ClientOptions {
        transport: Some(transport.clone()),
        retry,
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

fn secret_credential(emu: &KeyVaultEmulator, transport: &Transport, secret: &str) -> Arc<ClientSecretCredential> {
    ClientSecretCredential::new(
        emu.tenant_id(),
        emu.client_id().to_owned(),
        Secret::new(secret.to_owned()),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(transport, &emu.authority_host(), fast_retry(2)),
        }),
    )
    .expect("client secret credential")
}

/// A SecretClient at `url` with verification off (the vault is an IP address) and fast retries.
fn secret_client(
    url: &str,
    cred: Arc<dyn TokenCredential>,
    transport: &Transport,
    retry: RetryOptions,
) -> SecretClient {
    SecretClient::new(
        url,
        cred,
        Some(SecretClientOptions {
            client_options: ClientOptions { transport: Some(transport.clone()), retry, ..Default::default() },
            verify_challenge_resource: Some(false),
            ..Default::default()
        }),
    )
    .expect("secret client")
}

fn client_for(emu: &KeyVaultEmulator) -> SecretClient {
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = secret_credential(emu, &t, emu.client_secret());
    secret_client(&emu.vault_url(), cred, &t, fast_retry(3))
}

fn set_params(value: &str) -> SetSecretParameters {
    SetSecretParameters { value: Some(value.to_owned()), ..Default::default() }
}

fn vault_requests(emu: &KeyVaultEmulator, method: &str, path: &str) -> (usize, usize) {
    let reqs: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.service == Service::Vault && r.method == method && r.path == path)
        .collect();
    (reqs.len(), reqs.iter().filter(|r| r.authorized).count())
}

/// The error's message and the messages of all its sources (the SDK wraps credential and policy errors).
fn error_chain(err: &azure_core::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(" | ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn http_error(err: &azure_core::Error) -> (StatusCode, Option<String>) {
    match err.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => (*status, error_code.clone()),
        other => panic!("expected an HttpResponse error, got {other:?}: {err}"),
    }
}

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

#[tokio::test]
async fn a_wrong_client_secret_is_rejected_with_aadsts7000215_and_never_reaches_the_vault_authorized() {
    let emu = KeyVaultEmulator::start().await;
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = secret_credential(&emu, &t, "wrong-secret");
    let client = secret_client(&emu.vault_url(), cred, &t, fast_retry(1));
    let err = client.get_secret("x", None).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Credential, "{err:?}");
    assert!(error_chain(&err).contains("AADSTS7000215"), "{err:?}");
    let sts: Vec<_> = emu.requests().into_iter().filter(|r| r.service == Service::Sts).collect();
    assert!(sts.iter().all(|r| r.status == 401 && !r.authorized), "{sts:?}");
    assert!(emu.requests().iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn an_unknown_client_id_is_rejected_with_aadsts700016() {
    let emu = KeyVaultEmulator::start().await;
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = ClientSecretCredential::new(
        emu.tenant_id(),
        "someone-else".to_owned(),
        Secret::new(emu.client_secret().to_owned()),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(&t, &emu.authority_host(), fast_retry(0)),
        }),
    )
    .unwrap();
    let err = cred.get_token(&["https://vault.azure.net/.default"], None).await.unwrap_err();
    assert!(error_chain(&err).contains("AADSTS700016"), "{err:?}");
}

#[tokio::test]
async fn workload_identity_credential_exchanges_the_federated_token_file() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("ca-cert", "from-wi");
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions {
            client_options: client_options(&t, &emu.authority_host(), fast_retry(1)),
        },
        tenant_id: Some(emu.tenant_id().to_owned()),
        client_id: Some(emu.client_id().to_owned()),
        token_file_path: Some(emu.federated_token_file().to_path_buf()),
    }))
    .unwrap();
    let client = secret_client(&emu.vault_url(), cred, &t, fast_retry(1));
    assert_eq!(
        client.get_secret("ca-cert", None).await.unwrap().into_model().unwrap().value.as_deref(),
        Some("from-wi")
    );
    let sts: Vec<_> = emu.requests().into_iter().filter(|r| r.service == Service::Sts).collect();
    assert_eq!(sts.len(), 1);
    assert!(sts[0].authorized);
}

#[tokio::test]
async fn workload_identity_with_a_foreign_token_is_rejected() {
    let emu = KeyVaultEmulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvdGhlciJ9.c2ln").unwrap();
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions {
            client_options: client_options(&t, &emu.authority_host(), fast_retry(0)),
        },
        tenant_id: Some(emu.tenant_id().to_owned()),
        client_id: Some(emu.client_id().to_owned()),
        token_file_path: Some(token_file),
    }))
    .unwrap();
    let err = cred.get_token(&["https://vault.azure.net/.default"], None).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Credential);
    assert!(error_chain(&err).contains("AADSTS70021"), "{err:?}");
}

#[tokio::test]
async fn a_token_for_another_resource_gets_the_401_challenge() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("s", "v");
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = secret_credential(&emu, &t, emu.client_secret());
    // A token the STS really issued, but for Azure Resource Manager.
    let token = cred.get_token(&["https://management.azure.com/.default"], None).await.unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(emu.ca_cert_pem().as_bytes()).unwrap()])
        .no_proxy()
        .build()
        .unwrap();
    let rsp = http
        .get(format!("{}/secrets/s/?api-version=2025-07-01", emu.vault_url()))
        .bearer_auth(token.token.secret())
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status().as_u16(), 401);
    let challenge = rsp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
            emu.authority_host(),
            emu.tenant_id()
        )
    );
    assert_eq!(rsp.headers()["x-ms-error-code"], "Unauthorized");
    assert_eq!(rsp.headers()["content-type"], "application/json; charset=utf-8");
}

#[tokio::test]
async fn challenge_verification_stays_on_with_a_vault_test_host_and_resource() {
    let emu = KeyVaultEmulator::start_with(EmulatorOptions {
        challenge_resource: "https://vault.test".to_owned(),
        ..Default::default()
    })
    .await;
    let port = emu.addr().port();
    let t = transport(&emu.ca_cert_pem(), Some(emu.addr()));
    let cred = ClientSecretCredential::new(
        emu.tenant_id(),
        emu.client_id().to_owned(),
        Secret::new(emu.client_secret().to_owned()),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(&t, &format!("https://login.test:{port}"), fast_retry(1)),
        }),
    )
    .unwrap();
    let vault_url = format!("https://myvault.vault.test:{port}");
    // Default options: verify_challenge_resource is on.
    let client = SecretClient::new(
        &vault_url,
        cred,
        Some(SecretClientOptions {
            client_options: ClientOptions { transport: Some(t.clone()), retry: fast_retry(1), ..Default::default() },
            ..Default::default()
        }),
    )
    .unwrap();
    let set = client.set_secret("root-cert", set_params("pem").try_into().unwrap(), None).await.unwrap();
    let id = set.into_model().unwrap().resource_id().unwrap();
    assert_eq!(id.vault_url, vault_url, "ids use the Host the client sent");
    let got = client.get_secret("root-cert", None).await.unwrap().into_model().unwrap();
    assert_eq!(got.value.as_deref(), Some("pem"));
}

#[tokio::test]
async fn challenge_verification_rejects_a_resource_that_is_not_a_parent_domain() {
    // Default resource https://vault.azure.net vs a *.vault.test host: the SDK refuses to send a token.
    let emu = KeyVaultEmulator::start().await;
    let port = emu.addr().port();
    let t = transport(&emu.ca_cert_pem(), Some(emu.addr()));
    let cred = secret_credential(&emu, &t, emu.client_secret());
    let client = SecretClient::new(
        &format!("https://myvault.vault.test:{port}"),
        cred,
        Some(SecretClientOptions {
            client_options: ClientOptions { transport: Some(t.clone()), retry: fast_retry(0), ..Default::default() },
            ..Default::default()
        }),
    )
    .unwrap();
    let err = client.get_secret("x", None).await.unwrap_err();
    assert!(error_chain(&err).contains("doesn't match the requested domain"), "{err:?}");
    assert_eq!(emu.request_count("POST", "/"), 0, "no token may be requested");
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

// ------------------------------------------------------------------------------------------------------
// Credentials configured from the process environment: a child process of this test binary (see the module
// docs), given exactly the env `KeyVaultEmulator::child_env` produces.

const CHILD_MODE: &str = "KV_EMU_CHILD_MODE";
const CHILD_VAULT: &str = "KV_EMU_CHILD_VAULT_URL";
const CHILD_CLIENT_ID: &str = "KV_EMU_CHILD_CLIENT_ID";
const CHILD_EXPECT: &str = "KV_EMU_CHILD_EXPECT";

/// Runs [`sdk_child_process`] in a child with `env` (plus the child-test settings).
async fn run_child(
    emu: &KeyVaultEmulator,
    mode: &str,
    env: Vec<(String, String)>,
    client_id: Option<&str>,
    expect: &str,
) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "sdk_child_process", "--ignored", "--nocapture", "--test-threads=1"]);
    for var in [
        "IDENTITY_SERVER_THUMBPRINT",
        "IMDS_ENDPOINT",
        "MSI_ENDPOINT",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "SSL_CERT_DIR",
        CHILD_CLIENT_ID,
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env).env(CHILD_MODE, mode).env(CHILD_VAULT, emu.vault_url()).env(CHILD_EXPECT, expect);
    if let Some(id) = client_id {
        cmd.env(CHILD_CLIENT_ID, id);
    }
    // Blocking wait on a blocking-pool thread: the emulator keeps serving on the runtime meanwhile.
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child test must have run:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_credential_uses_the_app_service_endpoint() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("ca-cert", "via-mi");
    run_child(&emu, "managed-identity", emu.child_env("managed-identity"), Some(emu.client_id()), "value:via-mi").await;
    let mi: Vec<_> = emu.requests().into_iter().filter(|r| r.service == Service::ManagedIdentity).collect();
    assert_eq!(mi.len(), 1, "{mi:?}");
    assert!(mi[0].authorized);
    assert!(mi[0].query.contains("api-version=2019-08-01") && mi[0].query.contains("client_id="), "{}", mi[0].query);
    assert_eq!(vault_requests(&emu, "GET", "/secrets/ca-cert/"), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_with_a_wrong_identity_header_gets_400() {
    let emu = KeyVaultEmulator::start().await;
    let mut env = emu.child_env("managed-identity");
    env.retain(|(k, _)| k != "IDENTITY_HEADER");
    env.push(("IDENTITY_HEADER".to_owned(), "not-the-header".to_owned()));
    run_child(&emu, "managed-identity", env, None, "mi-error:400").await;
    let mi: Vec<_> = emu.requests().into_iter().filter(|r| r.service == Service::ManagedIdentity).collect();
    assert!(!mi.is_empty() && mi.iter().all(|r| r.status == 400 && !r.authorized), "{mi:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_env_alone_configures_workload_identity_and_the_default_transport() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("cert-chain", "via-env");
    run_child(&emu, "workload-identity", emu.child_env("workload-identity"), None, "value:via-env").await;
    let sts: Vec<_> = emu.requests().into_iter().filter(|r| r.service == Service::Sts).collect();
    assert_eq!(sts.len(), 1);
    assert!(sts[0].authorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_env_alone_configures_a_client_secret_credential() {
    let emu = KeyVaultEmulator::start().await;
    emu.set_secret("cert-chain", "via-secret");
    run_child(&emu, "client-secret", emu.child_env("client-secret"), None, "value:via-secret").await;
    assert_eq!(emu.request_count("POST", &format!("/{}/oauth2/v2.0/token", emu.tenant_id())), 1);
}

/// Helper run only as a child of the tests above (it needs the process env they set). Without that env it has
/// nothing to check and returns.
///
/// Modes: `managed-identity` (App Service env, injected transport trusting `SSL_CERT_FILE`'s CA, reads secret
/// `ca-cert`); `workload-identity` and `client-secret` (everything from env, **default** SDK transport: trust
/// comes from `SSL_CERT_FILE` only; reads secret `cert-chain`).
#[tokio::test]
#[ignore = "child process of the env-configured credential tests"]
async fn sdk_child_process() {
    let (Ok(mode), Ok(vault), Ok(expect)) =
        (std::env::var(CHILD_MODE), std::env::var(CHILD_VAULT), std::env::var(CHILD_EXPECT))
    else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set"));
    let retry = || ClientOptions { retry: fast_retry(0), ..Default::default() };
    let (cred, client_options, secret): (Arc<dyn TokenCredential>, ClientOptions, &str) = match mode.as_str() {
        "managed-identity" => {
            let t = transport(&std::fs::read_to_string(env("SSL_CERT_FILE")).unwrap(), None);
            let options = ClientOptions { transport: Some(t), ..retry() };
            let cred = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: std::env::var(CHILD_CLIENT_ID).ok().map(UserAssignedId::ClientId),
                client_options: options.clone(),
            }))
            .unwrap();
            (cred, options, "ca-cert")
        }
        "workload-identity" => {
            let cred = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: retry() },
                ..Default::default()
            }))
            .unwrap();
            (cred, retry(), "cert-chain")
        }
        "client-secret" => {
            let cred = ClientSecretCredential::new(
                &env("AZURE_TENANT_ID"),
                env("AZURE_CLIENT_ID"),
                Secret::new(env("AZURE_CLIENT_SECRET")),
                Some(ClientSecretCredentialOptions { client_options: retry() }),
            )
            .unwrap();
            (cred, retry(), "cert-chain")
        }
        other => panic!("unknown child mode {other}"),
    };
    let client = SecretClient::new(
        &vault,
        cred,
        Some(SecretClientOptions { client_options, verify_challenge_resource: Some(false), ..Default::default() }),
    )
    .unwrap();
    let result = client.get_secret(secret, None).await;
    if let Some(value) = expect.strip_prefix("value:") {
        assert_eq!(result.unwrap().into_model().unwrap().value.as_deref(), Some(value));
    } else {
        assert_eq!(expect, "mi-error:400");
        let err = result.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Credential, "{err:?}");
        // The SDK's text for an App Service 400; the status stays in the inner HttpResponse error.
        assert!(error_chain(&err).contains("The requested identity has not been assigned to this resource"), "{err:?}");
        assert!(format!("{err:?}").contains("status: BadRequest"), "{err:?}");
    }
}
