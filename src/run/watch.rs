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
//! - **Self-heal:** when the watched `cacerts` is deleted, or its four keys differ from the baseline, the
//!   leader writes the baseline back at once (with the annotations of the pass that wrote it). The baseline is
//!   what this process last wrote to `cacerts` (or found already there), taken the moment that write
//!   succeeded, even if the pass failed afterwards (a `--wait` timeout, a 403 on a restart patch): so a
//!   failing pass can never make self-heal put the previous root back. Only validated material is ever
//!   written; before the first write there is nothing to restore and the next pass repairs it. Self-heal never
//!   restores over a `cacerts` whose root-fingerprint annotation names another root than the baseline's: that
//!   is a newer write by cacerts-sync (another replica); it forgets its baseline and lets the next pass decide.
//!   A failed restore is retried with the pass backoff. A restore does not restart istiod: the root is the one
//!   istiod runs. A replica that loses the Lease forgets its baseline (the new leader may sync newer material;
//!   restoring the old one later would be a downgrade).
//! - **Failures** back off exponentially ([`schedule`]). A pass that fails before its write leaves `cacerts`
//!   as it was; one that fails after it is retried forward: the next pass finds the istiod revisions still
//!   owed a restart through the fingerprints recorded on them and restarts them.
//! - **Fencing** (with leader election): every write first checks the Lease ([`crate::fence`]); when the
//!   replica no longer holds it, or its last renewal is too old (renewals failing), the write is skipped and
//!   the replica steps down and re-enters the election.
//! - **istiod's roots:** the ConfigMap `istio-ca-root-cert` is watched too; the gauge
//!   `cacerts_sync_istiod_serving_current_roots` says whether it holds exactly `cacerts`' roots.
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
mod signals;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument as _;

use crate::admin::{self, Health};
use crate::bundle::RawMaterial;
use crate::config::{SourceSpec, TargetSpec, WatchConfig};
use crate::error::{Classify, chain, exit};
use crate::fence::Fence;
use crate::istiod_roots::{self, Serving};
use crate::k8s::{self, Events, ROOT_FINGERPRINT_ANNOTATION};
use crate::metrics::Metrics;
use crate::sink::secret::material_of;
use crate::sync::{Syncer, WrittenMaterial};

use cache::Cache;
use leader::Leadership;
use schedule::Timing;
pub use signals::ABORT_EXIT_CODE;
use signals::{install_signals, shutdown_requested};

/// Slack on top of every deadline the loop promises to `/healthz`.
const LIVENESS_SLACK: Duration = Duration::from_secs(30);
/// How long shutdown waits for the Lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What this process last wrote to `cacerts` (validated material): the self-heal baseline.
struct LastGood {
    material: RawMaterial,
    annotations: BTreeMap<String, String>,
}

impl LastGood {
    /// The root fingerprint the baseline was written with.
    fn root_fingerprint(&self) -> Option<&str> {
        self.annotations.get(ROOT_FINGERPRINT_ANNOTATION).map(String::as_str)
    }
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
    // A pass may run --timeout and then --wait for up to --wait-timeout.
    let pass_budget =
        config.sync.timeout + config.sync.restart.wait.filter(|_| config.sync.restart.enabled).unwrap_or_default();
    let health = Arc::new(Health::new(LIVENESS_SLACK + pass_budget));

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
    let mut syncer = match Syncer::new(config.sync.clone(), Some(client.clone()), observer).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %chain(&e), class = e.class().as_str(), "failed to start watch mode");
            return e.class().exit_code();
        }
    };
    let istiod =
        config.sync.restart.enabled.then_some((config.sync.restart.namespace.as_str(), &config.sync.restart.selector));
    let cache = Cache::start(client.clone(), &namespace, &secret, istiod);
    let fence = lease_config.as_ref().map(|lease| Fence::new(client.clone(), lease));
    if let Some(f) = &fence {
        syncer.set_fence(f.clone());
    }

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
        pass_budget,
        fence,
        fenced: false,
        lease: lease_config.clone().map(|l| (client.clone(), l)),
        last_good: None,
        failures: 0,
        phased: false,
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
    /// `--timeout` plus `--wait-timeout`: how long a pass may take.
    pass_budget: Duration,
    fence: Option<Fence>,
    /// The client and Lease settings, to re-enter the election after stepping down.
    lease: Option<(kube::Client, crate::config::LeaseConfig)>,
    /// A write was refused by the fence: step down before anything else.
    fenced: bool,
    last_good: Option<LastGood>,
    failures: u32,
    /// The first good pass happened, and the one after it was put at a random point of the interval.
    phased: bool,
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
            self.health.tick(self.pass_budget + LIVENESS_SLACK);
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
        // The first pass comes within --jitter (0 s by default in tests), so a new replica gets ready quickly and
        // a fleet whose pods start together does not hit the vault in one second; the pass after it is put at
        // a random point of the interval (see `Timing::after_first_success`).
        let mut next_pass = Instant::now() + self.timing.jitter();
        let mut heal_retry: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if self.fenced {
                self.fenced = false;
                heal_retry = None;
                leader = false;
                self.step_down_state();
                self.metrics.set_leader(false);
                if let Some(l) = leadership.take() {
                    tracing::warn!(
                        "stepped down after a refused write: releasing the lease and re-entering the election"
                    );
                    // Releasing may fail as the renewals did; the Lease then expires by itself.
                    l.release(RELEASE_TIMEOUT).await;
                    leadership = match self.lease.clone() {
                        Some((client, lease)) => match self.start_leadership(client, &lease, shutdown.clone()).await {
                            Some(l) => Some(l),
                            None => break,
                        },
                        None => None,
                    };
                    leader = leadership.as_ref().is_some_and(Leadership::is_leader);
                    self.metrics.set_leader(leader);
                    next_pass = Instant::now();
                }
                continue;
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
                            self.step_down_state();
                        }
                    }
                }
                _ = self.cache.secret_changed() => {
                    if leader {
                        heal_retry = self.heal().await;
                        self.update_serving_gauge();
                    }
                }
                _ = self.cache.roots_changed() => {
                    if leader {
                        self.update_serving_gauge();
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

    /// Forgets what this replica vouched for: another leader may sync newer material meanwhile, and restoring
    /// ours later would be a downgrade. After a takeover the first pass establishes it afresh.
    fn step_down_state(&mut self) {
        self.last_good = None;
        self.metrics.forget_material();
    }

    /// Sets `cacerts_sync_istiod_serving_current_roots` from the watch caches (absent when unknown).
    fn update_serving_gauge(&self) {
        let secret = self.cache.secret().flatten();
        let serving = match (self.cache.istiod_roots(), secret) {
            (Some(cm), Some(secret)) => istiod_roots::compare(cm.as_ref(), &material_of(&secret).root_cert),
            _ => Serving::Unknown,
        };
        self.metrics.set_istiod_serving(match serving {
            Serving::Current => Some(true),
            Serving::Other => Some(false),
            Serving::Unknown => None,
        });
    }

    /// One pass with its span, metrics and summary line. Returns the wait before the next one.
    async fn pass(&mut self) -> Duration {
        let span =
            tracing::info_span!("pass", vault = %self.source, namespace = %self.namespace, secret = %self.secret);
        self.health.tick(self.pass_budget + LIVENESS_SLACK);
        let started = Instant::now();
        let known = self.cache.known();
        let polled = known.secret.is_none() || (self.syncer.config().restart.enabled && known.deployments.is_none());
        span.in_scope(|| tracing::debug!(read_cluster = polled, "pass started"));
        let result = self.syncer.pass(&known).instrument(span.clone()).await;
        let seconds = started.elapsed().as_secs_f64();
        let _enter = span.enter();
        // What the pass wrote is the baseline from the moment the write succeeded, whatever happened after it.
        if let Some(written) = self.syncer.take_written() {
            if result.is_err() {
                tracing::warn!(
                    root_fingerprint =
                        written.annotations.get(ROOT_FINGERPRINT_ANNOTATION).map(String::as_str).unwrap_or_default(),
                    "the pass failed after writing cacerts: self-heal keeps what was written, and the next pass finishes the restarts still owed"
                );
            }
            self.remember(written);
        }
        self.update_serving_gauge();
        match result {
            Ok(report) => {
                self.failures = 0;
                self.metrics.rotation_gates(None);
                let result = if report.action.wrote() { "changed" } else { "unchanged" };
                let restarted = report.restart.as_ref().map(|r| r.restarted.clone()).unwrap_or_default();
                self.metrics.pass_finished(result, seconds);
                self.metrics.pass_succeeded(&report.report, &restarted);
                self.health.set_ready();
                let wait = if std::mem::replace(&mut self.phased, true) {
                    self.timing.after_success()
                } else {
                    self.timing.after_first_success()
                };
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
                if error.is_fenced() {
                    tracing::warn!(error = %chain(&error), "write skipped: this replica may no longer lead");
                    self.fenced = true;
                }
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
    fn blocked(&mut self, error: &crate::sync::PassError, seconds: f64) -> Duration {
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

    fn remember(&mut self, written: WrittenMaterial) {
        self.last_good = Some(LastGood { material: written.material, annotations: written.annotations });
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
        let written_root =
            current.as_ref().and_then(|s| s.metadata.annotations.as_ref()?.get(ROOT_FINGERPRINT_ANNOTATION));
        if let (Some(theirs), Some(ours)) = (written_root, last.root_fingerprint())
            && theirs != ours
        {
            // cacerts-sync wrote another root after our baseline (another replica, or an older process that
            // still thought it led): restoring ours could take the mesh backwards. The next pass decides.
            tracing::warn!(namespace = %self.namespace, secret = %self.secret, written = %theirs, baseline = %ours,
                "cacerts holds a root that cacerts-sync wrote after this replica's last write; not restoring, the next pass decides");
            self.last_good = None;
            return None;
        }
        let span = tracing::info_span!("self_heal", vault = %self.source, namespace = %self.namespace, secret = %self.secret, drift);
        if let Err(error) = crate::fence::check(self.fence.as_ref(), "restore cacerts").instrument(span.clone()).await {
            span.in_scope(
                || tracing::warn!(error = %chain(&error), "restore skipped: this replica may no longer lead"),
            );
            self.fenced = true;
            return None;
        }
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
        tracing::warn!("cacerts drifted from what this process last wrote ({drift}); restoring it");
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
