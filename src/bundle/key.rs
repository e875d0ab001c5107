//! The key check: `ca-key` → its public half, parsed as istiod parses it (`util.ParsePemEncodedKey`), so
//! it can be matched with `ca-cert` as `tls.X509KeyPair` does.
//!
//! istiod reads the **first** PEM block and picks the parser by its **label**:
//! `EC PRIVATE KEY` → SEC1 with a named curve (`x509.ParseECPrivateKey`: PKCS#8 bytes or explicit curve
//! parameters under this label are refused), `RSA PRIVATE KEY` → PKCS#1, `PRIVATE KEY` → PKCS#8; any
//! other label is refused, and so is an encrypted key. Blocks after the first are ignored (reported).
//! Accepted algorithms: RSA 2048–8192 bits (aws-lc-rs' range, which covers Istio's 2048–4096) and ECDSA
//! P-256/P-384/P-521. Go also takes Ed25519 and RSA under 2048 bits; both are refused here (stricter by
//! design, see docs/validation.md). The private key is parsed by aws-lc-rs (which checks the key's
//! consistency) and dropped at once; only public data leaves this module.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _};

use super::der::{self, CONTEXT_0, INTEGER, OCTET_STRING, OID, SEQUENCE};
use super::{ParseError, SecretRole, pem};

const ROLE: SecretRole = SecretRole::CaKey;
const KEY_LABELS: &str = "RSA PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY";

/// The algorithm and size of a private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// RSA with this modulus size.
    Rsa { bits: usize },
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyAlgorithm::EcdsaP521 => f.write_str("ECDSA P-521"),
        }
    }
}

/// The public half of `ca-key`. Holds no private material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// Algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// The subjectPublicKey bit-string content as a certificate carries it: a PKCS#1
    /// `RSAPublicKey` for RSA, the uncompressed point for EC.
    pub public_key: Vec<u8>,
    /// DER `SubjectPublicKeyInfo`, as `openssl pkey -pubout -outform DER` prints it.
    pub spki_der: Vec<u8>,
    /// PEM blocks after the first, which istiod ignores.
    pub ignored_blocks: usize,
}

/// Parses the `ca-key` value as istiod does: the first PEM block, by its label, unencrypted.
pub fn parse_private_key(pem: &[u8]) -> Result<PublicKeyInfo, ParseError> {
    let blocks = pem::scan(ROLE, pem)?;
    let block = &blocks[0];
    let info = match block.label.as_str() {
        "RSA PRIVATE KEY" => rsa(aws_lc_rs::rsa::KeyPair::from_der(&block.der), "PKCS#1 RSA"),
        "EC PRIVATE KEY" => sec1(&block.der),
        "PRIVATE KEY" => pkcs8(&block.der),
        "ENCRYPTED PRIVATE KEY" => Err(ParseError::EncryptedKey { secret: ROLE, block: 0 }),
        _ => {
            Err(ParseError::WrongBlockType { secret: ROLE, block: 0, found: block.label.clone(), expected: KEY_LABELS })
        }
    }?;
    Ok(PublicKeyInfo { ignored_blocks: blocks.len() - 1, ..info })
}

fn invalid(format: &'static str, source: Option<aws_lc_rs::error::KeyRejected>) -> ParseError {
    ParseError::InvalidKey { secret: ROLE, block: 0, format, source }
}

fn unsupported(algorithm: String) -> ParseError {
    ParseError::UnsupportedKey { secret: ROLE, block: 0, algorithm }
}

fn rsa(
    parsed: Result<aws_lc_rs::rsa::KeyPair, aws_lc_rs::error::KeyRejected>,
    format: &'static str,
) -> Result<PublicKeyInfo, ParseError> {
    let pair = parsed.map_err(|e| invalid(format, Some(e)))?;
    let public = pair.public_key();
    let spki = public.as_der().map_err(|_| invalid(format, None))?;
    Ok(PublicKeyInfo {
        algorithm: KeyAlgorithm::Rsa { bits: pair.public_modulus_len() * 8 },
        public_key: public.as_ref().to_vec(),
        spki_der: spki.as_ref().to_vec(),
        ignored_blocks: 0,
    })
}

fn ecdsa(
    parsed: Result<EcdsaKeyPair, aws_lc_rs::error::KeyRejected>,
    algorithm: KeyAlgorithm,
    format: &'static str,
) -> Result<PublicKeyInfo, ParseError> {
    let pair = parsed.map_err(|e| invalid(format, Some(e)))?;
    let public = pair.public_key();
    let spki = public.as_der().map_err(|_| invalid(format, None))?;
    Ok(PublicKeyInfo {
        algorithm,
        public_key: public.as_ref().to_vec(),
        spki_der: spki.as_ref().to_vec(),
        ignored_blocks: 0,
    })
}

fn curve(oid: &[u8]) -> Result<(&'static EcdsaSigningAlgorithm, KeyAlgorithm), ParseError> {
    match oid {
        der::OID_P256 => Ok((&signature::ECDSA_P256_SHA256_ASN1_SIGNING, KeyAlgorithm::EcdsaP256)),
        der::OID_P384 => Ok((&signature::ECDSA_P384_SHA384_ASN1_SIGNING, KeyAlgorithm::EcdsaP384)),
        der::OID_P521 => Ok((&signature::ECDSA_P521_SHA512_ASN1_SIGNING, KeyAlgorithm::EcdsaP521)),
        other => Err(unsupported(der::oid_name(other))),
    }
}

/// SEC1 `ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING, parameters [0] OID, ... }`.
///
/// Go's `ParseECPrivateKey` needs the named-curve OID: without it, or with explicit curve parameters in
/// its place, the curve is "unknown"; PKCS#8 bytes under this label are refused too.
fn sec1(key: &[u8]) -> Result<PublicKeyInfo, ParseError> {
    const FORMAT: &str = "SEC1 EC";
    let shape = (|| {
        let (seq, _) = der::expect(key, SEQUENCE)?;
        let (version, rest) = der::expect(seq, INTEGER)?;
        Some((version, rest))
    })();
    let Some((version, rest)) = shape else {
        return Err(invalid(FORMAT, None));
    };
    if version == [0] && der::expect(rest, SEQUENCE).is_some() {
        return Err(ParseError::InvalidKey {
            secret: ROLE,
            block: 0,
            format: "SEC1 EC (the block is PKCS#8: label it PRIVATE KEY; istiod would refuse this: x509: failed to parse private key (use ParsePKCS8PrivateKey instead for this key format))",
            source: None,
        });
    }
    let params = (|| {
        let (_, rest) = der::expect(rest, OCTET_STRING)?;
        let (params, _) = der::expect(rest, CONTEXT_0)?;
        Some(params)
    })();
    let oid = params.and_then(|p| der::expect(p, OID)).map(|(oid, _)| oid);
    match (version, oid) {
        ([1], Some(oid)) => {
            let (alg, name) = curve(oid)?;
            ecdsa(EcdsaKeyPair::from_private_key_der(alg, key), name, FORMAT)
        }
        ([1], None) => Err(ParseError::InvalidKey {
            secret: ROLE,
            block: 0,
            format: "SEC1 EC with a named curve (it has explicit or no curve parameters; istiod would refuse this: x509: unknown elliptic curve)",
            source: None,
        }),
        _ => Err(invalid(FORMAT, None)),
    }
}

/// PKCS#8 `PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm AlgorithmIdentifier, privateKey OCTET STRING, ... }`.
fn pkcs8(key: &[u8]) -> Result<PublicKeyInfo, ParseError> {
    const FORMAT: &str = "PKCS#8";
    let alg = (|| {
        let (seq, _) = der::expect(key, SEQUENCE)?;
        let (_, rest) = der::expect(seq, INTEGER)?;
        let (alg_id, _) = der::expect(rest, SEQUENCE)?;
        let (oid, params) = der::expect(alg_id, OID)?;
        let curve = der::expect(params, OID).map(|(c, _)| c);
        Some((oid, curve))
    })();
    let Some((oid, curve_oid)) = alg else {
        return Err(invalid(FORMAT, None));
    };
    match oid {
        der::OID_RSA_ENCRYPTION => rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(key), "PKCS#8 RSA"),
        der::OID_EC_PUBLIC_KEY => {
            let (alg, name) = curve(curve_oid.ok_or_else(|| invalid("PKCS#8 EC", None))?)?;
            ecdsa(EcdsaKeyPair::from_pkcs8(alg, key), name, "PKCS#8 EC")
        }
        other => Err(unsupported(der::oid_name(other))),
    }
}
