//! Fidelity proof of the Key Vault + Entra + managed-identity emulator (`cacerts_testkit::keyvault`), part two:
//! the credentials of the official, unmodified Azure SDK for Rust against the emulator's token endpoints (client
//! secret and workload identity errors, the 401 challenge and the SDK's challenge-resource verification) and
//! credentials configured from the process environment. The secrets API, the raw wire checks and the control
//! surface are tested in `tests/keyvault_emulator.rs`; the SDK clients both files use are in
//! `tests/keyvault_common/mod.rs`.
//!
//! Managed identity reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the process environment inside
//! `ManagedIdentityCredential::new` and has no options override. Setting env vars in a multi-threaded test
//! process is racy (and `unsafe` in edition 2024), so those tests re-run this test binary as a child process
//! with the env set, filtered to the ignored helper test `sdk_child_process`. The same helper proves that
//! `KeyVaultEmulator::child_env` alone (variant A of the notes: `SSL_CERT_FILE`, `AZURE_AUTHORITY_HOST`, …)
//! configures unmodified credentials and the default SDK transport.
//!
//! Run: `cargo test --test keyvault_emulator_auth`.

mod keyvault_common;

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::ClientOptions;
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use cacerts_testkit::keyvault::{EmulatorOptions, KeyVaultEmulator, Service};
use keyvault_common::{
    client_options, error_chain, fast_retry, secret_client, secret_credential, set_params, transport, vault_requests,
};

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
