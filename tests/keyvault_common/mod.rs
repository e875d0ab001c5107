//! The Azure SDK side of the Key Vault emulator tests (`tests/keyvault_emulator.rs`,
//! `tests/keyvault_emulator_auth.rs`): a reqwest transport that trusts the emulator CA, fast retry options,
//! credentials and `SecretClient`s configured only through settings an SDK user can set, and small checks of the
//! recorded requests and of SDK errors.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, StatusCode, Transport};
use azure_core::time::Duration;
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use cacerts_testkit::keyvault::{KeyVaultEmulator, Service};

/// A reqwest 0.13 client that trusts only `ca_pem` (and optionally resolves the fake vault/login names).
pub fn transport(ca_pem: &str, resolve_to: Option<SocketAddr>) -> Transport {
    let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    let mut builder =
        reqwest::Client::builder().tls_certs_only([cert]).no_proxy().redirect(reqwest::redirect::Policy::none());
    if let Some(addr) = resolve_to {
        builder = builder.resolve("myvault.vault.test", addr).resolve("login.test", addr);
    }
    Transport::new(Arc::new(builder.build().expect("reqwest client")))
}

pub fn fast_retry(max_retries: u32) -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: Duration::milliseconds(10),
        max_delay: Duration::milliseconds(50),
        max_retries,
        max_total_elapsed: Duration::seconds(30),
    })
}

pub fn client_options(transport: &Transport, authority_host: &str, retry: RetryOptions) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = authority_host.to_owned();
    ClientOptions {
        transport: Some(transport.clone()),
        retry,
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

pub fn secret_credential(emu: &KeyVaultEmulator, transport: &Transport, secret: &str) -> Arc<ClientSecretCredential> {
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
pub fn secret_client(
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

pub fn client_for(emu: &KeyVaultEmulator) -> SecretClient {
    let t = transport(&emu.ca_cert_pem(), None);
    let cred = secret_credential(emu, &t, emu.client_secret());
    secret_client(&emu.vault_url(), cred, &t, fast_retry(3))
}

pub fn set_params(value: &str) -> SetSecretParameters {
    SetSecretParameters { value: Some(value.to_owned()), ..Default::default() }
}

pub fn vault_requests(emu: &KeyVaultEmulator, method: &str, path: &str) -> (usize, usize) {
    let reqs: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.service == Service::Vault && r.method == method && r.path == path)
        .collect();
    (reqs.len(), reqs.iter().filter(|r| r.authorized).count())
}

/// The error's message and the messages of all its sources (the SDK wraps credential and policy errors).
pub fn error_chain(err: &azure_core::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(" | ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub fn http_error(err: &azure_core::Error) -> (StatusCode, Option<String>) {
    match err.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => (*status, error_code.clone()),
        other => panic!("expected an HttpResponse error, got {other:?}: {err}"),
    }
}
