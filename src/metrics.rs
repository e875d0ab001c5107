//! Prometheus metrics of watch mode, served on `/metrics` by [`crate::admin`] through `prometheus-client`
//! (OpenMetrics text, `application/openmetrics-text; version=1.0.0; charset=utf-8`).
//!
//! Every series has the prefix `cacerts_sync_`. No label ever carries key material: certificates are named by
//! role, subject, serial and block index only.
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `cacerts_sync_passes_total` | counter | `result` | finished passes; `result` is `changed` (cacerts created or updated), `unchanged`, or the failure class `transient`, `usage`, `invalid`, `auth` |
//! | `cacerts_sync_pass_duration_seconds` | histogram | | wall time of each pass, failed or not |
//! | `cacerts_sync_last_success_timestamp_seconds` | gauge | | Unix time of the end of the last successful pass (0 until the first) |
//! | `cacerts_sync_keyvault_requests_total` | counter | `status` | Key Vault HTTP attempts by status code (`200`, `429`, …), or `error` when no response came back |
//! | `cacerts_sync_istiod_restarts_total` | counter | `deployment` | istiod rollout restarts done by this replica |
//! | `cacerts_sync_leader` | gauge | | 1 while this replica may write (it holds the Lease, or leader election is off), else 0 |
//! | `cacerts_sync_root_fingerprint_info` | gauge | `fingerprint` | 1 for the SHA-256 root-bundle fingerprint of the last validated material; the old series is dropped when it changes |
//! | `cacerts_sync_certificate_expiry_timestamp_seconds` | gauge | `role`, `subject`, `serial`, `index` | notAfter (Unix time) of every certificate in the last validated material: each root in `root-cert.pem`, the intermediate (`ca-cert.pem`) and each `cert-chain.pem` member; the family is replaced after each good pass, so removed certificates disappear |
//! | `cacerts_sync_self_heals_total` | counter | | times `cacerts` was restored from the last validated material after it was deleted or edited |
//!
//! `role` is the Secret key the certificate came from (`root-cert.pem`, `ca-cert.pem`, `cert-chain.pem`),
//! `index` its 0-based PEM block in that key, `serial` lowercase hex without leading zeros (as istiod logs it).
//!
//! With leader election only the leader runs passes, so pass, expiry and fingerprint series come from the
//! leader (a replica that loses the Lease drops its expiry and fingerprint series); aggregate over replicas
//! in alerts (`max(cacerts_sync_last_success_timestamp_seconds)`, `min by (role, subject, serial) (…expiry…)`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::bundle::{Report, SecretRole};
use crate::source::keyvault::Observer;

/// The `Content-Type` of the `/metrics` answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FingerprintLabels {
    fingerprint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    role: &'static str,
    subject: String,
    serial: String,
    index: String,
}

/// Every metric of watch mode, registered once. Cheap to clone (the metrics are shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    passes: Family<ResultLabels, Counter>,
    pass_duration: Histogram,
    last_success: Gauge<f64, AtomicU64>,
    keyvault_requests: Family<StatusLabels, Counter>,
    istiod_restarts: Family<DeploymentLabels, Counter>,
    leader: Gauge,
    root_fingerprint: Family<FingerprintLabels, Gauge>,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    self_heals: Counter,
    rotation_blocked: Family<ReasonLabels, Gauge>,
    rotation_unblock: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cacerts_sync");
        let passes = Family::<ResultLabels, Counter>::default();
        // 50 ms .. ~100 s: an unchanged pass is a few round trips; a torn rotation waits up to a minute.
        let pass_duration = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        let last_success = Gauge::<f64, AtomicU64>::default();
        let keyvault_requests = Family::<StatusLabels, Counter>::default();
        let istiod_restarts = Family::<DeploymentLabels, Counter>::default();
        let leader = Gauge::default();
        let root_fingerprint = Family::<FingerprintLabels, Gauge>::default();
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        let self_heals = Counter::default();
        let rotation_blocked = Family::<ReasonLabels, Gauge>::default();
        let rotation_unblock = Gauge::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "passes",
            "Finished sync passes by result (changed, unchanged, or the failure class)",
            passes.clone(),
        );
        registry.register("pass_duration_seconds", "Wall time of sync passes", pass_duration.clone());
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful pass",
            last_success.clone(),
        );
        registry.register(
            "keyvault_requests",
            "Key Vault HTTP attempts by status code (error: no response)",
            keyvault_requests.clone(),
        );
        registry.register("istiod_restarts", "istiod rollout restarts by Deployment", istiod_restarts.clone());
        registry.register(
            "leader",
            "1 while this replica is the writer (holds the Lease or runs alone)",
            leader.clone(),
        );
        registry.register(
            "root_fingerprint_info",
            "SHA-256 fingerprint of the root bundle last synced",
            root_fingerprint.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter (Unix time) of every certificate in the last validated material",
            certificate_expiry.clone(),
        );
        registry.register("self_heals", "Restorations of cacerts after it was deleted or edited", self_heals.clone());
        registry.register(
            "rotation_blocked",
            "1 while the time gates refuse the pending rotation step for this reason (root-not-propagated, root-still-anchoring)",
            rotation_blocked.clone(),
        );
        registry.register(
            "rotation_unblock_timestamp_seconds",
            "Unix time the refused rotation step becomes safe (0 when nothing is refused or no time is known)",
            rotation_unblock.clone(),
        );
        for rule in crate::rotation::Rule::ALL {
            rotation_blocked.get_or_create(&ReasonLabels { reason: rule.as_str() }).set(0);
        }
        Self {
            registry: Arc::new(registry),
            passes,
            pass_duration,
            last_success,
            keyvault_requests,
            istiod_restarts,
            leader,
            root_fingerprint,
            certificate_expiry,
            self_heals,
            rotation_blocked,
            rotation_unblock,
        }
    }

    /// A pass the time gates refused: the tool works and `cacerts` holds good material, so it counts for
    /// `last_success` (a rotation waiting 24 h must not look like a broken sync); the gauges say it is blocked.
    pub fn pass_refused(&self, decision: &crate::rotation::GateDecision) {
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.last_success.set(now);
        self.rotation_gates(Some(decision));
    }

    /// Sets the rotation gauges from the last pass: `Some` when the time gates refused its change.
    pub fn rotation_gates(&self, refused: Option<&crate::rotation::GateDecision>) {
        for rule in crate::rotation::Rule::ALL {
            let blocked = refused.is_some_and(|d| d.blocked_by(rule));
            self.rotation_blocked.get_or_create(&ReasonLabels { reason: rule.as_str() }).set(i64::from(blocked));
        }
        let at = refused.and_then(|d| d.unblock_at()).map_or(0, |t| t.as_second());
        self.rotation_unblock.set(at);
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Counts one finished pass. `result`: `changed`, `unchanged` or a failure class.
    pub fn pass_finished(&self, result: &'static str, seconds: f64) {
        self.passes.get_or_create(&ResultLabels { result }).inc();
        self.pass_duration.observe(seconds);
    }

    /// Records a successful pass: the time, the restarts it did and the certificates it validated.
    pub fn pass_succeeded(&self, report: &Report, restarted: &[String]) {
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.last_success.set(now);
        for deployment in restarted {
            self.istiod_restarts.get_or_create(&DeploymentLabels { deployment: deployment.clone() }).inc();
        }
        if let Some(fp) = &report.root_fingerprint {
            let labels = FingerprintLabels { fingerprint: fp.to_string() };
            if self.root_fingerprint.get(&labels).is_none() {
                // Drop the old fingerprint's series: exactly one series says which root is current.
                self.root_fingerprint.clear();
            }
            self.root_fingerprint.get_or_create(&labels).set(1);
        }
        // Replace the whole family so a certificate that left the bundle leaves the metrics too.
        self.certificate_expiry.clear();
        for cert in &report.certificates {
            let role = match cert.role {
                // Never happens for a valid report (keys hold no certificates), and never a key label.
                SecretRole::CaKey => continue,
                role => role.file_name(),
            };
            let labels = CertificateLabels {
                role,
                subject: cert.subject.clone(),
                serial: cert.serial.clone(),
                index: cert.index.to_string(),
            };
            self.certificate_expiry.get_or_create(&labels).set(cert.not_after.as_second());
        }
    }

    /// Drops the series that describe validated material (expiry, fingerprint): a replica that lost the Lease
    /// no longer vouches for what is in `cacerts`, and stale series would keep alerts firing.
    pub fn forget_material(&self) {
        self.certificate_expiry.clear();
        self.root_fingerprint.clear();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Counts one restoration of `cacerts`.
    pub fn self_healed(&self) {
        self.self_heals.inc();
    }

    /// Counts one Key Vault HTTP attempt.
    pub fn keyvault_request(&self, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.keyvault_requests.get_or_create(&StatusLabels { status }).inc();
    }

    /// The Key Vault observer that feeds [`keyvault_request`](Self::keyvault_request).
    pub fn keyvault_observer(&self) -> Observer {
        let metrics = self.clone();
        Arc::new(move |status| metrics.keyvault_request(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_series_is_encoded_with_the_prefix() {
        let m = Metrics::new();
        m.pass_finished("unchanged", 0.2);
        m.keyvault_request(Some(429));
        m.keyvault_request(None);
        m.set_leader(true);
        m.self_healed();
        let text = m.encode();
        for needle in [
            "cacerts_sync_passes_total{result=\"unchanged\"} 1",
            "cacerts_sync_pass_duration_seconds_count 1",
            "cacerts_sync_last_success_timestamp_seconds 0",
            "cacerts_sync_keyvault_requests_total{status=\"429\"} 1",
            "cacerts_sync_keyvault_requests_total{status=\"error\"} 1",
            "cacerts_sync_leader 1",
            "cacerts_sync_self_heals_total 1",
            "cacerts_sync_rotation_blocked{reason=\"root-not-propagated\"} 0",
            "cacerts_sync_rotation_blocked{reason=\"root-still-anchoring\"} 0",
            "cacerts_sync_rotation_unblock_timestamp_seconds 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // Families without a series yet (nothing validated) are left out by the encoder.
        assert!(!text.contains("cacerts_sync_certificate_expiry_timestamp_seconds"));
    }

    fn cert(role: SecretRole, index: usize, serial: &str, not_after: i64) -> crate::bundle::CertInfo {
        crate::bundle::CertInfo {
            role,
            index,
            subject: format!("CN=cert {serial}"),
            issuer: "CN=issuer".into(),
            serial: serial.into(),
            not_before: jiff::Timestamp::UNIX_EPOCH,
            not_after: jiff::Timestamp::from_second(not_after).unwrap(),
            days_left: 1,
            sha256: crate::bundle::Fingerprint::of(serial.as_bytes()),
            is_ca: true,
            self_signed: role == SecretRole::RootCert,
        }
    }

    fn report(fingerprint: &str, certificates: Vec<crate::bundle::CertInfo>) -> Report {
        Report {
            verdict: crate::bundle::Verdict::Valid,
            findings: Vec::new(),
            root_count: certificates.iter().filter(|c| c.role == SecretRole::RootCert).count(),
            certificates,
            root_fingerprint: Some(crate::bundle::Fingerprint::of(fingerprint.as_bytes())),
            material_fingerprint: None,
            anchor: Some(0),
        }
    }

    #[test]
    fn a_good_pass_replaces_the_expiry_family_and_the_fingerprint() {
        let m = Metrics::new();
        m.pass_succeeded(
            &report(
                "a+b",
                vec![
                    cert(SecretRole::RootCert, 0, "0a", 2_000_000_000),
                    cert(SecretRole::RootCert, 1, "0b", 2_100_000_000),
                    cert(SecretRole::CaCert, 0, "0c", 1_900_000_000),
                ],
            ),
            &["istiod".into()],
        );
        let text = m.encode();
        assert!(text.contains(r#"cacerts_sync_certificate_expiry_timestamp_seconds{role="root-cert.pem",subject="CN=cert 0b",serial="0b",index="1"} 2100000000"#), "{text}");
        assert!(text.contains(r#"cacerts_sync_istiod_restarts_total{deployment="istiod"} 1"#), "{text}");
        let old_fp = crate::bundle::Fingerprint::of(b"a+b").to_string();
        assert!(text.contains(&format!("cacerts_sync_root_fingerprint_info{{fingerprint=\"{old_fp}\"}} 1")), "{text}");

        m.pass_succeeded(
            &report(
                "a",
                vec![
                    cert(SecretRole::RootCert, 0, "0a", 2_000_000_000),
                    cert(SecretRole::CaCert, 0, "0c", 1_900_000_000),
                ],
            ),
            &[],
        );
        let text = m.encode();
        assert!(!text.contains(r#"serial="0b""#), "a certificate that left the bundle leaves the metrics:\n{text}");
        assert!(!text.contains(&old_fp), "{text}");
        assert_eq!(text.matches("cacerts_sync_root_fingerprint_info{").count(), 1, "{text}");
        assert_eq!(text.matches("cacerts_sync_certificate_expiry_timestamp_seconds{").count(), 2, "{text}");
    }
}
