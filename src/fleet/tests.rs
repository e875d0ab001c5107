//! The fleet verdict and the cross-cluster gates on hand-made assessments and facts, at fixed times.

use std::time::Duration;

use super::check::{ClusterState, gates};
use super::clusters::{ClusterError, ClusterRef};
use super::verdict::{ClusterOutcome, FleetStepKind, verdict};
use crate::error::{FailureClass, exit};
use crate::rotation::{
    Assessment, CaFacts, CertFact, History, IntermediateStatus, IstiodServing, NextStep, Phase, RootRef, RootStatus,
    RotationOptions, Rule, ServedRoots, StepKind, evaluate,
};

const HOUR: Duration = Duration::from_secs(3600);

fn t(s: &str) -> jiff::Timestamp {
    s.parse().expect("valid timestamp")
}

const NOW: &str = "2026-12-10T12:00:00Z";

fn root_ref(name: &str) -> RootRef {
    RootRef { subject: format!("CN={name}"), fingerprint: format!("fp-{name}") }
}

/// An assessment of a healthy cluster with `roots`, the live intermediate `live` under `anchor`, and its next step.
fn assessment(roots: &[&str], live: &str, anchor: &str, next: Option<(StepKind, Option<&str>)>) -> Assessment {
    let phase = match next.map(|n| n.0) {
        Some(StepKind::AddRoot) => Phase::Steady,
        Some(StepKind::RestartIstiod | StepKind::SwitchIntermediate) => Phase::NewRootPropagating,
        Some(StepKind::DropRoot) => Phase::IntermediateSwitched,
        None => Phase::Unknown,
    };
    Assessment {
        namespace: "istio-system".into(),
        secret: "cacerts".into(),
        now: t(NOW),
        trust_propagation_seconds: 86400,
        cacerts_found: true,
        verdict: Some(crate::bundle::Verdict::Valid),
        findings: Vec::new(),
        root_fingerprint: Some(roots.join("+")),
        history_recorded: true,
        history_began: None,
        roots: roots
            .iter()
            .map(|r| RootStatus {
                subject: format!("CN={r}"),
                fingerprint: format!("fp-{r}"),
                not_after: t("2036-01-01T00:00:00Z"),
                in_cacerts_since: None,
                trust_counts_from: None,
                trusted_after: None,
                served_by_istiod: None,
                anchors_live_intermediate: *r == anchor,
            })
            .collect(),
        live_intermediate: Some(IntermediateStatus {
            subject: format!("CN={live}"),
            fingerprint: format!("fp-{live}"),
            not_after: t("2028-01-01T00:00:00Z"),
            anchor: Some(root_ref(anchor)),
            live_since: None,
        }),
        retired_intermediates: Vec::new(),
        deployments: Vec::new(),
        served_roots: ServedRoots { found: true, fingerprints: Vec::new(), matches_cacerts: Some(true) },
        phase,
        next_step: next.map(|(step, earliest)| NextStep {
            step,
            action: format!("{step:?}"),
            root: None,
            earliest: earliest.map(t),
            safe_now: earliest.is_none_or(|e| t(e) <= t(NOW)),
        }),
        nearest_expiry: None,
        healthy: true,
        problems: Vec::new(),
        warnings: Vec::new(),
    }
}

fn ok(name: &str, a: Assessment) -> ClusterOutcome {
    ClusterOutcome { cluster: ClusterRef { name: name.into(), namespace: "istio-system".into() }, result: Ok(a) }
}

fn unreachable(name: &str) -> ClusterOutcome {
    ClusterOutcome {
        cluster: ClusterRef { name: name.into(), namespace: "istio-system".into() },
        result: Err(ClusterError { class: FailureClass::Transient, message: "connection refused".into() }),
    }
}

#[test]
fn a_steady_fleet_under_one_root_is_consistent_and_may_add_the_next_root_any_time() {
    let v = verdict(
        &[
            ok("east", assessment(&["A"], "A-east", "A", Some((StepKind::AddRoot, None)))),
            ok("west", assessment(&["A"], "A-west", "A", Some((StepKind::AddRoot, None)))),
        ],
        t(NOW),
    );
    assert!(v.consistent && v.roots_agree && v.broken_pairs.is_empty());
    let step = v.next_step.clone().expect("a next step");
    assert_eq!(step.step, FleetStepKind::AddRoot);
    assert!(step.safe_now && step.earliest.is_none());
    assert_eq!(v.exit_code(), exit::OK);
}

#[test]
fn a_cluster_switched_to_a_root_another_cluster_lacks_breaks_that_pair_only() {
    let v = verdict(
        &[
            ok(
                "east",
                assessment(&["A", "B"], "B-east", "B", Some((StepKind::DropRoot, Some("2026-12-11T00:00:00Z")))),
            ),
            ok("west", assessment(&["A", "B"], "A-west", "A", Some((StepKind::SwitchIntermediate, None)))),
            ok("lag", assessment(&["A"], "A-lag", "A", Some((StepKind::AddRoot, None)))),
        ],
        t(NOW),
    );
    assert!(!v.roots_agree && !v.consistent);
    assert_eq!(v.bundles.len(), 2);
    assert_eq!(v.broken_pairs.len(), 1, "{:?}", v.broken_pairs);
    let pair = &v.broken_pairs[0];
    assert_eq!((pair.cluster.as_str(), pair.untrusted_by.as_str()), ("east", "lag"));
    assert_eq!(pair.root, root_ref("B"));
    assert_eq!(pair.intermediate, "CN=B-east");
    // Nothing can be judged fleet-wide until the laggard holds the bundle the others hold.
    let step = v.next_step.clone().unwrap();
    assert_eq!(step.step, FleetStepKind::SyncRootBundle);
    assert_eq!(step.waiting_for, vec!["lag".to_owned()]);
    assert_eq!(step.ahead, vec!["east".to_owned(), "west".to_owned()]);
    assert!(!step.safe_now);
    assert_eq!(v.exit_code(), exit::INVALID);
}

#[test]
fn the_fleet_switch_waits_for_the_cluster_where_the_new_root_is_trusted_last() {
    let v = verdict(
        &[
            ok(
                "east",
                assessment(
                    &["A", "B"],
                    "A-east",
                    "A",
                    Some((StepKind::SwitchIntermediate, Some("2026-12-10T13:00:00Z"))),
                ),
            ),
            ok(
                "west",
                assessment(
                    &["A", "B"],
                    "A-west",
                    "A",
                    Some((StepKind::SwitchIntermediate, Some("2026-12-11T09:00:00Z"))),
                ),
            ),
            ok(
                "north",
                assessment(
                    &["A", "B"],
                    "A-north",
                    "A",
                    Some((StepKind::SwitchIntermediate, Some("2026-12-10T08:00:00Z"))),
                ),
            ),
        ],
        t(NOW),
    );
    assert!(v.consistent, "same bundles, every intermediate trusted everywhere");
    let step = v.next_step.clone().unwrap();
    assert_eq!(step.step, FleetStepKind::SwitchIntermediate);
    assert_eq!(step.earliest, Some(t("2026-12-11T09:00:00Z")), "the latest over the clusters");
    assert!(!step.safe_now);
    assert_eq!(step.waiting_for, vec!["west".to_owned()]);
    assert_eq!(v.exit_code(), exit::OK, "waiting is not an inconsistency");
}

#[test]
fn after_the_old_root_left_a_lagging_cluster_still_holding_it_is_the_one_to_wait_for() {
    // The runbook is cyclic: east and west are steady under B (next: add a root), lag still holds A + B.
    let v = verdict(
        &[
            ok("east", assessment(&["B"], "B-east", "B", Some((StepKind::AddRoot, None)))),
            ok("lag", assessment(&["A", "B"], "B-lag", "B", Some((StepKind::DropRoot, None)))),
            ok("west", assessment(&["B"], "B-west", "B", Some((StepKind::AddRoot, None)))),
        ],
        t(NOW),
    );
    assert!(v.broken_pairs.is_empty(), "every live intermediate is under B, which everyone trusts");
    let step = v.next_step.clone().unwrap();
    assert_eq!(step.step, FleetStepKind::SyncRootBundle);
    assert_eq!(step.waiting_for, vec!["lag".to_owned()]);
    assert_eq!(v.exit_code(), exit::INVALID);
}

#[test]
fn dropping_the_old_root_waits_until_every_cluster_may_drop_it() {
    let v = verdict(
        &[
            ok(
                "east",
                assessment(&["A", "B"], "B-east", "B", Some((StepKind::DropRoot, Some("2026-12-10T06:00:00Z")))),
            ),
            ok(
                "west",
                assessment(&["A", "B"], "B-west", "B", Some((StepKind::DropRoot, Some("2026-12-10T18:00:00Z")))),
            ),
        ],
        t(NOW),
    );
    let step = v.next_step.clone().unwrap();
    assert_eq!((step.step, step.earliest), (FleetStepKind::DropRoot, Some(t("2026-12-10T18:00:00Z"))));
    assert_eq!(step.waiting_for, vec!["west".to_owned()]);
    // One cluster that has not switched yet holds the fleet at the switch.
    let v = verdict(
        &[
            ok("east", assessment(&["A", "B"], "B-east", "B", Some((StepKind::DropRoot, None)))),
            ok("west", assessment(&["A", "B"], "A-west", "A", Some((StepKind::SwitchIntermediate, None)))),
        ],
        t(NOW),
    );
    let step = v.next_step.clone().unwrap();
    assert_eq!(step.step, FleetStepKind::SwitchIntermediate);
    assert_eq!(step.clusters, vec!["west".to_owned()]);
}

#[test]
fn an_unreachable_cluster_is_exit_1_unless_something_known_is_wrong() {
    let fine = ok("east", assessment(&["A"], "A-east", "A", Some((StepKind::AddRoot, None))));
    let v = verdict(&[fine.clone(), unreachable("gone")], t(NOW));
    assert_eq!(v.unreachable, vec!["gone".to_owned()]);
    assert!(!v.consistent);
    assert_eq!(v.exit_code(), exit::TRANSIENT);
    let mut broken = assessment(&["A"], "A-bad", "A", None);
    broken.healthy = false;
    broken.problems.push("the material in cacerts is invalid".into());
    let v = verdict(&[fine, unreachable("gone"), ok("bad", broken)], t(NOW));
    assert_eq!(v.invalid, vec!["bad".to_owned()]);
    assert_eq!(v.exit_code(), exit::INVALID);
}

// ------------------------------------------------------------------------------------------------ gates

fn cert(name: &str) -> CertFact {
    CertFact { subject: format!("CN={name}"), fingerprint: format!("fp-{name}"), not_after: t("2036-01-01T00:00:00Z") }
}

fn ca(roots: &[&str], inter: &str, anchor: &str) -> CaFacts {
    CaFacts {
        roots: roots.iter().map(|r| cert(r)).collect(),
        intermediate: Some(cert(inter)),
        anchor: roots.iter().position(|r| *r == anchor),
    }
}

fn opts() -> RotationOptions {
    RotationOptions { trust_propagation: 24 * HOUR, ..Default::default() }
}

/// A cluster whose `cacerts` went through `writes` (each allowed by the rules) at the given times.
fn cluster(name: &str, writes: &[(&CaFacts, &str)]) -> ClusterState {
    let mut current: Option<CaFacts> = None;
    let mut history: Option<History> = None;
    for (next, at) in writes {
        let d = evaluate(current.as_ref(), history.as_ref(), &IstiodServing::default(), next, t(at), &opts());
        assert!(d.allowed(), "setup write at {at} refused: {}", d.message());
        current = Some((*next).clone());
        history = Some(d.history);
    }
    ClusterState { name: name.into(), current, history, serving: IstiodServing::default() }
}

#[test]
fn switching_one_cluster_is_blocked_while_another_cluster_lacks_the_new_root() {
    let day0 = "2026-12-01T00:00:00Z";
    let east = cluster(
        "east",
        &[(&ca(&["A"], "A-east", "A"), day0), (&ca(&["A", "B"], "A-east", "A"), "2026-12-02T00:00:00Z")],
    );
    let lag = cluster("lag", &[(&ca(&["A"], "A-lag", "A"), day0)]);
    let proposal = vec![("east".to_owned(), ca(&["A", "B"], "B-east", "B"))];
    let blocks = gates(&[east, lag], &proposal, t(NOW), &opts());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let b = &blocks[0];
    assert_eq!((b.cluster.as_str(), b.material_for.as_str()), ("lag", "east"));
    assert_eq!(b.block.rule, Rule::RootNotPropagated);
    assert_eq!(b.block.after_step, Some(StepKind::AddRoot));
    assert!(b.to_string().contains("cluster lag (material for east)"), "{b}");
}

#[test]
fn switching_waits_for_trust_propagation_in_the_cluster_that_got_the_root_last() {
    let day0 = "2026-12-01T00:00:00Z";
    let east = cluster(
        "east",
        &[(&ca(&["A"], "A-east", "A"), day0), (&ca(&["A", "B"], "A-east", "A"), "2026-12-02T00:00:00Z")],
    );
    let late = cluster(
        "late",
        &[(&ca(&["A"], "A-late", "A"), day0), (&ca(&["A", "B"], "A-late", "A"), "2026-12-10T06:00:00Z")],
    );
    let proposal = vec![("east".to_owned(), ca(&["A", "B"], "B-east", "B"))];
    let blocks = gates(&[east.clone(), late.clone()], &proposal, t(NOW), &opts());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].cluster, "late");
    assert_eq!(blocks[0].block.safe_after, Some(t("2026-12-11T06:00:00Z")));
    assert!(gates(&[east, late], &proposal, t("2026-12-11T06:00:01Z"), &opts()).is_empty());
}

#[test]
fn switching_waits_until_every_clusters_istiod_serves_the_new_root() {
    let day0 = "2026-12-01T00:00:00Z";
    let with_b = |name: &str| {
        cluster(
            name,
            &[(&ca(&["A"], &format!("A-{name}"), "A"), day0), (&ca(&["A", "B"], &format!("A-{name}"), "A"), day0)],
        )
    };
    // Days after B's write, west's istiod still owes the restart for A+B: west's workloads never learnt B.
    let (east, mut west) = (with_b("east"), with_b("west"));
    west.serving = IstiodServing { owed: vec!["istiod".into()], ..Default::default() };
    let proposal = vec![("east".to_owned(), ca(&["A", "B"], "B-east", "B"))];
    let blocks = gates(&[east.clone(), west.clone()], &proposal, t(NOW), &opts());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!((blocks[0].cluster.as_str(), blocks[0].material_for.as_str()), ("west", "east"));
    assert_eq!(blocks[0].block.after_step, Some(StepKind::RestartIstiod));
    // West restarted 2 h before NOW: east's switch waits for trust propagation from there.
    let restart = t("2026-12-10T10:00:00Z");
    west.serving = IstiodServing { restarted_at: Some(restart), ..Default::default() };
    let blocks = gates(&[east, west], &proposal, t(NOW), &opts());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].block.safe_after, Some(t("2026-12-11T10:00:00Z")));
}

#[test]
fn dropping_a_root_is_blocked_while_another_cluster_still_signs_or_recently_signed_under_it() {
    let day0 = "2026-12-01T00:00:00Z";
    let both = |inter: &str, anchor: &str| ca(&["A", "B"], inter, anchor);
    let east = cluster(
        "east",
        &[
            (&ca(&["A"], "A-east", "A"), day0),
            (&both("A-east", "A"), "2026-12-02T00:00:00Z"),
            (&both("B-east", "B"), "2026-12-04T00:00:00Z"),
        ],
    );
    let west_still_a =
        cluster("west", &[(&ca(&["A"], "A-west", "A"), day0), (&both("A-west", "A"), "2026-12-02T00:00:00Z")]);
    let drop_a = vec![("east".to_owned(), ca(&["B"], "B-east", "B"))];
    let blocks = gates(&[east.clone(), west_still_a], &drop_a, t(NOW), &opts());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!((blocks[0].cluster.as_str(), blocks[0].block.rule), ("west", Rule::RootStillAnchoring));
    assert_eq!(blocks[0].block.after_step, Some(StepKind::SwitchIntermediate));

    let west_switched_recently = cluster(
        "west",
        &[
            (&ca(&["A"], "A-west", "A"), day0),
            (&both("A-west", "A"), "2026-12-02T00:00:00Z"),
            (&both("B-west", "B"), "2026-12-10T00:00:00Z"),
        ],
    );
    let blocks = gates(&[east.clone(), west_switched_recently.clone()], &drop_a, t(NOW), &opts());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].block.safe_after, Some(t("2026-12-11T00:00:00Z")), "A-west's certificates may live a day");
    assert!(gates(&[east, west_switched_recently], &drop_a, t("2026-12-11T00:00:01Z"), &opts()).is_empty());
}

#[test]
fn a_shared_upload_reports_each_cluster_once_per_reason() {
    let day0 = "2026-12-01T00:00:00Z";
    let a = cluster("a", &[(&ca(&["A"], "A-a", "A"), day0)]);
    let b = cluster("b", &[(&ca(&["A"], "A-b", "A"), day0)]);
    // Adding a root is never blocked, for any cluster.
    let add = vec![("a".to_owned(), ca(&["A", "B"], "A-a", "A")), ("b".to_owned(), ca(&["A", "B"], "A-b", "A"))];
    assert!(gates(&[a.clone(), b.clone()], &add, t(NOW), &opts()).is_empty());
    // The one-step swap: each cluster's own two rules, plus nothing twice.
    let swap = vec![("a".to_owned(), ca(&["B"], "B-a", "B")), ("b".to_owned(), ca(&["B"], "B-b", "B"))];
    let blocks = gates(&[a, b], &swap, t(NOW), &opts());
    let mut keys: Vec<_> =
        blocks.iter().map(|b| (b.cluster.clone(), b.block.rule, b.block.intermediate_fingerprint.clone())).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no duplicates: {blocks:?}");
    for cluster in ["a", "b"] {
        assert!(blocks.iter().any(|b| b.cluster == cluster && b.block.rule == Rule::RootNotPropagated));
        assert!(blocks.iter().any(|b| b.cluster == cluster && b.block.rule == Rule::RootStillAnchoring));
    }
}

#[test]
fn a_cluster_without_cacerts_blocks_nothing_but_its_new_intermediate_must_be_trusted_elsewhere() {
    let fresh = ClusterState { name: "fresh".into(), current: None, history: None, serving: IstiodServing::default() };
    let old = cluster("old", &[(&ca(&["A"], "A-old", "A"), "2026-12-01T00:00:00Z")]);
    let ok = vec![("fresh".to_owned(), ca(&["A"], "A-fresh", "A"))];
    assert!(gates(&[fresh.clone(), old.clone()], &ok, t(NOW), &opts()).is_empty());
    let under_b = vec![("fresh".to_owned(), ca(&["A", "B"], "B-fresh", "B"))];
    let blocks = gates(&[fresh, old], &under_b, t(NOW), &opts());
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].cluster, "old");
}
