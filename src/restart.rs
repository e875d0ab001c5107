//! Restarts istiod when, and only when, the root bundle changed: every matching Deployment (every revision),
//! once per root fingerprint.
//!
//! The restart is what `kubectl rollout restart` does (the pod-template annotation
//! `kubectl.kubernetes.io/restartedAt`), plus the root fingerprint the restart was for, recorded both on the
//! pod template and on the Deployment's own metadata, where `kubectl get deploy -o yaml` shows it. The decision
//! compares that recorded fingerprint with the one in `cacerts`, so running the step again restarts nothing.
//!
//! The patch carries the Deployment's `metadata.resourceVersion` as a precondition. If two runs race (a CronJob
//! and a manual run), one patch wins and the other gets 409 Conflict, re-reads the Deployment, finds the
//! fingerprint recorded and does nothing: no double restart.
//!
//! First contact: a Deployment with no recorded fingerprint is assumed to run the root that `cacerts` held
//! before this pass. If that is the current root, the fingerprint is only recorded (no restart), unless
//! `--restart-on-first-run`. If `cacerts` was created in this pass, istiod has to restart anyway: it ignores a
//! `cacerts` created after it started (istio/istio#57853).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::config::{IstiodSelector, RestartConfig};
use crate::error::{Classify, FailureClass};
use crate::k8s::{Events, KubeError, MANAGER, RESTARTED_AT_ANNOTATION, ROOT_FINGERPRINT_ANNOTATION, reference};

/// Re-reads of one Deployment after conflicting patches.
const MAX_CONFLICT_RETRIES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("failed to patch deployment {namespace}/{name}: it kept changing under us")]
    Conflicts { namespace: String, name: String },
    #[error("rollout of deployment {namespace}/{name} did not finish within {}", humantime::format_duration(*.timeout))]
    WaitTimeout { namespace: String, name: String, timeout: Duration },
}

impl Classify for RestartError {
    fn class(&self) -> FailureClass {
        match self {
            RestartError::Kube(e) => e.class(),
            RestartError::Conflicts { .. } | RestartError::WaitTimeout { .. } => FailureClass::Transient,
        }
    }
}

/// What istiod has seen of the root before this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// `cacerts` was created in this pass.
    Created,
    /// `cacerts` existed before this pass, with this root fingerprint (`None` if it held no parsable root).
    Existing(Option<String>),
}

/// The fingerprint recorded for istiod that started without a usable `cacerts` (none, or no parsable root).
pub const NO_ROOT: &str = "none";

impl Baseline {
    /// Whether writing a root with `fingerprint` changes what istiod runs.
    pub fn differs_from(&self, fingerprint: &str) -> bool {
        match self {
            Baseline::Created | Baseline::Existing(None) => true,
            Baseline::Existing(Some(before)) => before != fingerprint,
        }
    }

    /// What to record on a Deployment that runs this baseline.
    fn recorded_value(&self) -> &str {
        match self {
            Baseline::Existing(Some(before)) => before,
            Baseline::Created | Baseline::Existing(None) => NO_ROOT,
        }
    }
}

/// The decision for one Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Its recorded fingerprint is the current one.
    UpToDate,
    /// First contact with the current root already in place: record the fingerprint, don't restart.
    Record,
    /// Roll it.
    Restart { reason: &'static str },
}

/// Decides what to do with one Deployment. Pure.
pub fn decide(deployment: &Deployment, fingerprint: &str, baseline: &Baseline, restart_on_first_run: bool) -> Decision {
    match recorded_fingerprint(deployment) {
        Some(recorded) if recorded == fingerprint => Decision::UpToDate,
        Some(NO_ROOT) => Decision::Restart { reason: "istiod started without a usable cacerts" },
        Some(_) => Decision::Restart { reason: "root bundle changed" },
        None => match baseline {
            Baseline::Created => Decision::Restart { reason: "cacerts was created after istiod started" },
            Baseline::Existing(Some(before)) if before != fingerprint => {
                Decision::Restart { reason: "root bundle changed" }
            }
            _ if restart_on_first_run => Decision::Restart { reason: "--restart-on-first-run" },
            _ => Decision::Record,
        },
    }
}

/// The fingerprint recorded on a Deployment's metadata.
pub fn recorded_fingerprint(deployment: &Deployment) -> Option<&str> {
    deployment.metadata.annotations.as_ref()?.get(ROOT_FINGERPRINT_ANNOTATION).map(String::as_str)
}

/// What the restart step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartOutcome {
    pub matched: Vec<String>,
    pub restarted: Vec<String>,
    pub recorded: Vec<String>,
}

/// Finds istiod Deployments and restarts them when the root changed.
#[derive(Clone)]
pub struct Restarter {
    api: Api<Deployment>,
    config: RestartConfig,
    events: Option<Events>,
}

impl Restarter {
    pub fn new(client: kube::Client, config: RestartConfig, events: Option<Events>) -> Self {
        Self { api: Api::namespaced(client, &config.namespace), config, events }
    }

    /// Lists the Deployments the selector or the names pick.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, KubeError> {
        let ns = &self.config.namespace;
        match &self.config.selector {
            IstiodSelector::Label(selector) => {
                let list =
                    self.api.list(&ListParams::default().labels(selector)).await.map_err(|e| {
                        KubeError::new(format!("list deployments in {ns} with selector {selector:?}"), e)
                    })?;
                Ok(list.items)
            }
            IstiodSelector::Names(names) => {
                let mut found = Vec::new();
                for name in names {
                    match self
                        .api
                        .get_opt(name)
                        .await
                        .map_err(|e| KubeError::new(format!("get deployment {ns}/{name}"), e))?
                    {
                        Some(d) => found.push(d),
                        None => tracing::warn!(namespace = %ns, deployment = %name, "istiod deployment not found"),
                    }
                }
                Ok(found)
            }
        }
    }

    /// Brings every istiod Deployment to `fingerprint`. `known` is a recent listing (watch mode's cache); when
    /// `None` the Deployments are listed now.
    pub async fn reconcile(
        &self,
        fingerprint: &str,
        baseline: &Baseline,
        known: Option<Vec<Deployment>>,
        dry_run: bool,
    ) -> Result<RestartOutcome, RestartError> {
        let deployments = match known {
            Some(d) => d,
            None => self.deployments().await?,
        };
        let mut outcome = RestartOutcome::default();
        if deployments.is_empty() {
            tracing::warn!(namespace = %self.config.namespace, selector = %self.config.selector,
                "no istiod Deployment matches {} in namespace {}; nothing to restart", self.config.selector, self.config.namespace);
            return Ok(outcome);
        }
        let mut announced = false;
        for deployment in deployments {
            let name = deployment.metadata.name.clone().unwrap_or_default();
            outcome.matched.push(name.clone());
            let decision = decide(&deployment, fingerprint, baseline, self.config.restart_on_first_run);
            if matches!(decision, Decision::Restart { .. }) && !announced {
                // The AKS runbook's cert-validator prints exactly this; operators grep for it.
                tracing::info!("Root certificate update detected. Restarting deployment...");
                announced = true;
            }
            if dry_run {
                match decision {
                    Decision::Restart { reason } => {
                        tracing::info!(deployment = %name, reason, "dry run: would restart deployment");
                        outcome.restarted.push(name);
                    }
                    Decision::Record => outcome.recorded.push(name),
                    Decision::UpToDate => {}
                }
                continue;
            }
            match self.apply(deployment, fingerprint, baseline).await? {
                Decision::Restart { .. } => outcome.restarted.push(name),
                Decision::Record => outcome.recorded.push(name),
                Decision::UpToDate => {}
            }
        }
        if let Some(timeout) = self.config.wait.filter(|_| !dry_run) {
            for name in &outcome.restarted {
                self.wait_for_rollout(name, timeout).await?;
            }
        }
        Ok(outcome)
    }

    /// Records the baseline root on every Deployment that has no fingerprint yet (no restart). Called before a
    /// write that changes the root, so that a restart which then fails is retried by the next pass.
    pub async fn pin_baseline(&self, baseline: &Baseline, known: Option<Vec<Deployment>>) -> Result<(), RestartError> {
        let deployments = match known {
            Some(d) => d,
            None => self.deployments().await?,
        };
        let ns = &self.config.namespace;
        let value = baseline.recorded_value();
        for deployment in deployments {
            let name = deployment.metadata.name.clone().unwrap_or_default();
            // A concurrent run may have restarted it and recorded the new root meanwhile: then nothing to pin.
            let pinned = self
                .patch_settled(deployment, |d| {
                    recorded_fingerprint(d).is_none().then(|| {
                        let patch = serde_json::json!({ "metadata": { "annotations": { ROOT_FINGERPRINT_ANNOTATION: value } } });
                        (patch, (), format!("record the current root fingerprint on deployment {ns}/{name}"))
                    })
                })
                .await?;
            if pinned.is_some() {
                tracing::info!(deployment = %name, fingerprint = value, "recorded the root istiod runs before changing it");
            }
        }
        Ok(())
    }

    /// Applies the decision for one Deployment, re-deciding on a fresh read after a conflict.
    async fn apply(
        &self,
        deployment: Deployment,
        fingerprint: &str,
        baseline: &Baseline,
    ) -> Result<Decision, RestartError> {
        let ns = &self.config.namespace;
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let applied = self
            .patch_settled(deployment, |d| {
                let decision = decide(d, fingerprint, baseline, self.config.restart_on_first_run);
                let record =
                    serde_json::json!({ "metadata": { "annotations": { ROOT_FINGERPRINT_ANNOTATION: fingerprint } } });
                match decision {
                    Decision::UpToDate => None,
                    Decision::Record => {
                        Some((record, decision, format!("record the root fingerprint on deployment {ns}/{name}")))
                    }
                    Decision::Restart { .. } => {
                        let mut patch = record;
                        patch["spec"] = serde_json::json!({ "template": { "metadata": { "annotations": {
                            RESTARTED_AT_ANNOTATION: restarted_at(),
                            ROOT_FINGERPRINT_ANNOTATION: fingerprint,
                        }}}});
                        Some((patch, decision, format!("restart deployment {ns}/{name}")))
                    }
                }
            })
            .await?;
        let Some((patched, decision)) = applied else { return Ok(Decision::UpToDate) };
        match decision {
            Decision::Restart { reason } => {
                tracing::info!(deployment = %name, fingerprint, reason, "deployment.apps/{name} restarted");
                let note = format!("cacerts-sync restarted istiod: {reason} (root fingerprint {fingerprint})");
                self.event(&patched, "Restarted", note).await;
            }
            Decision::Record => {
                tracing::info!(deployment = %name, fingerprint, "recorded root fingerprint on deployment (first contact, no restart)");
            }
            Decision::UpToDate => {}
        }
        Ok(decision)
    }

    /// Patches a Deployment with its `resourceVersion` as a precondition. `plan` looks at the Deployment and
    /// returns the patch, a value for the caller and the action for error messages, or `None` when there is
    /// nothing to do. On 409 Conflict (someone else wrote first, e.g. a concurrent run that already restarted
    /// it) the Deployment is read again and `plan` asked again, a bounded number of times.
    async fn patch_settled<T>(
        &self,
        mut deployment: Deployment,
        plan: impl Fn(&Deployment) -> Option<(serde_json::Value, T, String)>,
    ) -> Result<Option<(Deployment, T)>, RestartError> {
        let ns = &self.config.namespace;
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some((mut patch, value, action)) = plan(&deployment) else { return Ok(None) };
            patch["metadata"]["resourceVersion"] = deployment.metadata.resource_version.clone().into();
            match self.api.patch(&name, &params, &Patch::Strategic(&patch)).await {
                Ok(patched) => return Ok(Some((patched, value))),
                Err(e) if crate::k8s::status(&e) == Some(409) => {
                    tracing::info!(deployment = %name, "deployment changed while we patched it; reading it again");
                    let fresh = self
                        .api
                        .get_opt(&name)
                        .await
                        .map_err(|e| KubeError::new(format!("get deployment {ns}/{name}"), e))?;
                    match fresh {
                        Some(fresh) => deployment = fresh,
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(KubeError::new(action, e).into()),
            }
        }
        Err(RestartError::Conflicts { namespace: ns.clone(), name })
    }

    async fn event(&self, deployment: &Deployment, reason: &str, note: String) {
        if let Some(events) = &self.events {
            let r = reference(
                "apps/v1",
                "Deployment",
                &self.config.namespace,
                deployment.metadata.name.as_deref().unwrap_or_default(),
                deployment.metadata.uid.clone(),
            );
            events.normal(&r, reason, "Restart", note).await;
        }
    }

    /// Waits until the Deployment's controller has observed the restart and every replica is new and available.
    async fn wait_for_rollout(&self, name: &str, timeout: Duration) -> Result<(), RestartError> {
        let ns = &self.config.namespace;
        let deadline = tokio::time::Instant::now() + timeout;
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
            if tokio::time::Instant::now() >= deadline {
                return Err(RestartError::WaitTimeout { namespace: ns.clone(), name: name.into(), timeout });
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
        return (false, format!("{} old replicas are pending termination", total - updated));
    }
    if available < updated {
        return (false, format!("{available} of {updated} updated replicas are available"));
    }
    (true, "done".into())
}

/// RFC 3339 with seconds, like `kubectl rollout restart` (Go's `time.RFC3339`).
fn restarted_at() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn deployment(recorded: Option<&str>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("istiod".into()),
                annotations: recorded.map(|fp| [(ROOT_FINGERPRINT_ANNOTATION.to_string(), fp.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_deployment_at_the_current_fingerprint_is_left_alone() {
        let d = deployment(Some("aa"));
        assert_eq!(decide(&d, "aa", &Baseline::Existing(Some("00".into())), true), Decision::UpToDate);
    }

    #[test]
    fn a_deployment_at_another_fingerprint_is_restarted() {
        let d = deployment(Some("aa"));
        assert!(matches!(decide(&d, "bb", &Baseline::Existing(Some("bb".into())), false), Decision::Restart { .. }));
    }

    #[test]
    fn first_contact_with_an_unchanged_root_only_records() {
        let d = deployment(None);
        assert_eq!(decide(&d, "aa", &Baseline::Existing(Some("aa".into())), false), Decision::Record);
        assert_eq!(decide(&d, "aa", &Baseline::Existing(None), false), Decision::Record);
    }

    #[test]
    fn first_contact_restarts_when_asked_to() {
        let d = deployment(None);
        assert!(matches!(decide(&d, "aa", &Baseline::Existing(Some("aa".into())), true), Decision::Restart { .. }));
    }

    #[test]
    fn first_contact_in_the_pass_that_changed_the_root_restarts() {
        let d = deployment(None);
        assert!(matches!(decide(&d, "bb", &Baseline::Existing(Some("aa".into())), false), Decision::Restart { .. }));
    }

    #[test]
    fn a_cacerts_created_in_this_pass_restarts_unrecorded_istiod() {
        let d = deployment(None);
        assert!(matches!(decide(&d, "aa", &Baseline::Created, false), Decision::Restart { .. }));
    }

    #[test]
    fn a_pinned_baseline_survives_a_failed_restart() {
        // The pass pinned the old root before writing the new one, then its restart failed: the next pass sees
        // cacerts already at the new root, but the Deployment is still behind.
        let d = deployment(Some("aa"));
        assert!(matches!(decide(&d, "bb", &Baseline::Existing(Some("bb".into())), false), Decision::Restart { .. }));
        let d = deployment(Some(NO_ROOT));
        assert!(matches!(decide(&d, "bb", &Baseline::Existing(Some("bb".into())), false), Decision::Restart { .. }));
    }

    #[test]
    fn only_a_root_changing_write_needs_a_pinned_baseline() {
        assert!(Baseline::Created.differs_from("aa"));
        assert!(Baseline::Existing(None).differs_from("aa"));
        assert!(Baseline::Existing(Some("aa".into())).differs_from("bb"));
        assert!(!Baseline::Existing(Some("aa".into())).differs_from("aa"));
    }

    #[test]
    fn rollout_is_done_only_when_every_replica_is_new_and_available() {
        use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
        let mut d = deployment(None);
        d.metadata.generation = Some(2);
        d.spec = Some(DeploymentSpec { replicas: Some(2), ..Default::default() });
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
