//! The pure certificate core: parse, validate and fingerprint Istio plug-in CA material.
//!
//! Everything cacerts-sync writes to the `cacerts` Secret passes through [`validate`] first.
//! The module does no I/O and reads the clock only through [`ValidationOptions::now`], so every
//! rule is testable at a fixed "now".
//!
//! ```text
//! RawMaterial ─pem::scan─▶ blocks ─cert/key parse─▶ Parsed ─rules─▶ Report { verdict, findings, fingerprints }
//! ```
//!
//! # The four secrets
//! | role | Key Vault name | `cacerts` key | content |
//! | --- | --- | --- | --- |
//! | [`SecretRole::RootCert`] | `root-cert` | `root-cert.pem` | one or more CA certificates (the trust bundle) |
//! | [`SecretRole::CaCert`] | `ca-cert` | `ca-cert.pem` | the intermediate istiod signs with (istiod reads the first block) |
//! | [`SecretRole::CaKey`] | `ca-key` | `ca-key.pem` | its private key (first block): PKCS#1, PKCS#8 or SEC1; RSA 2048–8192, ECDSA P-256/P-384/P-521 |
//! | [`SecretRole::CertChain`] | `cert-chain` | `cert-chain.pem` | `ca-cert`, further intermediates, optionally the root |
//!
//! # Parsing
//! Values are PEM text. Line endings may be LF or CRLF, and any text may stand before, between
//! and after blocks. The scanner is deliberately *stricter* than Go's `encoding/pem`, which istiod
//! uses: Go silently skips a block it cannot decode (and a `BEGIN` line that does not start a
//! line), so a value Go half-reads is refused here rather than deployed. Each value is limited
//! to [`MAX_SECRET_BYTES`] and must be UTF-8; DER is refused with a hint to convert it.
//! Certificate secrets accept only `CERTIFICATE` blocks. istiod reads the first block of `ca-cert` and
//! of `ca-key` (later blocks are reported as ignored); the key's label decides its parser, as in istiod
//! (encrypted keys and a leading `EC PARAMETERS` block are refused). Every [`ParseError`] names the
//! secret and the PEM block.
//!
//! Indices: struct fields ([`Finding::block`], [`CertInfo::index`], [`Report::anchor`]) are
//! 0-based positions in the secret's PEM blocks; human-readable messages count blocks from 1
//! (`PEM block 1` is the first block).
//!
//! # Rules and verdict
//! Every problem becomes a [`Finding`]; [`validate`] never fails. An error finding makes the
//! material unusable; its [`FindingCode`] decides whether that looks like a half-finished
//! four-object update ([`Verdict::Torn`]: the caller may re-read and wait) or is simply broken
//! ([`Verdict::Invalid`]). Warnings and info never block.
//!
//! The first layer is **istiod's own start-up check**, rebuilt from Go's crypto/x509 ([`chain`],
//! [`signature`], [`names`], [`key`]) and proven equal to it by `tests/differential.rs`; its errors carry
//! Go's text ("istiod would refuse this: x509: ..."). The second layer is **stricter by design**: material
//! istiod starts with but that breaks workloads or rotation. `docs/validation.md` has the full table.
//!
//! | code | severity | class | rule |
//! | --- | --- | --- | --- |
//! | parse codes (`empty`, `oversized`, `not-utf8`, `not-pem`, `malformed-pem`, `wrong-block-type`, `extra-block`, `invalid-certificate`, `invalid-key`, `encrypted-key`, `unsupported-key`) | error | invalid | see *Parsing*; `ca-key` by its label, as istiod parses it |
//! | `key-mismatch` | error | **torn** | `ca-key`'s public key is not `ca-cert`'s (`tls.X509KeyPair`) |
//! | `not-anchored` | error | **torn** | istiod: no issuer by name, or a same-name issuer with another key (`unknown authority`) |
//! | `chain-mismatch` | error | **torn** | stricter: `cert-chain`'s first certificate is not `ca-cert` |
//! | `chain-not-anchored` | error | **torn** | stricter: `cert-chain` ends neither at a root nor at a certificate signed by one |
//! | `unhandled-critical-extension`, `insecure-signature`, `unsupported-algorithm`, `name-constraints`, `go-parse-error` | error | invalid | istiod: a critical extension Go does not handle, SHA-1/MD5, an algorithm Go lacks, a name outside a CA's constraints, a certificate Go's parser refuses |
//! | `expired`, `not-yet-valid` | error | invalid | istiod: a certificate on the path outside its validity at `now` (a warning for certificates off the path) |
//! | `not-ca`, `no-key-cert-sign` | error | invalid | istiod: an issuer on the path may not sign; stricter: `ca-cert` itself (warnings for unused roots) |
//! | `path-len-exceeded` | error | invalid | istiod: pathLenConstraint; stricter: counting the workload certificate below `ca-cert` |
//! | `eku-restricts` | error | invalid | istiod: an EKU without serverAuth on the path; stricter: without clientAuth (istio/istio #27193) |
//! | `not-v3` | error | invalid | stricter: `ca-cert` is not X.509 v3 |
//! | `chain-broken` | error | invalid | stricter: a `cert-chain` certificate is not signed by the next one |
//! | `expiring-soon` | warning | — | any certificate expires within [`ValidationOptions::expiry_warning`] |
//! | `root-not-self-signed` | warning | — | a `root-cert` entry is not self-signed (an intermediate in the trust bundle) |
//! | `duplicate-root` | warning | — | the same certificate appears twice in `root-cert` |
//! | `root-drops-live-anchor` | warning | — | the new bundle drops a root that anchors the intermediate deployed now |
//! | `multiple-roots` | info | — | the bundle trusts several roots (needs `ISTIO_MULTIROOT_MESH`) |
//! | `root-bundle-changed` | info | — | the roots differ from the deployed ones (istiod will be restarted) |
//! | `deployed-unreadable` | info | — | the deployed material could not be parsed; rotation checks skipped |
//! | `ignored-blocks` | info | — | `ca-cert` or `ca-key` holds blocks after the first, which istiod ignores |
//! | `istiod-chain` | info | — | the chain istiod's check builds, `ca-cert` up to the root |
//!
//! A `not-anchored` refusal becomes invalid (with the rule of the failing candidate) when any issuer
//! candidate on the way failed for a permanent reason.
//!
//! Why those four are torn: Key Vault has no transaction, so an operator's four
//! `az keyvault secret set` calls are observed one by one. A new `ca-cert` with the old `ca-key`,
//! a `cert-chain` of the next intermediate, or a new intermediate whose root has not been
//! uploaded yet are exactly the states a reader sees mid-update, and each resolves by itself
//! within seconds. Everything else (garbage, a non-CA, an expired certificate, a chain whose
//! links do not verify) stays broken however long one waits. A torn state that never resolves
//! is still refused: the caller fails once its consistency timeout runs out.
//!
//! # Fingerprints
//! * **Root fingerprint** ([`root_fingerprint`]): lowercase hex SHA-256 over the concatenated DER
//!   of the `root-cert` certificates, in file order.
//! * **Material fingerprint** ([`Report::material_fingerprint`]): lowercase hex SHA-256 over the
//!   text manifest made of one line per item,
//!   `"<role> <lowercase hex SHA-256 of the item's DER>\n"`, for every certificate of `root-cert`,
//!   then `ca-cert`, then every certificate of `cert-chain` (file order), then one line
//!   `ca-key <SHA-256 of the DER SubjectPublicKeyInfo derived from the private key>`.
//!
//! Both ignore formatting (line endings, whitespace, text outside blocks, PKCS#1 versus PKCS#8
//! encoding of the same key) and change on any change of a certificate or key. The private key
//! itself is never hashed or exposed. `docs/fingerprints.md` shows how to reproduce both with
//! `openssl` and `sha256sum`.

mod cert;
mod chain;
mod deployed;
mod der;
mod findings;
mod fingerprint;
mod key;
mod names;
mod pem;
mod signature;
mod validate;

#[cfg(test)]
pub(crate) mod testpki;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_istiod;
#[cfg(test)]
mod tests_outputs;

use std::fmt;

pub use findings::{CertInfo, Finding, FindingCode, Report, Severity, Verdict};
pub use fingerprint::Fingerprint;
pub use key::{KeyAlgorithm, PublicKeyInfo, parse_private_key};

/// Upper bound for one secret's value (1 MiB); a larger value is refused unread.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// One of the four objects that make up the plug-in CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretRole {
    /// `root-cert`: the trust bundle (one or more roots).
    RootCert,
    /// `ca-cert`: the intermediate istiod signs workload certificates with.
    CaCert,
    /// `ca-key`: the intermediate's private key.
    CaKey,
    /// `cert-chain`: the chain from `ca-cert` up to the root.
    CertChain,
}

impl SecretRole {
    /// All roles, in the order reports list them.
    pub const ALL: [SecretRole; 4] =
        [SecretRole::RootCert, SecretRole::CaCert, SecretRole::CaKey, SecretRole::CertChain];

    /// The default Key Vault secret name, e.g. `root-cert`.
    pub fn name(self) -> &'static str {
        match self {
            SecretRole::RootCert => "root-cert",
            SecretRole::CaCert => "ca-cert",
            SecretRole::CaKey => "ca-key",
            SecretRole::CertChain => "cert-chain",
        }
    }

    /// The key in the `cacerts` Secret and the file name on disk, e.g. `root-cert.pem`.
    pub fn file_name(self) -> &'static str {
        match self {
            SecretRole::RootCert => "root-cert.pem",
            SecretRole::CaCert => "ca-cert.pem",
            SecretRole::CaKey => "ca-key.pem",
            SecretRole::CertChain => "cert-chain.pem",
        }
    }
}

impl fmt::Display for SecretRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The four raw values as fetched, before any parsing.
///
/// `Debug` redacts `ca_key`: it prints the length only.
#[derive(Clone, PartialEq, Eq)]
pub struct RawMaterial {
    /// `root-cert` PEM.
    pub root_cert: Vec<u8>,
    /// `ca-cert` PEM.
    pub ca_cert: Vec<u8>,
    /// `ca-key` PEM (secret).
    pub ca_key: Vec<u8>,
    /// `cert-chain` PEM.
    pub cert_chain: Vec<u8>,
}

impl RawMaterial {
    /// The value for `role`.
    pub fn get(&self, role: SecretRole) -> &[u8] {
        match role {
            SecretRole::RootCert => &self.root_cert,
            SecretRole::CaCert => &self.ca_cert,
            SecretRole::CaKey => &self.ca_key,
            SecretRole::CertChain => &self.cert_chain,
        }
    }

    /// Builds the material by asking `f` for each role, in [`SecretRole::ALL`] order.
    pub fn from_fn(mut f: impl FnMut(SecretRole) -> Vec<u8>) -> Self {
        RawMaterial {
            root_cert: f(SecretRole::RootCert),
            ca_cert: f(SecretRole::CaCert),
            ca_key: f(SecretRole::CaKey),
            cert_chain: f(SecretRole::CertChain),
        }
    }
}

// Unit tests build variants of a material with struct-update syntax (`RawMaterial { ca_key, ..base }`), which a
// type with `Drop` does not allow; wiping memory is not observable behaviour, so only test builds of this crate go
// without it (the binary, the integration tests and every other crate get it).
#[cfg(not(test))]
impl Drop for RawMaterial {
    /// Wipes the private key when the material goes away (every clone wipes its own copy). Only the current
    /// buffer is wiped: code that grows `ca_key` in place may leave an older allocation behind.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.ca_key);
    }
}

impl fmt::Debug for RawMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Certificates are public, but printing them whole makes logs unreadable; lengths suffice.
        f.debug_struct("RawMaterial")
            .field("root_cert", &format_args!("<{} bytes>", self.root_cert.len()))
            .field("ca_cert", &format_args!("<{} bytes>", self.ca_cert.len()))
            .field("ca_key", &format_args!("<redacted, {} bytes>", self.ca_key.len()))
            .field("cert_chain", &format_args!("<{} bytes>", self.cert_chain.len()))
            .finish()
    }
}

/// Inputs to [`validate`] besides the material.
#[derive(Clone, Debug)]
pub struct ValidationOptions {
    /// The instant validity windows are checked against.
    pub now: jiff::Timestamp,
    /// Certificates expiring sooner than this get an `expiring-soon` warning.
    pub expiry_warning: std::time::Duration,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            now: jiff::Timestamp::now(),
            expiry_warning: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What is deployed in the cluster now (from the existing `cacerts` Secret), for root-rotation awareness.
#[derive(Clone, Copy, Debug)]
pub struct Deployed<'a> {
    /// The deployed `root-cert.pem`.
    pub root_cert: &'a [u8],
    /// The deployed `ca-cert.pem`.
    pub ca_cert: &'a [u8],
}

/// Validates `raw` at `opts.now`; `deployed` enables the root-rotation checks.
///
/// Never fails: every problem becomes a [`Finding`]. Pure: no I/O, and the clock is `opts.now`.
pub fn validate(raw: &RawMaterial, opts: &ValidationOptions, deployed: Option<&Deployed<'_>>) -> Report {
    validate::run(raw, opts, deployed)
}

/// Root fingerprint: lowercase hex SHA-256 over the concatenated DER of the `root-cert`
/// certificates, in file order.
pub fn root_fingerprint(root_cert_pem: &[u8]) -> Result<Fingerprint, ParseError> {
    let certs = parse_certificates(SecretRole::RootCert, root_cert_pem)?;
    Ok(fingerprint::root(certs.iter().map(Vec::as_slice)))
}

/// Parses a certificate secret into the DER of each certificate, in file order.
///
/// Every PEM block must be a `CERTIFICATE` holding exactly one well-formed X.509 certificate.
pub fn parse_certificates(role: SecretRole, pem: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    let blocks = pem::scan(role, pem)?;
    let mut out = Vec::with_capacity(blocks.len());
    for (index, mut block) in blocks.into_iter().enumerate() {
        if block.label != "CERTIFICATE" {
            return Err(ParseError::WrongBlockType {
                secret: role,
                block: index,
                found: std::mem::take(&mut block.label),
                expected: "CERTIFICATE",
            });
        }
        check_certificate_der(role, index, &block.der)?;
        out.push(std::mem::take(&mut block.der));
    }
    Ok(out)
}

fn check_certificate_der(role: SecretRole, index: usize, der: &[u8]) -> Result<(), ParseError> {
    use x509_parser::prelude::FromDer;
    match x509_parser::certificate::X509Certificate::from_der(der) {
        Ok(([], _)) => Ok(()),
        Ok((rest, _)) => Err(ParseError::TrailingData { secret: role, block: index, bytes: rest.len() }),
        Err(e) => Err(ParseError::InvalidCertificate { secret: role, block: index, source: nom_to_x509(e) }),
    }
}

pub(crate) fn nom_to_x509(e: x509_parser::nom::Err<x509_parser::error::X509Error>) -> x509_parser::error::X509Error {
    match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
        x509_parser::nom::Err::Incomplete(_) => x509_parser::error::X509Error::InvalidCertificate,
    }
}

/// Why a secret could not be parsed. Messages name the secret and count PEM blocks from 1;
/// none ever contains bytes of the value.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The value is empty or whitespace only.
    #[error("{secret}: value is empty")]
    Empty { secret: SecretRole },
    /// The value exceeds [`MAX_SECRET_BYTES`].
    #[error("{secret}: value is {size} bytes, over the {limit}-byte limit")]
    Oversized { secret: SecretRole, size: usize, limit: usize },
    /// The value is not UTF-8 text (DER, or another binary encoding).
    #[error(
        "{secret}: value is not UTF-8 text (invalid byte at offset {offset}); expected PEM, DER must be converted (openssl x509 -inform DER / openssl pkey -inform DER)"
    )]
    NotUtf8 { secret: SecretRole, offset: usize },
    /// The value is text without any PEM block.
    #[error("{secret}: no PEM block found (expected \"-----BEGIN {expected}-----\")")]
    NotPem { secret: SecretRole, expected: &'static str },
    /// A PEM block is malformed.
    #[error("{secret}: PEM block {} is malformed: {reason}", block + 1)]
    MalformedPem { secret: SecretRole, block: usize, reason: String },
    /// A PEM block has the wrong type for this secret.
    #[error("{secret}: PEM block {} is a {found}, expected {expected}", block + 1)]
    WrongBlockType { secret: SecretRole, block: usize, found: String, expected: &'static str },
    /// A secret that holds exactly one object holds more blocks.
    #[error("{secret}: PEM block {} is unexpected: {secret} must hold exactly one {expected} (found {count} blocks){hint}", block + 1)]
    ExtraBlock { secret: SecretRole, block: usize, count: usize, expected: &'static str, hint: &'static str },
    /// A `CERTIFICATE` block does not hold a valid X.509 certificate.
    #[error("{secret}: PEM block {} is not a valid X.509 certificate", block + 1)]
    InvalidCertificate {
        secret: SecretRole,
        block: usize,
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// A `CERTIFICATE` block holds bytes after the certificate.
    #[error("{secret}: PEM block {} has {bytes} bytes after the certificate", block + 1)]
    TrailingData { secret: SecretRole, block: usize, bytes: usize },
    /// The private key is encrypted; istiod cannot read it.
    #[error("{secret}: PEM block {} is an encrypted private key; istiod needs it unencrypted", block + 1)]
    EncryptedKey { secret: SecretRole, block: usize },
    /// The private key does not parse.
    #[error("{secret}: PEM block {} is not a valid {format} private key", block + 1)]
    InvalidKey {
        secret: SecretRole,
        block: usize,
        format: &'static str,
        #[source]
        source: Option<aws_lc_rs::error::KeyRejected>,
    },
    /// The private key uses an algorithm or size cacerts-sync does not accept.
    #[error("{secret}: PEM block {} is a {algorithm} key; supported are RSA 2048-8192 and ECDSA P-256/P-384/P-521", block + 1)]
    UnsupportedKey { secret: SecretRole, block: usize, algorithm: String },
}

impl ParseError {
    /// The secret the error is about.
    pub fn secret(&self) -> SecretRole {
        match self {
            ParseError::Empty { secret }
            | ParseError::Oversized { secret, .. }
            | ParseError::NotUtf8 { secret, .. }
            | ParseError::NotPem { secret, .. }
            | ParseError::MalformedPem { secret, .. }
            | ParseError::WrongBlockType { secret, .. }
            | ParseError::ExtraBlock { secret, .. }
            | ParseError::InvalidCertificate { secret, .. }
            | ParseError::TrailingData { secret, .. }
            | ParseError::EncryptedKey { secret, .. }
            | ParseError::InvalidKey { secret, .. }
            | ParseError::UnsupportedKey { secret, .. } => *secret,
        }
    }

    /// The 0-based PEM block the error is about, if it is about one.
    pub fn block(&self) -> Option<usize> {
        match self {
            ParseError::Empty { .. }
            | ParseError::Oversized { .. }
            | ParseError::NotUtf8 { .. }
            | ParseError::NotPem { .. } => None,
            ParseError::MalformedPem { block, .. }
            | ParseError::WrongBlockType { block, .. }
            | ParseError::ExtraBlock { block, .. }
            | ParseError::InvalidCertificate { block, .. }
            | ParseError::TrailingData { block, .. }
            | ParseError::EncryptedKey { block, .. }
            | ParseError::InvalidKey { block, .. }
            | ParseError::UnsupportedKey { block, .. } => Some(*block),
        }
    }

    /// The finding code this error becomes in a [`Report`].
    pub fn code(&self) -> FindingCode {
        match self {
            ParseError::Empty { .. } => FindingCode::Empty,
            ParseError::Oversized { .. } => FindingCode::Oversized,
            ParseError::NotUtf8 { .. } => FindingCode::NotUtf8,
            ParseError::NotPem { .. } => FindingCode::NotPem,
            ParseError::MalformedPem { .. } => FindingCode::MalformedPem,
            ParseError::WrongBlockType { .. } => FindingCode::WrongBlockType,
            ParseError::ExtraBlock { .. } => FindingCode::ExtraBlock,
            ParseError::InvalidCertificate { .. } | ParseError::TrailingData { .. } => FindingCode::InvalidCertificate,
            ParseError::EncryptedKey { .. } => FindingCode::EncryptedKey,
            ParseError::InvalidKey { .. } => FindingCode::InvalidKey,
            ParseError::UnsupportedKey { .. } => FindingCode::UnsupportedKey,
        }
    }

    /// The message with its causes, `: `-joined, as a finding carries it.
    pub fn full_message(&self) -> String {
        let mut msg = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        msg
    }
}
