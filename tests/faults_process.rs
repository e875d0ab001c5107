//! Fault matrix, the process: SIGKILL at each point of a pass (before the write, between the write and the
//! restarts, between two revisions) followed by a rerun that must converge with exactly one rollout per
//! revision; SIGTERM during `--wait`; two processes at once. The kill points are held open with injected
//! latency on the request that follows them, so the kill always lands at the intended point.

mod common;
mod faults;

use std::time::Duration;

use cacerts_testkit::kube::Fault;
use common::{Env, Run};
use faults::{Cacerts, Ctx, ISTIODS, Start};

/// The generation of each istiod revision.
fn generations(env: &Env) -> [i64; 2] {
    ISTIODS.map(|(name, _)| env.generation(name))
}

fn delta(after: [i64; 2], before: [i64; 2]) -> [i64; 2] {
    [after[0] - before[0], after[1] - before[1]]
}

/// Polls `done` for up to 20 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `sync` as a child, waits for `point`, kills it with `signal`, and returns its output.
async fn killed_at(env: &Env, extra: &[&str], signal: &str, point: impl FnMut() -> bool) -> Run {
    let url = env.kv.vault_url();
    let mut args = vec!["sync", "--vault-url", url.as_str(), "--disable-challenge-resource-verification"];
    args.extend_from_slice(extra);
    let mut cmd = env.command("workload-identity", &args);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap().to_string();
    until("the kill point", point).await;
    let status = std::process::Command::new("kill").args([signal, &pid]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().await.unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    env.assert_no_key_bytes(&run.all());
    run
}

/// The rerun after a kill: exit 0, `cacerts` holds the new CA, and the revisions end up restarted exactly once
/// in total (`already` counts the rollouts the killed run managed). A third run changes nothing.
async fn converges(env: &Env, ctx: &Ctx, name: &str, fault: &str, before: [i64; 2]) {
    env.kube.clear_faults();
    let rerun = env.sync(&[]).await;
    assert_eq!(rerun.code, 0, "[{name}] the rerun converges: {}", rerun.stderr);
    env.assert_secret_holds(&ctx.new);
    assert_eq!(delta(generations(env), before), [1, 1], "[{name}] exactly one rollout per revision in total");
    let last = rerun.stderr.lines().last().unwrap_or_default().to_string();
    let again = env.sync(&[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(delta(generations(env), before), [1, 1], "[{name}] a third run restarts nothing");
    faults::report(name, fault, rerun.code, &last, Cacerts::New, [1, 1]);
}

async fn start(start: Start) -> (Env, Ctx, [i64; 2]) {
    let env = Env::start().await;
    let ctx = faults::prepare(&env, start).await;
    let before = generations(&env);
    (env, ctx, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_the_write_then_a_rerun_converges() {
    let (env, ctx, before) = start(Start::Rotation).await;
    let secret = env.secret().unwrap();
    env.kube.inject_fault(Fault::latency(Duration::from_secs(10)).method("PATCH").path("/secrets/cacerts"));
    let killed = killed_at(&env, &[], "-KILL", || env.kv.request_count("GET", "/secrets/") >= 4).await;
    // The four GETs are done; give the pass time to reach the (delayed) write, then it is killed in it.
    assert_eq!(killed.code, -1, "killed by SIGKILL");
    assert_eq!(env.secret().unwrap()["data"], secret["data"], "nothing written");
    assert_eq!(delta(generations(&env), before), [0, 0]);
    converges(&env, &ctx, "process_sigkill_before_the_write", "SIGKILL while the Secret write is in flight", before)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_the_write_and_the_restarts_then_a_rerun_restarts_once() {
    let (env, ctx, before) = start(Start::Rotation).await;
    env.kube.inject_fault(Fault::latency(Duration::from_secs(10)).method("PATCH").path("/deployments/"));
    let new_root = ctx.new.root_cert.clone();
    let killed =
        killed_at(&env, &[], "-KILL", || env.secret().is_some_and(|_| env.secret_value("root-cert.pem") == new_root))
            .await;
    assert_eq!(killed.code, -1);
    env.assert_secret_holds(&ctx.new);
    assert_eq!(delta(generations(&env), before), [0, 0], "killed before any restart");
    converges(
        &env,
        &ctx,
        "process_sigkill_between_write_and_restarts",
        "SIGKILL after the Secret write, before any restart",
        before,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_two_revisions_then_a_rerun_restarts_only_the_other() {
    let (env, ctx, before) = start(Start::Rotation).await;
    // Whichever revision is restarted first goes through; the other's restart hangs until the kill.
    let first_done = || generations(&env) != before;
    env.kube.inject_fault(Fault::latency(Duration::from_millis(300)).method("PATCH").path("/deployments/").times(1));
    env.kube.inject_fault(Fault::latency(Duration::from_secs(10)).method("PATCH").path("/deployments/"));
    let killed = killed_at(&env, &[], "-KILL", first_done).await;
    assert_eq!(killed.code, -1);
    let partial = delta(generations(&env), before);
    assert_eq!(partial.iter().sum::<i64>(), 1, "exactly one revision restarted before the kill: {partial:?}");
    converges(&env, &ctx, "process_sigkill_between_two_revisions", "SIGKILL after one revision's restart", before)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_wait_leaves_the_restarts_done_and_a_rerun_restarts_nothing() {
    let (env, ctx, before) = start(Start::Rotation).await;
    env.kube.set_auto_rollout(None);
    let killed =
        killed_at(&env, &["--wait", "--wait-timeout", "60s"], "-TERM", || delta(generations(&env), before) == [1, 1])
            .await;
    // A one-shot sync has no graceful drain: SIGTERM ends it at once (no exit code: killed by the signal).
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    env.assert_secret_holds(&ctx.new);
    env.kube.set_auto_rollout(Some(Duration::from_millis(100)));
    converges_without_new_restarts(&env, &ctx, before).await;
}

async fn converges_without_new_restarts(env: &Env, ctx: &Ctx, before: [i64; 2]) {
    let rerun = env.sync(&["--wait", "--wait-timeout", "30s"]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    env.assert_secret_holds(&ctx.new);
    assert_eq!(delta(generations(env), before), [1, 1], "the restarts of the killed run count: no second rollout");
    let last = rerun.stderr.lines().last().unwrap_or_default().to_string();
    faults::report(
        "process_sigterm_during_wait",
        "SIGTERM while --wait waits for the rollouts",
        0,
        &last,
        Cacerts::New,
        [1, 1],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_at_once_write_once_and_restart_each_revision_once() {
    let (env, ctx, before) = start(Start::Rotation).await;
    let (a, b) = tokio::join!(env.sync(&[]), env.sync(&[]));
    assert_eq!((a.code, b.code), (0, 0), "both succeed:\n{}\n{}", a.stderr, b.stderr);
    env.assert_secret_holds(&ctx.new);
    assert_eq!(delta(generations(&env), before), [1, 1], "one rollout per revision, not two");
    // Which of the two wins the write is a race; the loser re-reads (or conflicts and re-reads) and finds
    // `cacerts` already current. Exactly one of them writes, and the row reports the writer's summary.
    let last_line = |run: &Run| run.stderr.lines().last().unwrap_or_default().to_string();
    let (la, lb) = (last_line(&a), last_line(&b));
    let finished = |line: &str, action: &str| line.contains(&format!("sync finished: {action}"));
    let last = match (finished(&la, "updated"), finished(&lb, "updated")) {
        (true, false) if finished(&lb, "unchanged") => la,
        (false, true) if finished(&la, "unchanged") => lb,
        _ => panic!("exactly one of the two writes, the other finds cacerts current:\n{la}\n{lb}"),
    };
    faults::report(
        "process_two_at_once",
        "two syncs of the same rotation at the same time",
        0,
        &last,
        Cacerts::New,
        [1, 1],
    );
}
