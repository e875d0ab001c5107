//! Unit tests for the bundle core: one table per rule family with rcgen-made PKI at a fixed
//! "now", the openssl-made fixtures in `tests/fixtures/openssl/`, fingerprint invariance, and the
//! guarantee that no output ever carries key bytes.

use std::time::Duration;

use base64::Engine as _;
use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};

use super::testpki::{Pki, Spec, material, now};
use super::*;

pub(super) fn opts() -> ValidationOptions {
    ValidationOptions { now: now(), expiry_warning: Duration::from_secs(30 * 86_400) }
}

pub(super) fn codes(report: &Report) -> Vec<FindingCode> {
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
