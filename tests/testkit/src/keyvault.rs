//! A local Azure Key Vault (secrets) + Entra ID token endpoint + App Service managed-identity emulator that the
//! official Azure SDK for Rust 1.x (`azure_security_keyvault_secrets` 1.0.x, `azure_identity` 1.0, `azure_core`
//! 1.x) drives unmodified. It follows `shared/azure-sdk-notes.md` §7.
//!
//! # Topology
//! - One HTTPS listener (default `127.0.0.1:0`) with a leaf certificate signed by a fresh [`TestCa`]; SANs
//!   `127.0.0.1`, `localhost`, `*.vault.test`, `login.test`. It serves, routed by path:
//!   - Entra: `POST /{tenant}/oauth2/v2.0/token` (client secret, and client assertion = workload identity);
//!   - Key Vault secrets: everything else (any `Host`; one vault per emulator);
//!   - the control surface under `/_emulator/…` (exempt from auth, never recorded).
//! - One plain-HTTP listener for the App Service managed-identity protocol (`GET /msi/token`, api-version
//!   2019-08-01), reached by clients through `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`; it also serves `/_emulator/…`.
//!
//! # What is faithful (checked against the SDK sources and the wire notes)
//! - Challenge auth: every vault request without a valid bearer token gets, **before routing and before body
//!   validation**, `401` + `WWW-Authenticate: Bearer authorization="https://127.0.0.1:PORT/TENANT",
//!   resource="RESOURCE"` + `{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or
//!   PoP token."}}`. `RESOURCE` is [`EmulatorOptions::challenge_resource`] (`https://vault.azure.net` by
//!   default; `https://vault.test` lets a client keep challenge verification on with a `*.vault.test` host).
//! - Tokens are opaque, remembered with their audience (scope minus `/.default`, or the MI `resource`) and
//!   expiry; the vault accepts only unexpired tokens it issued whose audience is the challenge resource
//!   (a token for another audience gets the 401 + challenge, as the real service does).
//! - Entra JSON shapes: `{"token_type":"Bearer","expires_in":<int>,"ext_expires_in":<int>,"access_token"}`;
//!   errors `{"error","error_description":"AADSTSnnn: …","error_codes":[nnn],"timestamp","trace_id",
//!   "correlation_id","error_uri"}`: wrong secret → 401 `invalid_client` 7000215; unknown client → 400
//!   `unauthorized_client` 700016; unknown tenant → 400 `invalid_request` 90002; missing parameter → 400
//!   `invalid_request` 900144; scope without `/.default` → 400 `invalid_scope` 1002012; wrong grant → 400
//!   `unsupported_grant_type` 70003; neither secret nor assertion → 401 `invalid_client` 7000218.
//! - Managed identity: requires `metadata: true` and the right `x-identity-header` (else 400),
//!   `api-version=2019-08-01` and `resource`; `client_id`/`object_id`, if sent, must name the emulator's
//!   identity (else 400, like an identity not assigned to the app). `expires_on` is a **string**.
//! - Secrets: PUT (200 only), GET latest (`/secrets/{n}` and `/secrets/{n}/`), GET version, list secrets
//!   (unversioned ids), list versions (versioned ids; 404 for an unknown name), paging with `maxresults`
//!   (1..=25, default 25) and an absolute `nextLink` built from the request `Host`, `$skiptoken` (query keys are
//!   URL-decoded, so `%24skiptoken` works), 32-hex versions, integer Unix timestamps, `recoveryLevel`
//!   `Recoverable+Purgeable`, `recoverableDays` 90. PATCH, DELETE, `deletedsecrets` get/purge (204)/recover.
//!   Names are `[0-9A-Za-z-]{1,127}` and case-insensitive, as in Key Vault.
//! - Errors: `{"error":{"code","message"[,"innererror":{"code"}]}}` with `x-ms-error-code` equal to `code`:
//!   400 `BadParameter`, 401 `Unauthorized`, 403 `Forbidden` (+`innererror.code` `AccessDenied`, or
//!   `SecretDisabled` for a disabled version), 404 `SecretNotFound` (real message text), 409 `Conflict`
//!   (PUT on a deleted, unpurged name), 429 `Throttled` + `Retry-After`, 5xx.
//! - Every reply: `Content-Type: application/json; charset=utf-8`, `x-ms-request-id`; `x-ms-client-request-id`
//!   is echoed.
//!
//! # How it differs from the real services (exactly)
//! - One vault per emulator, reachable under any host name; real vaults are one per DNS name. Ids and nextLinks
//!   use the request `Host` verbatim (the real service writes `:443` into nextLinks).
//! - Tokens are opaque random strings, not JWTs; nothing checks signatures, issuer or tenant claims. The
//!   federated token (workload identity) is compared byte for byte with the token file the emulator wrote,
//!   instead of being validated as an OIDC JWT against a federated-credential record; a mismatch gives 400
//!   `invalid_request` AADSTS70021. Tokens are never revoked except by expiry ([`EmulatorOptions::token_lifetime`],
//!   default 3600 s; the real STS says 3599).
//! - The 401 message for a present but unknown, expired or wrong-audience token is an approximation
//!   (`AKV10022`/`AKV10032`-style texts); the real one comes from JWT validation.
//! - Error message texts other than 401 (missing token), 403 (access denied), 404 (`SecretNotFound`), 409 and
//!   429 are approximations; the codes and statuses are the documented ones. Unknown vault paths give 404
//!   `NotFound`, a wrong method 405 `MethodNotAllowed` (the real front end differs in details).
//! - Access control is a per-secret deny list ([`KeyVaultEmulator::deny_secret`]), not access policies/RBAC;
//!   it affects operations on that name (get/set/update/delete/list versions), not the vault-wide list.
//! - `nbf`/`exp` are stored and returned but not enforced; no value size limit (real: 25 KiB); no soft-delete
//!   retention timer (a deleted secret stays recoverable until purged); `contentType`/`tags` are stored verbatim.
//! - Managed identity: only the App Service protocol (IMDS at 169.254.169.254 cannot be redirected by the SDK);
//!   one identity whose client id is [`KeyVaultEmulator::client_id`]; error bodies are
//!   `{"statusCode","message"}` approximations.
//! - The `authorization="…"` value of the challenge always names `https://127.0.0.1:PORT/TENANT` (the Rust SDK
//!   ignores it; upstream issue #3471).
//! - Throttling and outages only happen through injected faults ([`Fault`]). Faults on the vault are applied
//!   after the auth gate, so the unauthenticated challenge probe never consumes a fault.
//!
//! # Control surface
//! In process: [`KeyVaultEmulator`]'s methods. Over HTTP (both listeners, no auth):
//! - `GET /_emulator/info` → the same JSON the standalone runner prints;
//! - `PUT /_emulator/secrets/{name}` (raw body = value) → `{"name","version"}`;
//!   `GET /_emulator/secrets/{name}/versions` → `{"versions":[…]}`;
//! - `POST /_emulator/secrets/{name}/deny`, `POST /_emulator/secrets/{name}/allow`;
//! - `POST /_emulator/secrets/{name}/disable`, `POST /_emulator/secrets/{name}/enable` (the current version;
//!   a GET of it then answers 403 `Forbidden` / `SecretDisabled`, as the real service does);
//! - `POST /_emulator/faults` with `{"status":429,"count":3,"retry_after":1,"latency_ms":0,"method":"GET",
//!   "path_contains":"/secrets/ca-key"}` (all but `status` optional; `count` defaults to 1);
//!   `DELETE /_emulator/faults`;
//! - `GET /_emulator/requests` → `[{"service","method","path","query","status","authorized"}]`;
//!   `GET /_emulator/requests/count?method=GET&path_prefix=/secrets` → `{"count":n}`; `DELETE /_emulator/requests`.

mod control;
mod entra;
mod http;
mod state;
mod vault;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::net::TcpListener;

use crate::tls::{DEFAULT_SANS, Served, TestCa, serve_http, serve_https};
use control::{fake_federated_jwt, now};
use http::{Ctx, ListenerKind, handle};
use state::{Config, DeletedEntry, Shared, StateData};

pub use state::{EmulatorOptions, Fault, RequestRecord, Service};

/// API version the App Service managed-identity protocol uses (and the SDK sends).
pub const MSI_API_VERSION: &str = "2019-08-01";
/// `client_assertion_type` of the jwt-bearer flow (workload identity).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Largest page size Key Vault accepts for `maxresults` (also the default page size).
pub const MAX_PAGE_SIZE: usize = 25;

/// A running emulator. Dropping it stops both listeners (and removes its temporary state directory).
pub struct KeyVaultEmulator {
    shared: Arc<Shared>,
    https: Served,
    http: Served,
    ca_pem: String,
    ca_cert_file: PathBuf,
    federated_token_file: PathBuf,
    _temp_dir: Option<tempfile::TempDir>,
}

impl Drop for KeyVaultEmulator {
    fn drop(&mut self) {
        self.https.abort();
        self.http.abort();
    }
}

impl std::fmt::Debug for KeyVaultEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultEmulator").field("vault_url", &self.vault_url()).finish_non_exhaustive()
    }
}

impl KeyVaultEmulator {
    /// Starts an emulator on `127.0.0.1:0` with default options. Must be called inside a Tokio runtime.
    ///
    /// The listeners run as tasks on that runtime: a test that blocks its thread (e.g. `Command::output()`
    /// on a child process in a current-thread `#[tokio::test]`) starves the emulator. Wait for children with
    /// `tokio::task::spawn_blocking` (and/or a multi-thread runtime), as `tests/keyvault_emulator_auth.rs` does.
    pub async fn start() -> Self {
        Self::start_with(EmulatorOptions::default()).await
    }

    /// Starts an emulator with `opts`. Panics if a listener cannot be bound or the state dir written.
    pub async fn start_with(opts: EmulatorOptions) -> Self {
        let https_listener = TcpListener::bind(opts.addr).await.expect("bind emulator HTTPS listener");
        let http_listener =
            TcpListener::bind(opts.identity_addr).await.expect("bind emulator managed-identity listener");
        let https_addr = https_listener.local_addr().expect("HTTPS listener address");
        let http_addr = http_listener.local_addr().expect("HTTP listener address");

        let (temp_dir, state_dir) = match &opts.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).expect("create emulator state dir");
                (None, dir.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("kv-emulator-").tempdir().expect("create temp dir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let ca = TestCa::new("cacerts-sync Key Vault emulator CA");
        let ca_cert_file = state_dir.join("ca.pem");
        ca.write_cert(&ca_cert_file).expect("write emulator CA certificate");
        let federated_token = fake_federated_jwt(&opts.client_id);
        let federated_token_file = state_dir.join("federated-token");
        std::fs::write(&federated_token_file, &federated_token).expect("write federated token file");

        let authority = format!("https://127.0.0.1:{}", https_addr.port());
        let vault_url = authority.clone();
        let identity_endpoint = format!("http://127.0.0.1:{}/msi/token", http_addr.port());
        let info = json!({
            "vault_url": vault_url,
            "authority_host": authority,
            "ca_cert_file": ca_cert_file,
            "tenant_id": opts.tenant_id,
            "client_id": opts.client_id,
            "client_secret": opts.client_secret,
            "federated_token_file": federated_token_file,
            "identity_endpoint": identity_endpoint,
            "identity_header": opts.identity_header,
            "challenge_resource": opts.challenge_resource,
        });
        let shared = Arc::new(Shared {
            cfg: Config {
                tenant_id: opts.tenant_id,
                client_id: opts.client_id,
                client_secret: opts.client_secret,
                object_id: opts.object_id,
                identity_header: opts.identity_header,
                challenge_resource: opts.challenge_resource,
                federated_token,
                token_lifetime: i64::try_from(opts.token_lifetime.as_secs()).unwrap_or(i64::MAX / 2),
                authority,
            },
            state: Mutex::new(StateData::default()),
            info,
        });
        let router =
            |listener| axum::Router::new().fallback(handle).with_state(Ctx { shared: shared.clone(), listener });
        let tls = ca.server_config(DEFAULT_SANS);
        let https = serve_https(https_listener, tls, router(ListenerKind::Https));
        let http = serve_http(http_listener, router(ListenerKind::Http));
        Self {
            shared,
            https,
            http,
            ca_pem: ca.cert_pem().to_owned(),
            ca_cert_file,
            federated_token_file,
            _temp_dir: temp_dir,
        }
    }

    /// The vault URL, `https://127.0.0.1:PORT`.
    pub fn vault_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.https.addr.port())
    }

    /// The Entra authority host, `https://127.0.0.1:PORT` (same listener as the vault).
    pub fn authority_host(&self) -> String {
        self.shared.cfg.authority.clone()
    }

    /// Address of the HTTPS listener.
    pub fn addr(&self) -> SocketAddr {
        self.https.addr
    }

    /// The PEM file of the CA that signed the server certificate.
    pub fn ca_cert_file(&self) -> &Path {
        &self.ca_cert_file
    }

    /// The CA certificate (PEM).
    pub fn ca_cert_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The tenant the token endpoint accepts.
    pub fn tenant_id(&self) -> &str {
        &self.shared.cfg.tenant_id
    }

    /// The application / managed identity client id.
    pub fn client_id(&self) -> &str {
        &self.shared.cfg.client_id
    }

    /// The application's client secret.
    pub fn client_secret(&self) -> &str {
        &self.shared.cfg.client_secret
    }

    /// The federated (workload identity) token file.
    pub fn federated_token_file(&self) -> &Path {
        &self.federated_token_file
    }

    /// The managed-identity endpoint, `http://127.0.0.1:PORT/msi/token` (for `IDENTITY_ENDPOINT`).
    pub fn identity_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/msi/token", self.http.addr.port())
    }

    /// The secret for `IDENTITY_HEADER`.
    pub fn identity_header(&self) -> &str {
        &self.shared.cfg.identity_header
    }

    /// The challenge resource (`https://vault.azure.net` unless configured).
    pub fn challenge_resource(&self) -> &str {
        &self.shared.cfg.challenge_resource
    }

    /// The JSON line the standalone runner prints (`vault_url`, `authority_host`, `ca_cert_file`, …).
    pub fn info_json(&self) -> String {
        self.shared.info.to_string()
    }

    /// Environment for a child process authenticating with `credential` (`"workload-identity"`,
    /// `"client-secret"` or `"managed-identity"`): `SSL_CERT_FILE`, `AZURE_AUTHORITY_HOST`,
    /// `NO_PROXY=127.0.0.1,localhost` plus the credential's inputs. For managed identity the caller must also
    /// make sure `IDENTITY_SERVER_THUMBPRINT`, `IMDS_ENDPOINT` and `MSI_ENDPOINT` are unset (`env_remove`),
    /// or the SDK picks another source. Panics on an unknown kind.
    pub fn child_env(&self, credential: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("SSL_CERT_FILE".to_owned(), self.ca_cert_file.display().to_string()),
            ("AZURE_AUTHORITY_HOST".to_owned(), self.authority_host()),
            ("NO_PROXY".to_owned(), "127.0.0.1,localhost".to_owned()),
        ];
        let tenant = ("AZURE_TENANT_ID".to_owned(), self.tenant_id().to_owned());
        let client = ("AZURE_CLIENT_ID".to_owned(), self.client_id().to_owned());
        match credential {
            "workload-identity" => env.extend([
                tenant,
                client,
                ("AZURE_FEDERATED_TOKEN_FILE".to_owned(), self.federated_token_file.display().to_string()),
            ]),
            "client-secret" => {
                env.extend([tenant, client, ("AZURE_CLIENT_SECRET".to_owned(), self.client_secret().to_owned())])
            }
            "managed-identity" => env.extend([
                ("IDENTITY_ENDPOINT".to_owned(), self.identity_endpoint()),
                ("IDENTITY_HEADER".to_owned(), self.identity_header().to_owned()),
            ]),
            other => panic!("unknown credential kind {other:?}"),
        }
        env
    }

    /// Stores a new version of secret `name` (bypassing auth and faults) and returns its version id.
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        self.shared.set_secret(name, value)
    }

    /// Version ids of secret `name`, oldest first (empty if unknown).
    pub fn secret_versions(&self, name: &str) -> Vec<String> {
        self.shared
            .lock()
            .secrets
            .get(&name.to_ascii_lowercase())
            .map(|e| e.versions.iter().map(|v| v.id.clone()).collect())
            .unwrap_or_default()
    }

    /// The current value of secret `name`.
    pub fn secret_value(&self, name: &str) -> Option<String> {
        self.shared
            .lock()
            .secrets
            .get(&name.to_ascii_lowercase())
            .and_then(|e| e.versions.last().map(|v| v.value.clone()))
    }

    /// Adds a fault (faults are checked in the order added).
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Makes every operation on secret `name` answer 403 `Forbidden` (`AccessDenied`).
    pub fn deny_secret(&self, name: &str) {
        self.shared.lock().denied.insert(name.to_ascii_lowercase());
    }

    /// Undoes [`KeyVaultEmulator::deny_secret`].
    pub fn allow_secret(&self, name: &str) {
        self.shared.lock().denied.remove(&name.to_ascii_lowercase());
    }

    /// Soft-deletes secret `name` (as `az keyvault secret delete` on a vault with soft delete, the default): a
    /// GET then answers 404 `SecretNotFound` until it is recovered. Returns false if it did not exist.
    pub fn soft_delete_secret(&self, name: &str) -> bool {
        let key = name.to_ascii_lowercase();
        let mut st = self.shared.lock();
        let Some(entry) = st.secrets.remove(&key) else { return false };
        st.deleted.insert(key, DeletedEntry { entry, deleted_date: now() });
        true
    }

    /// Disables (`enabled: false`) or re-enables the current version of secret `name`, as
    /// `az keyvault secret set-attributes --enabled false` does. Returns false if the secret does not exist.
    ///
    /// A GET of a disabled version then answers exactly as the real service does (seen in azure-sdk-for-js#24756,
    /// azure-powershell#15378 and ansible-collections/azure#1989): `403`, `x-ms-error-code: Forbidden`, body
    /// `{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.",
    /// "innererror":{"code":"SecretDisabled"}}}`.
    pub fn set_secret_enabled(&self, name: &str, enabled: bool) -> bool {
        self.shared.set_enabled(name, enabled)
    }

    /// Number of recorded requests (vault, STS, MI) with `method` (`""` or `"*"` = any) whose path starts
    /// with `path_prefix`.
    pub fn request_count(&self, method: &str, path_prefix: &str) -> usize {
        count_requests(&self.shared.lock().requests, method, path_prefix)
    }

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn reset_requests(&self) {
        self.shared.lock().requests.clear();
    }
}

fn count_requests(reqs: &[RequestRecord], method: &str, path_prefix: &str) -> usize {
    reqs.iter()
        .filter(|r| method.is_empty() || method == "*" || r.method.eq_ignore_ascii_case(method))
        .filter(|r| r.path.starts_with(path_prefix))
        .count()
}
