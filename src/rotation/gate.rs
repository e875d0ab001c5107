//! The time gates: would writing the next material over the current `cacerts` break mTLS between workloads?
//!
//! [`evaluate`] returns a [`GateDecision`]: the blocking rules, each with its root, its intermediate and the
//! earliest safe time (or the step that must come first), and the history to write if the change goes through.

use std::fmt;
use std::time::Duration;

use super::serving::{IstiodServing, NotServed, TrustClock};
use super::{CaFacts, History, RotationOptions, format_time, plus, ts};

/// A rule that refuses a change. Serialized (and used as the metric's `reason` label) kebab-case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// (a) the change makes live an intermediate whose root has not been served by istiod for trust propagation.
    RootNotPropagated,
    /// (b) the change drops a root that anchors the live intermediate or a recently live one.
    RootStillAnchoring,
}

impl Rule {
    /// Both rules, in metric order.
    pub const ALL: [Rule; 2] = [Rule::RootNotPropagated, Rule::RootStillAnchoring];

    /// `root-not-propagated` / `root-still-anchoring`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RootNotPropagated => "root-not-propagated",
            Rule::RootStillAnchoring => "root-still-anchoring",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A runbook step. Serialized kebab-case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Add the new root to `root-cert`, keeping the current one.
    AddRoot,
    /// Let istiod restart with the roots in `cacerts` (cacerts-sync's next pass does it): workloads learn a
    /// root from istiod, so trust propagation starts there.
    RestartIstiod,
    /// Switch `ca-cert`/`ca-key`/`cert-chain` to the intermediate under the new root.
    SwitchIntermediate,
    /// Drop the old root from `root-cert`.
    DropRoot,
}

/// When a blocked change becomes safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SafeAfter {
    /// At this time, if nothing else changes.
    At(jiff::Timestamp),
    /// Not before this other step was done (and trust propagation passed after it).
    Step(StepKind),
}

/// One reason a change is refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    /// The rule.
    pub rule: Rule,
    /// The root concerned: the new intermediate's anchor (a), or the dropped root (b).
    pub root_subject: String,
    /// Its SHA-256 DER fingerprint.
    pub root_fingerprint: String,
    /// The intermediate concerned: the one made live (a), or the one the dropped root anchors (b).
    pub intermediate_subject: String,
    /// Its SHA-256 DER fingerprint.
    pub intermediate_fingerprint: String,
    /// The earliest time the change is safe (`null` when another step must come first).
    #[serde(with = "ts::opt")]
    pub safe_after: Option<jiff::Timestamp>,
    /// The step that must come first (`null` when only time is missing).
    pub after_step: Option<StepKind>,
    #[serde(skip)]
    trust_propagation: Duration,
    /// (a): why istiod does not serve the root yet (with `after_step: restart-istiod`).
    #[serde(skip)]
    not_served: Option<NotServed>,
    /// (a): the time counts from istiod's restart with the root, which came after its write.
    #[serde(skip)]
    by_restart: bool,
}

impl Block {
    /// When the change becomes safe.
    pub fn safe(&self) -> SafeAfter {
        match (self.safe_after, self.after_step) {
            (Some(t), _) => SafeAfter::At(t),
            (None, Some(step)) => SafeAfter::Step(step),
            (None, None) => unreachable!("a block has a time or a step"),
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tp = humantime::format_duration(self.trust_propagation);
        let (root, inter) = (&self.root_subject, &self.intermediate_subject);
        match (self.rule, self.safe()) {
            (Rule::RootNotPropagated, SafeAfter::At(t)) => write!(
                f,
                "making intermediate {inter} live is safe after {}: its root {root} {} less than --trust-propagation {tp} ago, and workloads trust a new root only once their certificates renew",
                format_time(t),
                if self.by_restart {
                    "reached istiod (its restart for the roots in cacerts)"
                } else {
                    "entered cacerts"
                }
            ),
            (Rule::RootNotPropagated, SafeAfter::Step(StepKind::RestartIstiod)) => write!(
                f,
                "making intermediate {inter} live is not safe before istiod serves its root {root}: {}; workloads learn a root from istiod, so --trust-propagation {tp} counts from that restart",
                self.not_served.as_ref().map(NotServed::describe).unwrap_or_default()
            ),
            (Rule::RootNotPropagated, SafeAfter::Step(_)) => write!(
                f,
                "making intermediate {inter} live is not safe before its root {root} has been in cacerts for --trust-propagation {tp}: add {root} to root-cert first, keeping the current roots, and switch the intermediate after that"
            ),
            (Rule::RootStillAnchoring, SafeAfter::At(t)) => write!(
                f,
                "dropping root {root} is safe after {}: certificates from intermediate {inter} may be valid until then",
                format_time(t)
            ),
            (Rule::RootStillAnchoring, SafeAfter::Step(_)) => write!(
                f,
                "dropping root {root} is not safe before the intermediate has been switched to one under another root, and --trust-propagation {tp} after that: intermediate {inter}, live now, is signed by it"
            ),
        }
    }
}

/// The gates' verdict on one change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateDecision {
    /// Every rule that refuses the change (empty: allowed).
    pub blocks: Vec<Block>,
    /// The history to write in the same patch as the material, if the change is written.
    pub history: History,
}

impl GateDecision {
    /// No rule refuses the change.
    pub fn allowed(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `rule` refuses the change.
    pub fn blocked_by(&self, rule: Rule) -> bool {
        self.blocks.iter().any(|b| b.rule == rule)
    }

    /// When the whole change becomes safe by waiting alone: the latest time of all blocks; `None` when allowed
    /// or when some block waits for another step first.
    pub fn unblock_at(&self) -> Option<jiff::Timestamp> {
        self.blocks.iter().map(|b| b.safe_after).collect::<Option<Vec<_>>>()?.into_iter().max()
    }

    /// Every block's sentence, `; `-joined.
    pub fn message(&self) -> String {
        self.blocks.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
}

/// Whether writing `next` over `current` makes live an intermediate under another root that `current` already
/// holds: the one change whose rule (a) consults istiod ([`IstiodServing`]). The pass reads the istiod
/// Deployments and `istio-ca-root-cert` for the gate only then.
pub fn consults_istiod(current: Option<&CaFacts>, next: &CaFacts) -> bool {
    let Some(current) = current.filter(|c| !c.roots.is_empty()) else { return false };
    switches_to_new_anchor(current, next).is_some_and(|anchor| current.has_root(anchor))
}

/// The anchor fingerprint of `next`'s intermediate when it is live by this change and under another root than
/// the live one.
fn switches_to_new_anchor<'a>(current: &CaFacts, next: &'a CaFacts) -> Option<&'a str> {
    let (inter, anchor) = (next.intermediate.as_ref()?, next.anchor_root()?);
    let current_live = current.intermediate.as_ref().map(|i| i.fingerprint.as_str());
    let current_anchor = current.anchor_root().map(|r| r.fingerprint.as_str());
    (current_live != Some(inter.fingerprint.as_str()) && current_anchor != Some(anchor.fingerprint.as_str()))
        .then_some(anchor.fingerprint.as_str())
}

/// Judges writing `next` over `current` (`None`: no `cacerts`, or no readable roots in it: a first install, which
/// no rule blocks), with the history recorded on `cacerts` and what the cluster shows of istiod serving its
/// roots (`serving`). Pure.
pub fn evaluate(
    current: Option<&CaFacts>,
    recorded: Option<&History>,
    serving: &IstiodServing,
    next: &CaFacts,
    now: jiff::Timestamp,
    opts: &RotationOptions,
) -> GateDecision {
    let Some(current) = current.filter(|c| !c.roots.is_empty()) else {
        return GateDecision { blocks: Vec::new(), history: History::advance(None, next, now, opts) };
    };
    let effective = History::effective(current, recorded, now);
    let mut blocks = Vec::new();
    let block = |rule, root: (&str, &str), inter: (&str, &str), safe: SafeAfter| Block {
        rule,
        root_subject: root.0.into(),
        root_fingerprint: root.1.into(),
        intermediate_subject: inter.0.into(),
        intermediate_fingerprint: inter.1.into(),
        safe_after: match safe {
            SafeAfter::At(t) => Some(t),
            SafeAfter::Step(_) => None,
        },
        after_step: match safe {
            SafeAfter::At(_) => None,
            SafeAfter::Step(s) => Some(s),
        },
        trust_propagation: opts.trust_propagation,
        not_served: None,
        by_restart: false,
    };

    // (a) A new live intermediate needs a root every workload already trusts: one istiod has served for trust
    // propagation.
    let current_anchor = current.anchor_root().map(|r| r.fingerprint.as_str());
    if switches_to_new_anchor(current, next).is_some()
        && let (Some(inter), Some(anchor)) = (&next.intermediate, next.anchor_root())
    {
        let who = (anchor.subject.as_str(), anchor.fingerprint.as_str());
        let what = (inter.subject.as_str(), inter.fingerprint.as_str());
        if !current.has_root(&anchor.fingerprint) {
            blocks.push(block(Rule::RootNotPropagated, who, what, SafeAfter::Step(StepKind::AddRoot)));
        } else {
            let since = effective.root(&anchor.fingerprint).and_then(|r| r.since);
            match serving.clock(&anchor.fingerprint, since, opts) {
                TrustClock::BeforeHistory => {}
                TrustClock::Pending(why) => blocks.push(Block {
                    not_served: Some(why),
                    ..block(Rule::RootNotPropagated, who, what, SafeAfter::Step(StepKind::RestartIstiod))
                }),
                TrustClock::From { start, by_restart } => {
                    let safe = plus(start, opts.trust_propagation);
                    if safe > now && !opts.trust_propagation.is_zero() {
                        blocks.push(Block {
                            by_restart,
                            ..block(Rule::RootNotPropagated, who, what, SafeAfter::At(safe))
                        });
                    }
                }
            }
        }
    }

    // (b) A dropped root must anchor nothing whose certificates may still be out there.
    for root in current.roots.iter().filter(|r| !next.has_root(&r.fingerprint)) {
        let who = (root.subject.as_str(), root.fingerprint.as_str());
        if current_anchor == Some(root.fingerprint.as_str())
            && let Some(live) = &current.intermediate
        {
            let what = (live.subject.as_str(), live.fingerprint.as_str());
            blocks.push(block(Rule::RootStillAnchoring, who, what, SafeAfter::Step(StepKind::SwitchIntermediate)));
            continue;
        }
        let latest = effective
            .recently_retired(current, now, opts)
            .filter(|(i, _)| i.anchor == root.fingerprint)
            .max_by_key(|(_, safe)| *safe);
        if let Some((inter, safe)) = latest {
            let what = (inter.subject.as_str(), inter.fingerprint.as_str());
            blocks.push(block(Rule::RootStillAnchoring, who, what, SafeAfter::At(safe)));
        }
    }

    GateDecision { blocks, history: History::advance(Some((&effective, current)), next, now, opts) }
}
