//! Validation the apiserver's strategies do on a written object: object names, Secrets (immutable `type`,
//! `immutable`, key names, the required keys of the typed Secrets) and Events (`ValidateEvent*` ported).

use serde_json::Value;

use super::Store;
use crate::kube::resources::ResourceDef;
use crate::kube::status::{self, ApiError, FieldError};

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

impl Store {
    /// Validation the real strategies do for the fields cacerts-sync touches.
    pub(super) fn validate(
        &self,
        def: &ResourceDef,
        name: &str,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError> {
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
