//! Every manifest we ship — each object the Helm chart renders for each `tests/chart/values/*.yaml`, and
//! every file in `jobs/` — parses as its k8s-openapi type with no unknown or misspelled field.
//!
//! k8s-openapi's `Deserialize` impls silently skip unknown fields, so parsing alone would accept
//! `imagePullPolcy`. Each YAML document is therefore read with serde-saphyr into a `serde_json::Value`,
//! converted into the typed object, serialized back, and compared with the original: any field the type does
//! not know is missing from the round trip and fails the test with its path.
//!
//! The chart is rendered by real Helm through `tests/chart/render.py` (helm-python-sdk); install it with
//! `pip install -r tests/chart/requirements.txt`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cacerts_sync::cli::Cli;
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One YAML document with the place it came from, for error messages.
struct Doc {
    origin: String,
    value: Value,
}

fn parse_stream(text: &str, origin: &str) -> Vec<Doc> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("failed to parse YAML from {origin}: {e}"));
    values.into_iter().filter(|v| !v.is_null()).map(|value| Doc { origin: origin.to_owned(), value }).collect()
}

/// Renders the chart once per test values file with real Helm. The `# Source:` comment before each
/// document names the values file and template.
fn rendered_chart() -> Vec<Doc> {
    let out = Command::new("python3")
        .arg("tests/chart/render.py")
        .arg("--all")
        .current_dir(repo())
        .output()
        .expect("failed to run python3 tests/chart/render.py (is python3 installed?)");
    assert!(
        out.status.success(),
        "failed to render the chart with tests/chart/render.py (pip install -r tests/chart/requirements.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("rendered chart is not UTF-8");
    // Keep each document's `# Source:` line as its origin.
    text.split("\n---\n")
        .flat_map(|chunk| {
            let chunk = chunk.trim_start_matches("---\n");
            let origin =
                chunk.lines().find_map(|l| l.strip_prefix("# Source: ")).unwrap_or("tests/chart/render.py").to_owned();
            parse_stream(chunk, &origin)
        })
        .collect()
}

fn jobs_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("jobs"))
        .expect("failed to read jobs/")
        .map(|e| e.expect("failed to read a jobs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

fn read_docs(path: &Path) -> Vec<Doc> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    let origin = path.strip_prefix(repo()).unwrap_or(path).display().to_string();
    parse_stream(&text, &origin)
}

/// Paths where `original` has something `round_tripped` lacks or holds differently.
fn differences(original: &Value, round_tripped: &Value, path: &str, out: &mut Vec<String>) {
    match (original, round_tripped) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(vb) => differences(va, vb, &p, out),
                    None => out.push(format!("{p}: unknown field (dropped by the typed object)")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: added by the typed object"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                differences(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

/// Deserializes `value` as `T`, serializes it back and requires the same JSON: unknown fields are rejected.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| format!("does not parse: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))?;
    let mut diffs = Vec::new();
    differences(value, &back, "$", &mut diffs);
    if diffs.is_empty() { Ok(()) } else { Err(diffs.join("; ")) }
}

/// Keys of `obj` that are not in `allowed`.
fn unknown_keys(obj: &Value, allowed: &[&str], path: &str) -> Vec<String> {
    obj.as_object()
        .map(|m| {
            m.keys().filter(|k| !allowed.contains(&k.as_str())).map(|k| format!("{path}.{k}: unknown field")).collect()
        })
        .unwrap_or_else(|| vec![format!("{path}: not an object")])
}

/// ServiceMonitor is a CRD with no k8s-openapi type: check the fields we render against the
/// monitoring.coreos.com/v1 schema, and the embedded core types through their own types.
fn check_service_monitor(value: &Value) -> Result<(), String> {
    let mut errs = unknown_keys(value, &["apiVersion", "kind", "metadata", "spec"], "$");
    if let Err(e) = round_trip::<ObjectMeta>(&value["metadata"]) {
        errs.push(format!("$.metadata: {e}"));
    }
    let spec = &value["spec"];
    errs.extend(unknown_keys(
        spec,
        &["selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels", "sampleLimit"],
        "$.spec",
    ));
    if let Err(e) = round_trip::<LabelSelector>(&spec["selector"]) {
        errs.push(format!("$.spec.selector: {e}"));
    }
    if !spec["namespaceSelector"].is_null() {
        errs.extend(unknown_keys(&spec["namespaceSelector"], &["any", "matchNames"], "$.spec.namespaceSelector"));
    }
    match spec["endpoints"].as_array() {
        Some(endpoints) if !endpoints.is_empty() => {
            for (i, ep) in endpoints.iter().enumerate() {
                errs.extend(unknown_keys(
                    ep,
                    &[
                        "port",
                        "targetPort",
                        "path",
                        "scheme",
                        "interval",
                        "scrapeTimeout",
                        "honorLabels",
                        "relabelings",
                        "metricRelabelings",
                    ],
                    &format!("$.spec.endpoints[{i}]"),
                ));
                if !ep["port"].is_string() {
                    errs.push(format!("$.spec.endpoints[{i}].port: must name a Service port"));
                }
            }
        }
        _ => errs.push("$.spec.endpoints: at least one endpoint is required".to_owned()),
    }
    if errs.is_empty() { Ok(()) } else { Err(errs.join("; ")) }
}

/// PrometheusRule is a CRD with no k8s-openapi type: check the fields we render against the
/// monitoring.coreos.com/v1 schema (groups of alerting rules). promtool checks the rules themselves
/// (tests/chart/test_alerts.py).
fn check_prometheus_rule(value: &Value) -> Result<(), String> {
    let mut errs = unknown_keys(value, &["apiVersion", "kind", "metadata", "spec"], "$");
    if let Err(e) = round_trip::<ObjectMeta>(&value["metadata"]) {
        errs.push(format!("$.metadata: {e}"));
    }
    errs.extend(unknown_keys(&value["spec"], &["groups"], "$.spec"));
    match value["spec"]["groups"].as_array() {
        Some(groups) if !groups.is_empty() => {
            for (g, group) in groups.iter().enumerate() {
                let path = format!("$.spec.groups[{g}]");
                errs.extend(unknown_keys(group, &["name", "interval", "rules", "limit"], &path));
                for (r, rule) in group["rules"].as_array().into_iter().flatten().enumerate() {
                    let path = format!("{path}.rules[{r}]");
                    errs.extend(unknown_keys(
                        rule,
                        &["alert", "record", "expr", "for", "labels", "annotations"],
                        &path,
                    ));
                    if !rule["alert"].is_string() || !rule["expr"].is_string() {
                        errs.push(format!("{path}: an alerting rule needs alert and expr strings"));
                    }
                    for map in ["labels", "annotations"] {
                        if !rule[map].as_object().is_some_and(|m| m.values().all(Value::is_string)) {
                            errs.push(format!("{path}.{map}: must map strings to strings"));
                        }
                    }
                }
            }
        }
        _ => errs.push("$.spec.groups: at least one group is required".to_owned()),
    }
    if errs.is_empty() { Ok(()) } else { Err(errs.join("; ")) }
}

/// Checks one document against the type its apiVersion/kind names; returns the kind.
fn check(doc: &Value) -> Result<String, String> {
    let api_version = doc["apiVersion"].as_str().ok_or("no apiVersion")?;
    let kind = doc["kind"].as_str().ok_or("no kind")?;
    match (api_version, kind) {
        ("batch/v1", "CronJob") => round_trip::<CronJob>(doc),
        ("batch/v1", "Job") => round_trip::<Job>(doc),
        ("apps/v1", "Deployment") => round_trip::<Deployment>(doc),
        ("v1", "Service") => round_trip::<Service>(doc),
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(doc),
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(doc),
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(doc),
        ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(doc),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => check_service_monitor(doc),
        ("monitoring.coreos.com/v1", "PrometheusRule") => check_prometheus_rule(doc),
        _ => Err(format!("unexpected object {api_version}/{kind}")),
    }?;
    Ok(kind.to_owned())
}

fn check_all(docs: &[Doc]) -> (BTreeSet<String>, Vec<String>) {
    let mut kinds = BTreeSet::new();
    let mut failures = Vec::new();
    for doc in docs {
        match check(&doc.value) {
            Ok(kind) => {
                kinds.insert(kind);
            }
            Err(e) => failures.push(format!("{}: {e}", doc.origin)),
        }
    }
    (kinds, failures)
}

#[test]
fn every_rendered_chart_manifest_parses_as_its_kubernetes_type_with_no_unknown_field() {
    let docs = rendered_chart();
    let (kinds, failures) = check_all(&docs);
    assert!(failures.is_empty(), "rendered manifests with errors:\n{}", failures.join("\n"));
    // The values files must exercise every kind the chart can render, or this test proves less than it says.
    let expected: BTreeSet<String> = [
        "ConfigMap",
        "CronJob",
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(kinds, expected);
}

#[test]
fn every_jobs_manifest_parses_as_its_kubernetes_type_with_no_unknown_field() {
    let files = jobs_files();
    let docs: Vec<Doc> = files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .flat_map(|p| read_docs(p))
        .collect();
    let (kinds, failures) = check_all(&docs);
    assert!(failures.is_empty(), "jobs/ manifests with errors:\n{}", failures.join("\n"));
    let expected: BTreeSet<String> =
        ["CronJob", "Job", "Role", "RoleBinding", "ServiceAccount"].map(str::to_owned).into();
    assert_eq!(kinds, expected);
}

#[test]
fn jobs_kustomization_lists_existing_files_and_only_known_fields() {
    let path = repo().join("jobs/kustomization.yaml");
    let docs = read_docs(&path);
    let [doc] = docs.as_slice() else { panic!("jobs/kustomization.yaml must hold one document") };
    let k = &doc.value;
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k["kind"], "Kustomization");
    let unknown = unknown_keys(
        k,
        &[
            "apiVersion",
            "kind",
            "namespace",
            "resources",
            "configMapGenerator",
            "generatorOptions",
            "labels",
            "commonLabels",
            "images",
            "patches",
        ],
        "$",
    );
    assert!(unknown.is_empty(), "{unknown:?}");
    let resources: Vec<&str> = k["resources"].as_array().expect("resources").iter().filter_map(Value::as_str).collect();
    assert!(!resources.is_empty());
    for r in &resources {
        assert!(repo().join("jobs").join(r).is_file(), "kustomization resource {r} does not exist");
    }
    // The one-off Job uses generateName, which kustomize cannot handle; it is created with `kubectl create -f`.
    assert!(!resources.contains(&"job.yaml"));
    for generator in k["configMapGenerator"].as_array().expect("configMapGenerator") {
        for env in generator["envs"].as_array().into_iter().flatten() {
            let env = env.as_str().expect("envs entry");
            assert!(repo().join("jobs").join(env).is_file(), "env file {env} does not exist");
        }
    }
}

#[test]
fn jobs_config_env_sets_only_cacerts_sync_flags_and_rust_log() {
    let text = std::fs::read_to_string(repo().join("jobs/config.env")).expect("failed to read jobs/config.env");
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').expect("KEY=VALUE line").0)
        .collect();
    assert!(keys.contains(&"CACERTS_SYNC_VAULT_URL"));
    for key in keys {
        assert!(key == "RUST_LOG" || key.starts_with("CACERTS_SYNC_"), "unexpected variable {key}");
    }
}

#[test]
fn a_misspelled_field_is_rejected_with_its_path() {
    let mut doc = read_docs(&repo().join("jobs/cronjob.yaml")).remove(0).value;
    let container = &mut doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let policy = container.as_object_mut().unwrap().remove("imagePullPolicy").unwrap();
    container["imagePullPolcy"] = policy;
    let err = check(&doc).expect_err("a misspelled field must not pass");
    assert!(err.contains("$.spec.jobTemplate.spec.template.spec.containers[0].imagePullPolcy: unknown field"), "{err}");
}

#[test]
fn a_misspelled_service_monitor_field_is_rejected() {
    let docs = rendered_chart();
    let mut sm = docs
        .into_iter()
        .find(|d| d.value["kind"] == "ServiceMonitor")
        .expect("a values file renders a ServiceMonitor")
        .value;
    sm["spec"]["endpoints"][0]["intervall"] = Value::from("1m");
    let err = check(&sm).expect_err("a misspelled ServiceMonitor field must not pass");
    assert!(err.contains("$.spec.endpoints[0].intervall: unknown field"), "{err}");
}

/// The container args of a CronJob, Job or Deployment.
fn container_args(doc: &Value) -> Option<Vec<String>> {
    let pod = match doc["kind"].as_str()? {
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "Job" | "Deployment" => &doc["spec"]["template"]["spec"],
        _ => return None,
    };
    let args = pod["containers"][0]["args"].as_array()?;
    Some(args.iter().map(|a| a.as_str().expect("args are strings").to_owned()).collect())
}

#[test]
fn every_rendered_command_line_parses_with_the_real_cli() {
    let mut parsed = 0;
    for doc in rendered_chart() {
        let Some(args) = container_args(&doc.value) else {
            continue;
        };
        let argv = std::iter::once("cacerts-sync".to_owned()).chain(args.iter().cloned());
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!("{}: `cacerts-sync {}` does not parse:\n{e}", doc.origin, args.join(" "));
        }
        parsed += 1;
    }
    // One workload per values file.
    assert_eq!(parsed, std::fs::read_dir(repo().join("tests/chart/values")).unwrap().count());
}

#[test]
fn jobs_command_line_and_config_env_parse_with_the_real_cli() {
    // The manifests set flags through CACERTS_SYNC_* variables; the same settings as flags must parse.
    let text = std::fs::read_to_string(repo().join("jobs/config.env")).expect("failed to read jobs/config.env");
    let env_flags: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("CACERTS_SYNC_"))
        .map(|l| {
            let (key, value) = l.split_once('=').expect("KEY=VALUE line");
            let flag = key.trim_start_matches("CACERTS_SYNC_").to_lowercase().replace('_', "-");
            format!("--{flag}={value}")
        })
        .collect();
    for path in [repo().join("jobs/cronjob.yaml"), repo().join("jobs/job.yaml")] {
        let doc = read_docs(&path).remove(0);
        let args = container_args(&doc.value).expect("a workload");
        // CACERTS_SYNC_NAMESPACE comes from the downward API.
        let argv = std::iter::once("cacerts-sync".to_owned())
            .chain(args.iter().cloned())
            .chain(env_flags.iter().cloned())
            .chain(["--namespace=istio-system".to_owned()]);
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!("{}: args {args:?} with config.env {env_flags:?} do not parse:\n{e}", doc.origin);
        }
    }
}

#[test]
fn jobs_config_env_per_cluster_example_resolves_to_this_clusters_secret_names() {
    // The commented per-cluster block of config.env, switched on, must give the names the docs promise.
    let text = std::fs::read_to_string(repo().join("jobs/config.env")).expect("failed to read jobs/config.env");
    let flags: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# CACERTS_SYNC_"))
        .map(|l| {
            let (key, value) = l.split_once('=').expect("KEY=VALUE line");
            format!("--{}={value}", key.to_lowercase().replace('_', "-"))
        })
        .collect();
    assert!(flags.iter().any(|f| f.starts_with("--cluster-name=")), "{flags:?}");
    let argv =
        ["cacerts-sync", "sync", "--vault-url=https://kv.vault.azure.net"].map(String::from).into_iter().chain(flags);
    let cli = Cli::try_parse_from(argv).expect("the per-cluster settings parse");
    let cacerts_sync::cli::Command::Sync(args) = cli.command else { panic!("sync") };
    let config = cacerts_sync::config::SyncConfig::from_args(&args).expect("the per-cluster settings are valid");
    let cacerts_sync::config::SourceSpec::Vault(vault) = config.source else { panic!("a vault source") };
    assert_eq!(vault.names.ca_cert, "ca-cert-eastus");
    assert_eq!(vault.names.ca_key, "ca-key-eastus");
    assert_eq!(vault.names.cert_chain, "cert-chain-eastus");
    assert_eq!(vault.names.root_cert, "root-cert");
}
