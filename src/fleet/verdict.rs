//! The fleet verdict of `fleet status`: a pure function over the per-cluster [`Assessment`]s that `status`
//! itself produces. Nothing here reads a cluster or the clock.
//!
//! - **Root bundles agree**: every cluster's `cacerts` holds the same set of roots.
//! - **Broken pairs**: cluster X's live intermediate is anchored at a root that cluster Y's bundle lacks, so Y's
//!   workloads reject certificates from X (and mTLS between them fails both ways).
//! - **Next step**: while bundles disagree, the laggards' sync (nothing else can be judged fleet-wide); else the
//!   runbook step of the least advanced cluster (add root < switch intermediate < drop root);
//!   its earliest time is the latest over the clusters that still have to take it, because the step is only safe
//!   fleet-wide once it is safe in every cluster (a new root must be trusted everywhere before any cluster
//!   switches to an intermediate under it; an old root is droppable only when no cluster's intermediate under it
//!   was live within the trust propagation time).

use std::collections::BTreeSet;

use crate::error::exit;
use crate::rotation::{Assessment, RootRef, StepKind, format_time};

use super::clusters::{ClusterError, ClusterRef};

/// One cluster as read.
#[derive(Clone, Debug)]
pub struct ClusterOutcome {
    pub cluster: ClusterRef,
    pub result: Result<Assessment, ClusterError>,
}

/// Cluster X's workload certificates are not trusted in cluster Y.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BrokenPair {
    /// X: the cluster whose live intermediate signs the certificates.
    pub cluster: String,
    /// Y: the cluster whose root bundle lacks the anchor.
    pub untrusted_by: String,
    /// X's live intermediate's subject.
    pub intermediate: String,
    /// Its anchor, missing from Y's bundle.
    pub root: RootRef,
}

/// Clusters that hold one particular root bundle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BundleGroup {
    /// Root fingerprints, sorted.
    pub root_fingerprints: Vec<String>,
    pub clusters: Vec<String>,
}

/// A step of the fleet's runbook: the per-cluster steps, plus bringing laggards to the same bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FleetStepKind {
    /// Some clusters hold another root bundle: their sync is owed (stopped, failing or not run yet).
    SyncRootBundle,
    AddRoot,
    RestartIstiod,
    SwitchIntermediate,
    DropRoot,
}

impl From<StepKind> for FleetStepKind {
    fn from(step: StepKind) -> Self {
        match step {
            StepKind::AddRoot => FleetStepKind::AddRoot,
            StepKind::RestartIstiod => FleetStepKind::RestartIstiod,
            StepKind::SwitchIntermediate => FleetStepKind::SwitchIntermediate,
            StepKind::DropRoot => FleetStepKind::DropRoot,
        }
    }
}

/// The fleet's next runbook step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FleetStep {
    pub step: FleetStepKind,
    /// A sentence for people.
    pub action: String,
    pub root: Option<RootRef>,
    /// The earliest time it is safe in every cluster that still has to take it (`null`: any time).
    #[serde(serialize_with = "opt_time")]
    pub earliest: Option<jiff::Timestamp>,
    pub safe_now: bool,
    /// Clusters that still have to take this step.
    pub clusters: Vec<String>,
    /// Clusters already past it (they wait for the others).
    pub ahead: Vec<String>,
    /// The clusters whose own earliest time is the fleet's.
    pub waiting_for: Vec<String>,
}

/// Everything the fleet verdict says. Stable JSON field names (docs/multi-cluster.md).
#[derive(Clone, Debug, serde::Serialize)]
pub struct FleetVerdict {
    /// Clusters that could not be read.
    pub unreachable: Vec<String>,
    /// Clusters read whose own assessment is unhealthy (invalid or missing material, istiod serving other roots).
    pub invalid: Vec<String>,
    pub roots_agree: bool,
    pub bundles: Vec<BundleGroup>,
    pub broken_pairs: Vec<BrokenPair>,
    pub next_step: Option<FleetStep>,
    /// Every cluster read, all healthy, bundles agree, no broken pair.
    pub consistent: bool,
}

impl FleetVerdict {
    /// 3 inconsistent or some cluster invalid (what is known to be wrong wins), else 1 some cluster unreachable,
    /// else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.invalid.is_empty() || !self.roots_agree || !self.broken_pairs.is_empty() {
            exit::INVALID
        } else if !self.unreachable.is_empty() {
            exit::TRANSIENT
        } else {
            exit::OK
        }
    }
}

fn rank(step: StepKind) -> u8 {
    match step {
        StepKind::AddRoot => 0,
        StepKind::RestartIstiod => 1,
        StepKind::SwitchIntermediate => 2,
        StepKind::DropRoot => 3,
    }
}

fn roots_of(a: &Assessment) -> BTreeSet<&str> {
    a.roots.iter().map(|r| r.fingerprint.as_str()).collect()
}

/// The fleet verdict at `now`. Pure.
pub fn verdict(outcomes: &[ClusterOutcome], now: jiff::Timestamp) -> FleetVerdict {
    let read: Vec<(&str, &Assessment)> =
        outcomes.iter().filter_map(|o| o.result.as_ref().ok().map(|a| (o.cluster.name.as_str(), a))).collect();
    let unreachable = outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.cluster.name.clone()).collect();
    let invalid = read.iter().filter(|(_, a)| !a.healthy).map(|(n, _)| n.to_string()).collect::<Vec<_>>();

    // Bundles, among clusters that have one.
    let mut bundles: Vec<BundleGroup> = Vec::new();
    for (name, a) in read.iter().filter(|(_, a)| !a.roots.is_empty()) {
        let fps: Vec<String> = roots_of(a).into_iter().map(str::to_owned).collect();
        match bundles.iter_mut().find(|b| b.root_fingerprints == fps) {
            Some(group) => group.clusters.push(name.to_string()),
            None => bundles.push(BundleGroup { root_fingerprints: fps, clusters: vec![name.to_string()] }),
        }
    }
    let roots_agree = bundles.len() <= 1;

    let mut broken_pairs = Vec::new();
    for (x, ax) in &read {
        let Some(live) = &ax.live_intermediate else { continue };
        let Some(anchor) = &live.anchor else { continue };
        for (y, ay) in read.iter().filter(|(y, ay)| y != x && !ay.roots.is_empty()) {
            if !roots_of(ay).contains(anchor.fingerprint.as_str()) {
                broken_pairs.push(BrokenPair {
                    cluster: x.to_string(),
                    untrusted_by: y.to_string(),
                    intermediate: live.subject.clone(),
                    root: anchor.clone(),
                });
            }
        }
    }

    let next_step = if roots_agree { next_step(&read, now) } else { converge(&bundles) };
    let consistent = outcomes.len() == read.len() && invalid.is_empty() && roots_agree && broken_pairs.is_empty();
    FleetVerdict { unreachable, invalid, roots_agree, bundles, broken_pairs, next_step, consistent }
}

fn next_step(read: &[(&str, &Assessment)], now: jiff::Timestamp) -> Option<FleetStep> {
    let steps: Vec<(&str, &crate::rotation::NextStep)> =
        read.iter().filter_map(|(n, a)| a.next_step.as_ref().map(|s| (*n, s))).collect();
    let least = steps.iter().map(|(_, s)| rank(s.step)).min()?;
    let due: Vec<&(&str, &crate::rotation::NextStep)> = steps.iter().filter(|(_, s)| rank(s.step) == least).collect();
    let ahead = steps.iter().filter(|(_, s)| rank(s.step) > least).map(|(n, _)| n.to_string()).collect();
    let earliest = due.iter().filter_map(|(_, s)| s.earliest).max();
    let waiting_for = match earliest {
        Some(t) if t > now => due.iter().filter(|(_, s)| s.earliest == Some(t)).map(|(n, _)| n.to_string()).collect(),
        _ => Vec::new(),
    };
    let first = due[0].1;
    Some(FleetStep {
        step: first.step.into(),
        action: first.action.clone(),
        root: first.root.clone(),
        safe_now: earliest.is_none_or(|t| t <= now),
        earliest,
        clusters: due.iter().map(|(n, _)| n.to_string()).collect(),
        ahead,
        waiting_for,
    })
}

/// While bundles disagree, no runbook step is safe to judge fleet-wide: the laggards must sync first. The
/// largest group is taken as where the fleet is going (the vault is not read here); on a tie every cluster is
/// listed. Runbook steps are cyclic (a finished rotation is "steady" again), so per-cluster steps can't rank
/// clusters whose bundles differ.
fn converge(bundles: &[BundleGroup]) -> Option<FleetStep> {
    let largest = bundles.iter().map(|b| b.clusters.len()).max()?;
    let leaders: Vec<&BundleGroup> = bundles.iter().filter(|b| b.clusters.len() == largest).collect();
    let (ahead, behind): (Vec<String>, Vec<String>) = if leaders.len() == 1 {
        let lead = leaders[0];
        (lead.clusters.clone(), bundles.iter().filter(|b| *b != lead).flat_map(|b| b.clusters.clone()).collect())
    } else {
        (Vec::new(), bundles.iter().flat_map(|b| b.clusters.clone()).collect())
    };
    Some(FleetStep {
        step: FleetStepKind::SyncRootBundle,
        action: format!("let {} sync the root bundle the other clusters hold", behind.join(", ")),
        root: None,
        earliest: None,
        safe_now: false,
        clusters: behind.clone(),
        ahead,
        waiting_for: behind,
    })
}

fn opt_time<S: serde::Serializer>(t: &Option<jiff::Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}
