//! A running `cacerts-sync watch` for end-to-end tests: the real binary as a child process, its log file and
//! its admin endpoints. (tests/watch.rs has its own older copy of this harness.)
#![allow(dead_code)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::common::Env;

/// A running `cacerts-sync watch`.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub pid: u32,
    admin: String,
    log: std::path::PathBuf,
    http: reqwest::Client,
}

/// Starts `cacerts-sync watch` with `extra` flags (and no jitter), as the given kubeconfig if any.
pub fn watch(env: &Env, name: &str, kubeconfig: Option<&std::path::Path>, extra: &[&str]) -> Daemon {
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
    let log = env.path(&format!("{name}.log"));
    let mut cmd = env.command("workload-identity", &args);
    cmd.env("RUST_LOG", "info,cacerts_sync=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let child = cmd.spawn().expect("spawn cacerts-sync watch");
    let pid = child.id().unwrap();
    Daemon { child, pid, admin: format!("http://{admin_addr}"), log, http: reqwest::Client::new() }
}

impl Drop for Daemon {
    // A failed test shows what the daemon said (WATCH_TEST_LOGS=1 shows it always).
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WATCH_TEST_LOGS").is_some() {
            eprintln!("---- {} ----\n{}", self.log.display(), self.logs());
        }
    }
}

impl Daemon {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/metrics` text ("" while the server is not up).
    pub async fn metrics(&self) -> String {
        let response = self.http.get(format!("{}/metrics", self.admin)).timeout(Duration::from_secs(2)).send().await;
        match response {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of one series (`name` or `name{labels}` exactly as exposed), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("cacerts-sync watch did not exit within {timeout:?}; log:\n{}", self.logs()),
        }
    }
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond().await
}
