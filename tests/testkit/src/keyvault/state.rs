//! The emulator's options, its injectable faults, the request log and the shared in-memory state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::control::{new_version_id, normalize_audience, now};

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

    /// Hits every matching request until [`KeyVaultEmulator::clear_faults`](super::KeyVaultEmulator::clear_faults).
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
pub(super) struct Version {
    pub(super) id: String,
    pub(super) value: String,
    pub(super) content_type: Option<String>,
    pub(super) tags: Option<BTreeMap<String, String>>,
    pub(super) enabled: bool,
    pub(super) nbf: Option<i64>,
    pub(super) exp: Option<i64>,
    pub(super) created: i64,
    pub(super) updated: i64,
}

#[derive(Clone, Debug)]
pub(super) struct SecretEntry {
    /// The name as first created (Key Vault names are case-insensitive; maps are keyed by lower case).
    pub(super) name: String,
    /// Oldest first; the last is the current version.
    pub(super) versions: Vec<Version>,
}

#[derive(Clone, Debug)]
pub(super) struct DeletedEntry {
    pub(super) entry: SecretEntry,
    pub(super) deleted_date: i64,
}

#[derive(Clone, Debug)]
pub(super) struct TokenInfo {
    pub(super) audience: String,
    pub(super) expires_at: i64,
}

#[derive(Default)]
pub(super) struct StateData {
    pub(super) secrets: BTreeMap<String, SecretEntry>,
    pub(super) deleted: BTreeMap<String, DeletedEntry>,
    pub(super) tokens: HashMap<String, TokenInfo>,
    pub(super) faults: Vec<Fault>,
    pub(super) denied: HashSet<String>,
    pub(super) requests: Vec<RequestRecord>,
}

pub(super) struct Config {
    pub(super) tenant_id: String,
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) object_id: String,
    pub(super) identity_header: String,
    pub(super) challenge_resource: String,
    pub(super) federated_token: String,
    pub(super) token_lifetime: i64,
    pub(super) authority: String,
}

pub(super) struct Shared {
    pub(super) cfg: Config,
    pub(super) state: Mutex<StateData>,
    pub(super) info: Value,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, StateData> {
        // A panic in a handler must not wedge every later test request.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_enabled(&self, name: &str, enabled: bool) -> bool {
        let mut st = self.lock();
        let Some(v) = st.secrets.get_mut(&name.to_ascii_lowercase()).and_then(|e| e.versions.last_mut()) else {
            return false;
        };
        v.enabled = enabled;
        v.updated = now();
        true
    }

    pub(super) fn set_secret(&self, name: &str, value: &str) -> String {
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

    pub(super) fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut st = self.lock();
        let idx = st.faults.iter().position(|f| f.matches(method, path))?;
        let fault = st.faults[idx].clone();
        if fault.count != usize::MAX {
            st.faults[idx].count -= 1;
        }
        st.faults.retain(|f| f.count > 0);
        Some(fault)
    }

    pub(super) fn issue_token(&self, audience: &str) -> (String, i64) {
        let token = format!("emu.{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
        let expires_at = now() + self.cfg.token_lifetime;
        self.lock().tokens.insert(token.clone(), TokenInfo { audience: normalize_audience(audience), expires_at });
        (token, expires_at)
    }
}
