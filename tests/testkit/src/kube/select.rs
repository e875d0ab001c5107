//! Label and field selectors (`labelSelector=`, `fieldSelector=`) with apimachinery's semantics.
//!
//! Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by `,`.
//! `!=` and `notin` also match objects without the label, as in `labels.Selector`.
//! Field selectors: `f=v`, `f==v`, `f!=v` on the fields each resource supports (`metadata.name`,
//! `metadata.namespace` everywhere, plus a few per kind); others give 400 `field label not supported: f`.

use serde_json::Value;

use super::resources::ResourceDef;

#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (empty matches everything).
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    /// Parses a selector; the error is the 400 message.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let bad = || format!("unable to parse requirement: found '{term}', expected: in, notin, =, ==, !=, gt, lt");
            let req = if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some(open) = term.find('(') {
                let head = term[..open].trim();
                let set = parse_set(&term[open..]).ok_or_else(bad)?;
                if let Some(k) = head.strip_suffix(" notin").or_else(|| head.strip_suffix("notin")) {
                    LabelReq::NotIn(k.trim().to_string(), set)
                } else if let Some(k) = head.strip_suffix(" in").or_else(|| head.strip_suffix("in")) {
                    LabelReq::In(k.trim().to_string(), set)
                } else {
                    return Err(bad());
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if term.contains(' ') {
                return Err(bad());
            } else {
                LabelReq::Exists(term.clone())
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Does `obj` (its `metadata.labels`) satisfy every requirement?
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, set) => get(k).is_some_and(|x| set.iter().any(|s| s == x)),
            LabelReq::NotIn(k, set) => get(k).is_none_or(|x| !set.iter().any(|s| s == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector (empty matches everything).
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

/// Fields each kind can be selected on (`AddFieldLabelConversionFunc` registrations), besides the metadata ones.
fn supported(def: &ResourceDef, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match (def.group, def.plural) {
        ("", "secrets") => field == "type",
        ("", "namespaces") => field == "status.phase",
        ("", "events") => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        ("events.k8s.io", "events") => matches!(
            field,
            "regarding.kind"
                | "regarding.namespace"
                | "regarding.name"
                | "regarding.uid"
                | "regarding.apiVersion"
                | "regarding.resourceVersion"
                | "regarding.fieldPath"
                | "reason"
                | "reportingController"
                | "type"
        ),
        _ => false,
    }
}

impl FieldSelector {
    /// Parses a selector for `def`; the error is the 400 message.
    pub fn parse(def: &ResourceDef, s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{term}'"));
            };
            let field = field.trim();
            if !supported(def, field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    /// The name a single `metadata.name=X` term selects: RBAC then authorizes the list/watch for that name.
    pub fn single_name(&self) -> Option<&str> {
        match self.0.as_slice() {
            [(f, true, v)] if f == "metadata.name" => Some(v),
            _ => None,
        }
    }

    /// Does `obj` (in the external representation of the resource) match?
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, want)| {
            let mut cur = obj;
            for seg in field.split('.') {
                cur = cur.get(seg).unwrap_or(&Value::Null);
            }
            let have = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: serde_json::Value) -> Value {
        json!({"metadata": {"name": "istiod", "labels": labels}})
    }

    #[test]
    fn label_selector_operators_match_like_apimachinery() {
        let o = obj(json!({"app": "istiod", "istio.io/rev": "1-24"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m("app=istiod") && m("app==istiod") && m("app=istiod,istio.io/rev"));
        assert!(!m("app=other") && !m("app!=istiod") && !m("!app"));
        assert!(m("missing!=x"), "!= matches objects without the label");
        assert!(m("istio.io/rev in (1-23, 1-24)") && !m("istio.io/rev notin (1-24)"));
        assert!(m("missing notin (a)") && !m("missing in (a)"));
        assert!(LabelSelector::parse("app in (a").is_err());
    }

    #[test]
    fn field_selector_rejects_unsupported_fields() {
        let secrets = super::super::resources::by_name("secrets");
        let s = FieldSelector::parse(secrets, "metadata.name=istiod").unwrap();
        assert_eq!(s.single_name(), Some("istiod"));
        assert!(s.matches(&obj(json!({}))));
        assert!(FieldSelector::parse(secrets, "type!=Opaque").is_ok());
        assert_eq!(FieldSelector::parse(secrets, "spec.x=1").unwrap_err(), "field label not supported: spec.x");
    }
}
