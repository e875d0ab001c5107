//! One sync pass: fetch → validate (waiting out a torn rotation) → diff → write → restart decision → report.
//!
//! `sync` runs one pass; `watch` runs the same pass on a schedule with a [`Syncer`] it keeps, so the Key Vault
//! client (and its cached token) and the Kubernetes client live across passes.

mod gates;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;

use crate::bundle::{self, Deployed, Fingerprint, RawMaterial, Report, ValidationOptions, Verdict};
use crate::config::{SourceSpec, SyncConfig, TargetSpec};
use crate::error::{Classify, FailureClass};
use crate::k8s::{self, ANNOTATION_PREFIX, Events, KubeError};
use crate::restart::{Baseline, RestartError, RestartOutcome, Restarter};
use crate::sink::WriteAction;
use crate::sink::dir::{DirError, DirSink};
use crate::sink::secret::{SecretError, SecretSink, material_of};
use crate::source::{Fetched, Source, SourceError, Versions, dir::DirSource, keyvault};

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{}", invalid_message(.report, *.waited))]
    Invalid { report: Box<Report>, waited: Option<Duration> },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Restart(#[from] RestartError),
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("the pass did not finish within --timeout {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The time gates refuse the change (nothing written).
    #[error("{0}")]
    Blocked(Box<gates::Refusal>),
}

impl PassError {
    /// The gates' decision, when the time gates refused the change.
    pub fn blocked(&self) -> Option<&crate::rotation::GateDecision> {
        match self {
            PassError::Blocked(r) => Some(&r.decision),
            _ => None,
        }
    }
}

fn invalid_message(report: &Report, waited: Option<Duration>) -> String {
    // Warnings go along: "the new bundle drops the root that anchors the live intermediate" explains the error.
    let findings: Vec<String> = report.errors().chain(report.warnings()).map(|f| f.message.clone()).collect();
    match waited {
        Some(w) => format!(
            "material in the source is still inconsistent after waiting {} (a rotation looks half-finished): {}; cacerts was left untouched",
            humantime::format_duration(w),
            findings.join("; ")
        ),
        None => format!("material in the source is invalid: {}; cacerts was left untouched", findings.join("; ")),
    }
}

impl Classify for PassError {
    fn class(&self) -> FailureClass {
        match self {
            PassError::Source(e) => e.class(),
            PassError::Invalid { .. } => FailureClass::Invalid,
            PassError::Secret(e) => e.class(),
            PassError::Restart(e) => e.class(),
            PassError::Dir(e) => e.class(),
            PassError::Kube(e) => e.class(),
            PassError::Timeout(_) => FailureClass::Transient,
            PassError::Blocked(_) => FailureClass::Blocked,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PassError::Source(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// What a successful pass did.
#[derive(Clone, Debug)]
pub struct PassReport {
    pub source: String,
    pub versions: Option<Versions>,
    pub report: Report,
    pub root_fingerprint: Fingerprint,
    pub action: WriteAction,
    pub restart: Option<RestartOutcome>,
    /// The material that is now in the target (the last validated material).
    pub material: RawMaterial,
    pub dry_run: bool,
    /// The rotation history annotation now on `cacerts` (written by this pass, or as it was).
    pub history: Option<String>,
}

/// What watch mode already knows from its watches, so a pass needs no polling reads.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// The `cacerts` Secret as last seen (`Some(None)`: known not to exist).
    pub secret: Option<Option<Secret>>,
    /// The istiod Deployments as last seen.
    pub deployments: Option<Vec<Deployment>>,
}

#[allow(clippy::large_enum_variant, reason = "built once per process")]
enum Target {
    Secret { sink: SecretSink, restarter: Option<Restarter>, events: Events },
    Dir(DirSink),
}

/// Everything a pass needs, built once.
pub struct Syncer {
    config: SyncConfig,
    source: Source,
    target: Target,
}

impl Syncer {
    /// Builds the source and target clients. `client` is reused when given (watch mode shares it).
    pub async fn new(
        config: SyncConfig,
        client: Option<kube::Client>,
        observer: Option<keyvault::Observer>,
    ) -> Result<Self, PassError> {
        let source = match &config.source {
            SourceSpec::Vault(v) => Source::Vault(keyvault::VaultSource::new(v, observer)?),
            SourceSpec::Dir(d) => Source::Dir(DirSource::new(d)),
            SourceSpec::Secret { .. } => unreachable!("config only allows secret: sources for inspect"),
        };
        let target = match &config.target {
            TargetSpec::Dir(d) => Target::Dir(DirSink::new(d)),
            TargetSpec::Secret { namespace, name } => {
                let client = match client {
                    Some(c) => c,
                    None => k8s::client().await?,
                };
                let events = Events::new(client.clone());
                let restarter = config
                    .restart
                    .enabled
                    .then(|| Restarter::new(client.clone(), config.restart.clone(), Some(events.clone())));
                Target::Secret { sink: SecretSink::new(client, namespace, name), restarter, events }
            }
        };
        Ok(Self { config, source, target })
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The Secret sink (None for a directory target).
    pub fn secret_sink(&self) -> Option<&SecretSink> {
        match &self.target {
            Target::Secret { sink, .. } => Some(sink),
            Target::Dir(_) => None,
        }
    }

    /// One pass, bounded by `--timeout`. A failure is also reported as a Warning Event on the Secret.
    pub async fn pass(&self, known: &Known) -> Result<PassReport, PassError> {
        let result = match tokio::time::timeout(self.config.timeout, self.pass_inner(known)).await {
            Ok(result) => result,
            Err(_) => Err(PassError::Timeout(self.config.timeout)),
        };
        if let (Err(error), Target::Secret { sink, events, .. }) = (&result, &self.target) {
            // Invalid material has its own InvalidMaterial event; a Kubernetes failure would most likely fail
            // to publish the event as well.
            if matches!(
                error,
                PassError::Source(_)
                    | PassError::Restart(_)
                    | PassError::Timeout(_)
                    | PassError::Secret(SecretError::NotAdopted { .. } | SecretError::WrongType { .. })
            ) {
                let r = k8s::reference("v1", "Secret", sink.namespace(), sink.name(), None);
                events.warning(&r, "SyncFailed", "Sync", crate::error::chain(error)).await;
            }
        }
        result
    }

    async fn pass_inner(&self, known: &Known) -> Result<PassReport, PassError> {
        // Read the vault and the current cacerts at the same time: both are round trips.
        let (fetched, current) = match &self.target {
            Target::Secret { sink, .. } => match &known.secret {
                Some(secret) => (self.source.fetch().await, Ok(secret.clone())),
                None => tokio::join!(self.source.fetch(), sink.get()),
            },
            Target::Dir(_) => (self.source.fetch().await, Ok(None)),
        };
        let current: Option<Secret> = current?;
        let deployed_material = match &self.target {
            Target::Secret { .. } => current.as_ref().map(material_of),
            Target::Dir(d) => Some(d.read()).filter(|m| !m.root_cert.is_empty()),
        };
        let (fetched, report) = self.validated(fetched?, deployed_material.as_ref()).await?;
        for finding in report.warnings() {
            tracing::warn!(secret = ?finding.secret, code = ?finding.code, "{}", finding.message);
        }
        let root_fingerprint = report.root_fingerprint.clone().expect("a valid report has a root fingerprint");
        let source = self.source.describe();
        // The time gates, judged against the cacerts this pass already read.
        let gate = self.gate(current.as_ref(), &fetched.material, &report, known).await?;
        let unsafe_write = gate.as_ref().filter(|d| !d.allowed()).map(|d| d.message());
        let history = match &gate {
            Some(decision) => Some(decision.history.to_annotation()),
            None => gates::recorded_annotation(current.as_ref()),
        };
        let (action, restart) = match &self.target {
            Target::Dir(sink) => {
                if self.config.dry_run {
                    print_diff(deployed_material.as_ref(), &fetched.material, &report, self.config.expiry_warning);
                }
                (sink.write(&fetched.material, self.config.dry_run)?, None)
            }
            Target::Secret { sink, restarter, events } => {
                let mut annotations = annotations(&source, fetched.versions.as_ref(), &report);
                if let Some(decision) = &gate {
                    // The history goes in the same patch as the data: both land, or neither does.
                    annotations.insert(crate::rotation::HISTORY_ANNOTATION.into(), decision.history.to_annotation());
                }
                let baseline = match &current {
                    None => Baseline::Created,
                    Some(secret) => Baseline::Existing(
                        bundle::root_fingerprint(&material_of(secret).root_cert).ok().map(|f| f.to_string()),
                    ),
                };
                // Events are published after the restart step: they must not delay istiod's restart.
                let mut notes: Vec<(&str, String)> = Vec::new();
                let mut regarding = None;
                let action = if self.config.dry_run {
                    print_diff(deployed_material.as_ref(), &fetched.material, &report, self.config.expiry_warning);
                    sink.plan(current.as_ref(), &fetched.material, self.config.adopt)?
                } else {
                    if let Some(restarter) = restarter
                        && baseline.differs_from(root_fingerprint.as_str())
                    {
                        // Before the root changes in cacerts, write down on every istiod that has no fingerprint
                        // yet which root it runs. If the restart below then fails, the next pass still sees those
                        // Deployments behind instead of mistaking them for first contact.
                        restarter.pin_baseline(&baseline, known.deployments.clone()).await?;
                    }
                    let written =
                        sink.write(current.clone(), &fetched.material, &annotations, self.config.adopt).await?;
                    regarding = Some(secret_ref(sink, written.secret.as_ref()));
                    if let Some(risk) = unsafe_write.as_ref().filter(|_| written.action.wrote()) {
                        notes.push((
                            "UnsafeRotation",
                            format!("wrote a rotation step the time gates refuse (--allow-unsafe-rotation); workloads may fail mTLS with each other: {risk}"),
                        ));
                    }
                    match &written.action {
                        WriteAction::Unchanged => {}
                        WriteAction::Created => {
                            tracing::info!(namespace = sink.namespace(), secret = sink.name(), "cacerts created");
                            notes.push((
                                "Synced",
                                format!(
                                    "created from {source}{} (root fingerprint {root_fingerprint})",
                                    versions_note(fetched.versions.as_ref())
                                ),
                            ));
                        }
                        WriteAction::Updated { changed, adopted } => {
                            let keys: Vec<&str> = changed.iter().map(|r| r.file_name()).collect();
                            if *adopted {
                                tracing::info!(
                                    namespace = sink.namespace(),
                                    secret = sink.name(),
                                    "adopted existing cacerts Secret (it was not managed by cacerts-sync); other keys, labels and annotations are kept"
                                );
                                notes.push((
                                    "Adopted",
                                    format!("cacerts-sync took over this Secret; updated {}", keys.join(", ")),
                                ));
                            }
                            tracing::info!(namespace = sink.namespace(), secret = sink.name(), keys = %keys.join(","), "cacerts updated");
                            notes.push((
                                "Synced",
                                format!(
                                    "updated {} from {source}{} (root fingerprint {root_fingerprint})",
                                    keys.join(", "),
                                    versions_note(fetched.versions.as_ref())
                                ),
                            ));
                        }
                    }
                    written.action
                };
                let restart = match restarter {
                    Some(restarter) => Some(
                        restarter
                            .reconcile(
                                root_fingerprint.as_str(),
                                &baseline,
                                known.deployments.clone(),
                                self.config.dry_run,
                            )
                            .await,
                    ),
                    None => None,
                };
                if let Some(r) = &regarding {
                    for (reason, note) in notes {
                        if reason == "UnsafeRotation" {
                            events.warning(r, reason, "Sync", note).await;
                        } else {
                            events.normal(r, reason, "Sync", note).await;
                        }
                    }
                }
                let restart = restart.transpose()?;
                (action, restart)
            }
        };
        Ok(PassReport {
            source,
            versions: fetched.versions,
            report,
            root_fingerprint,
            action,
            restart,
            material: fetched.material,
            dry_run: self.config.dry_run,
            history,
        })
    }

    /// Validates, and while the result looks like a half-finished rotation, re-reads with backoff for up to
    /// `--consistency-timeout`.
    async fn validated(
        &self,
        mut fetched: Fetched,
        deployed: Option<&RawMaterial>,
    ) -> Result<(Fetched, Report), PassError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_secs(1);
        loop {
            let options = ValidationOptions { now: jiff::Timestamp::now(), expiry_warning: self.config.expiry_warning };
            let deployed = deployed.map(|d| Deployed { root_cert: &d.root_cert, ca_cert: &d.ca_cert });
            let report = bundle::validate(&fetched.material, &options, deployed.as_ref());
            match report.verdict {
                Verdict::Valid => return Ok((fetched, report)),
                Verdict::Invalid => {
                    self.warn_invalid(&report).await;
                    return Err(PassError::Invalid { report: Box::new(report), waited: None });
                }
                Verdict::Torn => {
                    let waited = started.elapsed();
                    if waited >= self.config.consistency_timeout {
                        self.warn_invalid(&report).await;
                        return Err(PassError::Invalid { report: Box::new(report), waited: Some(waited) });
                    }
                    let wait = delay.min(self.config.consistency_timeout - waited);
                    let findings: Vec<&str> = report.errors().map(|f| f.message.as_str()).collect();
                    tracing::warn!(wait = ?wait, findings = %findings.join("; "),
                        "material looks like a half-finished rotation; re-reading the source");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    fetched = self.source.fetch().await?;
                }
            }
        }
    }

    async fn warn_invalid(&self, report: &Report) {
        if let Target::Secret { sink, events, .. } = &self.target {
            let findings: Vec<&str> = report.errors().map(|f| f.message.as_str()).collect();
            let r = k8s::reference("v1", "Secret", sink.namespace(), sink.name(), None);
            events
                .warning(
                    &r,
                    "InvalidMaterial",
                    "Validate",
                    format!("not syncing from {}: {}", self.source.describe(), findings.join("; ")),
                )
                .await;
        }
    }
}

fn versions_note(versions: Option<&Versions>) -> String {
    versions.map(|v| format!(" ({v})")).unwrap_or_default()
}

fn secret_ref(sink: &SecretSink, secret: Option<&Secret>) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s::reference("v1", "Secret", sink.namespace(), sink.name(), secret.and_then(|s| s.metadata.uid.clone()))
}

/// The annotations a sync puts on `cacerts`.
pub fn annotations(source: &str, versions: Option<&Versions>, report: &Report) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(format!("{ANNOTATION_PREFIX}source"), source.to_string());
    if let Some(v) = versions {
        a.insert(format!("{ANNOTATION_PREFIX}versions"), v.to_string());
    }
    if let Some(fp) = &report.root_fingerprint {
        a.insert(k8s::ROOT_FINGERPRINT_ANNOTATION.to_string(), fp.to_string());
    }
    if let Some(fp) = &report.material_fingerprint {
        a.insert(format!("{ANNOTATION_PREFIX}material-fingerprint"), fp.to_string());
    }
    a.insert(
        format!("{ANNOTATION_PREFIX}synced-at"),
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    a
}

/// Prints what a dry run would change: per key, old and new subjects, serials, expiry and fingerprints.
/// Never prints key material: the key is described by whether it changed only.
fn print_diff(old: Option<&RawMaterial>, new: &RawMaterial, new_report: &Report, expiry_warning: Duration) {
    let old_report =
        old.map(|m| bundle::validate(m, &ValidationOptions { now: jiff::Timestamp::now(), expiry_warning }, None));
    println!("dry run: nothing will be written");
    for role in bundle::SecretRole::ALL {
        let changed = old.is_none_or(|o| o.get(role) != new.get(role));
        println!("{}: {}", role.file_name(), if changed { "would change" } else { "unchanged" });
        if !changed || role == bundle::SecretRole::CaKey {
            continue;
        }
        let describe = |report: &Report| -> Vec<String> {
            report
                .certificates
                .iter()
                .filter(|c| c.role == role)
                .map(|c| {
                    format!("subject {:?} serial {} notAfter {} sha256 {}", c.subject, c.serial, c.not_after, c.sha256)
                })
                .collect()
        };
        if let Some(r) = &old_report {
            for line in describe(r) {
                println!("  - {line}");
            }
        }
        for line in describe(new_report) {
            println!("  + {line}");
        }
    }
    let old_fp = old_report
        .as_ref()
        .and_then(|r| r.root_fingerprint.as_ref())
        .map(|f| f.to_string())
        .unwrap_or_else(|| "none".into());
    let new_fp = new_report.root_fingerprint.as_ref().map(|f| f.to_string()).unwrap_or_default();
    if old_fp == new_fp {
        println!("root fingerprint: {new_fp} (unchanged: no istiod restart)");
    } else {
        println!("root fingerprint: {old_fp} -> {new_fp} (root changed: istiod would be restarted)");
    }
}
