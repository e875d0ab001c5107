//! Runs a subcommand and maps its outcome to an exit code: one-shot commands in [`once`], the long-lived
//! loop in [`watch`].

pub mod once;
pub mod watch;

use crate::cli::{Cli, Command};
use crate::error::exit;
use crate::fleet::cli::FleetCommand;

/// Runs the parsed command line and returns the process exit code.
pub async fn main(cli: Cli) -> u8 {
    // Before any subcommand builds a client: kubectl's --kubeconfig/--context apply to every one of them.
    let mut command = cli.command;
    match &mut command {
        // fleet reads several clusters: it takes every --context, and its own client per context.
        Command::Fleet(args) => args.take_global_cluster_flags(&cli.context, cli.kubeconfig.as_ref()),
        _ if cli.context.len() > 1 => {
            tracing::error!(contexts = %cli.context.join(","), "invalid command line: --context names one kubeconfig context (only `fleet` reads several)");
            return exit::USAGE;
        }
        _ => {}
    }
    crate::k8s::configure(crate::k8s::KubeOptions {
        kubeconfig: cli.kubeconfig,
        context: cli.context.into_iter().next(),
    });
    match command {
        Command::Sync(args) => match crate::config::SyncConfig::from_args(&args) {
            Ok(config) => once::sync(config).await,
            Err(e) => usage(e),
        },
        Command::CheckRoot(args) => match crate::config::CheckRootConfig::from_args(&args) {
            Ok(config) => once::check_root(config).await,
            Err(e) => usage(e),
        },
        Command::Inspect(args) => match crate::config::InspectConfig::from_args(&args) {
            Ok(config) => once::inspect(config).await,
            Err(e) => usage(e),
        },
        Command::Status(args) => match crate::config::StatusConfig::from_args(&args) {
            Ok(config) => crate::status::run(config).await,
            Err(e) => usage(e),
        },
        Command::Watch(args) => match crate::config::WatchConfig::from_args(&args) {
            Ok(config) => watch::run(config).await,
            Err(e) => usage(e),
        },
        Command::Fleet(args) => match args.command {
            FleetCommand::Status(args) => match crate::fleet::config::FleetStatusConfig::from_args(&args) {
                Ok(config) => crate::fleet::run::status(config).await,
                Err(e) => usage(e),
            },
            FleetCommand::Check(args) => match crate::fleet::config::FleetCheckConfig::from_args(&args) {
                Ok(config) => crate::fleet::run::check(config).await,
                Err(e) => usage(e),
            },
        },
        Command::Completions(args) => {
            written(crate::shell::completions(&args, "cacerts-sync", &mut std::io::stdout().lock()).map_err(Into::into))
        }
        Command::Man(args) => written(crate::shell::man(&args, &mut std::io::stdout().lock())),
    }
}

fn written(result: Result<(), crate::shell::ManError>) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(error @ crate::shell::ManError::UnknownSubcommand(..)) => {
            tracing::error!(%error, "invalid command line");
            exit::USAGE
        }
        Err(error) => {
            tracing::error!(%error, "failed to write the output");
            exit::TRANSIENT
        }
    }
}

fn usage(error: crate::config::ConfigError) -> u8 {
    tracing::error!(error = %crate::error::chain(&error), "invalid configuration");
    exit::USAGE
}
