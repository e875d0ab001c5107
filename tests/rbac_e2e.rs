//! The RBAC we ship is enough, and no more than enough: the real binary runs with a token that the
//! Kubernetes test server limits to exactly the rules of the shipped Role (`jobs/role.yaml`, and the Helm
//! chart's Role rendered by real Helm for watch mode), the way the API server's RBAC authorizer would.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cacerts_testkit::kube::Rule;
use common::{Env, NS};
use k8s_openapi::api::rbac::v1::Role;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules_of(role: &Role) -> Vec<Rule> {
    role.rules
        .iter()
        .flatten()
        .flat_map(|r| {
            let verbs: Vec<&str> = r.verbs.iter().map(String::as_str).collect();
            let resources: Vec<&str> = r.resources.iter().flatten().map(String::as_str).collect();
            let names: Vec<&str> = r.resource_names.iter().flatten().map(String::as_str).collect();
            r.api_groups.iter().flatten().map(move |group| {
                let rule = Rule::new(&verbs, group, &resources);
                if names.is_empty() { rule } else { rule.names(&names) }
            })
        })
        .collect()
}

fn role_from_yaml(text: &str) -> Role {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).expect("YAML");
    let role = docs.into_iter().find(|d| d["kind"] == "Role").expect("a Role in the stream");
    serde_json::from_value(role).expect("a valid Role")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_manifests_role_is_enough_for_sync_and_the_istiod_restart() {
    let env = Env::start().await;
    env.istiod("istiod", "default");
    let role = role_from_yaml(&std::fs::read_to_string(repo().join("jobs/role.yaml")).unwrap());
    let kubeconfig = env.limited_kubeconfig("jobs-role", rules_of(&role));
    let a = env.pki.root_a();
    let run_sync = || env.sync_as(&kubeconfig, &[]);

    env.upload(&env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a)));
    let created = run_sync().await;
    assert_eq!(created.code, 0, "create + restart with the shipped Role: {}", created.stderr);
    assert!(!created.stderr.contains("failed to publish"), "events are allowed too: {}", created.stderr);
    assert_eq!(env.generation("istiod"), 2);

    // --wait reads istio-ca-root-cert until istiod serves the new roots.
    env.kube.simulate_istiod_roots(true);
    let b = env.pki.root_b();
    env.upload(&env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a)));
    let updated = env.sync_as(&kubeconfig, &["--wait", "--wait-timeout", "30s"]).await;
    assert_eq!(updated.code, 0, "update + restart + wait with the shipped Role: {}", updated.stderr);
    assert!(updated.stderr.contains("istiod serves the new roots"), "{}", updated.stderr);
    assert_eq!(env.generation("istiod"), 3);

    // First contact reads istio-ca-root-cert too (check-root is covered by the same rules).
    let mut d = env.deployment("istiod");
    d["metadata"]["annotations"].as_object_mut().unwrap().remove("cacerts-sync.io/root-fingerprint");
    env.kube.update("deployments", NS, d);
    let first = run_sync().await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stderr.contains("istiod serves the roots in cacerts"), "{}", first.stderr);
    assert_eq!(env.generation("istiod"), 3);
    let refused: Vec<_> = env.kube.requests().into_iter().filter(|r| r.status == 403).map(|r| r.path).collect();
    assert!(refused.is_empty(), "requests refused by the shipped Role: {refused:?}");

    // The Role is scoped to cacerts by name: another Secret in the namespace is out of reach.
    let other = env.sync_as(&kubeconfig, &["--secret", "other"]).await;
    assert_eq!(other.code, 4, "{}", other.stderr);

    // `status` reads cacerts, istiod and istio-ca-root-cert (by name) with the same Role.
    // istiod serves cacerts' roots: written as istiod writes it (create, or update when the simulated istiod of
    // the --wait step above already published it), like `kubectl apply`.
    env.kube.set_istio_ca_root_cert(common::NS, &env.secret_value("root-cert.pem"));
    let mut cmd = env.command("workload-identity", &["status", "-o", "json"]);
    cmd.env("KUBECONFIG", &kubeconfig);
    let status = env.output(cmd).await;
    assert_eq!(status.code, 0, "status with the shipped Role: {}", status.all());
    assert!(status.stdout.contains("\"matches_cacerts\": true"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_watch_mode_role_is_enough_for_watch_with_leader_election() {
    let env = Env::start().await;
    env.istiod("istiod", "default");
    let values = repo().join("tests/chart/values/watch-ha.yaml");
    let out = Command::new("python3")
        .args(["tests/chart/render.py", "-f"])
        .arg(&values)
        .current_dir(repo())
        .output()
        .expect("python3 tests/chart/render.py runs (pip install -r tests/chart/requirements.txt)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let role = role_from_yaml(&rendered);
    let deployment = serde_saphyr::from_multiple::<serde_json::Value>(&rendered)
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("watch mode renders a Deployment");
    let lease_name = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--lease-name="))
        .next()
        .expect("--lease-name in the rendered args")
        .to_string();
    let kubeconfig = env.limited_kubeconfig("chart-watch-role", rules_of(&role));
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);

    let port = free_port();
    let mut cmd = env.command(
        "workload-identity",
        &[
            "watch",
            "--vault-url",
            &env.kv.vault_url(),
            "--disable-challenge-resource-verification",
            "--interval",
            "1s",
            "--jitter",
            "0s",
            "--leader-election",
            "--lease-name",
            &lease_name,
            "--identity",
            "cacerts-sync-0",
            "--admin-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    cmd.env("KUBECONFIG", &kubeconfig).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.secret().is_none() || env.kube.get("leases", NS, &lease_name).is_none() {
        if tokio::time::Instant::now() > deadline {
            let _ = child.start_kill();
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "watch did not take the Lease and sync with the chart's Role: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.assert_secret_holds(&ca);
    assert_eq!(env.generation("istiod"), 2, "the created cacerts restarted istiod");
    // No request the Role does not allow was ever refused.
    let refused: Vec<_> = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let _ = child.start_kill();
    let out = child.wait_with_output().await.unwrap();
    env.assert_no_key_bytes(&String::from_utf8_lossy(&out.stderr));
    assert!(refused.is_empty(), "requests refused by the chart's Role: {refused:?}");
}

/// The chart's Role rendered by real Helm from `files` (merged in order).
fn chart_role(files: &[&std::path::Path]) -> Role {
    let mut cmd = Command::new("python3");
    cmd.arg("tests/chart/render.py").current_dir(repo());
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd.output().expect("python3 tests/chart/render.py runs (pip install -r tests/chart/requirements.txt)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    role_from_yaml(&String::from_utf8(out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_named_istiod_deployments_the_charts_role_patches_only_those() {
    let env = Env::start().await;
    env.istiod("istiod-1-22", "1-22");
    env.istiod("not-istiod", "other");
    let values = env.path("named.yaml");
    std::fs::write(&values, "istiodDeployments: [istiod-1-22]\n").unwrap();
    let base = repo().join("tests/chart/values/cron-aks-workload-identity.yaml");
    let kubeconfig = env.limited_kubeconfig("chart-named-role", rules_of(&chart_role(&[&base, &values])));
    let (a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);

    let run = env.sync_as(&kubeconfig, &["--istiod-deployment", "istiod-1-22"]).await;
    assert_eq!(run.code, 0, "create (a PATCH-free first write) + restart by name: {}", run.stderr);
    assert_eq!(env.generation("istiod-1-22"), 2, "the named Deployment was restarted");
    assert_eq!(env.generation("not-istiod"), 1);
    // Adding a root (the runbook's first step, never refused by the time gates) keeps the live intermediate.
    let b = env.pki.root_b();
    env.upload(&env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a)));
    let run = env.sync_as(&kubeconfig, &["--istiod-deployment", "istiod-1-22"]).await;
    assert_eq!(run.code, 0, "the Secret is patched without `update`: {}", run.stderr);
    assert_eq!(env.generation("istiod-1-22"), 3);
    let refused: Vec<_> = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(refused.is_empty(), "requests refused by the chart's Role: {refused:?}");

    // The Role grants nothing on other Deployments: asking for one by name is refused (exit 4), not patched.
    let c = env.pki.root("Root C");
    env.upload(&env.pki.plugin_ca(&[&a, &b, &c], &env.pki.default_intermediate(&a)));
    let run = env.sync_as(&kubeconfig, &["--istiod-deployment", "not-istiod"]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(env.generation("not-istiod"), 1, "never patched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_mode_with_named_istiod_deployments_lists_and_watches_them_by_name_only() {
    let env = Env::start().await;
    env.istiod("istiod-1-22", "1-22");
    env.istiod("not-istiod", "other");
    let values = env.path("named-watch.yaml");
    std::fs::write(&values, "restart: true\nistiodDeployments: [istiod-1-22]\n").unwrap();
    let role = chart_role(&[&repo().join("tests/chart/values/watch-single.yaml"), &values]);
    for rule in role.rules.iter().flatten().filter(|r| r.resources.iter().flatten().any(|x| x == "deployments")) {
        assert_eq!(rule.resource_names.as_deref(), Some(&["istiod-1-22".to_string()][..]), "by name: {rule:?}");
    }
    let kubeconfig = env.limited_kubeconfig("chart-named-watch-role", rules_of(&role));
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);

    let mut watch =
        daemon::watch(&env, "named", Some(&kubeconfig), &["--interval", "1h", "--istiod-deployment", "istiod-1-22"]);
    // Ready means every watch cache synced: the Deployment's list and watch went through the Role.
    let ready =
        daemon::wait_until(Duration::from_secs(30), async || watch.ready().await && env.generation("istiod-1-22") == 2)
            .await;
    assert!(ready, "watch did not get ready and restart the named Deployment: {}", watch.logs());
    assert_eq!(env.generation("not-istiod"), 1, "never patched");
    let requests = env.kube.requests();
    let watched = requests.iter().any(|r| {
        r.is_watch && r.path.ends_with("/deployments") && r.query.contains("fieldSelector=metadata.name%3Distiod-1-22")
    });
    assert!(watched, "the Deployment is watched with a field selector on its name");
    let refused: Vec<_> =
        requests.iter().filter(|r| r.status == 403).map(|r| format!("{} {}?{}", r.method, r.path, r.query)).collect();
    watch.signal("TERM");
    watch.wait_exit(Duration::from_secs(10)).await;
    env.assert_no_key_bytes(&watch.logs());
    assert!(refused.is_empty(), "requests refused by the chart's Role: {refused:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
