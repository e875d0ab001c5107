//! Runs a subcommand and maps its outcome to an exit code: one-shot commands in [`once`], the long-lived
//! loop in [`watch`].

pub mod once;
pub mod watch;

use crate::cli::{Cli, Command};
use crate::error::exit;
use crate::fleet::cli::FleetCommand;

/// Runs the parsed command line and returns the process exit code.
pub async fn main(cli: Cli) -> u8 {
    match cli.command {
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
    }
}

fn usage(error: crate::config::ConfigError) -> u8 {
    tracing::error!(error = %crate::error::chain(&error), "invalid configuration");
    exit::USAGE
}
