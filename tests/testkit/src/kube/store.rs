//! The object store: one cluster-wide resourceVersion counter, the write pipeline every verb goes through
//! (defaulting, validation, system metadata, managedFields, no-op detection), and the change history watches
//! replay from.

mod normalize;
mod validation;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::patch::{self, ManagedEntry, Scope};
use super::resources::{self, ResourceDef};
use super::status::{self, ApiError, FieldError};

/// Kind of a change, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One committed change (objects in their stored representation).
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub storage: &'static str,
    pub namespace: String,
    pub kind: ChangeType,
    pub object: Value,
    /// The object before the change (for watches whose selector it entered or left).
    pub old: Option<Value>,
}

/// How a write's ownership is tracked.
pub(crate) enum Ownership {
    /// create / update / merge, strategic or JSON patch: the writer takes the fields it changed.
    Update,
    /// server-side apply: ownership was computed by [`patch::apply`].
    Precomputed(Vec<ManagedEntry>),
}

/// Where the new object came from: decides how a bad base64 `data` value is reported.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Origin {
    /// A decoded request body (POST/PUT): 400 "… cannot be handled as a Secret".
    Body,
    /// The result of a patch: 422 Invalid on field `patch`.
    Patch,
    /// The in-process handle.
    Handle,
}

/// Options of one write.
pub(crate) struct WriteOpts<'a> {
    pub manager: &'a str,
    pub dry_run: bool,
    pub subresource: Option<&'a str>,
    pub origin: Origin,
}

type Key = (&'static str, String, String);

/// All objects, the resourceVersion counter and the change history.
pub(crate) struct Store {
    pub rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    /// Every change with `rv > history_start` is in `history`; older resourceVersions are "too old" (410).
    pub history_start: u64,
    pub history_cap: usize,
    pub tx: broadcast::Sender<Arc<Change>>,
    /// Auto-rollout delay (`None` = off): a Deployment spec change is followed by a "rolled out" status.
    pub rollout_delay: Option<Duration>,
    pub rollout_tx: Option<mpsc::UnboundedSender<(String, String, i64)>>,
    /// Simulated istiod: after a rollout of an `app=istiod` Deployment, publish its roots in
    /// `istio-ca-root-cert` (see `KubeTestServer::simulate_istiod_roots`).
    pub istiod_publishes_roots: bool,
    /// The self-signed root a simulated istiod serves when it started without `cacerts`.
    pub istiod_self_signed: Option<String>,
}

/// `2026-11-26T22:08:50Z`: metav1.Time has second precision.
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).expect("timestamp").to_string()
}

fn new_uid() -> String {
    crate::new_uuid()
}

fn random_suffix() -> String {
    // apimachinery's `utilrand.String(5)` alphabet (no vowels, no confusable characters).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char).collect()
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default()
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata")
}

impl Store {
    pub fn new(tx: broadcast::Sender<Arc<Change>>) -> Self {
        Self {
            rv: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_start: 0,
            history_cap: 10_000,
            tx,
            rollout_delay: None,
            rollout_tx: None,
            istiod_publishes_roots: false,
            istiod_self_signed: None,
        }
    }

    /// A stored object.
    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<&Value> {
        let ns = if def.namespaced { ns } else { "" };
        self.objects.get(&(def.storage, ns.to_string(), name.to_string()))
    }

    /// Stored objects of `def` in `ns` (all namespaces when `None`), ordered by namespace then name.
    pub fn list(&self, def: &ResourceDef, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|((s, n, _), _)| *s == def.storage && (!def.namespaced || ns.is_none_or(|x| x == n)))
            .map(|(_, v)| v)
            .collect()
    }

    /// Changes after `rv` for `storage`, or `Err(oldest)` when `rv` is older than the history kept.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Change>>, u64> {
        if rv < self.history_start {
            return Err(self.history_start + 1);
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    /// Forgets the history: watches from any earlier resourceVersion then get 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.history_start = self.rv;
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.history_start = old.rv;
            }
        }
        let _ = self.tx.send(change);
    }

    /// Namespace existence check for writes into `ns`.
    fn require_namespace(&self, def: &ResourceDef, ns: &str) -> Result<(), ApiError> {
        if def.namespaced && self.get(resources::by_name("namespaces"), "", ns).is_none() {
            return Err(status::not_found(resources::by_name("namespaces"), ns));
        }
        Ok(())
    }

    /// POST: creates `obj` (external representation of `def`) in `ns`.
    pub fn create(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(status::bad_request("Object 'Kind' is missing in request body"));
        }
        let meta = meta_mut(&mut obj);
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or_default().to_string();
        if name.is_empty() && !generate.is_empty() {
            name = format!("{generate}{}", random_suffix());
            meta.insert("name".into(), json!(name));
        }
        if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            return Err(status::status(
                500,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
                None,
            ));
        }
        if name.is_empty() {
            return Err(status::invalid(
                def.group,
                def.kind,
                "",
                &[FieldError::required_detail("metadata.name", "name or generateName is required")],
            ));
        }
        self.require_namespace(def, ns)?;
        if self.get(def, ns, &name).is_some() {
            return Err(status::already_exists(def, &name));
        }
        self.write(def, ns, &name, None, obj, opts, Ownership::Update).map(|(v, _)| v)
    }

    /// PUT / PATCH / apply: writes `new` (external representation) over the current object (`None` creates).
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        old: Option<Value>,
        new: Value,
        opts: &WriteOpts,
        ownership: Ownership,
    ) -> Result<(Value, bool), ApiError> {
        let ns = if def.namespaced { ns } else { "" };
        if old.is_none() {
            self.require_namespace(def, ns)?;
        }
        let stored_api_version = if def.is_events_v1() { "v1".to_string() } else { def.api_version() };
        let mut new = resources::to_internal(def, new);
        if !new.is_object() {
            return Err(status::bad_request("Object 'Kind' is missing in request body"));
        }
        new["apiVersion"] = json!(stored_api_version);
        new["kind"] = json!(def.kind);
        {
            let meta = meta_mut(&mut new);
            meta.insert("name".into(), json!(name));
            if def.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
        }
        // A resourceVersion in the body (PUT) or left by a patch is a precondition.
        if let Some(old) = &old {
            let want = meta_str(&new, "resourceVersion");
            if !want.is_empty() && want != meta_str(old, "resourceVersion") {
                return Err(status::conflict(def, name));
            }
        }
        let scope = match opts.subresource {
            Some("status") => Scope::Status,
            _ => Scope::Main { ignore_status: def.status_subresource },
        };
        // Status and main resource only change their own half.
        match scope {
            Scope::Status => {
                let status = new.get("status").cloned();
                let mut base = old.clone().ok_or_else(|| status::not_found(def, name))?;
                match status {
                    Some(s) => base["status"] = s,
                    None => {
                        base.as_object_mut().expect("object").remove("status");
                    }
                }
                new = base;
            }
            Scope::Main { ignore_status: true } => {
                let prev = old.as_ref().and_then(|o| o.get("status").cloned());
                let obj = new.as_object_mut().expect("object");
                match prev {
                    Some(s) => {
                        obj.insert("status".into(), s);
                    }
                    None => {
                        obj.remove("status");
                    }
                }
            }
            Scope::Main { ignore_status: false } => {}
        }
        self.normalize(def, old.as_ref(), &mut new, opts.origin)?;
        self.validate(def, name, old.as_ref(), &new)?;
        // System metadata is the server's.
        let now = now_rfc3339();
        {
            let old_meta = old.as_ref().and_then(|o| o.get("metadata")).cloned().unwrap_or(json!({}));
            let spec_changed = old.as_ref().map(|o| o.get("spec")) != Some(new.get("spec"));
            let meta = meta_mut(&mut new);
            meta.remove("selfLink");
            for k in ["uid", "creationTimestamp"] {
                match old_meta.get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.insert(k.into(), json!(if k == "uid" { new_uid() } else { now.clone() })),
                };
            }
            if def.generation {
                let g = old_meta.get("generation").and_then(Value::as_i64);
                let g = match g {
                    None => 1,
                    Some(g) if spec_changed && scope != Scope::Status => g + 1,
                    Some(g) => g,
                };
                meta.insert("generation".into(), json!(g));
            } else {
                meta.remove("generation");
            }
            meta.remove("resourceVersion");
            meta.remove("managedFields");
            // Go's `omitempty`: an empty map or list is not serialized.
            for k in ["labels", "annotations", "finalizers", "ownerReferences"] {
                if meta.get(k).is_some_and(|v| {
                    v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty())
                        || v.is_null()
                }) {
                    meta.remove(k);
                }
            }
        }
        let entries = match ownership {
            Ownership::Update => patch::track_update(
                old.as_ref(),
                &new,
                old.as_ref().map(patch::read_managed).unwrap_or_default(),
                opts.manager,
                &def.api_version(),
                opts.subresource,
                scope,
                &now,
            ),
            Ownership::Precomputed(e) => e,
        };
        if !entries.is_empty() {
            meta_mut(&mut new).insert("managedFields".into(), patch::write_managed(&entries));
        }
        if let Some(old) = &old {
            // A write that changes nothing is not persisted: same resourceVersion, no watch event.
            let mut cmp = new.clone();
            meta_mut(&mut cmp).insert("resourceVersion".into(), old["metadata"]["resourceVersion"].clone());
            if same_ignoring_times(&cmp, old) {
                return Ok((old.clone(), false));
            }
        }
        let created = old.is_none();
        if opts.dry_run {
            meta_mut(&mut new).insert(
                "resourceVersion".into(),
                json!(old.as_ref().map(|o| meta_str(o, "resourceVersion")).unwrap_or("")),
            );
            return Ok((new, created));
        }
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.objects.insert((def.storage, ns.to_string(), name.to_string()), new.clone());
        if def.storage == "deployments.apps" && scope != Scope::Status {
            let gen_changed = old.as_ref().map(|o| o["metadata"]["generation"].clone())
                != Some(new["metadata"]["generation"].clone());
            if let (Some(_), Some(tx), true) = (self.rollout_delay, &self.rollout_tx, gen_changed) {
                let _ =
                    tx.send((ns.to_string(), name.to_string(), new["metadata"]["generation"].as_i64().unwrap_or(1)));
            }
        }
        self.record(Change {
            rv: self.rv,
            storage: def.storage,
            namespace: ns.to_string(),
            kind: if created { ChangeType::Added } else { ChangeType::Modified },
            object: new.clone(),
            old,
        });
        Ok((new, created))
    }

    /// DELETE. Returns the deleted object (stored representation, carrying the deletion's resourceVersion).
    pub fn delete(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        precondition_rv: Option<&str>,
        precondition_uid: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let ns = if def.namespaced { ns } else { "" };
        let Some(current) = self.get(def, ns, name).cloned() else {
            return Err(status::not_found(def, name));
        };
        if let Some(want) = precondition_rv {
            let have = meta_str(&current, "resourceVersion");
            if want != have {
                return Err(status::delete_precondition_conflict(def, name, want, have));
            }
        }
        if let Some(want) = precondition_uid {
            let have = meta_str(&current, "uid");
            if want != have {
                return Err(status::status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {want}, UID in object meta: {have}",
                        def.qualified()
                    ),
                    Some(status::details(def, name)),
                ));
            }
        }
        if dry_run {
            return Ok(current);
        }
        if def.plural == "namespaces" {
            // The namespace controller is instantaneous here: contents go first, then the namespace.
            let keys: Vec<Key> = self.objects.keys().filter(|(_, n, _)| n == name).cloned().collect();
            for key in keys {
                if let Some(obj) = self.objects.remove(&key) {
                    self.rv += 1;
                    let mut obj = obj;
                    meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
                    self.record(Change {
                        rv: self.rv,
                        storage: key.0,
                        namespace: key.1,
                        kind: ChangeType::Deleted,
                        object: obj,
                        old: None,
                    });
                }
            }
        }
        self.objects.remove(&(def.storage, ns.to_string(), name.to_string()));
        self.rv += 1;
        let mut obj = current;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.record(Change {
            rv: self.rv,
            storage: def.storage,
            namespace: ns.to_string(),
            kind: ChangeType::Deleted,
            object: obj.clone(),
            old: None,
        });
        Ok(obj)
    }
}

/// Equality that ignores managedFields timestamps (a no-op write must not count as a change).
fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(list) = v.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
            for e in list {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}
