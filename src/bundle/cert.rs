//! One parsed certificate ([`Cert`]) and the facts the rules read from it, in the terms of Go's
//! `crypto/x509.Certificate` (istiod's parser): basic constraints, key usage, extended key usage, the
//! critical extensions Go does not handle, and what Go's parser refuses outright.

use std::collections::HashMap;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::{CertInfo, Fingerprint, SecretRole, ValidationOptions};

/// One parsed certificate with what the report says about it.
pub(super) struct Cert<'a> {
    pub der: &'a [u8],
    pub x: X509Certificate<'a>,
    pub info: CertInfo,
}

/// A certificate's extendedKeyUsage, as Go reads it (present and non-empty).
#[derive(Clone, Copy, Debug)]
pub(super) struct Eku {
    pub any: bool,
    pub server_auth: bool,
    pub client_auth: bool,
}

impl Cert<'_> {
    /// `root-cert PEM block 2 ("CN=Root")`: names the secret and the block, as every message must.
    pub fn describe(&self) -> String {
        format!("{} PEM block {} (\"{}\")", self.info.role, self.info.index + 1, self.info.subject)
    }

    /// The signature verifies with `issuer`'s key under an algorithm Go accepts (no CA checks).
    pub fn signed_by(&self, issuer: &Cert<'_>) -> bool {
        super::signature::verify_signature(self, &issuer.x).is_ok()
    }

    /// The issuer name equals `issuer`'s subject byte for byte (how Go finds a parent).
    pub fn names_issuer(&self, issuer: &Cert<'_>) -> bool {
        self.x.issuer().as_raw() == issuer.x.subject().as_raw()
    }

    /// basicConstraints, if present: (cA, pathLenConstraint).
    pub fn basic_constraints(&self) -> Option<(bool, Option<u32>)> {
        match self.x.basic_constraints() {
            Ok(Some(bc)) => Some((bc.value.ca, bc.value.path_len_constraint)),
            _ => None,
        }
    }

    /// keyUsage is present (with at least one bit, as Go counts it) and lacks keyCertSign.
    pub fn key_usage_forbids_cert_sign(&self) -> bool {
        matches!(self.x.key_usage(), Ok(Some(ku)) if ku.value.flags != 0 && !ku.value.key_cert_sign())
    }

    /// extendedKeyUsage, if present with at least one purpose.
    pub fn eku(&self) -> Option<Eku> {
        let eku = self.x.extended_key_usage().ok()??.value;
        let nonempty = eku.any
            || eku.server_auth
            || eku.client_auth
            || eku.code_signing
            || eku.email_protection
            || eku.time_stamping
            || eku.ocsp_signing
            || !eku.other.is_empty();
        nonempty.then_some(Eku { any: eku.any, server_auth: eku.server_auth, client_auth: eku.client_auth })
    }

    /// The subjectKeyIdentifier, if any.
    pub fn skid(&self) -> Option<&[u8]> {
        self.x.iter_extensions().find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
    }

    /// The authorityKeyIdentifier's keyIdentifier, if any.
    pub fn akid(&self) -> Option<&[u8]> {
        self.x.iter_extensions().find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
    }

    /// The raw value of the subjectAltName extension, if present.
    pub fn san_raw(&self) -> Option<&[u8]> {
        self.x.iter_extensions().find(|e| e.oid.to_id_string() == "2.5.29.17").map(|e| e.value)
    }

    /// The first critical extension Go's parser leaves unhandled (`UnhandledCriticalExtensions`), as an OID.
    pub fn unhandled_critical_extension(&self) -> Option<String> {
        self.x.iter_extensions().filter(|e| e.critical).find_map(|e| {
            let oid = e.oid.to_id_string();
            let handled = match oid.as_str() {
                // keyUsage, basicConstraints, CRL distribution points, certificatePolicies, AKID, EKU.
                "2.5.29.15" | "2.5.29.19" | "2.5.29.31" | "2.5.29.32" | "2.5.29.35" | "2.5.29.37" => true,
                // subjectAltName: handled if it holds a DNS, email, IP or URI name.
                "2.5.29.17" => match e.parsed_extension() {
                    ParsedExtension::SubjectAlternativeName(san) => san.general_names.iter().any(|n| {
                        use x509_parser::extensions::GeneralName as G;
                        matches!(n, G::DNSName(_) | G::RFC822Name(_) | G::URI(_) | G::IPAddress(_))
                    }),
                    _ => false,
                },
                // nameConstraints: handled unless a subtree has a type Go does not support.
                "2.5.29.30" => super::names::constraints(self).is_some_and(|c| !c.has_unsupported),
                _ => false,
            };
            (!handled).then_some(oid)
        })
    }

    /// Why Go's `x509.ParseCertificate` refuses this certificate, where x509-parser accepts it.
    pub fn go_parse_error(&self) -> Option<&'static str> {
        if self.x.raw_serial().first().is_some_and(|b| b & 0x80 != 0) {
            return Some("x509: negative serial number");
        }
        for e in self.x.iter_extensions().filter(|e| e.critical) {
            match e.oid.to_id_string().as_str() {
                "2.5.29.14" => return Some("x509: subject key identifier incorrectly marked critical"),
                "1.3.6.1.5.5.7.1.1" => return Some("x509: authority info access incorrectly marked critical"),
                _ => {}
            }
        }
        None
    }

    /// How Go names a candidate issuer in "unknown authority" errors: CN, else the first O, else `serial:N`.
    pub fn go_hint_name(&self) -> String {
        let subject = self.x.subject();
        let cn = subject.iter_common_name().next().and_then(|a| a.as_str().ok());
        let o = subject.iter_organization().next().and_then(|a| a.as_str().ok());
        cn.filter(|s| !s.is_empty())
            .or(o)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("serial:{}", self.x.tbs_certificate.serial))
    }
}

/// Parses DER that [`super::parse_certificates`] already accepted into [`Cert`]s.
pub(super) fn load<'a>(
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
            let info = cert_info(role, index, der, &x, opts, false);
            let mut cert = Cert { der, x, info };
            cert.info.self_signed = *self_signed.entry(der.as_slice()).or_insert_with(|| {
                cert.names_issuer(&cert) && super::signature::verify_signature(&cert, &cert.x).is_ok()
            });
            Some(cert)
        })
        .collect()
}

pub(super) fn timestamp(t: x509_parser::time::ASN1Time) -> jiff::Timestamp {
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
