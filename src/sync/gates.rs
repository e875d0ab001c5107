//! The pass's side of the rotation time gates: judge a change against the `cacerts` the pass already read (no
//! extra request), and explain a refusal.

use k8s_openapi::api::core::v1::Secret;

use crate::bundle::{self, RawMaterial, Report, ValidationOptions};
use crate::observe::ClusterView;
use crate::restart::{Baseline, Observed};
use crate::rotation::{self, CaFacts, GateDecision, HISTORY_ANNOTATION, History, IstiodServing, RotationOptions};
use crate::sink::secret::material_of;

use super::{Known, PassError, Syncer, Target, secret_ref};

impl Syncer {
    /// Judges the change (a `dir:` target keeps no history: no gates). A refused change without
    /// `--allow-unsafe-rotation` ends the pass here; an overridden one is logged and goes on.
    pub(super) async fn gate(
        &self,
        current: Option<&Secret>,
        next: &RawMaterial,
        report: &Report,
        known: &Known,
    ) -> Result<Option<GateDecision>, PassError> {
        let Target::Secret { .. } = &self.target else { return Ok(None) };
        let now = jiff::Timestamp::now();
        let Some(change) = Change::of(current, next, report, now) else { return Ok(None) };
        let serving = self.serving(current, &change, known).await?;
        let decision = Some(change.judge(current, &serving, now, &self.config.rotation));
        if let Some(d) = decision.as_ref().filter(|d| !d.allowed()) {
            if !self.config.allow_unsafe_rotation {
                return Err(self.refuse(d.clone(), current, known).await);
            }
            tracing::warn!(blocked_by = %rules(d), "writing a rotation step the time gates refuse (--allow-unsafe-rotation): {}", d.message());
        }
        Ok(decision)
    }

    /// What the cluster shows of istiod serving the roots in `cacerts`, read only for the one change whose rule
    /// consults it (an intermediate under another root going live) and only when cacerts-sync restarts istiod
    /// (with `--no-restart` its records would be stale, so nothing is known).
    async fn serving(
        &self,
        current: Option<&Secret>,
        change: &Change,
        known: &Known,
    ) -> Result<IstiodServing, PassError> {
        let Target::Secret { sink, restarter: Some(restarter), .. } = &self.target else {
            return Ok(IstiodServing::default());
        };
        if !rotation::consults_istiod(change.current.as_ref(), &change.next) {
            return Ok(IstiodServing::default());
        }
        let observed = Observed { deployments: known.deployments.clone(), istiod_roots: known.istiod_roots.clone() };
        let (deployments, configmap) = restarter.observe(observed).await?;
        let view = ClusterView::from_objects(sink.namespace(), sink.name(), current, &deployments, configmap.as_ref());
        Ok(IstiodServing::from_view(&view))
    }

    /// A refused change: publish why, complete the restarts owed for `cacerts` as it is, and return the error.
    async fn refuse(&self, decision: GateDecision, current: Option<&Secret>, known: &Known) -> PassError {
        let refusal = Refusal { decision };
        tracing::warn!(blocked_by = %rules(&refusal.decision),
            unblock_at = %refusal.decision.unblock_at().map(rotation::format_time).unwrap_or_default(),
            "{refusal}");
        let Target::Secret { sink, restarter, events } = &self.target else {
            return PassError::Blocked(Box::new(refusal));
        };
        if !self.config.dry_run {
            let r = secret_ref(sink, current);
            events.warning(&r, "RotationBlocked", "Sync", refusal.decision.message()).await;
        }
        // The cacerts as it is may still owe restarts (a pass that failed after its write): complete them, as an
        // unchanged pass would.
        let roots = current.map(|s| material_of(s).root_cert.clone()).unwrap_or_default();
        if let (Some(restarter), Ok(fp)) = (restarter, bundle::root_fingerprint(&roots)) {
            let baseline = Baseline::Existing(Some(fp.to_string()));
            let observed =
                Observed { deployments: known.deployments.clone(), istiod_roots: known.istiod_roots.clone() };
            if let Err(error) = restarter.reconcile(fp.as_str(), &roots, &baseline, observed, self.config.dry_run).await
            {
                tracing::warn!(error = %crate::error::chain(&error), "failed to complete the istiod restarts owed for cacerts as it is");
            }
        }
        PassError::Blocked(Box::new(refusal))
    }
}

/// The blocking rules, `,`-joined (`root-not-propagated,root-still-anchoring`).
pub fn rules(decision: &GateDecision) -> String {
    let mut rules: Vec<&str> = decision.blocks.iter().map(|b| b.rule.as_str()).collect();
    rules.dedup();
    rules.join(",")
}

/// The history annotation as it is on `cacerts`.
pub fn recorded_annotation(secret: Option<&Secret>) -> Option<String> {
    secret?.metadata.annotations.as_ref()?.get(HISTORY_ANNOTATION).cloned()
}

/// A change of the four keys, as the gates see it.
pub struct Change {
    /// The facts of the current `cacerts` (`None`: none, or its roots don't parse).
    pub current: Option<CaFacts>,
    pub next: CaFacts,
}

impl Change {
    /// `None` when the four keys are unchanged (nothing to judge, and the history stays as it is) or the next
    /// roots don't parse.
    pub fn of(
        current: Option<&Secret>,
        next: &RawMaterial,
        next_report: &Report,
        now: jiff::Timestamp,
    ) -> Option<Self> {
        let current_material = current.map(material_of);
        if current_material.as_ref() == Some(next) {
            return None;
        }
        let next = CaFacts::from_report(next_report)?;
        // Validity windows don't matter here, only which certificates the current cacerts holds.
        let current = current_material.as_ref().and_then(|m| {
            CaFacts::from_report(&bundle::validate(
                m,
                &ValidationOptions { now, expiry_warning: Default::default() },
                None,
            ))
        });
        Some(Self { current, next })
    }

    /// The gates' verdict on writing it over `current` (the Secret, for its recorded history).
    pub fn judge(
        &self,
        current: Option<&Secret>,
        serving: &IstiodServing,
        now: jiff::Timestamp,
        opts: &RotationOptions,
    ) -> GateDecision {
        rotation::evaluate(self.current.as_ref(), recorded(current).as_ref(), serving, &self.next, now, opts)
    }
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
