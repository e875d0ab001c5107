//! The validation rules: parsed material → findings, anchor, fingerprints and a verdict.
//!
//! Two layers, both pure:
//! 1. **istiod's start-up check**, exactly: the first block of `ca-cert` verified by Go's rules through
//!    the `cert-chain` pool up to the `root-cert` pool ([`super::chain`]), the key parsed by its label
//!    ([`super::key`]) and matched with `ca-cert`. Its refusals carry Go's own words.
//! 2. **Stricter by design**: material istiod starts with but that breaks workloads or rotation (a
//!    non-CA or v1 `ca-cert`, a `ca-cert` without keyCertSign or whose EKU lacks clientAuth, a
//!    `cert-chain` that is not `ca-cert`'s chain in order). docs/validation.md lists them with reasons.
//!
//! The rule table and the torn/invalid classification are in the module docs of [`super`].

use std::collections::{HashMap, HashSet};

use x509_parser::prelude::X509Version;

use super::cert::{Cert, load};
use super::{
    Deployed, Finding, FindingCode, ParseError, RawMaterial, Report, SecretRole, Severity, ValidationOptions, Verdict,
    chain, check_certificate_der, deployed, fingerprint, key, parse_certificates, pem,
};

/// Where an istiod-refusal message points the reader for the stricter rules.
const STRICTER: &str = "cacerts-sync is stricter than istiod here, see docs/validation.md";

#[derive(Default)]
pub(super) struct Ctx {
    pub findings: Vec<Finding>,
}

impl Ctx {
    pub fn push(
        &mut self,
        severity: Severity,
        code: FindingCode,
        secret: Option<SecretRole>,
        block: Option<usize>,
        message: String,
    ) {
        self.findings.push(Finding { severity, code, secret, block, message });
    }

    pub fn about(&mut self, severity: Severity, code: FindingCode, cert: &Cert<'_>, message: String) {
        self.push(severity, code, Some(cert.info.role), Some(cert.info.index), message);
    }

    fn parse_error(&mut self, e: &ParseError) {
        self.push(Severity::Error, e.code(), Some(e.secret()), e.block(), e.full_message());
    }
}

pub(super) fn run(raw: &RawMaterial, opts: &ValidationOptions, deployed: Option<&Deployed<'_>>) -> Report {
    let mut cx = Ctx::default();

    let root_ders = parse_certificates(SecretRole::RootCert, &raw.root_cert).map_err(|e| cx.parse_error(&e)).ok();
    let ca_ders = parse_certificates(SecretRole::CaCert, &raw.ca_cert).map_err(|e| cx.parse_error(&e)).ok();
    let key = key::parse_private_key(&raw.ca_key).map_err(|e| cx.parse_error(&e)).ok();
    let chain_ders = parse_certificates(SecretRole::CertChain, &raw.cert_chain).map_err(|e| cx.parse_error(&e)).ok();

    // The root usually ends cert-chain and ca-cert heads it: verify each self-signature once.
    let mut self_signed = HashMap::new();
    let roots = load(SecretRole::RootCert, root_ders.as_deref(), opts, &mut self_signed);
    // istiod reads the first block of ca-cert.pem; a chain appended after it is harmless.
    let ca = load(SecretRole::CaCert, ca_ders.as_deref().map(|d| &d[..1]), opts, &mut self_signed).into_iter().next();
    let chain = load(SecretRole::CertChain, chain_ders.as_deref(), opts, &mut self_signed);
    // A certificate secret the strict parser refused still feeds istiod's pools with what Go reads of it,
    // so the report tells whether istiod itself would start.
    let lenient = |role: SecretRole, strict: &Option<Vec<Vec<u8>>>, value: &[u8]| match strict {
        Some(_) => None,
        None => Some(
            pem::go_certificate_blocks(value)
                .into_iter()
                .filter(|d| check_certificate_der(role, 0, d).is_ok())
                .collect::<Vec<_>>(),
        ),
    };
    let root_fallback = lenient(SecretRole::RootCert, &root_ders, &raw.root_cert);
    let chain_fallback = lenient(SecretRole::CertChain, &chain_ders, &raw.cert_chain);
    let mut scratch = HashMap::new();
    let root_fallback = load(SecretRole::RootCert, root_fallback.as_deref(), opts, &mut scratch);
    let chain_fallback = load(SecretRole::CertChain, chain_fallback.as_deref(), opts, &mut scratch);
    report_ignored_blocks(&mut cx, ca_ders.as_deref(), key.as_ref());

    // 1. istiod's check.
    let mut anchor = None;
    let mut refused: Option<&[u8]> = None;
    if let Some(ca) = &ca {
        if let Some(text) = ca.go_parse_error() {
            refused = Some(ca.der);
            cx.about(
                Severity::Error,
                FindingCode::GoParseError,
                ca,
                format!("{}: istiod would refuse this: failed to parse cert PEM: {text}", ca.describe()),
            );
        } else {
            // AppendCertsFromPEM skips what Go cannot parse.
            let go_parses = |c: &&Cert<'_>| c.go_parse_error().is_none();
            let root_pool: Vec<&Cert<'_>> = roots.iter().chain(&root_fallback).filter(go_parses).collect();
            let chain_pool: Vec<&Cert<'_>> = chain.iter().chain(&chain_fallback).filter(go_parses).collect();
            match chain::verify(ca, &root_pool, &chain_pool, opts.now.as_second()) {
                Ok(path) => {
                    let top = path.last().expect("a chain is never empty").der;
                    anchor = roots.iter().position(|r| r.der == top);
                    report_istiod_chain(&mut cx, &path, anchor.map(|i| &roots[i]));
                    check_workload_path_len(&mut cx, &path);
                    // cert-chain's certificates get this check in check_chain.
                    for c in path[1..].iter().filter(|c| c.info.role == SecretRole::RootCert) {
                        check_eku_client_auth(&mut cx, c);
                    }
                }
                Err(mut e) => {
                    // cert-chain usually ends with a copy of the root: name the root-cert entry then.
                    if let Some(root) = roots.iter().find(|r| r.der == e.cert.der) {
                        e.cert = root;
                    }
                    refused = Some(e.cert.der);
                    let cause = e.cause.map(|text| format!(" (on the way: {text})")).unwrap_or_default();
                    cx.about(
                        Severity::Error,
                        e.code,
                        e.cert,
                        format!("{}: istiod would refuse this: {}{cause}", e.cert.describe(), e.text),
                    );
                }
            }
        }
    }
    if let (Some(ca), Some(key)) = (&ca, &key)
        && key.public_key != ca.x.public_key().subject_public_key.data.as_ref()
    {
        cx.push(
            Severity::Error,
            FindingCode::KeyMismatch,
            Some(SecretRole::CaKey),
            Some(0),
            format!(
                "ca-key PEM block 1 ({}) does not match the public key of {}; ca-cert and ca-key are from different intermediates (istiod would refuse this: tls: private key does not match public key)",
                key.algorithm,
                ca.describe()
            ),
        );
    }

    // 2. Stricter by design.
    if let Some(ca) = &ca {
        check_ca_cert(&mut cx, ca);
    }
    if chain_ders.is_some() {
        check_chain(&mut cx, ca.as_ref(), &chain, root_ders.is_some().then_some(roots.as_slice()));
    }

    // Remarks.
    check_validity(&mut cx, roots.iter().chain(ca.as_ref()).chain(chain.iter()), refused, opts);
    if root_ders.is_some() {
        check_roots(&mut cx, &roots, anchor);
    }
    if let Some(d) = deployed
        && root_ders.is_some()
    {
        deployed::check_deployed(&mut cx, d, &roots, &chain);
    }

    let root_fingerprint = root_ders.as_ref().map(|r| fingerprint::root(r.iter().map(Vec::as_slice)));
    let material_fingerprint = match (&root_ders, &ca, &chain_ders, &key) {
        (Some(r), Some(ca), Some(c), Some(k)) => {
            Some(fingerprint::material(r.iter().map(Vec::as_slice), ca.der, c.iter().map(Vec::as_slice), &k.spki_der))
        }
        _ => None,
    };

    let mut findings = cx.findings;
    findings.sort_by_key(|f| f.severity);
    let verdict = if findings.iter().any(|f| f.severity == Severity::Error && !f.code.is_torn()) {
        Verdict::Invalid
    } else if findings.iter().any(|f| f.severity == Severity::Error) {
        Verdict::Torn
    } else {
        Verdict::Valid
    };
    Report {
        verdict,
        findings,
        certificates: roots.iter().chain(ca.as_ref()).chain(chain.iter()).map(|c| c.info.clone()).collect(),
        root_fingerprint,
        material_fingerprint,
        root_count: roots.len(),
        anchor,
    }
}

/// The chain istiod's check builds, for `inspect`: "which intermediate and root will istiod use".
fn report_istiod_chain(cx: &mut Ctx, path: &[&Cert<'_>], anchor: Option<&Cert<'_>>) {
    let n = path.len();
    // The root istiod trusts is the root-cert entry, even where cert-chain holds the same certificate.
    let names: Vec<String> =
        path.iter().enumerate().map(|(i, c)| if i + 1 == n { anchor.unwrap_or(c) } else { c }.describe()).collect();
    cx.push(
        Severity::Info,
        FindingCode::IstiodChain,
        Some(SecretRole::CaCert),
        Some(0),
        format!("istiod's start-up check builds the chain {}", names.join(" -> ")),
    );
}

/// istiod reads one block of `ca-cert` and `ca-key`; say so when there are more.
fn report_ignored_blocks(cx: &mut Ctx, ca_ders: Option<&[Vec<u8>]>, key: Option<&key::PublicKeyInfo>) {
    if let Some(ders) = ca_ders
        && ders.len() > 1
    {
        cx.push(
            Severity::Info,
            FindingCode::IgnoredBlocks,
            Some(SecretRole::CaCert),
            Some(1),
            format!(
                "ca-cert holds {} certificates; istiod uses PEM block 1 only and ignores blocks 2-{} (put the chain in cert-chain)",
                ders.len(),
                ders.len()
            ),
        );
    }
    if let Some(k) = key
        && k.ignored_blocks > 0
    {
        cx.push(
            Severity::Info,
            FindingCode::IgnoredBlocks,
            Some(SecretRole::CaKey),
            Some(1),
            format!("ca-key holds {} PEM blocks; istiod uses block 1 only", k.ignored_blocks + 1),
        );
    }
}

/// Expired and not-yet-valid certificates istiod's check did not refuse (it reads only the path) are
/// warnings; certificates close to expiry too.
fn check_validity<'a, 'b: 'a>(
    cx: &mut Ctx,
    certs: impl Iterator<Item = &'a Cert<'b>>,
    refused: Option<&[u8]>,
    opts: &ValidationOptions,
) {
    // The same certificate often appears twice (ca-cert heads cert-chain, the root ends it): report once.
    let mut seen = HashSet::new();
    let now = opts.now.as_second();
    let warn = i64::try_from(opts.expiry_warning.as_secs()).unwrap_or(i64::MAX);
    for c in certs {
        if !seen.insert(c.der) || refused == Some(c.der) {
            continue;
        }
        let (nb, na) = (c.info.not_before, c.info.not_after);
        if now < nb.as_second() {
            let msg = format!("{} is not valid before {nb}; istiod's check does not use it", c.describe());
            cx.about(Severity::Warning, FindingCode::NotYetValid, c, msg);
        } else if now > na.as_second() {
            let msg = format!(
                "{} expired at {na} ({} days ago); istiod's check does not use it",
                c.describe(),
                -c.info.days_left - 1
            );
            cx.about(Severity::Warning, FindingCode::Expired, c, msg);
        } else if na.as_second() - now < warn {
            cx.about(
                Severity::Warning,
                FindingCode::ExpiringSoon,
                c,
                format!("{} expires at {na} ({} days left)", c.describe(), c.info.days_left),
            );
        }
    }
}

/// Stricter than istiod: `ca-cert` signs every workload certificate, and Go (so every proxy's peer)
/// refuses a path through a v1, non-CA or no-keyCertSign issuer, though istiod itself starts with one.
fn check_ca_cert(cx: &mut Ctx, ca: &Cert<'_>) {
    if ca.x.version() != X509Version::V3 {
        cx.about(
            Severity::Error,
            FindingCode::NotV3,
            ca,
            format!(
                "{} is an X.509 v{} certificate; workload certificates it signs would not verify, it needs v3 with CA extensions ({STRICTER})",
                ca.describe(),
                ca.x.version().0 + 1
            ),
        );
    }
    if !ca.info.is_ca {
        cx.about(
            Severity::Error,
            FindingCode::NotCa,
            ca,
            format!(
                "{} is not a CA certificate (basicConstraints CA:TRUE missing); workload certificates it signs would not verify ({STRICTER})",
                ca.describe()
            ),
        );
    }
    if ca.key_usage_forbids_cert_sign() {
        cx.about(
            Severity::Error,
            FindingCode::NoKeyCertSign,
            ca,
            format!(
                "{} has keyUsage without keyCertSign; workload certificates it signs would not verify ({STRICTER})",
                ca.describe()
            ),
        );
    }
    check_eku_client_auth(cx, ca);
}

/// Stricter than istiod: a workload certificate hangs below `ca-cert`, so every CA above `ca-cert` has one
/// more intermediate below it in a workload's chain than in istiod's own check. A pathLenConstraint that
/// istiod's check just passes would make every workload certificate fail.
fn check_workload_path_len(cx: &mut Ctx, path: &[&Cert<'_>]) {
    for (below, c) in path.iter().enumerate().skip(1) {
        if let Some((_, Some(max))) = c.basic_constraints()
            && below > max as usize
        {
            cx.about(
                Severity::Error,
                FindingCode::PathLenExceeded,
                c,
                format!(
                    "{} has pathLenConstraint {max} but {below} intermediate(s) below it counting ca-cert; workload certificates would not verify ({STRICTER})",
                    c.describe()
                ),
            );
        }
    }
}

/// Workload certificates carry serverAuth and clientAuth; an issuer whose EKU allows serverAuth (istiod's
/// check) but not clientAuth breaks mTLS at verifiers that nest EKUs (Go's, as istio/istio #27193 found
/// out). A missing serverAuth is istiod's own refusal, reported by the chain check.
fn check_eku_client_auth(cx: &mut Ctx, c: &Cert<'_>) {
    if let Some(e) = c.eku()
        && !e.any
        && e.server_auth
        && !e.client_auth
    {
        cx.about(
            Severity::Error,
            FindingCode::EkuRestricts,
            c,
            format!(
                "{} has extendedKeyUsage without clientAuth; workload certificates it issues would not verify as mTLS clients ({STRICTER})",
                c.describe()
            ),
        );
    }
}

/// Roots istiod does not use are only remarked upon.
fn check_roots(cx: &mut Ctx, roots: &[Cert<'_>], anchor: Option<usize>) {
    let mut seen: Vec<&[u8]> = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        if let Some(first) = seen.iter().position(|d| *d == r.der) {
            cx.about(
                Severity::Warning,
                FindingCode::DuplicateRoot,
                r,
                format!("{} duplicates root-cert PEM block {}", r.describe(), first + 1),
            );
            continue;
        }
        seen.push(r.der);
        if anchor != Some(i) {
            if !r.info.is_ca {
                cx.about(
                    Severity::Warning,
                    FindingCode::NotCa,
                    r,
                    format!("{} is not a CA certificate; it can anchor nothing", r.describe()),
                );
            } else if r.key_usage_forbids_cert_sign() {
                cx.about(
                    Severity::Warning,
                    FindingCode::NoKeyCertSign,
                    r,
                    format!("{} has keyUsage without keyCertSign; it can anchor nothing", r.describe()),
                );
            }
        }
        if !r.info.self_signed {
            cx.about(
                Severity::Warning,
                FindingCode::RootNotSelfSigned,
                r,
                format!(
                    "{} is not self-signed (issuer \"{}\"); a trust bundle normally holds roots only",
                    r.describe(),
                    r.info.issuer
                ),
            );
        }
    }
    if seen.len() > 1 {
        cx.push(
            Severity::Info,
            FindingCode::MultipleRoots,
            Some(SecretRole::RootCert),
            None,
            format!(
                "root-cert holds {} distinct roots; istiod trusts more than one only with ISTIO_MULTIROOT_MESH=true (proxies: PROXY_CONFIG_XDS_AGENT=true)",
                seen.len()
            ),
        );
    }
}

/// Stricter than istiod: `cert-chain` is what every workload presents above its own certificate, so it
/// must be `ca-cert`'s chain, in order, ending at (or just below) a root.
fn check_chain(cx: &mut Ctx, ca: Option<&Cert<'_>>, chain: &[Cert<'_>], roots: Option<&[Cert<'_>]>) {
    let Some(first) = chain.first() else { return };
    if let Some(ca) = ca
        && first.der != ca.der
    {
        cx.about(
            Severity::Error,
            FindingCode::ChainMismatch,
            first,
            format!(
                "{} (sha256 {}) is not {} (sha256 {}); cert-chain belongs to another intermediate ({STRICTER})",
                first.describe(),
                first.info.sha256,
                ca.describe(),
                ca.info.sha256
            ),
        );
    }
    for c in chain.iter().skip(1) {
        check_eku_client_auth(cx, c);
    }
    let mut broken = false;
    for pair in chain.windows(2) {
        if !pair[0].signed_by(&pair[1]) {
            broken = true;
            cx.about(
                Severity::Error,
                FindingCode::ChainBroken,
                &pair[0],
                format!("{} is not signed by {} ({STRICTER})", pair[0].describe(), pair[1].describe()),
            );
        }
    }
    let (Some(roots), false) = (roots, broken) else {
        return;
    };
    let last = chain.last().unwrap_or(first);
    let anchored = roots.iter().any(|r| r.der == last.der) || roots.iter().any(|r| last.signed_by(r));
    if !anchored {
        cx.about(
            Severity::Error,
            FindingCode::ChainNotAnchored,
            last,
            format!(
                "cert-chain ends at {} (issuer \"{}\"), which is neither in root-cert nor signed by a root in it",
                last.describe(),
                last.info.issuer
            ),
        );
    }
}
