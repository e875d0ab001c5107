//! The root-rotation runbook end to end with the time gates: A/A1 → A+B/A1 → A+B/B1 → B/B1 on two istiod
//! revisions, every refusal and override, `status` at each step, watch mode unblocking by itself, and the exact
//! `metadata.generation` of both revisions after every step.
//!
//! Time: the gates compare the history's whole-second timestamps with the clock. A refusal is provoked with a
//! long `--trust-propagation` (1h) and a step is let through with a short one after a plain sleep, so nothing
//! depends on how fast a step runs. `istio-ca-root-cert` is written by [`istiod_loaded`], standing in for istiod,
//! which writes the roots it serves into that ConfigMap once it runs them.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cacerts_testkit::pki::{Intermediate, IntermediateOpts, PluginCa, Root};
use common::{Env, NS, Run};
use serde_json::{Value, json};

const REVISIONS: [(&str, &str); 2] = [("istiod-asm-1-22", "asm-1-22"), ("istiod-asm-1-23", "asm-1-23")];
const HISTORY: &str = "cacerts-sync.io/rotation-history";
/// The organization the test PKI puts in every subject.
const O: &str = ",O=cacerts-sync test PKI";

/// Events of `reason` in their events.k8s.io/v1 form (the test server lists each in both versions).
fn events(env: &Env, reason: &str) -> Vec<Value> {
    env.events(reason).into_iter().filter(|e| e["apiVersion"] == "events.k8s.io/v1").collect()
}

fn canary(env: &Env) {
    for (name, rev) in REVISIONS {
        env.istiod(name, rev);
    }
}

fn generations(env: &Env) -> Vec<i64> {
    REVISIONS.iter().map(|(n, _)| env.generation(n)).collect()
}

fn intermediate(env: &Env, root: &Root, cn: &str) -> Intermediate {
    env.pki.intermediate(root, IntermediateOpts { common_name: cn.into(), ..Default::default() })
}

/// What istiod does once it runs the roots in `cacerts`: publish them in `istio-ca-root-cert`.
fn istiod_loaded(env: &Env) {
    let roots = env.secret_value("root-cert.pem");
    env.kube.update(
        "configmaps",
        NS,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio-ca-root-cert", "namespace": NS, "labels": {"istio.io/config": "true"}},
            "data": {"root-cert.pem": roots}}),
    );
}

async fn status(env: &Env, trust_propagation: &str) -> (Run, Value) {
    let run =
        env.run_with("workload-identity", "status", &["-o", "json", "--trust-propagation", trust_propagation]).await;
    let json = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("status JSON: {e}\n{}", run.all()));
    (run, json)
}

async fn status_text(env: &Env, trust_propagation: &str) -> Run {
    env.run_with("workload-identity", "status", &["--trust-propagation", trust_propagation]).await
}

fn history(env: &Env) -> Value {
    let s = env.secret().expect("cacerts");
    serde_json::from_str(s["metadata"]["annotations"][HISTORY].as_str().expect("history annotation")).unwrap()
}

/// The last log line (the one-line summary of a run).
fn last_line(run: &Run) -> &str {
    run.stderr.lines().last().unwrap_or_default()
}

/// A refused step: exit 3, nothing written, no rollout; the dry run predicts exactly that.
async fn assert_refused(env: &Env, trust_propagation: &str, expect: &[String]) -> String {
    let rv = env.secret_rv();
    let before = generations(env);
    let dry = env.sync(&["--dry-run", "--trust-propagation", trust_propagation]).await;
    let real = env.sync(&["--trust-propagation", trust_propagation]).await;
    assert_eq!(real.code, 3, "{}", real.stderr);
    assert_eq!(dry.code, real.code, "the dry run predicts the refusal: {}", dry.stderr);
    let message = last_line(&real).to_string();
    for needle in expect {
        assert!(message.contains(needle), "{needle:?} missing in: {message}");
    }
    assert!(last_line(&dry).contains(&expect[0]), "dry run says the same: {}", last_line(&dry));
    assert_eq!(env.secret_rv(), rv, "cacerts untouched");
    assert_eq!(generations(env), before, "no istiod rollout");
    message
}

/// Two revisions with A/A1 synced (one rollout each), and roots A, B with intermediates A1, B1.
async fn synced_a1() -> (Env, [Root; 2], [Intermediate; 2]) {
    let env = Env::start().await;
    canary(&env);
    let (a, b) = (env.pki.root_a(), env.pki.root_b());
    let (a1, b1) = (intermediate(&env, &a, "Intermediate A1"), intermediate(&env, &b, "Intermediate B1"));
    upload(&env, &[&a], &a1);
    assert_eq!(env.sync(&[]).await.code, 0);
    (env, [a, b], [a1, b1])
}

fn upload(env: &Env, roots: &[&Root], inter: &Intermediate) -> PluginCa {
    let ca = env.pki.plugin_ca(roots, inter);
    env.upload(&ca);
    ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_is_refused_step_by_step_until_safe_and_status_names_the_next_step() {
    let env = Env::start().await;
    canary(&env);
    let (a, b) = (env.pki.root_a(), env.pki.root_b());
    let (a1, b1) = (intermediate(&env, &a, "Intermediate A1"), intermediate(&env, &b, "Intermediate B1"));

    // Step 0, A/A1: a first install is never gated; its root counts as propagated.
    upload(&env, &[&a], &a1);
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), vec![2, 2]);
    let h = history(&env);
    assert_eq!(h["roots"][0]["since"], Value::Null);
    // istiod has not published any roots yet: status cannot compare, and says so.
    let (run, st) = status(&env, "1h").await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["served_roots"]["found"], false);
    assert_eq!(st["deployments"][0]["serves_current_roots"], Value::Null);
    istiod_loaded(&env);
    let (run, st) = status(&env, "1h").await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["phase"], "steady");
    assert_eq!(st["next_step"]["step"], "add-root");
    assert_eq!(st["live_intermediate"]["anchor"]["subject"], st["roots"][0]["subject"]);
    for d in st["deployments"].as_array().unwrap() {
        assert_eq!(d["serves_current_roots"], true);
        assert_eq!(d["restarted_for_current_roots"], true);
    }
    println!("--- status, A/A1 ---\n{}", status_text(&env, "24h").await.stdout);

    // Refusal: the one-step swap A/A1 -> B/B1 breaks both rules, whatever the time.
    upload(&env, &[&b], &b1);
    assert_refused(
        &env,
        "0s",
        &[format!("add CN=Root B{O} to root-cert first"), format!("dropping root CN=Root A{O} is not safe before")],
    )
    .await;
    let blocked = events(&env, "RotationBlocked");
    assert_eq!(blocked.len(), 1, "one Warning Event, from the real run only: {blocked:?}");
    assert_eq!(blocked[0]["type"], "Warning");

    // Step 1, A+B/A1: adding a root is never gated; one rollout per revision.
    upload(&env, &[&a, &b], &a1);
    let run = env.sync(&["--trust-propagation", "1h"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), vec![3, 3]);
    let (run, _) = status(&env, "1h").await;
    assert_eq!(run.code, 3, "istiod still serves root A only: {}", run.all());
    istiod_loaded(&env);
    let (run, st) = status(&env, "1h").await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["phase"], "new-root-propagating");
    assert_eq!(st["next_step"]["step"], "switch-intermediate");
    assert_eq!(st["next_step"]["safe_now"], false);
    let since_b = st["roots"][1]["in_cacerts_since"].as_str().unwrap().to_string();
    assert_eq!(st["roots"][0]["in_cacerts_since"], Value::Null, "root A predates the history");
    let earliest_text = st["next_step"]["earliest"].as_str().unwrap().to_string();
    let earliest: jiff::Timestamp = earliest_text.parse().unwrap();
    let since: jiff::Timestamp = since_b.parse().unwrap();
    // The time counts from B's write, or from istiod's restart with it when that came later: restartedAt has
    // whole seconds and is rounded up, so it lands on the write's second or the next one.
    let from: jiff::Timestamp = st["roots"][1]["trust_counts_from"].as_str().unwrap().parse().unwrap();
    assert!((0..=1).contains(&(from.as_second() - since.as_second())), "{from} vs {since}");
    assert_eq!(st["roots"][1]["served_by_istiod"], true);
    assert_eq!(earliest.as_second() - from.as_second(), 3600, "trust propagation after istiod got root B");
    println!("--- status, A+B/A1 ---\n{}", status_text(&env, "24h").await.stdout);

    // Refusal: switching to B1 before B propagated.
    upload(&env, &[&a, &b], &b1);
    let msg =
        assert_refused(&env, "1h", &[format!("making intermediate CN=Intermediate B1{O} live is safe after")]).await;
    assert!(msg.contains(&earliest_text), "status and the refusal agree on the time: {msg}");
    // Refusal: dropping A while A1 is still live, together with the switch.
    upload(&env, &[&b], &b1);
    assert_refused(
        &env,
        "1h",
        &[format!("dropping root CN=Root A{O} is not safe before the intermediate has been switched")],
    )
    .await;

    // Step 2, A+B/B1, in watch mode: refused at first, it goes through by itself once safe, without a restart.
    upload(&env, &[&a, &b], &b1);
    let now = jiff::Timestamp::now().as_second();
    // Safe 10 s from now: the daemon's first pass comes sooner and is refused.
    let tp = format!("{}s", now - from.as_second() + 10);
    let mut daemon = Watch::start(&env, &["--interval", "1h", "--trust-propagation", &tp]);
    assert!(
        daemon.wait_metric(r#"cacerts_sync_rotation_blocked{reason="root-not-propagated"}"#, 1.0).await,
        "blocked first: {}",
        daemon.logs()
    );
    let unblock = daemon.metric("cacerts_sync_rotation_unblock_timestamp_seconds").await.unwrap();
    assert_eq!(unblock as i64, now + 10, "root B's trust_counts_from + trust propagation");
    assert_eq!(daemon.metric(r#"cacerts_sync_rotation_blocked{reason="root-still-anchoring"}"#).await, Some(0.0));
    assert!(
        daemon.wait_metric(r#"cacerts_sync_rotation_blocked{reason="root-not-propagated"}"#, 0.0).await,
        "unblocked by itself before the 1h interval: {}",
        daemon.logs()
    );
    assert_eq!(daemon.metric(r#"cacerts_sync_passes_total{result="blocked"}"#).await, Some(1.0));
    assert_eq!(daemon.metric("cacerts_sync_rotation_unblock_timestamp_seconds").await, Some(0.0));
    daemon.stop().await;
    assert_eq!(env.secret_value("ca-cert.pem"), b1.cert_pem, "B1 is live");
    assert_eq!(generations(&env), vec![3, 3], "an intermediate switch restarts nothing");
    let (run, st) = status(&env, "1h").await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["phase"], "intermediate-switched");
    assert_eq!(st["next_step"]["step"], "drop-root");
    assert_eq!(st["retired_intermediates"][0]["subject"], format!("CN=Intermediate A1{O}"));
    println!("--- status, A+B/B1 ---\n{}", status_text(&env, "24h").await.stdout);

    // Refusal: dropping A while A1's certificates may still be valid.
    upload(&env, &[&b], &b1);
    assert_refused(
        &env,
        "1h",
        &[
            format!("dropping root CN=Root A{O} is safe after"),
            format!("certificates from intermediate CN=Intermediate A1{O} may be valid until then"),
        ],
    )
    .await;

    // Step 3, B/B1: once trust propagation has passed since A1 stopped, A goes; one rollout per revision.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, st) = status(&env, "1s").await;
    assert_eq!(st["phase"], "old-root-droppable");
    assert_eq!(st["next_step"]["safe_now"], true);
    let dry = env.sync(&["--dry-run", "--trust-propagation", "1s"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let run = env.sync(&["--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), vec![4, 4]);
    istiod_loaded(&env);
    let (run, st) = status(&env, "1h").await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(st["phase"], "steady");
    assert_eq!(st["roots"].as_array().unwrap().len(), 1);
    assert_eq!(history(&env)["roots"].as_array().unwrap().len(), 1, "root A left the history");
    println!("--- status, B/B1 ---\n{}", status_text(&env, "24h").await.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_unsafe_rotation_writes_each_refused_step_with_a_warning_event() {
    let (env, [a, b], [a1, b1]) = synced_a1().await;
    upload(&env, &[&a, &b], &a1);
    assert_eq!(env.sync(&[]).await.code, 0);
    assert_eq!(generations(&env), vec![3, 3]);

    // Switching too early, forced (the env var form of the flag).
    let ab1 = upload(&env, &[&a, &b], &b1);
    let mut cmd = env.command(
        "workload-identity",
        &["sync", "--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification"],
    );
    cmd.env("CACERTS_SYNC_ALLOW_UNSAFE_ROTATION", "true");
    let run = env.output(cmd).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("--allow-unsafe-rotation") && run.stderr.contains("WARN"), "{}", run.stderr);
    env.assert_secret_holds(&ab1);
    assert_eq!(generations(&env), vec![3, 3]);
    let unsafe_events = events(&env, "UnsafeRotation");
    assert_eq!(unsafe_events.len(), 1, "{unsafe_events:?}");
    assert_eq!(unsafe_events[0]["type"], "Warning");
    assert!(unsafe_events[0]["note"].as_str().unwrap().contains("may fail mTLS"), "{unsafe_events:?}");

    // Dropping A at once, forced: written, one rollout per revision.
    let bb1 = upload(&env, &[&b], &b1);
    assert_eq!(env.sync(&[]).await.code, 3, "refused without the flag");
    let run = env.sync(&["--allow-unsafe-rotation"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    env.assert_secret_holds(&bb1);
    assert_eq!(generations(&env), vec![4, 4]);
    assert_eq!(events(&env, "UnsafeRotation").len(), 2);

    // The one-step swap back to A/A1, forced: both rules overridden.
    let aa1 = upload(&env, &[&a], &a1);
    let run = env.sync(&["--allow-unsafe-rotation"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("root-not-propagated,root-still-anchoring"), "{}", run.stderr);
    env.assert_secret_holds(&aa1);
    assert_eq!(generations(&env), vec![5, 5]);
}

/// A running `cacerts-sync watch` with its admin server.
struct Watch {
    child: tokio::process::Child,
    admin: String,
    log: std::path::PathBuf,
}

impl Watch {
    fn start(env: &Env, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let admin_addr = format!("127.0.0.1:{port}");
        let url = env.kv.vault_url();
        let mut args = vec![
            "watch",
            "--vault-url",
            url.as_str(),
            "--disable-challenge-resource-verification",
            "--jitter",
            "0s",
            "--admin-addr",
            admin_addr.as_str(),
        ];
        args.extend_from_slice(extra);
        let log = env.path("watch.log");
        let mut cmd = env.command("workload-identity", &args);
        cmd.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        let child = cmd.spawn().expect("spawn cacerts-sync watch");
        Self { child, admin: format!("http://{admin_addr}"), log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.admin)).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Polls until the series has `value` (60 s at most).
    async fn wait_metric(&self, series: &str, value: f64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.metric(series).await == Some(value) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn stop(&mut self) {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "watch exits 0 on SIGTERM: {}", self.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pass_still_completes_the_restarts_owed_for_cacerts_as_it_is() {
    let (env, [a, b], [a1, b1]) = synced_a1().await;
    assert_eq!(generations(&env), vec![2, 2]);
    // Another writer puts A+B into cacerts; istiod still runs A (its recorded fingerprint says so).
    let ab = env.pki.plugin_ca(&[&a, &b], &a1);
    env.replace_root_in_secret(&ab.root_cert);
    // The vault asks for the one-step swap: refused, but istiod is brought to the roots cacerts holds.
    upload(&env, &[&b], &b1);
    let rv = env.secret_rv();
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv, "cacerts untouched");
    assert_eq!(generations(&env), vec![3, 3], "one rollout per revision, for A+B");
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(common::fingerprint(&ab.root_cert).as_str()));
    }
    // Refused again: nothing more to restart.
    assert_eq!(env.sync(&[]).await.code, 3);
    assert_eq!(generations(&env), vec![3, 3]);
}

/// The gap this closes: trust propagation used to count from the write of root B, so when istiod's restart for
/// A+B kept failing for longer than `--trust-propagation`, the switch to B1 went through although istiod never
/// served B, and workloads that never learnt B would fail mTLS with B1's certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_waits_for_istiod_to_serve_the_new_root_when_its_restart_keeps_failing() {
    use cacerts_testkit::kube::Fault;
    let (env, [a, b], [a1, b1]) = synced_a1().await;
    istiod_loaded(&env);
    assert_eq!(generations(&env), vec![2, 2]);

    // A+B lands, but RBAC refuses the restart of one revision (as a missing resourceNames entry would).
    env.kube.inject_fault(Fault::status(403).method("PATCH").path("/deployments/istiod-asm-1-23"));
    upload(&env, &[&a, &b], &a1);
    let run = env.sync(&["--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(env.secret_value("root-cert.pem").contains(b.cert_pem.trim()), "A+B is in cacerts");
    assert_eq!(generations(&env), vec![3, 2], "one revision restarted, the other's restart refused");

    // Long past --trust-propagation since B's write: still refused, the step named is istiod's restart.
    tokio::time::sleep(Duration::from_secs(2)).await;
    upload(&env, &[&a, &b], &b1);
    assert_refused(
        &env,
        "1s",
        &[
            format!(
                "making intermediate CN=Intermediate B1{O} live is not safe before istiod serves its root CN=Root B{O}"
            ),
            "istiod (istiod-asm-1-23) has not restarted for the roots in cacerts yet".into(),
        ],
    )
    .await;
    let (_, st) = status(&env, "1s").await;
    assert_eq!(st["next_step"]["step"], "restart-istiod", "{st}");
    assert_eq!(st["roots"][1]["served_by_istiod"], false);
    assert_eq!(st["roots"][1]["trusted_after"], Value::Null);

    // RBAC fixed: the refused pass completes the restart owed (and is still refused: it judged before).
    env.kube.clear_faults();
    let run = env.sync(&["--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(generations(&env), vec![3, 3], "the owed restart, once");
    istiod_loaded(&env);
    // Now the time counts from that restart, not from B's write.
    let (_, st) = status(&env, "1h").await;
    assert_eq!(st["next_step"]["step"], "switch-intermediate", "{st}");
    let from: jiff::Timestamp = st["roots"][1]["trust_counts_from"].as_str().unwrap().parse().unwrap();
    let since: jiff::Timestamp = st["roots"][1]["in_cacerts_since"].as_str().unwrap().parse().unwrap();
    assert!(from.as_second() >= since.as_second() + 2, "counts from the restart ({from}), not the write ({since})");
    let earliest: jiff::Timestamp = st["next_step"]["earliest"].as_str().unwrap().parse().unwrap();
    assert_eq!(earliest.as_second() - from.as_second(), 3600);
    assert_refused(&env, "1h", &[format!("its root CN=Root B{O} reached istiod")]).await;

    // Once that time has passed, the switch goes through without a restart.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = env.sync(&["--trust-propagation", "1s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.secret_value("ca-cert.pem"), b1.cert_pem, "B1 is live");
    assert_eq!(generations(&env), vec![3, 3], "an intermediate switch restarts nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_cacerts_changed_data_under_it_is_given_up_and_decided_again() {
    use cacerts_testkit::kube::Fault;
    let env = Env::start().await;
    canary(&env);
    let (a, b, c) = (env.pki.root_a(), env.pki.root_b(), env.pki.root("Root C"));
    let a1 = intermediate(&env, &a, "Intermediate A1");
    upload(&env, &[&a], &a1);
    assert_eq!(env.sync(&[]).await.code, 0);
    let before = generations(&env);
    // The vault adds root B; while the pass writes, another writer puts root C into cacerts. The pass judged the
    // gates (and istiod's baseline) on A: it must not write over C with that decision.
    upload(&env, &[&a, &b], &a1);
    env.kube.inject_fault(Fault::latency(Duration::from_secs(5)).method("PATCH").path("/secrets/cacerts").times(1));
    let gets = env.kube.request_count("GET", "/secrets/cacerts");
    let run = tokio::spawn({
        let url = env.kv.vault_url();
        let mut cmd = env.command(
            "workload-identity",
            &["sync", "--vault-url", &url, "--disable-challenge-resource-verification", "--trust-propagation", "0s"],
        );
        async move { cmd.output().await.unwrap() }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.kube.request_count("GET", "/secrets/cacerts") == gets {
        assert!(Instant::now() < deadline, "the pass never read cacerts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let foreign = format!("{}{}", a.cert_pem, c.cert_pem);
    env.replace_root_in_secret(&foreign);
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("sync finished").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("someone else changed its data while we wrote it"), "{stderr}");
    assert_eq!(env.secret_value("root-cert.pem"), foreign, "the other writer's data stays");
    assert_eq!(generations(&env), before);
}
