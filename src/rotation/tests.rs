//! The gates, the history and the phases at fixed times, on hand-made facts (no certificates needed).

use std::time::Duration;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn t(s: &str) -> jiff::Timestamp {
    s.parse().expect("valid timestamp")
}

fn cert(name: &str) -> CertFact {
    CertFact { subject: format!("CN={name}"), fingerprint: format!("fp-{name}"), not_after: t("2036-01-01T00:00:00Z") }
}

/// A plug-in CA: `roots` in order, `inter` anchored by `anchor`.
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

/// Applies a change the gates allowed, returning the history written with it.
fn write(current: Option<(&CaFacts, Option<&History>)>, next: &CaFacts, now: &str) -> History {
    let d = evaluate(current.map(|c| c.0), current.and_then(|c| c.1), &IstiodServing::default(), next, t(now), &opts());
    assert!(d.allowed(), "expected the change to be allowed at {now}: {}", d.message());
    d.history
}

#[test]
fn a_first_install_is_never_blocked_and_its_roots_count_as_propagated() {
    let next = ca(&["Root A"], "A1", "Root A");
    let h = write(None, &next, "2026-12-01T08:00:00Z");
    assert_eq!(h.roots, vec![RootRecord { fingerprint: "fp-Root A".into(), since: None }]);
    assert_eq!(h.intermediates.len(), 1);
    assert_eq!(h.intermediates[0].since, Some(t("2026-12-01T08:00:00Z")));
    assert_eq!(h.intermediates[0].anchor, "fp-Root A");
    // Round trip through the annotation.
    assert_eq!(History::parse(Some(&h.to_annotation())), Some(h));
}

#[test]
fn the_one_step_swap_is_refused_by_both_rules() {
    let a = ca(&["Root A"], "A1", "Root A");
    let h = write(None, &a, "2026-12-01T08:00:00Z");
    let b = ca(&["Root B"], "B1", "Root B");
    let d = evaluate(Some(&a), Some(&h), &IstiodServing::default(), &b, t("2026-12-10T08:00:00Z"), &opts());
    assert!(d.blocked_by(Rule::RootNotPropagated) && d.blocked_by(Rule::RootStillAnchoring), "{:?}", d.blocks);
    assert_eq!(d.unblock_at(), None, "waiting alone never makes the swap safe");
    let msg = d.message();
    assert!(msg.contains("add CN=Root B to root-cert first"), "{msg}");
    assert!(msg.contains("dropping root CN=Root A is not safe before the intermediate has been switched"), "{msg}");
}

#[test]
fn adding_a_root_is_never_blocked_and_is_timed() {
    let a = ca(&["Root A"], "A1", "Root A");
    let h = write(None, &a, "2026-12-01T08:00:00Z");
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let h = write(Some((&a, Some(&h))), &ab, "2026-12-03T08:00:00Z");
    assert_eq!(h.root("fp-Root A").unwrap().since, None);
    assert_eq!(h.root("fp-Root B").unwrap().since, Some(t("2026-12-03T08:00:00Z")));
}

#[test]
fn switching_the_intermediate_waits_for_the_new_root_to_propagate() {
    let a = ca(&["Root A"], "A1", "Root A");
    let h = write(None, &a, "2026-12-01T08:00:00Z");
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let h = write(Some((&a, Some(&h))), &ab, "2026-12-03T08:00:00Z");
    let ab1 = ca(&["Root A", "Root B"], "B1", "Root B");
    let d = evaluate(Some(&ab), Some(&h), &IstiodServing::default(), &ab1, t("2026-12-03T09:00:00Z"), &opts());
    assert_eq!(d.blocks.len(), 1);
    assert_eq!(d.blocks[0].rule, Rule::RootNotPropagated);
    assert_eq!(d.unblock_at(), Some(t("2026-12-04T08:00:00Z")));
    assert!(
        d.message().contains("making intermediate CN=B1 live is safe after 2026-12-04T08:00:00Z"),
        "{}",
        d.message()
    );
    // One second before: still refused; at the time: allowed.
    assert!(
        !evaluate(Some(&ab), Some(&h), &IstiodServing::default(), &ab1, t("2026-12-04T07:59:59Z"), &opts()).allowed()
    );
    let h2 = write(Some((&ab, Some(&h))), &ab1, "2026-12-04T08:00:00Z");
    let a1 = h2.intermediates.iter().find(|i| i.fingerprint == "fp-A1").unwrap();
    assert_eq!(a1.until, Some(t("2026-12-04T08:00:00Z")));
    let b1 = h2.intermediates.iter().find(|i| i.fingerprint == "fp-B1").unwrap();
    assert_eq!((b1.since, b1.until, b1.anchor.as_str()), (Some(t("2026-12-04T08:00:00Z")), None, "fp-Root B"));
}

#[test]
fn dropping_the_old_root_waits_for_the_old_intermediates_certificates() {
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    // Adopted without history: both roots count as propagated, so the switch goes through at once.
    let ab1 = ca(&["Root A", "Root B"], "B1", "Root B");
    let h = write(Some((&ab, None)), &ab1, "2026-12-04T08:00:00Z");
    let b = ca(&["Root B"], "B1", "Root B");
    let d = evaluate(Some(&ab1), Some(&h), &IstiodServing::default(), &b, t("2026-12-04T10:00:00Z"), &opts());
    assert_eq!(d.blocks.len(), 1, "{:?}", d.blocks);
    assert_eq!(
        d.message(),
        "dropping root CN=Root A is safe after 2026-12-05T08:00:00Z: certificates from intermediate CN=A1 may be valid until then"
    );
    assert_eq!(d.unblock_at(), Some(t("2026-12-05T08:00:00Z")));
    let h = write(Some((&ab1, Some(&h))), &b, "2026-12-05T08:00:00Z");
    assert_eq!(h.roots.len(), 1, "the dropped root leaves the history");
    assert_eq!(h.intermediates.len(), 1, "its intermediate too: {:?}", h.intermediates);
}

#[test]
fn dropping_the_root_of_the_live_intermediate_needs_the_switch_first() {
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let b_only_a1 = ca(&["Root B"], "B1", "Root B");
    let d = evaluate(Some(&ab), None, &IstiodServing::default(), &b_only_a1, t("2026-12-04T08:00:00Z"), &opts());
    assert!(d.blocked_by(Rule::RootStillAnchoring));
    assert!(!d.blocked_by(Rule::RootNotPropagated), "B counts as propagated without history");
    assert_eq!(d.blocks[0].safe(), SafeAfter::Step(StepKind::SwitchIntermediate));
}

#[test]
fn an_intermediate_rotation_under_the_same_root_is_never_blocked() {
    let a = ca(&["Root A"], "A1", "Root A");
    let h = write(None, &a, "2026-12-01T08:00:00Z");
    // Even straight after a root was added under which nothing is live yet.
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let h = write(Some((&a, Some(&h))), &ab, "2026-12-01T09:00:00Z");
    let ab2 = ca(&["Root A", "Root B"], "A2", "Root A");
    let h = write(Some((&ab, Some(&h))), &ab2, "2026-12-01T09:00:01Z");
    // A1 is retired, but dropping B (which anchored nothing) is fine.
    write(Some((&ab2, Some(&h))), &ca(&["Root A"], "A2", "Root A"), "2026-12-01T09:00:02Z");
}

#[test]
fn zero_trust_propagation_turns_the_waiting_off_but_not_the_structural_rules() {
    let zero = RotationOptions { trust_propagation: Duration::ZERO, ..Default::default() };
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let h = write(Some((&ca(&["Root A"], "A1", "Root A"), None)), &ab, "2026-12-01T08:00:00.5Z");
    let ab1 = ca(&["Root A", "Root B"], "B1", "Root B");
    let now = t("2026-12-01T08:00:00.6Z");
    assert!(!evaluate(Some(&ab), Some(&h), &IstiodServing::default(), &ab1, now, &opts()).allowed());
    let d = evaluate(Some(&ab), Some(&h), &IstiodServing::default(), &ab1, now, &zero);
    assert!(d.allowed(), "{}", d.message());
    let b = ca(&["Root B"], "B1", "Root B");
    let d = evaluate(Some(&ab1), Some(&d.history), &IstiodServing::default(), &b, now, &zero);
    assert!(d.allowed(), "{}", d.message());
    // The one-step swap stays refused.
    let d = evaluate(Some(&ca(&["Root A"], "A1", "Root A")), None, &IstiodServing::default(), &b, now, &zero);
    assert!(d.blocked_by(Rule::RootNotPropagated) && d.blocked_by(Rule::RootStillAnchoring));
}

/// A → A+B written at 08:00 on 2026-12-03, with its history; the switch to B1 is judged against `serving`.
fn switch_to_b1(serving: &IstiodServing, now: &str, opts: &RotationOptions) -> GateDecision {
    let a = ca(&["Root A"], "A1", "Root A");
    let h = write(None, &a, "2026-12-01T08:00:00Z");
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let h = write(Some((&a, Some(&h))), &ab, "2026-12-03T08:00:00Z");
    evaluate(Some(&ab), Some(&h), serving, &ca(&["Root A", "Root B"], "B1", "Root B"), t(now), opts)
}

#[test]
fn the_switch_waits_while_a_restart_for_the_new_root_is_owed_however_long_ago_it_was_written() {
    // The restart patches failed (403, 500) ever since A+B landed: istiod never loaded B, so no workload can
    // trust it, whatever the time since the write.
    let owed = IstiodServing { owed: vec!["istiod-canary".into()], ..Default::default() };
    let d = switch_to_b1(&owed, "2026-12-20T08:00:00Z", &opts());
    assert_eq!(d.blocks.len(), 1, "{:?}", d.blocks);
    assert_eq!(d.blocks[0].rule, Rule::RootNotPropagated);
    assert_eq!(d.blocks[0].safe(), SafeAfter::Step(StepKind::RestartIstiod));
    assert_eq!(d.unblock_at(), None, "waiting alone does not make it safe");
    assert_eq!(
        d.message(),
        "making intermediate CN=B1 live is not safe before istiod serves its root CN=Root B: istiod (istiod-canary) has not restarted for the roots in cacerts yet (cacerts-sync retries the restart every pass); workloads learn a root from istiod, so --trust-propagation 1day counts from that restart"
    );
    // The same when every restart went through but istiod's rollout never loaded B.
    let stuck = IstiodServing { served: Some(vec!["fp-Root A".into()]), ..Default::default() };
    let d = switch_to_b1(&stuck, "2026-12-20T08:00:00Z", &opts());
    assert_eq!(d.blocks[0].safe(), SafeAfter::Step(StepKind::RestartIstiod));
    assert!(d.message().contains("istio-ca-root-cert does not hold it yet"), "{}", d.message());
    // A zero --trust-propagation turns this waiting off as well.
    let zero = RotationOptions { trust_propagation: Duration::ZERO, ..Default::default() };
    assert!(switch_to_b1(&owed, "2026-12-03T08:00:01Z", &zero).allowed());
}

#[test]
fn trust_propagation_counts_from_istiods_restart_when_it_came_after_the_write() {
    let restarted = t("2026-12-03T20:00:00Z");
    let serving = IstiodServing {
        restarted_at: Some(restarted),
        served: Some(vec!["fp-Root A".into(), "fp-Root B".into()]),
        ..Default::default()
    };
    // 24 h after the write, but 12 h after the restart: refused until 24 h after the restart.
    let d = switch_to_b1(&serving, "2026-12-04T08:00:00Z", &opts());
    assert_eq!(d.unblock_at(), Some(t("2026-12-04T20:00:00Z")));
    assert_eq!(
        d.message(),
        "making intermediate CN=B1 live is safe after 2026-12-04T20:00:00Z: its root CN=Root B reached istiod (its restart for the roots in cacerts) less than --trust-propagation 1day ago, and workloads trust a new root only once their certificates renew"
    );
    assert!(!switch_to_b1(&serving, "2026-12-04T19:59:59Z", &opts()).allowed());
    assert!(switch_to_b1(&serving, "2026-12-04T20:00:00Z", &opts()).allowed());
    // A restart before the write (a record without restart, an older kubectl restart) leaves the write's time.
    let earlier = IstiodServing { restarted_at: Some(t("2026-12-02T08:00:00Z")), ..Default::default() };
    assert_eq!(switch_to_b1(&earlier, "2026-12-03T09:00:00Z", &opts()).unblock_at(), Some(t("2026-12-04T08:00:00Z")));
    assert!(switch_to_b1(&earlier, "2026-12-04T08:00:00Z", &opts()).allowed());
}

#[test]
fn istiod_is_consulted_only_for_a_switch_to_a_root_already_in_cacerts() {
    let a = ca(&["Root A"], "A1", "Root A");
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let ab1 = ca(&["Root A", "Root B"], "B1", "Root B");
    assert!(consults_istiod(Some(&ab), &ab1));
    assert!(!consults_istiod(Some(&a), &ab), "adding a root");
    assert!(!consults_istiod(Some(&ab), &ca(&["Root A", "Root B"], "A2", "Root A")), "same anchor");
    assert!(
        !consults_istiod(Some(&a), &ca(&["Root B"], "B1", "Root B")),
        "the root is not in cacerts: a step is missing"
    );
    assert!(!consults_istiod(None, &ab1), "first install");
    // Roots from before the history count as propagated, whatever istiod shows.
    let owed = IstiodServing { owed: vec!["istiod".into()], ..Default::default() };
    assert!(evaluate(Some(&ab), None, &owed, &ab1, t("2026-12-03T08:00:00Z"), &opts()).allowed());
}

#[test]
fn recorded_times_are_rounded_up_so_no_gate_opens_early() {
    let a = ca(&["Root A"], "A1", "Root A");
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let h = write(Some((&a, None)), &ab, "2026-12-01T08:00:00.2Z");
    assert_eq!(h.root("fp-Root B").unwrap().since, Some(t("2026-12-01T08:00:01Z")));
}

#[test]
fn unreadable_or_foreign_history_counts_as_none() {
    assert_eq!(History::parse(Some("not json")), None);
    assert_eq!(History::parse(Some(r#"{"v":2,"began":"2026-12-01T08:00:00Z","roots":[],"intermediates":[]}"#)), None);
    assert_eq!(History::parse(None), None);
}

#[test]
fn retired_intermediates_are_pruned_and_bounded() {
    let mut cur = ca(&["Root A"], "I0", "Root A");
    let mut h = write(None, &cur, "2026-12-01T00:00:00Z");
    for n in 1..=12 {
        let next = ca(&["Root A"], &format!("I{n}"), "Root A");
        h = write(Some((&cur, Some(&h))), &next, &format!("2026-12-01T{n:02}:00:00Z"));
        cur = next;
    }
    assert!(h.intermediates.len() <= history::MAX_INTERMEDIATES);
    assert!(h.live(&cur).is_some(), "the live one is never pruned");
    // Two days later every retired record is past trust propagation and goes with the next write.
    let next = ca(&["Root A"], "I13", "Root A");
    let h = write(Some((&cur, Some(&h))), &next, "2026-12-03T13:00:00Z");
    assert_eq!(h.intermediates.iter().filter(|i| i.until.is_some()).count(), 1, "{:?}", h.intermediates);
}

#[test]
fn a_root_someone_else_added_counts_as_propagated() {
    let a = ca(&["Root A"], "A1", "Root A");
    let h = write(None, &a, "2026-12-01T08:00:00Z");
    // cacerts now holds A+B (a hand edit); the history only knows A.
    let ab = ca(&["Root A", "Root B"], "A1", "Root A");
    let ab1 = ca(&["Root A", "Root B"], "B1", "Root B");
    write(Some((&ab, Some(&h))), &ab1, "2026-12-01T08:00:01Z");
}

mod assessment {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bundle::RawMaterial;
    use crate::bundle::testpki::{self, Spec};
    use crate::observe::{CacertsObject, ClusterView, IstiodDeployment};

    fn view(material: RawMaterial, history: Option<&History>, served: Option<String>, recorded: &str) -> ClusterView {
        let annotations: BTreeMap<String, String> =
            history.map(|h| (HISTORY_ANNOTATION.to_string(), h.to_annotation())).into_iter().collect();
        ClusterView {
            namespace: "istio-system".into(),
            secret: "cacerts".into(),
            cacerts: Some(CacertsObject { material, annotations, managed: true }),
            istiod: vec![IstiodDeployment {
                name: "istiod".into(),
                recorded_root_fingerprint: Some(recorded.into()),
                restarted_at: Some("2030-05-31T00:00:00Z".into()),
                generation: Some(2),
                rollout_complete: true,
            }],
            served_roots_pem: served,
        }
    }

    fn root_fp(m: &RawMaterial) -> String {
        crate::bundle::root_fingerprint(&m.root_cert).unwrap().to_string()
    }

    #[test]
    fn istiod_serving_other_roots_is_unhealthy_and_the_same_roots_are_healthy() {
        let a = Spec::ca("Root A").issue(None);
        let a1 = Spec::ca("Intermediate A1").issue(Some(&a));
        let other = Spec::ca("Root Z").issue(None);
        let m = testpki::material(&a, &a1);
        let fp = root_fp(&m);
        let now = testpki::now();

        let st = assess(&view(m.clone(), None, Some(other.pem().into()), &fp), now, &opts());
        assert!(!st.healthy);
        assert!(st.problems.iter().any(|p| p.contains("istiod serves other roots")), "{:?}", st.problems);
        assert_eq!(st.deployments[0].serves_current_roots, Some(false));
        assert_eq!(st.served_roots.matches_cacerts, Some(false));

        // Formatting differs (CRLF), the certificates are the same: healthy.
        let st = assess(&view(m, None, Some(a.pem().replace('\n', "\r\n")), &fp), now, &opts());
        assert!(st.healthy, "{:?}", st.problems);
        assert_eq!(st.deployments[0].serves_current_roots, Some(true));
        assert!(st.deployments[0].restarted_for_current_roots);
        assert_eq!(st.phase, Phase::Steady);
        assert_eq!(st.next_step.as_ref().unwrap().step, StepKind::AddRoot);
        assert!(!st.history_recorded);
        assert_eq!(st.roots[0].in_cacerts_since, None);
        assert!(st.roots[0].anchors_live_intermediate);
    }

    #[test]
    fn a_missing_cacerts_is_unhealthy_with_an_unknown_phase() {
        let mut v = view(testpki::Pki::new().material(), None, None, "x");
        v.cacerts = None;
        let st = assess(&v, testpki::now(), &opts());
        assert!(!st.healthy);
        assert!(st.problems[0].contains("does not exist"), "{:?}", st.problems);
        assert_eq!(st.phase, Phase::Unknown);
        assert!(st.next_step.is_none());
        assert!(st.roots.is_empty());
    }

    /// A+B with A1 live: root B written `hours_ago` before [`testpki::now`], A from before the history.
    struct NewRootB {
        a: testpki::Ca,
        b: testpki::Ca,
        /// A/A1 (the bundle before B).
        before: RawMaterial,
        /// A+B/A1.
        m: RawMaterial,
        since: jiff::Timestamp,
        b_fp: String,
        history: History,
    }

    fn new_root_b(hours_ago: i64) -> NewRootB {
        let (a, b) = (Spec::ca("Root A").issue(None), Spec::ca("Root B").issue(None));
        let a1 = Spec::ca("Intermediate A1").issue(Some(&a));
        let before = testpki::material(&a, &a1);
        let mut m = before.clone();
        m.root_cert = format!("{}{}", a.pem(), b.pem()).into_bytes();
        let since = testpki::now().checked_sub(jiff::SignedDuration::from_hours(hours_ago)).unwrap();
        let b_fp = crate::bundle::Fingerprint::of(b.der()).to_string();
        let history = History {
            v: HISTORY_VERSION,
            began: since,
            roots: vec![
                RootRecord { fingerprint: crate::bundle::Fingerprint::of(a.der()).to_string(), since: None },
                RootRecord { fingerprint: b_fp.clone(), since: Some(since) },
            ],
            intermediates: Vec::new(),
        };
        NewRootB { a, b, before, m, since, b_fp, history }
    }

    #[test]
    fn a_new_root_propagates_until_its_time_and_then_the_switch_is_safe() {
        let NewRootB { m, since, b_fp, history, .. } = new_root_b(1);
        let now = testpki::now();
        let fp = root_fp(&m);
        let st = assess(&view(m.clone(), Some(&history), None, &fp), now, &opts());
        assert!(st.healthy, "no istio-ca-root-cert is not a problem: {:?}", st.problems);
        assert_eq!(st.phase, Phase::NewRootPropagating);
        let next = st.next_step.as_ref().unwrap();
        assert_eq!(next.step, StepKind::SwitchIntermediate);
        assert_eq!(next.root.as_ref().unwrap().fingerprint, b_fp);
        assert_eq!(next.earliest, Some(plus(since, 24 * HOUR)));
        assert!(!next.safe_now);
        let later = assess(&view(m, Some(&history), None, &fp), plus(since, 24 * HOUR), &opts());
        assert!(later.next_step.unwrap().safe_now);
    }

    #[test]
    fn status_waits_for_istiod_before_the_switch_and_counts_from_its_restart() {
        let NewRootB { a, b, before, m, b_fp, history, .. } = new_root_b(30);
        let old_fp = root_fp(&before);
        let now = testpki::now();
        // istiod still recorded for the old bundle A: its restart is owed, 30 h after B was written.
        let st = assess(&view(m.clone(), Some(&history), Some(a.pem().into()), &old_fp), now, &opts());
        let next = st.next_step.as_ref().unwrap();
        assert_eq!((st.phase, next.step), (Phase::NewRootPropagating, StepKind::RestartIstiod));
        assert!(next.action.contains("istiod (istiod) has not restarted"), "{}", next.action);
        let b_status = st.roots.iter().find(|r| r.fingerprint == b_fp).unwrap();
        assert_eq!((b_status.served_by_istiod, b_status.trusted_after), (Some(false), None));
        assert!(st.render_text().contains("not served by istiod yet"), "{}", st.render_text());

        // Restarted for A+B 6 h ago and serving it: the switch is safe 24 h after that restart.
        let restart = now.checked_sub(jiff::SignedDuration::from_hours(6)).unwrap();
        let ab_fp = root_fp(&m);
        let mut v = view(m, Some(&history), Some(format!("{}{}", a.pem(), b.pem())), &ab_fp);
        v.istiod[0].restarted_at = Some(format_time(restart));
        let st = assess(&v, now, &opts());
        // restartedAt has whole seconds, so the clock starts a second later: no gate opens early.
        let counted_from = plus(restart, Duration::from_secs(1));
        let next = st.next_step.as_ref().unwrap();
        assert_eq!(next.step, StepKind::SwitchIntermediate);
        assert_eq!(next.earliest, Some(plus(counted_from, 24 * HOUR)));
        let b_status = st.roots.iter().find(|r| r.fingerprint == b_fp).unwrap();
        assert_eq!((b_status.served_by_istiod, b_status.trust_counts_from), (Some(true), Some(counted_from)));
        // The pass's gate agrees with status (one read model).
        let serving = IstiodServing::from_view(&v);
        assert_eq!((serving.owed.len(), serving.restarted_at), (0, Some(counted_from)));
    }

    #[test]
    fn the_json_field_names_are_the_documented_ones() {
        let a = Spec::ca("Root A").issue(None);
        let a1 = Spec::ca("Intermediate A1").issue(Some(&a));
        let m = testpki::material(&a, &a1);
        let fp = root_fp(&m);
        let st = assess(&view(m, None, Some(a.pem().into()), &fp), testpki::now(), &opts());
        let json = serde_json::to_value(&st).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let documented = [
            "namespace",
            "secret",
            "now",
            "trust_propagation_seconds",
            "cacerts_found",
            "verdict",
            "findings",
            "root_fingerprint",
            "history_recorded",
            "history_began",
            "roots",
            "live_intermediate",
            "retired_intermediates",
            "deployments",
            "served_roots",
            "phase",
            "next_step",
            "nearest_expiry",
            "healthy",
            "problems",
            "warnings",
        ];
        let mut sorted = documented.to_vec();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "serde_json sorts keys");
        let root = json["roots"][0].as_object().unwrap();
        for k in [
            "subject",
            "fingerprint",
            "not_after",
            "in_cacerts_since",
            "trust_counts_from",
            "trusted_after",
            "served_by_istiod",
            "anchors_live_intermediate",
        ] {
            assert!(root.contains_key(k), "roots[].{k}");
        }
        for k in ["subject", "fingerprint", "not_after", "anchor", "live_since"] {
            assert!(json["live_intermediate"].get(k).is_some(), "live_intermediate.{k}");
        }
        for k in [
            "name",
            "recorded_root_fingerprint",
            "restarted_for_current_roots",
            "last_restart",
            "serves_current_roots",
            "rollout_complete",
        ] {
            assert!(json["deployments"][0].get(k).is_some(), "deployments[].{k}");
        }
        for k in ["step", "action", "root", "earliest", "safe_now"] {
            assert!(json["next_step"].get(k).is_some(), "next_step.{k}");
        }
        assert_eq!(json["phase"], "steady");
        assert_eq!(json["roots"][0]["not_after"], "2040-01-01T00:00:00Z");
    }
}
