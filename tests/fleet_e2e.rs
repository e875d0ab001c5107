//! Many clusters, one vault: per-cluster secret names, `fleet status` and `fleet check`, end to end with the
//! real binary against one Key Vault emulator and several Kubernetes test servers (see tests/fleet_common).

mod common;
mod fleet_common;

use std::time::Duration;

use base64::Engine as _;
use fleet_common::{Fleet, NS};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_syncs_its_own_intermediate_and_the_shared_root_from_one_vault() {
    let fleet = Fleet::start(&["eastus", "westeu", "centralus"]).await;
    let root = fleet.pki.root_a();
    fleet.upload_roots(&[&root]);
    let mut intermediates = Vec::new();
    for c in &fleet.clusters {
        let i = fleet.intermediate(&c.name, &root);
        fleet.upload_intermediate(&c.name, &i);
        intermediates.push(i);
    }
    for (c, i) in fleet.clusters.iter().zip(&intermediates) {
        let run = fleet.sync(&c.name, &[]).await;
        assert_eq!(run.code, 0, "{}: {}", c.name, run.stderr);
        assert_eq!(fleet.secret_value(&c.name, "ca-cert.pem"), i.cert_pem, "{} got its own intermediate", c.name);
        assert_eq!(fleet.secret_value(&c.name, "cert-chain.pem"), i.cert_chain);
        assert_eq!(fleet.secret_value(&c.name, "root-cert.pem"), root.cert_pem, "the root bundle is shared");
    }
    // Every cluster read only its own intermediate's names and the shared root.
    for c in &fleet.clusters {
        assert!(fleet.kv.request_count("GET", &format!("/secrets/ca-key-{}", c.name)) >= 1);
    }
    assert_eq!(fleet.kv.request_count("GET", "/secrets/ca-cert/"), 0, "the unsubstituted name is never read");
    assert_eq!(fleet.kv.request_count("GET", "/secrets/ca-cert?"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_template_without_a_cluster_name_exits_2_before_any_request() {
    let fleet = Fleet::start(&["eastus"]).await;
    let url = fleet.kv.vault_url();
    let args = [
        "sync",
        "--vault-url",
        url.as_str(),
        "--disable-challenge-resource-verification",
        "--ca-cert-name",
        "ca-cert-{cluster}",
    ];
    let run = fleet.output(fleet.command(fleet.cluster("eastus").kube.kubeconfig_path(), &args)).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--ca-cert-name") && run.stderr.contains("--cluster-name"), "{}", run.stderr);
    // The same settings as env vars (a flag would win over its env var).
    let mut cmd = fleet.command(fleet.cluster("eastus").kube.kubeconfig_path(), &args[..4]);
    cmd.env("CACERTS_SYNC_CLUSTER_NAME", "eastus").env("CACERTS_SYNC_CA_CERT_NAME", "ca-cert-{region}");
    let unknown = fleet.output(cmd).await;
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("{region}"), "{}", unknown.stderr);
    assert_eq!(fleet.kv.requests().len(), 0, "nothing was fetched");
    assert!(fleet.cluster("eastus").kube.get("secrets", NS, "cacerts").is_none());
}

/// The clusters of the rotation test, as one `--context` value.
const ALL: &str = "east,west,lag";

fn names(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

fn blocks_of<'a>(check: &'a Value, cluster: &str) -> Vec<&'a Value> {
    check["blocks"].as_array().unwrap().iter().filter(|b| b["cluster"] == cluster).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rotation_waits_for_a_lagging_cluster_at_every_step_until_it_catches_up() {
    let fleet = Fleet::start(&["east", "west", "lag"]).await;
    let (a, b) = (fleet.pki.root_a(), fleet.pki.root_b());
    let clusters = ["east", "west", "lag"];
    let under_a: Vec<_> = clusters.iter().map(|c| fleet.intermediate(c, &a)).collect();
    let under_b: Vec<_> = clusters.iter().map(|c| fleet.intermediate(c, &b)).collect();
    let vault = fleet.kv.vault_url();
    let vault_check = ["--vault-url", vault.as_str(), "--disable-challenge-resource-verification"];
    let with_names = |tp: &'static str| {
        let mut v: Vec<&str> = vault_check.to_vec();
        v.extend_from_slice(&fleet_common::NAME_FLAGS);
        v.extend(["--trust-propagation", tp]);
        v
    };

    // A everywhere, per-cluster intermediates.
    fleet.upload_roots(&[&a]);
    for (c, i) in clusters.iter().zip(&under_a) {
        fleet.upload_intermediate(c, i);
        fleet.synced(c, &[]).await;
    }
    let (run, st) = fleet.fleet_json("status", ALL, &["--trust-propagation", "1h"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["fleet"]["consistent"], true);
    assert_eq!(st["fleet"]["next_step"]["step"], "add-root");
    for row in st["clusters"].as_array().unwrap() {
        assert_eq!(row["assessment"]["phase"], "steady", "{row}");
        assert_eq!(row["assessment"]["served_roots"]["matches_cacerts"], true);
    }
    let generations: Vec<_> = clusters.iter().map(|c| fleet.generations(c)).collect();

    // A + B in the vault; `lag`'s sync is stopped.
    fleet.upload_roots(&[&a, &b]);
    let (run, check) = fleet.fleet_json("check", ALL, &with_names("1h")).await;
    assert_eq!(run.code, 0, "adding a root is safe everywhere: {}", run.all());
    assert_eq!(check["safe"], true);
    fleet.synced("east", &[]).await;
    fleet.synced("west", &[]).await;
    let (run, st) = fleet.fleet_json("status", ALL, &["--trust-propagation", "1h"]).await;
    assert_eq!(run.code, 3, "bundles disagree: {}", run.all());
    assert_eq!(st["fleet"]["roots_agree"], false);
    assert_eq!(st["fleet"]["broken_pairs"], json!([]), "every live intermediate is still under A");
    assert_eq!(st["fleet"]["next_step"]["step"], "sync-root-bundle");
    assert_eq!(names(&st["fleet"]["next_step"]["waiting_for"]), vec!["lag"]);
    let text = fleet.fleet(&["status", "--context", ALL, "--trust-propagation", "1h"]).await;
    assert_eq!(text.code, 3);
    assert!(
        text.stdout.contains("root bundles agree: NO") && text.stdout.contains("waiting for lag"),
        "{}",
        text.stdout
    );

    assert_eq!(
        fleet.generations("east"),
        vec![generations[0][0] + 1, generations[0][1] + 1],
        "A + B rolls istiod once"
    );
    // The next step (intermediates under B) is refused while `lag` lacks B, whatever the time. (Recorded times
    // round up to the next whole second, so a sleep of two seconds passes a 1 s --trust-propagation.)
    let next = fleet.write_material(
        "under-b",
        &clusters.iter().zip(&under_b).map(|(c, i)| (*c, fleet.plugin_ca(&[&a, &b], i))).collect::<Vec<_>>(),
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (run, check) = fleet.fleet_json("check", ALL, &["--source", &next, "--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 3, "{}", run.all());
    let lag_blocks = blocks_of(&check, "lag");
    assert!(!lag_blocks.is_empty(), "{check}");
    for block in &lag_blocks {
        assert_eq!(block["rule"], "root-not-propagated");
        assert_eq!(block["after_step"], "add-root");
    }
    assert!(blocks_of(&check, "east").is_empty() && blocks_of(&check, "west").is_empty(), "{check}");
    let text = fleet.fleet(&["check", "--context", ALL, "--source", &next, "--trust-propagation", "1s"]).await;
    assert!(text.stdout.contains("blocked: cluster lag (material for east)"), "{}", text.stdout);
    assert!(text.stdout.contains("another step must come first"), "{}", text.stdout);

    // `lag` catches up: the bundles agree, and the switch waits only for trust propagation.
    fleet.synced("lag", &[]).await;
    let (run, st) = fleet.fleet_json("status", ALL, &["--trust-propagation", "1h"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let step = &st["fleet"]["next_step"];
    assert_eq!(step["step"], "switch-intermediate");
    assert_eq!(step["safe_now"], false);
    assert!(step["earliest"].is_string());
    let (run, check) = fleet.fleet_json("check", ALL, &["--source", &next, "--trust-propagation", "1h"]).await;
    assert_eq!(run.code, 3, "B entered lag's cacerts just now: {}", run.all());
    assert!(blocks_of(&check, "lag").iter().all(|b| b["safe_after"].is_string() && b["after_step"].is_null()));
    assert!(check["safe_after"].is_string());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (run, check) = fleet.fleet_json("check", ALL, &["--source", &next, "--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 0, "safe once B is trusted everywhere: {check}");

    // Intermediates under B everywhere: the roots don't change, so no istiod rolls.
    for (c, i) in clusters.iter().zip(&under_b) {
        fleet.upload_intermediate(c, i);
        fleet.synced(c, &["--trust-propagation", "1s"]).await;
    }
    let after: Vec<_> = clusters.iter().map(|c| fleet.generations(c)).collect();
    let expected: Vec<Vec<i64>> = generations.iter().map(|g| g.iter().map(|x| x + 1).collect()).collect();
    assert_eq!(after, expected, "the A + B bundle rolled every revision once; the intermediate switch rolled nothing");
    let (run, st) = fleet.fleet_json("status", ALL, &["--trust-propagation", "1h"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["fleet"]["next_step"]["step"], "drop-root");
    assert_eq!(st["fleet"]["next_step"]["safe_now"], false, "A-intermediate certificates may still be valid");

    // Dropping A: refused while certificates from the A intermediates may be valid, safe after.
    fleet.upload_roots(&[&b]);
    let (run, check) = fleet.fleet_json("check", ALL, &with_names("1h")).await;
    assert_eq!(run.code, 3, "{}", run.all());
    for c in clusters {
        let bl = blocks_of(&check, c);
        assert!(bl.iter().any(|b| b["rule"] == "root-still-anchoring" && b["safe_after"].is_string()), "{c}: {check}");
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (run, _) = fleet.fleet_json("check", ALL, &with_names("1s")).await;
    assert_eq!(run.code, 0, "{}", run.all());
    fleet.synced("east", &["--trust-propagation", "1s"]).await;
    fleet.synced("west", &["--trust-propagation", "1s"]).await;
    // `lag` lags again: it still trusts A, nobody signs under A any more, so mTLS works but bundles differ.
    let (run, st) = fleet.fleet_json("status", ALL, &["--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 3, "{}", run.all());
    assert_eq!(st["fleet"]["broken_pairs"], json!([]));
    assert_eq!(names(&st["fleet"]["next_step"]["waiting_for"]), vec!["lag"]);
    fleet.synced("lag", &["--trust-propagation", "1s"]).await;
    let (run, st) = fleet.fleet_json("status", ALL, &["--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["fleet"]["consistent"], true);
    for row in st["clusters"].as_array().unwrap() {
        assert_eq!(row["assessment"]["roots"].as_array().unwrap().len(), 1);
        assert_eq!(row["assessment"]["phase"], "steady");
    }
    for c in clusters {
        assert_eq!(fleet.secret_value(c, "root-cert.pem"), b.cert_pem, "{c} ends under B alone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_refused_and_invalid_clusters_are_rows_with_their_error_and_set_the_exit_code() {
    let fleet = Fleet::start(&["good", "broken"]).await;
    let a = fleet.pki.root_a();
    fleet.upload_roots(&[&a]);
    let good = fleet.intermediate("good", &a);
    fleet.upload_intermediate("good", &good);
    fleet.synced("good", &[]).await;
    // Someone hand-wrote `broken`'s cacerts with an intermediate from another root.
    let stray = fleet.intermediate("broken", &fleet.pki.root_b());
    let bad = fleet.plugin_ca(&[&a], &stray);
    let data: serde_json::Map<String, Value> = bad
        .secret_files()
        .iter()
        .map(|(k, v)| (k.to_string(), base64::engine::general_purpose::STANDARD.encode(v).into()))
        .collect();
    fleet.cluster("broken").kube.create(
        "secrets",
        NS,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS}, "data": data}),
    );
    fleet.add_context(fleet.unreachable_context("down"));
    let mut denied = fleet.unreachable_context("denied");
    denied.server = fleet.cluster("good").kube.url();
    denied.token = "not-a-valid-token".into();
    fleet.add_context(denied);

    let (run, st) = fleet.fleet_json("status", "good,down,denied", &[]).await;
    assert_eq!(run.code, 1, "unreachable, nothing known to be wrong: {}", run.all());
    let rows = st["clusters"].as_array().unwrap();
    assert_eq!(rows[0]["name"], "good");
    assert_eq!(rows[0]["assessment"]["healthy"], true, "the reachable cluster is still reported");
    assert_eq!(rows[1]["error"]["class"], "transient", "{}", rows[1]);
    assert_eq!(rows[2]["error"]["class"], "auth", "{}", rows[2]);
    assert!(rows[2]["error"]["message"].as_str().unwrap().contains("401"), "{}", rows[2]);
    assert_eq!(names(&st["fleet"]["unreachable"]), vec!["down", "denied"]);

    let (run, st) = fleet.fleet_json("status", "good,broken,down", &[]).await;
    assert_eq!(run.code, 3, "an invalid cluster wins over an unreachable one: {}", run.all());
    assert_eq!(names(&st["fleet"]["invalid"]), vec!["broken"]);
    let text = fleet.fleet(&["status", "--context", "good,broken,down,denied"]).await;
    assert_eq!(text.code, 3);
    assert!(
        text.stdout.contains("UNREADABLE (auth)") && text.stdout.contains("UNREADABLE (transient)"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("broken: problem:"), "{}", text.stdout);

    // `fleet check` can't call an upload safe for a cluster it could not read.
    let vault = fleet.kv.vault_url();
    let mut args =
        vec!["check", "--context", "good,down", "--vault-url", &vault, "--disable-challenge-resource-verification"];
    args.extend_from_slice(&fleet_common::NAME_FLAGS);
    let run = fleet.fleet(&args).await;
    assert_eq!(run.code, 2, "no material is stored for `down`: a usage error: {}", run.all());
    assert!(run.stdout.contains("-down\" was not found in vault"), "{}", run.stdout);
    let shared = fleet.write_material("shared", &[("all", fleet.plugin_ca(&[&a], &good))]).replace("{cluster}", "all");
    let run = fleet.fleet(&["check", "--context", "good,down", "--source", &shared]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("cluster down (istio-system)") && run.stdout.contains("unreadable"), "{}", run.stdout);
    assert!(run.stdout.contains("result: unknown"), "{}", run.stdout);

    // A context the kubeconfig doesn't have is a usage error before any request.
    let run = fleet.fleet(&["status", "--context", "good,nope"]).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("context \"nope\" is not in the kubeconfig"), "{}", run.stderr);
}
