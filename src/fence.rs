//! Write fencing for leader election: before each write (the `cacerts` write, an istiod restart or record
//! patch, a self-heal restore) the leader reads its Lease and writes only if it still holds it and its last
//! successful renewal is well inside the lease duration.
//!
//! Why a read per write: `kube-lease-manager` reports leadership changes, but it keeps believing it leads while
//! its renewals fail with errors other than a conflict (500s, timeouts). A deposed leader would then keep
//! writing after a standby took over. The Lease on the API server is the truth both replicas share: its
//! `holderIdentity` says who leads and its `renewTime` when that leader last renewed successfully (the
//! manager writes it with this process's clock, so comparing it with our clock has no skew). Writes are rare
//! (a root change, a drift), so the extra GET costs nothing on an unchanged pass, which writes nothing.
//!
//! The deadline: a write is allowed while `now - renewTime < duration - grace / 2`. The manager renews when
//! `duration - grace` has passed, so a healthy leader never gets near it, and the remaining `grace / 2` is the
//! margin for the write itself before a standby may take the Lease. There is no fencing token in Kubernetes,
//! so this narrows the window rather than closing it; the resourceVersion preconditions of every write still
//! turn a race into a conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::config::LeaseConfig;
use crate::error::{Classify, FailureClass};
use crate::k8s::KubeError;

/// Why a write was not done.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(
        "refused to {action}: lease {lease} is held by {holder:?}, not by this replica ({identity}); stepping down"
    )]
    NotHolder { action: String, lease: String, holder: Option<String>, identity: String },
    #[error(
        "refused to {action}: the last successful renewal of lease {lease} was {} ago, too close to the lease duration {} (renewals are failing); stepping down",
        humantime::format_duration(*.age), humantime::format_duration(*.duration)
    )]
    Stale { action: String, lease: String, age: Duration, duration: Duration },
    #[error("refused to {action}: could not confirm this replica still holds the lease; stepping down")]
    Unconfirmed {
        action: String,
        #[source]
        source: KubeError,
    },
}

impl Classify for FenceError {
    fn class(&self) -> FailureClass {
        // Not a permission problem of the write itself: another replica leads, or the API server is failing.
        FailureClass::Transient
    }
}

/// What the Lease says about this replica. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Held by us and renewed recently enough to write.
    Holds,
    /// Another identity (or nobody) holds it.
    NotHolder(Option<String>),
    /// Held by us, but the last renewal is this old: too close to expiry.
    Stale(Duration),
}

/// Decides from a Lease, our identity, the lease duration and "now" whether a write may go ahead.
pub fn standing(lease: &Lease, identity: &str, duration: Duration, now: jiff::Timestamp) -> Standing {
    let spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(identity) {
        return Standing::NotHolder(spec.holder_identity);
    }
    let Some(renewed) = spec.renew_time.map(|t| t.0) else { return Standing::Stale(duration) };
    let age = now.duration_since(renewed).try_into().unwrap_or(Duration::ZERO);
    if age < write_deadline(duration) { Standing::Holds } else { Standing::Stale(age) }
}

/// How old the last renewal may be for a write: `duration - grace / 2` (grace as the Lease manager uses it).
pub fn write_deadline(duration: Duration) -> Duration {
    let secs = duration.as_secs_f64().ceil().max(2.0) as u64;
    let grace = (secs / 3).max(1);
    Duration::from_millis(secs * 1000 - grace * 500)
}

/// Checks the Lease before a write.
#[derive(Clone)]
pub struct Fence {
    api: Api<Lease>,
    lease: String,
    identity: String,
    duration: Duration,
}

impl Fence {
    pub fn new(client: kube::Client, config: &LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            lease: config.name.clone(),
            identity: config.identity.clone(),
            duration: config.duration,
        }
    }

    /// `Ok` when this replica may do `action` now; otherwise the reason, which the caller logs as it steps down.
    pub async fn check(&self, action: &str) -> Result<(), FenceError> {
        let lease = self.api.get(&self.lease).await.map_err(|e| FenceError::Unconfirmed {
            action: action.into(),
            source: KubeError::new(format!("get lease {}", self.lease), e),
        })?;
        match standing(&lease, &self.identity, self.duration, jiff::Timestamp::now()) {
            Standing::Holds => Ok(()),
            Standing::NotHolder(holder) => Err(FenceError::NotHolder {
                action: action.into(),
                lease: self.lease.clone(),
                holder,
                identity: self.identity.clone(),
            }),
            Standing::Stale(age) => Err(FenceError::Stale {
                action: action.into(),
                lease: self.lease.clone(),
                age,
                duration: self.duration,
            }),
        }
    }
}

/// Checks an optional fence (no leader election: always allowed).
pub async fn check(fence: Option<&Fence>, action: &str) -> Result<(), FenceError> {
    match fence {
        Some(f) => f.check(action).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed: Option<jiff::Timestamp>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: renewed.map(MicroTime),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_fresh_renewal_by_us_allows_the_write() {
        let l = lease(Some("me"), Some(at(0)));
        assert_eq!(standing(&l, "me", Duration::from_secs(15), at(10)), Standing::Holds);
    }

    #[test]
    fn a_renewal_close_to_the_lease_duration_fences() {
        // 15 s lease, grace 5 s: renewals come every 10 s; past 12.5 s the renewals are failing.
        let l = lease(Some("me"), Some(at(0)));
        assert_eq!(standing(&l, "me", Duration::from_secs(15), at(12)), Standing::Holds);
        assert_eq!(standing(&l, "me", Duration::from_secs(15), at(13)), Standing::Stale(Duration::from_secs(13)));
        assert!(matches!(standing(&l, "me", Duration::from_secs(15), at(60)), Standing::Stale(_)));
    }

    #[test]
    fn another_holder_or_none_fences() {
        let l = lease(Some("other"), Some(at(0)));
        assert_eq!(standing(&l, "me", Duration::from_secs(15), at(1)), Standing::NotHolder(Some("other".into())));
        let l = lease(None, None);
        assert_eq!(standing(&l, "me", Duration::from_secs(15), at(1)), Standing::NotHolder(None));
    }

    #[test]
    fn held_without_a_renew_time_fences() {
        let l = lease(Some("me"), None);
        assert!(matches!(standing(&l, "me", Duration::from_secs(15), at(0)), Standing::Stale(_)));
    }

    #[test]
    fn the_deadline_leaves_half_the_grace_as_margin() {
        assert_eq!(write_deadline(Duration::from_secs(15)), Duration::from_millis(12_500));
        assert_eq!(write_deadline(Duration::from_secs(3)), Duration::from_millis(2_500));
    }
}
