//! Test PKI: Istio plug-in CA material (roots, intermediates, `cert-chain` files, keys in every PEM flavour
//! the tool must accept) and the broken variants the validator must reject, all built with rcgen.
//!
//! Everything is built against an explicit "now": [`TestPki::new`] pins it to [`NOW`] (2026-06-01T00:00:00Z)
//! for unit tests of the pure certificate core, which take `now` as a parameter; [`TestPki::current`] anchors
//! it at the real clock for end-to-end tests that run the real binary (which uses the real clock).
//! Certificate windows are relative to that "now" (see [`Validity`]).
//!
//! Keys:
//! - EC P-256 keys are generated fresh for every certificate (cheap).
//! - RSA-2048 generation is slow (hundreds of milliseconds in a debug build), so RSA keys come from a small
//!   process-wide pool of [`RSA_POOL_SIZE`] keys generated on first use and handed out round-robin. Two RSA
//!   certificates made in one process can therefore share a key; use EC keys where a test needs keys that
//!   are guaranteed to differ (e.g. "key does not match certificate").
//! - [`KeyKind`] chooses the PEM encoding of `ca-key.pem`: PKCS#1 `RSA PRIVATE KEY`, PKCS#8 `PRIVATE KEY`
//!   (RSA or EC) or SEC1 `EC PRIVATE KEY` (with the curve parameters, as `openssl ecparam -genkey` writes it).
//!
//! Broken variants: [`Validity::Expired`], [`Validity::NotYetValid`], `is_ca: false` (non-CA intermediate),
//! `key_usage` without `keyCertSign` (wrong key usage), `extended_key_usages` (e.g. serverAuth only, the
//! istio/istio#27193 case), and "intermediate from another root" by pairing a root bundle with an intermediate
//! signed by a different root in [`TestPki::plugin_ca`].

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, RsaKeySize, SerialNumber,
};
pub use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};

/// The fixed "now" of [`TestPki::new`]: 2026-06-01T00:00:00Z in Unix seconds.
pub const NOW: i64 = 1_780_272_000;

/// One day in seconds, for building [`Validity::Window`]s.
pub const DAY: i64 = 86_400;

/// Number of RSA keys generated per process (see the module docs).
pub const RSA_POOL_SIZE: usize = 4;

/// Key algorithm and PEM encoding of a certificate's private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// EC P-256, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    #[default]
    EcPkcs8,
    /// EC P-256, SEC1 (`-----BEGIN EC PRIVATE KEY-----`, with the named-curve parameters).
    EcSec1,
    /// RSA-2048, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    RsaPkcs8,
    /// RSA-2048, PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`).
    RsaPkcs1,
}

impl KeyKind {
    /// Every key kind, for table-driven tests.
    pub const ALL: [KeyKind; 4] = [KeyKind::EcPkcs8, KeyKind::EcSec1, KeyKind::RsaPkcs8, KeyKind::RsaPkcs1];

    /// Whether this is an RSA key.
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyKind::RsaPkcs8 | KeyKind::RsaPkcs1)
    }
}

/// Validity window of a certificate, relative to the [`TestPki`]'s "now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From 30 days before now to `years` years (365 days each) after now.
    Years(u32),
    /// Ended a day before now (from now − 400 days to now − 1 day).
    Expired,
    /// Starts a day after now (from now + 1 day to now + 400 days).
    NotYetValid,
    /// Explicit window in seconds relative to now (negative = in the past).
    Window { not_before: i64, not_after: i64 },
}

impl Validity {
    fn bounds(self, now: i64) -> (i64, i64) {
        match self {
            Validity::Years(y) => (now - 30 * DAY, now + i64::from(y) * 365 * DAY),
            Validity::Expired => (now - 400 * DAY, now - DAY),
            Validity::NotYetValid => (now + DAY, now + 400 * DAY),
            Validity::Window { not_before, not_after } => (now + not_before, now + not_after),
        }
    }
}

/// Options of an intermediate (the plug-in CA's signing certificate). The default is a valid CA:
/// EC P-256 PKCS#8 key, 2 years, `CA:TRUE`, key usage keyCertSign + cRLSign + digitalSignature, no EKU.
#[derive(Clone, Debug)]
pub struct IntermediateOpts {
    /// Subject common name.
    pub common_name: String,
    /// Key algorithm and PEM encoding of `ca-key.pem`.
    pub key: KeyKind,
    /// Validity window relative to the PKI's "now".
    pub validity: Validity,
    /// `basicConstraints CA:TRUE` (false gives the "non-CA intermediate" variant, `CA:FALSE`).
    pub is_ca: bool,
    /// Key usage bits (leave out `KeyCertSign` for the "wrong key usage" variant).
    pub key_usage: Vec<KeyUsagePurpose>,
    /// Extended key usages (empty = extension absent, as Istio's own tooling makes it).
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
}

impl Default for IntermediateOpts {
    fn default() -> Self {
        Self {
            common_name: "Intermediate CA".to_owned(),
            key: KeyKind::EcPkcs8,
            validity: Validity::Years(2),
            is_ca: true,
            key_usage: ca_key_usage(),
            extended_key_usages: Vec::new(),
        }
    }
}

impl IntermediateOpts {
    /// Default options with another key kind.
    pub fn with_key(key: KeyKind) -> Self {
        Self { key, ..Self::default() }
    }
}

/// The key usage of a well-formed CA certificate.
pub fn ca_key_usage() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature]
}

/// A self-signed root CA.
pub struct Root {
    /// Subject common name.
    pub name: String,
    /// The certificate (PEM).
    pub cert_pem: String,
    key_pem: String,
    params: CertificateParams,
}

impl Root {
    fn issuer(&self) -> Issuer<'static, KeyPair> {
        Issuer::new(self.params.clone(), KeyPair::from_pem(&self.key_pem).expect("root key"))
    }

    /// The root's private key (PKCS#8 PEM), for tests that need to sign more material themselves.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl std::fmt::Debug for Root {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").field("name", &self.name).finish_non_exhaustive()
    }
}

/// An intermediate CA (or a broken variant of one) and the chain up to its root.
pub struct Intermediate {
    /// The certificate (PEM): the content of `ca-cert.pem`.
    pub cert_pem: String,
    /// Its private key in the encoding of [`Intermediate::key_kind`]: the content of `ca-key.pem`.
    pub key_pem: String,
    /// Encoding of `key_pem`.
    pub key_kind: KeyKind,
    /// This certificate, every intermediate above it, then the root: the content of `cert-chain.pem`.
    pub cert_chain: String,
    /// PEM of the root this intermediate chains to.
    pub root_cert_pem: String,
    pkcs8_key_pem: String,
    params: CertificateParams,
}

impl Intermediate {
    fn issuer(&self) -> Issuer<'static, KeyPair> {
        Issuer::new(self.params.clone(), KeyPair::from_pem(&self.pkcs8_key_pem).expect("intermediate key"))
    }
}

impl std::fmt::Debug for Intermediate {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intermediate").field("key_kind", &self.key_kind).finish_non_exhaustive()
    }
}

/// The four objects of an Istio plug-in CA, as stored in Key Vault and in the `cacerts` Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PluginCa {
    /// `root-cert.pem`: every trusted root, concatenated.
    pub root_cert: String,
    /// `ca-cert.pem`: the intermediate.
    pub ca_cert: String,
    /// `ca-key.pem`: its private key.
    pub ca_key: String,
    /// `cert-chain.pem`: the intermediate, further intermediates, then its root.
    pub cert_chain: String,
}

impl std::fmt::Debug for PluginCa {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCa")
            .field("root_cert", &self.root_cert)
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"<redacted>")
            .field("cert_chain", &self.cert_chain)
            .finish()
    }
}

impl PluginCa {
    /// The Key Vault secret names and values: `root-cert`, `ca-cert`, `ca-key`, `cert-chain`.
    pub fn vault_secrets(&self) -> [(&'static str, &str); 4] {
        [
            ("root-cert", &self.root_cert),
            ("ca-cert", &self.ca_cert),
            ("ca-key", &self.ca_key),
            ("cert-chain", &self.cert_chain),
        ]
    }

    /// The `cacerts` Secret keys and values: `root-cert.pem`, `ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`.
    pub fn secret_files(&self) -> [(&'static str, &str); 4] {
        [
            ("root-cert.pem", &self.root_cert),
            ("ca-cert.pem", &self.ca_cert),
            ("ca-key.pem", &self.ca_key),
            ("cert-chain.pem", &self.cert_chain),
        ]
    }

    /// Writes the four `*.pem` files (the `cacerts` key names) into `dir`, creating it if needed.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, content) in self.secret_files() {
            std::fs::write(dir.join(name), content)?;
        }
        Ok(())
    }
}

/// A factory of test PKI material at a chosen "now".
#[derive(Clone, Copy, Debug)]
pub struct TestPki {
    now: i64,
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    /// Material anchored at the fixed [`NOW`] (for code that takes `now` as a parameter).
    pub fn new() -> Self {
        Self::at(NOW)
    }

    /// Material anchored at `now` (Unix seconds).
    pub fn at(now: i64) -> Self {
        Self { now }
    }

    /// Material anchored at the real clock, for end-to-end tests of the real binary.
    pub fn current() -> Self {
        Self::at(jiff::Timestamp::now().as_second())
    }

    /// The "now" this PKI is anchored at (Unix seconds).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Root "Root A" (EC P-256, 10 years). Every call makes a new key.
    pub fn root_a(&self) -> Root {
        self.root("Root A")
    }

    /// Root "Root B" (EC P-256, 10 years). Every call makes a new key.
    pub fn root_b(&self) -> Root {
        self.root("Root B")
    }

    /// A valid root with the given common name (EC P-256, 10 years).
    pub fn root(&self, name: &str) -> Root {
        self.root_with(name, KeyKind::EcPkcs8, Validity::Years(10))
    }

    /// A root with a chosen key algorithm and validity (e.g. an expired root).
    pub fn root_with(&self, name: &str, key: KeyKind, validity: Validity) -> Root {
        let key_pair = new_key(key);
        let mut params = self.base_params(name, validity);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = ca_key_usage();
        let cert = params.self_signed(&key_pair).expect("self-sign root");
        Root { name: name.to_owned(), cert_pem: cert.pem(), key_pem: key_pair.serialize_pem(), params }
    }

    /// An intermediate signed by `root`.
    pub fn intermediate(&self, root: &Root, opts: IntermediateOpts) -> Intermediate {
        self.issue(&root.issuer(), &root.cert_pem, &root.cert_pem, "", opts)
    }

    /// A valid intermediate signed by `root` with default options.
    pub fn default_intermediate(&self, root: &Root) -> Intermediate {
        self.intermediate(root, IntermediateOpts::default())
    }

    /// An intermediate signed by another intermediate; its `cert_chain` lists it, `parent`'s chain, then the root.
    pub fn sub_intermediate(&self, parent: &Intermediate, opts: IntermediateOpts) -> Intermediate {
        self.issue(&parent.issuer(), &parent.root_cert_pem, "", &parent.cert_chain, opts)
    }

    fn issue(
        &self,
        issuer: &Issuer<'static, KeyPair>,
        root_pem: &str,
        root_tail: &str,
        parent_chain: &str,
        opts: IntermediateOpts,
    ) -> Intermediate {
        let key_pair = new_key(opts.key);
        let mut params = self.base_params(&opts.common_name, opts.validity);
        params.is_ca = if opts.is_ca { IsCa::Ca(BasicConstraints::Unconstrained) } else { IsCa::ExplicitNoCa };
        params.key_usages = opts.key_usage.clone();
        params.extended_key_usages = opts.extended_key_usages.clone();
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key_pair, issuer).expect("sign intermediate");
        let cert_pem = cert.pem();
        let pkcs8_key_pem = key_pair.serialize_pem();
        let key_pem = encode_key(&key_pair, opts.key);
        let cert_chain = format!("{cert_pem}{parent_chain}{root_tail}");
        Intermediate {
            cert_pem,
            key_pem,
            key_kind: opts.key,
            cert_chain,
            root_cert_pem: root_pem.to_owned(),
            pkcs8_key_pem,
            params,
        }
    }

    /// Assembles the four plug-in CA objects: `root-cert` = the given roots concatenated in order,
    /// `ca-cert`/`ca-key`/`cert-chain` from `intermediate`. Pass roots that did not sign the intermediate
    /// for the "intermediate from another root" variant.
    pub fn plugin_ca(&self, root_bundle: &[&Root], intermediate: &Intermediate) -> PluginCa {
        PluginCa {
            root_cert: root_bundle.iter().map(|r| r.cert_pem.as_str()).collect(),
            ca_cert: intermediate.cert_pem.clone(),
            ca_key: intermediate.key_pem.clone(),
            cert_chain: intermediate.cert_chain.clone(),
        }
    }

    /// A complete valid plug-in CA: a new root and an intermediate with default options.
    pub fn valid_plugin_ca(&self) -> (Root, PluginCa) {
        let root = self.root_a();
        let inter = self.default_intermediate(&root);
        let ca = self.plugin_ca(&[&root], &inter);
        (root, ca)
    }

    fn base_params(&self, common_name: &str, validity: Validity) -> CertificateParams {
        let (nb, na) = validity.bounds(self.now);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, "cacerts-sync test PKI");
        params.not_before = time::OffsetDateTime::from_unix_timestamp(nb).expect("not_before");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(na).expect("not_after");
        params.serial_number = Some(SerialNumber::from(random_serial()));
        params.key_identifier_method = KeyIdMethod::Sha256;
        params
    }
}

fn random_serial() -> Vec<u8> {
    let mut bytes: [u8; 16] = rand::random();
    // Positive INTEGER, no leading zero byte issue.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    bytes.to_vec()
}

static RSA_POOL: [OnceLock<String>; RSA_POOL_SIZE] = [const { OnceLock::new() }; RSA_POOL_SIZE];
static RSA_NEXT: AtomicUsize = AtomicUsize::new(0);

fn new_key(kind: KeyKind) -> KeyPair {
    if kind.is_rsa() {
        let slot = RSA_NEXT.fetch_add(1, Ordering::Relaxed) % RSA_POOL_SIZE;
        let pem = RSA_POOL[slot].get_or_init(|| {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
                .expect("generate RSA key")
                .serialize_pem()
        });
        KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256).expect("load RSA key")
    } else {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate EC key")
    }
}

/// Encodes a private key in the PEM flavour of `kind`.
pub fn encode_key(key: &KeyPair, kind: KeyKind) -> String {
    let pkcs8 = key.serialize_der();
    match kind {
        KeyKind::EcPkcs8 | KeyKind::RsaPkcs8 => key.serialize_pem(),
        KeyKind::RsaPkcs1 => pem_encode("RSA PRIVATE KEY", &pkcs8_inner_key(&pkcs8)),
        KeyKind::EcSec1 => pem_encode("EC PRIVATE KEY", &pkcs8_ec_to_sec1(&pkcs8)),
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Splits one DER TLV off `d`: (tag, whole TLV, contents, rest).
fn der_next(d: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let tag = d[0];
    let (len, hdr) = if d[1] & 0x80 == 0 {
        (usize::from(d[1]), 2)
    } else {
        let n = usize::from(d[1] & 0x7f);
        let len = d[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    (tag, &d[..hdr + len], &d[hdr..hdr + len], &d[hdr + len..])
}

fn der_encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// PKCS#8 `PrivateKeyInfo` → the algorithm-specific key inside (`RSAPrivateKey` = PKCS#1 for RSA).
fn pkcs8_inner_key(pkcs8: &[u8]) -> Vec<u8> {
    let (_, _, seq, _) = der_next(pkcs8);
    let (_, _, _version, rest) = der_next(seq);
    let (_, _, _alg, rest) = der_next(rest);
    let (tag, _, key, _) = der_next(rest);
    assert_eq!(tag, 0x04, "PKCS#8 privateKey must be an OCTET STRING");
    key.to_vec()
}

/// PKCS#8 EC key → SEC1 `ECPrivateKey` that carries the named curve in `[0] parameters`, as OpenSSL writes
/// it (PKCS#8 moves the curve into the algorithm identifier, so the inner key may lack it).
fn pkcs8_ec_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (_, _, seq, _) = der_next(pkcs8);
    let (_, _, _version, rest) = der_next(seq);
    let (_, _, alg, _) = der_next(rest);
    let (_, _, _ec_oid, alg_rest) = der_next(alg);
    let (_, curve_oid_tlv, _, _) = der_next(alg_rest);
    let inner = pkcs8_inner_key(pkcs8);
    let (_, _, ec, _) = der_next(&inner);
    let (_, version, _, rest) = der_next(ec);
    let (_, private, _, mut rest) = der_next(rest);
    let mut params = None;
    let mut public = None;
    while !rest.is_empty() {
        let (tag, tlv, _, r) = der_next(rest);
        match tag {
            0xa0 => params = Some(tlv.to_vec()),
            0xa1 => public = Some(tlv.to_vec()),
            _ => {}
        }
        rest = r;
    }
    let mut body = Vec::new();
    body.extend_from_slice(version);
    body.extend_from_slice(private);
    body.extend(params.unwrap_or_else(|| der_encode(0xa0, curve_oid_tlv)));
    if let Some(p) = public {
        body.extend(p);
    }
    der_encode(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_der(pem: &str) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    #[test]
    fn every_key_kind_has_its_pem_label_and_loads_back() {
        let pki = TestPki::new();
        let root = pki.root_a();
        for kind in KeyKind::ALL {
            let inter = pki.intermediate(&root, IntermediateOpts::with_key(kind));
            let label = match kind {
                KeyKind::EcPkcs8 | KeyKind::RsaPkcs8 => "-----BEGIN PRIVATE KEY-----",
                KeyKind::EcSec1 => "-----BEGIN EC PRIVATE KEY-----",
                KeyKind::RsaPkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
            };
            assert!(inter.key_pem.starts_with(label), "{kind:?}");
            if matches!(kind, KeyKind::EcPkcs8 | KeyKind::RsaPkcs8) {
                KeyPair::from_pem(&inter.key_pem).unwrap();
            }
        }
    }

    #[test]
    fn sec1_key_carries_the_p256_curve_parameters() {
        let pki = TestPki::new();
        let inter = pki.intermediate(&pki.root_a(), IntermediateOpts::with_key(KeyKind::EcSec1));
        let der = cert_der(&inter.key_pem);
        // OID 1.2.840.10045.3.1.7 (prime256v1) inside [0].
        let oid = [0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        assert!(der.windows(oid.len()).any(|w| w == oid));
    }

    #[test]
    fn cert_chain_lists_the_intermediate_then_its_root() {
        let pki = TestPki::new();
        let root = pki.root_a();
        let inter = pki.default_intermediate(&root);
        assert_eq!(inter.cert_chain, format!("{}{}", inter.cert_pem, root.cert_pem));
        let sub = pki.sub_intermediate(&inter, IntermediateOpts::default());
        assert_eq!(sub.cert_chain, format!("{}{}{}", sub.cert_pem, inter.cert_pem, root.cert_pem));
    }

    #[test]
    fn plugin_ca_concatenates_the_root_bundle_in_order() {
        let pki = TestPki::new();
        let (a, b) = (pki.root_a(), pki.root_b());
        let inter = pki.default_intermediate(&a);
        let ca = pki.plugin_ca(&[&a, &b], &inter);
        assert_eq!(ca.root_cert, format!("{}{}", a.cert_pem, b.cert_pem));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn write_dir_writes_the_four_cacerts_files() {
        let dir = std::env::temp_dir().join(format!("pki-test-{}", rand::random::<u64>()));
        let (_, ca) = TestPki::new().valid_plugin_ca();
        ca.write_dir(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("ca-key.pem")).unwrap(), ca.ca_key);
        assert_eq!(std::fs::read_to_string(dir.join("cert-chain.pem")).unwrap(), ca.cert_chain);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn validity_windows_are_relative_to_now() {
        let pki = TestPki::at(1_000_000_000);
        assert_eq!(Validity::Expired.bounds(pki.now()).1, 1_000_000_000 - DAY);
        assert_eq!(Validity::NotYetValid.bounds(pki.now()).0, 1_000_000_000 + DAY);
        let inter =
            pki.intermediate(&pki.root_a(), IntermediateOpts { validity: Validity::Expired, ..Default::default() });
        // The DER carries UTCTime 2001-09-08 (now − 1 day = 2001-09-08T01:46:40Z).
        let der = cert_der(&inter.cert_pem);
        assert!(der.windows(12).any(|w| w == b"010908014640"));
    }
}
