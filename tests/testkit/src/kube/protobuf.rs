//! Decoding of the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`) for the kinds kubectl's
//! typed clients send that way (kubectl 1.32: `create secret|configmap|namespace|deployment`, and any other
//! generated `create`): Secrets, ConfigMaps, Namespaces and Deployments.
//!
//! Wire format: the magic `k8s\0`, then a `runtime.Unknown` {1: TypeMeta{1: apiVersion, 2: kind}, 2: raw}, where
//! `raw` is the object message. Field numbers come from `k8s.io/api/{core,apps}/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`, written down below as small schemas. A decoded
//! Deployment is checked in `tests/kubectl_fidelity.rs` against kubectl's own JSON of the same object
//! (`--dry-run=client -o json`).
//!
//! The generated (gogo) marshallers write every non-pointer field, even when empty, so empty strings, `false`
//! and `0` of non-pointer fields are dropped here (they are `omitempty` in JSON); pointer fields (`replicas`,
//! `automountServiceAccountToken`, …) keep their value. Empty messages stay `{}` (`resources: {}`), as in
//! kubectl's JSON.
//!
//! A field the schemas below don't list (volumes, probes, affinity, security contexts, …) is not guessed: the
//! body is refused the way an apiserver refuses a body it cannot decode for the resource (415
//! `UnsupportedMediaType`), with the field named, so a test that needs it fails loudly.

use base64::Engine as _;
use serde_json::{Map, Value, json};

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Wire::Varint(self.varint()?),
            2 => {
                let len = self.varint()? as usize;
                let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or("truncated field")?;
                let b = &self.buf[self.pos..end];
                self.pos = end;
                Wire::Bytes(b)
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((num, f)))
    }
}

/// How one field is turned into JSON.
#[derive(Clone, Copy)]
enum Ty {
    /// A string; empty means unset.
    Str,
    /// A pointer integer (kept when 0).
    Int,
    /// A non-pointer integer: 0 means unset.
    IntZ,
    /// A pointer bool (kept when false).
    Bool,
    /// A non-pointer bool: false means unset.
    BoolZ,
    Msg(&'static Schema),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`, values as base64 (Secret `data`, ConfigMap `binaryData`).
    MapBytes,
    /// `map<string, Quantity>` (`resources.limits`/`requests`).
    MapQuantity,
    /// `repeated string`.
    RepStr,
    /// `repeated <message>`.
    RepMsg(&'static Schema),
    /// `intstr.IntOrString` {1: type, 2: intVal, 3: strVal}.
    IntOrString,
    /// Read and dropped: `creationTimestamp` (the server sets its own) and the `status` of a create.
    Skip,
}

/// A message: its name (for error messages) and its fields (number, JSON name, type).
struct Schema {
    name: &'static str,
    fields: &'static [(u64, &'static str, Ty)],
}

use Ty::*;

static OBJECT_META: Schema = Schema {
    name: "ObjectMeta",
    fields: &[
        (1, "name", Str),
        (2, "generateName", Str),
        (3, "namespace", Str),
        (4, "selfLink", Str),
        (5, "uid", Str),
        (6, "resourceVersion", Str),
        (7, "generation", IntZ),
        (8, "creationTimestamp", Skip),
        (11, "labels", MapStr),
        (12, "annotations", MapStr),
        (14, "finalizers", RepStr),
    ],
};
static SECRET: Schema = Schema {
    name: "Secret",
    fields: &[
        (1, "metadata", Msg(&OBJECT_META)),
        (2, "data", MapBytes),
        (3, "type", Str),
        (4, "stringData", MapStr),
        (5, "immutable", Bool),
    ],
};
static CONFIG_MAP: Schema = Schema {
    name: "ConfigMap",
    fields: &[
        (1, "metadata", Msg(&OBJECT_META)),
        (2, "data", MapStr),
        (3, "binaryData", MapBytes),
        (4, "immutable", Bool),
    ],
};
static NAMESPACE: Schema =
    Schema { name: "Namespace", fields: &[(1, "metadata", Msg(&OBJECT_META)), (2, "spec", Skip), (3, "status", Skip)] };
static DEPLOYMENT: Schema = Schema {
    name: "Deployment",
    fields: &[(1, "metadata", Msg(&OBJECT_META)), (2, "spec", Msg(&DEPLOYMENT_SPEC)), (3, "status", Skip)],
};
static DEPLOYMENT_SPEC: Schema = Schema {
    name: "DeploymentSpec",
    fields: &[
        (1, "replicas", Int),
        (2, "selector", Msg(&LABEL_SELECTOR)),
        (3, "template", Msg(&POD_TEMPLATE_SPEC)),
        (4, "strategy", Msg(&DEPLOYMENT_STRATEGY)),
        (5, "minReadySeconds", IntZ),
        (6, "revisionHistoryLimit", Int),
        (7, "paused", BoolZ),
        (9, "progressDeadlineSeconds", Int),
    ],
};
static LABEL_SELECTOR: Schema = Schema {
    name: "LabelSelector",
    fields: &[(1, "matchLabels", MapStr), (2, "matchExpressions", RepMsg(&LABEL_SELECTOR_REQUIREMENT))],
};
static LABEL_SELECTOR_REQUIREMENT: Schema = Schema {
    name: "LabelSelectorRequirement",
    fields: &[(1, "key", Str), (2, "operator", Str), (3, "values", RepStr)],
};
static DEPLOYMENT_STRATEGY: Schema =
    Schema { name: "DeploymentStrategy", fields: &[(1, "type", Str), (2, "rollingUpdate", Msg(&ROLLING_UPDATE))] };
static ROLLING_UPDATE: Schema = Schema {
    name: "RollingUpdateDeployment",
    fields: &[(1, "maxUnavailable", IntOrString), (2, "maxSurge", IntOrString)],
};
static POD_TEMPLATE_SPEC: Schema =
    Schema { name: "PodTemplateSpec", fields: &[(1, "metadata", Msg(&OBJECT_META)), (2, "spec", Msg(&POD_SPEC))] };
static POD_SPEC: Schema = Schema {
    name: "PodSpec",
    fields: &[
        (2, "containers", RepMsg(&CONTAINER)),
        (3, "restartPolicy", Str),
        (4, "terminationGracePeriodSeconds", Int),
        (5, "activeDeadlineSeconds", Int),
        (6, "dnsPolicy", Str),
        (7, "nodeSelector", MapStr),
        (8, "serviceAccountName", Str),
        (9, "serviceAccount", Str),
        (10, "nodeName", Str),
        (11, "hostNetwork", BoolZ),
        (12, "hostPID", BoolZ),
        (13, "hostIPC", BoolZ),
        (15, "imagePullSecrets", RepMsg(&LOCAL_OBJECT_REFERENCE)),
        (16, "hostname", Str),
        (17, "subdomain", Str),
        (19, "schedulerName", Str),
        (20, "initContainers", RepMsg(&CONTAINER)),
        (21, "automountServiceAccountToken", Bool),
        (22, "tolerations", RepMsg(&TOLERATION)),
        (24, "priorityClassName", Str),
        (25, "priority", Int),
    ],
};
static LOCAL_OBJECT_REFERENCE: Schema = Schema { name: "LocalObjectReference", fields: &[(1, "name", Str)] };
static TOLERATION: Schema = Schema {
    name: "Toleration",
    fields: &[
        (1, "key", Str),
        (2, "operator", Str),
        (3, "value", Str),
        (4, "effect", Str),
        (5, "tolerationSeconds", Int),
    ],
};
static CONTAINER: Schema = Schema {
    name: "Container",
    fields: &[
        (1, "name", Str),
        (2, "image", Str),
        (3, "command", RepStr),
        (4, "args", RepStr),
        (5, "workingDir", Str),
        (6, "ports", RepMsg(&CONTAINER_PORT)),
        (7, "env", RepMsg(&ENV_VAR)),
        (8, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        (9, "volumeMounts", RepMsg(&VOLUME_MOUNT)),
        (13, "terminationMessagePath", Str),
        (14, "imagePullPolicy", Str),
        (16, "stdin", BoolZ),
        (17, "stdinOnce", BoolZ),
        (18, "tty", BoolZ),
        (20, "terminationMessagePolicy", Str),
    ],
};
static CONTAINER_PORT: Schema = Schema {
    name: "ContainerPort",
    fields: &[
        (1, "name", Str),
        (2, "hostPort", IntZ),
        (3, "containerPort", Int),
        (4, "protocol", Str),
        (5, "hostIP", Str),
    ],
};
static ENV_VAR: Schema = Schema { name: "EnvVar", fields: &[(1, "name", Str), (2, "value", Str)] };
static RESOURCE_REQUIREMENTS: Schema =
    Schema { name: "ResourceRequirements", fields: &[(1, "limits", MapQuantity), (2, "requests", MapQuantity)] };
static VOLUME_MOUNT: Schema = Schema {
    name: "VolumeMount",
    fields: &[
        (1, "name", Str),
        (2, "readOnly", BoolZ),
        (3, "mountPath", Str),
        (4, "subPath", Str),
        (6, "subPathExpr", Str),
    ],
};
static QUANTITY: Schema = Schema { name: "Quantity", fields: &[(1, "string", Str)] };

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

/// A `map<…>` entry {1: key, 2: value}.
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = (String::new(), &[][..]);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Wire::Bytes(x)) => k = string(x)?,
            (2, Wire::Bytes(x)) => v = x,
            _ => {}
        }
    }
    Ok((k, v))
}

fn bytes<'a>(schema: &Schema, name: &str, f: Wire<'a>) -> Result<&'a [u8], String> {
    match f {
        Wire::Bytes(b) => Ok(b),
        Wire::Varint(_) => Err(format!("{}.{name}: expected a length-delimited field", schema.name)),
    }
}

fn varint(schema: &Schema, name: &str, f: Wire<'_>) -> Result<u64, String> {
    match f {
        Wire::Varint(v) => Ok(v),
        Wire::Bytes(_) => Err(format!("{}.{name}: expected a varint", schema.name)),
    }
}

fn int_or_string(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(b);
    let (mut ty, mut int, mut s) = (0, 0i64, String::new());
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Wire::Varint(v)) => ty = v,
            (2, Wire::Varint(v)) => int = v as i64 as i32 as i64,
            (3, Wire::Bytes(x)) => s = string(x)?,
            _ => {}
        }
    }
    Ok(if ty == 1 { json!(s) } else { json!(int) })
}

/// Decodes one message of `schema` into a JSON object.
fn message(schema: &Schema, b: &[u8]) -> Result<Value, String> {
    let mut obj = Map::new();
    let mut r = Reader::new(b);
    while let Some((n, f)) = r.next()? {
        let Some(&(_, name, ty)) = schema.fields.iter().find(|(num, _, _)| *num == n) else {
            return Err(format!(
                "the test server does not decode field {n} of {} in protobuf bodies; send JSON or add it to the schema",
                schema.name
            ));
        };
        let value = match ty {
            Str => Some(json!(string(bytes(schema, name, f)?)?)).filter(|v| v != ""),
            Int => Some(json!(varint(schema, name, f)? as i64)),
            IntZ => Some(varint(schema, name, f)? as i64).filter(|v| *v != 0).map(|v| json!(v)),
            Bool => Some(json!(varint(schema, name, f)? != 0)),
            BoolZ => Some(varint(schema, name, f)? != 0).filter(|v| *v).map(|v| json!(v)),
            Msg(inner) => Some(message(inner, bytes(schema, name, f)?)?),
            IntOrString => Some(int_or_string(bytes(schema, name, f)?)?),
            Skip => None,
            MapStr | MapBytes | MapQuantity => {
                let (k, v) = map_entry(bytes(schema, name, f)?)?;
                let v = match ty {
                    MapStr => json!(string(v)?),
                    MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(v)),
                    _ => message(&QUANTITY, v)?["string"].clone(),
                };
                let map = obj.entry(name).or_insert_with(|| json!({}));
                map[k] = v;
                None
            }
            RepStr | RepMsg(_) => {
                let item = match ty {
                    RepMsg(inner) => message(inner, bytes(schema, name, f)?)?,
                    _ => json!(string(bytes(schema, name, f)?)?),
                };
                obj.entry(name).or_insert_with(|| json!([])).as_array_mut().expect("an array").push(item);
                None
            }
        };
        if let Some(v) = value {
            obj.insert(name.to_string(), v);
        }
    }
    Ok(Value::Object(obj))
}

/// Decodes a protobuf request body into JSON. `Err` carries the reason, for the 415.
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body.strip_prefix(b"k8s\0").ok_or("missing protobuf magic prefix")?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Wire::Bytes(tm)) => {
                let mut t = Reader::new(tm);
                while let Some((n, f)) = t.next()? {
                    match (n, f) {
                        (1, Wire::Bytes(v)) => api_version = string(v)?,
                        (2, Wire::Bytes(k)) => kind = string(k)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let schema = match kind.as_str() {
        "Secret" => &SECRET,
        "ConfigMap" => &CONFIG_MAP,
        "Namespace" => &NAMESPACE,
        "Deployment" => &DEPLOYMENT,
        other => return Err(format!("the test server cannot decode protobuf bodies of kind {other:?}; send JSON")),
    };
    let mut obj = message(schema, raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut key = (num << 3) | 2;
        while key >= 0x80 {
            out.push((key as u8) | 0x80);
            key >>= 7;
        }
        out.extend([key as u8, payload.len() as u8]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn an_unknown_field_is_named_instead_of_dropped() {
        let meta = field(1, b"x");
        let spec = field(99, b"");
        let mut body = b"k8s\0".to_vec();
        body.extend(field(1, &[field(1, b"apps/v1"), field(2, b"Deployment")].concat()));
        body.extend(field(2, &[field(1, &meta), field(2, &spec)].concat()));
        let err = decode(&body).unwrap_err();
        assert!(err.contains("field 99 of DeploymentSpec"), "{err}");
    }
}
