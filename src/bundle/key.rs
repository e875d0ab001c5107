//! `ca-key` parsing: PEM private key → its public half, so it can be matched with `ca-cert`.
//!
//! Accepted: PKCS#1 `RSA PRIVATE KEY`, PKCS#8 `PRIVATE KEY` (RSA or EC) and SEC1 `EC PRIVATE KEY`;
//! RSA 2048–8192 bits (aws-lc-rs' range, which covers Istio's 2048–4096) and ECDSA P-256/P-384.
//! The private key is parsed by aws-lc-rs (which checks the key's consistency) and dropped at
//! once; only public data leaves this module.

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
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
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
}

/// Parses the `ca-key` value: exactly one unencrypted private-key PEM block.
pub fn parse_private_key(pem: &[u8]) -> Result<PublicKeyInfo, ParseError> {
    let blocks = pem::scan(ROLE, pem)?;
    for (index, block) in blocks.iter().enumerate() {
        match block.label.as_str() {
            "RSA PRIVATE KEY" | "PRIVATE KEY" | "EC PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => {
                return Err(ParseError::EncryptedKey { secret: ROLE, block: index });
            }
            _ => {
                return Err(ParseError::WrongBlockType {
                    secret: ROLE,
                    block: index,
                    found: block.label.clone(),
                    expected: KEY_LABELS,
                });
            }
        }
    }
    if blocks.len() > 1 {
        return Err(ParseError::ExtraBlock {
            secret: ROLE,
            block: 1,
            count: blocks.len(),
            expected: "private key",
            hint: "",
        });
    }
    let block = &blocks[0];
    match block.label.as_str() {
        "RSA PRIVATE KEY" => rsa(aws_lc_rs::rsa::KeyPair::from_der(&block.der), "PKCS#1 RSA"),
        "EC PRIVATE KEY" => sec1(&block.der),
        _ => pkcs8(&block.der),
    }
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
    Ok(PublicKeyInfo { algorithm, public_key: public.as_ref().to_vec(), spki_der: spki.as_ref().to_vec() })
}

fn curve(oid: &[u8]) -> Result<(&'static EcdsaSigningAlgorithm, KeyAlgorithm), ParseError> {
    match oid {
        der::OID_P256 => Ok((&signature::ECDSA_P256_SHA256_ASN1_SIGNING, KeyAlgorithm::EcdsaP256)),
        der::OID_P384 => Ok((&signature::ECDSA_P384_SHA384_ASN1_SIGNING, KeyAlgorithm::EcdsaP384)),
        other => Err(unsupported(der::oid_name(other))),
    }
}

/// SEC1 `ECPrivateKey ::= SEQUENCE { version INTEGER, privateKey OCTET STRING, parameters [0] OID OPTIONAL, ... }`.
fn sec1(key: &[u8]) -> Result<PublicKeyInfo, ParseError> {
    const FORMAT: &str = "SEC1 EC";
    let params = (|| {
        let (seq, _) = der::expect(key, SEQUENCE)?;
        let (_, rest) = der::expect(seq, INTEGER)?;
        let (_, rest) = der::expect(rest, OCTET_STRING)?;
        let (params, _) = der::expect(rest, CONTEXT_0)?;
        let (oid, _) = der::expect(params, OID)?;
        Some(oid)
    })();
    match params {
        Some(oid) => {
            let (alg, name) = curve(oid)?;
            ecdsa(EcdsaKeyPair::from_private_key_der(alg, key), name, FORMAT)
        }
        // Without named parameters the curve is unknown: try ours in turn.
        None => ecdsa(
            EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, key),
            KeyAlgorithm::EcdsaP256,
            FORMAT,
        )
        .or_else(|_| {
            ecdsa(
                EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, key),
                KeyAlgorithm::EcdsaP384,
                FORMAT,
            )
        }),
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
