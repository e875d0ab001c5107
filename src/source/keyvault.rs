//! Material from Azure Key Vault, through the official SDK (`azure_security_keyvault_secrets` 1.x and
//! `azure_identity` 1.x).
//!
//! The SDK's own retry policy is turned off for the vault client: it honours `Retry-After` without a cap and
//! retries TLS failures for over a minute. Instead each GET is retried here, a bounded number of times, with
//! exponential backoff (1, 2, 4 s, as Microsoft advises for Key Vault throttling) and a capped `Retry-After`.
//! The overall `--timeout` wraps the whole pass on top of that.
//!
//! One client is built per process and reused, so after the first pass the challenge scope and the token are
//! cached: an unchanged pass costs exactly four GETs.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::{ResourceExt as _, SecretClient, SecretClientOptions};

use crate::bundle::{MAX_SECRET_BYTES, RawMaterial, SecretRole};
use crate::cli::AuthMode;
use crate::config::{SecretNames, VaultConfig};
use crate::error::FailureClass;

use super::{Fetched, SourceError, Versions};

/// Attempts per GET for transient failures (429, 408, 5xx, connection errors).
const MAX_ATTEMPTS: u32 = 4;
/// A `Retry-After` longer than this is cut down to it; watch mode carries the full value to its next pass.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

/// Called once per HTTP attempt with the status (`None` for a transport failure) and how long the attempt took
/// (token acquisition included: that is the latency a pass sees), for metrics.
pub type Observer = Arc<dyn Fn(Option<u16>, Duration) + Send + Sync>;

/// Fetches the four secrets from one vault.
pub struct VaultSource {
    url: String,
    names: SecretNames,
    client: SecretClient,
    observer: Option<Observer>,
    /// Which credential is in use and why (for auth failure messages).
    credential: String,
}

impl VaultSource {
    /// Builds the credential (from `--auth` and the environment) and the client. No network I/O happens here.
    pub fn new(config: &VaultConfig, observer: Option<Observer>) -> Result<Self, SourceError> {
        let (credential, chosen) = credential(config)?;
        tracing::info!(credential = %chosen, vault = %config.url, "using Azure credential");
        let options = SecretClientOptions {
            client_options: ClientOptions { retry: RetryOptions::none(), ..Default::default() },
            verify_challenge_resource: Some(config.verify_challenge_resource),
            ..Default::default()
        };
        let client = SecretClient::new(&config.url, credential, Some(options))
            .map_err(|source| SourceError::Client { vault: config.url.clone(), source: Box::new(source) })?;
        Ok(Self { url: config.url.clone(), names: config.names.clone(), client, observer, credential: chosen })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The four GETs, concurrently. The first error wins (the others are dropped).
    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        let (root, ca, key, chain) = tokio::try_join!(
            self.get(SecretRole::RootCert),
            self.get(SecretRole::CaCert),
            self.get(SecretRole::CaKey),
            self.get(SecretRole::CertChain),
        )?;
        Ok(Fetched {
            material: RawMaterial { root_cert: root.0, ca_cert: ca.0, ca_key: key.0, cert_chain: chain.0 },
            versions: Some(Versions([root.1, ca.1, key.1, chain.1])),
        })
    }

    async fn get(&self, role: SecretRole) -> Result<(Vec<u8>, String), SourceError> {
        let name = self.names.get(role);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let err = match self.client.get_secret(name, None).await {
                Ok(response) => {
                    self.observe(Some(200), started.elapsed());
                    return self.decode(role, name, response.into_model());
                }
                Err(err) => err,
            };
            let status = err.http_status().map(u16::from);
            self.observe(status, started.elapsed());
            let failure = self.classify(role, name, err);
            let SourceError::Vault { class: FailureClass::Transient, retry_after, .. } = &failure else {
                return Err(failure);
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(failure);
            }
            let backoff = Duration::from_secs(1 << (attempt - 1));
            let wait = retry_after.map_or(backoff, |ra| ra.min(RETRY_AFTER_CAP).max(backoff));
            tracing::warn!(secret = name, attempt, status = ?status, wait = ?wait, error = %crate::error::chain(&failure),
                "Key Vault request failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    fn observe(&self, status: Option<u16>, took: Duration) {
        if let Some(observer) = &self.observer {
            observer(status, took);
        }
    }

    fn decode(
        &self,
        role: SecretRole,
        name: &str,
        model: azure_core::Result<azure_security_keyvault_secrets::models::Secret>,
    ) -> Result<(Vec<u8>, String), SourceError> {
        let secret = model.map_err(|source| {
            self.vault_error(name, "the response could not be decoded", FailureClass::Transient, None, source)
        })?;
        decode_secret(&self.url, role, secret)
    }

    fn classify(&self, role: SecretRole, name: &str, err: azure_core::Error) -> SourceError {
        let text = crate::error::chain(&err);
        match err.kind() {
            ErrorKind::HttpResponse { status, error_code, raw_response } => {
                let code = u16::from(*status);
                let error_code = error_code.clone().unwrap_or_default();
                let retry_after = raw_response
                    .as_ref()
                    .and_then(|r| r.headers().get_optional_str(&azure_core::http::headers::RETRY_AFTER))
                    .and_then(parse_retry_after);
                let (class, message) = match code {
                    404 => return SourceError::NotFound { vault: self.url.clone(), name: name.into(), role },
                    // A disabled secret is a 403 too; only the inner error code tells it from a missing permission.
                    403 if inner_error_code(raw_response.as_deref()).as_deref() == Some("SecretDisabled") => {
                        return SourceError::Disabled { vault: self.url.trim_end_matches('/').into(), name: name.into() };
                    }
                    401 => (FailureClass::Auth, format!("401 {error_code}: the vault rejected our token (wrong tenant, or a token for another resource)")),
                    403 => (FailureClass::Auth, format!("403 {error_code}: the identity lacks 'get' on secrets (assign the 'Key Vault Secrets User' role or an access policy)")),
                    429 => (FailureClass::Transient, format!("429 {error_code}: throttled by Key Vault")),
                    408 | 500..=599 => (FailureClass::Transient, format!("{code} {error_code}: Key Vault is unavailable")),
                    400 => (FailureClass::Usage, format!("400 {error_code}: the request was rejected")),
                    _ => (FailureClass::Transient, format!("unexpected HTTP {code} {error_code}")),
                };
                self.vault_error(name, &message, class, retry_after, err)
            }
            ErrorKind::Credential => match token_endpoint_status(&err) {
                // Entra itself failed (5xx, 429, 408) or could not be reached: not a verdict on our identity.
                Some(TokenFailure::Unavailable(status)) => {
                    let message = match status {
                        Some(code) => format!(
                            "the Entra token endpoint answered HTTP {code} (after {CREDENTIAL_RETRIES} retries); authentication with {} could not finish",
                            self.credential
                        ),
                        None => format!(
                            "the Entra token endpoint could not be reached; authentication with {} could not finish",
                            self.credential
                        ),
                    };
                    self.vault_error(name, &message, FailureClass::Transient, None, err)
                }
                _ => {
                    let message = format!("authentication failed with {}", self.credential);
                    self.vault_error(name, &message, FailureClass::Auth, None, err)
                }
            },
            _ if text.contains("invalid peer certificate") => self.vault_error(
                name,
                "the vault's TLS certificate is not trusted (check SSL_CERT_FILE / SSL_CERT_DIR)",
                FailureClass::Usage,
                None,
                err,
            ),
            _ if text.contains("challenge resource") => self.vault_error(
                name,
                "the vault's auth challenge names a resource outside the vault's domain; use the vault's NAME.vault.azure.net URL (private endpoints keep it), or, for an emulator only, pass --disable-challenge-resource-verification",
                FailureClass::Usage,
                None,
                err,
            ),
            ErrorKind::Connection | ErrorKind::Io => self.vault_error(name, "the vault could not be reached", FailureClass::Transient, None, err),
            _ => self.vault_error(name, "the request failed", FailureClass::Transient, None, err),
        }
    }

    fn vault_error(
        &self,
        name: &str,
        message: &str,
        class: FailureClass,
        retry_after: Option<Duration>,
        source: azure_core::Error,
    ) -> SourceError {
        SourceError::Vault {
            vault: self.url.clone(),
            name: name.into(),
            message: message.into(),
            class,
            retry_after,
            source: Box::new(source),
        }
    }
}

/// The value and version of a Key Vault GET answer (the SDK's decoded model). Pure.
///
/// The value is the secret's `value` (absent reads as empty) and must be at most [`MAX_SECRET_BYTES`]
/// ([`SourceError::TooLarge`] naming `origin` otherwise); the version is the last segment of its `id`
/// (`https://NAME.vault.azure.net/secrets/NAME/VERSION`), empty when the id is absent or not of that form.
pub fn decode_secret(
    origin: &str,
    role: SecretRole,
    secret: azure_security_keyvault_secrets::models::Secret,
) -> Result<(Vec<u8>, String), SourceError> {
    let version = secret.resource_id().ok().and_then(|id| id.version).unwrap_or_default();
    let value = secret.value.unwrap_or_default().into_bytes();
    if value.len() > MAX_SECRET_BYTES {
        return Err(SourceError::TooLarge {
            origin: origin.to_owned(),
            role,
            size: value.len() as u64,
            limit: MAX_SECRET_BYTES,
        });
    }
    Ok((value, version))
}

/// `error.innererror.code` of a Key Vault error body (`SecretDisabled` for a GET of a disabled secret).
fn inner_error_code(raw: Option<&azure_core::http::RawResponse>) -> Option<String> {
    inner_error_code_of(raw?.body().as_ref())
}

/// `error.innererror.code` of a Key Vault error body, from its bytes (`None` when the body is not such JSON or
/// has no inner code). Pure.
pub fn inner_error_code_of(body: &[u8]) -> Option<String> {
    let body: azure_core::error::ErrorResponse = serde_json::from_slice(body).ok()?;
    body.error?.inner_error?.code
}

/// Why a credential failed to get a token.
#[derive(Debug, PartialEq, Eq)]
enum TokenFailure {
    /// Entra answered a status worth retrying (5xx, 429, 408), or (`None`) the connection failed.
    Unavailable(Option<u16>),
    /// Entra refused us (4xx): wrong tenant, client, secret or federation.
    Refused,
}

/// Looks through a credential error for the token endpoint's HTTP answer. `azure_identity` wraps the
/// `HttpResponse` (or `Io`/`Connection`) error of its token request in an `ErrorKind::Credential` error.
fn token_endpoint_status(err: &azure_core::Error) -> Option<TokenFailure> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(inner) = e.downcast_ref::<azure_core::Error>() {
            match inner.kind() {
                ErrorKind::HttpResponse { status, .. } => {
                    let code = u16::from(*status);
                    return Some(if code >= 500 || code == 429 || code == 408 {
                        TokenFailure::Unavailable(Some(code))
                    } else {
                        TokenFailure::Refused
                    });
                }
                ErrorKind::Io | ErrorKind::Connection => return Some(TokenFailure::Unavailable(None)),
                _ => {}
            }
        }
        source = e.source();
    }
    None
}

/// Retries of one token request inside `azure_identity` (its default is 8 over up to a minute, which made a
/// down token endpoint end a pass only at `--timeout`). Our own per-GET retries (1, 2, 4 s) come on top.
const CREDENTIAL_RETRIES: u32 = 2;

/// The pipeline options of every credential: a short, bounded retry of the token endpoint.
fn credential_client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(250),
            max_retries: CREDENTIAL_RETRIES,
            max_total_elapsed: azure_core::time::Duration::seconds(5),
            max_delay: azure_core::time::Duration::seconds(2),
        }),
        ..Default::default()
    }
}

/// `Retry-After` in seconds (Key Vault sends delta-seconds; an HTTP date or anything else reads as `None`). Pure.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Azure VMs (and so AKS nodes) carry this DMI chassis asset tag; reading it needs no network.
fn running_on_azure() -> bool {
    std::fs::read_to_string("/sys/class/dmi/id/chassis_asset_tag")
        .map(|tag| tag.trim() == "7783-7084-3265-9085-8269-3286-77")
        .unwrap_or(false)
}

/// Picks and builds the credential. Returns it with a description for the log ("workload identity (…)").
fn credential(config: &VaultConfig) -> Result<(Arc<dyn TokenCredential>, String), SourceError> {
    let mut skipped = Vec::new();
    let mode = match config.auth {
        AuthMode::Auto => {
            if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                AuthMode::WorkloadIdentity
            } else {
                skipped.push("workload identity: AZURE_FEDERATED_TOKEN_FILE is not set");
                if env("AZURE_CLIENT_SECRET").is_some()
                    && env("AZURE_TENANT_ID").is_some()
                    && env("AZURE_CLIENT_ID").is_some()
                {
                    AuthMode::ClientSecret
                } else {
                    skipped.push(
                        "service principal: AZURE_CLIENT_SECRET, AZURE_TENANT_ID and AZURE_CLIENT_ID are not all set",
                    );
                    if env("IDENTITY_ENDPOINT").is_some()
                        || config.managed_identity_client_id.is_some()
                        || running_on_azure()
                    {
                        AuthMode::ManagedIdentity
                    } else {
                        skipped.push("managed identity: IDENTITY_ENDPOINT is not set and this is not an Azure VM");
                        AuthMode::AzureCli
                    }
                }
            }
        }
        explicit => explicit,
    };
    let tried = if skipped.is_empty() { String::new() } else { format!("; skipped {}", skipped.join("; ")) };
    let fail = |name: &str, reason: String| SourceError::Credential {
        mode: name.to_string(),
        reason: format!("{reason}{tried}"),
    };
    let (built, description): (Arc<dyn TokenCredential>, String) = match mode {
        AuthMode::WorkloadIdentity => {
            for var in ["AZURE_FEDERATED_TOKEN_FILE", "AZURE_TENANT_ID", "AZURE_CLIENT_ID"] {
                if env(var).is_none() {
                    return Err(fail(
                        "workload identity",
                        format!(
                            "{var} is not set (the AKS workload identity webhook injects it when the pod has the label azure.workload.identity/use=\"true\")"
                        ),
                    ));
                }
            }
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: credential_client_options() },
                ..Default::default()
            };
            let credential = WorkloadIdentityCredential::new(Some(options))
                .map_err(|e| fail("workload identity", crate::error::chain(&e)))?;
            (credential, "workload identity".into())
        }
        AuthMode::ClientSecret => {
            let (Some(tenant), Some(client), Some(secret)) =
                (env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID"), env("AZURE_CLIENT_SECRET"))
            else {
                return Err(fail(
                    "service principal",
                    "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET must all be set".into(),
                ));
            };
            let credential = ClientSecretCredential::new(
                &tenant,
                client,
                Secret::new(secret),
                Some(ClientSecretCredentialOptions { client_options: credential_client_options() }),
            )
            .map_err(|e| fail("service principal", crate::error::chain(&e)))?;
            (credential, "service principal (client secret)".into())
        }
        AuthMode::ManagedIdentity => {
            let id = config.managed_identity_client_id.clone();
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: id.clone().map(UserAssignedId::ClientId),
                client_options: credential_client_options(),
            };
            let credential = ManagedIdentityCredential::new(Some(options))
                .map_err(|e| fail("managed identity", crate::error::chain(&e)))?;
            let description = match id {
                Some(id) => format!("managed identity (user-assigned {id})"),
                None => "managed identity".into(),
            };
            (credential, description)
        }
        AuthMode::AzureCli => {
            (AzureCliCredential::new(None).map_err(|e| fail("azure cli", crate::error::chain(&e)))?, "azure cli".into())
        }
        AuthMode::Auto => unreachable!("auto resolved above"),
    };
    let auto = if config.auth == AuthMode::Auto { format!(" [auto{tried}]") } else { String::new() };
    Ok((built, format!("{description}{auto}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_delta_seconds() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 10 "), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    /// How `azure_identity` 1.0 reports a failed token request: `authentication_error` wraps the pipeline's
    /// `HttpResponse` error (or its `Io`/`Connection` error) in an `ErrorKind::Credential` error.
    fn credential_error(inner: azure_core::Error) -> azure_core::Error {
        azure_core::Error::with_error(ErrorKind::Credential, inner, "WorkloadIdentityCredential authentication failed")
    }

    fn http(status: azure_core::http::StatusCode) -> azure_core::Error {
        azure_core::Error::with_message(ErrorKind::HttpResponse { status, error_code: None, raw_response: None }, "x")
    }

    #[test]
    fn entra_5xx_429_408_and_connection_failures_are_unavailable_and_4xx_is_refused() {
        use azure_core::http::StatusCode;
        for (status, code) in [
            (StatusCode::ServiceUnavailable, 503),
            (StatusCode::InternalServerError, 500),
            (StatusCode::TooManyRequests, 429),
            (StatusCode::RequestTimeout, 408),
        ] {
            assert_eq!(
                token_endpoint_status(&credential_error(http(status))),
                Some(TokenFailure::Unavailable(Some(code)))
            );
        }
        for status in [StatusCode::BadRequest, StatusCode::Unauthorized, StatusCode::Forbidden] {
            assert_eq!(token_endpoint_status(&credential_error(http(status))), Some(TokenFailure::Refused));
        }
        let io = azure_core::Error::with_message(ErrorKind::Io, "connection refused");
        assert_eq!(token_endpoint_status(&credential_error(io)), Some(TokenFailure::Unavailable(None)));
        // A credential that failed before any request (a missing token file) is not about the endpoint.
        let local = azure_core::Error::with_message(ErrorKind::Credential, "no token file");
        assert_eq!(token_endpoint_status(&local), None);
    }
}
