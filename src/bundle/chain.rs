//! istiod's chain check: Go's `ca-cert.Verify(VerifyOptions{Roots, Intermediates})` with default options,
//! rebuilt step for step from crypto/x509's verify.go (Go 1.23), because this check is what decides
//! whether istiod starts. The differential tests (tests/differential.rs) hold it to the real Go.
//!
//! - the leaf (`ca-cert`) and every candidate are checked at "now", for unhandled critical extensions,
//!   name constraints and path length ([`is_valid`]);
//! - a parent is found by the child's raw issuer bytes only (AKID just orders the candidates), then
//!   [`check_signature_from`] checks it may sign and its signature (SHA-1 refused);
//! - every chain found must then allow serverAuth: each certificate with an extendedKeyUsage needs
//!   serverAuth or anyExtendedKeyUsage (Go's default `KeyUsages`).
//!
//! The error is the one Go returns, with Go's text, so messages can say "istiod would refuse this: ...".

use super::FindingCode;
use super::cert::Cert;
use super::names;
use super::signature::{SigError, check_signature_from};

/// Go's `maxChainSignatureChecks`.
const MAX_SIGNATURE_CHECKS: usize = 100;

/// What Go's `Verify` returned, with the certificate it is about.
pub(super) struct GoError<'c, 'a> {
    /// The certificate the problem is about: the one Go's error names, or for "unknown authority" the
    /// candidate issuer that failed (when there was one).
    pub cert: &'c Cert<'a>,
    /// Go's error text.
    pub text: String,
    /// The rule this maps to; decides torn versus invalid.
    pub code: FindingCode,
    /// When Go's own error only says "unknown authority" but a candidate on the way failed for a reason
    /// no re-read can fix (expired, SHA-1, not a CA, ...): that first reason. Go's error keeps the last
    /// branch it explored, which is not always the informative one.
    pub cause: Option<String>,
}

/// A certificate's role in Go's path building.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Leaf,
    Intermediate,
    Root,
}

/// The verified chain, leaf first, root last.
pub(super) type Chain<'c, 'a> = Vec<&'c Cert<'a>>;

/// Go's `leaf.Verify` with `roots` and `intermediates` as the pools and `now` as the current time.
/// Certificates Go's parser refuses must already be left out of the pools.
pub(super) fn verify<'c, 'a>(
    leaf: &'c Cert<'a>,
    roots: &[&'c Cert<'a>],
    intermediates: &[&'c Cert<'a>],
    now: i64,
) -> Result<Chain<'c, 'a>, GoError<'c, 'a>> {
    is_valid(leaf, Kind::Leaf, &[], now).map_err(|(text, code)| GoError { cert: leaf, text, code, cause: None })?;
    let candidates = if roots.iter().any(|r| r.der == leaf.der) {
        vec![vec![leaf]]
    } else {
        let mut b =
            Builder { roots: dedup(roots), intermediates: dedup(intermediates), now, sig_checks: 0, permanent: None };
        match b.build(vec![leaf]) {
            Ok(chains) => chains,
            Err(mut e) => {
                if e.code.is_torn()
                    && let Some((cert, text, code)) = b.permanent
                {
                    e.code = code;
                    e.cert = cert;
                    e.cause = Some(text);
                }
                return Err(e);
            }
        }
    };
    candidates.into_iter().find(|c| server_auth_allowed(c)).ok_or_else(|| GoError {
        cert: leaf,
        text: "x509: certificate specifies an incompatible key usage".into(),
        code: FindingCode::EkuRestricts,
        cause: None,
    })
}

/// A `CertPool` holds each certificate once.
fn dedup<'c, 'a>(certs: &[&'c Cert<'a>]) -> Vec<&'c Cert<'a>> {
    let mut out: Vec<&'c Cert<'a>> = Vec::with_capacity(certs.len());
    for c in certs {
        if !out.iter().any(|o| o.der == c.der) {
            out.push(c);
        }
    }
    out
}

struct Builder<'c, 'a> {
    roots: Vec<&'c Cert<'a>>,
    intermediates: Vec<&'c Cert<'a>>,
    now: i64,
    sig_checks: usize,
    /// The first candidate failure anywhere in the search that is not torn-class.
    permanent: Option<(&'c Cert<'a>, String, FindingCode)>,
}

impl<'c, 'a> Builder<'c, 'a> {
    /// Go's `findPotentialParents`: same raw name, ordered AKID/SKID match, one missing, mismatch.
    fn parents(pool: &[&'c Cert<'a>], child: &Cert<'_>) -> Vec<&'c Cert<'a>> {
        let akid = child.akid();
        let mut ranked: Vec<(u8, &'c Cert<'a>)> = pool
            .iter()
            .filter(|p| child.names_issuer(p))
            .map(|p| {
                let skid = p.skid();
                let rank = if skid == akid || (skid.is_none() && akid.is_none()) {
                    0
                } else if skid.is_none() || akid.is_none() {
                    1
                } else {
                    2
                };
                (rank, *p)
            })
            .collect();
        ranked.sort_by_key(|(rank, _)| *rank);
        ranked.into_iter().map(|(_, p)| p).collect()
    }

    fn note(&mut self, cand: &'c Cert<'a>, text: &str, code: FindingCode) {
        if !code.is_torn() && self.permanent.is_none() {
            self.permanent = Some((cand, text.to_owned(), code));
        }
    }

    /// Go's `buildChains`, including how it picks the error it returns.
    fn build(&mut self, chain: Vec<&'c Cert<'a>>) -> Result<Vec<Chain<'c, 'a>>, GoError<'c, 'a>> {
        let child = *chain.last().expect("chain starts with the leaf");
        let mut chains = Vec::new();
        let mut err: Option<GoError<'c, 'a>> = None;
        // (Go's text, rule, candidate Go names, certificate the problem is about).
        let mut hint: Option<(String, FindingCode, &'c Cert<'a>, &'c Cert<'a>)> = None;
        let candidates: Vec<(Kind, &'c Cert<'a>)> = Self::parents(&self.roots, child)
            .into_iter()
            .map(|c| (Kind::Root, c))
            .chain(Self::parents(&self.intermediates, child).into_iter().map(|c| (Kind::Intermediate, c)))
            .collect();
        for (kind, cand) in candidates {
            if already_in_chain(cand, &chain) {
                continue;
            }
            self.sig_checks += 1;
            if self.sig_checks > MAX_SIGNATURE_CHECKS {
                err = Some(GoError {
                    cert: child,
                    text: "x509: signature check attempts limit reached while verifying certificate chain".into(),
                    code: FindingCode::NotAnchored,
                    cause: None,
                });
                continue;
            }
            if let Err(e) = check_signature_from(child, cand) {
                let code = match e {
                    SigError::ConstraintViolation { no_key_cert_sign: true } => FindingCode::NoKeyCertSign,
                    SigError::ConstraintViolation { .. } => FindingCode::NotCa,
                    SigError::Insecure(_) => FindingCode::InsecureSignature,
                    SigError::Unsupported => FindingCode::UnsupportedAlgorithm,
                    // Same name, other key: what a half-uploaded re-keyed root looks like.
                    SigError::Mismatch(_) => FindingCode::NotAnchored,
                };
                // A refused signature algorithm is the child's; a parent that may not sign is the parent's.
                let about = if matches!(e, SigError::Insecure(_) | SigError::Unsupported) { child } else { cand };
                self.note(about, &e.to_string(), code);
                hint.get_or_insert((e.to_string(), code, cand, about));
                continue;
            }
            if let Err((text, code)) = is_valid(cand, kind, &chain, self.now) {
                self.note(cand, &text, code);
                hint.get_or_insert((text.clone(), code, cand, cand));
                // Go assigns isValid's error to buildChains' own result.
                err = Some(GoError { cert: cand, text, code, cause: None });
                continue;
            }
            let mut next = chain.clone();
            next.push(cand);
            match kind {
                Kind::Root => chains.push(next),
                _ => match self.build(next) {
                    Ok(found) => {
                        chains.extend(found);
                        err = None;
                    }
                    Err(e) => err = Some(e),
                },
            }
        }
        if !chains.is_empty() {
            return Ok(chains);
        }
        Err(err.unwrap_or_else(|| match hint {
            Some((text, code, cand, about)) => GoError {
                cert: about,
                text: format!(
                    "x509: certificate signed by unknown authority (possibly because of {text:?} while trying to verify candidate authority certificate {:?})",
                    cand.go_hint_name()
                ),
                code,
                cause: None,
            },
            None => GoError {
                cert: child,
                text: "x509: certificate signed by unknown authority".into(),
                code: FindingCode::NotAnchored,
                cause: None,
            },
        }))
    }
}

/// Go's `alreadyInChain`: same subject, same public key and same subjectAltName.
fn already_in_chain(cand: &Cert<'_>, chain: &[&Cert<'_>]) -> bool {
    chain.iter().any(|c| {
        c.x.subject().as_raw() == cand.x.subject().as_raw()
            && c.x.public_key().raw == cand.x.public_key().raw
            && c.san_raw() == cand.san_raw()
    })
}

/// Go's `isValid` for `c` about to be appended to `chain`; the error is Go's text and its rule.
fn is_valid(c: &Cert<'_>, kind: Kind, chain: &[&Cert<'_>], now: i64) -> Result<(), (String, FindingCode)> {
    if c.unhandled_critical_extension().is_some() {
        return Err(("x509: unhandled critical extension".into(), FindingCode::UnhandledCriticalExtension));
    }
    let (nb, na) = (c.info.not_before, c.info.not_after);
    let fmt = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let now_ts = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    if now < nb.as_second() {
        return Err((
            format!(
                "x509: certificate has expired or is not yet valid: current time {} is before {}",
                fmt(now_ts),
                fmt(nb)
            ),
            FindingCode::NotYetValid,
        ));
    }
    if now > na.as_second() {
        return Err((
            format!(
                "x509: certificate has expired or is not yet valid: current time {} is after {}",
                fmt(now_ts),
                fmt(na)
            ),
            FindingCode::Expired,
        ));
    }
    if kind != Kind::Leaf {
        let below: Vec<&Cert<'_>> = chain.iter().copied().filter(|b| b.san_raw().is_some()).collect();
        if let Err(detail) = names::check(c, &below) {
            return Err((
                format!("x509: a root or intermediate certificate is not authorized to sign for this name: {detail}"),
                FindingCode::NameConstraints,
            ));
        }
    }
    let bc = c.basic_constraints();
    if kind == Kind::Intermediate && !matches!(bc, Some((true, _))) {
        return Err(("x509: certificate is not authorized to sign other certificates".into(), FindingCode::NotCa));
    }
    if let Some((_, Some(max))) = bc
        && chain.len().saturating_sub(1) > max as usize
        && !chain.is_empty()
    {
        return Err(("x509: too many intermediates for path length constraint".into(), FindingCode::PathLenExceeded));
    }
    Ok(())
}

/// Go's `checkChainForKeyUsage` with the default `[ExtKeyUsageServerAuth]`.
fn server_auth_allowed(chain: &[&Cert<'_>]) -> bool {
    chain.iter().all(|c| c.eku().is_none_or(|e| e.any || e.server_auth))
}
