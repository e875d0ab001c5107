//! Helpers shared by the fidelity tests of the Kubernetes API test server (`tests/kube_test_server*.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cacerts_testkit::kube::{KubeTestServer, Rule};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

pub async fn client_for(kubeconfig: &Path) -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kube config");
    Client::try_from(config).expect("kube client")
}

pub async fn admin_client(server: &KubeTestServer) -> Client {
    client_for(server.kubeconfig_path()).await
}

/// A kubeconfig for a new token limited to `rules`, as user `system:serviceaccount:istio-system:syncer`.
pub fn limited_kubeconfig(server: &KubeTestServer, dir: &Path, rules: Vec<Rule>) -> PathBuf {
    let token = "syncer-token";
    server.add_token(token, "system:serviceaccount:istio-system:syncer", rules);
    let path = dir.join("limited-kubeconfig");
    server.write_kubeconfig(&path, token).expect("write kubeconfig");
    path
}

pub fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn istiod(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "istiod", "istio.io/rev": "default"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "istiod"}},
            "template": {
                "metadata": {"labels": {"app": "istiod"}},
                "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.24.0"}]}
            }
        }
    })
}

pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub const CONFLICT_MSG: &str = "Operation cannot be fulfilled on secrets \"cacerts\": the object has been modified; please apply your changes to the latest version and try again";
