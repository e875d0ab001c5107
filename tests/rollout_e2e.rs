//! Rollout safety end to end: exactly one rollout per istiod revision per root change (also when runs race),
//! `--wait` (bounded by `--wait-timeout` alone, waiting for istiod to publish the new roots), first contact
//! decided by what istiod serves (`istio-ca-root-cert`), and `--dry-run` leaving the cluster untouched.
//!
//! Generation deltas count rollouts: the test server bumps `metadata.generation` on `spec` changes only (see
//! `kube_test_server.rs` for the fidelity test of that rule).

mod common;

use std::time::Duration;

use cacerts_testkit::pki::{IntermediateOpts, Validity};
use common::{Env, NS, fingerprint};
use serde_json::Value;

const REVISIONS: [(&str, &str); 2] = [("istiod-asm-1-22", "asm-1-22"), ("istiod-asm-1-23", "asm-1-23")];

fn canary(env: &Env) {
    for (name, rev) in REVISIONS {
        env.istiod(name, rev);
    }
}

fn generations(env: &Env) -> Vec<i64> {
    REVISIONS.iter().map(|(n, _)| env.generation(n)).collect()
}

fn plus(before: &[i64], n: i64) -> Vec<i64> {
    before.iter().map(|g| g + n).collect()
}

/// Every object of the kinds a sync may touch, without the volatile status the simulated controller writes.
fn cluster(env: &Env) -> Vec<Value> {
    let mut all = env.kube.list("secrets", NS);
    all.extend(env.kube.list("deployments", NS));
    all.extend(env.kube.list("configmaps", NS));
    all
}

fn all_events(env: &Env) -> usize {
    env.kube.list("events", NS).len() + env.kube.list("events.events.k8s.io", NS).len()
}

/// The roots istiod publishes in its namespace, if it did.
fn published_roots(env: &Env) -> Option<String> {
    env.kube
        .get("configmaps", NS, "istio-ca-root-cert")
        .and_then(|cm| cm["data"]["root-cert.pem"].as_str().map(str::to_string))
}

async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Waits until the simulated controller reported every revision's current generation rolled out.
async fn rolled_out(env: &Env) {
    let done = || {
        REVISIONS.iter().all(|(n, _)| {
            let d = env.deployment(n);
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
        })
    };
    assert!(wait_until(Duration::from_secs(10), done).await, "rollouts observed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_creating_cacerts_together_roll_each_revision_once() {
    let env = Env::start().await;
    canary(&env);
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let (one, two) = tokio::join!(env.sync(&[]), env.sync(&[]));
    assert_eq!((one.code, two.code), (0, 0), "{}\n{}", one.stderr, two.stderr);
    env.assert_secret_holds(&ca);
    assert_eq!(generations(&env), vec![2, 2], "one rollout each, after cacerts exists");
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(fingerprint(&ca.root_cert).as_str()));
    }
    // A rerun: nothing.
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), vec![2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_of_a_root_change_together_roll_each_revision_once() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    env.synced(&[&a]).await;
    let before = generations(&env);

    let b = env.pki.root_b();
    let ab = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&ab);
    let (one, two) = tokio::join!(env.sync(&[]), env.sync(&[]));
    assert_eq!((one.code, two.code), (0, 0), "{}\n{}", one.stderr, two.stderr);
    env.assert_secret_holds(&ab);
    assert_eq!(generations(&env), plus(&before, 1));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0);
    assert_eq!(generations(&env), plus(&before, 1), "a rerun rolls nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_racing_check_root_rolls_each_revision_once() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    env.synced(&[&a]).await;
    let before = generations(&env);

    let b = env.pki.root_b();
    let ab = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&ab);
    let (sync, check) = tokio::join!(env.sync(&[]), env.run_with("workload-identity", "check-root", &[]));
    assert_eq!((sync.code, check.code), (0, 0), "{}\n{}", sync.stderr, check.stderr);
    assert_eq!(generations(&env), plus(&before, 1));
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0);
    assert_eq!(generations(&env), plus(&before, 1), "a rerun rolls nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_publishes_no_event_and_changes_nothing_where_a_real_run_would_write_and_restart() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    env.synced(&[&a]).await;
    rolled_out(&env).await;
    // First contact too: one revision has no recorded fingerprint, so a real run would record it.
    let mut d = env.deployment(REVISIONS[0].0);
    d["metadata"]["annotations"].as_object_mut().unwrap().remove("cacerts-sync.io/root-fingerprint");
    env.kube.update("deployments", NS, d);
    let b = env.pki.root_b();
    env.upload(&env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a)));

    let state = cluster(&env);
    let events = all_events(&env);
    let run = env.sync(&["--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("root changed: istiod would be restarted"), "{}", run.stdout);
    assert_eq!(all_events(&env), events, "a dry run publishes no Event");
    assert_eq!(cluster(&env), state, "a dry run changes no Secret, Deployment or ConfigMap");

    // Invalid material: the dry run fails as a real run would, still without an Event.
    let expired = env.pki.intermediate(&a, IntermediateOpts { validity: Validity::Expired, ..Default::default() });
    env.upload(&env.pki.plugin_ca(&[&a, &b], &expired));
    let run = env.sync(&["--dry-run"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(all_events(&env), events, "no InvalidMaterial Event either");
    assert_eq!(cluster(&env), state);

    // The same state with a real run: written, restarted and announced.
    env.upload(&env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a)));
    let before = generations(&env);
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), plus(&before, 1));
    assert!(all_events(&env) > events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_restarts_istiod_that_serves_its_self_signed_root() {
    let env = Env::start().await;
    env.kube.simulate_istiod_roots(true);
    canary(&env);
    // istiod started without cacerts: it serves its self-signed root. Both revisions' pods must have started
    // (each publishes what it loaded at start) before cacerts appears, or a late one would load cacerts.
    rolled_out(&env).await;
    assert!(wait_until(Duration::from_secs(10), || published_roots(&env).is_some()).await);
    let (_a, ca) = env.pki.valid_plugin_ca();
    assert_ne!(published_roots(&env).unwrap(), ca.root_cert);
    // Then cacerts appears (created by another tool): istiod ignores it until it restarts (istio/istio#57853).
    env.kube.create(
        "secrets",
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
            "stringData": {"root-cert.pem": ca.root_cert, "ca-cert.pem": ca.ca_cert, "ca-key.pem": ca.ca_key, "cert-chain.pem": ca.cert_chain}}),
    );
    let before = generations(&env);
    let run = env.run_with("workload-identity", "check-root", &["--wait", "--wait-timeout", "30s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("istiod serves other roots than cacerts"), "{}", run.stderr);
    assert_eq!(generations(&env), plus(&before, 1));
    assert_eq!(published_roots(&env).as_deref(), Some(ca.root_cert.as_str()), "--wait saw the new roots served");
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0);
    assert_eq!(generations(&env), plus(&before, 1), "a rerun rolls nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_only_records_when_istiod_serves_the_roots_of_cacerts() {
    let env = Env::start().await;
    env.kube.simulate_istiod_roots(true);
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.kube.create(
        "secrets",
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
            "stringData": {"root-cert.pem": ca.root_cert, "ca-cert.pem": ca.ca_cert, "ca-key.pem": ca.ca_key, "cert-chain.pem": ca.cert_chain}}),
    );
    // istiod starts after cacerts exists: it serves cacerts' roots.
    canary(&env);
    assert!(wait_until(Duration::from_secs(10), || published_roots(&env).as_deref() == Some(&ca.root_cert)).await);
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("istiod serves the roots in cacerts"), "{}", run.stderr);
    assert_eq!(generations(&env), vec![1, 1], "recorded, not restarted");
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(fingerprint(&ca.root_cert).as_str()));
        assert_eq!(env.restarted_at(name), None, "the record is on the Deployment, not its pod template");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_istio_ca_root_cert_first_contact_falls_back_to_the_old_rule_and_says_so() {
    let env = Env::start().await;
    canary(&env);
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.kube.create(
        "secrets",
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
            "stringData": {"root-cert.pem": ca.root_cert, "ca-cert.pem": ca.ca_cert, "ca-key.pem": ca.ca_key, "cert-chain.pem": ca.cert_chain}}),
    );
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("configmap not found"), "{}", run.stderr);
    assert_eq!(generations(&env), vec![1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_every_revision_at_once_past_the_pass_timeout_until_istiod_serves_the_new_roots() {
    let env = Env::start().await;
    env.kube.simulate_istiod_roots(true);
    canary(&env);
    let a = env.pki.root_a();
    env.synced(&[&a]).await;
    rolled_out(&env).await;
    // Rollouts now take longer than the whole pass budget.
    env.kube.set_auto_rollout(Some(Duration::from_secs(4)));
    let b = env.pki.root_b();
    let ab = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&ab);
    let before = generations(&env);
    let run = env.sync(&["--timeout", "2s", "--wait", "--wait-timeout", "60s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), plus(&before, 1));
    // Both rollouts are followed at the same time: each is reported in progress before either finishes.
    let first_done = run.stderr.find("successfully rolled out").expect("rolled out");
    for (name, _) in REVISIONS {
        let waiting = run.stderr.find(&format!("Waiting for deployment \"{name}\"")).expect("waiting line");
        assert!(waiting < first_done, "{}", run.stderr);
    }
    assert!(run.stderr.contains("istiod serves the new roots"), "{}", run.stderr);
    assert_eq!(published_roots(&env).as_deref(), Some(ab.root_cert.as_str()));
    for (name, _) in REVISIONS {
        let loaded = env.events("RootsLoaded");
        assert!(loaded.iter().any(|e| e["regarding"]["name"] == name), "RootsLoaded event on {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_fails_when_istiod_never_publishes_the_new_roots() {
    let env = Env::start().await;
    env.istiod("istiod", "default");
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    // No istiod publishes anything here: the rollout finishes, the roots never show up.
    let run = env.sync(&["--wait", "--wait-timeout", "3s"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("successfully rolled out"), "{}", run.stderr);
    assert!(run.stderr.contains("istio-ca-root-cert"), "{}", run.stderr);
    env.assert_secret_holds(&ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_root_waits_past_its_timeout_for_the_rollouts_and_the_new_roots() {
    let env = Env::start().await;
    env.kube.simulate_istiod_roots(true);
    canary(&env);
    let a = env.pki.root_a();
    env.synced(&[&a]).await;
    rolled_out(&env).await;
    env.kube.set_auto_rollout(Some(Duration::from_secs(4)));
    // Another writer puts root B next to A; check-root restarts both revisions and waits longer than --timeout.
    let b = env.pki.root_b();
    let bundle = format!("{}{}", a.cert_pem, b.cert_pem);
    env.replace_root_in_secret(&bundle);
    let before = generations(&env);
    let run =
        env.run_with("workload-identity", "check-root", &["--timeout", "2s", "--wait", "--wait-timeout", "60s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), plus(&before, 1));
    assert!(run.stderr.contains("istiod serves the new roots"), "{}", run.stderr);
    assert_eq!(published_roots(&env).as_deref(), Some(bundle.as_str()));
}
