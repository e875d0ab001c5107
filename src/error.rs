//! Failure classes and the exit codes they map to.
//!
//! Every error that ends a pass is classified once, here, so that the one-shot exit code, the retry decision
//! in watch mode and the `result` label of the pass metric all agree.

use std::time::Duration;

/// What kind of failure ended a pass. The class decides the exit code and whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// Network trouble, 5xx, 429 or write conflicts that outlasted the retries. Retrying later may help.
    Transient,
    /// The command line or the environment is wrong. Retrying will not help until someone fixes it.
    Usage,
    /// The material in the source is invalid or inconsistent (a torn rotation that did not heal).
    Invalid,
    /// Entra, Key Vault or Kubernetes refused our identity or its permissions.
    Auth,
}

impl FailureClass {
    /// The process exit code of a one-shot subcommand that failed with this class.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureClass::Transient => exit::TRANSIENT,
            FailureClass::Usage => exit::USAGE,
            FailureClass::Invalid => exit::INVALID,
            FailureClass::Auth => exit::AUTH,
        }
    }

    /// The value of the `result` label on pass metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Usage => "usage",
            FailureClass::Invalid => "invalid",
            FailureClass::Auth => "auth",
        }
    }
}

/// Exit codes shared by every one-shot subcommand (documented in the README).
pub mod exit {
    /// Success, whether something changed or not.
    pub const OK: u8 = 0;
    /// Transient failure: network, 5xx, 429 or conflicts still failing after retries.
    pub const TRANSIENT: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
    /// Invalid or inconsistent material; nothing was written.
    pub const INVALID: u8 = 3;
    /// Authentication or permission failure.
    pub const AUTH: u8 = 4;
}

/// Implemented by every boundary error so the pass can classify it without knowing its internals.
pub trait Classify {
    /// The failure class of this error.
    fn class(&self) -> FailureClass;

    /// How long the remote side asked us to wait before trying again (`Retry-After` on a 429 or 503).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// Writes an error and its whole `source()` chain on one line: `a: b: c`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        // Some libraries repeat their source's text in their own message; don't print it twice.
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
