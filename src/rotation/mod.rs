//! Rotation history, time gates and the runbook phase: the pure side of a root rotation.
//!
//! No I/O and no clock: every function takes `now`. The I/O side is [`crate::observe`] (reads the cluster into a
//! [`ClusterView`](crate::observe::ClusterView)) and the pass (`crate::sync`), which evaluates the gates before
//! it writes.
//!
//! # API (stable: later code adds fields and functions, it does not rename them)
//! - [`CaFacts::from_report`]: the roots (subject, SHA-256 DER fingerprint, NotAfter) and the live intermediate
//!   (with its anchor root) of one plug-in CA, from a [`bundle::Report`](crate::bundle::Report).
//! - [`History`]: when each root entered `cacerts` and when each intermediate was live, kept as one JSON
//!   annotation ([`HISTORY_ANNOTATION`]) on `cacerts`. [`History::parse`] / [`History::to_annotation`].
//! - [`evaluate`]: would writing `next` over the current `cacerts` break mTLS? Returns a [`GateDecision`]: the
//!   [`Block`]s (rule, root, intermediate, earliest safe time) and the history to write with the change.
//! - [`assess`]: the read model for `status` (and `fleet status`): `assess(&ClusterView, now, &RotationOptions)
//!   -> Assessment`, serde-serializable with stable field names (documented in `docs/reference.md`).
//!
//! # The rules
//! Workloads learn a new root only when their certificate renews (Istio's default lifetime: 24 h) or when they
//! restart; `--trust-propagation` is that time. So:
//! - **(a) `root-not-propagated`**: an intermediate may become live only once istiod has served its anchor root
//!   for `--trust-propagation`: the clock starts when the root entered `cacerts`, or when istiod restarted with
//!   it if that came later, and it has not started while a restart for the roots in `cacerts` is owed or
//!   `istio-ca-root-cert` lacks the root ([`IstiodServing`]). A root not in `cacerts` at all (the one-step swap
//!   A/A1 to B/B1) is refused until it was added first. An intermediate under the same root as the live one is
//!   never blocked.
//! - **(b) `root-still-anchoring`**: a root may leave the bundle only when it anchors neither the live
//!   intermediate nor an intermediate that was live less than `--trust-propagation` ago (certificates it signed
//!   may still be valid). Adding a root is never blocked.
//!
//! # What is not known counts as old enough
//! History starts with the first write by a cacerts-sync that keeps it. Roots in a `cacerts` without history
//! (a first install, a hand-made Secret being adopted, an upgrade from an older cacerts-sync), and roots or
//! intermediates someone else put there, count as propagated (`since: null`): the tool cannot know better, and
//! refusing would block forever, since a refused change writes nothing. A `cacerts` that does not exist or whose
//! roots do not parse is a first install: nothing is gated.

mod assess;
mod gate;
mod history;
mod serving;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use assess::{
    Assessment, DeploymentStatus, Expiry, IntermediateStatus, NextStep, Phase, RetiredIntermediate, RootRef,
    RootStatus, ServedRoots, assess, served_root_fingerprints,
};
pub use gate::{Block, GateDecision, Rule, SafeAfter, StepKind, consults_istiod, evaluate};
pub use history::{HISTORY_ANNOTATION, HISTORY_VERSION, History, IntermediateRecord, RootRecord};
pub use serving::{IstiodServing, NotServed, TrustClock};

use crate::bundle::{Report, SecretRole};

/// Default `--trust-propagation`: Istio's default workload certificate lifetime.
pub const DEFAULT_TRUST_PROPAGATION: Duration = Duration::from_secs(24 * 3600);

/// Inputs of the rules besides the material and the clock. A zero `trust_propagation` turns the waiting off;
/// the structural rules (a root not in `cacerts` yet, a root anchoring the live intermediate) still hold.
#[derive(Clone, Debug)]
pub struct RotationOptions {
    /// How long workloads need to learn a new root (and how long certificates of a retired intermediate live).
    pub trust_propagation: Duration,
    /// Certificates expiring sooner than this get an `expiring-soon` finding (status only).
    pub expiry_warning: Duration,
}

impl Default for RotationOptions {
    fn default() -> Self {
        Self { trust_propagation: DEFAULT_TRUST_PROPAGATION, expiry_warning: Duration::from_secs(30 * 24 * 3600) }
    }
}

/// One certificate as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFact {
    /// Subject DN as istiod prints it (`CN=Root A,O=Example`).
    pub subject: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
    /// End of validity.
    pub not_after: jiff::Timestamp,
}

/// What the rules need to know about one plug-in CA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaFacts {
    /// The roots of `root-cert`, in file order.
    pub roots: Vec<CertFact>,
    /// `ca-cert`, if it parsed.
    pub intermediate: Option<CertFact>,
    /// Index into `roots` of the root that anchors `ca-cert` (`None` if it is not anchored).
    pub anchor: Option<usize>,
}

impl CaFacts {
    /// The facts of a validated (or merely parsed) plug-in CA. `None` when `root-cert` did not parse.
    pub fn from_report(report: &Report) -> Option<Self> {
        report.root_fingerprint.as_ref()?;
        let fact = |c: &crate::bundle::CertInfo| CertFact {
            subject: c.subject.clone(),
            fingerprint: c.sha256.to_string(),
            not_after: c.not_after,
        };
        let roots = report.certificates.iter().filter(|c| c.role == SecretRole::RootCert).map(fact).collect();
        let intermediate = report.certificates.iter().find(|c| c.role == SecretRole::CaCert).map(fact);
        Some(Self { roots, intermediate, anchor: report.anchor })
    }

    /// The root that anchors `ca-cert`.
    pub fn anchor_root(&self) -> Option<&CertFact> {
        self.anchor.and_then(|i| self.roots.get(i))
    }

    /// Whether the bundle holds a root with this fingerprint.
    pub fn has_root(&self, fingerprint: &str) -> bool {
        self.roots.iter().any(|r| r.fingerprint == fingerprint)
    }
}

/// `t + d`, saturating at the end of jiff's range.
pub(crate) fn plus(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(jiff::Timestamp::MAX)
}

/// RFC 3339 with whole seconds: `2026-12-04T08:00:00Z`.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Serde for timestamps as RFC 3339 text (jiff is built without its `serde` feature).
pub(crate) mod ts {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<jiff::Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Timestamp>` (`null` when absent).
    pub mod opt {
        use serde::{Deserialize as _, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<jiff::Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.collect_str(&super::super::format_time(*t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<jiff::Timestamp>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}
