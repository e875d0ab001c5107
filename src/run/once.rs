//! One-shot subcommands: `sync`, `check-root` and `inspect`. Each ends with one summary log line and an exit
//! code from the shared table.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::bundle::{self, ValidationOptions, Verdict};
use crate::config::{CheckRootConfig, InspectConfig, SourceSpec, SyncConfig};
use crate::error::{Classify, FailureClass, chain, exit};
use crate::k8s::{self, KubeError};
use crate::restart::{Baseline, Observed, Restarter};
use crate::sink::secret::{SecretSink, material_of};
use crate::source::{Source, SourceError, dir::DirSource, keyvault::VaultSource};
use crate::sync::{Known, PassError, Syncer};

/// `cacerts-sync sync`: the clients are built first (a setup error exits at once), then `--jitter` waits a
/// random delay, then the pass runs under its own `--timeout`.
///
/// With a jitter, SIGTERM/SIGINT get handlers for the rest of the run: during the delay the process ends at once
/// with 128 + the signal's number (143, 130) and reads nothing, as a shell reports a job a signal ended; during
/// the pass it ends the same way, which is what the signal's default action does to a `sync` without jitter.
/// Exit 0 would tell the Job controller that a pass ran when none did.
pub async fn sync(config: SyncConfig) -> u8 {
    let source = config.source.describe();
    let jitter = config.start_jitter;
    let syncer = match Syncer::new(config, None, None).await {
        Ok(s) => s,
        Err(e) => return failed("sync", &source, &e),
    };
    if jitter.is_zero() {
        // By hand (the default): start at once, and leave SIGTERM/SIGINT their default action.
        return pass(&syncer, &source).await;
    }
    let mut stop = match StopSignals::install() {
        Ok(stop) => stop,
        Err(error) => {
            tracing::error!(%error, "failed to install signal handlers");
            return exit::TRANSIENT;
        }
    };
    let delay = random_delay(jitter);
    tracing::info!(
        source = %source,
        delay = %humantime::format_duration(delay),
        jitter = %humantime::format_duration(jitter),
        "waiting {} before the pass (a random delay of up to --jitter, so a fleet spreads its Key Vault reads)",
        humantime::format_duration(delay)
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        signal = stop.recv() => {
            tracing::info!(
                source = %source,
                signal = signal.name(),
                result = "stopped",
                exit_code = signal.exit_code(),
                "sync stopped by {} during the jitter delay: nothing was read or written",
                signal.name()
            );
            return signal.exit_code();
        }
    }
    tokio::select! {
        code = pass(&syncer, &source) => code,
        signal = stop.recv() => {
            tracing::warn!(
                source = %source,
                signal = signal.name(),
                result = "stopped",
                exit_code = signal.exit_code(),
                "sync aborted by {} during the pass; the next run starts over",
                signal.name()
            );
            signal.exit_code()
        }
    }
}

/// One pass and its summary line.
async fn pass(syncer: &Syncer, source: &str) -> u8 {
    match syncer.pass(&Known::default()).await {
        Ok(report) => {
            let restarted = report.restart.as_ref().map(|r| r.restarted.join(",")).unwrap_or_default();
            tracing::info!(
                source = %report.source,
                versions = %report.versions.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                root_fingerprint = %report.root_fingerprint,
                result = report.action.as_str(),
                dry_run = report.dry_run,
                restarted = %restarted,
                "sync finished: {}{}",
                report.action.as_str(),
                if report.dry_run { " (dry run, nothing written)" } else { "" }
            );
            exit::OK
        }
        Err(e) => failed("sync", source, &e),
    }
}

/// A uniformly random delay in `[0, max]`, in whole milliseconds (as watch mode's `--jitter`).
fn random_delay(max: Duration) -> Duration {
    let max = max.as_millis().min(u128::from(u64::MAX)) as u64;
    if max == 0 { Duration::ZERO } else { Duration::from_millis(rand::random_range(0..=max)) }
}

/// The signals that stop a one-shot `sync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopSignal {
    Term,
    Int,
}

impl StopSignal {
    fn kind(self) -> SignalKind {
        match self {
            StopSignal::Term => SignalKind::terminate(),
            StopSignal::Int => SignalKind::interrupt(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
        }
    }

    /// 128 + the signal's number: 143 for SIGTERM, 130 for SIGINT.
    fn exit_code(self) -> u8 {
        u8::try_from(128 + self.kind().as_raw_value()).expect("signal numbers are small")
    }
}

struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self { term: signal(StopSignal::Term.kind())?, int: signal(StopSignal::Int.kind())? })
    }

    async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Term,
            _ = self.int.recv() => StopSignal::Int,
        }
    }
}

fn failed<E: Classify + std::error::Error + 'static>(command: &str, source: &str, error: &E) -> u8 {
    let class = error.class();
    tracing::error!(
        source,
        result = if class == FailureClass::Blocked { "blocked" } else { "failed" },
        class = class.as_str(),
        exit_code = class.exit_code(),
        "{command} failed: {}",
        chain(error)
    );
    class.exit_code()
}

/// `cacerts-sync check-root`.
pub async fn check_root(config: CheckRootConfig) -> u8 {
    let target = format!("secret:{}/{}", config.namespace, config.secret);
    let checked = match tokio::time::timeout(config.timeout, check_root_inner(&config)).await {
        Ok(Ok(checked)) => checked,
        Ok(Err(e)) => return failed("check-root", &target, &e),
        Err(_) => return failed("check-root", &target, &PassError::Timeout(config.timeout)),
    };
    // `--wait` is bounded by --wait-timeout alone, not by the --timeout of the check.
    let (restarter, roots, restarted) = checked;
    match restarter.wait_timeout() {
        Some(wait) => match restarter.wait(&restarted, &roots, wait).await {
            Ok(()) => exit::OK,
            Err(e) => failed("check-root", &target, &e),
        },
        None => exit::OK,
    }
}

#[derive(Debug, thiserror::Error)]
enum CheckRootError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Restart(#[from] crate::restart::RestartError),
    #[error(
        "secret {namespace}/{name} does not exist: nothing to check (sync it first, or check --namespace/--secret)"
    )]
    Missing { namespace: String, name: String },
    #[error(
        "failed to validate secret {namespace}/{name}: its material is {verdict}, istiod would not start with it (or workloads would break); nothing restarted, no fingerprint recorded: {findings}"
    )]
    Invalid { namespace: String, name: String, verdict: Verdict, findings: String },
    #[error("failed to read root-cert.pem in secret {namespace}/{name}")]
    BadRoot {
        namespace: String,
        name: String,
        #[source]
        source: bundle::ParseError,
    },
}

impl Classify for CheckRootError {
    fn class(&self) -> FailureClass {
        match self {
            CheckRootError::Kube(e) => e.class(),
            CheckRootError::Restart(e) => e.class(),
            CheckRootError::Missing { .. } => FailureClass::Usage,
            CheckRootError::BadRoot { .. } | CheckRootError::Invalid { .. } => FailureClass::Invalid,
        }
    }
}

/// Checks and restarts; returns what `--wait` needs: the restarter, the roots and the restarted Deployments.
async fn check_root_inner(config: &CheckRootConfig) -> Result<(Restarter, Vec<u8>, Vec<String>), CheckRootError> {
    let client = k8s::client().await?;
    let sink = SecretSink::new(client.clone(), &config.namespace, &config.secret);
    let secret = sink
        .get()
        .await?
        .ok_or_else(|| CheckRootError::Missing { namespace: config.namespace.clone(), name: config.secret.clone() })?;
    let material = material_of(&secret);
    let events = k8s::Events::new(client.clone());
    // Restarting istiod into material it refuses is an outage, and recording the fingerprint would keep
    // it from ever restarting again: the whole cacerts must pass istiod's check first. The Secret is
    // written in one update, so a torn state here does not resolve by waiting.
    let report = bundle::validate(&material, &ValidationOptions::default(), None);
    if report.verdict != Verdict::Valid {
        let findings: Vec<&str> = report.errors().map(|f| f.message.as_str()).collect();
        let error = CheckRootError::Invalid {
            namespace: config.namespace.clone(),
            name: config.secret.clone(),
            verdict: report.verdict,
            findings: findings.join("; "),
        };
        let r = k8s::reference("v1", "Secret", &config.namespace, &config.secret, secret.metadata.uid.clone());
        events.warning(&r, "InvalidMaterial", "CheckRoot", error.to_string()).await;
        return Err(error);
    }
    let fingerprint = bundle::root_fingerprint(&material.root_cert).map_err(|source| CheckRootError::BadRoot {
        namespace: config.namespace.clone(),
        name: config.secret.clone(),
        source,
    })?;
    let restarter = Restarter::new(client, config.restart.clone(), Some(events));
    // The Secret is not written here, so what it holds now is also what istiod saw before: first contact records.
    let roots = material_of(&secret).root_cert.clone();
    let baseline = Baseline::Existing(Some(fingerprint.to_string()));
    let outcome = restarter.reconcile(fingerprint.as_str(), &roots, &baseline, Observed::default(), false).await?;
    tracing::info!(
        secret = %format!("{}/{}", config.namespace, config.secret),
        root_fingerprint = %fingerprint,
        matched = %outcome.matched.join(","),
        restarted = %outcome.restarted.join(","),
        recorded = %outcome.recorded.join(","),
        result = if outcome.restarted.is_empty() { "unchanged" } else { "restarted" },
        "check-root finished"
    );
    Ok((restarter, roots, outcome.restarted))
}

/// `cacerts-sync inspect`.
pub async fn inspect(config: InspectConfig) -> u8 {
    let source = config.source.describe();
    let fetched = match tokio::time::timeout(config.timeout, fetch_for_inspect(&config.source)).await {
        Ok(Ok(material)) => material,
        Ok(Err(e)) => return failed("inspect", &source, &e),
        Err(_) => return failed("inspect", &source, &PassError::Timeout(config.timeout)),
    };
    let options = ValidationOptions { now: jiff::Timestamp::now(), expiry_warning: config.expiry_warning };
    let report = bundle::validate(&fetched, &options, None);
    if config.json {
        let mut json = crate::inspect::render_json(&report);
        if let Some(obj) = json.as_object_mut() {
            obj.insert("source".into(), source.clone().into());
        }
        println!("{}", serde_json::to_string_pretty(&json).expect("JSON value serializes"));
    } else {
        println!("source: {source}");
        print!("{}", crate::inspect::render_text(&report));
    }
    if report.verdict == Verdict::Valid { exit::OK } else { exit::INVALID }
}

#[derive(Debug, thiserror::Error)]
enum InspectError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("secret {namespace}/{name} does not exist")]
    Missing { namespace: String, name: String },
}

impl Classify for InspectError {
    fn class(&self) -> FailureClass {
        match self {
            InspectError::Source(e) => e.class(),
            InspectError::Kube(e) => e.class(),
            InspectError::Missing { .. } => FailureClass::Usage,
        }
    }
}

async fn fetch_for_inspect(spec: &SourceSpec) -> Result<bundle::RawMaterial, InspectError> {
    match spec {
        SourceSpec::Vault(v) => Ok(Source::Vault(VaultSource::new(v, None)?).fetch().await?.material),
        SourceSpec::Dir(d) => Ok(Source::Dir(DirSource::new(d)).fetch().await?.material),
        SourceSpec::Secret { namespace, name } => {
            let client = k8s::client().await?;
            let secret = SecretSink::new(client, namespace, name)
                .get()
                .await?
                .ok_or_else(|| InspectError::Missing { namespace: namespace.clone(), name: name.clone() })?;
            Ok(material_of(&secret))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jitter_delay_stays_within_its_bound_and_zero_means_none() {
        let max = Duration::from_secs(2);
        for _ in 0..1000 {
            assert!(random_delay(max) <= max);
        }
        assert_eq!(random_delay(Duration::ZERO), Duration::ZERO);
        // Below a millisecond there is nothing to spread.
        assert_eq!(random_delay(Duration::from_micros(900)), Duration::ZERO);
        assert!(random_delay(Duration::MAX) <= Duration::MAX);
    }

    #[test]
    fn the_jitter_delay_spreads_over_the_whole_range() {
        let max = Duration::from_millis(1000);
        let delays: Vec<Duration> = (0..2000).map(|_| random_delay(max)).collect();
        // Uniform over 1001 values: both tenths at the ends are hit (the chance to miss one is ~1e-91).
        assert!(delays.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(900)));
    }

    #[test]
    fn a_signal_during_the_jitter_exits_like_a_shell_reports_it() {
        assert_eq!(StopSignal::Term.exit_code(), 143);
        assert_eq!(StopSignal::Int.exit_code(), 130);
    }
}
