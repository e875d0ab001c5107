//! Leader election through a `coordination.k8s.io/v1` Lease, with `kube-lease-manager`.
//!
//! The manager runs in its own task: it creates the Lease if needed, takes it when it is free or expired, and
//! renews it `grace` seconds before it runs out (grace = a third of the duration, at least 1 s). A standby
//! checks again when the holder's lease would expire, so it takes over within about one lease duration after
//! the leader dies. Dropping the state channel makes the task release the Lease; [`Leadership::release`] does
//! that and waits for it, so a clean shutdown hands over at once.
//!
//! The manager writes the Lease with server-side apply and strategic-merge patches under the field manager
//! `kube-lease-manager-<identity>` (one per replica, which is what makes concurrent takeovers conflict), so the
//! Role needs `get`, `create` and `patch` on leases.

use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::LeaseConfig;

/// Why leader election cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("invalid --lease-duration {}: leader election needs at least 2s", humantime::format_duration(*.0))]
    TooShort(Duration),
}

/// The lease duration and the renewal grace, in whole seconds.
pub fn lease_seconds(duration: Duration) -> Result<(u64, u64), LeaseError> {
    let secs = duration.as_secs_f64().ceil() as u64;
    if secs < 2 {
        return Err(LeaseError::TooShort(duration));
    }
    // The manager panics unless 0 < grace < duration.
    let grace = (secs / 3).max(1);
    Ok((secs, grace))
}

/// This replica's view of the Lease.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    config: LeaseConfig,
}

impl Leadership {
    /// Creates the manager (one GET, and a create if the Lease is missing) and starts its task.
    pub async fn start(
        client: kube::Client,
        config: &LeaseConfig,
    ) -> Result<Self, kube_lease_manager::LeaseManagerError> {
        let (duration, grace) = lease_seconds(config.duration).expect("checked before start");
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_field_manager(format!("kube-lease-manager-{}", config.identity))
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await?;
        let (state, task) = manager.watch().await;
        Ok(Self { state, task, config: config.clone() })
    }

    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Completes when leadership changes; returns the new state. Pends forever if the manager task ended.
    pub async fn changed(&mut self) -> bool {
        if self.state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.state.borrow_and_update()
    }

    /// Releases the Lease (if held) and waits up to `timeout` for the manager to finish.
    pub async fn release(self, timeout: Duration) {
        let Self { state, task, config } = self;
        drop(state);
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(_))) => tracing::info!(lease = %config.name, identity = %config.identity, "lease released"),
            Ok(Ok(Err(error))) => {
                tracing::warn!(lease = %config.name, error = %crate::error::chain(&error), "failed to release the lease; a standby takes over when it expires")
            }
            Ok(Err(error)) => tracing::warn!(lease = %config.name, %error, "lease task failed"),
            Err(_) => {
                tracing::warn!(lease = %config.name, "timed out releasing the lease; a standby takes over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_a_third_of_the_lease_and_always_shorter() {
        assert_eq!(lease_seconds(Duration::from_secs(15)).unwrap(), (15, 5));
        assert_eq!(lease_seconds(Duration::from_secs(2)).unwrap(), (2, 1));
        assert_eq!(lease_seconds(Duration::from_millis(2500)).unwrap(), (3, 1));
        assert!(lease_seconds(Duration::from_secs(1)).is_err());
    }
}
