//! `--wait`: follows the rollouts of the restarted istiod revisions at the same time, then waits until istiod
//! publishes the new roots in `istio-ca-root-cert`. Bounded by `--wait-timeout` as a whole, not by the pass
//! `--timeout`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use tokio::time::Instant;

use super::{RestartError, Restarter};
use crate::istiod_roots::{self, Serving};
use crate::k8s::{KubeError, reference};

impl Restarter {
    /// Follows the rollouts of `restarted` at the same time, then waits until istiod publishes `roots_pem` in
    /// `istio-ca-root-cert`. Bounded by `timeout` as a whole.
    pub async fn wait(&self, restarted: &[String], roots_pem: &[u8], timeout: Duration) -> Result<(), RestartError> {
        if restarted.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        futures::future::try_join_all(restarted.iter().map(|name| self.wait_for_rollout(name, deadline, timeout)))
            .await?;
        self.wait_for_roots(restarted, roots_pem, deadline, timeout).await
    }

    /// Waits until the Deployment's controller has observed the restart and every replica is new and available.
    async fn wait_for_rollout(&self, name: &str, deadline: Instant, timeout: Duration) -> Result<(), RestartError> {
        let ns = &self.config.namespace;
        let mut last = String::new();
        loop {
            let d = self.api.get(name).await.map_err(|e| KubeError::new(format!("get deployment {ns}/{name}"), e))?;
            let (done, progress) = rollout_progress(&d);
            if done {
                tracing::info!(deployment = %name, "deployment \"{name}\" successfully rolled out");
                return Ok(());
            }
            if progress != last {
                tracing::info!(deployment = %name, "Waiting for deployment \"{name}\" rollout to finish: {progress}");
                last = progress;
            }
            if Instant::now() >= deadline {
                return Err(RestartError::WaitTimeout { namespace: ns.clone(), name: name.into(), timeout });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Polls `istio-ca-root-cert` until it holds exactly the certificates of `roots_pem`, then logs it and
    /// publishes a `RootsLoaded` Event on each restarted Deployment.
    async fn wait_for_roots(
        &self,
        restarted: &[String],
        roots_pem: &[u8],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), RestartError> {
        let ns = &self.config.namespace;
        let configmap = format!("{ns}/{}", istiod_roots::CONFIGMAP);
        let mut announced = false;
        loop {
            let serving = istiod_roots::compare(istiod_roots::get(&self.client, ns).await?.as_ref(), roots_pem);
            if serving == Serving::Current {
                tracing::info!(%configmap, "istiod serves the new roots ({configmap} holds them)");
                if let Some(events) = &self.events {
                    for name in restarted {
                        let r = reference("apps/v1", "Deployment", ns, name, None);
                        let note =
                            format!("istiod serves the new roots: {configmap} holds exactly the roots of cacerts");
                        events.normal(&r, "RootsLoaded", "Restart", note).await;
                    }
                }
                return Ok(());
            }
            if !announced {
                tracing::info!(%configmap, serving = serving.as_str(), "waiting for istiod to publish the new roots");
                announced = true;
            }
            if Instant::now() >= deadline {
                return Err(RestartError::RootsNotLoaded { namespace: ns.clone(), timeout, serving });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// `kubectl rollout status`'s test: observedGeneration caught up, every replica updated and available, no old
/// replicas left. Returns (done, progress text).
pub fn rollout_progress(d: &Deployment) -> (bool, String) {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if observed < generation {
        return (false, "waiting for the deployment spec update to be observed".into());
    }
    if updated < want {
        return (false, format!("{updated} of {want} updated replicas are available"));
    }
    if total > updated {
        // In i64: the counts are i32 and nothing stops a malformed status from holding i32::MAX and a negative.
        return (false, format!("{} old replicas are pending termination", i64::from(total) - i64::from(updated)));
    }
    if available < updated {
        return (false, format!("{available} of {updated} updated replicas are available"));
    }
    (true, "done".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use kube::api::ObjectMeta;

    /// Found while writing the `responses` fuzz target: `replicas - updatedReplicas` overflowed i32 (a panic in
    /// debug builds) for a status no API server would send, but a watch cache or a test object might.
    #[test]
    fn extreme_replica_counts_do_not_overflow() {
        let d = Deployment {
            metadata: ObjectMeta { name: Some("istiod".into()), generation: Some(1), ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(-5), ..Default::default() }),
            status: Some(DeploymentStatus {
                observed_generation: Some(1),
                replicas: Some(i32::MAX),
                updated_replicas: Some(-1),
                available_replicas: Some(0),
                ..Default::default()
            }),
        };
        let (done, text) = rollout_progress(&d);
        assert!(!done);
        assert_eq!(text, "2147483648 old replicas are pending termination");
    }

    #[test]
    fn rollout_is_done_only_when_every_replica_is_new_and_available() {
        let mut d = Deployment {
            metadata: ObjectMeta { name: Some("istiod".into()), generation: Some(2), ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(2), ..Default::default() }),
            ..Default::default()
        };
        d.status = Some(DeploymentStatus { observed_generation: Some(1), ..Default::default() });
        assert!(!rollout_progress(&d).0);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(3),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..Default::default()
        });
        assert!(!rollout_progress(&d).0, "an old replica is still there");
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(1),
            ..Default::default()
        });
        assert!(!rollout_progress(&d).0);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..Default::default()
        });
        assert!(rollout_progress(&d).0);
    }
}
