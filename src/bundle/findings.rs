//! What [`validate`](super::validate) returns: the [`Report`], its [`Finding`]s and their codes, and the
//! per-certificate [`CertInfo`]. Plain data: no parsing or rules live here.

use std::fmt;

use super::{Fingerprint, SecretRole};

/// The outcome of [`validate`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Whether the material may be written.
    pub verdict: Verdict,
    /// Every problem and remark, errors first.
    pub findings: Vec<Finding>,
    /// Every parsed certificate, in order: `root-cert`…, `ca-cert`, `cert-chain`….
    pub certificates: Vec<CertInfo>,
    /// `None` if `root-cert` did not parse.
    pub root_fingerprint: Option<Fingerprint>,
    /// `None` if any secret did not parse.
    pub material_fingerprint: Option<Fingerprint>,
    /// Number of certificates in `root-cert` (0 if it did not parse).
    pub root_count: usize,
    /// 0-based index into `root-cert` of the root that anchors `ca-cert`.
    pub anchor: Option<usize>,
}

impl Report {
    /// True when the verdict is [`Verdict::Valid`] (warnings allowed).
    pub fn is_valid(&self) -> bool {
        self.verdict == Verdict::Valid
    }

    /// Findings of severity [`Severity::Error`].
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Error)
    }

    /// Findings of severity [`Severity::Warning`].
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Warning)
    }
}

/// Overall judgement of the material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Usable; warnings allowed.
    Valid,
    /// Looks like a half-finished rotation (only torn-class errors): the caller may re-read and wait.
    Torn,
    /// Broken however long one waits.
    Invalid,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Valid => "valid",
            Verdict::Torn => "torn",
            Verdict::Invalid => "invalid",
        })
    }
}

/// One problem or remark.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// What rule it comes from.
    pub code: FindingCode,
    /// The secret concerned, if one.
    pub secret: Option<SecretRole>,
    /// The 0-based PEM block concerned, if one.
    pub block: Option<usize>,
    /// A human-readable sentence; never contains key bytes.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] {}", self.severity, self.code, self.message)
    }
}

/// Severity of a [`Finding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Blocks the write.
    Error,
    /// Worth attention; does not block.
    Warning,
    /// A remark.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// The rule a [`Finding`] comes from; serialized kebab-case. See the module docs for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FindingCode {
    /// The value is empty or whitespace only.
    Empty,
    /// The value exceeds [`MAX_SECRET_BYTES`].
    Oversized,
    /// The value is not UTF-8 (DER or other binary).
    NotUtf8,
    /// The value holds no PEM block.
    NotPem,
    /// A PEM block is malformed (flattened, indented, unterminated, bad base64, headers).
    MalformedPem,
    /// A PEM block has the wrong type for the secret (e.g. a key in a certificate secret).
    WrongBlockType,
    /// `ca-cert` or `ca-key` holds more than one block.
    ExtraBlock,
    /// A `CERTIFICATE` block is not exactly one valid X.509 certificate.
    InvalidCertificate,
    /// `ca-key` is encrypted.
    EncryptedKey,
    /// `ca-key` does not parse as its declared format.
    InvalidKey,
    /// `ca-key` uses an unsupported algorithm or curve.
    UnsupportedKey,
    /// Torn: `ca-key` is not the key of `ca-cert`.
    KeyMismatch,
    /// Torn: `cert-chain` does not start with `ca-cert`.
    ChainMismatch,
    /// Torn: `ca-cert` does not verify against any root, directly or through `cert-chain`.
    NotAnchored,
    /// Torn: `cert-chain` ends neither at a root nor at a certificate a root signed.
    ChainNotAnchored,
    /// A `cert-chain` certificate is not signed by the next one.
    ChainBroken,
    /// A certificate that must be a CA lacks basicConstraints CA:TRUE.
    NotCa,
    /// `ca-cert` is not X.509 v3.
    NotV3,
    /// A CA has keyUsage without keyCertSign.
    NoKeyCertSign,
    /// A pathLenConstraint forbids the intermediates below it.
    PathLenExceeded,
    /// An issuer's extendedKeyUsage lacks serverAuth and clientAuth.
    EkuRestricts,
    /// A certificate expired before `now`.
    Expired,
    /// A certificate becomes valid after `now`.
    NotYetValid,
    /// A certificate expires within the warning threshold.
    ExpiringSoon,
    /// A `root-cert` entry is not self-signed.
    RootNotSelfSigned,
    /// A `root-cert` entry appears twice.
    DuplicateRoot,
    /// The new bundle drops a root that anchors the deployed intermediate.
    RootDropsLiveAnchor,
    /// The bundle holds several distinct roots.
    MultipleRoots,
    /// The roots differ from the deployed ones.
    RootBundleChanged,
    /// The deployed material could not be parsed.
    DeployedUnreadable,
    /// A certificate on the path has a critical extension Go's crypto/x509 does not handle.
    UnhandledCriticalExtension,
    /// A signature on the path uses SHA-1 or MD5, which Go refuses.
    InsecureSignature,
    /// A signature or key on the path uses an algorithm Go cannot verify (e.g. an RSA-PSS public key).
    UnsupportedAlgorithm,
    /// A CA's name constraints do not allow a name of a certificate below it.
    NameConstraints,
    /// A certificate Go's parser refuses (e.g. a critical subjectKeyIdentifier, a negative serial).
    GoParseError,
    /// Blocks istiod ignores: `ca-cert` or `ca-key` blocks after the first.
    IgnoredBlocks,
    /// The chain istiod's start-up check builds, `ca-cert` up to the root (info).
    IstiodChain,
}

impl FindingCode {
    /// True for errors that look like a half-finished four-object update (see the module docs).
    pub fn is_torn(self) -> bool {
        matches!(
            self,
            FindingCode::KeyMismatch
                | FindingCode::ChainMismatch
                | FindingCode::NotAnchored
                | FindingCode::ChainNotAnchored
        )
    }

    /// The kebab-case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::Empty => "empty",
            FindingCode::Oversized => "oversized",
            FindingCode::NotUtf8 => "not-utf8",
            FindingCode::NotPem => "not-pem",
            FindingCode::MalformedPem => "malformed-pem",
            FindingCode::WrongBlockType => "wrong-block-type",
            FindingCode::ExtraBlock => "extra-block",
            FindingCode::InvalidCertificate => "invalid-certificate",
            FindingCode::EncryptedKey => "encrypted-key",
            FindingCode::InvalidKey => "invalid-key",
            FindingCode::UnsupportedKey => "unsupported-key",
            FindingCode::KeyMismatch => "key-mismatch",
            FindingCode::ChainMismatch => "chain-mismatch",
            FindingCode::NotAnchored => "not-anchored",
            FindingCode::ChainNotAnchored => "chain-not-anchored",
            FindingCode::ChainBroken => "chain-broken",
            FindingCode::NotCa => "not-ca",
            FindingCode::NotV3 => "not-v3",
            FindingCode::NoKeyCertSign => "no-key-cert-sign",
            FindingCode::PathLenExceeded => "path-len-exceeded",
            FindingCode::EkuRestricts => "eku-restricts",
            FindingCode::Expired => "expired",
            FindingCode::NotYetValid => "not-yet-valid",
            FindingCode::ExpiringSoon => "expiring-soon",
            FindingCode::RootNotSelfSigned => "root-not-self-signed",
            FindingCode::DuplicateRoot => "duplicate-root",
            FindingCode::RootDropsLiveAnchor => "root-drops-live-anchor",
            FindingCode::MultipleRoots => "multiple-roots",
            FindingCode::RootBundleChanged => "root-bundle-changed",
            FindingCode::DeployedUnreadable => "deployed-unreadable",
            FindingCode::UnhandledCriticalExtension => "unhandled-critical-extension",
            FindingCode::InsecureSignature => "insecure-signature",
            FindingCode::UnsupportedAlgorithm => "unsupported-algorithm",
            FindingCode::NameConstraints => "name-constraints",
            FindingCode::GoParseError => "go-parse-error",
            FindingCode::IgnoredBlocks => "ignored-blocks",
            FindingCode::IstiodChain => "istiod-chain",
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the report says about one certificate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertInfo {
    /// The secret it came from.
    pub role: SecretRole,
    /// 0-based PEM block index within that secret.
    pub index: usize,
    /// Subject DN as Go (and so istiod) prints it, e.g. `CN=Root CA,O=Example`.
    pub subject: String,
    /// Issuer DN, in the same form.
    pub issuer: String,
    /// Serial number, lowercase hex without leading zero bytes (as istiod logs it).
    pub serial: String,
    /// Start of validity.
    #[serde(serialize_with = "ser_timestamp")]
    pub not_before: jiff::Timestamp,
    /// End of validity.
    #[serde(serialize_with = "ser_timestamp")]
    pub not_after: jiff::Timestamp,
    /// Whole days from `now` to `not_after`, rounded down (negative once expired).
    pub days_left: i64,
    /// SHA-256 of the certificate's DER.
    pub sha256: Fingerprint,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// Issuer equals subject and the certificate verifies with its own key.
    pub self_signed: bool,
}

// jiff is built without its `serde` feature; RFC 3339 text is what we want anyway.
fn ser_timestamp<S: serde::Serializer>(t: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}
