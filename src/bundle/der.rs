//! Just enough DER reading to tell which algorithm a private key uses before handing it to aws-lc-rs.
//!
//! It reads structure (tags, lengths, OIDs) and never copies or reports content, so no key
//! material can leak through it.

/// One TLV: its tag byte and content.
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
/// `[0]` constructed, context-specific (SEC1 `parameters`).
pub(crate) const CONTEXT_0: u8 = 0xa0;

/// Reads one TLV from the front of `input`; returns it and the rest. Multi-byte tags are not
/// supported (none occur in the structures we read).
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((Tlv { tag, content }, rest))
}

/// Reads one TLV and checks its tag.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = read(input)?;
    (tlv.tag == tag).then_some((tlv.content, rest))
}

// Content octets of the OIDs we recognise.
pub(crate) const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(crate) const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
pub(crate) const OID_SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
pub(crate) const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];
pub(crate) const OID_X25519: &[u8] = &[0x2b, 0x65, 0x6e];

/// A readable name for a key or curve OID, for "unsupported" messages.
pub(crate) fn oid_name(oid: &[u8]) -> String {
    match oid {
        OID_RSA_ENCRYPTION => "RSA".into(),
        OID_RSASSA_PSS => "RSASSA-PSS".into(),
        OID_P256 => "ECDSA P-256".into(),
        OID_P384 => "ECDSA P-384".into(),
        OID_P521 => "ECDSA P-521".into(),
        OID_SECP256K1 => "ECDSA secp256k1".into(),
        OID_ED25519 => "Ed25519".into(),
        OID_ED448 => "Ed448".into(),
        OID_X25519 => "X25519".into(),
        _ => format!("OID {}", dotted(oid)),
    }
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = acc.saturating_mul(128) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}
