//! The four PATCH flavours and field ownership (`metadata.managedFields`).
//!
//! - JSON merge patch (RFC 7386): exact.
//! - Strategic merge patch: maps merge; `null` deletes; lists of the merge-keyed fields the Pod template uses
//!   (`containers`, `initContainers`, `volumes`, `env`, `volumeMounts`, `imagePullSecrets` by `name`, `ports` by
//!   `containerPort`, `conditions` by `type`) merge by key with `$patch: delete|replace`; every other list is
//!   replaced. `$setElementOrder/…`, `$retainKeys` and `$deleteFromPrimitiveList/…` are honoured only as far
//!   as removing them (`$retainKeys` prunes the map), not for ordering.
//! - JSON patch (RFC 6902): exact (the `json-patch` crate).
//! - Server-side apply: field sets at the granularity of leaves (scalars, whole lists, empty maps), so
//!   `.data.<key>`, `.metadata.labels.<key>`, `.spec.template.metadata.annotations.<key>` are tracked exactly;
//!   every list is atomic (the real apiserver merges keyed lists such as `containers` per element).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path: map keys from the root. A trailing `"."` marks ownership of the map itself (fieldsV1 `".": {}`).
pub(crate) type Path = Vec<String>;
/// A set of owned field paths.
pub(crate) type FieldSet = BTreeSet<Path>;

/// Which part of the object a write may touch: the main resource (maybe without `status`), or `/status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scope {
    Main { ignore_status: bool },
    Status,
}

/// Metadata the server owns: never part of a field set, never taken from a patch.
pub(crate) const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Fields typed as `map[string]…`: Update operations own the map itself too (`".": {}`), like the real fieldsV1.
const MAP_FIELDS: &[&str] =
    &["labels", "annotations", "data", "stringData", "binaryData", "matchLabels", "nodeSelector"];

fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Null => {}
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                path.push(k.clone());
                walk(c, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The leaf paths of `obj` that `scope` covers.
pub(crate) fn leaves(obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else { return out };
    for (k, v) in m {
        let take = match scope {
            Scope::Status => k == "status",
            Scope::Main { ignore_status } => !(k == "apiVersion" || k == "kind" || (ignore_status && k == "status")),
        };
        if !take {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if SYSTEM_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    let mut p = vec![k.clone(), mk.clone()];
                    walk(mv, &mut p, &mut out);
                }
            }
            continue;
        }
        let mut p = vec![k.clone()];
        walk(v, &mut p, &mut out);
    }
    out
}

/// The value at `path`, if present.
pub(crate) fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(seg)) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn is_marker(p: &Path) -> bool {
    p.last().is_some_and(|s| s == ".")
}

/// `.data.root-cert.pem`: the path notation of structured-merge-diff used in conflict messages.
pub(crate) fn path_string(p: &Path) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
pub(crate) struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// How a conflict message names this manager (`"curl" using v1`, `"kubectl"`, `… with subresource "status"`).
    pub fn describe(&self) -> String {
        let mut s = format!("\"{}\"", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource \"{sub}\""));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn same_owner(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.as_deref() == subresource
    }
}

fn decode_fields(v: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    if m.is_empty() {
        if !path.is_empty() {
            out.insert(path.clone());
        }
        return;
    }
    for (k, c) in m {
        if k == "." {
            let mut p = path.clone();
            p.push(".".into());
            out.insert(p);
        } else if let Some(name) = k.strip_prefix("f:") {
            path.push(name.to_string());
            decode_fields(c, path, out);
            path.pop();
        } else {
            // `k:{…}`, `v:…`, `i:…`: list elements; lists are atomic here, so the list itself is owned.
            out.insert(path.clone());
        }
    }
}

fn encode_fields(fields: &FieldSet) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let key = if first == "." { ".".to_string() } else { format!("f:{first}") };
        let child = node.entry(key).or_insert_with(|| json!({}));
        if let Some(m) = child.as_object_mut() {
            insert(m, rest);
        }
    }
    let mut root = Map::new();
    for p in fields {
        insert(&mut root, p);
    }
    Value::Object(root)
}

/// Reads `metadata.managedFields`.
pub(crate) fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let mut fields = FieldSet::new();
            if let Some(f) = e.get("fieldsV1") {
                decode_fields(f, &mut Vec::new(), &mut fields);
            }
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            ManagedEntry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: e.get("subresource").and_then(Value::as_str).map(str::to_string),
                fields,
            }
        })
        .collect()
}

/// Renders entries as `metadata.managedFields`.
pub(crate) fn write_managed(entries: &[ManagedEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut m = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": encode_fields(&e.fields),
                });
                if let Some(s) = &e.subresource {
                    m["subresource"] = json!(s);
                }
                m
            })
            .collect(),
    )
}

/// Ownership after a non-apply write (create, update, merge/strategic/JSON patch): the writer takes every
/// field whose value it changed; changed or removed fields leave every other manager.
#[allow(clippy::too_many_arguments)]
pub(crate) fn track_update(
    old: Option<&Value>,
    new: &Value,
    mut entries: Vec<ManagedEntry>,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    scope: Scope,
    now: &str,
) -> Vec<ManagedEntry> {
    let empty = json!({});
    let old_v = old.unwrap_or(&empty);
    let new_leaves = leaves(new, scope);
    let old_leaves = leaves(old_v, scope);
    let mut changed: FieldSet = new_leaves.iter().filter(|p| get(old_v, p) != get(new, p)).cloned().collect();
    for p in &new_leaves {
        for i in 1..p.len() {
            if MAP_FIELDS.contains(&p[i - 1].as_str()) && get(old_v, &p[..i]).is_none() {
                let mut m = p[..i].to_vec();
                m.push(".".into());
                changed.insert(m);
            }
        }
    }
    let removed: FieldSet = old_leaves.iter().filter(|p| get(new, p).is_none()).cloned().collect();
    for e in entries.iter_mut() {
        e.fields.retain(|p| {
            if is_marker(p) {
                return get(new, &p[..p.len() - 1]).is_some() && !changed.contains(p);
            }
            !changed.contains(p) && !removed.contains(p) && get(new, p).is_some()
        });
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.same_owner(manager, "Update", subresource)) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    entries
}

/// One field another manager owns with a different value than the applied configuration.
pub(crate) struct Conflict {
    pub manager: String,
    pub path: Path,
}

/// The 409 of a non-forced apply, worded as `fieldmanager.NewConflictError`.
pub(crate) fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", c.manager, path_string(&c.path));
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", path_string(&c.path)));
        }
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

fn deep_merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// Server-side apply of `applied` over `current`. Returns the new object and ownership, or the conflicts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply(
    current: Option<&Value>,
    applied: &Value,
    mut entries: Vec<ManagedEntry>,
    manager: &str,
    force: bool,
    api_version: &str,
    subresource: Option<&str>,
    scope: Scope,
    now: &str,
) -> Result<(Value, Vec<ManagedEntry>), Vec<Conflict>> {
    let mut applied = applied.clone();
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let set = leaves(&applied, scope);
    let mut conflicts = Vec::new();
    if let Some(cur) = current {
        for p in &set {
            if get(cur, p).is_none() || get(cur, p) == get(&applied, p) {
                continue;
            }
            for e in entries.iter().filter(|e| !e.same_owner(manager, "Apply", subresource)) {
                for q in &e.fields {
                    if !is_marker(q) && (q == p || q.starts_with(p)) {
                        conflicts.push((e.describe(), q.clone()));
                    }
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts.into_iter().map(|(manager, path)| Conflict { manager, path }).collect());
    }
    for (_, q) in &conflicts {
        for e in entries.iter_mut() {
            if !e.same_owner(manager, "Apply", subresource) {
                e.fields.remove(q);
            }
        }
    }
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.same_owner(manager, "Apply", subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut obj = current.cloned().unwrap_or_else(|| json!({}));
    for p in previous.difference(&set) {
        if is_marker(p) {
            continue;
        }
        let owned_by_other = entries
            .iter()
            .filter(|e| !e.same_owner(manager, "Apply", subresource))
            .any(|e| e.fields.iter().any(|q| q == p || q.starts_with(p)));
        if !owned_by_other {
            remove_path(&mut obj, p);
        }
    }
    if let (Some(a), Scope::Main { ignore_status: true }) = (applied.as_object_mut(), scope) {
        a.remove("status");
    }
    deep_merge(&mut obj, &applied);
    let changed = previous != set;
    match entries.iter_mut().find(|e| e.same_owner(manager, "Apply", subresource)) {
        Some(e) => {
            if changed {
                e.time = now.to_string();
            }
            e.fields = set;
            e.api_version = api_version.to_string();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: subresource.map(str::to_string),
            fields: set,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok((obj, entries))
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Merge keys of the lists strategic merge patch merges element-wise (`patchMergeKey` in the Go types).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Removes `$…` directives and `null`s from a value being inserted wholesale.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, v)| !k.starts_with('$') && !v.is_null()).map(|(k, v)| (k.clone(), clean(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}

/// Strategic merge patch (see the module docs for how far it goes).
pub(crate) fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = clean(patch);
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *doc = clean(patch);
        return;
    }
    if !doc.is_object() {
        *doc = json!({});
    }
    let d = doc.as_object_mut().expect("object");
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        d.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            d.remove(k);
            continue;
        }
        match (d.get_mut(k), v) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => strategic_merge(existing, v),
            (Some(Value::Array(existing)), Value::Array(items)) if merge_key(k).is_some() => {
                let key = merge_key(k).expect("merge key");
                if items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
                    *existing = items.iter().filter(|i| i.get("$patch").is_none()).map(clean).collect();
                    continue;
                }
                for item in items {
                    let id = item.get(key);
                    let pos = existing.iter().position(|e| id.is_some() && e.get(key) == id);
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            existing.remove(i);
                        }
                        (None, true) => {}
                        (Some(i), false) => strategic_merge(&mut existing[i], item),
                        (None, false) => existing.push(clean(item)),
                    }
                }
            }
            _ => {
                d.insert(k.clone(), clean(v));
            }
        }
    }
}

/// RFC 6902 JSON patch; the error text is what the 422 carries.
pub(crate) fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
    json_patch::patch(doc, &ops).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merge_merges_containers_by_name_and_replaces_other_lists() {
        let mut doc = json!({"spec": {"containers": [{"name": "a", "image": "1", "args": ["x"]}, {"name": "b", "image": "1"}],
                                      "tolerations": [{"key": "k"}], "labels": {"keep": "1", "drop": "2"}}});
        strategic_merge(
            &mut doc,
            &json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                             "containers": [{"name": "a", "image": "2"}, {"name": "b", "$patch": "delete"}, {"name": "c", "image": "3"}],
                             "tolerations": [{"key": "other"}], "labels": {"drop": null}}}),
        );
        assert_eq!(
            doc,
            json!({"spec": {"containers": [{"name": "a", "image": "2", "args": ["x"]}, {"name": "c", "image": "3"}],
                            "tolerations": [{"key": "other"}], "labels": {"keep": "1"}}})
        );
    }

    #[test]
    fn several_apply_conflicts_are_grouped_per_manager() {
        let c = |m: &str, p: &[&str]| Conflict { manager: m.into(), path: p.iter().map(|s| s.to_string()).collect() };
        let msg = conflict_message(&[
            c("\"b\"", &["data", "x"]),
            c("\"a\" using v1", &["data", "y"]),
            c("\"b\"", &["data", "z"]),
        ]);
        let want = "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .data.y\nconflicts with \"b\":\n- .data.x\n- .data.z";
        assert_eq!(msg, want);
    }

    #[test]
    fn update_ownership_moves_changed_fields_to_the_writer() {
        let old = json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "dg=="}});
        let entries =
            track_update(None, &old, Vec::new(), "creator", "v1", None, Scope::Main { ignore_status: false }, "t0");
        let new = json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "dzI="}});
        let entries =
            track_update(Some(&old), &new, entries, "writer", "v1", None, Scope::Main { ignore_status: false }, "t1");
        let owner = |p: &[&str]| {
            let p: Path = p.iter().map(|s| s.to_string()).collect();
            entries.iter().find(|e| e.fields.contains(&p)).map(|e| e.manager.clone())
        };
        assert_eq!(owner(&["data", "k"]).as_deref(), Some("writer"));
        assert_eq!(owner(&["metadata", "labels", "a"]).as_deref(), Some("creator"));
        assert_eq!(
            encode_fields(&entries[0].fields),
            json!({"f:data": {".": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
    }
}
