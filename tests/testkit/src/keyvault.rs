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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::tls::{DEFAULT_SANS, Served, TestCa, serve_http, serve_https};

/// API version the App Service managed-identity protocol uses (and the SDK sends).
pub const MSI_API_VERSION: &str = "2019-08-01";
/// `client_assertion_type` of the jwt-bearer flow (workload identity).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Largest page size Key Vault accepts for `maxresults` (also the default page size).
pub const MAX_PAGE_SIZE: usize = 25;

const JSON_CT: &str = "application/json; charset=utf-8";

/// Settings of an emulator instance.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Address of the HTTPS listener (vault + Entra); port 0 picks a free port.
    pub addr: SocketAddr,
    /// Address of the plain-HTTP managed-identity listener; port 0 picks a free port.
    pub identity_addr: SocketAddr,
    /// Where `ca.pem` and the federated token file are written; `None` = a temporary directory removed on drop.
    pub state_dir: Option<PathBuf>,
    /// The `resource` of the 401 challenge and the only audience the vault accepts.
    pub challenge_resource: String,
    /// The only tenant the token endpoint knows.
    pub tenant_id: String,
    /// The only application (and managed identity client id) the token endpoints know.
    pub client_id: String,
    /// The application's client secret.
    pub client_secret: String,
    /// The managed identity's object id (accepted as `object_id` by the MI endpoint).
    pub object_id: String,
    /// The `IDENTITY_HEADER` secret the MI endpoint requires.
    pub identity_header: String,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            identity_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            challenge_resource: "https://vault.azure.net".to_owned(),
            tenant_id: "test-tenant".to_owned(),
            client_id: "test-client".to_owned(),
            client_secret: format!("emu-secret-{:016x}", rand::random::<u64>()),
            object_id: "00000000-0000-0000-0000-00000000cafe".to_owned(),
            identity_header: format!("emu-identity-{:016x}", rand::random::<u64>()),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// A fault to inject: the next `count` matching requests get `status` (after `latency`). `status == 0` only
/// adds the latency and then serves normally. Vault faults apply after the auth gate; token endpoint faults
/// apply to every matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Only requests with this method (case-insensitive); `None` = any.
    pub method: Option<String>,
    /// Only requests whose path contains this substring; `None` = any.
    pub path_contains: Option<String>,
    /// HTTP status to answer with (0 = no status change, latency only).
    pub status: u16,
    /// How many requests it hits; `usize::MAX` = until cleared.
    pub count: usize,
    /// `Retry-After` seconds (429 without it gets `Retry-After: 1`, like the real service always sends one).
    pub retry_after: Option<u64>,
    /// Delay before the reply.
    pub latency: Option<Duration>,
}

impl Fault {
    /// A fault answering `status` once; chain [`Fault::times`], [`Fault::path`], ….
    pub fn status(status: u16) -> Self {
        Self { method: None, path_contains: None, status, count: 1, retry_after: None, latency: None }
    }

    /// A fault that only delays the next matching request by `latency`.
    pub fn delay(latency: Duration) -> Self {
        Self { latency: Some(latency), ..Self::status(0) }
    }

    /// Hits the next `count` matching requests.
    pub fn times(mut self, count: usize) -> Self {
        self.count = count;
        self
    }

    /// Hits every matching request until [`KeyVaultEmulator::clear_faults`].
    pub fn always(self) -> Self {
        self.times(usize::MAX)
    }

    /// Sends `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds a delay before the reply.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Only requests whose path contains `fragment`.
    pub fn path(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.to_owned());
        self
    }

    /// Only requests with `method`.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_owned());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.count > 0
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| path.contains(p))
    }
}

/// Which emulated service answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// Key Vault secrets API.
    Vault,
    /// Entra token endpoint.
    Sts,
    /// App Service managed-identity endpoint.
    ManagedIdentity,
}

/// One request seen by the emulator (control requests are not recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// The service that answered.
    pub service: Service,
    /// HTTP method, upper case.
    pub method: String,
    /// Raw path (percent-encoded as received).
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Status of the reply.
    pub status: u16,
    /// Vault: the request carried a valid token. Token endpoints: a token was issued.
    pub authorized: bool,
}

#[derive(Clone, Debug)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
}

#[derive(Clone, Debug)]
struct SecretEntry {
    /// The name as first created (Key Vault names are case-insensitive; maps are keyed by lower case).
    name: String,
    /// Oldest first; the last is the current version.
    versions: Vec<Version>,
}

#[derive(Clone, Debug)]
struct DeletedEntry {
    entry: SecretEntry,
    deleted_date: i64,
}

#[derive(Clone, Debug)]
struct TokenInfo {
    audience: String,
    expires_at: i64,
}

#[derive(Default)]
struct StateData {
    secrets: BTreeMap<String, SecretEntry>,
    deleted: BTreeMap<String, DeletedEntry>,
    tokens: HashMap<String, TokenInfo>,
    faults: Vec<Fault>,
    denied: HashSet<String>,
    requests: Vec<RequestRecord>,
}

struct Config {
    tenant_id: String,
    client_id: String,
    client_secret: String,
    object_id: String,
    identity_header: String,
    challenge_resource: String,
    federated_token: String,
    token_lifetime: i64,
    authority: String,
}

struct Shared {
    cfg: Config,
    state: Mutex<StateData>,
    info: Value,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, StateData> {
        // A panic in a handler must not wedge every later test request.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> bool {
        let mut st = self.lock();
        let Some(v) = st.secrets.get_mut(&name.to_ascii_lowercase()).and_then(|e| e.versions.last_mut()) else {
            return false;
        };
        v.enabled = enabled;
        v.updated = now();
        true
    }

    fn set_secret(&self, name: &str, value: &str) -> String {
        let now = now();
        let version = Version {
            id: new_version_id(),
            value: value.to_owned(),
            content_type: None,
            tags: None,
            enabled: true,
            nbf: None,
            exp: None,
            created: now,
            updated: now,
        };
        let id = version.id.clone();
        let mut st = self.lock();
        let key = name.to_ascii_lowercase();
        st.deleted.remove(&key);
        st.secrets
            .entry(key)
            .or_insert_with(|| SecretEntry { name: name.to_owned(), versions: Vec::new() })
            .versions
            .push(version);
        id
    }

    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut st = self.lock();
        let idx = st.faults.iter().position(|f| f.matches(method, path))?;
        let fault = st.faults[idx].clone();
        if fault.count != usize::MAX {
            st.faults[idx].count -= 1;
        }
        st.faults.retain(|f| f.count > 0);
        Some(fault)
    }

    fn issue_token(&self, audience: &str) -> (String, i64) {
        let token = format!("emu.{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
        let expires_at = now() + self.cfg.token_lifetime;
        self.lock().tokens.insert(token.clone(), TokenInfo { audience: normalize_audience(audience), expires_at });
        (token, expires_at)
    }
}

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
    /// `tokio::task::spawn_blocking` (and/or a multi-thread runtime), as `tests/keyvault_emulator.rs` does.
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

// ---------------------------------------------------------------------------------------------------------
// HTTP plumbing

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListenerKind {
    Https,
    Http,
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    listener: ListenerKind,
}

/// A reply before the common headers are added.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body: Some(body) }
    }

    fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: None }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A Key Vault error: body `{"error":{"code","message"[,"innererror"]}}` and `x-ms-error-code`.
    fn kv_error(status: u16, code: &str, message: &str, inner: Option<&str>) -> Self {
        let mut error = json!({"code": code, "message": message});
        if let Some(inner) = inner {
            error["innererror"] = json!({"code": inner});
        }
        Self::json(status, json!({"error": error})).header("x-ms-error-code", code)
    }
}

struct Req {
    method: Method,
    path: String,
    query_raw: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    host: String,
}

impl Req {
    fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn handle(State(ctx): State<Ctx>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
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
async fn apply_fault(shared: &Shared, req: &Req, service: Service) -> Option<Reply> {
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

fn unauthorized(shared: &Shared, message: &str) -> Reply {
    let challenge = format!(
        "Bearer authorization=\"{}/{}\", resource=\"{}\"",
        shared.cfg.authority, shared.cfg.tenant_id, shared.cfg.challenge_resource
    );
    Reply::kv_error(401, "Unauthorized", message, None).header("www-authenticate", challenge)
}

fn forbidden(shared: &Shared, host: &str, op: &str) -> Reply {
    let vault = host.split(['.', ':']).next().unwrap_or(host);
    let message = format!(
        "The user, group or application 'appid={};oid={};iss=https://sts.windows.net/{}/' does not have secrets {op} permission on key vault '{vault};location=local'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
        shared.cfg.client_id, shared.cfg.object_id, shared.cfg.tenant_id
    );
    Reply::kv_error(403, "Forbidden", &message, Some("AccessDenied"))
}

fn secret_not_found(name_or_id: &str) -> Reply {
    Reply::kv_error(
        404,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name_or_id} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn bad_parameter(message: &str) -> Reply {
    Reply::kv_error(400, "BadParameter", message, None)
}

/// Checks the bearer token: `Ok(())` if valid for the vault, otherwise the 401 challenge reply.
fn auth_gate(shared: &Shared, req: &Req) -> Result<(), Reply> {
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

async fn vault(shared: &Shared, req: &Req) -> (Reply, bool) {
    // The gate comes first: the SDK's first (unauthenticated) PUT has an empty body and must get the
    // challenge, not a 400.
    if let Err(reply) = auth_gate(shared, req) {
        return (reply, false);
    }
    if let Some(reply) = apply_fault(shared, req, Service::Vault).await {
        return (reply, true);
    }
    (vault_route(shared, req), true)
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn vault_route(shared: &Shared, req: &Req) -> Reply {
    let Some(api_version) = req.param("api-version").filter(|v| !v.is_empty()) else {
        return bad_parameter("The request URI has a missing api-version query parameter.");
    };
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = &req.method;
    match segs.as_slice() {
        ["secrets"] | ["secrets", ""] => {
            if m != Method::GET {
                return method_not_allowed(m);
            }
            list_secrets(shared, req, api_version)
        }
        ["secrets", name, rest @ ..] => {
            let name = percent_decode(name);
            if !valid_name(&name) {
                return bad_parameter(&format!("The request URI contains an invalid name: {name}"));
            }
            let op = match *m {
                Method::GET if rest == ["versions"] => "list",
                Method::GET => "get",
                Method::PUT | Method::PATCH => "set",
                Method::DELETE => "delete",
                _ => "get",
            };
            if shared.lock().denied.contains(&name.to_ascii_lowercase()) {
                return forbidden(shared, &req.host, op);
            }
            match (m.clone(), rest) {
                (Method::PUT, []) => put_secret(shared, req, &name),
                (Method::GET, [] | [""]) => get_secret(shared, req, &name, None),
                (Method::GET, ["versions"]) => list_versions(shared, req, &name, api_version),
                (Method::GET, [version]) => get_secret(shared, req, &name, Some(version)),
                (Method::PATCH, [] | [""]) => patch_secret(shared, req, &name, None),
                (Method::PATCH, [version]) => patch_secret(shared, req, &name, Some(version)),
                (Method::DELETE, []) => delete_secret(shared, req, &name),
                (_, [] | [""] | [_]) => method_not_allowed(m),
                _ => not_found_path(),
            }
        }
        ["deletedsecrets", name, rest @ ..] => {
            let name = percent_decode(name);
            match (m.clone(), rest) {
                (Method::GET, []) => get_deleted(shared, req, &name),
                (Method::DELETE, []) => purge_deleted(shared, &name),
                (Method::POST, ["recover"]) => recover_deleted(shared, req, &name),
                _ => not_found_path(),
            }
        }
        _ => not_found_path(),
    }
}

fn method_not_allowed(m: &Method) -> Reply {
    Reply::kv_error(405, "MethodNotAllowed", &format!("Method {m} is not allowed for this resource."), None)
}

fn not_found_path() -> Reply {
    Reply::kv_error(404, "NotFound", "The requested resource was not found.", None)
}

#[derive(Deserialize)]
struct SetBody {
    value: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

#[derive(Deserialize, Default)]
struct AttrsIn {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

#[derive(Deserialize)]
struct PatchBody {
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

fn put_secret(shared: &Shared, req: &Req, name: &str) -> Reply {
    let body: SetBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(_) => {
            return bad_parameter("The request body is not a valid SecretSetParameters JSON document.");
        }
    };
    let Some(value) = body.value else {
        return bad_parameter("Property 'value' is required.");
    };
    let key = name.to_ascii_lowercase();
    let now = now();
    let attrs = body.attributes.unwrap_or_default();
    let version = Version {
        id: new_version_id(),
        value,
        content_type: body.content_type,
        tags: body.tags,
        enabled: attrs.enabled.unwrap_or(true),
        nbf: attrs.nbf,
        exp: attrs.exp,
        created: now,
        updated: now,
    };
    let mut st = shared.lock();
    if let Some(deleted) = st.deleted.get(&key) {
        let msg = format!(
            "Secret {} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.",
            deleted.entry.name
        );
        return Reply::kv_error(409, "Conflict", &msg, Some("ObjectIsDeletedButRecoverable"));
    }
    let entry = st.secrets.entry(key).or_insert_with(|| SecretEntry { name: name.to_owned(), versions: Vec::new() });
    entry.versions.push(version);
    let bundle = secret_bundle(&req.host, &entry.name, entry.versions.last().expect("just pushed"), true);
    Reply::json(200, bundle)
}

fn find_version<'a>(entry: &'a SecretEntry, version: Option<&str>) -> Option<&'a Version> {
    match version {
        None => entry.versions.last(),
        Some(v) => entry.versions.iter().find(|x| x.id.eq_ignore_ascii_case(v)),
    }
}

fn get_secret(shared: &Shared, req: &Req, name: &str, version: Option<&str>) -> Reply {
    let st = shared.lock();
    let Some(entry) = st.secrets.get(&name.to_ascii_lowercase()) else {
        return secret_not_found(name);
    };
    let Some(v) = find_version(entry, version) else {
        return secret_not_found(&format!("{name}/{}", version.unwrap_or_default()));
    };
    if !v.enabled {
        // The real service's answer to a GET of a disabled version, verbatim (azure-sdk-for-js#24756,
        // azure-powershell#15378): 403, code `Forbidden`, inner error `SecretDisabled`. Only the inner code tells
        // it apart from a missing 'get' permission (403 `Forbidden` too).
        return Reply::kv_error(
            403,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    Reply::json(200, secret_bundle(&req.host, &entry.name, v, true))
}

fn patch_secret(shared: &Shared, req: &Req, name: &str, version: Option<&str>) -> Reply {
    let body: PatchBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(_) => {
            return bad_parameter("The request body is not a valid SecretUpdateParameters JSON document.");
        }
    };
    let mut st = shared.lock();
    let Some(entry) = st.secrets.get_mut(&name.to_ascii_lowercase()) else {
        return secret_not_found(name);
    };
    let display = entry.name.clone();
    let idx = match version {
        None => entry.versions.len().checked_sub(1),
        Some(v) => entry.versions.iter().position(|x| x.id.eq_ignore_ascii_case(v)),
    };
    let Some(idx) = idx else {
        return secret_not_found(&format!("{name}/{}", version.unwrap_or_default()));
    };
    let v = &mut entry.versions[idx];
    if let Some(ct) = body.content_type {
        v.content_type = Some(ct);
    }
    if let Some(tags) = body.tags {
        v.tags = Some(tags);
    }
    if let Some(a) = body.attributes {
        if let Some(e) = a.enabled {
            v.enabled = e;
        }
        if a.nbf.is_some() {
            v.nbf = a.nbf;
        }
        if a.exp.is_some() {
            v.exp = a.exp;
        }
    }
    v.updated = now();
    // The update response carries no value.
    Reply::json(200, secret_bundle(&req.host, &display, v, false))
}

fn deleted_bundle(host: &str, d: &DeletedEntry) -> Value {
    let v = d.entry.versions.last().expect("deleted secret has a version");
    let mut b = secret_bundle(host, &d.entry.name, v, false);
    b["recoveryId"] = json!(format!("https://{host}/deletedsecrets/{}", d.entry.name));
    b["deletedDate"] = json!(d.deleted_date);
    b["scheduledPurgeDate"] = json!(d.deleted_date + 90 * 86_400);
    b
}

fn delete_secret(shared: &Shared, req: &Req, name: &str) -> Reply {
    let key = name.to_ascii_lowercase();
    let mut st = shared.lock();
    let Some(entry) = st.secrets.remove(&key) else {
        return secret_not_found(name);
    };
    let d = DeletedEntry { entry, deleted_date: now() };
    let body = deleted_bundle(&req.host, &d);
    st.deleted.insert(key, d);
    Reply::json(200, body)
}

fn deleted_not_found(name: &str) -> Reply {
    Reply::kv_error(404, "SecretNotFound", &format!("Deleted Secret not found: {name}"), None)
}

fn get_deleted(shared: &Shared, req: &Req, name: &str) -> Reply {
    match shared.lock().deleted.get(&name.to_ascii_lowercase()) {
        Some(d) => Reply::json(200, deleted_bundle(&req.host, d)),
        None => deleted_not_found(name),
    }
}

fn purge_deleted(shared: &Shared, name: &str) -> Reply {
    match shared.lock().deleted.remove(&name.to_ascii_lowercase()) {
        Some(_) => Reply::empty(204),
        None => deleted_not_found(name),
    }
}

fn recover_deleted(shared: &Shared, req: &Req, name: &str) -> Reply {
    let key = name.to_ascii_lowercase();
    let mut st = shared.lock();
    let Some(d) = st.deleted.remove(&key) else {
        return deleted_not_found(name);
    };
    let body = secret_bundle(&req.host, &d.entry.name, d.entry.versions.last().expect("version"), false);
    st.secrets.insert(key, d.entry);
    Reply::json(200, body)
}

fn attributes(v: &Version) -> Value {
    let mut a = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    });
    if let Some(nbf) = v.nbf {
        a["nbf"] = json!(nbf);
    }
    if let Some(exp) = v.exp {
        a["exp"] = json!(exp);
    }
    a
}

/// A SecretBundle (`with_value`) or the bundle without value (update/delete responses).
fn secret_bundle(host: &str, name: &str, v: &Version, with_value: bool) -> Value {
    let mut b = json!({"id": format!("https://{host}/secrets/{name}/{}", v.id), "attributes": attributes(v)});
    if with_value {
        b["value"] = json!(v.value);
    }
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    if let Some(tags) = &v.tags {
        b["tags"] = json!(tags);
    }
    b
}

/// A SecretItem: `id` is unversioned for the secrets list, versioned for the versions list.
fn secret_item(id: String, v: &Version) -> Value {
    let mut b = json!({"id": id, "attributes": attributes(v)});
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    if let Some(tags) = &v.tags {
        b["tags"] = json!(tags);
    }
    b
}

/// Parses `maxresults` and `$skiptoken`; the skiptoken is the decimal offset of the next item.
fn page_params(req: &Req) -> Result<(usize, usize), Reply> {
    let max = match req.param("maxresults") {
        None => MAX_PAGE_SIZE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(bad_parameter(&format!("Invalid maxresults value {s}. It must be between 1 and 25.")));
            }
        },
    };
    let skip = match req.param("$skiptoken") {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| bad_parameter("The $skiptoken parameter is invalid."))?,
    };
    Ok((max, skip))
}

fn page(req: &Req, items: Vec<Value>, path: &str, api_version: &str) -> Reply {
    let (max, skip) = match page_params(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(max).collect();
    let next = skip + value.len();
    let next_link = if next < total {
        let api = url::form_urlencoded::byte_serialize(api_version.as_bytes()).collect::<String>();
        json!(format!("https://{}{path}?api-version={api}&$skiptoken={next}&maxresults={max}", req.host))
    } else {
        Value::Null
    };
    Reply::json(200, json!({"value": value, "nextLink": next_link}))
}

fn list_secrets(shared: &Shared, req: &Req, api_version: &str) -> Reply {
    let items: Vec<Value> = shared
        .lock()
        .secrets
        .values()
        .filter_map(|e| {
            let v = e.versions.last()?;
            Some(secret_item(format!("https://{}/secrets/{}", req.host, e.name), v))
        })
        .collect();
    page(req, items, "/secrets", api_version)
}

fn list_versions(shared: &Shared, req: &Req, name: &str, api_version: &str) -> Reply {
    let st = shared.lock();
    let Some(entry) = st.secrets.get(&name.to_ascii_lowercase()) else {
        return secret_not_found(name);
    };
    let items = entry
        .versions
        .iter()
        .map(|v| secret_item(format!("https://{}/secrets/{}/{}", req.host, entry.name, v.id), v))
        .collect();
    let path = format!("/secrets/{}/versions", entry.name);
    drop(st);
    page(req, items, &path, api_version)
}

// ---------------------------------------------------------------------------------------------------------
// Entra token endpoint and managed identity

fn entra_error(status: u16, error: &str, code: u32, text: &str) -> Reply {
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

async fn sts(shared: &Shared, req: &Req) -> (Reply, bool) {
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

async fn managed_identity(shared: &Shared, req: &Req) -> (Reply, bool) {
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

// ---------------------------------------------------------------------------------------------------------
// Control surface

#[derive(Deserialize)]
struct FaultSpec {
    status: u16,
    count: Option<usize>,
    retry_after: Option<u64>,
    latency_ms: Option<u64>,
    method: Option<String>,
    path_contains: Option<String>,
}

fn control(shared: &Shared, req: &Req) -> Reply {
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

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn new_version_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn normalize_audience(a: &str) -> String {
    a.strip_suffix("/.default").unwrap_or(a).trim_end_matches('/').to_owned()
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// A JWT-shaped (unsigned) federated token like the one AKS projects into pods. The emulator compares it
/// byte for byte; its claims only make it look right to a person reading the file.
fn fake_federated_jwt(client_id: &str) -> String {
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
