//! The pass's side of the rotation time gates: judge a change against the `cacerts` the pass already read (no
//! extra request), and explain a refusal.

use k8s_openapi::api::core::v1::Secret;

use crate::bundle::{self, RawMaterial, Report, ValidationOptions};
use crate::rotation::{self, CaFacts, GateDecision, HISTORY_ANNOTATION, History, RotationOptions};
use crate::sink::secret::material_of;

/// The gates' verdict on writing `next` over `current`. `None` when the four keys are unchanged: nothing to
/// judge, and the history stays as it is.
pub fn judge(
    current: Option<&Secret>,
    next: &RawMaterial,
    next_report: &Report,
    now: jiff::Timestamp,
    opts: &RotationOptions,
) -> Option<GateDecision> {
    let current_material = current.map(material_of);
    if current_material.as_ref() == Some(next) {
        return None;
    }
    let next_facts = CaFacts::from_report(next_report)?;
    // Validity windows don't matter here, only which certificates the current cacerts holds.
    let current_facts = current_material.as_ref().and_then(|m| {
        CaFacts::from_report(&bundle::validate(m, &ValidationOptions { now, expiry_warning: Default::default() }, None))
    });
    Some(rotation::evaluate(current_facts.as_ref(), recorded(current).as_ref(), &next_facts, now, opts))
}

/// The history recorded on a `cacerts` Secret.
pub fn recorded(secret: Option<&Secret>) -> Option<History> {
    History::parse(secret?.metadata.annotations.as_ref()?.get(HISTORY_ANNOTATION).map(String::as_str))
}

/// The refusal, for the pass's error.
#[derive(Debug)]
pub struct Refusal {
    pub decision: GateDecision,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused the rotation step, cacerts was left untouched: {}; it goes through by itself once safe (watch mode), or pass --allow-unsafe-rotation to write it now",
            self.decision.message()
        )
    }
}
