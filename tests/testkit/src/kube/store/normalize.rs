//! Per-kind defaulting and conversion of a written object: Secret `data` checked with Go's base64 decoder rules
//! (for the apiserver's exact error offsets) and re-encoded, `stringData` merged, `type` defaulted; Namespace
//! and Deployment defaults.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Origin, Store, meta_mut, meta_str};
use crate::kube::resources::ResourceDef;
use crate::kube::status::{self, ApiError, FieldError};

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

impl Store {
    /// Per-kind defaulting and conversion (Secret `stringData` → `data`, base64 check, `type` default; …).
    pub(super) fn normalize(
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
