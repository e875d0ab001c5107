//! The read model of `status` (and `fleet status`): [`assess`] turns a [`ClusterView`] into an [`Assessment`].
//!
//! Field names of [`Assessment`] and its parts are the JSON of `cacerts-sync status --output json`, documented
//! in `docs/reference.md`: add fields, never rename them.

use crate::bundle::{self, Finding, SecretRole, ValidationOptions, Verdict};
use crate::observe::ClusterView;

use super::gate::StepKind;
use super::serving::{IstiodServing, NotServed, TrustClock};
use super::{CaFacts, History, RotationOptions, format_time, plus, ts};

/// A root, by subject and fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RootRef {
    pub subject: String,
    pub fingerprint: String,
}

/// One root of the bundle in `cacerts`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RootStatus {
    pub subject: String,
    /// SHA-256 of the root's DER.
    pub fingerprint: String,
    #[serde(with = "ts")]
    pub not_after: jiff::Timestamp,
    /// When it entered `cacerts`; `null`: before the rotation history began (counts as propagated).
    #[serde(with = "ts::opt")]
    pub in_cacerts_since: Option<jiff::Timestamp>,
    /// When trust propagation began: `in_cacerts_since`, or istiod's restart for the roots in `cacerts` when
    /// that came later (`null`: before the rotation history, or istiod does not serve it yet).
    #[serde(with = "ts::opt")]
    pub trust_counts_from: Option<jiff::Timestamp>,
    /// When every workload can be expected to trust it (`trust_counts_from` + trust propagation).
    #[serde(with = "ts::opt")]
    pub trusted_after: Option<jiff::Timestamp>,
    /// Whether istiod serves it, per cacerts-sync's restart records and `istio-ca-root-cert` (`null`: nothing
    /// tells).
    pub served_by_istiod: Option<bool>,
    /// It anchors the live intermediate.
    pub anchors_live_intermediate: bool,
}

/// The intermediate istiod signs with.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IntermediateStatus {
    pub subject: String,
    pub fingerprint: String,
    #[serde(with = "ts")]
    pub not_after: jiff::Timestamp,
    /// The root that anchors it (`null` if none does: invalid material).
    pub anchor: Option<RootRef>,
    /// When it became live; `null`: before the rotation history began.
    #[serde(with = "ts::opt")]
    pub live_since: Option<jiff::Timestamp>,
}

/// An intermediate that stopped being live recently: workload certificates it signed may still be valid.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RetiredIntermediate {
    pub subject: String,
    pub fingerprint: String,
    pub anchor: RootRef,
    #[serde(with = "ts")]
    pub until: jiff::Timestamp,
    /// `until` + trust propagation: its root may be dropped after this.
    #[serde(with = "ts")]
    pub certificates_valid_until: jiff::Timestamp,
}

/// One istiod Deployment.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeploymentStatus {
    pub name: String,
    /// The root fingerprint cacerts-sync recorded on it (`null`: never recorded).
    pub recorded_root_fingerprint: Option<String>,
    /// The recorded fingerprint is the one of the roots in `cacerts`.
    pub restarted_for_current_roots: bool,
    /// The pod template's `kubectl.kubernetes.io/restartedAt`.
    pub last_restart: Option<String>,
    /// Whether istiod serves the roots in `cacerts`, per the namespace's `istio-ca-root-cert` ConfigMap
    /// (`null`: no such ConfigMap). The ConfigMap is one per namespace, so this is the same for every revision.
    pub serves_current_roots: Option<bool>,
    /// `kubectl rollout status` would report it done.
    pub rollout_complete: bool,
}

/// What `istio-ca-root-cert` (`root-cert.pem`, written by istiod) holds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ServedRoots {
    /// The ConfigMap exists with a `root-cert.pem` key.
    pub found: bool,
    /// SHA-256 DER fingerprint of each root in it, in file order.
    pub fingerprints: Vec<String>,
    /// The same set of roots as `cacerts` (`null` when either side is unknown).
    pub matches_cacerts: Option<bool>,
}

/// Where the rotation runbook stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// One root, its intermediate live: rotate any time by adding the next root.
    Steady,
    /// A new root is in the bundle; the intermediate is still under the old one.
    NewRootPropagating,
    /// The intermediate is under the new root; certificates from the old intermediate may still be valid.
    IntermediateSwitched,
    /// Nothing depends on the old root any more: it can be dropped.
    OldRootDroppable,
    /// No `cacerts`, or its roots don't parse.
    Unknown,
}

/// The next runbook step and the earliest time it is safe.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NextStep {
    pub step: StepKind,
    /// A sentence for people.
    pub action: String,
    /// The root the step is about (the new root for `switch-intermediate`, the old one for `drop-root`).
    pub root: Option<RootRef>,
    /// Earliest safe time (`null`: any time).
    #[serde(with = "ts::opt")]
    pub earliest: Option<jiff::Timestamp>,
    /// `earliest` has passed (or there is none).
    pub safe_now: bool,
}

/// The certificate that expires first.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Expiry {
    pub role: SecretRole,
    pub subject: String,
    #[serde(with = "ts")]
    pub not_after: jiff::Timestamp,
}

/// Everything `status` says about one cluster. Stable JSON field names (docs/reference.md).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Assessment {
    pub namespace: String,
    pub secret: String,
    #[serde(with = "ts")]
    pub now: jiff::Timestamp,
    pub trust_propagation_seconds: u64,
    /// `cacerts` exists.
    pub cacerts_found: bool,
    /// The material's validity (`null` without `cacerts`).
    pub verdict: Option<Verdict>,
    /// Validation findings (errors, warnings, remarks).
    pub findings: Vec<Finding>,
    /// The root-bundle fingerprint (what istiod restarts are keyed on).
    pub root_fingerprint: Option<String>,
    /// `cacerts` carries a rotation history.
    pub history_recorded: bool,
    /// When the history began.
    #[serde(with = "ts::opt")]
    pub history_began: Option<jiff::Timestamp>,
    pub roots: Vec<RootStatus>,
    pub live_intermediate: Option<IntermediateStatus>,
    pub retired_intermediates: Vec<RetiredIntermediate>,
    pub deployments: Vec<DeploymentStatus>,
    pub served_roots: ServedRoots,
    pub phase: Phase,
    pub next_step: Option<NextStep>,
    pub nearest_expiry: Option<Expiry>,
    /// No problem: exit code 0.
    pub healthy: bool,
    /// What makes it unhealthy (exit code 3): invalid material, missing `cacerts`, istiod serving other roots.
    pub problems: Vec<String>,
    /// Worth attention, not unhealthy (e.g. a Deployment not yet restarted for the current roots).
    pub warnings: Vec<String>,
}

/// SHA-256 DER fingerprints of the certificates in a PEM bundle (`None` if it doesn't parse).
pub fn served_root_fingerprints(pem: &[u8]) -> Option<Vec<String>> {
    let ders = bundle::parse_certificates(SecretRole::RootCert, pem).ok()?;
    Some(ders.iter().map(|d| bundle::Fingerprint::of(d).to_string()).collect())
}

/// Assesses one cluster at `now`. Pure.
pub fn assess(view: &ClusterView, now: jiff::Timestamp, opts: &RotationOptions) -> Assessment {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let report = view
        .cacerts
        .as_ref()
        .map(|c| bundle::validate(&c.material, &ValidationOptions { now, expiry_warning: opts.expiry_warning }, None));
    let facts = report.as_ref().and_then(CaFacts::from_report);
    let recorded = view
        .cacerts
        .as_ref()
        .and_then(|c| History::parse(c.annotations.get(super::HISTORY_ANNOTATION).map(String::as_str)));
    let history = facts.as_ref().map(|f| History::effective(f, recorded.as_ref(), now));
    match (&view.cacerts, &report) {
        (None, _) => problems.push(format!("secret {}/{} does not exist", view.namespace, view.secret)),
        (Some(_), Some(r)) if r.verdict != Verdict::Valid => {
            let errors: Vec<&str> = r.errors().map(|f| f.message.as_str()).collect();
            problems.push(format!("the material in cacerts is {}: {}", r.verdict, errors.join("; ")));
        }
        _ => {}
    }

    let served_fps = view.served_roots_pem.as_deref().map(|p| served_root_fingerprints(p.as_bytes()));
    let current_fps: Option<Vec<String>> =
        facts.as_ref().map(|f| f.roots.iter().map(|r| r.fingerprint.clone()).collect());
    let matches = match (&served_fps, &current_fps) {
        (Some(Some(served)), Some(current)) => Some(same_set(served, current)),
        (Some(None), Some(_)) => Some(false),
        _ => None,
    };
    if matches == Some(false) {
        problems.push(
            "istiod serves other roots than cacerts holds (istio-ca-root-cert differs): a restart is owed or in progress"
                .into(),
        );
    }
    let served_roots = ServedRoots {
        found: view.served_roots_pem.is_some(),
        fingerprints: served_fps.flatten().unwrap_or_default(),
        matches_cacerts: matches,
    };

    let root_fingerprint = report.as_ref().and_then(|r| r.root_fingerprint.as_ref()).map(ToString::to_string);
    let deployments: Vec<DeploymentStatus> = view
        .istiod
        .iter()
        .map(|d| {
            let current = root_fingerprint.is_some() && d.recorded_root_fingerprint == root_fingerprint;
            if !current && root_fingerprint.is_some() {
                warnings.push(format!(
                    "deployment {} was not restarted for the roots in cacerts (recorded: {})",
                    d.name,
                    d.recorded_root_fingerprint.as_deref().unwrap_or("nothing")
                ));
            }
            DeploymentStatus {
                name: d.name.clone(),
                recorded_root_fingerprint: d.recorded_root_fingerprint.clone(),
                restarted_for_current_roots: current,
                last_restart: d.restarted_at.clone(),
                serves_current_roots: matches,
                rollout_complete: d.rollout_complete,
            }
        })
        .collect();
    if view.istiod.is_empty() {
        warnings.push("no istiod Deployment matches the selector".into());
    }

    let live_anchor = facts.as_ref().and_then(|f| f.anchor_root()).map(|r| r.fingerprint.clone());
    let serving = IstiodServing::from_view(view);
    let mut not_served: Vec<(String, NotServed)> = Vec::new();
    let roots: Vec<RootStatus> = facts
        .iter()
        .flat_map(|f| f.roots.iter())
        .map(|r| {
            let since = history.as_ref().and_then(|h| h.root(&r.fingerprint)).and_then(|x| x.since);
            let clock = serving.clock(&r.fingerprint, since, opts);
            let from = match &clock {
                TrustClock::From { start, .. } => Some(*start),
                TrustClock::BeforeHistory | TrustClock::Pending(_) => None,
            };
            let in_configmap = serving.served.as_ref().map(|s| s.contains(&r.fingerprint));
            let pending = matches!(clock, TrustClock::Pending(_));
            if let TrustClock::Pending(why) = clock {
                not_served.push((r.fingerprint.clone(), why));
            }
            RootStatus {
                subject: r.subject.clone(),
                fingerprint: r.fingerprint.clone(),
                not_after: r.not_after,
                in_cacerts_since: since,
                trust_counts_from: from,
                trusted_after: from.map(|s| plus(s, opts.trust_propagation)),
                served_by_istiod: if pending { Some(false) } else { in_configmap },
                anchors_live_intermediate: live_anchor.as_deref() == Some(r.fingerprint.as_str()),
            }
        })
        .collect();
    let live_intermediate = facts.as_ref().and_then(|f| {
        let i = f.intermediate.as_ref()?;
        Some(IntermediateStatus {
            subject: i.subject.clone(),
            fingerprint: i.fingerprint.clone(),
            not_after: i.not_after,
            anchor: f.anchor_root().map(|r| RootRef { subject: r.subject.clone(), fingerprint: r.fingerprint.clone() }),
            live_since: history.as_ref().and_then(|h| h.live(f)).and_then(|r| r.since),
        })
    });
    let retired_intermediates: Vec<RetiredIntermediate> = match (&history, &facts) {
        (Some(h), Some(f)) => h
            .recently_retired(f, now, opts)
            .map(|(i, safe)| RetiredIntermediate {
                subject: i.subject.clone(),
                fingerprint: i.fingerprint.clone(),
                anchor: RootRef { subject: i.anchor_subject.clone(), fingerprint: i.anchor.clone() },
                until: i.until.expect("retired records have an end"),
                certificates_valid_until: safe,
            })
            .collect(),
        _ => Vec::new(),
    };
    let (phase, next_step) = match &facts {
        Some(f) if !f.roots.is_empty() => phase(f, &roots, &retired_intermediates, &not_served, now),
        _ => (Phase::Unknown, None),
    };
    let nearest_expiry = report.as_ref().and_then(|r| {
        r.certificates.iter().min_by_key(|c| c.not_after).map(|c| Expiry {
            role: c.role,
            subject: c.subject.clone(),
            not_after: c.not_after,
        })
    });
    Assessment {
        namespace: view.namespace.clone(),
        secret: view.secret.clone(),
        now,
        trust_propagation_seconds: opts.trust_propagation.as_secs(),
        cacerts_found: view.cacerts.is_some(),
        verdict: report.as_ref().map(|r| r.verdict),
        findings: report.as_ref().map(|r| r.findings.clone()).unwrap_or_default(),
        root_fingerprint,
        history_recorded: recorded.is_some(),
        history_began: recorded.as_ref().map(|h| h.began),
        roots,
        live_intermediate,
        retired_intermediates,
        deployments,
        served_roots,
        phase,
        next_step,
        nearest_expiry,
        healthy: problems.is_empty(),
        problems,
        warnings,
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// The runbook phase and the next safe step.
fn phase(
    facts: &CaFacts,
    roots: &[RootStatus],
    retired: &[RetiredIntermediate],
    not_served: &[(String, NotServed)],
    now: jiff::Timestamp,
) -> (Phase, Option<NextStep>) {
    let reference = |r: &RootStatus| RootRef { subject: r.subject.clone(), fingerprint: r.fingerprint.clone() };
    let anchor = roots.iter().find(|r| r.anchors_live_intermediate);
    let others: Vec<&RootStatus> = roots.iter().filter(|r| !r.anchors_live_intermediate).collect();
    let step = |step: StepKind, action: String, root: Option<RootRef>, earliest: Option<jiff::Timestamp>| NextStep {
        step,
        action,
        root,
        safe_now: earliest.is_none_or(|t| t <= now),
        earliest,
    };
    // An old root anchored an earlier intermediate: recorded as retired, or in the bundle before the live anchor.
    let is_old = |r: &RootStatus| {
        retired.iter().any(|i| i.anchor.fingerprint == r.fingerprint)
            || match (r.in_cacerts_since, anchor.and_then(|a| a.in_cacerts_since)) {
                (None, Some(_)) => true,
                (Some(mine), Some(theirs)) => mine < theirs,
                _ => false,
            }
    };
    if let Some(old) = others.iter().find(|r| is_old(r)) {
        let pending = retired
            .iter()
            .filter(|i| i.anchor.fingerprint == old.fingerprint)
            .map(|i| i.certificates_valid_until)
            .max();
        let action = format!("drop root {} from root-cert", old.subject);
        return match pending {
            Some(t) if t > now => {
                (Phase::IntermediateSwitched, Some(step(StepKind::DropRoot, action, Some(reference(old)), Some(t))))
            }
            _ => (Phase::OldRootDroppable, Some(step(StepKind::DropRoot, action, Some(reference(old)), None))),
        };
    }
    if let Some(new) = others.first() {
        if let Some((_, why)) = not_served.iter().find(|(f, _)| *f == new.fingerprint) {
            let action = format!(
                "let istiod restart with the roots in cacerts ({}): cacerts-sync does it on its next pass; switching to an intermediate under {} is safe --trust-propagation after that",
                why.describe(),
                new.subject
            );
            return (
                Phase::NewRootPropagating,
                Some(step(StepKind::RestartIstiod, action, Some(reference(new)), None)),
            );
        }
        let action = format!("switch ca-cert, ca-key and cert-chain to an intermediate under {}", new.subject);
        return (
            Phase::NewRootPropagating,
            Some(step(StepKind::SwitchIntermediate, action, Some(reference(new)), new.trusted_after)),
        );
    }
    let keep = facts.anchor_root().map(|r| r.subject.clone()).unwrap_or_else(|| "the current root".into());
    let action = format!("add the new root to root-cert, keeping {keep}");
    (Phase::Steady, Some(step(StepKind::AddRoot, action, None, None)))
}

impl Assessment {
    /// The `status` text form.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let t = |x: Option<jiff::Timestamp>, none: &str| x.map(format_time).unwrap_or_else(|| none.to_owned());
        let mut out = String::new();
        let _ = writeln!(out, "cacerts: {}/{}", self.namespace, self.secret);
        if !self.cacerts_found {
            let _ = writeln!(out, "  not found");
        }
        if let Some(v) = self.verdict {
            let _ = writeln!(
                out,
                "  material: {v}, root fingerprint {}",
                self.root_fingerprint.as_deref().unwrap_or("none")
            );
        }
        let _ = writeln!(
            out,
            "  rotation history: {}",
            match self.history_began {
                Some(b) => format!("since {}", format_time(b)),
                None => "none (roots present count as propagated)".into(),
            }
        );
        let _ = writeln!(out, "roots:");
        for r in &self.roots {
            let anchors = if r.anchors_live_intermediate { " (anchors the live intermediate)" } else { "" };
            let _ = writeln!(out, "  {}{anchors}", r.subject);
            let _ = writeln!(out, "    sha256 {}  notAfter {}", r.fingerprint, format_time(r.not_after));
            let _ = writeln!(
                out,
                "    in cacerts since {}",
                t(r.in_cacerts_since, "before the rotation history (counts as propagated)")
            );
            if r.served_by_istiod == Some(false) {
                let _ = writeln!(out, "    not served by istiod yet: trust propagation has not started");
            } else if let Some(from) = r.trust_counts_from.filter(|f| Some(*f) != r.in_cacerts_since) {
                let _ =
                    writeln!(out, "    trust propagation counts from {} (istiod's restart with it)", format_time(from));
            }
        }
        if let Some(i) = &self.live_intermediate {
            let _ = writeln!(out, "live intermediate:");
            let _ = writeln!(out, "  {}", i.subject);
            let _ = writeln!(out, "    sha256 {}  notAfter {}", i.fingerprint, format_time(i.not_after));
            let _ = writeln!(
                out,
                "    anchor {}  live since {}",
                i.anchor.as_ref().map_or("none", |a| a.subject.as_str()),
                t(i.live_since, "before the rotation history")
            );
        }
        for i in &self.retired_intermediates {
            let _ = writeln!(out, "retired intermediate:");
            let _ = writeln!(out, "  {}", i.subject);
            let _ = writeln!(
                out,
                "    anchor {}  live until {}  its certificates may be valid until {}",
                i.anchor.subject,
                format_time(i.until),
                format_time(i.certificates_valid_until)
            );
        }
        let _ = writeln!(out, "istiod:");
        for d in &self.deployments {
            let serves = match d.serves_current_roots {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown (no istio-ca-root-cert)",
            };
            let _ = writeln!(out, "  {}", d.name);
            let _ = writeln!(
                out,
                "    recorded root {}  last restart {}",
                d.recorded_root_fingerprint.as_deref().unwrap_or("none"),
                d.last_restart.as_deref().unwrap_or("never"),
            );
            let _ = writeln!(out, "    serves the roots in cacerts: {serves}");
        }
        let _ = writeln!(out, "phase: {}", serde_plain(&self.phase));
        if let Some(s) = &self.next_step {
            let when = match (s.earliest, s.safe_now) {
                (None, _) => "any time".to_owned(),
                (Some(e), true) => format!("now (safe since {})", format_time(e)),
                (Some(e), false) => format!("not before {}", format_time(e)),
            };
            let _ = writeln!(out, "next step: {} ({when})", s.action);
        }
        if let Some(e) = &self.nearest_expiry {
            let _ = writeln!(out, "nearest expiry: {} {} {}", e.role, e.subject, format_time(e.not_after));
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let _ = writeln!(out, "healthy: {}", if self.healthy { "yes" } else { "no" });
        out
    }
}

fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
