//! Root and material fingerprints (definitions in the module docs of [`super`] and in
//! `docs/fingerprints.md`): SHA-256 over DER, so formatting never counts as a change.

use std::fmt;

use sha2::{Digest, Sha256};

use super::SecretRole;

/// A lowercase hex SHA-256 digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_digest(Sha256::digest(bytes).as_slice())
    }

    fn from_digest(digest: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(digest.len() * 2);
        for b in digest {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Fingerprint(s)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Fingerprint {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// SHA-256 over the concatenated DER of the roots, in file order.
pub(crate) fn root<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> Fingerprint {
    let mut h = Sha256::new();
    for der in ders {
        h.update(der);
    }
    Fingerprint::from_digest(h.finalize().as_slice())
}

/// SHA-256 over the manifest `"<role> <sha256 hex of DER>\n"` per item; `ca-key` contributes the
/// DER SubjectPublicKeyInfo of the key, never the private key.
pub(crate) fn material<'a>(
    roots: impl IntoIterator<Item = &'a [u8]>,
    ca_cert: &[u8],
    chain: impl IntoIterator<Item = &'a [u8]>,
    ca_key_spki: &[u8],
) -> Fingerprint {
    let mut h = Sha256::new();
    let mut line = |role: SecretRole, der: &[u8]| {
        h.update(role.name().as_bytes());
        h.update(b" ");
        h.update(Fingerprint::of(der).as_str().as_bytes());
        h.update(b"\n");
    };
    for der in roots {
        line(SecretRole::RootCert, der);
    }
    line(SecretRole::CaCert, ca_cert);
    for der in chain {
        line(SecretRole::CertChain, der);
    }
    line(SecretRole::CaKey, ca_key_spki);
    Fingerprint::from_digest(h.finalize().as_slice())
}
