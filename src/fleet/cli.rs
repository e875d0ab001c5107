//! The `fleet` command line: `fleet status` and `fleet check`. Same conventions as [`crate::cli`]: every flag is
//! also a `CACERTS_SYNC_<FLAG>` env var (the test in `crate::cli` walks nested subcommands too).

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand};

use crate::cli::{OutputFormat, SourceArgs};

/// Many clusters that share one root: where the fleet's rotation stands, and whether an upload is safe.
#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Read every cluster concurrently: one row per cluster, then whether the fleet's root bundles agree, which
    /// cluster pairs would fail mTLS today, and the fleet's next safe rotation step.
    Status(FleetStatusArgs),
    /// Before `az keyvault secret set`: would uploading this material be safe for every cluster?
    Check(FleetCheckArgs),
}

/// Which clusters, and how to reach them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Clusters")]
pub struct ClustersArgs {
    /// The kubeconfig contexts to read: the global `--context` (repeatable, or comma-separated), `NAME` or
    /// `NAME=NAMESPACE` when that cluster's Istio namespace differs from --namespace. The context name is also the
    /// cluster's name. Filled from the global flag, not parsed here.
    #[arg(skip)]
    pub contexts: Vec<String>,

    /// Every context in the kubeconfig.
    #[arg(long, action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), env = "CACERTS_SYNC_ALL_CONTEXTS")]
    pub all_contexts: bool,

    /// The global `--kubeconfig` (default: KUBECONFIG, which may list several files, else ~/.kube/config).
    #[arg(skip)]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace of `cacerts` and istiod in every cluster, unless its --context says otherwise.
    #[arg(long, short = 'n', env = "CACERTS_SYNC_NAMESPACE", default_value = "istio-system")]
    pub namespace: String,

    /// Name of the Secret istiod reads.
    #[arg(long, env = "CACERTS_SYNC_SECRET", default_value = "cacerts")]
    pub secret: String,

    /// Label selector of the istiod Deployments (every revision).
    #[arg(long, env = "CACERTS_SYNC_ISTIOD_SELECTOR", default_value = "app=istiod")]
    pub istiod_selector: String,

    /// Deadline for reading one cluster; a cluster that does not answer in time is reported unreachable.
    #[arg(long, env = "CACERTS_SYNC_TIMEOUT", default_value = "10s")]
    pub timeout: humantime::Duration,

    /// How long workloads need to trust a new root (Istio's default workload certificate lifetime). Use the
    /// same value as the clusters' `sync`/`watch`.
    #[arg(long, env = "CACERTS_SYNC_TRUST_PROPAGATION", default_value = "24h")]
    pub trust_propagation: humantime::Duration,

    /// Warn when a certificate expires within this window.
    #[arg(long, env = "CACERTS_SYNC_EXPIRY_WARNING", default_value = "30days")]
    pub expiry_warning: humantime::Duration,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text, env = "CACERTS_SYNC_OUTPUT")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct FleetStatusArgs {
    #[command(flatten)]
    pub clusters: ClustersArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FleetCheckArgs {
    #[command(flatten)]
    pub clusters: ClustersArgs,

    /// The material about to be uploaded, or (with --vault-url) what the vault holds now. `--source dir:PATH`
    /// may contain `{cluster}` (one directory per cluster); `{cluster}` in the secret names is each cluster's
    /// context name.
    #[command(flatten)]
    pub source: SourceArgs,
}

impl FleetArgs {
    /// Hands the global `--context` (every one: fleet reads several clusters) and `--kubeconfig` to the fleet
    /// subcommand's [`ClustersArgs`], which does not parse them itself. The one place that does so, for `run` and
    /// the tests alike.
    pub fn take_global_cluster_flags(&mut self, context: &[String], kubeconfig: Option<&PathBuf>) {
        let clusters = match &mut self.command {
            FleetCommand::Status(a) => &mut a.clusters,
            FleetCommand::Check(a) => &mut a.clusters,
        };
        clusters.contexts = context.to_vec();
        clusters.kubeconfig = kubeconfig.cloned();
    }
}
