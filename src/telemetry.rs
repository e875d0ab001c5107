//! Logging through `tracing`: text or JSON on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! stdout is kept for command output (`inspect`, the `--dry-run` diff), so logs never mix into it.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}
