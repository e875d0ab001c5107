//! The validation rules: parsed material → findings, anchor, fingerprints and a verdict.
//!
//! The rule table and the torn/invalid classification are in the module docs of [`super`].
//! Anchoring is decided by signature: a candidate issuer must verify the certificate's signature
//! with its public key, a matching name alone is not enough.

use std::collections::{HashMap, HashSet};

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::{FromDer, X509Version};

use super::{
    CertInfo, Deployed, Finding, FindingCode, Fingerprint, ParseError, RawMaterial, Report, SecretRole, Severity,
    ValidationOptions, Verdict, fingerprint, key, parse_certificates,
};

/// One parsed certificate with what the report says about it.
struct Cert<'a> {
    der: &'a [u8],
    x: X509Certificate<'a>,
    info: CertInfo,
}

impl Cert<'_> {
    /// `root-cert certificate 2 ("CN=Root")`, or `ca-cert ("CN=Intermediate")` for the single ca-cert.
    fn describe(&self) -> String {
        match self.info.role {
            SecretRole::CaCert => format!("ca-cert (\"{}\")", self.info.subject),
            role => format!("{role} certificate {} (\"{}\")", self.info.index + 1, self.info.subject),
        }
    }

    fn signed_by(&self, issuer: &Cert<'_>) -> bool {
        self.x.verify_signature(Some(issuer.x.public_key())).is_ok()
    }

    fn names_issuer(&self, issuer: &Cert<'_>) -> bool {
        self.x.issuer().as_raw() == issuer.x.subject().as_raw()
    }
}

struct Ctx {
    findings: Vec<Finding>,
}

impl Ctx {
    fn push(
        &mut self,
        severity: Severity,
        code: FindingCode,
        secret: Option<SecretRole>,
        block: Option<usize>,
        message: String,
    ) {
        self.findings.push(Finding { severity, code, secret, block, message });
    }

    fn about(&mut self, severity: Severity, code: FindingCode, cert: &Cert<'_>, message: String) {
        self.push(severity, code, Some(cert.info.role), Some(cert.info.index), message);
    }

    fn parse_error(&mut self, e: &ParseError) {
        self.push(Severity::Error, e.code(), Some(e.secret()), e.block(), e.full_message());
    }
}

pub(super) fn run(raw: &RawMaterial, opts: &ValidationOptions, deployed: Option<&Deployed<'_>>) -> Report {
    let mut cx = Ctx { findings: Vec::new() };

    let root_ders = parse_certificates(SecretRole::RootCert, &raw.root_cert).map_err(|e| cx.parse_error(&e)).ok();
    let ca_ders = parse_certificates(SecretRole::CaCert, &raw.ca_cert)
        .and_then(|ders| {
            if ders.len() > 1 {
                Err(ParseError::ExtraBlock {
                    secret: SecretRole::CaCert,
                    block: 1,
                    count: ders.len(),
                    expected: "certificate",
                    hint: "; put further intermediates and the root in cert-chain",
                })
            } else {
                Ok(ders)
            }
        })
        .map_err(|e| cx.parse_error(&e))
        .ok();
    let key = key::parse_private_key(&raw.ca_key).map_err(|e| cx.parse_error(&e)).ok();
    let chain_ders = parse_certificates(SecretRole::CertChain, &raw.cert_chain).map_err(|e| cx.parse_error(&e)).ok();

    // The root usually ends cert-chain and ca-cert heads it: verify each self-signature once.
    let mut self_signed = HashMap::new();
    let roots = load(SecretRole::RootCert, root_ders.as_deref(), opts, &mut self_signed);
    let ca = load(SecretRole::CaCert, ca_ders.as_deref(), opts, &mut self_signed).into_iter().next();
    let chain = load(SecretRole::CertChain, chain_ders.as_deref(), opts, &mut self_signed);

    check_validity(&mut cx, roots.iter().chain(ca.as_ref()).chain(chain.iter()), opts);
    if root_ders.is_some() {
        check_roots(&mut cx, &roots);
    }
    if let Some(ca) = &ca {
        check_ca_cert(&mut cx, ca);
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
                "ca-key ({}) does not match the public key of {}; ca-cert and ca-key are from different intermediates",
                key.algorithm,
                ca.describe()
            ),
        );
    }
    if chain_ders.is_some() {
        check_chain(&mut cx, ca.as_ref(), &chain, root_ders.is_some().then_some(roots.as_slice()));
    }

    // ca-cert's path up to a root, through the chain's other certificates.
    let mut anchor = None;
    if let (Some(ca), true) = (&ca, root_ders.is_some()) {
        let intermediates: Vec<&Cert<'_>> = chain.iter().filter(|c| c.der != ca.der).collect();
        match find_path(ca, &intermediates, &roots) {
            Some((root, path)) => {
                anchor = Some(root);
                check_path_len(&mut cx, ca, &intermediates, &path, &roots[root]);
            }
            None => cx.push(
                Severity::Error,
                FindingCode::NotAnchored,
                Some(SecretRole::CaCert),
                Some(0),
                format!(
                    "{} (issuer \"{}\") does not verify, by signature, against any of the {} certificate(s) in root-cert, directly or through cert-chain",
                    ca.describe(),
                    ca.info.issuer,
                    roots.len()
                ),
            ),
        }
    }

    if let Some(d) = deployed
        && root_ders.is_some()
    {
        check_deployed(&mut cx, d, &roots, &chain);
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

/// Parses DER that [`parse_certificates`] already accepted into [`Cert`]s.
fn load<'a>(
    role: SecretRole,
    ders: Option<&'a [Vec<u8>]>,
    opts: &ValidationOptions,
    self_signed: &mut HashMap<&'a [u8], bool>,
) -> Vec<Cert<'a>> {
    let Some(ders) = ders else { return Vec::new() };
    ders.iter()
        .enumerate()
        .filter_map(|(index, der)| {
            let (_, x) = X509Certificate::from_der(der).ok()?;
            let is_self_signed = *self_signed
                .entry(der.as_slice())
                .or_insert_with(|| x.issuer().as_raw() == x.subject().as_raw() && x.verify_signature(None).is_ok());
            let info = cert_info(role, index, der, &x, opts, is_self_signed);
            Some(Cert { der, x, info })
        })
        .collect()
}

fn timestamp(t: x509_parser::time::ASN1Time) -> jiff::Timestamp {
    let secs = t.timestamp();
    jiff::Timestamp::from_second(secs).unwrap_or(if secs < 0 { jiff::Timestamp::MIN } else { jiff::Timestamp::MAX })
}

fn cert_info(
    role: SecretRole,
    index: usize,
    der: &[u8],
    x: &X509Certificate<'_>,
    opts: &ValidationOptions,
    self_signed: bool,
) -> CertInfo {
    let not_before = timestamp(x.validity().not_before);
    let not_after = timestamp(x.validity().not_after);
    let serial = {
        let raw = x.raw_serial();
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let s: String = raw[start..].iter().map(|b| format!("{b:02x}")).collect();
        // Go's `%x` of a big.Int, as istiod logs it: no leading zero digit.
        let s = s.trim_start_matches('0');
        if s.is_empty() { "0".to_owned() } else { s.to_owned() }
    };
    CertInfo {
        role,
        index,
        subject: go_name(x.subject()),
        issuer: go_name(x.issuer()),
        serial,
        not_before,
        not_after,
        days_left: (not_after.as_second() - opts.now.as_second()).div_euclid(86_400),
        sha256: Fingerprint::of(der),
        is_ca: x.is_ca(),
        self_signed,
    }
}

/// A distinguished name as Go's `pkix.Name.String()` prints it (and so istiod's log): RFC 2253
/// order, most specific first (`CN=Intermediate,O=Example`), the standard attributes in Go's fixed
/// order, values escaped as Go escapes them. Other attributes follow as `OID=value`.
fn go_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    // Go's ToRDNSequence order; the string lists them reversed.
    const STANDARD: [(u8, &str); 9] = [
        (6, "C"),
        (8, "ST"),
        (7, "L"),
        (9, "STREET"),
        (17, "POSTALCODE"),
        (10, "O"),
        (11, "OU"),
        (3, "CN"),
        (5, "SERIALNUMBER"),
    ];
    let attrs: Vec<_> = name.iter_attributes().collect();
    let standard_id = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| match a.attr_type().as_bytes() {
        [0x55, 0x04, id] if STANDARD.iter().any(|(n, _)| n == id) => Some(*id),
        _ => None,
    };
    let value = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| match a.as_str() {
        Ok(s) => escape_go(s),
        Err(_) => format!("#{}", a.attr_value().as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()),
    };
    let mut rdns: Vec<String> = attrs
        .iter()
        .filter(|a| standard_id(a).is_none())
        .map(|a| format!("{}={}", a.attr_type().to_id_string(), value(a)))
        .collect();
    for (id, label) in STANDARD {
        let values: Vec<String> =
            attrs.iter().filter(|a| standard_id(a) == Some(id)).map(|a| format!("{label}={}", value(a))).collect();
        if !values.is_empty() {
            rdns.push(values.join("+"));
        }
    }
    rdns.reverse();
    rdns.join(",")
}

fn escape_go(s: &str) -> String {
    let n = s.chars().count();
    let mut out = String::with_capacity(s.len());
    for (k, c) in s.chars().enumerate() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k + 1 == n,
            '#' => k == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn check_validity<'a, 'b: 'a>(cx: &mut Ctx, certs: impl Iterator<Item = &'a Cert<'b>>, opts: &ValidationOptions) {
    // The same certificate often appears twice (ca-cert heads cert-chain, the root ends it): report once.
    let mut seen = HashSet::new();
    let now = opts.now.as_second();
    let warn = i64::try_from(opts.expiry_warning.as_secs()).unwrap_or(i64::MAX);
    for c in certs {
        if !seen.insert(c.der) {
            continue;
        }
        let (nb, na) = (c.info.not_before, c.info.not_after);
        if now < nb.as_second() {
            cx.about(
                Severity::Error,
                FindingCode::NotYetValid,
                c,
                format!("{} is not valid before {nb}", c.describe()),
            );
        } else if now > na.as_second() {
            cx.about(
                Severity::Error,
                FindingCode::Expired,
                c,
                format!("{} expired at {na} ({} days ago)", c.describe(), -c.info.days_left - 1),
            );
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

/// basicConstraints CA:TRUE and, if keyUsage is present, keyCertSign.
fn check_ca_capable(cx: &mut Ctx, c: &Cert<'_>, what: &str) {
    if !c.info.is_ca {
        cx.about(
            Severity::Error,
            FindingCode::NotCa,
            c,
            format!("{} is not a CA certificate (basicConstraints CA:TRUE missing); {what}", c.describe()),
        );
    }
    if let Ok(Some(ku)) = c.x.key_usage()
        && !ku.value.key_cert_sign()
    {
        cx.about(
            Severity::Error,
            FindingCode::NoKeyCertSign,
            c,
            format!("{} has keyUsage without keyCertSign; {what}", c.describe()),
        );
    }
}

/// Workload certificates carry serverAuth and clientAuth; an issuer whose EKU lacks them breaks
/// verifiers that nest EKUs (Go's crypto/x509, as istio/istio #27193 found out).
fn check_eku(cx: &mut Ctx, c: &Cert<'_>) {
    if let Ok(Some(eku)) = c.x.extended_key_usage() {
        let e = eku.value;
        if !(e.any || (e.server_auth && e.client_auth)) {
            cx.about(
                Severity::Error,
                FindingCode::EkuRestricts,
                c,
                format!(
                    "{} has extendedKeyUsage without serverAuth and clientAuth; workload certificates it issues would not verify for mTLS",
                    c.describe()
                ),
            );
        }
    }
}

fn check_roots(cx: &mut Ctx, roots: &[Cert<'_>]) {
    let mut seen: Vec<&[u8]> = Vec::new();
    for r in roots {
        if let Some(first) = seen.iter().position(|d| *d == r.der) {
            cx.about(
                Severity::Warning,
                FindingCode::DuplicateRoot,
                r,
                format!("{} duplicates root-cert certificate {}", r.describe(), first + 1),
            );
            continue;
        }
        seen.push(r.der);
        check_ca_capable(cx, r, "a root must be a CA");
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

fn check_ca_cert(cx: &mut Ctx, ca: &Cert<'_>) {
    if ca.x.version() != X509Version::V3 {
        cx.about(
            Severity::Error,
            FindingCode::NotV3,
            ca,
            format!(
                "{} is an X.509 v{} certificate; istiod needs v3 with CA extensions",
                ca.describe(),
                ca.x.version().0 + 1
            ),
        );
    }
    check_ca_capable(cx, ca, "istiod cannot sign workload certificates with it");
    check_eku(cx, ca);
}

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
                "{} (sha256 {}) is not {} (sha256 {}); cert-chain belongs to another intermediate",
                first.describe(),
                first.info.sha256,
                ca.describe(),
                ca.info.sha256
            ),
        );
    }
    for (i, c) in chain.iter().enumerate() {
        // The first certificate is ca-cert, checked as such; a mismatching one is reported above.
        if i > 0 {
            check_ca_capable(cx, c, "every certificate after the first in cert-chain issues the one before it");
            check_eku(cx, c);
        }
    }
    let mut broken = false;
    for pair in chain.windows(2) {
        if !pair[0].signed_by(&pair[1]) {
            broken = true;
            cx.about(
                Severity::Error,
                FindingCode::ChainBroken,
                &pair[0],
                format!("{} is not signed by {}", pair[0].describe(), pair[1].describe()),
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

/// Finds a root that anchors `target` (directly or through `intermediates`), by signature.
/// Returns the root's index and the intermediates used, from `target`'s issuer upwards.
fn find_path(target: &Cert<'_>, intermediates: &[&Cert<'_>], roots: &[Cert<'_>]) -> Option<(usize, Vec<usize>)> {
    let mut search = Search {
        intermediates,
        roots,
        visited: vec![false; intermediates.len()],
        path: Vec::new(),
        budget: SIGNATURE_BUDGET,
    };
    let root = search.from(target)?;
    Some((root, search.path))
}

/// Signature checks one anchoring search may spend. Real paths need a handful; the cap keeps
/// hostile input (many certificates with one name and key, which all verify each other) from
/// making the search explode.
const SIGNATURE_BUDGET: usize = 512;
/// Longest path of intermediates considered; real meshes use one or two.
const MAX_DEPTH: usize = 16;

/// Depth-first search for a path to a root. Each intermediate is expanded at most once:
/// plain graph reachability, which finds a path whenever one exists.
struct Search<'s, 'a> {
    intermediates: &'s [&'s Cert<'a>],
    roots: &'s [Cert<'a>],
    visited: Vec<bool>,
    path: Vec<usize>,
    budget: usize,
}

impl Search<'_, '_> {
    fn verifies(&mut self, child: &Cert<'_>, issuer: &Cert<'_>) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        child.signed_by(issuer)
    }

    fn from(&mut self, target: &Cert<'_>) -> Option<usize> {
        // Name-matching candidates first: the usual case costs one signature check.
        for by_name in [true, false] {
            for i in 0..self.roots.len() {
                let root = &self.roots[i];
                if target.names_issuer(root) == by_name && self.verifies(target, root) {
                    return Some(i);
                }
            }
        }
        if self.path.len() >= MAX_DEPTH {
            return None;
        }
        for by_name in [true, false] {
            for i in 0..self.intermediates.len() {
                let cand = self.intermediates[i];
                if self.visited[i]
                    || target.names_issuer(cand) != by_name
                    || cand.der == target.der
                    || !self.verifies(target, cand)
                {
                    continue;
                }
                self.visited[i] = true;
                self.path.push(i);
                if let Some(root) = self.from(cand) {
                    return Some(root);
                }
                self.path.pop();
            }
        }
        None
    }
}

/// pathLenConstraint: a CA may have at most that many intermediates below it, and ca-cert
/// itself is an intermediate (workload certificates hang below it).
fn check_path_len(cx: &mut Ctx, ca: &Cert<'_>, intermediates: &[&Cert<'_>], path: &[usize], root: &Cert<'_>) {
    // Top-down: root, the chain's intermediates, ca-cert (just ca-cert when it is the root itself).
    let mut ladder: Vec<&Cert<'_>> = Vec::with_capacity(path.len() + 2);
    if root.der != ca.der {
        ladder.push(root);
    }
    ladder.extend(path.iter().rev().map(|&i| intermediates[i]));
    ladder.push(ca);
    let n = ladder.len() - 1;
    for (p, c) in ladder.iter().enumerate() {
        let Ok(Some(bc)) = c.x.basic_constraints() else {
            continue;
        };
        let Some(limit) = bc.value.path_len_constraint else {
            continue;
        };
        let below = n - p;
        if below > limit as usize {
            cx.about(
                Severity::Error,
                FindingCode::PathLenExceeded,
                c,
                format!(
                    "{} has pathLenConstraint {limit} but {below} intermediate(s) below it on the path to ca-cert; workload certificates would not verify",
                    c.describe()
                ),
            );
        }
    }
}

fn check_deployed(cx: &mut Ctx, d: &Deployed<'_>, roots: &[Cert<'_>], chain: &[Cert<'_>]) {
    let opts = ValidationOptions { now: jiff::Timestamp::UNIX_EPOCH, expiry_warning: std::time::Duration::ZERO };
    let parsed = parse_certificates(SecretRole::RootCert, d.root_cert)
        .and_then(|r| parse_certificates(SecretRole::CaCert, d.ca_cert).map(|c| (r, c)));
    let (dep_root_ders, dep_ca_ders) = match parsed {
        Ok(p) => p,
        Err(e) => {
            cx.push(
                Severity::Info,
                FindingCode::DeployedUnreadable,
                None,
                None,
                format!("the deployed cacerts could not be parsed, root-rotation checks skipped: {}", e.full_message()),
            );
            return;
        }
    };
    let mut cache = HashMap::new();
    let dep_roots = load(SecretRole::RootCert, Some(&dep_root_ders), &opts, &mut cache);
    let Some(dep_ca) = load(SecretRole::CaCert, Some(&dep_ca_ders[..1]), &opts, &mut cache).into_iter().next() else {
        return;
    };

    let added = roots.iter().filter(|r| !dep_roots.iter().any(|d| d.der == r.der)).count();
    let removed = dep_roots.iter().filter(|d| !roots.iter().any(|r| r.der == d.der)).count();
    if added > 0 || removed > 0 {
        cx.push(
            Severity::Info,
            FindingCode::RootBundleChanged,
            Some(SecretRole::RootCert),
            None,
            format!("root-cert differs from the deployed bundle: {added} root(s) added, {removed} removed; istiod must restart to load it"),
        );
    }

    // The live intermediate may hang below further intermediates; the new chain is our best knowledge of them.
    let intermediates: Vec<&Cert<'_>> = chain.iter().filter(|c| c.der != dep_ca.der).collect();
    for (i, live) in dep_roots.iter().enumerate() {
        if find_path(&dep_ca, &intermediates, std::slice::from_ref(live)).is_none() {
            continue;
        }
        // A re-issued root with the same name and key still verifies what the old one signed.
        let kept = roots.iter().any(|r| {
            r.x.subject().as_raw() == live.x.subject().as_raw() && r.x.public_key().raw == live.x.public_key().raw
        });
        if !kept {
            cx.push(
                Severity::Warning,
                FindingCode::RootDropsLiveAnchor,
                Some(SecretRole::RootCert),
                None,
                format!(
                    "root-cert drops deployed root {} (\"{}\", sha256 {}), which anchors the intermediate live now (\"{}\"); workloads whose certificates chain to it fail mTLS until they renew. Keep both roots until the new intermediate has rolled out",
                    i + 1,
                    live.info.subject,
                    live.info.sha256,
                    dep_ca.info.subject
                ),
            );
        }
    }
}
