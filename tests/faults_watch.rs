//! Fault matrix, watch mode: the API server closes every watch (as a restart or an idle timeout does), and the
//! resumed watch meets 410 Gone because the history it resumes from was compacted. Either way `cacerts-sync
//! watch` must keep running, re-list, and still self-heal a hand-edited `cacerts` without restarting istiod;
//! a SIGTERM then ends it with exit 0.

mod common;
mod faults;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, NS};
use faults::{Cacerts, ISTIODS};

fn generations(env: &Env) -> Vec<i64> {
    ISTIODS.iter().map(|(name, _)| env.generation(name)).collect()
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Watch mode syncs, then `fault` hits the watches; a hand edit of `cacerts` must still be set back.
async fn resumes_after(name: &str, what: &str, fault: fn(&Env), relist: bool) {
    let env = Env::start().await;
    for (n, rev) in ISTIODS {
        env.istiod(n, rev);
    }
    let (_root, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (url, admin) = (env.kv.vault_url(), format!("127.0.0.1:{port}"));
    let args = ["watch", "--vault-url", &url, "--disable-challenge-resource-verification", "--interval", "1h"];
    let mut cmd = env.command("workload-identity", &args);
    let log = env.path("watch.log");
    cmd.args(["--jitter", "0s", "--admin-addr", &admin])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let child = cmd.spawn().unwrap();
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    until("the first pass", 20, || env.secret().is_some() && generations(&env) == [2, 2]).await;
    // Let the watches settle (initial list + watch) before cutting them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = generations(&env);
    env.kube.reset_requests();

    fault(&env);
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.replace_root_in_secret(&env.pki.root_b().cert_pem);
    until("the hand edit to be set back", 15, || env.secret_value("root-cert.pem") == ca.root_cert).await;
    env.assert_secret_holds(&ca);
    assert_eq!(generations(&env), before, "[{name}] self-heal of the same root restarts nothing");
    // A closed watch resumes from its last resourceVersion; one that meets 410 Gone must list again.
    let requests = env.kube.requests();
    let rewatched = requests.iter().any(|r| r.is_watch && r.path.ends_with("/secrets"));
    let relisted = requests.iter().any(|r| !r.is_watch && r.method == "GET" && r.path.ends_with("/secrets"));
    assert!(rewatched, "[{name}] the watcher watched the Secret again");
    assert_eq!(relisted, relist, "[{name}] re-listed the Secret only after a 410");

    let metrics = reqwest::get(format!("http://{admin}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("cacerts_sync_"), "{metrics}");
    env.assert_no_key_bytes(&metrics);

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().await.unwrap();
    let all = logs();
    env.assert_no_key_bytes(&all);
    assert_eq!(out.status.code(), Some(0), "[{name}] graceful exit after SIGTERM:\n{all}");
    let mut recorded = env.kube.list("events", NS);
    recorded.extend(env.kube.list("events.events.k8s.io", NS));
    env.assert_no_key_bytes(&serde_json::Value::Array(recorded).to_string());
    let healed = all.lines().rfind(|l| l.contains("cacerts restored")).expect("the self-heal is logged");
    let message = healed.rsplit_once("watch: ").map_or(healed, |(_, m)| m);
    let message = message.split(" result=").next().unwrap_or(message);
    faults::report(name, what, 0, message, Cacerts::Restored, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_closed_then_resumed() {
    resumes_after(
        "watch_closed",
        "the API server closes every watch; a hand edit follows",
        |env| env.kube.close_watches(),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_410_gone_on_resume() {
    resumes_after(
        "watch_410_gone_on_resume",
        "watches closed after the history was compacted (resume gets 410)",
        |env| {
            env.kube.compact();
            env.kube.close_watches();
        },
        true,
    )
    .await;
}
