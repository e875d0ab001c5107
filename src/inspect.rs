//! Rendering of the `cacerts-sync inspect` report, as text for people and JSON for machines.
//!
//! The text form models each certificate line on istiod's own startup log
//! (`x509 cert - Issuer: "…", Subject: "…", SN: …, NotBefore: "…", NotAfter: "…"`), so the output
//! can be compared line by line with what istiod printed. Both forms carry the same facts:
//! every certificate, both fingerprints, the root count and anchor, every finding and the verdict.
//! Nothing here sees private-key bytes: a [`Report`] holds none.

use std::fmt::Write as _;

use crate::bundle::{FindingCode, Report, SecretRole, Severity};

/// The report as text lines, ending with a `verdict:` line.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.certificates {
        let _ = writeln!(
            out,
            "x509 cert - Issuer: {:?}, Subject: {:?}, SN: {}, NotBefore: \"{}\", NotAfter: \"{}\"",
            c.issuer, c.subject, c.serial, c.not_before, c.not_after
        );
        let _ = writeln!(
            out,
            "  role: {} #{}, days left: {}, sha256: {}, ca: {}, self-signed: {}",
            c.role,
            c.index + 1,
            c.days_left,
            c.sha256,
            c.is_ca,
            c.self_signed
        );
    }
    let or_none =
        |f: &Option<crate::bundle::Fingerprint>| f.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string);
    let _ = writeln!(out, "root fingerprint: {}", or_none(&report.root_fingerprint));
    let _ = writeln!(out, "material fingerprint: {}", or_none(&report.material_fingerprint));
    let anchor = match report.anchor {
        Some(i) => {
            let subject = report
                .certificates
                .iter()
                .find(|c| c.role == SecretRole::RootCert && c.index == i)
                .map(|c| format!(" ({:?})", c.subject))
                .unwrap_or_default();
            format!("root-cert #{}{subject}", i + 1)
        }
        None => "none".to_owned(),
    };
    let _ = writeln!(out, "roots: {}, anchor of ca-cert: {anchor}", report.root_count);
    let _ = writeln!(out, "{}", istiod_uses(report));
    for f in &report.findings {
        let _ = writeln!(out, "{f}");
    }
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "verdict: {} ({} error(s), {} warning(s))",
        report.verdict,
        count(Severity::Error),
        count(Severity::Warning)
    );
    out
}

/// What istiod's start-up check reads; the chain it builds is the `istiod-chain` finding.
fn istiod_uses(report: &Report) -> String {
    let mut out = String::from(
        "istiod uses: ca-cert PEM block 1 and ca-key PEM block 1 (later blocks are ignored), root-cert as its trust pool and cert-chain as its intermediate pool",
    );
    if !report.findings.iter().any(|f| f.code == FindingCode::IstiodChain) {
        out.push_str("; it builds no chain: istiod would refuse this material (see the errors)");
    }
    out
}

/// The report as a JSON object: the [`Report`] fields plus `errors` and `warnings` counts.
pub fn render_json(report: &Report) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_else(|e| {
        // Report holds strings, numbers and enums only; serialization cannot fail in practice.
        serde_json::json!({ "error": format!("failed to serialize report: {e}") })
    });
    if let Some(obj) = value.as_object_mut() {
        obj.insert("errors".into(), report.errors().count().into());
        obj.insert("warnings".into(), report.warnings().count().into());
    }
    value
}
