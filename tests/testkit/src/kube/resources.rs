//! The resource types the test server knows, and the discovery documents built from them.

use serde_json::{Value, json};

/// One served resource (group/version/plural), as discovery describes it.
#[derive(Debug)]
pub(crate) struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Storage key: core/v1 and events.k8s.io/v1 Events share one store, as in etcd.
    pub storage: &'static str,
    /// `PUT` of a missing object creates it (`AllowCreateOnUpdate`; true only for Events here).
    pub create_on_update: bool,
    /// Has a `/status` subresource; main-resource writes then ignore `status`.
    pub status_subresource: bool,
    /// Sets and bumps `metadata.generation` on spec changes.
    pub generation: bool,
}

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

pub(crate) static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        storage: "namespaces",
        create_on_update: false,
        status_subresource: true,
        generation: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        storage: "secrets",
        create_on_update: false,
        status_subresource: false,
        generation: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        storage: "configmaps",
        create_on_update: false,
        status_subresource: false,
        generation: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        storage: "events",
        create_on_update: true,
        status_subresource: false,
        generation: false,
    },
    ResourceDef {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        storage: "events",
        create_on_update: true,
        status_subresource: false,
        generation: false,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        storage: "deployments.apps",
        create_on_update: false,
        status_subresource: true,
        generation: true,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        storage: "leases.coordination.k8s.io",
        create_on_update: false,
        status_subresource: false,
        generation: false,
    },
];

impl ResourceDef {
    /// `secrets`, `deployments.apps`: the `GroupResource` string used in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Is this the events.k8s.io representation of the shared Event store?
    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io"
    }
}

/// Finds a served resource by group, version and plural.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// Resolves the handle's resource names: `secrets`, `deployments`, `events` (core), `leases`, `namespaces`,
/// or `plural.group` (`events.events.k8s.io`, `deployments.apps`).
pub(crate) fn by_name(name: &str) -> &'static ResourceDef {
    RESOURCES
        .iter()
        .find(|d| d.plural == name || d.qualified() == name)
        .unwrap_or_else(|| panic!("kube test server: unknown resource {name:?}"))
}

/// Field renames between the stored core/v1 Event and its events.k8s.io/v1 form (apiserver conversion).
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Converts a stored object to the representation of `def` (only Events differ between versions).
pub(crate) fn to_external(def: &ResourceDef, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        if def.is_events_v1() {
            for (core, v1) in EVENT_RENAMES {
                if let Some(v) = map.remove(*core) {
                    map.insert((*v1).to_string(), v);
                }
            }
        }
        map.insert("apiVersion".into(), json!(def.api_version()));
        map.insert("kind".into(), json!(def.kind));
    }
    obj
}

/// Converts an object written through `def` to the stored (core/v1 for Events) representation.
pub(crate) fn to_internal(def: &ResourceDef, mut obj: Value) -> Value {
    if let (Some(map), true) = (obj.as_object_mut(), def.is_events_v1()) {
        for (core, v1) in EVENT_RENAMES {
            if let Some(v) = map.remove(*v1) {
                map.insert((*core).to_string(), v);
            }
        }
        map.insert("apiVersion".into(), json!("v1"));
    }
    obj
}

/// `GET /version`: the server claims v1.32 (the version `kube-api-facts.md` was recorded from).
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-cacerts-testkit",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `GET /api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for d in RESOURCES {
        if !d.group.is_empty() && !out.contains(&d.group) {
            out.push(d.group);
        }
    }
    out
}

fn group_doc(group: &str) -> Value {
    let gv = format!("{group}/v1");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": "v1"}],
        "preferredVersion": {"groupVersion": gv, "version": "v1"}
    })
}

/// `GET /apis`.
pub(crate) fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().into_iter().map(group_doc).collect::<Vec<_>>()})
}

/// `GET /apis/<group>`, or `None` for an unknown group.
pub(crate) fn api_group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| {
        let mut g = group_doc(group);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`, or `None` when nothing is served there.
pub(crate) fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = RESOURCES.iter().filter(|d| d.group == group && d.version == version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in defs {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": VERBS,
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if d.plural == "deployments" {
            r["categories"] = json!(["all"]);
        }
        resources.push(r);
        if d.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let mut doc = json!({"kind": "APIResourceList", "groupVersion": gv, "resources": resources});
    if !group.is_empty() {
        doc["apiVersion"] = json!("v1");
    }
    Some(doc)
}

/// Path of a group-version in the OpenAPI v3 index: `api/v1`, `apis/apps/v1`.
fn openapi_gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `GET /openapi/v3`: the index of per-group-version documents.
pub(crate) fn openapi_v3_index() -> Value {
    let mut paths = serde_json::Map::new();
    for d in RESOURCES {
        let p = openapi_gv_path(d.group, d.version);
        let url = format!("/openapi/v3/{p}?hash=CACERTSTESTKIT0001");
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/<gv path>`: a minimal document. It only lists the PATCH operations with their
/// `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter, which is what kubectl reads to
/// decide that the server validates fields itself (so it needs no client-side schema). There are no schemas
/// and no request bodies, so `kubectl apply` computes strategic-merge patches from its compiled-in types.
pub(crate) fn openapi_v3_doc(gv_path: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = RESOURCES.iter().filter(|d| openapi_gv_path(d.group, d.version) == gv_path).collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for d in defs {
        let prefix =
            if d.group.is_empty() { format!("/api/{}", d.version) } else { format!("/apis/{}/{}", d.group, d.version) };
        let item = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{prefix}/{}/{{name}}", d.plural)
        };
        let op = json!({
            "operationId": format!("patch{}", d.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": d.group, "version": d.version, "kind": d.kind},
            "parameters": [
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "force", "in": "query", "schema": {"type": "boolean"}}
            ],
            "responses": {"200": {"description": "OK"}}
        });
        paths.insert(item, json!({"patch": op}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}
