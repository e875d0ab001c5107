//! The command line: clap derive, one help heading per group, every flag also an env var.
//!
//! Env vars are named `CACERTS_SYNC_<FLAG>` (upper snake case), so a Helm chart or a CronJob can configure
//! everything without a shell. The groups are flattened into the subcommands that use them, kubert-style.
//! Parsing stops here: [`crate::config`] turns these values into one validated configuration.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

use crate::plugin;

/// Parses the process's arguments. Started as `kubectl-cacerts`, usage and help say `kubectl cacerts` and a
/// namespace flag given before the subcommand is accepted, as kubectl users type it ([`crate::plugin`]).
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    if !args.first().is_some_and(|argv0| plugin::invoked_as_plugin(argv0)) {
        return Cli::parse_from(args);
    }
    let matches = Cli::command()
        .name(plugin::PLUGIN_COMMAND)
        .bin_name(plugin::PLUGIN_COMMAND)
        .get_matches_from(plugin::kubectl_style_args(args));
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Keep an Istio mesh's plug-in CA (the `cacerts` Secret) in step with Azure Key Vault.
///
/// Exit codes: 0 success · 1 transient failure · 2 usage/configuration error ·
/// 3 invalid or inconsistent material (nothing written) · 4 authentication or permission failure.
#[derive(Debug, Parser)]
#[command(name = "cacerts-sync", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format. The filter comes from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CACERTS_SYNC_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Kubeconfig file to use instead of KUBECONFIG / ~/.kube/config (kubectl's --kubeconfig).
    #[arg(long, global = true, env = "CACERTS_SYNC_KUBECONFIG", value_name = "PATH", help_heading = "Kubernetes")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current one (kubectl's --context). `fleet` takes it repeatedly (or
    /// comma-separated), as `NAME` or `NAME=NAMESPACE`; every other command takes one.
    #[arg(
        long,
        global = true,
        env = "CACERTS_SYNC_CONTEXT",
        value_name = "NAME",
        value_delimiter = ',',
        action = ArgAction::Append,
        help_heading = "Kubernetes"
    )]
    pub context: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One pass: fetch the four secrets, validate them, write `cacerts` if they changed, restart istiod if the
    /// root changed.
    Sync(SyncArgs),
    /// Stay up and run sync passes on a schedule; repair `cacerts` when it drifts; serve health and metrics.
    Watch(WatchArgs),
    /// Restart istiod when the root bundle in `cacerts` changed (for clusters where something else syncs it).
    CheckRoot(CheckRootArgs),
    /// Print every certificate, the fingerprints and a verdict for plug-in CA material, without writing anything.
    Inspect(InspectArgs),
    /// Print a shell completion script: `source <(cacerts-sync completions bash)`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `cacerts-sync man | man -l -`.
    Man(ManArgs),
    /// Show where a root rotation stands: roots, the live intermediate, istiod, the phase and the next safe step.
    Status(StatusArgs),
    /// Many clusters sharing one root: `fleet status` and the pre-upload `fleet check`.
    Fleet(crate::fleet::cli::FleetArgs),
}

/// Where the material comes from.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Source")]
pub struct SourceArgs {
    /// Key Vault URL, e.g. https://myvault.vault.azure.net
    #[arg(long, env = "CACERTS_SYNC_VAULT_URL", conflicts_with = "source")]
    pub vault_url: Option<String>,

    /// Read the material from somewhere other than Key Vault: `dir:PATH` (a CSI driver mount or a
    /// `cacerts`-style directory; files with or without `.pem`). `inspect` also takes `secret:[NAMESPACE/]NAME`.
    #[arg(long, env = "CACERTS_SYNC_SOURCE", value_name = "SPEC")]
    pub source: Option<String>,

    /// This cluster's name, substituted for `{cluster}` in the four secret names below (per-cluster
    /// intermediates in one vault, e.g. `--ca-cert-name 'ca-cert-{cluster}'`).
    #[arg(long, env = "CACERTS_SYNC_CLUSTER_NAME", value_name = "NAME")]
    pub cluster_name: Option<String>,

    /// Key Vault secret holding the root bundle (shared by every cluster unless it uses `{cluster}`).
    #[arg(long, env = "CACERTS_SYNC_ROOT_CERT_NAME", default_value = "root-cert")]
    pub root_cert_name: String,

    /// Key Vault secret holding the intermediate (signing) certificate. May contain `{cluster}`.
    #[arg(long, env = "CACERTS_SYNC_CA_CERT_NAME", default_value = "ca-cert")]
    pub ca_cert_name: String,

    /// Key Vault secret holding the intermediate's private key. May contain `{cluster}`.
    #[arg(long, env = "CACERTS_SYNC_CA_KEY_NAME", default_value = "ca-key")]
    pub ca_key_name: String,

    /// Key Vault secret holding the chain from the intermediate up to the root. May contain `{cluster}`.
    #[arg(long, env = "CACERTS_SYNC_CERT_CHAIN_NAME", default_value = "cert-chain")]
    pub cert_chain_name: String,

    /// How to authenticate to Key Vault. `auto` picks workload identity, then a service principal, then managed
    /// identity, then the Azure CLI, from the environment.
    #[arg(long, value_enum, default_value_t = AuthMode::Auto, env = "CACERTS_SYNC_AUTH")]
    pub auth: AuthMode,

    /// Client ID of a user-assigned managed identity.
    #[arg(long, env = "CACERTS_SYNC_MANAGED_IDENTITY_CLIENT_ID")]
    pub managed_identity_client_id: Option<String>,

    /// Do not require the Key Vault auth challenge's resource to match the vault's domain. Only for emulators
    /// and vaults reached by IP or another host name: private endpoints keep the `*.vault.azure.net` name, which
    /// matches. Off, it drops a guard against token theft by a server impersonating the vault. Same meaning as
    /// the option of this name in Azure's other SDKs.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_DISABLE_CHALLENGE_RESOURCE_VERIFICATION")]
    pub disable_challenge_resource_verification: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    Auto,
    WorkloadIdentity,
    ManagedIdentity,
    ClientSecret,
    AzureCli,
}

/// How one pass validates and how long it may take.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Pass")]
pub struct PassArgs {
    /// Overall deadline for one pass (fetch, retries, write, restart).
    #[arg(long, env = "CACERTS_SYNC_TIMEOUT", default_value = "2m")]
    pub timeout: humantime::Duration,

    /// How long to keep re-reading a torn (half-rotated) state before giving up with exit 3.
    #[arg(long, env = "CACERTS_SYNC_CONSISTENCY_TIMEOUT", default_value = "60s")]
    pub consistency_timeout: humantime::Duration,

    /// Warn when a certificate expires within this window.
    #[arg(long, env = "CACERTS_SYNC_EXPIRY_WARNING", default_value = "30days")]
    pub expiry_warning: humantime::Duration,
}

/// The `cacerts` Secret.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Target")]
pub struct TargetArgs {
    /// Namespace of the `cacerts` Secret and of the istiod Deployments (`aks-istio-system` on the AKS add-on).
    #[arg(long, short = 'n', env = "CACERTS_SYNC_NAMESPACE", default_value = "istio-system")]
    pub namespace: String,

    /// Name of the Secret istiod reads.
    #[arg(long, env = "CACERTS_SYNC_SECRET", default_value = "cacerts")]
    pub secret: String,
}

/// Which istiod Deployments to restart when the root changes, and how.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Restart")]
pub struct RestartArgs {
    /// Label selector for istiod Deployments (every revision).
    #[arg(
        long,
        env = "CACERTS_SYNC_ISTIOD_SELECTOR",
        default_value = "app=istiod",
        conflicts_with = "istiod_deployment"
    )]
    pub istiod_selector: String,

    /// Restart exactly these Deployments instead of a selector (repeatable).
    #[arg(long, env = "CACERTS_SYNC_ISTIOD_DEPLOYMENT", value_delimiter = ',')]
    pub istiod_deployment: Vec<String>,

    /// Restart istiod even when no root fingerprint was recorded yet and `cacerts` already existed.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_RESTART_ON_FIRST_RUN")]
    pub restart_on_first_run: bool,

    /// Wait for each restarted rollout to finish.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_WAIT")]
    pub wait: bool,

    /// How long `--wait` waits for each rollout.
    #[arg(long, env = "CACERTS_SYNC_WAIT_TIMEOUT", default_value = "5m")]
    pub wait_timeout: humantime::Duration,
}

/// The time gates of a root rotation.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rotation")]
pub struct RotationArgs {
    /// How long workloads need to trust a new root (their certificate lifetime, 24h in Istio by default). An
    /// intermediate under a new root goes live, and an old root leaves, only this long after the step before.
    #[arg(long, env = "CACERTS_SYNC_TRUST_PROPAGATION", default_value = "24h")]
    pub trust_propagation: humantime::Duration,

    /// Write a rotation step even when the time gates refuse it (logs a warning and publishes a Warning Event).
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_ALLOW_UNSAFE_ROTATION")]
    pub allow_unsafe_rotation: bool,
}

/// What `sync` and `watch` share: one pass's source, validation, target and restart settings.
#[derive(Debug, Clone, Args)]
pub struct PassGroups {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub pass: PassArgs,
    #[command(flatten)]
    pub rotation: RotationArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub restart: RestartArgs,

    /// Refuse to take over a `cacerts` Secret that cacerts-sync did not create.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_NO_ADOPT", help_heading = "Target")]
    pub no_adopt: bool,

    /// Never restart istiod, even when the root changed.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_NO_RESTART", help_heading = "Restart")]
    pub no_restart: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub common: PassGroups,

    /// Write the `cacerts` file layout into a directory instead of the Secret (`dir:PATH`), for an istiod that runs
    /// outside Kubernetes.
    #[arg(long = "target", env = "CACERTS_SYNC_TARGET", value_name = "SPEC", help_heading = "Target")]
    pub target_spec: Option<String>,

    /// Do everything but write: print what would change.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_DRY_RUN", help_heading = "Target")]
    pub dry_run: bool,

    /// Wait a random delay of up to this much before the pass, so a fleet of CronJobs on one schedule does not
    /// hit one vault in the same second. Not part of `--timeout`. SIGTERM/SIGINT while waiting exits 143/130.
    #[arg(long, env = "CACERTS_SYNC_JITTER", default_value = "0s", help_heading = "Schedule")]
    pub jitter: humantime::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub common: PassGroups,

    /// Time between passes.
    #[arg(
        long,
        env = "CACERTS_SYNC_INTERVAL",
        default_value = "2m",
        conflicts_with = "schedule",
        help_heading = "Schedule"
    )]
    pub interval: humantime::Duration,

    /// Cron expression for passes instead of an interval (5-field standard form or 6/7-field with seconds), UTC.
    #[arg(long, env = "CACERTS_SYNC_SCHEDULE", help_heading = "Schedule")]
    pub schedule: Option<String>,

    /// Random delay of up to this much added to each pass, so a fleet does not hit one vault in the same second.
    #[arg(long, env = "CACERTS_SYNC_JITTER", default_value = "10s", help_heading = "Schedule")]
    pub jitter: humantime::Duration,

    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "CACERTS_SYNC_ADMIN_ADDR", default_value = "0.0.0.0:8080", help_heading = "Admin")]
    pub admin_addr: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease so several replicas are safe; only the leader writes.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_LEADER_ELECTION", help_heading = "Leader election")]
    pub leader_election: bool,

    /// Name of the Lease (in the target namespace).
    #[arg(long, env = "CACERTS_SYNC_LEASE_NAME", default_value = "cacerts-sync", help_heading = "Leader election")]
    pub lease_name: String,

    /// How long a leader's Lease lasts without renewal; a standby takes over after it runs out.
    #[arg(long, env = "CACERTS_SYNC_LEASE_DURATION", default_value = "15s", help_heading = "Leader election")]
    pub lease_duration: humantime::Duration,

    /// Identity of this replica in the Lease (default: POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME", help_heading = "Leader election")]
    pub identity: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckRootArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub restart: RestartArgs,

    /// Overall deadline.
    #[arg(long, env = "CACERTS_SYNC_TIMEOUT", default_value = "2m")]
    pub timeout: humantime::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Namespace of a `--source secret:NAME` given without one.
    #[arg(long, short = 'n', env = "CACERTS_SYNC_NAMESPACE", default_value = "istio-system")]
    pub namespace: String,

    /// Warn when a certificate expires within this window.
    #[arg(long, env = "CACERTS_SYNC_EXPIRY_WARNING", default_value = "30days")]
    pub expiry_warning: humantime::Duration,

    /// Overall deadline.
    #[arg(long, env = "CACERTS_SYNC_TIMEOUT", default_value = "2m")]
    pub timeout: humantime::Duration,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text, env = "CACERTS_SYNC_OUTPUT")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// A subcommand's page (`cacerts-sync-sync(1)`) instead of the main page.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,

    /// Write every page (`cacerts-sync.1`, `cacerts-sync-sync.1`, ...) into this directory instead, for packaging.
    #[arg(long, env = "CACERTS_SYNC_OUT_DIR", value_name = "DIR", conflicts_with = "subcommand")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Label selector for istiod Deployments (every revision).
    #[arg(
        long,
        env = "CACERTS_SYNC_ISTIOD_SELECTOR",
        default_value = "app=istiod",
        conflicts_with = "istiod_deployment",
        help_heading = "Restart"
    )]
    pub istiod_selector: String,

    /// Look at exactly these Deployments instead of a selector (repeatable).
    #[arg(long, env = "CACERTS_SYNC_ISTIOD_DEPLOYMENT", value_delimiter = ',', help_heading = "Restart")]
    pub istiod_deployment: Vec<String>,

    /// How long workloads need to trust a new root (as for `sync`).
    #[arg(long, env = "CACERTS_SYNC_TRUST_PROPAGATION", default_value = "24h", help_heading = "Rotation")]
    pub trust_propagation: humantime::Duration,

    /// Warn when a certificate expires within this window.
    #[arg(long, env = "CACERTS_SYNC_EXPIRY_WARNING", default_value = "30days")]
    pub expiry_warning: humantime::Duration,

    /// Overall deadline.
    #[arg(long, env = "CACERTS_SYNC_TIMEOUT", default_value = "2m")]
    pub timeout: humantime::Duration,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text, env = "CACERTS_SYNC_OUTPUT")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every subcommand, nested ones (`fleet status`) included.
    fn leaves(cmd: &clap::Command) -> Vec<&clap::Command> {
        let mut out = Vec::new();
        for sub in cmd.get_subcommands() {
            out.push(sub);
            out.extend(leaves(sub));
        }
        out
    }

    #[test]
    fn every_flag_has_an_env_var_named_after_it() {
        let mut cmd = Cli::command();
        // Building propagates the global flags (--log-format, --kubeconfig, --context) into every subcommand.
        cmd.build();
        let all = leaves(&cmd);
        assert!(all.iter().any(|s| s.get_name() == "check" && s.get_arguments().any(|a| a.get_id() == "all_contexts")));
        for sub in all.into_iter().filter(|s| s.get_name() != "help") {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                // Positional operands (the shell of `completions`) are what the command is about, not settings.
                if matches!(id, "help" | "version") || arg.is_positional() {
                    continue;
                }
                let env = arg.get_env().unwrap_or_else(|| panic!("{} --{id} has no env var", sub.get_name()));
                let env = env.to_string_lossy();
                if id == "identity" {
                    assert_eq!(env, "POD_NAME");
                    continue;
                }
                let long = arg.get_long().unwrap_or_else(|| panic!("{id} has no long flag"));
                let expected = format!("CACERTS_SYNC_{}", long.to_uppercase().replace('-', "_"));
                assert_eq!(env, expected, "env var of {} --{long}", sub.get_name());
            }
        }
    }
}
