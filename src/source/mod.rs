//! Where plug-in CA material comes from: Key Vault (the official SDK) or a directory of PEM files.
//!
//! A source returns the four raw values and, when it has them, the version of each. It never validates:
//! that is [`crate::bundle`]'s job, and the sync pass decides what to do with a torn or invalid result.

use std::time::Duration;

use crate::bundle::{RawMaterial, SecretRole};
use crate::error::{Classify, FailureClass};

pub mod dir;
pub mod keyvault;

/// What a source returned.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub material: RawMaterial,
    /// Key Vault version ids, one per role (None for a directory).
    pub versions: Option<Versions>,
}

/// The Key Vault version of each of the four secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions(pub [String; 4]);

impl Versions {
    pub fn get(&self, role: SecretRole) -> &str {
        &self.0[role_index(role)]
    }
}

impl std::fmt::Display for Versions {
    /// `root-cert=<ver>,ca-cert=<ver>,ca-key=<ver>,cert-chain=<ver>`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, role) in SecretRole::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{role}={}", self.get(*role))?;
        }
        Ok(())
    }
}

/// Position of a role in [`SecretRole::ALL`].
pub fn role_index(role: SecretRole) -> usize {
    SecretRole::ALL.iter().position(|r| *r == role).expect("every role is in ALL")
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("failed to fetch secret {name:?} from vault {vault}: {message}")]
    Vault {
        vault: String,
        name: String,
        message: String,
        class: FailureClass,
        retry_after: Option<Duration>,
        #[source]
        source: Box<azure_core::Error>,
    },
    #[error(
        "secret {name:?} was not found in vault {vault}: check --{role}-name and that the secret exists and is enabled"
    )]
    NotFound { vault: String, name: String, role: SecretRole },
    #[error(
        "secret {name:?} is disabled in vault {vault}: Key Vault refuses to read a disabled secret; enable its current version (az keyvault secret set-attributes --id {vault}/secrets/{name} --enabled true) or set a new one"
    )]
    Disabled { vault: String, name: String },
    #[error("failed to build the Azure credential ({mode}): {reason}")]
    Credential { mode: String, reason: String },
    #[error("failed to create the Key Vault client for {vault}")]
    Client {
        vault: String,
        #[source]
        source: Box<azure_core::Error>,
    },
    #[error("failed to read {role} from {dir}: neither {role} nor {role}.pem exists")]
    MissingFile { dir: String, role: SecretRole },
    #[error("failed to read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{role} in {origin} is {size} bytes, over the {limit}-byte limit")]
    TooLarge { origin: String, role: SecretRole, size: u64, limit: usize },
}

impl Classify for SourceError {
    fn class(&self) -> FailureClass {
        match self {
            SourceError::Vault { class, .. } => *class,
            SourceError::NotFound { .. }
            | SourceError::Disabled { .. }
            | SourceError::MissingFile { .. }
            | SourceError::Client { .. }
            | SourceError::Io { .. } => FailureClass::Usage,
            SourceError::Credential { .. } => FailureClass::Auth,
            SourceError::TooLarge { .. } => FailureClass::Invalid,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::Vault { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A configured source.
#[allow(clippy::large_enum_variant, reason = "built once per process and never moved in a hot path")]
pub enum Source {
    Vault(keyvault::VaultSource),
    Dir(dir::DirSource),
}

impl Source {
    /// Fetches the four values. For Key Vault, the four GETs run concurrently.
    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        match self {
            Source::Vault(v) => v.fetch().await,
            Source::Dir(d) => d.fetch().await,
        }
    }

    /// The vault URL or `dir:PATH`, for annotations and logs.
    pub fn describe(&self) -> String {
        match self {
            Source::Vault(v) => v.url().to_string(),
            Source::Dir(d) => d.describe(),
        }
    }
}
