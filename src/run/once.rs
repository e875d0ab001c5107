//! One-shot subcommands: `sync`, `check-root` and `inspect`. Each ends with one summary log line and an exit
//! code from the shared table.

use crate::bundle::{self, ValidationOptions, Verdict};
use crate::config::{CheckRootConfig, InspectConfig, SourceSpec, SyncConfig};
use crate::error::{Classify, FailureClass, chain, exit};
use crate::k8s::{self, KubeError};
use crate::restart::{Baseline, Restarter};
use crate::sink::secret::{SecretSink, material_of};
use crate::source::{Source, SourceError, dir::DirSource, keyvault::VaultSource};
use crate::sync::{Known, PassError, Syncer};

/// `cacerts-sync sync`.
pub async fn sync(config: SyncConfig) -> u8 {
    let source = config.source.describe();
    let syncer = match Syncer::new(config, None, None).await {
        Ok(s) => s,
        Err(e) => return failed("sync", &source, &e),
    };
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
        Err(e) => failed("sync", &source, &e),
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
    match tokio::time::timeout(config.timeout, check_root_inner(&config)).await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => failed("check-root", &target, &e),
        Err(_) => failed("check-root", &target, &PassError::Timeout(config.timeout)),
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
            CheckRootError::BadRoot { .. } => FailureClass::Invalid,
        }
    }
}

async fn check_root_inner(config: &CheckRootConfig) -> Result<u8, CheckRootError> {
    let client = k8s::client().await?;
    let sink = SecretSink::new(client.clone(), &config.namespace, &config.secret);
    let secret = sink
        .get()
        .await?
        .ok_or_else(|| CheckRootError::Missing { namespace: config.namespace.clone(), name: config.secret.clone() })?;
    let fingerprint = bundle::root_fingerprint(&material_of(&secret).root_cert).map_err(|source| {
        CheckRootError::BadRoot { namespace: config.namespace.clone(), name: config.secret.clone(), source }
    })?;
    let events = k8s::Events::new(client.clone());
    let restarter = Restarter::new(client, config.restart.clone(), Some(events));
    // The Secret is not written here, so what it holds now is also what istiod saw before: first contact records.
    let outcome = restarter
        .reconcile(fingerprint.as_str(), &Baseline::Existing(Some(fingerprint.to_string())), None, false)
        .await?;
    tracing::info!(
        secret = %format!("{}/{}", config.namespace, config.secret),
        root_fingerprint = %fingerprint,
        matched = %outcome.matched.join(","),
        restarted = %outcome.restarted.join(","),
        recorded = %outcome.recorded.join(","),
        result = if outcome.restarted.is_empty() { "unchanged" } else { "restarted" },
        "check-root finished"
    );
    Ok(exit::OK)
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
