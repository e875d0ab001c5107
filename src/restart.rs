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
//! First contact: a Deployment with no recorded fingerprint runs the root that `cacerts` held before this pass
//! only if istiod loaded it. istiod publishes the roots it serves in the ConfigMap `istio-ca-root-cert`
//! ([`crate::istiod_roots`]): if that holds other roots (an older bundle, its self-signed CA: `cacerts` was
//! created after istiod started, istio/istio#57853, or restored after a deletion), istiod restarts; if it
//! holds exactly `cacerts`' roots, the fingerprint is only recorded, on the Deployment's metadata (never on the
//! pod template, which would roll it). Without the ConfigMap (no istiod ran yet) the old rule applies: record
//! when `cacerts` held the current root before this pass, unless `--restart-on-first-run`. If `cacerts` was
//! created in this pass, istiod has to restart anyway.
//!
//! `--wait` follows the rollouts of every restarted revision at once, then waits until `istio-ca-root-cert`
//! holds the new roots: only then does istiod sign with them. It is bounded by `--wait-timeout` alone.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::config::{IstiodSelector, RestartConfig};
use crate::error::{Classify, FailureClass};
use crate::fence::{Fence, FenceError};
use crate::istiod_roots::{self, Serving};
use crate::k8s::{Events, KubeError, MANAGER, RESTARTED_AT_ANNOTATION, ROOT_FINGERPRINT_ANNOTATION, reference};

mod wait;

pub use wait::rollout_progress;

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
    #[error(
        "istiod did not publish the new roots in configmap {namespace}/{} within {} (it still serves {})",
        istiod_roots::CONFIGMAP, humantime::format_duration(*.timeout), .serving.as_str()
    )]
    RootsNotLoaded { namespace: String, timeout: Duration, serving: Serving },
    #[error(transparent)]
    Fenced(#[from] FenceError),
}

impl Classify for RestartError {
    fn class(&self) -> FailureClass {
        match self {
            RestartError::Kube(e) => e.class(),
            RestartError::Conflicts { .. } | RestartError::WaitTimeout { .. } | RestartError::RootsNotLoaded { .. } => {
                FailureClass::Transient
            }
            RestartError::Fenced(e) => e.class(),
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

/// Decides what to do with one Deployment. `serving` is what `istio-ca-root-cert` says about the current
/// roots; it only matters on first contact. Pure.
pub fn decide(
    deployment: &Deployment,
    fingerprint: &str,
    baseline: &Baseline,
    restart_on_first_run: bool,
    serving: Serving,
) -> Decision {
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
            _ if serving == Serving::Other => {
                Decision::Restart { reason: "istiod serves other roots than cacerts (per istio-ca-root-cert)" }
            }
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
    client: kube::Client,
    config: RestartConfig,
    events: Option<Events>,
    fence: Option<Fence>,
}

/// What a caller already knows about the cluster (watch mode's caches); `None` fields are read when needed.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The istiod Deployments.
    pub deployments: Option<Vec<Deployment>>,
    /// `istio-ca-root-cert` in istiod's namespace (`Some(None)`: known not to exist).
    pub istiod_roots: Option<Option<ConfigMap>>,
}

impl Restarter {
    pub fn new(client: kube::Client, config: RestartConfig, events: Option<Events>) -> Self {
        Self { api: Api::namespaced(client.clone(), &config.namespace), client, config, events, fence: None }
    }

    /// Makes every patch check the Lease first (watch mode with leader election).
    pub fn set_fence(&mut self, fence: Fence) {
        self.fence = Some(fence);
    }

    /// The `--wait` budget, if waiting is on.
    pub fn wait_timeout(&self) -> Option<Duration> {
        self.config.wait
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

    /// Brings every istiod Deployment to `fingerprint` (of the bundle `roots_pem`). `known` holds what watch
    /// mode's caches already know; the rest is read now. Waiting for the rollouts is [`Restarter::wait`]'s job.
    pub async fn reconcile(
        &self,
        fingerprint: &str,
        roots_pem: &[u8],
        baseline: &Baseline,
        known: Observed,
        dry_run: bool,
    ) -> Result<RestartOutcome, RestartError> {
        let deployments = match known.deployments {
            Some(d) => d,
            None => self.deployments().await?,
        };
        let serving =
            self.first_contact_serving(&deployments, fingerprint, roots_pem, baseline, known.istiod_roots).await;
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
            let decision = decide(&deployment, fingerprint, baseline, self.config.restart_on_first_run, serving);
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
            match self.apply(deployment, fingerprint, baseline, serving).await? {
                Decision::Restart { .. } => outcome.restarted.push(name),
                Decision::Record => outcome.recorded.push(name),
                Decision::UpToDate => {}
            }
        }
        Ok(outcome)
    }

    /// The istiod Deployments and `istio-ca-root-cert` as the caller knows them, the rest read now (both
    /// concurrently): the evidence of the rotation gate's [`IstiodServing`](crate::rotation::IstiodServing).
    pub async fn observe(&self, known: Observed) -> Result<(Vec<Deployment>, Option<ConfigMap>), KubeError> {
        let deployments = async {
            match known.deployments {
                Some(d) => Ok(d),
                None => self.deployments().await,
            }
        };
        let configmap = async {
            match known.istiod_roots {
                Some(cm) => Ok(cm),
                None => istiod_roots::get(&self.client, &self.config.namespace).await,
            }
        };
        let (deployments, configmap) = tokio::join!(deployments, configmap);
        Ok((deployments?, configmap?))
    }

    /// What `istio-ca-root-cert` says, read only when a Deployment is met for the first time and the old rule
    /// would merely record it (no request on an ordinary pass).
    async fn first_contact_serving(
        &self,
        deployments: &[Deployment],
        fingerprint: &str,
        roots_pem: &[u8],
        baseline: &Baseline,
        known: Option<Option<ConfigMap>>,
    ) -> Serving {
        let first_contact = deployments.iter().any(|d| recorded_fingerprint(d).is_none());
        if !first_contact || baseline.differs_from(fingerprint) || self.config.restart_on_first_run {
            return Serving::Unknown;
        }
        let ns = &self.config.namespace;
        let configmap = match known {
            Some(cm) => cm,
            None => match istiod_roots::get(&self.client, ns).await {
                Ok(cm) => cm,
                Err(error) => {
                    tracing::warn!(error = %crate::error::chain(&error),
                        "cannot tell which roots istiod serves; first contact falls back to recording without a restart");
                    return Serving::Unknown;
                }
            },
        };
        let serving = istiod_roots::compare(configmap.as_ref(), roots_pem);
        match serving {
            Serving::Current => tracing::info!(configmap = %format!("{ns}/{}", istiod_roots::CONFIGMAP),
                "first contact: istiod serves the roots in cacerts; recording without a restart"),
            Serving::Other => tracing::info!(configmap = %format!("{ns}/{}", istiod_roots::CONFIGMAP),
                "first contact: istiod serves other roots than cacerts; restarting it"),
            Serving::Unknown => tracing::info!(configmap = %format!("{ns}/{}", istiod_roots::CONFIGMAP),
                "first contact: configmap not found (no istiod ran yet?), so the roots istiod serves are unknown; recording without a restart since cacerts held this root before the pass"),
        }
        serving
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
        serving: Serving,
    ) -> Result<Decision, RestartError> {
        let ns = &self.config.namespace;
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let applied = self
            .patch_settled(deployment, |d| {
                let decision = decide(d, fingerprint, baseline, self.config.restart_on_first_run, serving);
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
            crate::fence::check(self.fence.as_ref(), &action).await?;
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
        assert_eq!(
            decide(&d, "aa", &Baseline::Existing(Some("00".into())), true, Serving::Unknown),
            Decision::UpToDate
        );
    }

    #[test]
    fn a_deployment_at_another_fingerprint_is_restarted() {
        let d = deployment(Some("aa"));
        assert!(matches!(
            decide(&d, "bb", &Baseline::Existing(Some("bb".into())), false, Serving::Unknown),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn first_contact_with_an_unchanged_root_only_records() {
        let d = deployment(None);
        assert_eq!(decide(&d, "aa", &Baseline::Existing(Some("aa".into())), false, Serving::Unknown), Decision::Record);
        assert_eq!(decide(&d, "aa", &Baseline::Existing(None), false, Serving::Unknown), Decision::Record);
    }

    #[test]
    fn first_contact_restarts_istiod_that_serves_other_roots_and_records_one_that_serves_ours() {
        let d = deployment(None);
        let unchanged = Baseline::Existing(Some("aa".into()));
        assert!(matches!(decide(&d, "aa", &unchanged, false, Serving::Other), Decision::Restart { .. }));
        assert_eq!(decide(&d, "aa", &unchanged, false, Serving::Current), Decision::Record);
        // No configmap: the old rule.
        assert_eq!(decide(&d, "aa", &unchanged, false, Serving::Unknown), Decision::Record);
        // A recorded fingerprint is what counts once there is one.
        assert_eq!(decide(&deployment(Some("aa")), "aa", &unchanged, false, Serving::Other), Decision::UpToDate);
    }

    #[test]
    fn first_contact_restarts_when_asked_to() {
        let d = deployment(None);
        assert!(matches!(
            decide(&d, "aa", &Baseline::Existing(Some("aa".into())), true, Serving::Unknown),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn first_contact_in_the_pass_that_changed_the_root_restarts() {
        let d = deployment(None);
        assert!(matches!(
            decide(&d, "bb", &Baseline::Existing(Some("aa".into())), false, Serving::Unknown),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn a_cacerts_created_in_this_pass_restarts_unrecorded_istiod() {
        let d = deployment(None);
        assert!(matches!(decide(&d, "aa", &Baseline::Created, false, Serving::Unknown), Decision::Restart { .. }));
    }

    #[test]
    fn a_pinned_baseline_survives_a_failed_restart() {
        // The pass pinned the old root before writing the new one, then its restart failed: the next pass sees
        // cacerts already at the new root, but the Deployment is still behind.
        let d = deployment(Some("aa"));
        assert!(matches!(
            decide(&d, "bb", &Baseline::Existing(Some("bb".into())), false, Serving::Unknown),
            Decision::Restart { .. }
        ));
        let d = deployment(Some(NO_ROOT));
        assert!(matches!(
            decide(&d, "bb", &Baseline::Existing(Some("bb".into())), false, Serving::Unknown),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn only_a_root_changing_write_needs_a_pinned_baseline() {
        assert!(Baseline::Created.differs_from("aa"));
        assert!(Baseline::Existing(None).differs_from("aa"));
        assert!(Baseline::Existing(Some("aa".into())).differs_from("bb"));
        assert!(!Baseline::Existing(Some("aa".into())).differs_from("aa"));
    }
}
