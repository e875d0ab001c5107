//! No alert or dashboard panel may reference a metric that doesn't exist: every `cacerts_sync_*` name used by
//! the chart's PrometheusRule and the Grafana dashboard must be a sample name on the real binary's `/metrics`
//! in watch mode, after a first pass against the Key Vault emulator and the Kubernetes test server that
//! created `cacerts` and restarted istiod (so label families like `istiod_restarts_total` have a series).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Env;

const RULES: &str = "helm/cacerts-sync/templates/prometheusrule.yaml";
const DASHBOARD: &str = "helm/cacerts-sync/dashboards/cacerts-sync.json";

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Every `cacerts_sync_…` name in the rules template (expressions and annotations alike), or in the dashboard's
/// queries (its panel descriptions may name a histogram without its `_bucket` suffix).
fn names_in(path: &str) -> BTreeSet<String> {
    if path.ends_with(".json") {
        let dashboard: serde_json::Value = serde_json::from_str(&read(path)).unwrap();
        let mut exprs = Vec::new();
        collect_exprs(&dashboard, &mut exprs);
        assert!(!exprs.is_empty(), "no queries in {path}");
        return exprs.iter().flat_map(|e| tokens(e)).collect();
    }
    tokens(&read(path))
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

fn tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cacerts_sync_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The sample names of an OpenMetrics exposition (`name{labels} value` / `name value` lines).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn the_names_are_read_from_both_files() {
    let rules = names_in(RULES);
    assert!(rules.contains("cacerts_sync_certificate_expiry_timestamp_seconds"), "{rules:?}");
    let dashboard = names_in(DASHBOARD);
    assert!(dashboard.contains("cacerts_sync_keyvault_request_duration_seconds_bucket"), "{dashboard:?}");
    let sample = sample_names("# TYPE x counter\nx_total{a=\"b\"} 1\ny 0\n");
    assert_eq!(sample, BTreeSet::from(["x_total".to_string(), "y".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported_in_watch_mode() {
    let env = Env::start().await;
    // istiod publishes the roots it loaded in `istio-ca-root-cert`; without it the serving gauge is rightly
    // absent (unknown), so the world here has the test server stand in for istiod's new pods.
    env.kube.simulate_istiod_roots(true);
    env.istiod("istiod", "default");
    let a = env.pki.root_a();
    let ca = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = format!("127.0.0.1:{port}");
    let url = env.kv.vault_url();
    let log = env.path("watch.log");
    let args = ["watch", "--vault-url", &url, "--disable-challenge-resource-verification", "--jitter", "0s"];
    let mut cmd = env.command("workload-identity", &args);
    cmd.args(["--interval", "1s", "--admin-addr", &admin])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let _child = cmd.spawn().expect("spawn cacerts-sync watch");

    // Ready once the first pass succeeded. Some series appear only after it: the serving gauge once the restarted
    // istiod published its roots and the watch saw the ConfigMap. So scrape until every name used is exported or
    // the (generous, bounded) deadline passes; a name never exported still fails below.
    let used: Vec<(&str, BTreeSet<String>)> = vec![(RULES, names_in(RULES)), (DASHBOARD, names_in(DASHBOARD))];
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    let (exposition, missing) = loop {
        ready = ready || http.get(format!("http://{admin}/readyz")).send().await.is_ok_and(|r| r.status() == 200);
        if ready {
            let exposition = http.get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
            let exported = sample_names(&exposition);
            let missing: Vec<String> = used
                .iter()
                .flat_map(|(file, names)| {
                    names.iter().filter(|n| !exported.contains(*n)).map(move |n| format!("{n} (used in {file})"))
                })
                .collect();
            if missing.is_empty() || tokio::time::Instant::now() >= deadline {
                break (exposition, missing);
            }
        }
        assert!(
            ready || tokio::time::Instant::now() < deadline,
            "watch never became ready:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    env.assert_no_key_bytes(&exposition);
    let exported = sample_names(&exposition);
    assert!(exported.contains("cacerts_sync_istiod_restarts_total"), "the first pass restarted istiod:\n{exposition}");
    assert!(
        missing.is_empty(),
        "metrics used but not exported:\n  {}\n\n/metrics:\n{exposition}",
        missing.join("\n  ")
    );
}
