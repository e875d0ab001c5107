//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), which `kubectl get` asks for:
//! the columns the apiserver's printers define for each kind (`pkg/printers/internalversion`).

use serde_json::{Value, json};

use super::resources::ResourceDef;

/// Does the `Accept` header ask for a Table?
pub(crate) fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// `duration.HumanDuration` of apimachinery (what the AGE column shows).
fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => {
            if s % 60 == 0 {
                format!("{m}m")
            } else {
                format!("{m}m{}s", s % 60)
            }
        }
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => {
            if m % 60 == 0 {
                format!("{h}h")
            } else {
                format!("{h}h{}m", m % 60)
            }
        }
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => {
            if h % 24 == 0 {
                format!("{}d", h / 24)
            } else {
                format!("{}d{}h", h / 24, h % 24)
            }
        }
        _ if h < 24 * 365 * 2 => format!("{}d", h / 24),
        _ if h < 24 * 365 * 8 => format!("{}y{}d", h / 24 / 365, (h / 24) % 365),
        _ => format!("{}y", h / 24 / 365),
    }
}

fn age(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().as_second() - t.as_second())
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn columns(def: &ResourceDef) -> Vec<Value> {
    match def.plural {
        "secrets" => {
            vec![col("Name", "string", 0), col("Type", "string", 0), col("Data", "string", 0), col("Age", "string", 0)]
        }
        "namespaces" => vec![col("Name", "string", 0), col("Status", "string", 0), col("Age", "string", 0)],
        "configmaps" => vec![col("Name", "string", 0), col("Data", "string", 0), col("Age", "string", 0)],
        "deployments" => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Up-to-date", "string", 0),
            col("Available", "string", 0),
            col("Age", "string", 0),
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        "leases" => vec![col("Name", "string", 0), col("Holder", "string", 0), col("Age", "string", 0)],
        _ => vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Message", "string", 0),
        ],
    }
}

fn cells(def: &ResourceDef, o: &Value) -> Vec<Value> {
    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let name = s("/metadata/name");
    let created = age(o.pointer("/metadata/creationTimestamp").and_then(Value::as_str));
    match def.plural {
        "secrets" => {
            let count = o.get("data").and_then(Value::as_object).map_or(0, |d| d.len());
            vec![json!(name), json!(s("/type")), json!(count), json!(created)]
        }
        "namespaces" => vec![json!(name), json!(s("/status/phase")), json!(created)],
        "configmaps" => {
            let count = o.get("data").and_then(Value::as_object).map_or(0, |d| d.len())
                + o.get("binaryData").and_then(Value::as_object).map_or(0, |d| d.len());
            vec![json!(name), json!(count), json!(created)]
        }
        "deployments" => {
            let containers =
                o.pointer("/spec/template/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
            let join = |k: &str| {
                containers.iter().filter_map(|c| c.get(k).and_then(Value::as_str)).collect::<Vec<_>>().join(",")
            };
            let selector = o
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                json!(name),
                json!(format!("{}/{}", n("/status/readyReplicas"), n("/spec/replicas"))),
                json!(n("/status/updatedReplicas")),
                json!(n("/status/availableReplicas")),
                json!(created),
                json!(join("name")),
                json!(join("image")),
                json!(selector),
            ]
        }
        "leases" => vec![json!(name), json!(s("/spec/holderIdentity")), json!(created)],
        _ => {
            let (obj, msg, last) = if def.is_events_v1() {
                ("/regarding", s("/note"), "/deprecatedLastTimestamp")
            } else {
                ("/involvedObject", s("/message"), "/lastTimestamp")
            };
            let last = o
                .pointer(last)
                .and_then(Value::as_str)
                .or_else(|| o.pointer("/series/lastObservedTime").and_then(Value::as_str))
                .or_else(|| o.pointer("/eventTime").and_then(Value::as_str))
                .or_else(|| o.pointer("/metadata/creationTimestamp").and_then(Value::as_str));
            let object = format!("{}/{}", s(&format!("{obj}/kind")).to_lowercase(), s(&format!("{obj}/name")));
            vec![json!(age(last)), json!(s("/type")), json!(s("/reason")), json!(object), json!(msg)]
        }
    }
}

/// Renders `objects` (external representation, with kind/apiVersion) as a `meta.k8s.io/v1` Table.
pub(crate) fn render(def: &ResourceDef, objects: &[Value], resource_version: &str, include_object: &str) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include_object {
                "Object" => o.clone(),
                "None" => Value::Null,
                _ => {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
            };
            json!({"cells": cells(def, o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns(def),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(20 * 86400), "20d");
    }
}
