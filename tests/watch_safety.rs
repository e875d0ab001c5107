//! Watch mode never goes backwards and a deposed leader never writes, end to end: the real binary against
//! the Key Vault emulator and the Kubernetes test server. Every wait polls with a timeout; nothing asserts on
//! timings.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use base64::Engine as _;
use cacerts_testkit::kube::Fault;
use common::{Env, NS, fingerprint};
use daemon::{wait_until, watch};

const REVISIONS: [(&str, &str); 2] = [("istiod-asm-1-22", "asm-1-22"), ("istiod-asm-1-23", "asm-1-23")];

fn canary(env: &Env) {
    for (name, rev) in REVISIONS {
        env.istiod(name, rev);
    }
}

fn generations(env: &Env) -> Vec<i64> {
    REVISIONS.iter().map(|(n, _)| env.generation(n)).collect()
}

fn root_in_cacerts(env: &Env) -> Option<String> {
    env.secret()?;
    Some(env.secret_value("root-cert.pem"))
}

/// Watches `cacerts` for `period` and returns every distinct root it held, in order.
async fn roots_during(env: &Env, period: Duration) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < deadline {
        if let Some(root) = root_in_cacerts(env)
            && seen.last() != Some(&root)
        {
            seen.push(root);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// Write requests (create, update, patch) that succeeded on Secrets or Deployments.
fn writes(env: &Env) -> Vec<String> {
    env.kube
        .requests()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH") && (200..300).contains(&r.status))
        .filter(|r| r.path.contains("/secrets") || r.path.contains("/deployments"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_times_out_in_wait_after_its_write_keeps_the_new_root_and_is_not_undone_by_self_heal() {
    let env = Env::start().await;
    env.kube.simulate_istiod_roots(true);
    canary(&env);
    let a = env.pki.root_a();
    let ca_a = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca_a);
    let d = watch(&env, "wait-timeout", None, &["--interval", "2s", "--wait", "--wait-timeout", "2s"]);
    assert!(wait_until(Duration::from_secs(30), async || root_in_cacerts(&env) == Some(ca_a.root_cert.clone())).await);
    assert!(wait_until(Duration::from_secs(20), async || d.logs().contains("istiod serves the new roots")).await);
    let before = generations(&env);

    // Rollouts stop finishing: the next pass writes root A+B, restarts both revisions and then fails in --wait.
    env.kube.set_auto_rollout(None);
    let b = env.pki.root_b();
    let ab = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&ab);
    assert!(
        wait_until(Duration::from_secs(30), async || d.logs().contains("the pass failed after writing cacerts")).await,
        "{}",
        d.logs()
    );
    // cacerts holds A+B and keeps it: self-heal must not restore A.
    let seen = roots_during(&env, Duration::from_secs(5)).await;
    assert_eq!(seen, vec![ab.root_cert.clone()], "cacerts went backwards:\n{}", d.logs());
    assert!(env.events("Restored").is_empty(), "no self-heal restore");
    assert_eq!(generations(&env), before.iter().map(|g| g + 1).collect::<Vec<_>>(), "one rollout each");
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(fingerprint(&ab.root_cert).as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_gets_403_on_a_restart_after_its_write_is_finished_forward_by_the_next_pass() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    let ca_a = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca_a);
    let d = watch(&env, "forbidden", None, &["--interval", "2s"]);
    assert!(wait_until(Duration::from_secs(30), async || root_in_cacerts(&env) == Some(ca_a.root_cert.clone())).await);
    assert!(wait_until(Duration::from_secs(10), async || generations(&env) == vec![2, 2]).await);

    // The first restart patch of the next pass is forbidden.
    env.kube.inject_fault(Fault::status(403).method("PATCH").path("/deployments/").times(1));
    let b = env.pki.root_b();
    let ab = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&ab);
    assert!(
        wait_until(Duration::from_secs(30), async || d.logs().contains("the pass failed after writing cacerts")).await,
        "{}",
        d.logs()
    );
    // The next pass restarts what is still owed: exactly one rollout per revision, cacerts never back at A.
    let seen = roots_during(&env, Duration::from_secs(5)).await;
    assert_eq!(seen, vec![ab.root_cert.clone()], "{}", d.logs());
    assert!(wait_until(Duration::from_secs(20), async || generations(&env) == vec![3, 3]).await, "{}", d.logs());
    assert!(env.events("Restored").is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(generations(&env), vec![3, 3], "no second rollout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_heal_never_restores_over_a_newer_root_that_cacerts_sync_wrote() {
    let env = Env::start().await;
    let a = env.pki.root_a();
    let ca_a = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca_a);
    let d = watch(&env, "newer", None, &["--interval", "1h"]);
    assert!(wait_until(Duration::from_secs(30), async || root_in_cacerts(&env) == Some(ca_a.root_cert.clone())).await);
    assert!(wait_until(Duration::from_secs(10), async || d.logs().contains("pass finished")).await);

    // Another cacerts-sync (a replica that took over, a CronJob) writes root B with its fingerprint annotation.
    let b = env.pki.root_b();
    let ca_b = env.pki.plugin_ca(&[&b], &env.pki.default_intermediate(&b));
    let mut secret = env.secret().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (key, value) in ca_b.secret_files() {
        secret["data"][key] = b64.encode(value).into();
    }
    secret["metadata"]["annotations"]["cacerts-sync.io/root-fingerprint"] = fingerprint(&ca_b.root_cert).into();
    env.kube.update("secrets", NS, secret);

    let seen = roots_during(&env, Duration::from_secs(4)).await;
    assert_eq!(seen, vec![ca_b.root_cert.clone()], "self-heal restored an older root:\n{}", d.logs());
    assert!(d.logs().contains("not restoring"), "{}", d.logs());
}

/// Starts a single replica with leader election and waits until it leads and synced `ca`.
async fn leader(env: &Env, name: &str, ca: &cacerts_testkit::pki::PluginCa) -> daemon::Daemon {
    let d = watch(env, name, None, &["--interval", "1s", "--leader-election", "--lease-duration", "3s"]);
    assert!(wait_until(Duration::from_secs(30), async || root_in_cacerts(env) == Some(ca.root_cert.clone())).await);
    assert!(wait_until(Duration::from_secs(10), async || d.metric("cacerts_sync_leader").await == Some(1.0)).await);
    d
}

/// After renewals start failing (`fault`), no write may happen once the renewal deadline passed.
async fn failing_renewals_fence_writes(name: &str, fault: Fault) {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    let ca_a = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca_a);
    let d = leader(&env, name, &ca_a).await;
    assert!(wait_until(Duration::from_secs(10), async || generations(&env) == vec![2, 2]).await);

    env.kube.inject_fault(fault);
    // The lease lasts 3 s and is renewed every 2 s: 3 s after the faults began, the renewal deadline (2.5 s
    // after the last success) has passed for sure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = writes(&env);
    let b = env.pki.root_b();
    let ab = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&ab);
    assert!(
        wait_until(Duration::from_secs(20), async || d.logs().contains("stepping down")).await,
        "the leader never noticed:\n{}",
        d.logs()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(writes(&env), before, "a replica past its renewal deadline wrote:\n{}", d.logs());
    assert_eq!(root_in_cacerts(&env), Some(ca_a.root_cert.clone()));
    assert_eq!(generations(&env), vec![2, 2]);

    // Renewals work again: it leads again and syncs, with one rollout per revision.
    env.kube.clear_faults();
    assert!(wait_until(Duration::from_secs(30), async || root_in_cacerts(&env) == Some(ab.root_cert.clone())).await);
    assert!(wait_until(Duration::from_secs(10), async || generations(&env) == vec![3, 3]).await, "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_failing_with_500_fence_every_write() {
    failing_renewals_fence_writes("renew-500", Fault::status(500).method("PATCH").path("/leases/")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_timing_out_fence_every_write() {
    failing_renewals_fence_writes(
        "renew-timeout",
        Fault::latency(Duration::from_secs(60)).method("PATCH").path("/leases/"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_roots_gauge_follows_istio_ca_root_cert_from_the_watch_cache() {
    let env = Env::start().await;
    env.kube.simulate_istiod_roots(true);
    canary(&env);
    let a = env.pki.root_a();
    let ca_a = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca_a);
    let d = watch(&env, "gauge", None, &["--interval", "1s"]);
    let gauge = "cacerts_sync_istiod_serving_current_roots";
    // cacerts created, istiod restarted, the new pods publish root A.
    assert!(wait_until(Duration::from_secs(30), async || d.metric(gauge).await == Some(1.0)).await, "{}", d.logs());

    // Unchanged passes read istio-ca-root-cert from the watch cache: no GET of it.
    let reads = || {
        env.kube
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/configmaps") && !r.is_watch && r.method == "GET")
            .count()
    };
    let before = reads();
    let passes = async || d.metric("cacerts_sync_passes_total{result=\"unchanged\"}").await.unwrap_or(0.0);
    let start = passes().await;
    assert!(wait_until(Duration::from_secs(20), async || passes().await >= start + 2.0).await);
    assert_eq!(reads(), before, "an unchanged pass read the ConfigMap");

    // istiod (say, after someone rolled it back) serves another root: 0. The ConfigMap gone: unknown, absent.
    let b = env.pki.root_b();
    env.kube.set_istio_ca_root_cert(NS, &b.cert_pem);
    assert!(wait_until(Duration::from_secs(10), async || d.metric(gauge).await == Some(0.0)).await, "{}", d.logs());
    env.kube.delete("configmaps", NS, "istio-ca-root-cert");
    let absent = async || d.metric(gauge).await.is_none() && d.metrics().await.contains("cacerts_sync_leader");
    assert!(wait_until(Duration::from_secs(10), absent).await, "{}", d.metrics().await);
    env.kube.set_istio_ca_root_cert(NS, &ca_a.root_cert);
    assert!(wait_until(Duration::from_secs(10), async || d.metric(gauge).await == Some(1.0)).await);
}
