//! Fidelity tests of the Kubernetes API test server: the real `kubectl` (v1.32, `/usr/bin/kubectl` or `$KUBECTL`) and kube-rs's
//! typed `Api`/`watcher` drive it, and the answers are checked against what a real kube-apiserver v1.32 gives
//! (`../shared/kube-api-facts.md`).
//!
//! This file drives it with kubectl; `kube_test_server_client.rs` with kube-rs's typed `Api`, and
//! `kube_test_server_watch.rs` with watches, kube-rs's `watcher`, its event recorder and a lease manager.

#[path = "kube_test_server/helpers.rs"]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::Command;

use cacerts_testkit::kube::{KubeTestServer, Rule};
use helpers::{CONFLICT_MSG, b64, istiod, limited_kubeconfig};
use serde_json::json;

/// kubectl v1.32 (the machine image has it at /usr/bin/kubectl; `KUBECTL` overrides the path).
fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBECTL").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"))
}

// ---------------------------------------------------------------------------------------------------------
// helpers

struct Kubectl {
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(kubeconfig: &Path) -> Self {
        Self { kubeconfig: kubeconfig.to_path_buf(), cache: tempfile::tempdir().expect("cache dir") }
    }

    /// Runs kubectl off the async runtime (the server lives on it).
    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(kubectl_path());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(self.cache.path()).args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("run kubectl (install it or set KUBECTL)"))
            .await
            .expect("join");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.ok, "kubectl {args:?} failed: {}", out.stderr);
        out.stdout
    }

    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(!out.ok, "kubectl {args:?} unexpectedly succeeded: {}", out.stdout);
        out.stderr
    }
}

// ---------------------------------------------------------------------------------------------------------
// kubectl

#[tokio::test]
async fn kubectl_get_lists_namespaces_and_reports_a_missing_secret_as_not_found() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let k = Kubectl::new(server.kubeconfig_path());
    let out = k.ok(&["get", "namespaces", "-o", "name"]).await;
    for ns in ["default", "kube-system", "istio-system"] {
        assert!(out.contains(&format!("namespace/{ns}")), "{out}");
    }
    let err = k.fails(&["get", "secret", "nope", "-n", "istio-system"]).await;
    assert!(err.contains("Error from server (NotFound): secrets \"nope\" not found"), "{err}");
    // The server's 404 does not mention a missing namespace; kubectl then GETs the namespace itself and
    // reports that 404 instead (as against a real cluster).
    let err = k.fails(&["get", "secret", "cacerts", "-n", "nons"]).await;
    assert!(err.contains("Error from server (NotFound): namespaces \"nons\" not found"), "{err}");
    assert_eq!(server.request_count("GET", "/api/v1/namespaces/nons/secrets/cacerts"), 1);
}

#[tokio::test]
async fn kubectl_get_prints_the_server_side_columns() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.set_auto_rollout(None);
    server.create(
        "secrets",
        "istio-system",
        json!({"metadata": {"name": "cacerts"}, "data": {"a": b64("x"), "b": b64("y")}}),
    );
    server.create("deployments", "istio-system", istiod("istiod"));
    server.set_deployment_status("istio-system", "istiod", json!({"replicas": 1, "updatedReplicas": 1}));
    let k = Kubectl::new(server.kubeconfig_path());
    let out = k.ok(&["get", "secrets", "-n", "istio-system"]).await;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(rows[1][..3], ["cacerts", "Opaque", "2"]);
    let out = k.ok(&["get", "deployments", "-n", "istio-system", "-o", "wide"]).await;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
    assert_eq!(rows[1][..4], ["istiod", "0/1", "1", "0"]);
    assert_eq!(rows[1][5..], ["discovery", "docker.io/istio/pilot:1.24.0", "app=istiod"]);
}

#[tokio::test]
async fn kubectl_create_secret_from_file_stores_base64_data_with_server_metadata() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let k = Kubectl::new(server.kubeconfig_path());
    let dir = tempfile::tempdir().unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(dir.path().join("root-cert.pem"), pem).unwrap();
    let from = format!("--from-file={}", dir.path().join("root-cert.pem").display());
    let out = k.ok(&["create", "secret", "generic", "cacerts", "-n", "istio-system", &from]).await;
    assert_eq!(out.trim(), "secret/cacerts created");

    let s = server.get("secrets", "istio-system", "cacerts").expect("created");
    assert_eq!(s["data"]["root-cert.pem"], b64(pem));
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(s["metadata"]["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    let rv: u64 = s["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert_eq!(rv, server.resource_version());
    assert_eq!(s["metadata"]["managedFields"][0]["manager"], "kubectl-create");
    assert_eq!(s["metadata"]["managedFields"][0]["operation"], "Update");

    let err = k.fails(&["create", "secret", "generic", "cacerts", "-n", "istio-system", &from]).await;
    assert!(err.contains("secrets \"cacerts\" already exists"), "{err}");
    let err = k.fails(&["create", "secret", "generic", "cacerts", "-n", "nons", &from]).await;
    assert!(err.contains("namespaces \"nons\" not found"), "{err}");
}

#[tokio::test]
async fn kubectl_apply_creates_a_secret_and_then_updates_it() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let k = Kubectl::new(server.kubeconfig_path());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("s.yaml");
    let write = |v: &str| {
        std::fs::write(
            &manifest,
            format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  namespace: istio-system\n  labels: {{app: x}}\nstringData:\n  ca-cert.pem: {v}\n"),
        )
        .unwrap()
    };
    write("one");
    let out = k.ok(&["apply", "-f", manifest.to_str().unwrap()]).await;
    assert_eq!(out.trim(), "secret/cacerts created");
    write("two");
    let out = k.ok(&["apply", "-f", manifest.to_str().unwrap()]).await;
    assert_eq!(out.trim(), "secret/cacerts configured");
    let s = server.get("secrets", "istio-system", "cacerts").unwrap();
    assert_eq!(s["data"]["ca-cert.pem"], b64("two"), "stringData is merged into data");
    assert!(s.get("stringData").is_none());
    assert!(s["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
    // kubectl always re-sends `stringData` (the live object never has it), but the write changes nothing, so
    // the server does not persist it: the resourceVersion stays.
    let rv = s["metadata"]["resourceVersion"].clone();
    k.ok(&["apply", "-f", manifest.to_str().unwrap()]).await;
    assert_eq!(server.get("secrets", "istio-system", "cacerts").unwrap()["metadata"]["resourceVersion"], rv);
}

#[tokio::test]
async fn kubectl_server_side_apply_conflicts_with_another_manager_unless_forced() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let k = Kubectl::new(server.kubeconfig_path());
    k.ok(&["create", "secret", "generic", "cacerts", "-n", "istio-system", "--from-literal=root-cert.pem=old"]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("s.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  namespace: istio-system\ndata:\n  root-cert.pem: {}\n", b64("new")),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let err = k.fails(&["apply", "--server-side", "--field-manager=cacerts-sync", "-f", m]).await;
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .data.root-cert.pem"),
        "{err}"
    );
    k.ok(&["apply", "--server-side", "--field-manager=cacerts-sync", "--force-conflicts", "-f", m]).await;
    let s = server.get("secrets", "istio-system", "cacerts").unwrap();
    assert_eq!(s["data"]["root-cert.pem"], b64("new"));
    let managers: Vec<(String, String)> = s["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["manager"].as_str().unwrap().to_string(), e["operation"].as_str().unwrap().to_string()))
        .collect();
    assert!(managers.contains(&("cacerts-sync".into(), "Apply".into())), "{managers:?}");
    let create_entry =
        s["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "kubectl-create").unwrap();
    assert!(
        create_entry["fieldsV1"]["f:data"].get("f:root-cert.pem").is_none(),
        "the forced apply took the field over"
    );
}

#[tokio::test]
async fn kubectl_merge_patch_sets_labels_and_a_stale_resource_version_conflicts() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let k = Kubectl::new(server.kubeconfig_path());
    let created =
        server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}, "data": {"a": b64("x")}}));
    let stale = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let out = k
        .ok(&[
            "patch",
            "secret",
            "cacerts",
            "-n",
            "istio-system",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"app.kubernetes.io/managed-by":"cacerts-sync"}}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "secret/cacerts patched");
    let s = server.get("secrets", "istio-system", "cacerts").unwrap();
    assert_eq!(s["metadata"]["labels"]["app.kubernetes.io/managed-by"], "cacerts-sync");
    assert_ne!(s["metadata"]["resourceVersion"].as_str().unwrap(), stale);

    let p = format!(r#"{{"metadata":{{"resourceVersion":"{stale}"}},"data":{{"a":"{}"}}}}"#, b64("y"));
    let err = k.fails(&["patch", "secret", "cacerts", "-n", "istio-system", "--type", "merge", "-p", &p]).await;
    assert!(err.contains(&format!("Error from server (Conflict): {CONFLICT_MSG}")), "{err}");
}

#[tokio::test]
async fn kubectl_merge_patch_changing_the_secret_type_is_rejected_as_immutable() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let k = Kubectl::new(server.kubeconfig_path());
    server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}, "data": {"a": b64("x")}}));
    let err = k
        .fails(&[
            "patch",
            "secret",
            "cacerts",
            "-n",
            "istio-system",
            "--type",
            "merge",
            "-p",
            r#"{"type":"kubernetes.io/tls"}"#,
        ])
        .await;
    assert!(err.contains("The Secret \"cacerts\" is invalid"), "{err}");
    assert!(err.contains("type: Invalid value: \"kubernetes.io/tls\": field is immutable"), "{err}");
    assert_eq!(server.get("secrets", "istio-system", "cacerts").unwrap()["type"], "Opaque");
}

#[tokio::test]
async fn kubectl_rollout_restart_annotates_the_template_and_bumps_generation() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let k = Kubectl::new(server.kubeconfig_path());
    server.create("deployments", "istio-system", istiod("istiod"));
    let out = k.ok(&["rollout", "restart", "deployment/istiod", "-n", "istio-system"]).await;
    assert_eq!(out.trim(), "deployment.apps/istiod restarted");
    let d = server.get("deployments", "istio-system", "istiod").unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    let at = d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].as_str().unwrap();
    assert!(at.parse::<jiff::Timestamp>().is_ok() && at.ends_with('Z'), "restartedAt {at} is RFC 3339");
    assert_eq!(
        server.requests().iter().find(|r| r.method == "PATCH").unwrap().content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    // Metadata-only changes do not bump generation.
    k.ok(&["annotate", "deployment", "istiod", "-n", "istio-system", "cacerts-sync.io/root-fingerprint=abc"]).await;
    assert_eq!(server.get("deployments", "istio-system", "istiod").unwrap()["metadata"]["generation"], 2);
    // The simulated controller reports the new generation rolled out, so rollout status completes.
    let out = k.ok(&["rollout", "status", "deployment/istiod", "-n", "istio-system", "--timeout=30s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[tokio::test]
async fn kubectl_with_a_get_only_token_is_forbidden_to_patch() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}}));
    let dir = tempfile::tempdir().unwrap();
    let kc = limited_kubeconfig(&server, dir.path(), vec![Rule::new(&["get"], "", &["secrets"])]);
    let k = Kubectl::new(&kc);
    k.ok(&["get", "secret", "cacerts", "-n", "istio-system"]).await;
    let err = k
        .fails(&[
            "patch",
            "secret",
            "cacerts",
            "-n",
            "istio-system",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"a":"b"}}}"#,
        ])
        .await;
    assert!(
        err.contains("Error from server (Forbidden): secrets \"cacerts\" is forbidden: User \"system:serviceaccount:istio-system:syncer\" cannot patch resource \"secrets\" in API group \"\" in the namespace \"istio-system\""),
        "{err}"
    );
}

#[tokio::test]
async fn kubectl_with_an_unknown_token_is_unauthorized() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    server.write_kubeconfig(&kc, "not-a-token").unwrap();
    let err = Kubectl::new(&kc).fails(&["get", "secrets", "-n", "istio-system"]).await;
    // kubectl's wording for a 401 Status.
    assert!(err.contains("You must be logged in to the server"), "{err}");
    assert!(server.requests().iter().all(|r| r.status == 401));
}
