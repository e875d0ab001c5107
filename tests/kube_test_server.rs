//! Fidelity tests of the Kubernetes API test server: the real `kubectl` (v1.32, `/usr/bin/kubectl` or `$KUBECTL`) and kube-rs's
//! typed `Api`/`watcher` drive it, and the answers are checked against what a real kube-apiserver v1.32 gives
//! (`../shared/kube-api-facts.md`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cacerts_testkit::kube::{Fault, KubeTestServer, Rule};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::{Value, json};

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

async fn client_for(kubeconfig: &Path) -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kube config");
    Client::try_from(config).expect("kube client")
}

async fn admin_client(server: &KubeTestServer) -> Client {
    client_for(server.kubeconfig_path()).await
}

/// A kubeconfig for a new token limited to `rules`, as user `system:serviceaccount:istio-system:syncer`.
fn limited_kubeconfig(server: &KubeTestServer, dir: &Path, rules: Vec<Rule>) -> PathBuf {
    let token = "syncer-token";
    server.add_token(token, "system:serviceaccount:istio-system:syncer", rules);
    let path = dir.join("limited-kubeconfig");
    server.write_kubeconfig(&path, token).expect("write kubeconfig");
    path
}

fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_string());
    s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect());
    s
}

fn istiod(name: &str) -> Value {
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

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

const CONFLICT_MSG: &str = "Operation cannot be fulfilled on secrets \"cacerts\": the object has been modified; please apply your changes to the latest version and try again";

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

// ---------------------------------------------------------------------------------------------------------
// kube-rs typed Api

#[tokio::test]
async fn kube_client_creates_gets_and_lists_by_label_and_field_selector() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut s = secret("cacerts", &[("root-cert.pem", "pem")]);
    s.metadata.labels = Some([("app".to_string(), "istiod".to_string())].into());
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    secrets.create(&PostParams::default(), &secret("other", &[])).await.unwrap();

    let got = secrets.get("cacerts").await.unwrap();
    assert_eq!(got.data.unwrap()["root-cert.pem"].0, b"pem");
    let list = secrets.list(&ListParams::default().labels("app=istiod")).await.unwrap();
    assert_eq!(list.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["cacerts"]);
    let list = secrets.list(&ListParams::default().labels("app!=istiod")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("other"));
    let list = secrets.list(&ListParams::default().fields("metadata.name=other")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.metadata.resource_version, Some(server.resource_version().to_string()));
    let list = secrets.list(&ListParams::default().labels("app in (istiod,x),!missing")).await.unwrap();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn kube_client_sees_already_exists_not_found_and_missing_namespace_statuses() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    let e = api_error(secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "secrets \"cacerts\" already exists");
    assert_eq!(e.details.as_ref().unwrap().kind, "secrets");

    let e = api_error(secrets.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (404, "NotFound", "secrets \"nope\" not found"));

    let missing: Api<Secret> = Api::namespaced(client, "nons");
    let e = api_error(missing.get("cacerts").await.unwrap_err());
    assert_eq!(e.message, "secrets \"cacerts\" not found", "a GET does not mention the missing namespace");
    let e = api_error(missing.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (404, "namespaces \"nons\" not found"));
    assert_eq!(e.details.unwrap().kind, "namespaces");
}

#[tokio::test]
async fn kube_client_replace_with_a_stale_resource_version_gets_conflict() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let first = secrets.create(&PostParams::default(), &secret("cacerts", &[("a", "1")])).await.unwrap();
    let mut newer = first.clone();
    newer.data = Some([("a".to_string(), ByteString(b"2".to_vec()))].into());
    let replaced = secrets.replace("cacerts", &PostParams::default(), &newer).await.unwrap();
    assert_ne!(replaced.metadata.resource_version, first.metadata.resource_version);

    let e = api_error(secrets.replace("cacerts", &PostParams::default(), &first).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (409, "Conflict", CONFLICT_MSG));
    assert_eq!(secrets.get("cacerts").await.unwrap().data.unwrap()["a"].0, b"2");
}

#[tokio::test]
async fn kube_client_merge_patch_with_bad_base64_is_invalid_at_the_offending_byte() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    let e = api_error(
        secrets
            .patch("cacerts", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "YWJj!"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.ends_with("illegal base64 data at input byte 4"), "{}", e.message);
    assert_eq!(e.details.unwrap().causes[0].field, "patch");
}

#[tokio::test]
async fn kube_client_server_side_apply_conflicts_without_force_and_takes_ownership_with_force() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets
        .create(
            &PostParams { field_manager: Some("curl".into()), ..Default::default() },
            &secret("cacerts", &[("root-cert.pem", "old")]),
        )
        .await
        .unwrap();
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts"},
                      "data": {"root-cert.pem": b64("new")}});
    let e = api_error(
        secrets.patch("cacerts", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body)).await.unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(e.message, "Apply failed with 1 conflict: conflict with \"curl\" using v1: .data.root-cert.pem");
    let cause = &e.details.unwrap().causes[0];
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("FieldManagerConflict", ".data.root-cert.pem"));

    let applied =
        secrets.patch("cacerts", &PatchParams::apply("cacerts-sync").force(), &Patch::Apply(&body)).await.unwrap();
    assert_eq!(applied.data.unwrap()["root-cert.pem"].0, b"new");
    // Re-applying the same configuration (now owned) changes nothing: same resourceVersion.
    let again = secrets.patch("cacerts", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body)).await.unwrap();
    assert_eq!(again.metadata.resource_version, applied.metadata.resource_version);
    // Dropping a key from the applied configuration removes it (it is owned by nobody else).
    let body2 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "labels": {"a": "b"}}});
    let pruned = secrets.patch("cacerts", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body2)).await.unwrap();
    assert!(pruned.data.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn kube_client_apply_creates_a_missing_object() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let leases: Api<Lease> = Api::namespaced(admin_client(&server).await, "istio-system");
    let body = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "cacerts-sync"},
                      "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}});
    let lease = leases.patch("cacerts-sync", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body)).await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("pod-a"));
    let patched = leases
        .patch(
            "cacerts-sync",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"holderIdentity": null, "leaseTransitions": 1}})),
        )
        .await
        .unwrap();
    let spec = patched.spec.unwrap();
    assert_eq!((spec.holder_identity, spec.lease_transitions, spec.lease_duration_seconds), (None, Some(1), Some(15)));
}

#[tokio::test]
async fn kube_client_with_a_limited_token_gets_rbac_forbidden() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}}));
    server.create("secrets", "istio-system", json!({"metadata": {"name": "other"}}));
    let dir = tempfile::tempdir().unwrap();
    let rules = vec![Rule::new(&["get", "patch", "list", "watch"], "", &["secrets"]).names(&["cacerts"])];
    let secrets: Api<Secret> =
        Api::namespaced(client_for(&limited_kubeconfig(&server, dir.path(), rules)).await, "istio-system");
    secrets.get("cacerts").await.unwrap();
    let e = api_error(secrets.get("other").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "secrets \"other\" is forbidden: User \"system:serviceaccount:istio-system:syncer\" cannot get resource \"secrets\" in API group \"\" in the namespace \"istio-system\""
    );
    let e = api_error(secrets.create(&PostParams::default(), &secret("new", &[])).await.unwrap_err());
    assert_eq!(
        e.message,
        "secrets is forbidden: User \"system:serviceaccount:istio-system:syncer\" cannot create resource \"secrets\" in API group \"\" in the namespace \"istio-system\""
    );
    // resourceNames limit a list only through a single-name field selector, as RBAC does.
    assert_eq!(api_error(secrets.list(&ListParams::default()).await.unwrap_err()).code, 403);
    assert_eq!(secrets.list(&ListParams::default().fields("metadata.name=cacerts")).await.unwrap().items.len(), 1);
    let deployments: Api<Deployment> = Api::namespaced(secrets.clone().into_client(), "istio-system");
    let e = api_error(deployments.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        e.message,
        "deployments.apps is forbidden: User \"system:serviceaccount:istio-system:syncer\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"istio-system\""
    );
}

#[tokio::test]
async fn kube_client_with_an_unknown_token_gets_unauthorized() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    server.write_kubeconfig(&kc, "wrong").unwrap();
    let secrets: Api<Secret> = Api::namespaced(client_for(&kc).await, "istio-system");
    let e = api_error(secrets.get("cacerts").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (401, "Unauthorized", "Unauthorized"));
}

#[tokio::test]
async fn kube_client_restart_bumps_generation_but_a_metadata_patch_does_not() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.set_auto_rollout(None);
    server.create("deployments", "istio-system", istiod("istiod"));
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    let d = deployments.restart("istiod").await.unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    let d = deployments
        .patch("istiod", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.status.and_then(|s| s.observed_generation), None, "auto-rollout is off");

    server.set_deployment_status(
        "istio-system",
        "istiod",
        json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
    );
    let status = deployments.get("istiod").await.unwrap().status.unwrap();
    assert_eq!((status.observed_generation, status.updated_replicas), (Some(2), Some(1)));
    let list = deployments.list(&ListParams::default().labels("app=istiod")).await.unwrap();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn kube_client_delete_returns_success_and_a_second_delete_is_not_found() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    let gone = secrets.delete("cacerts", &DeleteParams::default()).await.unwrap();
    assert!(gone.is_right(), "Secrets are deleted with a Success Status");
    assert!(server.get("secrets", "istio-system", "cacerts").is_none());
    assert_eq!(api_error(secrets.delete("cacerts", &DeleteParams::default()).await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn injected_faults_fail_the_matching_requests_the_given_number_of_times() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    server.inject_fault(Fault::status(409).times(1).method("PATCH").path("/secrets/cacerts"));
    let patch = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    let e = api_error(secrets.patch("cacerts", &PatchParams::default(), &patch).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (409, CONFLICT_MSG));
    secrets.patch("cacerts", &PatchParams::default(), &patch).await.unwrap();
    assert_eq!(server.request_count("PATCH", "/secrets/cacerts"), 2);
    assert_eq!(server.write_count(), 2, "the create and the second patch");

    server.inject_fault(Fault::status(500).path("/secrets"));
    let e = api_error(secrets.get("cacerts").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    server.clear_faults();
    secrets.get("cacerts").await.unwrap();

    // kube 5's client retries 503/429/504 by itself, so a short outage is invisible to the caller.
    server.reset_requests();
    server.inject_fault(Fault::status(503).times(2).method("GET").path("/secrets/cacerts"));
    secrets.get("cacerts").await.unwrap();
    assert_eq!(server.request_count("GET", "/secrets/cacerts"), 3);
}

// ---------------------------------------------------------------------------------------------------------
// watches

#[tokio::test]
async fn api_watch_from_a_resource_version_streams_added_modified_and_deleted() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    server.create("secrets", "istio-system", json!({"metadata": {"name": "before"}}));
    let rv = server.resource_version().to_string();
    let mut stream = secrets.watch(&WatchParams::default().fields("metadata.name=cacerts"), &rv).await.unwrap().boxed();
    server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}}));
    server.create("secrets", "istio-system", json!({"metadata": {"name": "unrelated"}}));
    server.update("secrets", "istio-system", json!({"metadata": {"name": "cacerts", "labels": {"x": "y"}}}));
    server.delete("secrets", "istio-system", "cacerts");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().expect("event") {
            WatchEvent::Added(s) => seen.push(("ADDED", s.metadata.name.unwrap())),
            WatchEvent::Modified(s) => seen.push(("MODIFIED", s.metadata.name.unwrap())),
            WatchEvent::Deleted(s) => seen.push(("DELETED", s.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let names: Vec<(&str, &str)> = seen.iter().map(|(t, n)| (*t, n.as_str())).collect();
    assert_eq!(names, [("ADDED", "cacerts"), ("MODIFIED", "cacerts"), ("DELETED", "cacerts")]);
}

#[tokio::test]
async fn api_watch_without_resource_version_starts_with_synthetic_added_events() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.create("secrets", "istio-system", json!({"metadata": {"name": "a"}}));
    server.create("secrets", "istio-system", json!({"metadata": {"name": "b"}}));
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut stream = secrets.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    for want in ["a", "b"] {
        match stream.try_next().await.unwrap().expect("event") {
            WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some(want)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn api_watch_from_a_compacted_resource_version_gets_410_expired() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let old = server.resource_version().to_string();
    server.create("secrets", "istio-system", json!({"metadata": {"name": "a"}}));
    server.compact();
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut stream = secrets.watch(&WatchParams::default(), &old).await.unwrap().boxed();
    match stream.try_next().await.unwrap().expect("event") {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version: "), "{}", e.message);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn api_watch_with_bookmarks_allowed_receives_bookmarks() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.set_bookmark_interval(Duration::from_millis(50));
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let rv = server.resource_version().to_string();
    let mut stream = secrets.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap().expect("event") {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("unexpected {other:?}"),
    }
}

async fn watcher_sees_lifecycle(config: watcher::Config) -> Vec<String> {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    // No simulated controller: its status write would be one more (timing-dependent) event.
    server.set_auto_rollout(None);
    server.create("deployments", "istio-system", istiod("istiod"));
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut stream = watcher(deployments, config.labels("app=istiod")).boxed();
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::Init => seen.push("Init".to_string()),
            watcher::Event::InitApply(d) => seen.push(format!("InitApply {}", d.metadata.name.unwrap())),
            watcher::Event::InitDone => {
                seen.push("InitDone".into());
                server.create("deployments", "istio-system", istiod("istiod-canary"));
                server.delete("deployments", "istio-system", "istiod");
            }
            watcher::Event::Apply(d) => seen.push(format!("Apply {}", d.metadata.name.unwrap())),
            watcher::Event::Delete(d) => {
                seen.push(format!("Delete {}", d.metadata.name.unwrap()));
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn runtime_watcher_lists_then_sees_apply_and_delete() {
    let seen = watcher_sees_lifecycle(watcher::Config::default()).await;
    assert_eq!(seen, ["Init", "InitApply istiod", "InitDone", "Apply istiod-canary", "Delete istiod"]);
}

#[tokio::test]
async fn runtime_watcher_with_streaming_lists_gets_initial_events_and_the_end_bookmark() {
    let seen = watcher_sees_lifecycle(watcher::Config::default().streaming_lists()).await;
    assert_eq!(seen, ["Init", "InitApply istiod", "InitDone", "Apply istiod-canary", "Delete istiod"]);
}

#[tokio::test]
async fn events_published_through_events_k8s_io_are_stored_as_core_events() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let recorder = Recorder::new(client, Reporter { controller: "cacerts-sync".into(), instance: None });
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: Some("cacerts".into()),
        namespace: Some("istio-system".into()),
        ..Default::default()
    };
    let ev = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("cacerts updated".into()),
        action: "Sync".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = server.list("events", "istio-system");
    assert_eq!(events.len(), 1, "the second publish patches the series");
    let e = &events[0];
    assert_eq!((e["apiVersion"].as_str(), e["message"].as_str()), (Some("v1"), Some("cacerts updated")));
    assert_eq!(e["reportingComponent"], "cacerts-sync");
    assert_eq!(e["involvedObject"]["name"], "cacerts");
    assert_eq!(e["series"]["count"], 2);
    let v1 = server.list("events.events.k8s.io", "istio-system");
    assert_eq!(
        (v1[0]["note"].as_str(), v1[0]["reportingController"].as_str()),
        (Some("cacerts updated"), Some("cacerts-sync"))
    );
}

#[tokio::test]
async fn kube_lease_manager_acquires_releases_and_hands_over_the_lease() {
    use kube_lease_manager::LeaseManagerBuilder;
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let manager = |id: &str| {
        LeaseManagerBuilder::new(client.clone(), "cacerts-sync")
            .with_namespace("istio-system")
            .with_identity(id)
            .with_duration(15)
            .with_field_manager("cacerts-sync")
            .build()
    };
    let a = manager("pod-a").await.unwrap();
    let b = manager("pod-b").await.unwrap();
    assert!(a.changed().await.unwrap(), "pod-a becomes leader");
    let lease = server.get("leases", "istio-system", "cacerts-sync").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
    a.release().await.unwrap();
    assert!(server.get("leases", "istio-system", "cacerts-sync").unwrap()["spec"].get("holderIdentity").is_none());
    assert!(b.changed().await.unwrap(), "pod-b takes the released lease");
    let lease = server.get("leases", "istio-system", "cacerts-sync").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 2, "one per acquisition");
}

#[tokio::test]
async fn events_are_validated_like_the_apiserver_does() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: Some("cacerts".into()),
        namespace: Some("istio-system".into()),
        ..Default::default()
    };
    // A note longer than 1024 bytes is rejected (events.k8s.io validates `note` as the core `message`).
    let recorder = Recorder::new(client.clone(), Reporter { controller: "cacerts-sync".into(), instance: None });
    let long = Event {
        type_: EventType::Warning,
        reason: "SyncFailed".into(),
        note: Some("x".repeat(1025)),
        action: "Sync".into(),
        secondary: None,
    };
    let e = api_error(recorder.publish(&long, &reference).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.starts_with("Event.events.k8s.io "), "{}", e.message);
    assert!(
        e.message.ends_with("is invalid: message: Invalid value: \"\": can have at most 1024 characters"),
        "{}",
        e.message
    );

    // A core/v1 Event with eventTime must name its reporting component and instance, action and reason.
    let events: Api<CoreEvent> = Api::namespaced(client, "istio-system");
    let ev: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "cacerts.1"},
        "involvedObject": {"kind": "Secret", "name": "cacerts", "namespace": "istio-system"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "Synced", "message": "cacerts updated", "type": "Normal", "action": "Sync",
        "reportingComponent": "cacerts-sync"
    }))
    .unwrap();
    let e = api_error(events.create(&PostParams::default(), &ev).await.unwrap_err());
    assert_eq!(e.message, "Event \"cacerts.1\" is invalid: reportingInstance: Required value");
    let mut ev = ev;
    ev.reporting_instance = Some("pod-a".into());
    events.create(&PostParams::default(), &ev).await.unwrap();
}

/// `metadata.generation` of a Deployment as kube-api-facts.md records it (measured on v1.32): +1 on every
/// change to `spec` (scale, pod template), none for metadata-only changes, status writes or no-op patches.
/// (Upstream's `deploymentStrategy.PrepareForUpdate` also bumps on `metadata.annotations` changes; that
/// disagreement is reported to the lead rather than silently changed here, since every rollout assertion of
/// the suite rests on this rule.)
#[tokio::test]
async fn deployment_generation_moves_by_one_per_spec_change_and_never_otherwise() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.set_auto_rollout(None);
    server.create("deployments", "istio-system", istiod("istiod"));
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    let generation = async || deployments.get("istiod").await.unwrap().metadata.generation.unwrap();
    let merge = async |v: Value| {
        deployments.patch("istiod", &PatchParams::default(), &Patch::Merge(v)).await.unwrap();
    };
    assert_eq!(generation().await, 1);
    merge(json!({"spec": {"replicas": 3}})).await;
    assert_eq!(generation().await, 2, "scale");
    merge(json!({"spec": {"template": {"metadata": {"annotations": {"a": "1"}}}}})).await;
    assert_eq!(generation().await, 3, "pod-template annotation");
    merge(json!({"spec": {"template": {"metadata": {"annotations": {"a": "1"}}}}})).await;
    assert_eq!(generation().await, 3, "the same value again changes nothing");
    merge(json!({"metadata": {"labels": {"l": "x"}, "annotations": {"cacerts-sync.io/root-fingerprint": "none"}}}))
        .await;
    assert_eq!(generation().await, 3, "metadata only");
    server.set_deployment_status("istio-system", "istiod", json!({"observedGeneration": 3}));
    assert_eq!(generation().await, 3, "status");
}

#[tokio::test]
async fn a_simulated_istiod_publishes_cacerts_roots_after_a_rollout_and_its_own_ca_without_cacerts() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.simulate_istiod_roots(true);
    server.set_auto_rollout(Some(Duration::from_millis(50)));
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(admin_client(&server).await, "istio-system");
    let published = async || {
        configmaps.get_opt("istio-ca-root-cert").await.unwrap().and_then(|c| c.data?.get("root-cert.pem").cloned())
    };
    server.create("deployments", "istio-system", istiod("istiod"));
    let mut self_signed = None;
    for _ in 0..100 {
        self_signed = published().await;
        if self_signed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let self_signed = self_signed.expect("istiod without cacerts publishes its self-signed root");
    assert!(self_signed.contains("BEGIN CERTIFICATE"));

    let root = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    server.create(
        "secrets",
        "istio-system",
        json!({"metadata": {"name": "cacerts"}, "stringData": {"root-cert.pem": root}}),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(published().await, Some(self_signed), "running pods never notice a new cacerts");
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    deployments.restart("istiod").await.unwrap();
    let mut now = None;
    for _ in 0..100 {
        now = published().await;
        if now.as_deref() == Some(root) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(now.as_deref(), Some(root), "restarted pods publish cacerts' root-cert.pem");
}
