//! `cacerts-sync watch`: the long-lived loop of the sync Deployment.
//!
//! ```text
//!             ┌──────────── schedule (+jitter, backoff) ───────────┐
//! start ─▶ pass ─▶ wait ─▶ pass ─▶ …        Secret watch ─drift─▶ self-heal (no Key Vault call)
//!   admin server: /healthz /readyz /metrics       Lease ─▶ only the leader passes and heals
//! ```
//!
//! - **Passes** are [`Syncer::pass`], the same code as `sync`, with the watch caches (`cache`) as
//!   [`Known`](crate::sync::Known), so an unchanged pass makes four Key Vault GETs and no Kubernetes request at all.
//! - **Self-heal:** when the watched `cacerts` is deleted, or its four keys differ from the last validated
//!   material, the leader writes that material back at once (with the annotations of the pass that validated
//!   it). Only material that passed validation is ever written; before the first good pass there is nothing to
//!   restore and the next pass repairs it. A failed restore is retried with the pass backoff. A restore does not
//!   restart istiod: the root is the one istiod runs. A replica that loses the Lease forgets its material (the
//!   new leader may sync newer material; restoring the old one later would be a downgrade).
//! - **Failures** back off exponentially ([`schedule`]); a failed pass writes nothing, so `cacerts` keeps the
//!   last good material.
//! - **Leader election** (`leader`, `--leader-election`): only the Lease holder passes, heals and restarts;
//!   standbys keep their watches warm and report ready once those are synced (so a rolling update of the
//!   Deployment can proceed); the first pass after a takeover runs at once.
//! - **Health:** `/healthz` fails when the loop misses its own deadline (the next wake-up, or the end of a pass
//!   bounded by `--timeout`, plus 30 s and the jitter). `/readyz` turns true after the first good pass (a
//!   standby: after its watches synced) and false as soon as shutdown begins.
//! - **Shutdown:** the first SIGTERM/SIGINT makes `/readyz` fail, lets the pass in flight finish, releases the
//!   Lease and exits 0. A second signal aborts at once with exit code 130.

mod cache;
mod leader;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::admin::{self, Health};
use crate::bundle::RawMaterial;
use crate::config::{SourceSpec, TargetSpec, WatchConfig};
use crate::error::{Classify, chain, exit};
use crate::k8s::{self, Events};
use crate::metrics::Metrics;
use crate::sink::secret::material_of;
use crate::sync::{self, PassReport, Syncer};

use cache::Cache;
use leader::Leadership;
use schedule::Timing;

/// Slack on top of every deadline the loop promises to `/healthz`.
const LIVENESS_SLACK: Duration = Duration::from_secs(30);
/// How long shutdown waits for the Lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code of an aborted shutdown (second signal), like a shell's 128 + SIGINT.
pub const ABORT_EXIT_CODE: i32 = 130;

/// The last material that passed validation and is (or should be) in `cacerts`.
struct LastGood {
    material: RawMaterial,
    annotations: BTreeMap<String, String>,
}

/// `cacerts-sync watch`.
pub async fn run(config: WatchConfig) -> u8 {
    let lease_config = config.leader_election.clone();
    if let Some(lease) = &lease_config
        && let Err(e) = leader::lease_seconds(lease.duration)
    {
        tracing::error!(error = %e, "invalid configuration");
        return exit::USAGE;
    }
    let TargetSpec::Secret { namespace, name: secret } = config.sync.target.clone() else {
        unreachable!("watch always targets the Secret");
    };
    let timing = Timing::new(config.schedule.clone(), config.jitter);
    let metrics = Metrics::new();
    let health = Arc::new(Health::new(LIVENESS_SLACK + config.sync.timeout));

    // Signals first: a SIGTERM during startup must already be graceful.
    let shutdown = match install_signals(health.clone()) {
        Ok(rx) => rx,
        Err(error) => {
            tracing::error!(%error, "failed to install signal handlers");
            return exit::TRANSIENT;
        }
    };
    match admin::serve(config.admin_addr, health.clone(), metrics.clone()).await {
        Ok(addr) => tracing::info!(%addr, "admin server listening (/healthz, /readyz, /metrics)"),
        Err(error) => {
            tracing::error!(addr = %config.admin_addr, %error, "failed to bind the admin server (--admin-addr)");
            return exit::USAGE;
        }
    }
    let client = match k8s::client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %chain(&e), "failed to start watch mode");
            return e.class().exit_code();
        }
    };
    let observer = matches!(config.sync.source, SourceSpec::Vault(_)).then(|| metrics.keyvault_observer());
    let syncer = match Syncer::new(config.sync.clone(), Some(client.clone()), observer).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %chain(&e), class = e.class().as_str(), "failed to start watch mode");
            return e.class().exit_code();
        }
    };
    let istiod = config.sync.restart.enabled.then_some(&config.sync.restart.selector);
    let cache = Cache::start(client.clone(), &namespace, &secret, istiod);

    let mut daemon = Daemon {
        source: config.sync.source.describe(),
        namespace,
        secret,
        syncer,
        cache,
        events: Events::new(client.clone()),
        metrics,
        health,
        timing,
        timeout: config.sync.timeout,
        last_good: None,
        failures: 0,
        heal_failures: 0,
    };
    tracing::info!(source = %daemon.source, namespace = %daemon.namespace, secret = %daemon.secret,
        schedule = %describe_schedule(&config), jitter = %humantime::format_duration(config.jitter),
        leader_election = lease_config.is_some(), "watch mode started");

    let leadership = match &lease_config {
        None => None,
        Some(lease) => match daemon.start_leadership(client, lease, shutdown.clone()).await {
            Some(l) => Some(l),
            // Shutdown began before the Lease manager could start: nothing to release.
            None => return exit::OK,
        },
    };
    let leadership = daemon.run_loop(leadership, shutdown).await;
    if let Some(l) = leadership {
        l.release(RELEASE_TIMEOUT).await;
    }
    daemon.metrics.set_leader(false);
    tracing::info!("watch mode stopped");
    exit::OK
}

fn describe_schedule(config: &WatchConfig) -> String {
    match &config.schedule {
        crate::config::Schedule::Interval(d) => format!("every {}", humantime::format_duration(*d)),
        crate::config::Schedule::Cron(c) => format!("cron {c} (UTC)"),
    }
}

/// First signal: readiness off and a graceful stop; second: abort.
fn install_signals(health: Arc<Health>) -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut received = 0u32;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            received += 1;
            if received == 1 {
                tracing::info!(
                    signal = name,
                    "shutting down: finishing the pass in flight, then releasing the lease (send the signal again to abort)"
                );
                health.begin_shutdown();
                let _ = tx.send(true);
            } else {
                tracing::warn!(signal = name, exit_code = ABORT_EXIT_CODE, "second signal: aborting");
                std::process::exit(ABORT_EXIT_CODE);
            }
        }
    });
    Ok(rx)
}

async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    // A closed channel (the signal task ended) must not look like a shutdown request every poll.
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

struct Daemon {
    source: String,
    namespace: String,
    secret: String,
    syncer: Syncer,
    cache: Cache,
    events: Events,
    metrics: Metrics,
    health: Arc<Health>,
    timing: Timing,
    timeout: Duration,
    last_good: Option<LastGood>,
    failures: u32,
    heal_failures: u32,
}

impl Daemon {
    /// Builds the Lease manager, retrying with backoff until it works or shutdown begins.
    async fn start_leadership(
        &self,
        client: kube::Client,
        lease: &crate::config::LeaseConfig,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<Leadership> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.health.tick(self.timeout + LIVENESS_SLACK);
            let started = tokio::select! {
                started = Leadership::start(client.clone(), lease) => started,
                _ = shutdown_requested(&mut shutdown) => return None,
            };
            match started {
                Ok(l) => {
                    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity,
                        duration = %humantime::format_duration(lease.duration), "leader election started; waiting for the lease");
                    return Some(l);
                }
                Err(error) => {
                    let wait = schedule::backoff(attempt, Duration::from_secs(60), None);
                    tracing::warn!(error = %chain(&error), retry_in = ?wait, "failed to start leader election (needs get, create and patch on leases)");
                    self.health.tick(wait + LIVENESS_SLACK);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown_requested(&mut shutdown) => return None,
                    }
                }
            }
        }
    }

    /// The loop. Returns the leadership so the caller can release it.
    async fn run_loop(
        &mut self,
        mut leadership: Option<Leadership>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<Leadership> {
        let mut leader = leadership.as_ref().is_none_or(Leadership::is_leader);
        self.metrics.set_leader(leader);
        if leader && leadership.is_some() {
            tracing::info!("acquired the lease: this replica is the leader");
        }
        // The first pass runs at once (no jitter), so a new replica gets ready quickly.
        let mut next_pass = Instant::now();
        let mut heal_retry: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if !leader && self.cache.is_synced() {
                // A warm standby can serve: ready, so a rolling update of the Deployment is not blocked.
                self.health.set_ready();
            }
            let wake = heal_retry.map_or(next_pass, |h| h.min(next_pass));
            self.health
                .tick(wake.saturating_duration_since(Instant::now()) + LIVENESS_SLACK + self.timing.max_jitter());
            tokio::select! {
                biased;
                _ = shutdown_requested(&mut shutdown) => break,
                now_leader = async { match leadership.as_mut() { Some(l) => l.changed().await, None => std::future::pending().await } } => {
                    if now_leader != leader {
                        leader = now_leader;
                        self.metrics.set_leader(leader);
                        if leader {
                            tracing::info!("acquired the lease: this replica is the leader");
                            next_pass = Instant::now();
                        } else {
                            tracing::warn!("lost the lease: this replica is a standby now and stops writing");
                            heal_retry = None;
                            // Another leader may sync newer material meanwhile: restoring ours later would be a
                            // downgrade. After a takeover the first pass establishes it afresh.
                            self.last_good = None;
                            self.metrics.forget_material();
                        }
                    }
                }
                _ = self.cache.secret_changed() => {
                    if leader {
                        heal_retry = self.heal().await;
                    }
                }
                _ = self.cache.synced_changed() => {}
                _ = tokio::time::sleep_until(heal_retry.unwrap_or(next_pass).into()), if heal_retry.is_some() => {
                    heal_retry = None;
                    if leader {
                        heal_retry = self.heal().await;
                    }
                }
                _ = tokio::time::sleep_until(next_pass.into()) => {
                    if leader {
                        let wait = self.pass().await;
                        next_pass = Instant::now() + wait;
                        // A restore that was pending is moot: the pass compared and wrote what was needed.
                        heal_retry = None;
                    } else {
                        // A standby only keeps its heartbeat.
                        next_pass = Instant::now() + self.timing.period().max(schedule::MIN_WAIT);
                    }
                }
            }
        }
        self.health.begin_shutdown();
        leadership
    }

    /// One pass with its span, metrics and summary line. Returns the wait before the next one.
    async fn pass(&mut self) -> Duration {
        let span =
            tracing::info_span!("pass", vault = %self.source, namespace = %self.namespace, secret = %self.secret);
        self.health.tick(self.timeout + LIVENESS_SLACK);
        let started = Instant::now();
        let known = self.cache.known();
        let polled = known.secret.is_none() || (self.syncer.config().restart.enabled && known.deployments.is_none());
        span.in_scope(|| tracing::debug!(read_cluster = polled, "pass started"));
        let result = self.syncer.pass(&known).instrument(span.clone()).await;
        let seconds = started.elapsed().as_secs_f64();
        let _enter = span.enter();
        match result {
            Ok(report) => {
                self.failures = 0;
                self.metrics.rotation_gates(None);
                let result = if report.action.wrote() { "changed" } else { "unchanged" };
                let restarted = report.restart.as_ref().map(|r| r.restarted.clone()).unwrap_or_default();
                self.metrics.pass_finished(result, seconds);
                self.metrics.pass_succeeded(&report.report, &restarted);
                self.remember(&report);
                self.health.set_ready();
                let wait = self.timing.after_success();
                tracing::info!(
                    source = %report.source,
                    versions = %report.versions.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    root_fingerprint = %report.root_fingerprint,
                    result = report.action.as_str(),
                    restarted = %restarted.join(","),
                    read_cluster = polled,
                    duration_ms = (seconds * 1000.0) as u64,
                    next_in = %humantime::format_duration(round(wait)),
                    "pass finished: {}", report.action.as_str()
                );
                wait
            }
            Err(error) if error.blocked().is_some() => self.blocked(&error, seconds),
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let class = error.class();
                self.metrics.pass_finished(class.as_str(), seconds);
                let wait = self.timing.after_failure(self.failures, error.retry_after());
                tracing::error!(
                    source = %self.source,
                    result = "failed",
                    class = class.as_str(),
                    failures = self.failures,
                    retry_in = %humantime::format_duration(round(wait)),
                    "pass failed (cacerts keeps its last good material): {}", chain(&error)
                );
                wait
            }
        }
    }

    /// A pass the time gates refused: not a failure (no backoff; `cacerts` holds good material), re-evaluated at
    /// the next pass, which comes at the unblock time if that is sooner.
    fn blocked(&mut self, error: &sync::PassError, seconds: f64) -> Duration {
        let decision = error.blocked().expect("a refused pass");
        self.failures = 0;
        self.metrics.pass_finished("blocked", seconds);
        self.metrics.pass_refused(decision);
        self.health.set_ready();
        let mut wait = self.timing.after_success();
        if let Some(at) = decision.unblock_at() {
            let now = jiff::Timestamp::now();
            let until = if at > now { now.duration_until(at).unsigned_abs() } else { Duration::ZERO };
            // One second late rather than early: the gate opens at `at`, not before.
            wait = wait.min(until + Duration::from_secs(1)).max(schedule::MIN_WAIT);
        }
        tracing::warn!(
            source = %self.source,
            result = "blocked",
            next_in = %humantime::format_duration(round(wait)),
            "pass refused a rotation step (cacerts keeps its material): {}", chain(error)
        );
        wait
    }

    fn remember(&mut self, report: &PassReport) {
        let mut annotations = sync::annotations(&report.source, report.versions.as_ref(), &report.report);
        if let Some(history) = &report.history {
            // A restore after a deletion keeps the rotation history (else its roots would count as propagated).
            annotations.insert(crate::rotation::HISTORY_ANNOTATION.into(), history.clone());
        }
        self.last_good = Some(LastGood { material: report.material.clone(), annotations });
    }

    /// Restores `cacerts` if it drifted from the last validated material. Returns when to try again after a
    /// failed restore (backing off like passes do).
    async fn heal(&mut self) -> Option<Instant> {
        let (Some(last), Some(current)) = (&self.last_good, self.cache.secret()) else { return None };
        let drift = match &current {
            None => "deleted",
            Some(s) if material_of(s) != last.material => "edited",
            Some(_) => return None,
        };
        let span = tracing::info_span!("self_heal", vault = %self.source, namespace = %self.namespace, secret = %self.secret, drift);
        if self.restore(current, drift).instrument(span.clone()).await {
            self.heal_failures = 0;
            return None;
        }
        self.heal_failures = self.heal_failures.saturating_add(1);
        let wait = schedule::backoff(self.heal_failures, self.timing.period(), None);
        span.in_scope(
            || tracing::info!(retry_in = %humantime::format_duration(round(wait)), "will try the restore again"),
        );
        Some(Instant::now() + wait)
    }

    /// Writes the last validated material back. Returns whether `cacerts` now holds it.
    async fn restore(&self, current: Option<k8s_openapi::api::core::v1::Secret>, drift: &str) -> bool {
        let (Some(last), Some(sink)) = (&self.last_good, self.syncer.secret_sink()) else { return true };
        let adopt = self.syncer.config().adopt;
        tracing::warn!("cacerts drifted from the last validated material ({drift}); restoring it");
        self.health.tick(self.timeout + LIVENESS_SLACK);
        let written =
            tokio::time::timeout(self.timeout, sink.write(current, &last.material, &last.annotations, adopt)).await;
        let reference = k8s::reference("v1", "Secret", &self.namespace, &self.secret, None);
        match written {
            Ok(Ok(w)) if w.action.wrote() => {
                self.metrics.self_healed();
                tracing::info!(
                    result = w.action.as_str(),
                    "cacerts restored from the last validated material (no Key Vault call)"
                );
                let reference = k8s::reference(
                    "v1",
                    "Secret",
                    &self.namespace,
                    &self.secret,
                    w.secret.as_ref().and_then(|s| s.metadata.uid.clone()),
                );
                self.events
                    .normal(
                        &reference,
                        "Restored",
                        "SelfHeal",
                        format!("cacerts was {drift}; restored the last validated material"),
                    )
                    .await;
                true
            }
            // Someone (or our own earlier write) already put the right material back.
            Ok(Ok(_)) => true,
            Ok(Err(error)) => {
                tracing::error!(error = %chain(&error), class = error.class().as_str(), "failed to restore cacerts");
                self.events.warning(&reference, "RestoreFailed", "SelfHeal", error.to_string()).await;
                false
            }
            Err(_) => {
                tracing::error!("failed to restore cacerts within --timeout");
                false
            }
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
}
