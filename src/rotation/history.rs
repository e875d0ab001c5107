//! The rotation history kept on `cacerts`: one compact, versioned JSON annotation.
//!
//! ```json
//! {"v":1,"began":"2026-12-01T08:00:00Z",
//!  "roots":[{"fingerprint":"3f…","since":null},{"fingerprint":"9a…","since":"2026-12-03T08:00:00Z"}],
//!  "intermediates":[{"fingerprint":"c1…","subject":"CN=Intermediate A1","anchor":"3f…",
//!    "anchor_subject":"CN=Root A","since":null,"until":"2026-12-04T08:00:00Z"}]}
//! ```
//!
//! Bounded: a root leaves with the bundle, a retired intermediate once its certificates can no longer be valid
//! (`until` + trust propagation) or its root left, and at most [`MAX_INTERMEDIATES`] are kept.

use super::{CaFacts, RotationOptions, plus, ts};

/// The annotation on `cacerts` that holds the [`History`].
pub const HISTORY_ANNOTATION: &str = "cacerts-sync.io/rotation-history";
/// The format version this build writes and reads.
pub const HISTORY_VERSION: u32 = 1;
/// Most intermediate records kept (the live one plus recently retired ones).
pub const MAX_INTERMEDIATES: usize = 8;

/// When each root entered `cacerts` and when each intermediate was live.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct History {
    /// Format version ([`HISTORY_VERSION`]).
    pub v: u32,
    /// When this history began (the first write that kept one).
    #[serde(with = "ts")]
    pub began: jiff::Timestamp,
    /// One record per root in the bundle.
    pub roots: Vec<RootRecord>,
    /// The live intermediate and recently retired ones.
    pub intermediates: Vec<IntermediateRecord>,
}

/// When a root entered the bundle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootRecord {
    /// SHA-256 of the root's DER.
    pub fingerprint: String,
    /// When it entered `cacerts`; `null`: before the history began (counts as propagated).
    #[serde(with = "ts::opt")]
    pub since: Option<jiff::Timestamp>,
}

/// When an intermediate (`ca-cert`) was live.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntermediateRecord {
    /// SHA-256 of the intermediate's DER.
    pub fingerprint: String,
    /// Its subject.
    pub subject: String,
    /// Fingerprint of the root that anchors it.
    pub anchor: String,
    /// That root's subject.
    pub anchor_subject: String,
    /// When it became live; `null`: before the history began.
    #[serde(with = "ts::opt")]
    pub since: Option<jiff::Timestamp>,
    /// When it stopped being live; `null` while live (or when someone else replaced it: counts as long ago).
    #[serde(with = "ts::opt")]
    pub until: Option<jiff::Timestamp>,
}

impl History {
    /// Reads the annotation. `None` when it is absent, unreadable or of another version (then the `cacerts`
    /// counts as having no history: its roots count as propagated).
    pub fn parse(annotation: Option<&str>) -> Option<Self> {
        let h: History = serde_json::from_str(annotation?).ok()?;
        (h.v == HISTORY_VERSION).then_some(h)
    }

    /// The annotation value (compact JSON).
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("history serializes")
    }

    /// The record of a root, if the history has one.
    pub fn root(&self, fingerprint: &str) -> Option<&RootRecord> {
        self.roots.iter().find(|r| r.fingerprint == fingerprint)
    }

    /// The history as it applies to `current` (what `cacerts` holds now), given what was recorded.
    ///
    /// Roots the record doesn't know (no history; someone else added them) count as present before the history
    /// began. The live intermediate gets a record if it has none. Pure.
    pub fn effective(current: &CaFacts, recorded: Option<&History>, now: jiff::Timestamp) -> Self {
        let began = recorded.map_or(now, |h| h.began);
        let roots = current
            .roots
            .iter()
            .map(|r| RootRecord {
                fingerprint: r.fingerprint.clone(),
                since: recorded.and_then(|h| h.root(&r.fingerprint)).and_then(|rec| rec.since),
            })
            .collect();
        let mut intermediates: Vec<IntermediateRecord> = recorded.map(|h| h.intermediates.clone()).unwrap_or_default();
        if let (Some(live), Some(anchor)) = (&current.intermediate, current.anchor_root())
            && !intermediates.iter().any(|i| i.fingerprint == live.fingerprint && i.until.is_none())
        {
            intermediates.retain(|i| i.fingerprint != live.fingerprint);
            intermediates.push(IntermediateRecord {
                fingerprint: live.fingerprint.clone(),
                subject: live.subject.clone(),
                anchor: anchor.fingerprint.clone(),
                anchor_subject: anchor.subject.clone(),
                since: None,
                until: None,
            });
        }
        History { v: HISTORY_VERSION, began, roots, intermediates }
    }

    /// The record of the intermediate live in `current`.
    pub fn live<'a>(&'a self, current: &CaFacts) -> Option<&'a IntermediateRecord> {
        let live = current.intermediate.as_ref()?;
        self.intermediates.iter().find(|i| i.fingerprint == live.fingerprint && i.until.is_none())
    }

    /// Retired intermediates whose certificates may still be valid at `now`.
    pub fn recently_retired<'a>(
        &'a self,
        current: &'a CaFacts,
        now: jiff::Timestamp,
        opts: &'a RotationOptions,
    ) -> impl Iterator<Item = (&'a IntermediateRecord, jiff::Timestamp)> + 'a {
        let live = current.intermediate.as_ref().map(|i| i.fingerprint.as_str());
        self.intermediates.iter().filter_map(move |i| {
            if Some(i.fingerprint.as_str()) == live {
                return None;
            }
            let until = i.until?;
            let safe = plus(until, opts.trust_propagation);
            // Zero turns the waiting off (recorded times are rounded up to the second).
            (safe > now && !opts.trust_propagation.is_zero()).then_some((i, safe))
        })
    }

    /// The history to write with `next`, starting from `self` (the effective history of the current `cacerts`;
    /// `None` when `cacerts` does not exist or holds no readable roots: a first install).
    pub fn advance(
        current: Option<(&History, &CaFacts)>,
        next: &CaFacts,
        now: jiff::Timestamp,
        opts: &RotationOptions,
    ) -> History {
        // Whole seconds, rounded up: a recorded time is never earlier than the event, so no gate opens early.
        let ceil = now.as_second() + i64::from(now.subsec_nanosecond() > 0);
        let now = jiff::Timestamp::from_second(ceil).unwrap_or(now);
        let roots = next
            .roots
            .iter()
            .map(|r| RootRecord {
                fingerprint: r.fingerprint.clone(),
                since: match current {
                    // A first install: these roots are where the mesh starts.
                    None => None,
                    Some((h, facts)) if facts.has_root(&r.fingerprint) => h.root(&r.fingerprint).and_then(|x| x.since),
                    Some(_) => Some(now),
                },
            })
            .collect();
        let mut intermediates = current.map(|(h, _)| h.intermediates.clone()).unwrap_or_default();
        let current_live = current.and_then(|(_, f)| f.intermediate.as_ref()).map(|i| i.fingerprint.clone());
        let next_live = next.intermediate.as_ref().map(|i| i.fingerprint.clone());
        if current_live != next_live {
            for i in &mut intermediates {
                if Some(&i.fingerprint) == current_live.as_ref() && i.until.is_none() {
                    i.until = Some(now);
                }
            }
            if let (Some(live), Some(anchor)) = (&next.intermediate, next.anchor_root()) {
                intermediates.retain(|i| i.fingerprint != live.fingerprint);
                intermediates.push(IntermediateRecord {
                    fingerprint: live.fingerprint.clone(),
                    subject: live.subject.clone(),
                    anchor: anchor.fingerprint.clone(),
                    anchor_subject: anchor.subject.clone(),
                    since: Some(now),
                    until: None,
                });
            }
        }
        // Prune: a retired intermediate goes once its certificates have expired everywhere, or its root left.
        intermediates.retain(|i| {
            let live = Some(&i.fingerprint) == next_live.as_ref() && i.until.is_none();
            live || (next.has_root(&i.anchor) && i.until.is_some_and(|u| plus(u, opts.trust_propagation) > now))
        });
        // Records are appended in time order: the oldest retired ones go first, never the live one.
        while intermediates.len() > MAX_INTERMEDIATES {
            let Some(pos) = intermediates.iter().position(|i| i.until.is_some()) else { break };
            intermediates.remove(pos);
        }
        History { v: HISTORY_VERSION, began: current.map_or(now, |(h, _)| h.began), roots, intermediates }
    }
}
