//! The gates of `fleet check`, pure: issue 11's rotation rules ([`crate::rotation::evaluate`]) applied to every
//! cluster, and across clusters.
//!
//! Uploading material M_X for cluster X (the shared root bundle, and X's intermediate) is safe when:
//! - **in X itself**, the rules pass (`evaluate(X's cacerts, X's history, M_X)`);
//! - **in every other cluster Y**, when X's live intermediate changes: its anchor root has been in Y's `cacerts`
//!   for `--trust-propagation` (Y's workloads must trust X's new certificates);
//! - **in every other cluster Y**, for each root M_X drops: it anchors neither Y's live intermediate nor one live
//!   in Y less than `--trust-propagation` ago (X's workloads must keep trusting Y's certificates).
//!
//! The cross-cluster rules are the same `evaluate`, run on Y's state against the part of M_X that concerns Y, so
//! there is one definition of each rule.

use std::collections::BTreeSet;

use crate::bundle::{self, ValidationOptions};
use crate::observe::ClusterView;
use crate::rotation::{Block, CaFacts, HISTORY_ANNOTATION, History, IstiodServing, RotationOptions, evaluate};

/// What the rules need of one cluster's current `cacerts`.
#[derive(Clone, Debug)]
pub struct ClusterState {
    pub name: String,
    /// `None`: no `cacerts`, or its roots don't parse (a first install: nothing to protect there).
    pub current: Option<CaFacts>,
    pub history: Option<History>,
    /// What the cluster shows of istiod serving its roots (rule (a)'s clock starts there).
    pub serving: IstiodServing,
}

impl ClusterState {
    /// From the view `status` reads. Pure.
    pub fn from_view(name: &str, view: &ClusterView, now: jiff::Timestamp, opts: &RotationOptions) -> Self {
        let current = view.cacerts.as_ref().and_then(|c| {
            let report =
                bundle::validate(&c.material, &ValidationOptions { now, expiry_warning: opts.expiry_warning }, None);
            CaFacts::from_report(&report)
        });
        let history = view
            .cacerts
            .as_ref()
            .and_then(|c| History::parse(c.annotations.get(HISTORY_ANNOTATION).map(String::as_str)));
        Self { name: name.into(), current, history, serving: IstiodServing::from_view(view) }
    }
}

/// One reason the upload is unsafe.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FleetBlock {
    /// The cluster whose workloads would break (the rule is evaluated on its `cacerts` and history).
    pub cluster: String,
    /// The cluster whose material causes it (the same cluster for its own rules).
    pub material_for: String,
    /// The rule, root, intermediate and earliest safe time (or the step that must come first).
    #[serde(flatten)]
    pub block: Block,
}

impl std::fmt::Display for FleetBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cluster == self.material_for {
            write!(f, "cluster {}: {}", self.cluster, self.block)
        } else {
            write!(f, "cluster {} (material for {}): {}", self.cluster, self.material_for, self.block)
        }
    }
}

/// Every block of uploading `proposals` (cluster name → its next material) over the clusters' `states`. Pure.
pub fn gates(
    states: &[ClusterState],
    proposals: &[(String, CaFacts)],
    now: jiff::Timestamp,
    opts: &RotationOptions,
) -> Vec<FleetBlock> {
    let mut out: Vec<FleetBlock> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |cluster: &str, material_for: &str, blocks: Vec<Block>| {
        for block in blocks {
            let key = (
                cluster.to_owned(),
                block.rule,
                block.root_fingerprint.clone(),
                block.intermediate_fingerprint.clone(),
            );
            if seen.insert(key) {
                out.push(FleetBlock { cluster: cluster.into(), material_for: material_for.into(), block });
            }
        }
    };
    for (x, next) in proposals {
        let Some(state_x) = states.iter().find(|s| &s.name == x) else { continue };
        push(
            x,
            x,
            evaluate(state_x.current.as_ref(), state_x.history.as_ref(), &state_x.serving, next, now, opts).blocks,
        );

        let live_before = state_x.current.as_ref().and_then(|c| c.intermediate.as_ref()).map(|i| i.fingerprint.clone());
        let switches = next.intermediate.as_ref().map(|i| i.fingerprint.clone()) != live_before;
        let dropped: Vec<&str> = state_x
            .current
            .iter()
            .flat_map(|c| c.roots.iter())
            .filter(|r| !next.has_root(&r.fingerprint))
            .map(|r| r.fingerprint.as_str())
            .collect();

        for y in states.iter().filter(|s| &s.name != x) {
            let Some(current_y) = y.current.as_ref().filter(|c| !c.roots.is_empty()) else { continue };
            // (a) across: Y's workloads must already trust the root of X's new intermediate. Y keeps its roots
            // (nothing dropped, so rule (b) stays silent) and "takes" X's intermediate.
            if switches && let (Some(inter), Some(anchor)) = (&next.intermediate, next.anchor_root()) {
                let mut roots = current_y.roots.clone();
                if !current_y.has_root(&anchor.fingerprint) {
                    roots.push(anchor.clone());
                }
                let anchor_index = roots.iter().position(|r| r.fingerprint == anchor.fingerprint);
                let as_if = CaFacts { roots, intermediate: Some(inter.clone()), anchor: anchor_index };
                let blocks = evaluate(Some(current_y), y.history.as_ref(), &y.serving, &as_if, now, opts).blocks;
                push(&y.name, x, blocks);
            }
            // (b) across: X's workloads must keep trusting Y's current and recent intermediates. Y keeps its
            // intermediate (rule (a) stays silent) and loses the roots X drops.
            if !dropped.is_empty() {
                let roots: Vec<_> =
                    current_y.roots.iter().filter(|r| !dropped.contains(&r.fingerprint.as_str())).cloned().collect();
                let anchor_index =
                    current_y.anchor_root().and_then(|a| roots.iter().position(|r| r.fingerprint == a.fingerprint));
                let as_if = CaFacts { roots, intermediate: current_y.intermediate.clone(), anchor: anchor_index };
                let blocks = evaluate(Some(current_y), y.history.as_ref(), &y.serving, &as_if, now, opts).blocks;
                push(&y.name, x, blocks);
            }
        }
    }
    out
}
