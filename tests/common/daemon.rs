//! A running `cacerts-sync watch` for end-to-end tests: the real binary as a child process, its log file and
//! its admin endpoints. Used by tests/watch.rs, tests/watch_safety.rs and others through `#[path]`.
#![allow(dead_code)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::common::Env;

/// A running `cacerts-sync watch`.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub admin: String,
    log: std::path::PathBuf,
    pub http: reqwest::Client,
}

/// Starts `cacerts-sync watch` with `extra` flags (and no jitter), as the given kubeconfig if any.
pub fn watch(env: &Env, name: &str, kubeconfig: Option<&std::path::Path>, extra: &[&str]) -> Daemon {
    watch_logging(env, name, kubeconfig, extra, "info,cacerts_sync=debug")
}

/// [`watch`] with another `RUST_LOG` (the soak logs at `info`: thousands of passes at debug are hundreds of MB).
pub fn watch_logging(
    env: &Env,
    name: &str,
    kubeconfig: Option<&std::path::Path>,
    extra: &[&str],
    rust_log: &str,
) -> Daemon {
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
    if let Some(bin) = std::env::var_os("WATCH_TEST_BIN") {
        // Same environment, another build (e.g. target/release/cacerts-sync for the memory numbers).
        let std_cmd = cmd.as_std();
        let mut other = std::process::Command::new(bin);
        other.env_clear().args(std_cmd.get_args());
        for (k, v) in std_cmd.get_envs() {
            if let Some(v) = v {
                other.env(k, v);
            }
        }
        cmd = tokio::process::Command::from(other);
        cmd.kill_on_drop(true);
    }
    cmd.env("RUST_LOG", rust_log).stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
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
            // The last 400 lines: a soak's whole log would drown the failure.
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = lines[lines.len().saturating_sub(400)..].join("\n");
            eprintln!("---- {} (last {} lines) ----\n{tail}", self.log.display(), lines.len().min(400));
        }
    }
}

impl Daemon {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (status, body) of an admin path; `None` while the server is not up.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response =
            self.http.get(format!("{}{path}", self.admin)).timeout(Duration::from_secs(2)).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// The `/metrics` text ("" while the server is not up).
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.map(|(_, body)| body).unwrap_or_default()
    }

    /// The value of one series (`name` or `name{labels}` exactly as exposed), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.metrics().await, series)
    }

    pub async fn ready(&self) -> bool {
        matches!(self.get("/readyz").await, Some((200, _)))
    }

    pub fn signal(&self, name: &str) {
        let status =
            std::process::Command::new("kill").arg(format!("-{name}")).arg(self.pid.to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid);
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
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

/// The value of a series in OpenMetrics text: `name` or `name{labels}` verbatim.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
