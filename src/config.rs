//! Command line → one validated configuration.
//!
//! Everything that can be checked without I/O is checked here, so a typo fails with exit 2 before any network
//! call. The endpoints live in the configuration (not in code), which is how the same code talks to Azure and
//! to the local emulator.

use std::path::PathBuf;
use std::time::Duration;

use crate::bundle::SecretRole;
use crate::cli::{self, AuthMode};

mod names;
pub use names::{CLUSTER_PLACEHOLDER, NameTemplates};

/// A configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no source given: pass --vault-url https://NAME.vault.azure.net or --source dir:PATH")]
    NoSource,
    #[error("invalid --source {spec:?}: expected {expected}")]
    BadSource { spec: String, expected: &'static str },
    #[error("invalid --vault-url {url:?}: {reason}")]
    BadVaultUrl { url: String, reason: String },
    #[error("invalid --target {spec:?}: expected dir:PATH")]
    BadTarget { spec: String },
    #[error("invalid --istiod-selector {selector:?}: {reason}")]
    BadSelector { selector: String, reason: &'static str },
    #[error("invalid --schedule {schedule:?}")]
    BadSchedule {
        schedule: String,
        #[source]
        source: cron::error::Error,
    },
    #[error("invalid {flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

/// The Key Vault secret names for the four objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretNames {
    pub root_cert: String,
    pub ca_cert: String,
    pub ca_key: String,
    pub cert_chain: String,
}

impl SecretNames {
    /// The vault secret name that holds `role`.
    pub fn get(&self, role: SecretRole) -> &str {
        match role {
            SecretRole::RootCert => &self.root_cert,
            SecretRole::CaCert => &self.ca_cert,
            SecretRole::CaKey => &self.ca_key,
            SecretRole::CertChain => &self.cert_chain,
        }
    }
}

impl Default for SecretNames {
    fn default() -> Self {
        Self {
            root_cert: SecretRole::RootCert.name().into(),
            ca_cert: SecretRole::CaCert.name().into(),
            ca_key: SecretRole::CaKey.name().into(),
            cert_chain: SecretRole::CertChain.name().into(),
        }
    }
}

/// How to reach Key Vault.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    pub url: String,
    pub names: SecretNames,
    pub auth: AuthMode,
    pub managed_identity_client_id: Option<String>,
    pub verify_challenge_resource: bool,
}

/// Where material comes from.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    Vault(VaultConfig),
    Dir(PathBuf),
    /// An existing `cacerts`-layout Secret (inspect only).
    Secret {
        namespace: String,
        name: String,
    },
}

impl SourceSpec {
    /// A short human description: the vault URL, `dir:PATH` or `secret:NS/NAME`.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Vault(v) => v.url.clone(),
            SourceSpec::Dir(p) => format!("dir:{}", p.display()),
            SourceSpec::Secret { namespace, name } => format!("secret:{namespace}/{name}"),
        }
    }
}

/// Where material goes.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    Secret { namespace: String, name: String },
    Dir(PathBuf),
}

/// Which istiod Deployments a root change restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IstiodSelector {
    Label(String),
    Names(Vec<String>),
}

impl std::fmt::Display for IstiodSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IstiodSelector::Label(s) => write!(f, "selector {s:?}"),
            IstiodSelector::Names(n) => write!(f, "deployments {}", n.join(",")),
        }
    }
}

/// The restart step.
#[derive(Clone, Debug)]
pub struct RestartConfig {
    pub enabled: bool,
    pub namespace: String,
    pub selector: IstiodSelector,
    pub restart_on_first_run: bool,
    pub wait: Option<Duration>,
}

/// One sync pass.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub source: SourceSpec,
    pub target: TargetSpec,
    pub restart: RestartConfig,
    pub adopt: bool,
    pub dry_run: bool,
    pub timeout: Duration,
    pub consistency_timeout: Duration,
    pub expiry_warning: Duration,
    /// `--trust-propagation` (the time gates; a `dir:` target has none: it keeps no history).
    pub rotation: crate::rotation::RotationOptions,
    /// `--allow-unsafe-rotation`.
    pub allow_unsafe_rotation: bool,
    /// `sync --jitter`: the largest random delay before the one-shot pass (not part of `timeout`). Always zero
    /// in watch mode, whose loop adds its own `--jitter` to every pass ([`WatchConfig::jitter`]).
    pub start_jitter: Duration,
}

/// When watch mode runs passes.
#[derive(Clone, Debug)]
pub enum Schedule {
    Interval(Duration),
    Cron(Box<cron::Schedule>),
}

/// Watch mode: a sync configuration plus the loop around it.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub sync: SyncConfig,
    pub schedule: Schedule,
    pub jitter: Duration,
    pub admin_addr: std::net::SocketAddr,
    pub leader_election: Option<LeaseConfig>,
}

/// Leader election through a Lease.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub duration: Duration,
    pub identity: String,
}

/// `check-root`.
#[derive(Clone, Debug)]
pub struct CheckRootConfig {
    pub namespace: String,
    pub secret: String,
    pub restart: RestartConfig,
    pub timeout: Duration,
}

/// `status`.
#[derive(Clone, Debug)]
pub struct StatusConfig {
    pub target: crate::observe::Target,
    pub rotation: crate::rotation::RotationOptions,
    pub timeout: Duration,
    pub json: bool,
}

/// `inspect`.
#[derive(Clone, Debug)]
pub struct InspectConfig {
    pub source: SourceSpec,
    pub expiry_warning: Duration,
    pub timeout: Duration,
    pub json: bool,
}

/// Parses `--source`/`--vault-url` into a source. `allow_secret` admits `secret:NS/NAME` (inspect only).
pub fn source(args: &cli::SourceArgs, allow_secret: bool) -> Result<SourceSpec, ConfigError> {
    let expected = if allow_secret { "dir:PATH or secret:NAMESPACE/NAME" } else { "dir:PATH" };
    if let Some(spec) = &args.source {
        let bad = || ConfigError::BadSource { spec: spec.clone(), expected };
        return match spec.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(SourceSpec::Dir(PathBuf::from(path))),
            Some(("secret", rest)) if allow_secret => {
                let (namespace, name) = rest.split_once('/').ok_or_else(bad)?;
                if !is_dns_label(namespace) || !is_dns_subdomain(name) {
                    return Err(bad());
                }
                Ok(SourceSpec::Secret { namespace: namespace.into(), name: name.into() })
            }
            _ => Err(bad()),
        };
    }
    let names = NameTemplates::from_args(args)?.resolve(args.cluster_name.as_deref())?;
    Ok(SourceSpec::Vault(vault_config(args, names)?))
}

/// The Key Vault settings of `args` with the given (already resolved) secret names.
pub fn vault_config(args: &cli::SourceArgs, names: SecretNames) -> Result<VaultConfig, ConfigError> {
    let url = args.vault_url.as_deref().ok_or(ConfigError::NoSource)?;
    Ok(VaultConfig {
        url: vault_url(url)?,
        names,
        auth: args.auth,
        managed_identity_client_id: args.managed_identity_client_id.clone(),
        verify_challenge_resource: !args.disable_challenge_resource_verification,
    })
}

fn vault_url(url: &str) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError::BadVaultUrl { url: url.into(), reason: reason.into() };
    let rest = url.strip_prefix("https://").ok_or_else(|| bad("Key Vault is only reachable over https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let path = &rest[host.len()..];
    if !(path.is_empty() || path == "/") {
        // The SDK resolves secret ids against the first path segment ("secrets"): a path prefix breaks that.
        return Err(bad("the URL must not have a path (https://NAME.vault.azure.net)"));
    }
    Ok(format!("https://{host}"))
}

/// Key Vault object names: 1-127 characters, alphanumerics and dashes.
pub(crate) fn secret_name(flag: &'static str, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || name.len() > 127 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ConfigError::Invalid {
            flag,
            reason: format!("{name:?} is not a Key Vault secret name (1-127 letters, digits and dashes)"),
        });
    }
    Ok(name.into())
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn target(args: &cli::TargetArgs, spec: Option<&str>) -> Result<TargetSpec, ConfigError> {
    namespace_and_secret(args)?;
    match spec {
        None => Ok(TargetSpec::Secret { namespace: args.namespace.clone(), name: args.secret.clone() }),
        Some(spec) => match spec.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(TargetSpec::Dir(PathBuf::from(path))),
            _ => Err(ConfigError::BadTarget { spec: spec.into() }),
        },
    }
}

fn namespace_and_secret(args: &cli::TargetArgs) -> Result<(), ConfigError> {
    if !is_dns_label(&args.namespace) {
        return Err(ConfigError::Invalid {
            flag: "--namespace",
            reason: format!("{:?} is not a namespace name", args.namespace),
        });
    }
    if !is_dns_subdomain(&args.secret) {
        return Err(ConfigError::Invalid {
            flag: "--secret",
            reason: format!("{:?} is not a Secret name", args.secret),
        });
    }
    Ok(())
}

fn restart(args: &cli::RestartArgs, namespace: &str, enabled: bool) -> Result<RestartConfig, ConfigError> {
    let selector = istiod_selector(&args.istiod_selector, &args.istiod_deployment)?;
    Ok(RestartConfig {
        enabled,
        namespace: namespace.into(),
        selector,
        restart_on_first_run: args.restart_on_first_run,
        wait: args.wait.then(|| args.wait_timeout.into()),
    })
}

fn istiod_selector(selector: &str, names: &[String]) -> Result<IstiodSelector, ConfigError> {
    Ok(if names.is_empty() {
        let s = selector.trim();
        if s.is_empty() {
            return Err(ConfigError::BadSelector {
                selector: s.into(),
                reason: "empty selector would match every Deployment",
            });
        }
        if s.split(',').any(|term| term.trim().is_empty()) {
            return Err(ConfigError::BadSelector { selector: s.into(), reason: "empty term" });
        }
        IstiodSelector::Label(s.into())
    } else {
        for name in names {
            if !is_dns_subdomain(name) {
                return Err(ConfigError::Invalid {
                    flag: "--istiod-deployment",
                    reason: format!("{name:?} is not a Deployment name"),
                });
            }
        }
        IstiodSelector::Names(names.to_vec())
    })
}

pub(crate) fn nonzero(flag: &'static str, d: humantime::Duration) -> Result<Duration, ConfigError> {
    let d: Duration = d.into();
    if d.is_zero() {
        return Err(ConfigError::Invalid { flag, reason: "must be greater than zero".into() });
    }
    Ok(d)
}

impl SyncConfig {
    pub fn from_args(args: &cli::SyncArgs) -> Result<Self, ConfigError> {
        let config = Self::from_groups(&args.common, args.target_spec.as_deref(), args.dry_run)?;
        Ok(Self { start_jitter: args.jitter.into(), ..config })
    }

    fn from_groups(args: &cli::PassGroups, target_spec: Option<&str>, dry_run: bool) -> Result<Self, ConfigError> {
        let target = target(&args.target, target_spec)?;
        // A directory target has no istiod to restart.
        let restart_enabled = !args.no_restart && matches!(target, TargetSpec::Secret { .. });
        Ok(Self {
            source: source(&args.source, false)?,
            restart: restart(&args.restart, &args.target.namespace, restart_enabled)?,
            target,
            adopt: !args.no_adopt,
            dry_run,
            timeout: nonzero("--timeout", args.pass.timeout)?,
            consistency_timeout: args.pass.consistency_timeout.into(),
            expiry_warning: args.pass.expiry_warning.into(),
            rotation: crate::rotation::RotationOptions {
                trust_propagation: args.rotation.trust_propagation.into(),
                expiry_warning: args.pass.expiry_warning.into(),
            },
            allow_unsafe_rotation: args.rotation.allow_unsafe_rotation,
            start_jitter: Duration::ZERO,
        })
    }
}

impl WatchConfig {
    pub fn from_args(args: &cli::WatchArgs) -> Result<Self, ConfigError> {
        let sync = SyncConfig::from_groups(&args.common, None, false)?;
        let schedule = match &args.schedule {
            Some(expr) => Schedule::Cron(Box::new(parse_cron(expr)?)),
            None => Schedule::Interval(nonzero("--interval", args.interval)?),
        };
        let leader_election = if args.leader_election {
            let identity = args
                .identity
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(hostname)
                .ok_or(ConfigError::Invalid { flag: "--identity", reason: "set POD_NAME or --identity".into() })?;
            Some(LeaseConfig {
                namespace: args.common.target.namespace.clone(),
                name: args.lease_name.clone(),
                duration: nonzero("--lease-duration", args.lease_duration)?,
                identity,
            })
        } else {
            None
        };
        Ok(Self { sync, schedule, jitter: args.jitter.into(), admin_addr: args.admin_addr, leader_election })
    }
}

impl CheckRootConfig {
    pub fn from_args(args: &cli::CheckRootArgs) -> Result<Self, ConfigError> {
        namespace_and_secret(&args.target)?;
        Ok(Self {
            namespace: args.target.namespace.clone(),
            secret: args.target.secret.clone(),
            restart: restart(&args.restart, &args.target.namespace, true)?,
            timeout: nonzero("--timeout", args.timeout)?,
        })
    }
}

impl StatusConfig {
    pub fn from_args(args: &cli::StatusArgs) -> Result<Self, ConfigError> {
        namespace_and_secret(&args.target)?;
        Ok(Self {
            target: crate::observe::Target {
                namespace: args.target.namespace.clone(),
                secret: args.target.secret.clone(),
                istiod: istiod_selector(&args.istiod_selector, &args.istiod_deployment)?,
            },
            rotation: crate::rotation::RotationOptions {
                trust_propagation: args.trust_propagation.into(),
                expiry_warning: args.expiry_warning.into(),
            },
            timeout: nonzero("--timeout", args.timeout)?,
            json: args.output == cli::OutputFormat::Json,
        })
    }
}

impl InspectConfig {
    pub fn from_args(args: &cli::InspectArgs) -> Result<Self, ConfigError> {
        let mut source_args = args.source.clone();
        // `secret:NAME` means the Secret in --namespace (kubectl's habit: `kubectl cacerts -n NS inspect ...`).
        if let Some(name) = source_args.source.as_deref().and_then(|s| s.strip_prefix("secret:"))
            && !name.contains('/')
        {
            source_args.source = Some(format!("secret:{}/{name}", args.namespace));
        }
        Ok(Self {
            source: source(&source_args, true)?,
            expiry_warning: args.expiry_warning.into(),
            timeout: nonzero("--timeout", args.timeout)?,
            json: args.output == cli::OutputFormat::Json,
        })
    }
}

/// Parses a cron expression. The `cron` crate wants seconds first (6 or 7 fields); the standard 5-field form
/// (`*/10 * * * *`) gets a leading `0` seconds field.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, ConfigError> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 { format!("0 {expr}") } else { expr.to_string() };
    full.parse::<cron::Schedule>().map_err(|source| ConfigError::BadSchedule { schedule: expr.into(), source })
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_url_keeps_host_and_port_and_drops_a_trailing_slash() {
        assert_eq!(vault_url("https://kv.vault.azure.net/").unwrap(), "https://kv.vault.azure.net");
        assert_eq!(vault_url("https://127.0.0.1:8443").unwrap(), "https://127.0.0.1:8443");
    }

    #[test]
    fn vault_url_refuses_plain_http_and_path_prefixes() {
        assert!(vault_url("http://kv.vault.azure.net").is_err());
        assert!(vault_url("https://kv.vault.azure.net/secrets").is_err());
        assert!(vault_url("https://").is_err());
    }

    #[test]
    fn five_field_cron_is_accepted_as_the_standard_form() {
        let s = parse_cron("*/10 * * * *").unwrap();
        let next: Vec<_> = s.upcoming(chrono::Utc).take(2).collect();
        assert_eq!((next[1] - next[0]).num_minutes(), 10);
        assert!(parse_cron("every ten minutes").is_err());
    }

    #[test]
    fn secret_names_follow_key_vault_rules() {
        assert!(secret_name("--ca-key-name", "ca-key").is_ok());
        assert!(secret_name("--ca-key-name", "ca_key").is_err());
        assert!(secret_name("--ca-key-name", "").is_err());
    }
}
