//! Differential tests: cacerts-sync's validation against istiod's own start-up check, run by Go's
//! crypto/x509 (the oracle, tests/oracle/istiod_verify, built by tests/run.sh).
//!
//! Material is generated at test time by tests/oracle/gen_cases.py (Python `cryptography` + openssl): a
//! named corpus of edge cases, and a randomized run of mutated valid material. For every case the
//! verdict of `bundle::validate` must equal the oracle's: accept = `Verdict::Valid`. The only allowed
//! difference is [`STRICTER_BY_DESIGN`]: material istiod starts with but that breaks workloads or rotation
//! (docs/validation.md explains each). A false accept is never allowed.
//!
//! Longer randomized runs: `CACERTS_SYNC_DIFF_SEED=<n> CACERTS_SYNC_DIFF_COUNT=<n> cargo test --test
//! differential randomized -- --nocapture` (defaults: seed 10, 2000 cases).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cacerts_sync::bundle::{self, FindingCode, RawMaterial, SecretRole, Severity, ValidationOptions, Verdict};

/// Refusals that are stricter than istiod by design: (rule, secret it is about, why).
const STRICTER_BY_DESIGN: &[(FindingCode, SecretRole, &str)] = &[
    (FindingCode::NotCa, SecretRole::CaCert, "a non-CA ca-cert signs workload certificates no verifier accepts"),
    (FindingCode::NotV3, SecretRole::CaCert, "a v1 ca-cert cannot be a CA for the workload certificates it signs"),
    (FindingCode::NoKeyCertSign, SecretRole::CaCert, "workload certificates signed without keyCertSign do not verify"),
    (
        FindingCode::EkuRestricts,
        SecretRole::CaCert,
        "an EKU without clientAuth breaks workload mTLS (istio/istio #27193)",
    ),
    (FindingCode::EkuRestricts, SecretRole::CertChain, "an EKU without clientAuth breaks workload mTLS"),
    (FindingCode::EkuRestricts, SecretRole::RootCert, "an EKU without clientAuth breaks workload mTLS"),
    (FindingCode::PathLenExceeded, SecretRole::RootCert, "a workload certificate adds one more level below ca-cert"),
    (FindingCode::PathLenExceeded, SecretRole::CertChain, "a workload certificate adds one more level below ca-cert"),
    (FindingCode::ChainMismatch, SecretRole::CertChain, "workloads present cert-chain above their certificate"),
    (FindingCode::ChainBroken, SecretRole::CertChain, "workloads present cert-chain in order (RFC 8446 4.4.2)"),
    (FindingCode::ChainNotAnchored, SecretRole::CertChain, "workloads present cert-chain up to the root"),
    (FindingCode::UnsupportedKey, SecretRole::CaKey, "Ed25519 workload chains are not assured at every proxy"),
    (FindingCode::MalformedPem, SecretRole::RootCert, "Go skips a broken block; proxies reading the bundle may not"),
    (FindingCode::MalformedPem, SecretRole::CertChain, "Go skips a broken block; workloads present it as is"),
    (FindingCode::MalformedPem, SecretRole::CaCert, "Go skips a broken trailing block; istiod uses block 1"),
];

/// Named corpus cases where the tool refuses what istiod accepts, each by a [`STRICTER_BY_DESIGN`] rule.
const CORPUS_STRICTER: &[&str] = &[
    "intermediate-eku-server-auth-only",
    "v1-intermediate",
    "ed25519-intermediate",
    "intermediate-not-ca",
    "intermediate-without-basic-constraints",
    "intermediate-without-key-cert-sign",
    "cert-chain-of-another-intermediate",
    "cert-chain-reversed",
    "truncated-last-root-block",
    "truncated-cert-chain-root",
    "root-pathlen-0-one-level",
    "root-pathlen-1-with-two-levels",
    "mid-pathlen-0-with-intermediate",
];

/// Corpus cases whose refusal must carry this verdict and rule, about this secret: permanent findings are
/// invalid at once, only a half-finished upload is torn, and the finding names the right certificate.
const CORPUS_REFUSALS: &[(&str, Verdict, FindingCode, SecretRole)] = &[
    ("intermediate-signed-sha1-rsa", Verdict::Invalid, FindingCode::InsecureSignature, SecretRole::CaCert),
    ("intermediate-signed-ecdsa-sha1", Verdict::Invalid, FindingCode::InsecureSignature, SecretRole::CaCert),
    (
        "intermediate-unknown-critical-extension",
        Verdict::Invalid,
        FindingCode::UnhandledCriticalExtension,
        SecretRole::CaCert,
    ),
    ("intermediate-critical-skid", Verdict::Invalid, FindingCode::GoParseError, SecretRole::CaCert),
    ("root-name-constraints-exclude-uri-san", Verdict::Invalid, FindingCode::NameConstraints, SecretRole::RootCert),
    ("pkcs8-under-ec-private-key-label", Verdict::Invalid, FindingCode::InvalidKey, SecretRole::CaKey),
    ("sec1-explicit-curve-parameters", Verdict::Invalid, FindingCode::InvalidKey, SecretRole::CaKey),
    ("encrypted-pkcs8-key", Verdict::Invalid, FindingCode::EncryptedKey, SecretRole::CaKey),
    ("intermediate-eku-client-auth-only", Verdict::Invalid, FindingCode::EkuRestricts, SecretRole::CaCert),
    ("root-pathlen-0-with-two-levels", Verdict::Invalid, FindingCode::PathLenExceeded, SecretRole::RootCert),
    ("expired-root", Verdict::Invalid, FindingCode::Expired, SecretRole::RootCert),
    ("not-yet-valid-intermediate", Verdict::Invalid, FindingCode::NotYetValid, SecretRole::CaCert),
    ("root-without-key-cert-sign", Verdict::Invalid, FindingCode::NoKeyCertSign, SecretRole::RootCert),
    // Go names root A's copy at the end of cert-chain: it has no authority in the B-only bundle.
    ("rotation-phase-b-only", Verdict::Torn, FindingCode::NotAnchored, SecretRole::CertChain),
    ("issuer-printablestring-root-utf8", Verdict::Torn, FindingCode::NotAnchored, SecretRole::CaCert),
    ("key-of-another-intermediate", Verdict::Torn, FindingCode::KeyMismatch, SecretRole::CaKey),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The oracle binary: `CACERTS_SYNC_ORACLE`, else where tests/run.sh builds it.
fn oracle() -> PathBuf {
    let path = std::env::var_os("CACERTS_SYNC_ORACLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/oracle/istiod-verify"));
    assert!(
        path.is_file(),
        "the Go oracle {} is missing: build it with tests/run.sh, or by hand:\n  cd tests/oracle/istiod_verify && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off go build -o ../../../target/oracle/istiod-verify .\n(Go from Debian: apt-get install golang-1.23-go from bookworm-backports, or golang-go)",
        path.display()
    );
    path
}

fn go_version(oracle: &Path) -> String {
    let out = Command::new(oracle).arg("-version").output().expect("run the oracle");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs tests/oracle/gen_cases.py; returns the case directories in order.
fn generate(args: &[&str]) -> Vec<PathBuf> {
    let out = Command::new("python3")
        .arg(repo().join("tests/oracle/gen_cases.py"))
        .args(args)
        .output()
        .expect("python3 runs (tests/run.sh installs python3 and the `cryptography` package)");
    assert!(out.status.success(), "gen_cases.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").lines().map(PathBuf::from).collect()
}

/// The oracle's verdicts, one process for all directories: dir → Ok(()) or Err(Go's error text).
fn judge_with_go(oracle: &Path, dirs: &[PathBuf]) -> BTreeMap<PathBuf, Result<(), String>> {
    let mut child =
        Command::new(oracle).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start the oracle");
    let mut stdin = child.stdin.take().expect("stdin");
    let input: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("oracle output");
    writer.join().expect("writer").expect("write dirs");
    assert!(out.status.success(), "the oracle failed");
    let mut verdicts = BTreeMap::new();
    for line in String::from_utf8(out.stdout).expect("utf-8").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("oracle JSON line");
        let dir = PathBuf::from(v["dir"].as_str().expect("dir"));
        let error = v["error"].as_str().unwrap_or_default().to_owned();
        assert!(!error.starts_with("oracle:"), "{}: {error}", dir.display());
        verdicts.insert(dir, if v["accept"].as_bool() == Some(true) { Ok(()) } else { Err(error) });
    }
    assert_eq!(verdicts.len(), dirs.len(), "the oracle judged every case");
    verdicts
}

fn read(dir: &Path) -> RawMaterial {
    RawMaterial::from_fn(|role| std::fs::read(dir.join(role.file_name())).expect("case file"))
}

/// How the tool's verdict relates to the oracle's.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Agree,
    Stricter,
    FalseAccept,
    FalseReject,
}

fn compare(dir: &Path, go: &Result<(), String>) -> (Outcome, String) {
    let report = bundle::validate(&read(dir), &ValidationOptions::default(), None);
    let errors: Vec<String> = report.errors().map(|f| f.to_string()).collect();
    let outcome = match (go, report.verdict == Verdict::Valid) {
        (Ok(()), true) | (Err(_), false) => Outcome::Agree,
        (Err(_), true) => Outcome::FalseAccept,
        (Ok(()), false) => {
            let allowed = report.findings.iter().filter(|f| f.severity == Severity::Error).all(|f| {
                STRICTER_BY_DESIGN.iter().any(|(code, secret, _)| f.code == *code && f.secret == Some(*secret))
            });
            if allowed { Outcome::Stricter } else { Outcome::FalseReject }
        }
    };
    let detail = format!(
        "{}: go: {}\n  tool: {} {errors:?}",
        dir.display(),
        go.as_ref().err().map_or("accept", String::as_str),
        report.verdict
    );
    (outcome, detail)
}

#[test]
fn the_named_corpus_agrees_with_istiods_check() {
    let oracle = oracle();
    println!("oracle: istiod's start-up check with Go {}", go_version(&oracle));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs = generate(&["corpus", tmp.path().to_str().expect("utf-8 path")]);
    assert!(dirs.len() >= 40, "the corpus has {} cases, want at least 40", dirs.len());
    let verdicts = judge_with_go(&oracle, &dirs);

    let mut failures = Vec::new();
    let mut stricter = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for dir in &dirs {
        let go = &verdicts[dir];
        if go.is_ok() {
            accepted += 1
        } else {
            refused += 1
        }
        let name = dir.file_name().and_then(|n| n.to_str()).expect("case name").to_owned();
        let (outcome, detail) = compare(dir, go);
        match outcome {
            Outcome::Agree => {}
            Outcome::Stricter => stricter.push(name),
            Outcome::FalseAccept | Outcome::FalseReject => failures.push(format!("{outcome:?} {detail}")),
        }
    }
    println!("corpus: {} cases, istiod accepts {accepted}, refuses {refused}", dirs.len());
    for (name, verdict, code, secret) in CORPUS_REFUSALS {
        let dir = dirs.iter().find(|d| d.ends_with(name)).unwrap_or_else(|| panic!("corpus case {name}"));
        let report = bundle::validate(&read(dir), &ValidationOptions::default(), None);
        let f = report.errors().find(|f| f.code == *code && f.secret == Some(*secret));
        if report.verdict != *verdict || f.is_none() {
            failures.push(format!(
                "{name}: want {verdict} with {code} on {secret}, got {} {:?}",
                report.verdict, report.findings
            ));
        } else if let Some(f) = f
            && !(f.message.starts_with(secret.name()) && f.message.contains("PEM block"))
        {
            failures.push(format!("{name}: the message does not name the secret and block: {}", f.message));
        }
    }
    assert!(failures.is_empty(), "disagreements with istiod:\n{}", failures.join("\n"));
    // Both directions are exercised, and the stricter cases are exactly the documented ones.
    assert!(accepted >= 15 && refused >= 15, "accepted {accepted}, refused {refused}");
    let mut expected: Vec<String> = CORPUS_STRICTER.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    stricter.sort();
    assert_eq!(stricter, expected, "cases refused only by cacerts-sync's stricter rules");
}

#[test]
fn randomized_mutations_agree_with_istiods_check() {
    let oracle = oracle();
    let seed: u64 = std::env::var("CACERTS_SYNC_DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let count: usize = std::env::var("CACERTS_SYNC_DIFF_COUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    println!("oracle: Go {}; seed {seed}, {count} cases", go_version(&oracle));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs = generate(&["random", tmp.path().to_str().expect("utf-8 path"), &seed.to_string(), &count.to_string()]);
    assert_eq!(dirs.len(), count);
    let verdicts = judge_with_go(&oracle, &dirs);

    let mut failures = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for dir in &dirs {
        let go = &verdicts[dir];
        let (outcome, detail) = compare(dir, go);
        let key = format!("go {} / {outcome:?}", if go.is_ok() { "accepts" } else { "refuses" });
        *tally.entry(key).or_default() += 1;
        if matches!(outcome, Outcome::FalseAccept | Outcome::FalseReject) {
            let params = std::fs::read_to_string(dir.join("case.json")).unwrap_or_default();
            failures.push(format!("{outcome:?} {detail}\n  case: {params}"));
        }
    }
    println!("outcomes: {tally:?}");
    assert!(
        failures.is_empty(),
        "{} of {count} disagree with istiod (seed {seed}):\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    // The run must exercise both sides, or it proves nothing.
    assert!(tally.keys().any(|k| k.starts_with("go accepts")) && tally.keys().any(|k| k.starts_with("go refuses")));
}
