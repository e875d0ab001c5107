//! `cacerts-sync`: parse the command line, set up logs and TLS, run, exit with the outcome's code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cacerts_sync::cli::parse();
    cacerts_sync::telemetry::init(cli.log_format);
    // One crypto provider for both the Azure (reqwest) and the Kubernetes (hyper-rustls) clients.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // One thread is plenty for a few concurrent requests, and keeps the resident set small.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "failed to start the async runtime");
            return ExitCode::from(cacerts_sync::error::exit::TRANSIENT);
        }
    };
    ExitCode::from(runtime.block_on(cacerts_sync::run::main(cli)))
}
