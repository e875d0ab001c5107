//! The simulated Deployment controller and istiod of the test server: a rollout reports the generation it was
//! told about as done after a delay, and a restarted istiod publishes the roots it loads in `istio-ca-root-cert`.

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::server::Inner;
use super::store::{self, Origin, Ownership, WriteOpts};
use super::{CONTROLLER_MANAGER, resources};

pub(super) fn set_status(inner: &Inner, namespace: &str, name: &str, status: Value) -> Result<(), Value> {
    let def = resources::by_name("deployments");
    let mut store = inner.store.lock().expect("store");
    let Some(current) = store.get(def, namespace, name).cloned() else {
        return Err(json!(format!("deployment {namespace}/{name} not found")));
    };
    let mut new = resources::to_external(def, current.clone());
    new["status"] = status;
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let opts =
        WriteOpts { manager: CONTROLLER_MANAGER, dry_run: false, subresource: Some("status"), origin: Origin::Handle };
    store.write(def, namespace, name, Some(current), new, &opts, Ownership::Update).map(|_| ()).map_err(|e| e.body)
}

/// The status a Deployment controller reports once `generation` is fully rolled out.
fn rolled_out_status(generation: i64, replicas: i64, now: &str) -> Value {
    let mut s = json!({"observedGeneration": generation});
    if replicas > 0 {
        for k in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
            s[k] = json!(replicas);
        }
    }
    s["conditions"] = json!([
        {"type": "Available", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
         "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
        {"type": "Progressing", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
         "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed."}
    ]);
    s
}

/// The simulated Deployment controller: after the delay, reports the generation it was told about as rolled out.
pub(super) async fn rollout_loop(
    inner: std::sync::Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<(String, String, i64)>,
) {
    while let Some((ns, name, generation)) = rx.recv().await {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let delay = strong.store.lock().expect("store").rollout_delay;
        drop(strong);
        let Some(delay) = delay else { continue };
        let inner = inner.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(inner) = inner.upgrade() else { return };
            let current = inner.get_deployment(&ns, &name);
            let Some(d) = current else { return };
            if d.pointer("/metadata/generation").and_then(Value::as_i64) != Some(generation) {
                return;
            }
            if inner.store.lock().expect("store").rollout_delay.is_none() {
                return;
            }
            let replicas = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            let _ = set_status(&inner, &ns, &name, rolled_out_status(generation, replicas, &store::now_rfc3339()));
            let is_istiod = d.pointer("/metadata/labels/app").and_then(Value::as_str) == Some("istiod");
            if is_istiod && inner.store.lock().expect("store").istiod_publishes_roots {
                let pem = istiod_roots_at_start(&inner, &ns);
                publish_roots(&inner, &ns, &pem);
            }
        });
    }
}

/// The roots a simulated istiod pod starting now serves: `cacerts`' `root-cert.pem`, or its self-signed root.
fn istiod_roots_at_start(inner: &Inner, ns: &str) -> String {
    let mut store = inner.store.lock().expect("store");
    let def = resources::by_name("secrets");
    let secret = store.get(def, ns, "cacerts").cloned().map(|s| resources::to_external(def, s));
    let plugged = secret
        .and_then(|s| s.pointer("/data/root-cert.pem").and_then(Value::as_str).map(str::to_string))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|pem| !pem.trim().is_empty());
    match plugged {
        Some(pem) => pem,
        None => store.istiod_self_signed.get_or_insert_with(self_signed_istiod_root).clone(),
    }
}

/// A self-signed root like the one istiod generates when it has no plug-in CA (O=cluster.local).
fn self_signed_istiod_root() -> String {
    let key = rcgen::KeyPair::generate().expect("generate key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "cluster.local");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("self-sign").pem()
}

/// Creates or updates `istio-ca-root-cert` in `ns` as istiod does.
pub(super) fn publish_roots(inner: &Inner, ns: &str, pem: &str) {
    let def = resources::by_name("configmaps");
    let mut store = inner.store.lock().expect("store");
    let current = store.get(def, ns, "istio-ca-root-cert").cloned();
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio-ca-root-cert", "namespace": ns, "labels": {"istio.io/config": "true"}},
        "data": {"root-cert.pem": pem}});
    let opts = WriteOpts { manager: "pilot-discovery", dry_run: false, subresource: None, origin: Origin::Handle };
    let result = match current {
        None => store.create(def, ns, obj, &opts).map(|_| ()),
        Some(current) => {
            store.write(def, ns, "istio-ca-root-cert", Some(current), obj, &opts, Ownership::Update).map(|_| ())
        }
    };
    result.unwrap_or_else(|e| panic!("kube test server: publishing istio-ca-root-cert failed: {}", e.body));
}

impl Inner {
    fn get_deployment(&self, ns: &str, name: &str) -> Option<Value> {
        self.store.lock().expect("store").get(resources::by_name("deployments"), ns, name).cloned()
    }
}
