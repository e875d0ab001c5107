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
use azure_core::http::{ClientOptions, RetryOptions};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential,
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
        let version = secret.resource_id().ok().and_then(|id| id.version).unwrap_or_default();
        let value = secret.value.unwrap_or_default().into_bytes();
        if value.len() > MAX_SECRET_BYTES {
            return Err(SourceError::TooLarge {
                origin: self.url.clone(),
                role,
                size: value.len() as u64,
                limit: MAX_SECRET_BYTES,
            });
        }
        Ok((value, version))
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
            ErrorKind::Credential => {
                let message = format!("authentication failed with {}", self.credential);
                self.vault_error(name, &message, FailureClass::Auth, None, err)
            }
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

/// `error.innererror.code` of a Key Vault error body (`SecretDisabled` for a GET of a disabled secret).
fn inner_error_code(raw: Option<&azure_core::http::RawResponse>) -> Option<String> {
    let body: azure_core::error::ErrorResponse = serde_json::from_slice(raw?.body().as_ref()).ok()?;
    body.error?.inner_error?.code
}

/// `Retry-After` in seconds (Key Vault sends delta-seconds).
fn parse_retry_after(value: &str) -> Option<Duration> {
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
            let credential = WorkloadIdentityCredential::new(None)
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
            let credential = ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)
                .map_err(|e| fail("service principal", crate::error::chain(&e)))?;
            (credential, "service principal (client secret)".into())
        }
        AuthMode::ManagedIdentity => {
            let id = config.managed_identity_client_id.clone();
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: id.clone().map(UserAssignedId::ClientId),
                ..Default::default()
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
}
