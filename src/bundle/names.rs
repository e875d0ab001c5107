//! Name constraints as Go's crypto/x509 applies them (`isValid` in verify.go): a CA's permitted and
//! excluded DNS, email, URI and IP subtrees against every subjectAltName of each certificate below it on
//! the path. Other name types are not checked by Go; a critical nameConstraints extension holding them is
//! an unhandled critical extension instead (see [`super::cert`]).

use x509_parser::extensions::GeneralName;

use super::cert::Cert;

/// A CA's constraints, by type.
#[derive(Default)]
pub(super) struct Constraints {
    permitted: Subtrees,
    excluded: Subtrees,
    /// A subtree of a type Go does not support (directoryName, otherName, ...).
    pub has_unsupported: bool,
}

#[derive(Default)]
struct Subtrees {
    dns: Vec<String>,
    email: Vec<String>,
    uri: Vec<String>,
    /// (address, mask), both 4 or 16 bytes.
    ip: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The certificate's name constraints, if it has the extension.
pub(super) fn constraints(c: &Cert<'_>) -> Option<Constraints> {
    let nc = c.x.name_constraints().ok()??.value;
    let mut out = Constraints::default();
    for (trees, into) in [(&nc.permitted_subtrees, &mut out.permitted), (&nc.excluded_subtrees, &mut out.excluded)] {
        for t in trees.iter().flatten() {
            match &t.base {
                GeneralName::DNSName(s) => into.dns.push((*s).to_owned()),
                GeneralName::RFC822Name(s) => into.email.push((*s).to_owned()),
                GeneralName::URI(s) => into.uri.push((*s).to_owned()),
                GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
                    let (ip, mask) = b.split_at(b.len() / 2);
                    into.ip.push((ip.to_vec(), mask.to_vec()));
                }
                _ => out.has_unsupported = true,
            }
        }
    }
    Some(out)
}

/// Checks every SAN of `below` against `ca`'s constraints; the error is Go's detail text.
pub(super) fn check(ca: &Cert<'_>, below: &[&Cert<'_>]) -> Result<(), String> {
    let Some(nc) = constraints(ca) else { return Ok(()) };
    for c in below {
        let Ok(Some(san)) = c.x.subject_alternative_name() else { continue };
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    if reverse_labels(d).is_none() {
                        return Err(format!("x509: cannot parse dnsName {d:?}"));
                    }
                    apply("DNS name", d, &nc.permitted.dns, &nc.excluded.dns, |c| match_domain(d, c))?;
                }
                GeneralName::RFC822Name(m) => {
                    let Some((local, domain)) = m.rsplit_once('@') else {
                        return Err(format!("x509: cannot parse rfc822Name {m:?}"));
                    };
                    apply("email address", m, &nc.permitted.email, &nc.excluded.email, |c| {
                        if let Some((cl, cd)) = c.rsplit_once('@') {
                            Ok(cl == local && cd.eq_ignore_ascii_case(domain))
                        } else {
                            match_domain(domain, c)
                        }
                    })?;
                }
                GeneralName::URI(u) => {
                    apply("URI", u, &nc.permitted.uri, &nc.excluded.uri, |c| match_uri(u, c))?;
                }
                GeneralName::IPAddress(ip) => {
                    let matches = |(net, mask): &(Vec<u8>, Vec<u8>)| {
                        net.len() == ip.len() && ip.iter().zip(net).zip(mask).all(|((a, n), m)| a & m == n & m)
                    };
                    if nc.excluded.ip.iter().any(matches) {
                        return Err("IP address is excluded by a constraint".into());
                    }
                    if !nc.permitted.ip.is_empty() && !nc.permitted.ip.iter().any(matches) {
                        return Err("IP address is not permitted by any constraint".into());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Go's `checkNameConstraints`: excluded first, then (if any) permitted.
fn apply(
    kind: &str,
    name: &str,
    permitted: &[String],
    excluded: &[String],
    matches: impl Fn(&str) -> Result<bool, String>,
) -> Result<(), String> {
    for c in excluded {
        if matches(c)? {
            return Err(format!("{kind} {name:?} is excluded by constraint {c:?}"));
        }
    }
    if !permitted.is_empty() {
        let mut ok = false;
        for c in permitted {
            if matches(c)? {
                ok = true;
                break;
            }
        }
        if !ok {
            return Err(format!("{kind} {name:?} is not permitted by any constraint"));
        }
    }
    Ok(())
}

/// Go's `domainToReverseLabels`: labels last-first; `None` for an empty label or non-ASCII.
fn reverse_labels(domain: &str) -> Option<Vec<&str>> {
    if domain.is_empty() || !domain.is_ascii() {
        return if domain.is_empty() { Some(Vec::new()) } else { None };
    }
    let labels: Vec<&str> = domain.split('.').rev().collect();
    labels.iter().all(|l| !l.is_empty()).then_some(labels)
}

/// Go's `matchDomainConstraint`: a leading dot requires at least one more label.
fn match_domain(domain: &str, constraint: &str) -> Result<bool, String> {
    if constraint.is_empty() {
        return Ok(true);
    }
    let labels =
        reverse_labels(domain).ok_or_else(|| format!("x509: internal error: cannot parse domain {domain:?}"))?;
    let (must_have_sub, constraint) = match constraint.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, constraint),
    };
    let cl = reverse_labels(constraint)
        .ok_or_else(|| format!("x509: internal error: cannot parse domain {constraint:?}"))?;
    if labels.len() < cl.len() || (must_have_sub && labels.len() == cl.len()) {
        return Ok(false);
    }
    Ok(cl.iter().zip(&labels).all(|(c, d)| c.eq_ignore_ascii_case(d)))
}

/// Go's `matchURIConstraint`: the URI's host against a domain constraint; IP hosts cannot match.
fn match_uri(uri: &str, constraint: &str) -> Result<bool, String> {
    let host = uri
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .map(|auth| auth.rsplit_once('@').map_or(auth, |(_, h)| h))
        .unwrap_or("");
    if host.is_empty() {
        return Err(format!("URI with empty host ({uri:?}) cannot be matched against constraints"));
    }
    let host =
        if host.contains(':') && !host.ends_with(']') { host.rsplit_once(':').map_or(host, |(h, _)| h) } else { host };
    if host.parse::<std::net::IpAddr>().is_ok() || (host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("URI with IP ({uri:?}) cannot be matched against constraints"));
    }
    match_domain(host, constraint)
}
