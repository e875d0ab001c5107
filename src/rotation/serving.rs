//! Whether istiod serves a root yet: where rule (a)'s trust-propagation clock starts.
//!
//! Workloads learn a root from istiod, when their certificate renews. A root written to `cacerts` reaches them
//! only once istiod restarted with it, so while a restart is owed (restart patches failing, a rollout that
//! never finishes) the clock has not started. The evidence comes from the objects `status` reads:
//! - cacerts-sync's record on each istiod Deployment (`cacerts-sync.io/root-fingerprint`): a record of another
//!   root bundle than `cacerts` holds means that revision still owes its restart;
//! - the latest `kubectl.kubernetes.io/restartedAt` of the revisions recorded for the bundle in `cacerts`: the
//!   clock starts there when that is later than the root's write;
//! - `istio-ca-root-cert` (what the running istiod loaded): a root missing from it is not served yet.
//!
//! Deployments without a record (restarts not managed by cacerts-sync, `--no-restart`, first contact) and a
//! missing ConfigMap say nothing; then the clock starts when the root entered `cacerts`, as it always did. The
//! clock is conservative: a later root change (A+B to A+B+C) restarts istiod, and every root's clock then counts
//! from that restart.

use crate::bundle;
use crate::observe::ClusterView;

use super::{RotationOptions, served_root_fingerprints};

/// What one cluster shows about istiod serving the roots in `cacerts`. [`IstiodServing::default`] knows
/// nothing (a `dir:` target, `--no-restart`, no istiod).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IstiodServing {
    /// istiod Deployments recorded for another root bundle than `cacerts` holds: their restart is owed.
    pub owed: Vec<String>,
    /// The latest `restartedAt` of the Deployments recorded for the bundle in `cacerts`.
    pub restarted_at: Option<jiff::Timestamp>,
    /// The root fingerprints in `istio-ca-root-cert` (`None`: no ConfigMap, or it does not parse).
    pub served: Option<Vec<String>>,
}

/// Why istiod does not serve a root yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotServed {
    /// These istiod Deployments still owe the restart for the roots in `cacerts`.
    RestartOwed(Vec<String>),
    /// Every restart was made, but `istio-ca-root-cert` lacks the root: a rollout is in progress or stuck.
    NotInConfigMap,
}

/// Where a root's trust-propagation clock stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustClock {
    /// It was in `cacerts` before the rotation history began: counts as propagated.
    BeforeHistory,
    /// istiod does not serve it yet: the clock has not started.
    Pending(NotServed),
    /// The clock runs from `start`: its write to `cacerts`, or istiod's restart with it when that came later
    /// (`by_restart`).
    From { start: jiff::Timestamp, by_restart: bool },
}

impl IstiodServing {
    /// The evidence in a cluster's view. Pure.
    pub fn from_view(view: &ClusterView) -> Self {
        let bundle = view
            .cacerts
            .as_ref()
            .and_then(|c| bundle::root_fingerprint(&c.material.root_cert).ok())
            .map(|f| f.to_string());
        let mut serving = Self::default();
        for d in &view.istiod {
            match (&d.recorded_root_fingerprint, &bundle) {
                (Some(recorded), Some(current)) if recorded == current => {
                    // `restartedAt` has whole seconds (kubectl's and ours): round up, so no gate opens early.
                    let at = d.restarted_at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| {
                        if t.subsec_nanosecond() == 0 { super::plus(t, std::time::Duration::from_secs(1)) } else { t }
                    });
                    serving.restarted_at = serving.restarted_at.max(at);
                }
                (Some(_), Some(_)) => serving.owed.push(d.name.clone()),
                _ => {}
            }
        }
        serving.served = view.served_roots_pem.as_deref().and_then(|p| served_root_fingerprints(p.as_bytes()));
        serving
    }

    /// The clock of the root `fingerprint`, in `cacerts` since `since` (`None`: before the history). A zero
    /// `--trust-propagation` turns the waiting off, for istiod too.
    pub fn clock(&self, fingerprint: &str, since: Option<jiff::Timestamp>, opts: &RotationOptions) -> TrustClock {
        let Some(since) = since else { return TrustClock::BeforeHistory };
        if !opts.trust_propagation.is_zero() {
            if !self.owed.is_empty() {
                return TrustClock::Pending(NotServed::RestartOwed(self.owed.clone()));
            }
            if self.served.as_ref().is_some_and(|s| !s.iter().any(|f| f == fingerprint)) {
                return TrustClock::Pending(NotServed::NotInConfigMap);
            }
        }
        match self.restarted_at.filter(|r| *r > since) {
            Some(restart) => TrustClock::From { start: restart, by_restart: true },
            None => TrustClock::From { start: since, by_restart: false },
        }
    }
}

impl NotServed {
    /// A clause for people: "istiod (istiod, istiod-canary) still owes the restart for the roots in cacerts".
    pub fn describe(&self) -> String {
        match self {
            NotServed::RestartOwed(names) => format!(
                "istiod ({}) has not restarted for the roots in cacerts yet (cacerts-sync retries the restart every pass)",
                names.join(", ")
            ),
            NotServed::NotInConfigMap => {
                "istio-ca-root-cert does not hold it yet (istiod's rollout is in progress or stuck)".to_owned()
            }
        }
    }
}
