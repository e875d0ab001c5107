//! Unit tests for the bundle core: one table per rule family with rcgen-made PKI at a fixed
//! "now", the openssl-made fixtures in `tests/fixtures/openssl/`, fingerprint invariance, and the
//! guarantee that no output ever carries key bytes.

use std::time::Duration;

use base64::Engine as _;
use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};

use super::testpki::{Ca, Pki, Spec, material, now};
use super::*;

fn opts() -> ValidationOptions {
    ValidationOptions { now: now(), expiry_warning: Duration::from_secs(30 * 86_400) }
}

fn codes(report: &Report) -> Vec<FindingCode> {
    report.findings.iter().map(|f| f.code).collect()
}

fn finding(report: &Report, code: FindingCode) -> &Finding {
    report
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} finding in {:#?}", report.findings))
}

const OTHER_KEY_LABEL: &str = "PRIVATE KEY";

/// One table row: a name, how to break the material, and what the report must say.
struct Case {
    name: &'static str,
    edit: Box<dyn Fn(&mut RawMaterial)>,
    verdict: Verdict,
    expect: &'static [FindingCode],
    secret: Option<SecretRole>,
}

fn case(
    name: &'static str,
    verdict: Verdict,
    expect: &'static [FindingCode],
    secret: Option<SecretRole>,
    edit: impl Fn(&mut RawMaterial) + 'static,
) -> Case {
    Case { name, edit: Box::new(edit), verdict, expect, secret }
}

fn run_table(base: &RawMaterial, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let mut raw = base.clone();
        (c.edit)(&mut raw);
        let report = validate(&raw, &opts(), None);
        let got = codes(&report);
        let missing: Vec<_> = c.expect.iter().filter(|e| !got.contains(e)).collect();
        let secret_ok =
            c.secret.is_none_or(|s| report.findings.iter().any(|f| c.expect.contains(&f.code) && f.secret == Some(s)));
        if report.verdict != c.verdict || !missing.is_empty() || !secret_ok {
            failures.push(format!(
                "{}: verdict {:?} (want {:?}), missing {:?}, secret ok {secret_ok}, findings {:#?}",
                c.name, report.verdict, c.verdict, missing, report.findings
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("ascii"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn consistent_material_is_valid_with_anchor_and_fingerprints() {
    let pki = Pki::new();
    let report = validate(&pki.material(), &opts(), None);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    assert!(report.is_valid());
    assert_eq!(report.errors().count(), 0);
    assert_eq!(report.root_count, 1);
    assert_eq!(report.anchor, Some(0));
    assert!(report.root_fingerprint.is_some());
    assert!(report.material_fingerprint.is_some());
    let roles: Vec<_> = report.certificates.iter().map(|c| (c.role, c.index)).collect();
    assert_eq!(
        roles,
        [(SecretRole::RootCert, 0), (SecretRole::CaCert, 0), (SecretRole::CertChain, 0), (SecretRole::CertChain, 1)]
    );
}

#[test]
fn malformed_values_are_refused_with_a_precise_code_and_secret() {
    let pki = Pki::new();
    let other = Spec::ca("Other").issue(None);
    let key_pem = pki.int.key_pem();
    let root_pem = pki.root.pem().to_owned();
    let int_pem = pki.int.pem().to_owned();
    let int_der = pki.int.der().to_vec();
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519").serialize_pem();
    let one_line = root_pem.replace('\n', " ");
    let indented = root_pem.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let no_end = root_pem.lines().take(3).collect::<Vec<_>>().join("\n");
    let bad_b64 = root_pem.replacen("MII", "M*I", 1);
    let not_cert = pem_block("CERTIFICATE", b"this is not DER at all");
    let mut trailing_der = int_der.clone();
    trailing_der.extend_from_slice(&[0, 0]);
    let trailing = pem_block("CERTIFICATE", &trailing_der);
    let mismatched_end = root_pem.replace("-----END CERTIFICATE-----", "-----END PRIVATE KEY-----");
    let encrypted = key_pem
        .replace("BEGIN PRIVATE KEY", "BEGIN ENCRYPTED PRIVATE KEY")
        .replace("END PRIVATE KEY", "END ENCRYPTED PRIVATE KEY");
    let proc_type = key_pem.replacen("-----\n", "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n", 1);
    let ec_params = format!(
        "{}{key_pem}",
        pem_block("EC PARAMETERS", &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07])
    );
    let garbage_pkcs8 = pem_block(OTHER_KEY_LABEL, &[0x30, 0x03, 0x02, 0x01, 0x00]);
    let garbage_rsa = pem_block("RSA PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
    let two_keys = format!("{key_pem}{}", other.key_pem());
    let two_certs = format!("{int_pem}{root_pem}");
    let key_in_root = format!("{root_pem}{key_pem}");
    let cert_in_key = root_pem.clone();

    use FindingCode as C;
    use SecretRole as R;
    let v = Verdict::Invalid;
    run_table(
        &pki.material(),
        vec![
            case("empty ca-cert", v, &[C::Empty], Some(R::CaCert), |m| m.ca_cert.clear()),
            case("whitespace-only ca-key", v, &[C::Empty], Some(R::CaKey), |m| m.ca_key = b" \r\n\t\n".to_vec()),
            case("oversized root-cert", v, &[C::Oversized], Some(R::RootCert), |m| {
                m.root_cert = vec![b'a'; MAX_SECRET_BYTES + 1]
            }),
            case("DER instead of PEM", v, &[C::NotUtf8], Some(R::CaCert), move |m| m.ca_cert = int_der.clone()),
            case("text without PEM", v, &[C::NotPem], Some(R::CertChain), |m| {
                m.cert_chain = b"hello, world\n".to_vec()
            }),
            case("PEM flattened onto one line", v, &[C::MalformedPem], Some(R::RootCert), move |m| {
                m.root_cert = one_line.clone().into_bytes()
            }),
            case("indented BEGIN line", v, &[C::MalformedPem], Some(R::RootCert), move |m| {
                m.root_cert = indented.clone().into_bytes()
            }),
            case("missing END line", v, &[C::MalformedPem], Some(R::RootCert), move |m| {
                m.root_cert = no_end.clone().into_bytes()
            }),
            case("END label differs", v, &[C::MalformedPem], Some(R::RootCert), move |m| {
                m.root_cert = mismatched_end.clone().into_bytes()
            }),
            case("invalid base64", v, &[C::MalformedPem], Some(R::RootCert), move |m| {
                m.root_cert = bad_b64.clone().into_bytes()
            }),
            case(
                "CERTIFICATE block without a certificate",
                v,
                &[C::InvalidCertificate],
                Some(R::CertChain),
                move |m| m.cert_chain = not_cert.clone().into_bytes(),
            ),
            case("bytes after the certificate", v, &[C::InvalidCertificate], Some(R::CaCert), move |m| {
                m.ca_cert = trailing.clone().into_bytes()
            }),
            case("private key inside root-cert", v, &[C::WrongBlockType], Some(R::RootCert), move |m| {
                m.root_cert = key_in_root.clone().into_bytes()
            }),
            case("certificate in ca-key", v, &[C::WrongBlockType], Some(R::CaKey), move |m| {
                m.ca_key = cert_in_key.clone().into_bytes()
            }),
            case("EC PARAMETERS before the key", v, &[C::WrongBlockType], Some(R::CaKey), move |m| {
                m.ca_key = ec_params.clone().into_bytes()
            }),
            // istiod reads the first block of each and ignores the rest.
            case("two certificates in ca-cert", Verdict::Valid, &[C::IgnoredBlocks], Some(R::CaCert), move |m| {
                m.ca_cert = two_certs.clone().into_bytes()
            }),
            case("two keys in ca-key", Verdict::Valid, &[C::IgnoredBlocks], Some(R::CaKey), move |m| {
                m.ca_key = two_keys.clone().into_bytes()
            }),
            case("encrypted PKCS#8 key", v, &[C::EncryptedKey], Some(R::CaKey), move |m| {
                m.ca_key = encrypted.clone().into_bytes()
            }),
            case("encrypted legacy PEM key", v, &[C::EncryptedKey], Some(R::CaKey), move |m| {
                m.ca_key = proc_type.clone().into_bytes()
            }),
            case("garbage PKCS#8 key", v, &[C::InvalidKey], Some(R::CaKey), move |m| {
                m.ca_key = garbage_pkcs8.clone().into_bytes()
            }),
            case("garbage PKCS#1 key", v, &[C::InvalidKey], Some(R::CaKey), move |m| {
                m.ca_key = garbage_rsa.clone().into_bytes()
            }),
            case("Ed25519 key", v, &[C::UnsupportedKey], Some(R::CaKey), move |m| {
                m.ca_key = ed25519.clone().into_bytes()
            }),
        ],
    );
}

#[test]
fn parse_errors_name_the_secret_and_the_pem_block() {
    let pki = Pki::new();
    let bundle = format!("{}{}", pki.root.pem(), pki.int.key_pem());
    let err = root_fingerprint(bundle.as_bytes()).expect_err("a key in root-cert is refused");
    assert_eq!(err.to_string(), "root-cert: PEM block 2 is a PRIVATE KEY, expected CERTIFICATE");
    assert_eq!((err.secret(), err.block(), err.code()), (SecretRole::RootCert, Some(1), FindingCode::WrongBlockType));

    let err = parse_private_key(pki.root.pem().as_bytes()).expect_err("a certificate in ca-key is refused");
    assert!(err.to_string().starts_with("ca-key: PEM block 1 is a CERTIFICATE, expected"), "{err}");
}

#[test]
fn a_failed_secret_does_not_hide_findings_on_the_others() {
    let pki = Pki::new();
    let mut raw = pki.material();
    raw.ca_key.clear();
    let report = validate(&raw, &opts(), None);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.anchor, Some(0), "ca-cert is still anchored");
    assert!(report.root_fingerprint.is_some());
    assert_eq!(report.material_fingerprint, None);
    assert_eq!(report.certificates.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Consistency rules and the torn/invalid classification
// ---------------------------------------------------------------------------------------------

#[test]
fn half_finished_rotations_are_torn_and_broken_material_is_invalid() {
    let pki = Pki::new();
    let next = Spec::ca("Next Intermediate").path_len(0).issue(Some(&pki.root));
    let new_root = Spec::ca("New Root").issue(None);
    let new_int = Spec::ca("New Intermediate").path_len(0).issue(Some(&new_root));
    // Same name as the real root, different key: only a signature check tells them apart.
    let impostor = Spec::ca("Test Root").issue(None);
    let unrelated = Spec::ca("Unrelated Root").issue(None);

    let next_cert = next.pem().to_owned();
    let next_chain = format!("{}{}", next.pem(), pki.root.pem());
    let new_int_cert = new_int.pem().to_owned();
    let new_int_key = new_int.key_pem();
    let new_int_chain = format!("{}{}", new_int.pem(), new_root.pem());
    let impostor_pem = impostor.pem().to_owned();
    let broken_chain = format!("{}{}", pki.int.pem(), unrelated.pem());
    let key_and_expired = Spec::ca("Expired").valid((2020, 1, 1), (2021, 1, 1)).issue(Some(&pki.root)).pem().to_owned();
    let only_int = pki.int.pem().to_owned();

    use FindingCode as C;
    use SecretRole as R;
    run_table(
        &pki.material(),
        vec![
            case("new ca-cert, old ca-key", Verdict::Torn, &[C::KeyMismatch], Some(R::CaKey), {
                let c = next_cert.clone();
                move |m| m.ca_cert = c.clone().into_bytes()
            }),
            case(
                "cert-chain of the next intermediate",
                Verdict::Torn,
                &[C::ChainMismatch],
                Some(R::CertChain),
                move |m| m.cert_chain = next_chain.clone().into_bytes(),
            ),
            case(
                "new intermediate before its root",
                Verdict::Torn,
                &[C::NotAnchored, C::ChainNotAnchored],
                Some(R::CertChain),
                move |m| {
                    m.ca_cert = new_int_cert.clone().into_bytes();
                    m.ca_key = new_int_key.clone().into_bytes();
                    m.cert_chain = new_int_chain.clone().into_bytes();
                },
            ),
            case("root re-made with the same name but another key", Verdict::Torn, &[C::NotAnchored], None, move |m| {
                m.root_cert = impostor_pem.clone().into_bytes()
            }),
            case(
                "chain link not signed by the next",
                Verdict::Invalid,
                &[C::ChainBroken],
                Some(R::CertChain),
                move |m| m.cert_chain = broken_chain.clone().into_bytes(),
            ),
            case(
                "torn and expired together is invalid",
                Verdict::Invalid,
                &[C::KeyMismatch, C::Expired],
                None,
                move |m| m.ca_cert = key_and_expired.clone().into_bytes(),
            ),
            case("chain ending at a certificate a root signed", Verdict::Valid, &[], None, move |m| {
                m.cert_chain = only_int.clone().into_bytes()
            }),
        ],
    );
}

#[test]
fn ca_cert_is_anchored_through_the_chain_intermediates() {
    let root = Spec::ca("Root").issue(None);
    let mid = Spec::ca("Policy CA").path_len(1).issue(Some(&root));
    let int = Spec::ca("Issuing CA").path_len(0).issue(Some(&mid));
    let base = RawMaterial {
        root_cert: root.pem().as_bytes().to_vec(),
        ca_cert: int.pem().as_bytes().to_vec(),
        ca_key: int.key_pem().into_bytes(),
        cert_chain: format!("{}{}{}", int.pem(), mid.pem(), root.pem()).into_bytes(),
    };
    let report = validate(&base, &opts(), None);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    assert_eq!(report.anchor, Some(0));

    let without_root = format!("{}{}", int.pem(), mid.pem());
    let without_mid = int.pem().to_owned();
    let wrong_order = format!("{}{}{}", int.pem(), root.pem(), mid.pem());
    use FindingCode as C;
    run_table(
        &base,
        vec![
            case("chain ending at the policy CA", Verdict::Valid, &[], None, move |m| {
                m.cert_chain = without_root.clone().into_bytes()
            }),
            case("chain missing the policy CA", Verdict::Torn, &[C::NotAnchored], Some(SecretRole::CaCert), move |m| {
                m.cert_chain = without_mid.clone().into_bytes()
            }),
            case(
                "chain in the wrong order",
                Verdict::Invalid,
                &[C::ChainBroken],
                Some(SecretRole::CertChain),
                move |m| m.cert_chain = wrong_order.clone().into_bytes(),
            ),
        ],
    );
}

#[test]
fn ca_properties_are_enforced_on_ca_cert_roots_and_chain_issuers() {
    let pki = Pki::new();
    let issue_int = |spec: Spec| {
        let c = spec.issue(Some(&pki.root));
        (c.pem().to_owned(), c.key_pem(), format!("{}{}", c.pem(), pki.root.pem()))
    };
    let not_ca = issue_int(Spec::ca("Leaf").not_ca());
    let no_cert_sign = issue_int(Spec::ca("No keyCertSign").key_usages(vec![Ku::DigitalSignature]));
    let server_only = issue_int(Spec::ca("Server only").ekus(vec![Eku::ServerAuth]));
    let mtls_eku = issue_int(Spec::ca("mTLS EKU").ekus(vec![Eku::ServerAuth, Eku::ClientAuth]));
    let root_not_ca = Spec::ca("Test Root").not_ca();
    // A non-CA "root" that still signs the intermediate, so only the CA rule fires.
    let root_key = pki.root.key_der();
    let fake_root = root_not_ca.issue_for_key(&root_key, None).pem().to_owned();
    let tight_root = Spec::ca("Test Root").path_len(0).issue_for_key(&root_key, None).pem().to_owned();
    let mid_not_ca = Spec::ca("Mid").not_ca().issue(Some(&pki.root));
    let int_under_leaf = Spec::ca("Under leaf").issue(Some(&mid_not_ca));
    let under_leaf = (
        int_under_leaf.pem().to_owned(),
        int_under_leaf.key_pem(),
        format!("{}{}{}", int_under_leaf.pem(), mid_not_ca.pem(), pki.root.pem()),
    );

    fn put(m: &mut RawMaterial, t: &(String, String, String)) {
        m.ca_cert = t.0.clone().into_bytes();
        m.ca_key = t.1.clone().into_bytes();
        m.cert_chain = t.2.clone().into_bytes();
    }
    use FindingCode as C;
    use SecretRole as R;
    let v = Verdict::Invalid;
    run_table(
        &pki.material(),
        vec![
            case("ca-cert is not a CA", v, &[C::NotCa], Some(R::CaCert), move |m| put(m, &not_ca)),
            case("ca-cert keyUsage lacks keyCertSign", v, &[C::NoKeyCertSign], Some(R::CaCert), move |m| {
                put(m, &no_cert_sign)
            }),
            case("ca-cert EKU lacks clientAuth", v, &[C::EkuRestricts], Some(R::CaCert), move |m| put(m, &server_only)),
            case("ca-cert EKU with serverAuth and clientAuth", Verdict::Valid, &[], None, move |m| put(m, &mtls_eku)),
            case("root is not a CA", v, &[C::NotCa], Some(R::RootCert), move |m| {
                m.root_cert = fake_root.clone().into_bytes()
            }),
            case("root pathLen 0 above an intermediate", v, &[C::PathLenExceeded], Some(R::RootCert), move |m| {
                m.root_cert = tight_root.clone().into_bytes()
            }),
            case("chain issuer is not a CA", v, &[C::NotCa], Some(R::CertChain), move |m| put(m, &under_leaf)),
        ],
    );
}

#[test]
fn root_bundle_oddities_are_warned_about_but_valid() {
    let pki = Pki::new();
    let second = Spec::ca("Second Root").issue(None);
    let sub = Spec::ca("Sub CA").issue(Some(&second));
    let dup = format!("{}{}", pki.root.pem(), pki.root.pem());
    let with_sub = format!("{}{}", pki.root.pem(), sub.pem());
    let two = format!("{}{}", second.pem(), pki.root.pem());
    use FindingCode as C;
    use SecretRole as R;
    let ok = Verdict::Valid;
    run_table(
        &pki.material(),
        vec![
            case("duplicate root", ok, &[C::DuplicateRoot], Some(R::RootCert), move |m| {
                m.root_cert = dup.clone().into_bytes()
            }),
            case("intermediate in the root bundle", ok, &[C::RootNotSelfSigned], Some(R::RootCert), move |m| {
                m.root_cert = with_sub.clone().into_bytes()
            }),
            case("two roots", ok, &[C::MultipleRoots], Some(R::RootCert), move |m| {
                m.root_cert = two.clone().into_bytes()
            }),
        ],
    );

    let mut raw = pki.material();
    raw.root_cert = format!("{}{}", second.pem(), pki.root.pem()).into_bytes();
    let report = validate(&raw, &opts(), None);
    assert_eq!((report.root_count, report.anchor), (2, Some(1)), "the second root anchors the intermediate");
    let dup = finding(
        &validate(
            &RawMaterial { root_cert: format!("{}{}", pki.root.pem(), pki.root.pem()).into_bytes(), ..pki.material() },
            &opts(),
            None,
        ),
        FindingCode::DuplicateRoot,
    )
    .clone();
    assert_eq!((dup.severity, dup.block), (Severity::Warning, Some(1)));
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn validity_windows_are_checked_against_the_injected_now() {
    let pki = Pki::new();
    let with_int = |spec: Spec| {
        let c = spec.path_len(0).issue(Some(&pki.root));
        (c.pem().to_owned(), c.key_pem(), format!("{}{}", c.pem(), pki.root.pem()))
    };
    // now() is 2030-06-01.
    let expired = with_int(Spec::ca("Expired").valid((2020, 1, 1), (2030, 5, 31)));
    let future = with_int(Spec::ca("Future").valid((2030, 6, 2), (2040, 1, 1)));
    let soon = with_int(Spec::ca("Soon").valid((2020, 1, 1), (2030, 6, 11)));
    let later = with_int(Spec::ca("Later").valid((2020, 1, 1), (2030, 7, 11)));
    let root_key = pki.root.key_der();
    let old_root =
        Spec::ca("Test Root").valid((2010, 1, 1), (2030, 1, 1)).issue_for_key(&root_key, None).pem().to_owned();

    fn put(m: &mut RawMaterial, t: &(String, String, String)) {
        m.ca_cert = t.0.clone().into_bytes();
        m.ca_key = t.1.clone().into_bytes();
        m.cert_chain = t.2.clone().into_bytes();
    }
    use FindingCode as C;
    use SecretRole as R;
    run_table(
        &pki.material(),
        vec![
            case("expired intermediate", Verdict::Invalid, &[C::Expired], Some(R::CaCert), move |m| put(m, &expired)),
            case("intermediate not yet valid", Verdict::Invalid, &[C::NotYetValid], Some(R::CaCert), move |m| {
                put(m, &future)
            }),
            case("intermediate expiring in 10 days", Verdict::Valid, &[C::ExpiringSoon], Some(R::CaCert), move |m| {
                put(m, &soon)
            }),
            case("expired root", Verdict::Invalid, &[C::Expired], Some(R::RootCert), move |m| {
                m.root_cert = old_root.clone().into_bytes()
            }),
        ],
    );

    let mut raw = pki.material();
    put(&mut raw, &later);
    let report = validate(&raw, &opts(), None);
    assert!(!codes(&report).contains(&FindingCode::ExpiringSoon), "40 days left is outside the default 30 days");
    let wide = ValidationOptions { expiry_warning: Duration::from_secs(60 * 86_400), ..opts() };
    let report = validate(&raw, &wide, None);
    assert_eq!(
        finding(&report, FindingCode::ExpiringSoon).severity,
        Severity::Warning,
        "the threshold is configurable"
    );
    let int = report.certificates.iter().find(|c| c.role == SecretRole::CaCert).expect("ca-cert listed");
    assert_eq!(int.days_left, 40);
}

#[test]
fn a_certificate_listed_twice_is_reported_once() {
    let pki = Pki::new();
    let int = Spec::ca("Soon").path_len(0).valid((2020, 1, 1), (2030, 6, 11)).issue(Some(&pki.root));
    let report = validate(&material(&pki.root, &int), &opts(), None);
    assert_eq!(
        codes(&report).iter().filter(|c| **c == FindingCode::ExpiringSoon).count(),
        1,
        "ca-cert heads cert-chain too"
    );
}

// ---------------------------------------------------------------------------------------------
// Root-rotation awareness
// ---------------------------------------------------------------------------------------------

#[test]
fn dropping_the_root_of_the_live_intermediate_is_warned_about() {
    let old = Pki::new();
    let new_root = Spec::ca("New Root").issue(None);
    let new_int = Spec::ca("New Intermediate").path_len(0).issue(Some(&new_root));
    let deployed = old.material();
    let dep = Deployed { root_cert: &deployed.root_cert, ca_cert: &deployed.ca_cert };

    // Phase (c) done unsafely: new intermediate and only the new root while the old one is live.
    let report = validate(&material(&new_root, &new_int), &opts(), Some(&dep));
    assert_eq!(report.verdict, Verdict::Valid);
    let w = finding(&report, FindingCode::RootDropsLiveAnchor);
    assert_eq!(w.severity, Severity::Warning);
    assert!(w.message.contains("Test Root"), "{}", w.message);
    assert!(codes(&report).contains(&FindingCode::RootBundleChanged));

    // The safe variant keeps both roots.
    let mut both = material(&new_root, &new_int);
    both.root_cert = format!("{}{}", new_root.pem(), old.root.pem()).into_bytes();
    let report = validate(&both, &opts(), Some(&dep));
    assert!(!codes(&report).contains(&FindingCode::RootDropsLiveAnchor), "{:#?}", report.findings);

    // A root re-issued with the same name and key still verifies what the old one signed.
    let renewed = Spec::ca("Test Root").valid((2025, 1, 1), (2045, 1, 1)).issue_for_key(&old.root.key_der(), None);
    let report = validate(&material(&renewed, &old.int), &opts(), Some(&dep));
    assert!(!codes(&report).contains(&FindingCode::RootDropsLiveAnchor), "{:#?}", report.findings);
    assert!(codes(&report).contains(&FindingCode::RootBundleChanged));

    // Unchanged roots: neither remark.
    let report = validate(&old.material(), &opts(), Some(&dep));
    assert!(
        !codes(&report).iter().any(|c| matches!(c, FindingCode::RootDropsLiveAnchor | FindingCode::RootBundleChanged))
    );
}

#[test]
fn unreadable_deployed_material_only_skips_the_rotation_checks() {
    let pki = Pki::new();
    let dep = Deployed { root_cert: b"garbage", ca_cert: b"" };
    let report = validate(&pki.material(), &opts(), Some(&dep));
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!(finding(&report, FindingCode::DeployedUnreadable).severity, Severity::Info);
}

// ---------------------------------------------------------------------------------------------
// Fingerprints
// ---------------------------------------------------------------------------------------------

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
