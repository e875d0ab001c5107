//! Go's `Certificate.CheckSignatureFrom`: may the parent sign certificates at all, is the signature
//! algorithm one Go accepts, and does the signature verify. Verification runs on aws-lc-rs.
//!
//! Go accepts RSA PKCS#1 v1.5 and RSA-PSS with SHA-256/384/512, ECDSA with SHA-256/384/512 on any of
//! P-256, P-384 and P-521, and Ed25519; it refuses SHA-1 and MD5 as insecure and everything else as
//! unimplemented. RSA keys are verified in aws-lc-rs' 2048–8192-bit range (Go has no lower bound before
//! Go 1.24; a shorter key is refused here, stricter by design).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::signature_algorithm::SignatureAlgorithm;

use super::cert::Cert;

/// Why `CheckSignatureFrom` failed; `Display` is Go's error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SigError {
    /// The parent is not a CA (v3 without basicConstraints, cA false) or its keyUsage lacks keyCertSign.
    ConstraintViolation { no_key_cert_sign: bool },
    /// SHA-1 or MD5: Go's `InsecureAlgorithmError`.
    Insecure(&'static str),
    /// An algorithm or key type Go does not implement: `ErrUnsupportedAlgorithm`.
    Unsupported,
    /// The signature does not verify with the parent's key (a wrong issuer, or a corrupted signature).
    Mismatch(&'static str),
}

impl std::fmt::Display for SigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigError::ConstraintViolation { .. } => {
                f.write_str("x509: invalid signature: parent certificate cannot sign this kind of certificate")
            }
            SigError::Insecure(name) => {
                write!(f, "x509: cannot verify signature: insecure algorithm {name}")?;
                if name.contains("SHA1") {
                    f.write_str(" (temporarily override with GODEBUG=x509sha1=1)")?;
                }
                Ok(())
            }
            SigError::Unsupported => f.write_str("x509: cannot verify signature: algorithm unimplemented"),
            SigError::Mismatch(text) => f.write_str(text),
        }
    }
}

const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";
const SHA512: &str = "2.16.840.1.101.3.4.2.3";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    RsaPkcs1(Hash),
    RsaPss(Hash),
    Ecdsa(Hash),
    Ed25519,
}

/// The certificate's signature algorithm as Go classifies it.
fn scheme(child: &Cert<'_>) -> Result<Scheme, SigError> {
    let alg = &child.x.signature_algorithm;
    let hash = |h: &str| match h {
        SHA256 => Some(Hash::Sha256),
        SHA384 => Some(Hash::Sha384),
        SHA512 => Some(Hash::Sha512),
        _ => None,
    };
    match alg.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.4" => Err(SigError::Insecure("MD5-RSA")),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => Err(SigError::Insecure("SHA1-RSA")),
        "1.2.840.10045.4.1" => Err(SigError::Insecure("ECDSA-SHA1")),
        "1.2.840.113549.1.1.11" => Ok(Scheme::RsaPkcs1(Hash::Sha256)),
        "1.2.840.113549.1.1.12" => Ok(Scheme::RsaPkcs1(Hash::Sha384)),
        "1.2.840.113549.1.1.13" => Ok(Scheme::RsaPkcs1(Hash::Sha512)),
        "1.2.840.10045.4.3.2" => Ok(Scheme::Ecdsa(Hash::Sha256)),
        "1.2.840.10045.4.3.3" => Ok(Scheme::Ecdsa(Hash::Sha384)),
        "1.2.840.10045.4.3.4" => Ok(Scheme::Ecdsa(Hash::Sha512)),
        "1.3.101.112" => Ok(Scheme::Ed25519),
        "1.2.840.113549.1.1.10" => {
            // Go accepts PSS only with SHA-256/384/512, MGF1 over the same hash, salt = hash length, trailer 1.
            let Ok(SignatureAlgorithm::RSASSA_PSS(p)) = SignatureAlgorithm::try_from(alg) else {
                return Err(SigError::Unsupported);
            };
            let h = hash(&p.hash_algorithm_oid().to_id_string()).ok_or(SigError::Unsupported)?;
            let mgf_ok = p.mask_gen_algorithm().is_ok_and(|m| {
                m.mgf.to_id_string() == "1.2.840.113549.1.1.8" && hash(&m.hash.to_id_string()) == Some(h)
            });
            let salt = match h {
                Hash::Sha256 => 32,
                Hash::Sha384 => 48,
                Hash::Sha512 => 64,
            };
            if !mgf_ok || p.salt_length() != salt || p.trailer_field() != 1 {
                return Err(SigError::Unsupported);
            }
            Ok(Scheme::RsaPss(h))
        }
        _ => Err(SigError::Unsupported),
    }
}

/// Go's `child.CheckSignatureFrom(parent)`.
pub(super) fn check_signature_from(child: &Cert<'_>, parent: &Cert<'_>) -> Result<(), SigError> {
    let is_v3 = parent.x.version().0 == 2;
    match parent.basic_constraints() {
        None if is_v3 => return Err(SigError::ConstraintViolation { no_key_cert_sign: false }),
        Some((false, _)) => return Err(SigError::ConstraintViolation { no_key_cert_sign: false }),
        _ => {}
    }
    if parent.key_usage_forbids_cert_sign() {
        return Err(SigError::ConstraintViolation { no_key_cert_sign: true });
    }
    verify_signature(child, &parent.x)
}

/// The cryptographic part only: `child`'s signature verifies with `parent`'s key under an algorithm Go accepts.
pub(super) fn verify_signature(
    child: &Cert<'_>,
    parent: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(), SigError> {
    let spki = parent.public_key();
    let key_alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    // Go parses the parent's key first: an unknown key type (e.g. an RSA-PSS SPKI) cannot sign.
    let key_type = match key_alg.as_str() {
        "1.2.840.113549.1.1.1" => KeyType::Rsa,
        "1.2.840.10045.2.1" => match curve.as_deref() {
            Some("1.2.840.10045.3.1.7") => KeyType::P256,
            Some("1.3.132.0.34") => KeyType::P384,
            Some("1.3.132.0.35") => KeyType::P521,
            _ => return Err(SigError::Unsupported),
        },
        "1.3.101.112" => KeyType::Ed25519,
        _ => return Err(SigError::Unsupported),
    };
    let scheme = scheme(child)?;
    let alg: &'static dyn VerificationAlgorithm = match (scheme, key_type) {
        (Scheme::RsaPkcs1(h), KeyType::Rsa) => match h {
            Hash::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Hash::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Hash::Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        },
        (Scheme::RsaPss(h), KeyType::Rsa) => match h {
            Hash::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
            Hash::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
            Hash::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
        },
        (Scheme::Ecdsa(h), KeyType::P256) => match h {
            Hash::Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            Hash::Sha384 => &signature::ECDSA_P256_SHA384_ASN1,
            Hash::Sha512 => &signature::ECDSA_P256_SHA512_ASN1,
        },
        (Scheme::Ecdsa(h), KeyType::P384) => match h {
            Hash::Sha256 => &signature::ECDSA_P384_SHA256_ASN1,
            Hash::Sha384 => &signature::ECDSA_P384_SHA384_ASN1,
            Hash::Sha512 => &signature::ECDSA_P384_SHA512_ASN1,
        },
        (Scheme::Ecdsa(h), KeyType::P521) => match h {
            Hash::Sha256 => &signature::ECDSA_P521_SHA256_ASN1,
            Hash::Sha384 => &signature::ECDSA_P521_SHA384_ASN1,
            Hash::Sha512 => &signature::ECDSA_P521_SHA512_ASN1,
        },
        (Scheme::Ed25519, KeyType::Ed25519) => &signature::ED25519,
        (Scheme::RsaPkcs1(_) | Scheme::RsaPss(_), _) => {
            return Err(SigError::Mismatch(
                "x509: signature algorithm specifies an RSA public key, but have another key type",
            ));
        }
        (Scheme::Ecdsa(_), _) => {
            return Err(SigError::Mismatch(
                "x509: signature algorithm specifies an ECDSA public key, but have another key type",
            ));
        }
        (Scheme::Ed25519, _) => {
            return Err(SigError::Mismatch(
                "x509: signature algorithm specifies an Ed25519 public key, but have another key type",
            ));
        }
    };
    let tbs: &[u8] = child.x.tbs_certificate.as_ref();
    UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref())
        .verify(tbs, child.x.signature_value.data.as_ref())
        .map_err(|_| {
            SigError::Mismatch(match key_type {
                KeyType::Rsa => "crypto/rsa: verification error",
                KeyType::Ed25519 => "x509: Ed25519 verification failure",
                _ => "x509: ECDSA verification failure",
            })
        })
}

#[derive(Clone, Copy)]
enum KeyType {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}
