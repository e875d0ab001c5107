//! The object store: one cluster-wide resourceVersion counter, the write pipeline every verb goes through
//! (defaulting, validation, system metadata, managedFields, no-op detection), and the change history watches
//! replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
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

/// Go's `base64.StdEncoding.Decode` error offset (`CorruptInputError`), for the exact "illegal base64 data at
/// input byte N" message. `\r` and `\n` are skipped, as in Go.
pub(crate) fn go_base64_error(src: &[u8]) -> Option<usize> {
    let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let mut si = 0;
    loop {
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                return match j {
                    0 => None,
                    _ => Some(si - j),
                };
            }
            let c = src[si];
            si += 1;
            if valid(c) {
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Some(si - 1);
            }
            match j {
                0 | 1 => return Some(si - 1),
                2 => {
                    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == src.len() {
                        return Some(src.len());
                    }
                    if src[si] != b'=' {
                        return Some(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            return if si < src.len() { Some(si) } else { None };
        }
    }
}

fn decode_go_base64(s: &str) -> Result<Vec<u8>, usize> {
    if let Some(at) = go_base64_error(s.as_bytes()) {
        return Err(at);
    }
    let cleaned: String = s.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    // Go's non-strict decoder ignores non-zero trailing bits; so does this engine configuration.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    engine.decode(cleaned).map_err(|_| 0)
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_config_key(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
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

    /// Per-kind defaulting and conversion (Secret `stringData` → `data`, base64 check, `type` default; …).
    fn normalize(
        &self,
        def: &ResourceDef,
        old: Option<&Value>,
        obj: &mut Value,
        origin: Origin,
    ) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").to_string();
        match (def.group, def.plural) {
            ("", "secrets") => {
                let m = obj.as_object_mut().expect("object");
                let mut data = match m.remove("data") {
                    Some(Value::Object(d)) => d,
                    Some(Value::Null) | None => serde_json::Map::new(),
                    Some(_) => {
                        return Err(self.decode_error(
                            def,
                            obj_json_for(m),
                            "json: cannot unmarshal into Go struct field Secret.data of type map[string][]uint8",
                            origin,
                        ));
                    }
                };
                for (k, v) in data.iter_mut() {
                    let Some(s) = v.as_str() else {
                        if v.is_null() {
                            *v = json!("");
                            continue;
                        }
                        return Err(self.decode_error(
                            def,
                            obj_json_for(m),
                            &format!(
                                "json: cannot unmarshal {} into Go struct field Secret.data of type []uint8",
                                json_type(v)
                            ),
                            origin,
                        ));
                    };
                    match decode_go_base64(s) {
                        Ok(bytes) => *v = json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
                        Err(at) => {
                            let _ = k;
                            let mut full = m.clone();
                            full.insert("data".into(), Value::Object(data.clone()));
                            return Err(self.decode_error(
                                def,
                                Value::Object(full),
                                &format!("illegal base64 data at input byte {at}"),
                                origin,
                            ));
                        }
                    }
                }
                if let Some(Value::Object(sd)) = m.remove("stringData") {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or_default();
                        data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                    }
                }
                if !data.is_empty() {
                    m.insert("data".into(), Value::Object(data));
                }
                if m.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                    m.insert("type".into(), json!("Opaque"));
                }
            }
            ("", "namespaces") => {
                let meta = meta_mut(obj);
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
                if obj.pointer("/spec/finalizers").is_none() {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                }
                if old.is_none() {
                    obj["status"] = json!({"phase": "Active"});
                }
            }
            ("apps", "deployments") => {
                if !obj.get("spec").is_some_and(Value::is_object) {
                    obj["spec"] = json!({});
                }
                let spec = obj["spec"].as_object_mut().expect("spec");
                spec.entry("replicas").or_insert(json!(1));
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                spec.entry("progressDeadlineSeconds").or_insert(json!(600));
                spec.entry("strategy").or_insert(
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                if old.is_none() && obj.get("status").is_none() {
                    obj["status"] = json!({});
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn decode_error(&self, def: &ResourceDef, patched: Value, detail: &str, origin: Origin) -> ApiError {
        match origin {
            // `runtime.DecodeInto` of the patched object fails: NewInvalid with an empty GroupKind and name.
            Origin::Patch => status::invalid("", "", "", &[FieldError::invalid("patch", &patched.to_string(), detail)]),
            Origin::Body | Origin::Handle => status::bad_request(&format!(
                "{} in version \"{}\" cannot be handled as a {}: {detail}",
                def.kind, def.version, def.kind
            )),
        }
    }

    /// Validation the real strategies do for the fields cacerts-sync touches.
    fn validate(&self, def: &ResourceDef, name: &str, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
        let mut errs = Vec::new();
        if old.is_none() {
            let ok = if def.plural == "namespaces" { is_dns_label(name) } else { is_dns_subdomain(name) };
            if !ok {
                let msg = if def.plural == "namespaces" { DNS1123_LABEL_MSG } else { DNS1123_SUBDOMAIN_MSG };
                errs.push(FieldError::invalid("metadata.name", name, msg));
            }
        }
        if def.plural == "secrets" {
            let ty = new.get("type").and_then(Value::as_str).unwrap_or("Opaque");
            if let Some(old) = old {
                let old_ty = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
                if old_ty != ty {
                    errs.push(FieldError::invalid("type", ty, "field is immutable"));
                }
                if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                        errs.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
                    }
                    if old.get("data") != new.get("data") {
                        errs.push(FieldError::forbidden("data", "field is immutable when `immutable` is set"));
                    }
                }
            }
            let data = new.get("data").and_then(Value::as_object);
            for k in data.map(|d| d.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                if !is_config_key(&k) {
                    errs.push(FieldError::invalid(
                        &format!("data[{k}]"),
                        &k,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
            }
            let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
            let required: &[&str] = match ty {
                "kubernetes.io/tls" => &["tls.crt", "tls.key"],
                "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
                "kubernetes.io/dockercfg" => &[".dockercfg"],
                "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
                _ => &[],
            };
            for k in required {
                if !has(k) {
                    errs.push(FieldError::required(&format!("data[{k}]")));
                }
            }
        }
        if def.storage == "events" {
            validate_event(def, old, new, &mut errs);
        }
        if errs.is_empty() { Ok(()) } else { Err(status::invalid(def.group, def.kind, name, &errs)) }
    }
}

fn obj_json_for(m: &serde_json::Map<String, Value>) -> Value {
    Value::Object(m.clone())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        _ => "string",
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

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// `validation.IsQualifiedName` (`[prefix/]name`).
fn qualified_name_errors(field: &str, value: &str, errs: &mut Vec<FieldError>) {
    let (prefix, name) = match value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push(FieldError::invalid(field, value, "prefix part must be non-empty"));
        } else if !is_dns_subdomain(p) {
            errs.push(FieldError::invalid(field, value, &format!("prefix part {DNS1123_SUBDOMAIN_MSG}")));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::invalid(field, value, "name part must be non-empty"));
    } else if name.len() > 63 {
        errs.push(FieldError::invalid(field, value, "name part must be no more than 63 characters"));
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        errs.push(FieldError::invalid(field, value, QUALIFIED_NAME_MSG));
    }
}

/// `ValidateEventCreate`/`ValidateEventUpdate` of the apiserver, run on the stored (core) form, hence the core
/// field names in paths even for events.k8s.io requests (except `reportingController`).
fn validate_event(def: &ResourceDef, old: Option<&Value>, e: &Value, errs: &mut Vec<FieldError>) {
    let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    let ns = s(e, "/metadata/namespace");
    let involved_ns = s(e, "/involvedObject/namespace");
    let has_event_time = !s(e, "/eventTime").is_empty();
    let controller_field = if def.is_events_v1() { "reportingController" } else { "reportingComponent" };
    if !has_event_time {
        let mismatch = if involved_ns.is_empty() { !ns.is_empty() && ns != "default" } else { ns != involved_ns };
        if mismatch {
            errs.push(FieldError::invalid("involvedObject.namespace", &involved_ns, "does not match event.namespace"));
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(FieldError::invalid("involvedObject.namespace", &involved_ns, "does not match event.namespace"));
        }
        let controller = s(e, "/reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required(controller_field));
        }
        qualified_name_errors(controller_field, &controller, errs);
        for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = s(e, &format!("/{field}"));
            if v.is_empty() {
                errs.push(FieldError::required(field));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(field, "", &format!("can have at most {limit} characters")));
            }
        }
        if s(e, "/message").len() > 1024 {
            errs.push(FieldError::invalid("message", "", "can have at most 1024 characters"));
        }
    }
    if !def.is_events_v1() {
        return;
    }
    // Strict validation of the events.k8s.io API.
    if let Some(series) = e.get("series").filter(|v| !v.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid("series.count", "", "should be at least 2"));
        }
        if series.get("lastObservedTime").and_then(Value::as_str).unwrap_or_default().is_empty() {
            errs.push(FieldError::required("series.lastObservedTime"));
        }
    }
    match old {
        None => {
            if !has_event_time {
                errs.push(FieldError::required("eventTime"));
            }
            let ty = s(e, "/type");
            if ty != "Normal" && ty != "Warning" {
                errs.push(FieldError::invalid("type", "", &format!("has invalid value: {ty}")));
            }
            let source_set = e
                .get("source")
                .and_then(Value::as_object)
                .is_some_and(|m| m.values().any(|v| v.as_str().is_some_and(|s| !s.is_empty())));
            for (field, set) in [
                ("firstTimestamp", !s(e, "/firstTimestamp").is_empty()),
                ("lastTimestamp", !s(e, "/lastTimestamp").is_empty()),
                ("count", e.get("count").and_then(Value::as_i64).unwrap_or(0) != 0),
                ("source", source_set),
            ] {
                if set {
                    errs.push(FieldError::invalid(field, "", "needs to be unset"));
                }
            }
        }
        Some(old) => {
            for field in ["reason", "message", "type"] {
                let new_v = s(e, &format!("/{field}"));
                if new_v != s(old, &format!("/{field}")) {
                    errs.push(FieldError::invalid(field, &new_v, "field is immutable"));
                }
            }
            if e.get("involvedObject") != old.get("involvedObject") {
                let v = e.get("involvedObject").map(Value::to_string).unwrap_or_default();
                errs.push(FieldError::invalid("involvedObject", &v, "field is immutable"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::go_base64_error;

    #[test]
    fn base64_errors_point_at_the_byte_go_reports() {
        // Offsets follow Go's `base64.StdEncoding` (`decodeQuantum`), which the apiserver's JSON decoder uses.
        assert_eq!(go_base64_error(b"YWJj"), None);
        assert_eq!(go_base64_error(b"YQ==\n"), None, "newlines are skipped");
        assert_eq!(go_base64_error(b"!!"), Some(0));
        assert_eq!(go_base64_error(b"YWJj!"), Some(4));
        assert_eq!(go_base64_error(b"YQ="), Some(3), "missing second padding character: the input length");
        assert_eq!(go_base64_error(b"YWJjYQ"), Some(4), "unpadded tail: start of the quantum");
        assert_eq!(go_base64_error(b"YQ==x"), Some(4), "trailing garbage after padding");
        assert_eq!(go_base64_error(b"Y==="), Some(1), "padding after one character");
    }
}
