//! Bundle tests, second part: fingerprints, what outputs may contain (never key bytes), the openssl fixtures,
//! inspect output, and parser robustness. The validation rules are in `tests.rs`.

use std::time::Duration;

use super::testpki::{Ca, Pki, Spec, material};
use super::tests::{codes, opts};
use super::*;

/// CRLF, blank lines, comments around blocks and indented base64 lines.
fn reformat(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).expect("utf8");
    let mut out = String::from("# exported by hand\r\n\r\n");
    for line in text.lines() {
        if line.starts_with("-----") {
            out.push_str(line);
        } else {
            out.push_str("  ");
            out.push_str(line);
            out.push_str("  ");
        }
        out.push_str("\r\n");
        if line.starts_with("-----END") {
            out.push_str("\r\nsubject: something\r\n\r\n");
        }
    }
    out.push_str("trailing text");
    out.into_bytes()
}

#[test]
fn formatting_only_changes_keep_both_fingerprints() {
    let pki = Pki::new();
    let raw = pki.material();
    let a = validate(&raw, &opts(), None);
    let reformatted = RawMaterial::from_fn(|role| reformat(raw.get(role)));
    let b = validate(&reformatted, &opts(), None);
    assert_eq!(b.verdict, Verdict::Valid, "{:#?}", b.findings);
    assert_eq!(a.root_fingerprint, b.root_fingerprint);
    assert_eq!(a.material_fingerprint, b.material_fingerprint);
    assert_eq!(root_fingerprint(&reformatted.root_cert).ok(), a.root_fingerprint);
}

#[test]
fn root_fingerprint_is_sha256_over_the_concatenated_der_in_file_order() {
    let a = Spec::ca("A").issue(None);
    let b = Spec::ca("B").issue(None);
    let ab = root_fingerprint(format!("{}{}", a.pem(), b.pem()).as_bytes()).expect("parses");
    let concat = [a.der(), b.der()].concat();
    assert_eq!(ab, Fingerprint::of(&concat));
    assert_eq!(ab.as_str().len(), 64);
    assert!(ab.as_str().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    let ba = root_fingerprint(format!("{}{}", b.pem(), a.pem()).as_bytes()).expect("parses");
    assert_ne!(ab, ba, "order counts");
}

#[test]
fn any_real_change_changes_the_material_fingerprint() {
    let pki = Pki::new();
    let base = validate(&pki.material(), &opts(), None).material_fingerprint.expect("parses");
    let next = Spec::ca("Next").path_len(0).issue(Some(&pki.root));
    let changes: Vec<(&str, RawMaterial)> = vec![
        ("new intermediate", material(&pki.root, &next)),
        ("other key", RawMaterial { ca_key: next.key_pem().into_bytes(), ..pki.material() }),
        ("chain without root", RawMaterial { cert_chain: pki.int.pem().as_bytes().to_vec(), ..pki.material() }),
        (
            "root moved into the chain only",
            RawMaterial { root_cert: format!("{}{}", pki.root.pem(), pki.root.pem()).into_bytes(), ..pki.material() },
        ),
    ];
    for (name, raw) in changes {
        let fp = validate(&raw, &opts(), None).material_fingerprint.expect("parses");
        assert_ne!(fp, base, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// No key bytes in any output
// ---------------------------------------------------------------------------------------------

/// Every rendering a caller could log: Debug and JSON of the report, the inspect text, finding
/// Display, and Debug of the material.
fn outputs(raw: &RawMaterial) -> Vec<String> {
    let report = validate(raw, &opts(), None);
    let mut out = vec![
        format!("{report:?}"),
        format!("{report:#?}"),
        serde_json::to_string(&report).expect("json"),
        crate::inspect::render_text(&report),
        crate::inspect::render_json(&report).to_string(),
        format!("{raw:?}"),
    ];
    out.extend(report.findings.iter().map(|f| f.to_string()));
    for role in SecretRole::ALL {
        let parsed = match role {
            SecretRole::CaKey => parse_private_key(raw.get(role)).map(|k| format!("{k:?}")),
            _ => parse_certificates(role, raw.get(role)).map(|_| String::new()),
        };
        if let Err(e) = parsed {
            out.push(format!("{e}"));
            out.push(format!("{e:?}"));
            out.push(e.full_message());
        }
    }
    out
}

fn assert_no_key_bytes(outputs: &[String], key_der: &[u8], key_pem: &str) {
    let b64_lines: Vec<&str> = key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 12).collect();
    assert!(!b64_lines.is_empty());
    let hex: String = key_der.iter().map(|b| format!("{b:02x}")).collect();
    for o in outputs {
        for line in &b64_lines {
            assert!(!o.contains(line), "base64 key line leaked into: {o}");
            // Any 12-character window of the base64 body is as bad as a whole line.
            for w in line.as_bytes().windows(12).step_by(6) {
                let w = std::str::from_utf8(w).expect("ascii");
                assert!(!o.contains(w), "base64 key fragment {w:?} leaked into: {o}");
            }
        }
        // Raw bytes: the private scalar sits after a short header; check 8-byte windows of the DER tail.
        for w in key_der[key_der.len() / 2..].windows(8).step_by(4) {
            assert!(!o.as_bytes().windows(8).any(|x| x == w), "raw key bytes leaked into: {o}");
            let wh: String = w.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!o.contains(&wh), "hex key bytes leaked into: {o}");
        }
        assert!(!o.contains(&hex));
        // Rust's Debug of a Vec<u8> prints decimal bytes: look for a run of them too.
        let dec = format!("{:?}", &key_der[key_der.len() - 8..]);
        assert!(!o.contains(dec.trim_matches(|c| c == '[' || c == ']')), "decimal key bytes leaked into: {o}");
    }
}

#[test]
fn no_output_ever_contains_key_bytes() {
    let pki = Pki::new();
    let other = Spec::ca("Other").issue(None);
    let key_pem = pki.int.key_pem();
    let key_der = pki.int.key_der();
    let valid = pki.material();
    let variants: Vec<RawMaterial> = vec![
        valid.clone(),
        // Key mismatch: the report talks about the key.
        RawMaterial { ca_cert: other.pem().as_bytes().to_vec(), ..valid.clone() },
        // The key pasted into every certificate secret.
        RawMaterial {
            root_cert: format!("{}{key_pem}", pki.root.pem()).into_bytes(),
            ca_cert: key_pem.clone().into_bytes(),
            cert_chain: format!("junk\n{key_pem}").into_bytes(),
            ..valid.clone()
        },
        // Broken key encodings.
        RawMaterial { ca_key: key_pem.replacen("M", "*", 2).into_bytes(), ..valid.clone() },
        RawMaterial { ca_key: key_pem.replace("-----END PRIVATE KEY-----", "").into_bytes(), ..valid.clone() },
        RawMaterial { ca_key: key_pem.replace('\n', " ").into_bytes(), ..valid.clone() },
        RawMaterial {
            ca_key: key_pem
                .replace("BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY")
                .replace("END PRIVATE KEY", "END RSA PRIVATE KEY")
                .into_bytes(),
            ..valid.clone()
        },
        RawMaterial { ca_key: key_pem.replace("PRIVATE KEY", "CERTIFICATE").into_bytes(), ..valid.clone() },
        RawMaterial { ca_key: key_der.clone(), ..valid.clone() },
        RawMaterial { ca_key: format!("{key_pem}{key_pem}").into_bytes(), ..valid.clone() },
    ];
    for raw in &variants {
        assert_no_key_bytes(&outputs(raw), &key_der, &key_pem);
    }
}

// ---------------------------------------------------------------------------------------------
// openssl-made fixtures
// ---------------------------------------------------------------------------------------------

/// Inside every fixture's validity window (made 2026-11, roots 20 years, intermediates 10 years).
const FIXTURE_NOW: &str = "2027-06-01T00:00:00Z";

fn fixture_opts() -> ValidationOptions {
    ValidationOptions { now: FIXTURE_NOW.parse().expect("timestamp"), expiry_warning: Duration::from_secs(30 * 86_400) }
}

fn fixture_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openssl").join(name)
}

fn fixture(name: &str) -> RawMaterial {
    let dir = fixture_dir(name);
    RawMaterial::from_fn(|role| std::fs::read(dir.join(role.file_name())).expect("fixture file"))
}

/// The `expected` file written by make.sh: fingerprints computed with openssl and sha256sum.
fn expected(name: &str) -> (String, String) {
    let text = std::fs::read_to_string(fixture_dir(name).join("expected")).expect("expected file");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{k} in {name}/expected"))
    };
    (get("root-fingerprint "), get("material-fingerprint "))
}

#[test]
fn openssl_fixtures_validate_and_match_the_fingerprints_openssl_computes() {
    let cases = [
        ("rsa-pkcs1", KeyAlgorithm::Rsa { bits: 2048 }),
        ("rsa-pkcs8", KeyAlgorithm::Rsa { bits: 4096 }),
        ("ec-p256-sec1", KeyAlgorithm::EcdsaP256),
        ("ec-p256-pkcs8", KeyAlgorithm::EcdsaP256),
        ("ec-p384-sec1", KeyAlgorithm::EcdsaP384),
        ("two-level", KeyAlgorithm::EcdsaP256),
        ("multi-root", KeyAlgorithm::Rsa { bits: 2048 }),
    ];
    for (name, alg) in cases {
        let raw = fixture(name);
        let report = validate(&raw, &fixture_opts(), None);
        assert_eq!(report.verdict, Verdict::Valid, "{name}: {:#?}", report.findings);
        let (root_fp, material_fp) = expected(name);
        assert_eq!(report.root_fingerprint.as_ref().map(Fingerprint::as_str), Some(root_fp.as_str()), "{name}");
        assert_eq!(report.material_fingerprint.as_ref().map(Fingerprint::as_str), Some(material_fp.as_str()), "{name}");
        assert_eq!(parse_private_key(&raw.ca_key).expect("key parses").algorithm, alg, "{name}");
    }
}

#[test]
fn openssl_multi_root_fixture_reports_the_anchoring_root() {
    let report = validate(&fixture("multi-root"), &fixture_opts(), None);
    assert_eq!((report.root_count, report.anchor), (2, Some(1)));
    assert!(codes(&report).contains(&FindingCode::MultipleRoots));
}

#[test]
fn openssl_key_formats_of_one_key_share_a_material_fingerprint() {
    let sec1 = validate(&fixture("ec-p256-sec1"), &fixture_opts(), None);
    let pkcs8 = validate(&fixture("ec-p256-pkcs8"), &fixture_opts(), None);
    assert_eq!(sec1.material_fingerprint, pkcs8.material_fingerprint);
    let spki = parse_private_key(&fixture("rsa-pkcs1").ca_key).expect("parses").spki_der;
    let (_, cert) = x509_parser::parse_x509_certificate(
        &parse_certificates(SecretRole::CaCert, &fixture("rsa-pkcs1").ca_cert).expect("parses")[0],
    )
    .map(|(r, c)| (r.len(), c.public_key().raw.to_vec()))
    .expect("x509");
    assert_eq!(spki, cert, "the key's SubjectPublicKeyInfo is the certificate's");
}

#[test]
fn openssl_v1_intermediate_is_refused() {
    let report = validate(&fixture("v1-intermediate"), &fixture_opts(), None);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert!(codes(&report).contains(&FindingCode::NotV3));
    // make.sh sets serial 4242 = 0x1092: printed as Go's %x of the big.Int.
    assert_eq!(report.certificates[1].serial, "1092");
    assert!(codes(&report).contains(&FindingCode::NotCa));
}

#[test]
fn openssl_intermediate_with_another_intermediates_key_is_torn() {
    let raw = RawMaterial { ca_key: fixture("rsa-pkcs8").ca_key, ..fixture("rsa-pkcs1") };
    let report = validate(&raw, &fixture_opts(), None);
    assert_eq!(report.verdict, Verdict::Torn, "{:#?}", report.findings);
    assert_eq!(report.errors().map(|f| f.code).collect::<Vec<_>>(), [FindingCode::KeyMismatch]);
}

// ---------------------------------------------------------------------------------------------
// Inspect rendering and small API contracts
// ---------------------------------------------------------------------------------------------

#[test]
fn inspect_text_lists_every_certificate_istiod_style_with_fingerprints_and_verdict() {
    let raw = fixture("rsa-pkcs1");
    let report = validate(&raw, &fixture_opts(), None);
    let text = crate::inspect::render_text(&report);
    let cert_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("x509 cert - Issuer: \"")).collect();
    assert_eq!(cert_lines.len(), report.certificates.len(), "{text}");
    let ca = &report.certificates[1];
    assert_eq!(ca.subject, "CN=RSA PKCS1 Intermediate,O=cacerts-sync fixtures", "Go's pkix.Name order");
    assert_eq!(ca.issuer, "CN=RSA Root CA,O=cacerts-sync fixtures");
    assert!(
        cert_lines[1]
            .contains(&format!("Subject: \"{}\", SN: {}, NotBefore: \"{}\"", ca.subject, ca.serial, ca.not_before)),
        "{text}"
    );
    assert!(text.contains(&format!("role: ca-cert #1, days left: {}, sha256: {}", ca.days_left, ca.sha256)), "{text}");
    let (root_fp, _) = expected("rsa-pkcs1");
    assert!(text.contains(&format!("root fingerprint: {root_fp}")), "{text}");
    assert!(text.lines().last().is_some_and(|l| l.starts_with("verdict: valid")), "{text}");
}

#[test]
fn inspect_text_lists_findings_and_the_failing_verdict() {
    let raw = RawMaterial { ca_key: fixture("rsa-pkcs8").ca_key, ..fixture("rsa-pkcs1") };
    let text = crate::inspect::render_text(&validate(&raw, &fixture_opts(), None));
    assert!(text.contains("error [key-mismatch] ca-key"), "{text}");
    assert!(text.contains("verdict: torn (1 error(s), 0 warning(s))"), "{text}");
}

#[test]
fn inspect_json_carries_the_same_facts_in_kebab_case() {
    let raw = RawMaterial { ca_key: fixture("rsa-pkcs8").ca_key, ..fixture("rsa-pkcs1") };
    let report = validate(&raw, &fixture_opts(), None);
    let json = crate::inspect::render_json(&report);
    assert_eq!(json["verdict"], "torn");
    assert_eq!(json["findings"][0]["code"], "key-mismatch");
    assert_eq!(json["findings"][0]["secret"], "ca-key");
    assert_eq!(json["findings"][0]["severity"], "error");
    assert_eq!(json["errors"], 1);
    assert_eq!(json["certificates"].as_array().map(Vec::len), Some(report.certificates.len()));
    assert_eq!(json["certificates"][0]["role"], "root-cert");
    assert_eq!(json["certificates"][0]["not_after"], report.certificates[0].not_after.to_string());
    assert_eq!(json["root_fingerprint"], report.root_fingerprint.as_ref().map(|f| f.as_str()).unwrap_or_default());
    assert_eq!(json["anchor"], 0);
}

#[test]
fn secret_roles_name_key_vault_secrets_and_cacerts_keys() {
    let names: Vec<_> = SecretRole::ALL.iter().map(|r| (r.name(), r.file_name(), r.to_string())).collect();
    assert_eq!(
        names,
        [
            ("root-cert", "root-cert.pem", "root-cert".to_owned()),
            ("ca-cert", "ca-cert.pem", "ca-cert".to_owned()),
            ("ca-key", "ca-key.pem", "ca-key".to_owned()),
            ("cert-chain", "cert-chain.pem", "cert-chain".to_owned()),
        ]
    );
    let raw = RawMaterial::from_fn(|r| r.name().as_bytes().to_vec());
    for r in SecretRole::ALL {
        assert_eq!(raw.get(r), r.name().as_bytes());
    }
}

#[test]
fn raw_material_debug_redacts_the_key() {
    let raw = RawMaterial::from_fn(|r| format!("secret-{r}").into_bytes());
    let dbg = format!("{raw:?}");
    assert!(!dbg.contains("secret-ca-key"), "{dbg}");
    assert!(dbg.contains("redacted, 13 bytes"), "{dbg}");
}

#[test]
fn p384_intermediate_under_a_p256_root_is_valid() {
    let root: Ca = Spec::ca("P-256 Root").issue(None);
    let int = Spec::ca("P-384 Intermediate").p384().path_len(0).issue(Some(&root));
    let raw = material(&root, &int);
    let report = validate(&raw, &opts(), None);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    assert_eq!(parse_private_key(&raw.ca_key).expect("parses").algorithm, KeyAlgorithm::EcdsaP384);
}

#[test]
fn the_sample_ca_for_the_quickstart_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample-ca");
    let raw = RawMaterial::from_fn(|role| std::fs::read(dir.join(role.file_name())).expect("sample file"));
    let report = validate(&raw, &fixture_opts(), None);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    assert!(report.certificates.iter().all(|c| c.subject.contains("DO NOT USE IN PRODUCTION")));
    assert!(report.certificates.iter().all(|c| c.days_left > 365 * 9), "long validity keeps the sample usable");
}

#[test]
fn many_certificates_that_all_verify_each_other_do_not_explode_the_anchor_search() {
    // 40 self-issued CAs with one name and key: every one verifies every other. Without a
    // visited set and a budget the path search would try 40! orderings.
    let looped = Spec::ca("Loop").issue(None);
    let key = looped.key_der();
    let copies: String = (0..40).map(|_| Spec::ca("Loop").issue_for_key(&key, None).pem().to_owned()).collect();
    let int = Spec::ca("Intermediate").path_len(0).issue(Some(&looped));
    let unrelated = Spec::ca("Unrelated Root").issue(None);
    let raw = RawMaterial {
        root_cert: unrelated.pem().as_bytes().to_vec(),
        ca_cert: int.pem().as_bytes().to_vec(),
        ca_key: int.key_pem().into_bytes(),
        cert_chain: format!("{}{copies}", int.pem()).into_bytes(),
    };
    let report = validate(&raw, &opts(), None);
    assert!(codes(&report).contains(&FindingCode::NotAnchored), "{:#?}", report.findings);
}

#[test]
fn names_are_printed_like_go_prints_them_with_escaping() {
    let c = Spec::ca("Acme, Inc. #1 ").issue(None);
    let report =
        validate(&RawMaterial { root_cert: c.pem().as_bytes().to_vec(), ..Pki::new().material() }, &opts(), None);
    assert_eq!(report.certificates[0].subject, "CN=Acme\\, Inc. #1\\ ,O=cacerts-sync tests");
}
