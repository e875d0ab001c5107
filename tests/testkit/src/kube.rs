//! Kubernetes API test server: the subset of kube-apiserver that cacerts-sync uses, over HTTPS, with the
//! real API's semantics, so that kube-rs and kubectl can drive it unmodified.
//!
//! # What it serves
//! - **Resources**: core/v1 `namespaces`, `secrets`, `configmaps`, `events`; `events.k8s.io/v1` `events` (the same stored
//!   objects as core Events, converted field by field as the apiserver does: `note`↔`message`,
//!   `regarding`↔`involvedObject`, `reportingController`↔`reportingComponent`, `deprecated*`↔…);
//!   `apps/v1` `deployments` (+ `/status`); `coordination.k8s.io/v1` `leases`.
//! - **Discovery**: `/version` (claims v1.32), `/api`, `/api/v1`, `/apis`, `/apis/<group>`,
//!   `/apis/<group>/<version>` (legacy, non-aggregated documents: kubectl and kube-rs fall back to them).
//!   `/openapi/v3` and `/openapi/v3/<gv>` serve a *minimal* document: only PATCH operations carrying
//!   `x-kubernetes-group-version-kind` and a `fieldValidation` parameter. That is exactly what kubectl reads to
//!   decide the server validates fields itself; without it `kubectl apply` fails ("failed to download
//!   openapi"). No schemas are served, so `kubectl apply` (client-side) computes its strategic-merge patch from
//!   its compiled-in types; `kubectl explain` does not work. `/openapi/v2` is 404 (kubectl tolerates it).
//! - **Verbs**: get; list (`labelSelector` with `=`, `==`, `!=`, `in`, `notin`, `k`, `!k`; `fieldSelector` with
//!   `metadata.name`, `metadata.namespace` and the per-kind fields the apiserver registers); watch
//!   (`watch=1|true`, see below); create (`generateName` too); update (PUT); patch as JSON merge patch,
//!   strategic merge patch, JSON patch and server-side apply; delete (with `preconditions`); `dryRun=All`.
//! - **Auth**: bearer tokens. Each token maps to a user and either cluster-admin or a list of RBAC-like
//!   [`Rule`]s; a denied request gets the Forbidden `Status` worded as the RBAC authorizer words it. A missing
//!   or unknown token gets 401 `Unauthorized` on every path (discovery included).
//! - **Control**: [`KubeTestServer`] reads and writes objects directly (with full server semantics: watchers
//!   are notified), sets Deployment status, injects [`Fault`]s (statuses, latency, a corrupted merge patch that
//!   draws the apiserver's data-echoing 422), closes every open watch, compacts the watch history and records
//!   every request.
//!
//! # Faithful (checked against `shared/kube-api-facts.md`, recorded from a real v1.32, and against kubectl)
//! - Error bodies: `Status` with `kind`, `apiVersion: v1`, `metadata: {}`, `status: Failure`, `message`,
//!   `reason`, `details` (`name`, `group`, `kind` = the resource, `causes`) and `code`, with the exact messages:
//!   NotFound (`secrets "nope" not found`, `deployments.apps "x" not found`; a missing namespace is not
//!   mentioned on GET, and is the object of the 404 on create: `namespaces "nons" not found`), AlreadyExists,
//!   Conflict (stale `resourceVersion` on PUT, or carried by any patch as a precondition), Forbidden,
//!   Unauthorized (no details), Invalid (`Secret "cacerts" is invalid: [type: Invalid value: "kubernetes.io/tls":
//!   field is immutable, data[tls.crt]: Required value, …]` with `causes`), and the server-side apply conflict
//!   (`Apply failed with 1 conflict: conflict with "curl" using v1: .data.root-cert.pem`, cause
//!   `FieldManagerConflict`; several conflicts are grouped per manager as in `fieldmanager`).
//! - Secrets: `data` is base64-checked with Go's decoder rules, so the offset in "illegal base64 data at input
//!   byte N" is Go's; in a POST/PUT body that is a 400 BadRequest (`Secret in version "v1" cannot be handled as
//!   a Secret: …`), in a patch a 422 Invalid on field `patch` whose value is the whole patched object (as
//!   the apiserver does — note that it contains the Secret's data). `data` is re-encoded canonically,
//!   `stringData` is merged into `data` and dropped, `type` defaults to `Opaque` and is immutable, the required
//!   keys of `kubernetes.io/tls` (and dockerconfigjson, dockercfg, ssh-auth) are enforced, key names are
//!   validated, `immutable: true` freezes `data`.
//! - Metadata: random v4 `uid`; `creationTimestamp` (second precision); one cluster-wide, strictly increasing
//!   decimal `resourceVersion`; `generation` only on Deployments (1 on create, +1 when `spec` changes, never on
//!   metadata-only or status changes); a write that changes nothing is not persisted (same resourceVersion, no
//!   watch event), so idempotence can be asserted; `managedFields` on every write (manager = `fieldManager`,
//!   else the user agent up to its first `/`, as kubectl's `kubectl-create`, `kubectl-patch`, …).
//! - Status subresource: main-resource writes keep `status`; `/status` writes change only `status`.
//! - Lists: `kind: <Kind>List`, `apiVersion`, `metadata.resourceVersion`, and items without their own
//!   `kind`/`apiVersion` (as built-in lists are served).
//! - Watches: one `{"type","object"}` JSON object per line. Without `resourceVersion` or with `0`: synthetic
//!   ADDED events for the current objects first. With `resourceVersion=N`: every change after N, replayed from
//!   the kept history; older than the history → HTTP 200 then one `ERROR` event carrying a 410 `Expired`
//!   `too old resource version: N (M)` Status (what the watch cache does; kube-rs's watcher re-lists on it).
//!   An object that stops/starts matching the selectors is sent as DELETED/ADDED. BOOKMARKs (an object with
//!   only `metadata.resourceVersion`) when `allowWatchBookmarks=true`. Streaming lists
//!   (`sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true`) end the initial
//!   ADDED events with a BOOKMARK annotated `k8s.io/initial-events-end: "true"`; `sendInitialEvents` without
//!   those two is 422. `timeoutSeconds` ends the stream. Deleted objects carry the deletion's resourceVersion.
//! - Server-side apply: fields are owned per manager and operation (an `Update` by a manager and an `Apply`
//!   by the same name are different owners, as in the apiserver); a non-forced apply that would change a field
//!   another owner holds is a 409 listing every such field; applying the same value makes co-owners without
//!   conflict; `force=true` takes the fields over; fields dropped from a manager's applied configuration are
//!   removed unless someone else owns them; `fieldManager` is required (422); apply creates a missing object.
//! - Events: `ValidateEventCreate`/`ValidateEventUpdate` ported: an Event with `eventTime` needs
//!   `reportingComponent` (`reportingController` in events.k8s.io) as a qualified name, `reportingInstance`,
//!   `action` and `reason` (≤ 128 bytes each) and a `message`/`note` of ≤ 1024 bytes; events.k8s.io creates
//!   also need `eventTime`, `type` Normal|Warning and unset deprecated fields, a `series` needs `count` ≥ 2, and
//!   `reason`/`note`/`type`/`regarding` are immutable on update. Paths in the messages use the core field names,
//!   as the apiserver validates the internal (core) form.
//! - Protobuf request bodies (what kubectl's typed `create` commands send) are decoded for Secrets, ConfigMaps,
//!   Namespaces and Deployments (the Pod template fields `kubectl create deployment` and most manifests use; an
//!   unlisted field is a 415 that names it); responses are always JSON (clients accept that).
//! - A fresh server has the namespaces a fresh cluster has: `default`, `kube-system`, `kube-public`,
//!   `kube-node-lease` (no `istio-system` unless [`start_seeded`](KubeTestServer::start_seeded) adds it).
//! - Server-side printing (`Accept: …;as=Table;…`, what `kubectl get` asks for, also on watches) with the
//!   apiserver's default columns: Secrets TYPE/DATA/AGE, Deployments READY/UP-TO-DATE/AVAILABLE/AGE and, with
//!   `-o wide`, CONTAINERS/IMAGES/SELECTOR, Namespaces STATUS, Leases HOLDER, Events LAST SEEN/TYPE/REASON/
//!   OBJECT/MESSAGE.
//!
//! # How it differs from a real kube-apiserver
//! - Only the resources above; other paths are 404, so `kubectl get all`/`get pods` fail. No ReplicaSets or
//!   Pods are created; instead a simulated Deployment controller (on by default, [`set_auto_rollout`](
//!   KubeTestServer::set_auto_rollout)) sets `status` (observedGeneration, replicas, updated/ready/available
//!   replicas, Available and Progressing conditions) for the new generation after a delay. The real controller
//!   progresses through intermediate states; tests simulate those with
//!   [`set_deployment_status`](KubeTestServer::set_deployment_status).
//! - No istiod runs. [`simulate_istiod_roots`](KubeTestServer::simulate_istiod_roots) (off by default) stands
//!   in for it: after each simulated rollout of an `app=istiod` Deployment, the "new pods" publish the roots
//!   they loaded in the ConfigMap `istio-ca-root-cert` (`cacerts`' `root-cert.pem`, or a self-signed root
//!   without `cacerts`); [`set_istio_ca_root_cert`](KubeTestServer::set_istio_ca_root_cert) writes it directly.
//!   Only the istiod namespace's copy is written (istiod writes one in every namespace).
//! - Field ownership is tracked per leaf (scalar, whole list, or empty map). Lists are atomic for apply and
//!   ownership (the apiserver merges keyed lists such as `containers` per element, and its managedFields use
//!   `k:{…}` keys). `fieldsV1` has `".": {}` on map-typed fields (labels, annotations, data, …) for Update
//!   operations only. Client-sent `managedFields` are ignored (the apiserver lets clients overwrite or reset
//!   them).
//! - Strategic merge patch knows the merge keys of the Pod template lists (`containers`, `initContainers`,
//!   `volumes`, `env`, `volumeMounts`, `imagePullSecrets` by `name`, `ports` by `containerPort`,
//!   `conditions` by `type`); every other list is replaced. `$setElementOrder` and
//!   `$deleteFromPrimitiveList` are ignored, and `finalizers` are replaced rather than merged as a set.
//!   The Invalid value of a patch decode error is the patched object as JSON for every patch type (the
//!   apiserver prints a Go map for strategic-merge patches).
//! - Defaulting is shallow: Deployments get `replicas`, `strategy`, `revisionHistoryLimit`,
//!   `progressDeadlineSeconds` and an empty `status`; the Pod template gets none of the real defaults
//!   (`imagePullPolicy`, `terminationMessagePath`, `dnsPolicy`, …), and Deployments are not validated
//!   (selector/template label mismatch is accepted). Namespaces get the `kubernetes.io/metadata.name` label,
//!   the `kubernetes` finalizer and phase Active. Leases are not validated. Events get the apiserver's
//!   `ValidateEvent` checks listed above, but not the metadata-update or eventTime-precision rules.
//! - Deleting a namespace removes its objects and the namespace at once (no Terminating phase persists;
//!   the DELETE response shows `Terminating`). DELETE of other kinds answers a `Status` Success with
//!   `details.uid`, as the generic registry does; `propagationPolicy`/finalizers/graceful deletion are ignored.
//! - `list` ignores `limit`/`continue` (everything comes in one page, which is a valid answer) and
//!   `resourceVersion`/`resourceVersionMatch` (always the latest state).
//! - Tables: the wide-only Event columns (SUBOBJECT, SOURCE, FIRST SEEN, COUNT, NAME) are missing, and every
//!   Table, also each watch event's, carries `columnDefinitions`.
//! - Watches keep the last 10 000 changes (or what [`compact`](KubeTestServer::compact) left); BOOKMARKs come
//!   every 5 s by default (about every minute in the apiserver; [`set_bookmark_interval`](
//!   KubeTestServer::set_bookmark_interval)). A watcher more than 4 096 events behind is closed.
//! - RBAC rules are cluster-wide (a Role would be namespaced); there are no ClusterRoles/aggregation, no
//!   impersonation, no anonymous user (no token → 401, where an apiserver with anonymous auth gives 403), and
//!   non-resource URLs (discovery, openapi) are open to every authenticated user.
//! - No admission (quota, limit ranges, PSA), no webhooks, no field validation (`fieldValidation=Strict` is
//!   accepted and unknown fields are kept), no `/scale`, no deletecollection, no protobuf/CBOR responses,
//!   HTTP/1.1 only (no HTTP/2 ALPN). Protobuf bodies of other kinds get 415 `UnsupportedMediaType`.
//! - Injected [`Fault`]s replace the answer after authentication; a 409 or 404 on an object URL uses that
//!   object's real Conflict/NotFound body, 429 adds `Retry-After`. Note that kube 5's client retries 429,
//!   503 and 504 by itself (exponential backoff), so a fault with those codes and no `times` limit makes a
//!   kube-rs caller retry for minutes; use 500 or `times(n)`.

mod patch;
mod protobuf;
mod resources;
mod rollout;
mod select;
mod server;
mod status;
mod store;
mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::tls::{Served, TestCa, serve_https};
use rollout::{publish_roots, rollout_loop, set_status};
use server::{FaultState, Identity, Inner};
use store::{Origin, Ownership, Store, WriteOpts};

/// The user the admin token authenticates as (cluster-admin).
pub const ADMIN_USER: &str = "kubernetes-admin";
/// Namespaces that exist from the start.
pub const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Field manager of writes made through the handle.
pub const HANDLE_MANAGER: &str = "kube-test-server";
/// Field manager of the simulated Deployment controller (auto-rollout and [`KubeTestServer::set_deployment_status`]).
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// One RBAC `PolicyRule`: verbs on resources of one API group, optionally only the named objects.
///
/// Matching is RBAC's: `"*"` matches any verb/resource/group; `resources` may name a subresource
/// (`deployments/status`); a non-empty `resource_names` never matches a request without a name (create, a
/// list or watch without a single-name `fieldSelector=metadata.name=…`).
#[derive(Debug, Clone)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub group: String,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

impl Rule {
    /// `Rule::new(&["get", "patch"], "", &["secrets"])`.
    pub fn new(verbs: &[&str], group: &str, resources: &[&str]) -> Self {
        Self {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            group: group.to_string(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            resource_names: Vec::new(),
        }
    }

    /// Limits the rule to these object names (`resourceNames`).
    pub fn names(mut self, names: &[&str]) -> Self {
        self.resource_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// An injected fault: optional added latency, then optionally a `Status` error with `status` instead of the
/// real answer. Filters: HTTP method and a substring of the request path. Faults are checked after
/// authentication, in the order they were injected; the first that matches applies.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub status: Option<u16>,
    pub times: Option<usize>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub latency: Option<Duration>,
    pub retry_after: Option<u64>,
    pub message: Option<String>,
    /// In a JSON merge patch, replace `data.<key>` with invalid base64 before serving it (see
    /// [`corrupt_data`](Self::corrupt_data)).
    pub corrupt_data: Option<String>,
}

impl Fault {
    /// Answer with `code` (409 and 404 on an object URL get the real Conflict/NotFound body of that object;
    /// 429 gets `Retry-After` and `details.retryAfterSeconds`).
    pub fn status(code: u16) -> Self {
        Self { status: Some(code), ..Self::default() }
    }
    /// Only add latency, then serve normally.
    pub fn latency(d: Duration) -> Self {
        Self { latency: Some(d), ..Self::default() }
    }
    /// Apply at most `n` times (default: until cleared).
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
    /// Only for this HTTP method (`"PATCH"`).
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_string());
        self
    }
    /// Only for request paths containing `p` (`"/secrets/cacerts"`).
    pub fn path(mut self, p: &str) -> Self {
        self.path = Some(p.to_string());
        self
    }
    /// Add this latency before answering.
    pub fn delay(mut self, d: Duration) -> Self {
        self.latency = Some(d);
        self
    }
    /// `Retry-After` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// The `Status.message` to send.
    pub fn message(mut self, m: &str) -> Self {
        self.message = Some(m.to_string());
        self
    }
    /// Serve the request with `data.<key>` of its JSON merge patch replaced by invalid base64 (what a mangling
    /// proxy or a client bug would send). The server then answers through its real code path as the apiserver
    /// does: 422 `Invalid` on field `patch` whose value is the whole merged Secret as JSON, **every other
    /// `data` value included** (`../shared/kube-api-facts.md`, last section). For testing redaction.
    pub fn corrupt_data(key: &str) -> Self {
        Self { corrupt_data: Some(key.to_string()), ..Self::default() }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    pub content_type: Option<String>,
    /// HTTP status sent (200 for a watch, whatever its events).
    pub status: u16,
    /// The authenticated user ("" when authentication failed).
    pub user: String,
    pub is_watch: bool,
}

/// A running Kubernetes API test server and its in-process control handle.
pub struct KubeTestServer {
    inner: Arc<Inner>,
    served: Served,
    ca: TestCa,
    admin_token: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for KubeTestServer {
    fn drop(&mut self) {
        self.served.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn random_hex(n: usize) -> String {
    (0..n).map(|_| format!("{:x}", rand::random::<u8>() & 0xf)).collect()
}

impl KubeTestServer {
    /// Starts on `127.0.0.1:0` with the namespaces a fresh cluster has ([`INITIAL_NAMESPACES`]: no
    /// `istio-system`), an admin token and an admin kubeconfig.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    /// Like [`start`](Self::start), then creates `namespaces` too (e.g. `istio-system`, as an Istio install would).
    pub async fn start_seeded(namespaces: &[&str]) -> Self {
        let server = Self::start().await;
        for ns in namespaces {
            server.create("namespaces", "", json!({"metadata": {"name": ns}}));
        }
        server
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind kube test server");
        let ca = TestCa::new("kube-test-server CA");
        let tls = ca.server_config(&["127.0.0.1", "localhost"]);
        let (tx, _) = broadcast::channel(4096);
        let (rollout_tx, rollout_rx) = mpsc::unbounded_channel();
        let mut store = Store::new(tx.clone());
        store.rollout_tx = Some(rollout_tx);
        store.rollout_delay = Some(Duration::from_millis(200));
        let admin_token = format!("admin-{}", random_hex(32));
        let mut tokens = HashMap::new();
        tokens.insert(admin_token.clone(), Identity { user: ADMIN_USER.to_string(), rules: None });
        let inner = Arc::new(Inner {
            store: Mutex::new(store),
            tx,
            tokens: Mutex::new(tokens),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            bookmark_interval: Mutex::new(Duration::from_secs(5)),
            server_address: Mutex::new(String::new()),
            close_watches: tokio::sync::watch::channel(0).0,
        });
        let router = axum::Router::new().fallback(server::handle).with_state(inner.clone());
        let served = serve_https(listener, tls, router);
        *inner.server_address.lock().expect("addr") = served.addr.to_string();
        tokio::spawn(rollout_loop(Arc::downgrade(&inner), rollout_rx));
        let dir = std::env::temp_dir().join(format!("kube-test-server-{}", random_hex(16)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("kubeconfig");
        let server = Self { inner, served, ca, admin_token, dir, kubeconfig };
        for ns in INITIAL_NAMESPACES {
            server.create("namespaces", "", json!({"metadata": {"name": ns}}));
        }
        server.write_kubeconfig(&server.kubeconfig, &server.admin_token.clone()).expect("write kubeconfig");
        server
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.served.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// The admin kubeconfig (written to a temp dir removed on drop).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The test CA certificate (PEM) the server certificate chains to.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Writes a kubeconfig for `token` (CA as `certificate-authority-data`, default namespace `default`).
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> std::io::Result<()> {
        let user = self
            .inner
            .tokens
            .lock()
            .expect("tokens")
            .get(token)
            .map(|i| i.user.clone())
            .unwrap_or_else(|| "user".into());
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca.cert_pem());
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-test-server\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user:?}\n  user:\n    token: {token:?}\ncontexts:\n- name: kube-test-server\n  context:\n    cluster: kube-test-server\n    user: {user:?}\n    namespace: default\ncurrent-context: kube-test-server\n",
            url = self.url()
        );
        std::fs::write(path, yaml)
    }

    /// Registers a bearer token for `user` that may do only what `rules` grant (an empty list grants nothing).
    pub fn add_token(&self, token: &str, user: &str, rules: Vec<Rule>) {
        self.inner
            .tokens
            .lock()
            .expect("tokens")
            .insert(token.to_string(), Identity { user: user.to_string(), rules: Some(rules) });
    }

    /// Registers a bearer token with cluster-admin rights.
    pub fn add_admin_token(&self, token: &str, user: &str) {
        self.inner
            .tokens
            .lock()
            .expect("tokens")
            .insert(token.to_string(), Identity { user: user.to_string(), rules: None });
    }

    /// Revokes a token (requests with it then get 401).
    pub fn remove_token(&self, token: &str) {
        self.inner.tokens.lock().expect("tokens").remove(token);
    }

    /// The object as a GET returns it, or `None`. `resource`: `secrets`, `deployments`, `events`, `leases`,
    /// `namespaces`, or `plural.group` (`events.events.k8s.io`). `namespace` is ignored for namespaces.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let def = resources::by_name(resource);
        let store = self.inner.store.lock().expect("store");
        store.get(def, namespace, name).cloned().map(|o| resources::to_external(def, o))
    }

    /// Objects of `resource` in `namespace` ("" = all namespaces), by namespace then name.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        let def = resources::by_name(resource);
        let store = self.inner.store.lock().expect("store");
        store
            .list(def, (!namespace.is_empty()).then_some(namespace))
            .into_iter()
            .map(|o| resources::to_external(def, o.clone()))
            .collect()
    }

    /// Creates `obj` with full server semantics (defaults, validation, uid, resourceVersion, managedFields by
    /// [`HANDLE_MANAGER`]) and notifies watchers. Panics with the `Status` on failure.
    pub fn create(&self, resource: &str, namespace: &str, obj: Value) -> Value {
        self.try_create(resource, namespace, obj).unwrap_or_else(|e| panic!("kube test server: create failed: {e}"))
    }

    /// Like [`create`](Self::create), returning the `Status` body on failure.
    pub fn try_create(&self, resource: &str, namespace: &str, obj: Value) -> Result<Value, Value> {
        let def = resources::by_name(resource);
        let mut store = self.inner.store.lock().expect("store");
        let opts = WriteOpts { manager: HANDLE_MANAGER, dry_run: false, subresource: None, origin: Origin::Handle };
        store.create(def, namespace, obj, &opts).map(|o| resources::to_external(def, o)).map_err(|e| e.body)
    }

    /// Replaces the object unconditionally (any `resourceVersion` in `obj` is ignored); creates it if missing.
    pub fn update(&self, resource: &str, namespace: &str, mut obj: Value) -> Value {
        let def = resources::by_name(resource);
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut store = self.inner.store.lock().expect("store");
        let current = store.get(def, namespace, &name).cloned();
        if current.is_none() {
            drop(store);
            return self.create(resource, namespace, obj);
        }
        let opts = WriteOpts { manager: HANDLE_MANAGER, dry_run: false, subresource: None, origin: Origin::Handle };
        store
            .write(def, namespace, &name, current, obj, &opts, Ownership::Update)
            .map(|(o, _)| resources::to_external(def, o))
            .unwrap_or_else(|e| panic!("kube test server: update failed: {}", e.body))
    }

    /// Deletes the object (no-op when missing) and notifies watchers.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let def = resources::by_name(resource);
        let _ = self.inner.store.lock().expect("store").delete(def, namespace, name, None, None, false);
    }

    /// Replaces a Deployment's `status` (through the status subresource, as the controller does), e.g. to
    /// simulate rollout progress. Panics when the Deployment does not exist.
    pub fn set_deployment_status(&self, namespace: &str, name: &str, status: Value) {
        set_status(&self.inner, namespace, name, status)
            .unwrap_or_else(|e| panic!("kube test server: set status failed: {e}"));
    }

    /// Turns the simulated Deployment controller on (`Some(delay)`: after each spec change, status reports the
    /// new generation fully rolled out) or off (`None`: status changes only through
    /// [`set_deployment_status`](Self::set_deployment_status)). On by default with 200 ms.
    pub fn set_auto_rollout(&self, delay: Option<Duration>) {
        self.inner.store.lock().expect("store").rollout_delay = delay;
    }

    /// Simulates istiod publishing the roots it serves (off by default). istiod writes its CA's roots into the
    /// ConfigMap `istio-ca-root-cert` (key `root-cert.pem`) of every namespace; here, each time the simulated
    /// controller finishes a rollout of a Deployment labelled `app=istiod`, the new pods "start": they read
    /// `cacerts` in their namespace and publish its `root-cert.pem` in `istio-ca-root-cert` there, or, when
    /// there is no `cacerts`, a self-signed root (istiod's own CA, what it runs without a plug-in CA). Like the
    /// real istiod, pods that are already running never notice a later change of `cacerts`.
    pub fn simulate_istiod_roots(&self, on: bool) {
        self.inner.store.lock().expect("store").istiod_publishes_roots = on;
    }

    /// Writes `istio-ca-root-cert` in `namespace` with `pem` as `root-cert.pem`, as istiod does (manager
    /// `pilot-discovery`).
    pub fn set_istio_ca_root_cert(&self, namespace: &str, pem: &str) {
        publish_roots(&self.inner, namespace, pem);
    }

    /// How often watches that allow bookmarks get a BOOKMARK (default 5 s; the apiserver sends about one a minute).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *self.inner.bookmark_interval.lock().expect("interval") = every;
    }

    /// Ends every open watch stream (as an apiserver restart, a load balancer's idle timeout or the watch
    /// cache's own timeout does); clients re-watch from their last resourceVersion.
    pub fn close_watches(&self) {
        self.inner.close_watches.send_modify(|n| *n += 1);
    }

    /// Forgets the change history: a watch from any earlier resourceVersion then gets 410 Expired.
    pub fn compact(&self) {
        self.inner.store.lock().expect("store").compact();
    }

    /// The current (cluster-wide) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.store.lock().expect("store").rv
    }

    /// Adds a fault (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        let remaining = fault.times;
        self.inner.faults.lock().expect("faults").push(FaultState { fault, remaining });
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.inner.faults.lock().expect("faults").clear();
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.requests.lock().expect("requests").clone()
    }

    /// Requests with `method` (case-insensitive) whose path contains `path_contains`.
    pub fn request_count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_contains))
            .count()
    }

    /// POST/PUT/PATCH/DELETE requests answered with a 2xx.
    pub fn write_count(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") && (200..300).contains(&r.status)
            })
            .count()
    }

    /// Forgets the recorded requests.
    pub fn reset_requests(&self) {
        self.inner.requests.lock().expect("requests").clear();
    }
}
