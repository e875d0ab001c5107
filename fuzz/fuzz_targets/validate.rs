//! Fuzz target for the PEM scanner, the key and certificate parsers and the validation rules.
//!
//! The input is split at NUL bytes into up to four values (root-cert, ca-cert, ca-key,
//! cert-chain; PEM never contains NUL). Besides "never panics", it checks invariants that
//! callers rely on: the report's root fingerprint agrees with `root_fingerprint`, a valid
//! verdict implies both fingerprints, and rendering never fails.
#![no_main]

#[path = "../../src/bundle/mod.rs"]
#[allow(dead_code, unused_imports)]
mod bundle;
#[path = "../../src/inspect.rs"]
#[allow(dead_code)]
mod inspect;

use bundle::{Deployed, RawMaterial, SecretRole, ValidationOptions, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0);
    let raw = RawMaterial::from_fn(|_| parts.next().unwrap_or_default().to_vec());
    let opts = ValidationOptions {
        now: jiff::Timestamp::from_second(1_800_000_000).expect("in range"),
        expiry_warning: std::time::Duration::from_secs(30 * 86_400),
    };
    // Use the material as its own "deployed" state too, to reach the rotation checks.
    let deployed = Deployed { root_cert: &raw.root_cert, ca_cert: &raw.ca_cert };
    let report = bundle::validate(&raw, &opts, Some(&deployed));

    let direct = bundle::root_fingerprint(&raw.root_cert).ok();
    assert_eq!(direct, report.root_fingerprint, "root fingerprint disagrees");
    if report.verdict == Verdict::Valid {
        assert!(report.material_fingerprint.is_some(), "valid without material fingerprint");
        assert!(report.errors().next().is_none());
    }
    assert_eq!(report.verdict == Verdict::Valid, report.errors().next().is_none());
    for f in &report.findings {
        assert!(!f.message.is_empty());
        if let Some(b) = f.block {
            assert!(b <= bundle::MAX_SECRET_BYTES);
        }
    }
    if let Err(e) = bundle::parse_private_key(&raw.ca_key) {
        assert_eq!(e.secret(), SecretRole::CaKey);
    }
    let _ = inspect::render_text(&report);
    let _ = inspect::render_json(&report);
});
