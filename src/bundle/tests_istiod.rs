//! Unit tests of the istiod-equivalent check: P-521 and SHA-512, what istiod ignores, Go's words in
//! refusals, and permanent findings that make the verdict invalid at once. The full comparison with Go
//! itself is tests/differential.rs.

use base64::Engine as _;

use super::testpki::{Pki, Spec, material, now};
use super::*;

fn opts() -> ValidationOptions {
    ValidationOptions { now: now(), expiry_warning: std::time::Duration::from_secs(30 * 24 * 3600) }
}

fn error_codes(report: &Report) -> Vec<FindingCode> {
    report.errors().map(|f| f.code).collect()
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[test]
fn a_p521_root_signing_with_sha512_is_valid_and_self_signed() {
    let root = Spec::ca("P-521 Root").alg(&rcgen::PKCS_ECDSA_P521_SHA512).issue(None);
    let int = Spec::ca("Intermediate").path_len(0).issue(Some(&root));
    let report = validate(&material(&root, &int), &opts(), None);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    assert!(report.certificates.iter().all(|c| c.role != SecretRole::RootCert || c.self_signed));
    assert_eq!(report.anchor, Some(0));
    // A P-521 intermediate key is accepted too.
    let int = Spec::ca("P-521 Intermediate").alg(&rcgen::PKCS_ECDSA_P521_SHA512).path_len(0).issue(Some(&root));
    let report = validate(&material(&root, &int), &opts(), None);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
}

#[test]
fn istiod_reads_the_first_block_of_ca_cert_so_an_appended_chain_is_valid() {
    let pki = Pki::new();
    let mut raw = pki.material();
    raw.ca_cert = raw.cert_chain.clone();
    let report = validate(&raw, &opts(), None);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    let ignored = report.findings.iter().find(|f| f.code == FindingCode::IgnoredBlocks).expect("ignored blocks");
    assert_eq!((ignored.severity, ignored.secret), (Severity::Info, Some(SecretRole::CaCert)));
    assert!(ignored.message.contains("istiod uses PEM block 1 only"), "{}", ignored.message);
    // The fingerprint covers what istiod uses: the same as with ca-cert alone.
    assert_eq!(report.material_fingerprint, validate(&pki.material(), &opts(), None).material_fingerprint);
}

#[test]
fn refusals_give_istiods_reason_in_go_words_and_name_secret_and_block() {
    let pki = Pki::new();
    let critical = Spec::ca("Critical").path_len(0).critical_unknown().issue(Some(&pki.root));
    let report = validate(&material(&pki.root, &critical), &opts(), None);
    assert_eq!(report.verdict, Verdict::Invalid);
    let f = report.errors().next().expect("an error");
    assert_eq!(
        (f.code, f.secret, f.block),
        (FindingCode::UnhandledCriticalExtension, Some(SecretRole::CaCert), Some(0))
    );
    assert!(
        f.message.starts_with("ca-cert PEM block 1 (\"CN=Critical,O=cacerts-sync tests\"): istiod would refuse this: x509: unhandled critical extension"),
        "{}",
        f.message
    );

    // A root with a critical unknown extension: Go refuses the candidate (from root-cert, then its copy
    // at the end of cert-chain); the finding names the root.
    let root = Spec::ca("Root").critical_unknown().issue(None);
    let int = Spec::ca("Int").path_len(0).issue(Some(&root));
    let report = validate(&material(&root, &int), &opts(), None);
    assert_eq!(report.verdict, Verdict::Invalid, "{:#?}", report.findings);
    assert!(
        report.errors().any(|f| f.code == FindingCode::UnhandledCriticalExtension && f.message.contains("(\"CN=Root,")),
        "{:#?}",
        report.findings
    );

    // The PKCS#8 key under an EC label: Go's words, and no key bytes.
    let mut raw = pki.material();
    let key = pki.int.key_pem().replace("PRIVATE KEY-----", "EC PRIVATE KEY-----");
    raw.ca_key = key.clone().into_bytes();
    let report = validate(&raw, &opts(), None);
    let f = report.errors().next().expect("an error");
    assert_eq!((f.code, f.secret), (FindingCode::InvalidKey, Some(SecretRole::CaKey)));
    assert!(f.message.contains("use ParsePKCS8PrivateKey instead"), "{}", f.message);
    assert!(!f.message.contains(key.lines().nth(1).expect("body")));
}

#[test]
fn sec1_keys_need_a_named_curve_as_go_requires() {
    let pki = Pki::new();
    // SEC1 of the intermediate's key, rebuilt without the [0] parameters.
    let pkcs8 = pki.int.key_der();
    let sec1 = {
        let (seq, _) = der::expect(&pkcs8, der::SEQUENCE).expect("pkcs8");
        let (_, rest) = der::expect(seq, der::INTEGER).expect("version");
        let (_, rest) = der::expect(rest, der::SEQUENCE).expect("alg");
        let (inner, _) = der::expect(rest, der::OCTET_STRING).expect("key");
        inner.to_vec()
    };
    let (body, _) = der::expect(&sec1, der::SEQUENCE).expect("sec1");
    let (version, rest) = der::expect(body, der::INTEGER).expect("version");
    let (scalar, _) = der::expect(rest, der::OCTET_STRING).expect("scalar");
    let mut inner = vec![der::INTEGER, version.len() as u8];
    inner.extend_from_slice(version);
    inner.extend_from_slice(&[der::OCTET_STRING, scalar.len() as u8]);
    inner.extend_from_slice(scalar);
    let mut no_curve = vec![der::SEQUENCE, inner.len() as u8];
    no_curve.extend_from_slice(&inner);

    let mut raw = pki.material();
    raw.ca_key = pem_block("EC PRIVATE KEY", &no_curve).into_bytes();
    let report = validate(&raw, &opts(), None);
    assert_eq!(report.verdict, Verdict::Invalid, "{:#?}", report.findings);
    assert!(report.errors().any(|f| f.code == FindingCode::InvalidKey && f.message.contains("unknown elliptic curve")));
}

#[test]
fn a_permanent_finding_makes_the_verdict_invalid_even_when_the_upload_also_looks_torn() {
    let pki = Pki::new();
    // Torn alone: a new intermediate with the old key (the ca-key upload has not happened yet).
    let next = Spec::ca("Next").path_len(0).issue(Some(&pki.root));
    let mut torn = pki.material();
    torn.ca_cert = next.pem().as_bytes().to_vec();
    let report = validate(&torn, &opts(), None);
    assert_eq!(report.verdict, Verdict::Torn, "{:#?}", report.findings);

    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519").serialize_pem();
    let encrypted = pem_block("ENCRYPTED PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
    let mislabelled = next.key_pem().replace("PRIVATE KEY-----", "EC PRIVATE KEY-----");
    let cases: Vec<(&str, String, FindingCode)> = vec![
        ("Ed25519 key", ed25519, FindingCode::UnsupportedKey),
        ("encrypted key", encrypted, FindingCode::EncryptedKey),
        ("PKCS#8 under an EC label", mislabelled, FindingCode::InvalidKey),
    ];
    for (name, key, code) in cases {
        let mut raw = torn.clone();
        raw.ca_key = key.into_bytes();
        let report = validate(&raw, &opts(), None);
        assert_eq!(report.verdict, Verdict::Invalid, "{name}: {:#?}", report.findings);
        assert!(error_codes(&report).contains(&code), "{name}: {:#?}", report.findings);
    }

    // A critical extension on the new intermediate while cert-chain is still the old one (torn).
    let critical = Spec::ca("Critical").path_len(0).critical_unknown().issue(Some(&pki.root));
    let mut raw = pki.material();
    raw.ca_cert = critical.pem().as_bytes().to_vec();
    raw.ca_key = critical.key_pem().into_bytes();
    let report = validate(&raw, &opts(), None);
    assert_eq!(report.verdict, Verdict::Invalid, "{:#?}", report.findings);
    let codes = error_codes(&report);
    assert!(codes.contains(&FindingCode::ChainMismatch) && codes.contains(&FindingCode::UnhandledCriticalExtension));
}

#[test]
fn inspect_says_what_istiod_uses_and_the_chain_it_builds() {
    let pki = Pki::new();
    let mut raw = pki.material();
    raw.ca_cert = raw.cert_chain.clone();
    let report = validate(&raw, &opts(), None);
    let text = crate::inspect::render_text(&report);
    assert!(text.contains("istiod uses: ca-cert PEM block 1 and ca-key PEM block 1"), "{text}");
    assert!(
        text.contains("[istiod-chain] istiod's start-up check builds the chain ca-cert PEM block 1 (\"CN=Test Intermediate,O=cacerts-sync tests\") -> root-cert PEM block 1 (\"CN=Test Root,O=cacerts-sync tests\")"),
        "{text}"
    );
    assert!(text.contains("[ignored-blocks] ca-cert holds 2 certificates"), "{text}");
    assert!(!text.contains("it builds no chain"), "{text}");

    raw.root_cert = Spec::ca("Other Root").issue(None).pem().as_bytes().to_vec();
    let report = validate(&raw, &opts(), None);
    let text = crate::inspect::render_text(&report);
    assert!(text.contains("it builds no chain: istiod would refuse this material"), "{text}");
    assert!(!text.contains("[istiod-chain]"), "{text}");
}
