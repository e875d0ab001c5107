//! More fidelity tests of the Kubernetes API test server with the real `kubectl` (v1.32, `/usr/bin/kubectl` or
//! `$KUBECTL`): the namespaces of a fresh cluster, the protobuf bodies of kubectl's typed `create` commands
//! (`create deployment|configmap|namespace`), `apply --server-side`, `rollout status` and `wait`.
//! (`tests/kube_test_server.rs` holds the rest; this file keeps both under the size limit.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cacerts_testkit::kube::KubeTestServer;
use serde_json::{Value, json};

const NS: &str = "istio-system";

fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBECTL").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"))
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs kubectl off the async runtime (the server lives on it).
async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(kubectl_path());
    cmd.env("KUBECONFIG", kubeconfig).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run kubectl (install it or set KUBECTL)"))
        .await
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok(server: &KubeTestServer, args: &[&str]) -> String {
    let out = kubectl(server.kubeconfig_path(), args).await;
    assert!(out.ok, "kubectl {args:?} failed: {}", out.stderr);
    out.stdout
}

/// The content type of the last POST to a path containing `path`.
fn posted_as(server: &KubeTestServer, path: &str) -> Option<String> {
    server.requests().into_iter().rev().find(|r| r.method == "POST" && r.path.contains(path))?.content_type
}

#[tokio::test]
async fn a_fresh_server_has_exactly_the_namespaces_of_a_fresh_cluster() {
    let server = KubeTestServer::start().await;
    let out = ok(&server, &["get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}"]).await;
    let mut names: Vec<&str> = out.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);
    let err = kubectl(server.kubeconfig_path(), &["get", "namespace", NS]).await;
    assert!(!err.ok && err.stderr.contains("namespaces \"istio-system\" not found"), "{}", err.stderr);

    let seeded = KubeTestServer::start_seeded(&[NS]).await;
    assert!(seeded.get("namespaces", "", NS).is_some());
}

#[tokio::test]
async fn kubectl_create_namespace_and_configmap_send_protobuf_and_are_stored() {
    let server = KubeTestServer::start().await;
    assert_eq!(ok(&server, &["create", "namespace", NS]).await.trim(), "namespace/istio-system created");
    assert_eq!(posted_as(&server, "/namespaces").as_deref(), Some("application/vnd.kubernetes.protobuf"));
    let ns = server.get("namespaces", "", NS).unwrap();
    assert_eq!(ns["status"]["phase"], "Active");

    let out =
        ok(&server, &["create", "configmap", "mesh", "-n", NS, "--from-literal=a=1", "--from-literal=b=two"]).await;
    assert_eq!(out.trim(), "configmap/mesh created");
    assert_eq!(posted_as(&server, "/configmaps").as_deref(), Some("application/vnd.kubernetes.protobuf"));
    let cm = server.get("configmaps", NS, "mesh").unwrap();
    assert_eq!(cm["data"], json!({"a": "1", "b": "two"}));
    let table = ok(&server, &["get", "configmaps", "-n", NS]).await;
    assert!(table.lines().any(|l| l.starts_with("mesh") && l.split_whitespace().nth(1) == Some("2")), "{table}");
}

/// `kubectl create deployment` arguments used below, and kubectl's own JSON of the same object.
const CREATE: &[&str] = &[
    "create",
    "deployment",
    "web",
    "-n",
    NS,
    "--image=nginx:1.27",
    "--port=8080",
    "--replicas=3",
    "--",
    "sleep",
    "3600",
];

#[tokio::test]
async fn kubectl_create_deployment_sends_protobuf_that_decodes_to_kubectls_own_json() {
    let server = KubeTestServer::start_seeded(&[NS]).await;
    let mut dry = CREATE.to_vec();
    dry.extend(["--dry-run=client", "-o", "json"]);
    // `--` must stay last: put the dry-run flags before it.
    let sep = dry.iter().position(|a| *a == "--").unwrap();
    let tail: Vec<&str> = dry.drain(sep..sep + 3).collect();
    dry.extend(tail);
    let mut expected: Value = serde_json::from_str(&ok(&server, &dry).await).unwrap();
    // kubectl's JSON writes the unset template `creationTimestamp` as null; the apiserver (and so the server)
    // stores no such field.
    let template_meta = expected["spec"]["template"]["metadata"].as_object_mut().unwrap();
    assert_eq!(template_meta.remove("creationTimestamp"), Some(Value::Null));

    assert_eq!(ok(&server, CREATE).await.trim(), "deployment.apps/web created");
    assert_eq!(posted_as(&server, "/deployments").as_deref(), Some("application/vnd.kubernetes.protobuf"));
    let d = server.get("deployments", NS, "web").unwrap();
    assert_eq!(d["metadata"]["labels"], expected["metadata"]["labels"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"], expected["spec"]["selector"]);
    assert_eq!(d["spec"]["template"], expected["spec"]["template"], "the Pod template survives the protobuf trip");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], json!(["sleep", "3600"]));
    assert_eq!(container["ports"], json!([{"containerPort": 8080}]));
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], "kubectl-create");
}

#[tokio::test]
async fn kubectl_apply_server_side_creates_then_updates_and_owns_the_fields() {
    let server = KubeTestServer::start_seeded(&[NS]).await;
    // The simulated controller's status writes would change the resourceVersion compared below.
    server.set_auto_rollout(None);
    let dir = tempfile::tempdir().unwrap();
    let manifest = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: {NS}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: api}}\n  template:\n    metadata:\n      labels: {{app: api}}\n    spec:\n      containers:\n      - name: api\n        image: {image}\n"
        )
    };
    let path = dir.path().join("api.yaml");
    let file = path.to_str().unwrap();
    std::fs::write(&path, manifest("api:1")).unwrap();
    assert_eq!(
        ok(&server, &["apply", "--server-side", "-f", file]).await.trim(),
        "deployment.apps/api serverside-applied"
    );
    let req = server.requests().into_iter().rev().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(req.content_type.as_deref(), Some("application/apply-patch+yaml"));
    assert!(req.query.contains("fieldManager=kubectl"), "{}", req.query);
    let d = server.get("deployments", NS, "api").unwrap();
    let owner = &d["metadata"]["managedFields"][0];
    assert_eq!((owner["manager"].as_str(), owner["operation"].as_str()), (Some("kubectl"), Some("Apply")));
    assert_eq!(d["metadata"]["generation"], 1);

    std::fs::write(&path, manifest("api:2")).unwrap();
    ok(&server, &["apply", "--server-side", "-f", file]).await;
    let d = server.get("deployments", NS, "api").unwrap();
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "api:2");
    assert_eq!(d["metadata"]["generation"], 2, "a template change is a new generation");
    // Applying the same manifest again changes nothing.
    let rv = d["metadata"]["resourceVersion"].clone();
    ok(&server, &["apply", "--server-side", "-f", file]).await;
    assert_eq!(server.get("deployments", NS, "api").unwrap()["metadata"]["resourceVersion"], rv);
}

#[tokio::test]
async fn kubectl_rollout_status_waits_until_the_new_generation_is_rolled_out() {
    let server = KubeTestServer::start_seeded(&[NS]).await;
    server.set_auto_rollout(None);
    ok(&server, CREATE).await;
    // No controller yet: the rollout can't finish within the timeout, and kubectl says so.
    let out =
        kubectl(server.kubeconfig_path(), &["rollout", "status", "deployment/web", "-n", NS, "--timeout=2s"]).await;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stdout.contains("Waiting for deployment") || out.stderr.contains("timed out"),
        "{} {}",
        out.stdout,
        out.stderr
    );

    // A progressing state first (1 of 3 updated), then the controller finishes.
    server.set_deployment_status(
        NS,
        "web",
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}),
    );
    server.set_auto_rollout(Some(Duration::from_millis(300)));
    ok(&server, &["rollout", "restart", "deployment/web", "-n", NS]).await;
    let out = ok(&server, &["rollout", "status", "deployment/web", "-n", NS, "--timeout=30s"]).await;
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
    assert_eq!(server.get("deployments", NS, "web").unwrap()["status"]["observedGeneration"], 2);
}

#[tokio::test]
async fn kubectl_wait_for_condition_available_and_for_a_jsonpath() {
    let server = KubeTestServer::start_seeded(&[NS]).await;
    ok(&server, CREATE).await;
    let out = ok(&server, &["wait", "--for=condition=Available", "deployment/web", "-n", NS, "--timeout=30s"]).await;
    assert_eq!(out.trim(), "deployment.apps/web condition met");
    let out = ok(
        &server,
        &["wait", "--for=jsonpath={.status.updatedReplicas}=3", "deployment/web", "-n", NS, "--timeout=30s"],
    )
    .await;
    assert_eq!(out.trim(), "deployment.apps/web condition met");
    // A condition that never comes: kubectl times out and exits non-zero.
    let out = kubectl(
        server.kubeconfig_path(),
        &["wait", "--for=condition=Paused", "deployment/web", "-n", NS, "--timeout=1s"],
    )
    .await;
    assert!(!out.ok && out.stderr.contains("timed out waiting for the condition"), "{}", out.stderr);
}
