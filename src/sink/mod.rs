//! Where validated material goes: the `cacerts` Secret, or a directory in the same layout.
//!
//! Both sinks compare before they write and report whether anything changed, so a pass that finds nothing new
//! writes nothing.

pub mod dir;
pub mod secret;

use crate::bundle::SecretRole;

/// What a write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteAction {
    /// The content already matched; nothing was written.
    Unchanged,
    /// The target did not exist and was created.
    Created,
    /// These keys changed. `adopted` is true when the Secret was not managed by cacerts-sync before.
    Updated { changed: Vec<SecretRole>, adopted: bool },
}

impl WriteAction {
    pub fn wrote(&self) -> bool {
        !matches!(self, WriteAction::Unchanged)
    }

    /// `unchanged`, `created` or `updated`, for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            WriteAction::Unchanged => "unchanged",
            WriteAction::Created => "created",
            WriteAction::Updated { .. } => "updated",
        }
    }
}
