//! rcgen-made PKI for the bundle unit tests: roots, intermediates and keys with chosen
//! validity, CA flags, key usages and EKUs, plus helpers to assemble [`RawMaterial`].
//!
//! ECDSA P-256 throughout (fast to generate); RSA and the other key formats come from the
//! openssl fixtures in `tests/fixtures/openssl/`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SignatureAlgorithm, date_time_ymd,
};

use super::RawMaterial;

/// The fixed "now" of the rcgen tests: 2030-06-01T00:00:00Z.
pub(crate) fn now() -> jiff::Timestamp {
    "2030-06-01T00:00:00Z".parse().expect("valid timestamp")
}

/// A certificate with its key and the parameters it was made from (to sign further certificates).
pub(crate) struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

impl Ca {
    pub fn pem(&self) -> &str {
        &self.pem
    }
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
    /// The private key as PKCS#8 DER.
    pub fn key_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }
}

/// What to issue. Defaults: a CA valid 2020-01-01..2040-01-01 with keyCertSign+cRLSign.
#[derive(Clone)]
pub(crate) struct Spec {
    pub cn: String,
    pub not_before: (i32, u8, u8),
    pub not_after: (i32, u8, u8),
    pub is_ca: IsCa,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    pub alg: &'static SignatureAlgorithm,
}

impl Spec {
    pub fn ca(cn: &str) -> Self {
        Spec {
            cn: cn.to_owned(),
            not_before: (2020, 1, 1),
            not_after: (2040, 1, 1),
            is_ca: IsCa::Ca(BasicConstraints::Unconstrained),
            key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            ekus: Vec::new(),
            alg: &PKCS_ECDSA_P256_SHA256,
        }
    }
    pub fn valid(mut self, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
    pub fn not_ca(mut self) -> Self {
        self.is_ca = IsCa::ExplicitNoCa;
        self
    }
    pub fn path_len(mut self, n: u8) -> Self {
        self.is_ca = IsCa::Ca(BasicConstraints::Constrained(n));
        self
    }
    pub fn key_usages(mut self, ku: Vec<KeyUsagePurpose>) -> Self {
        self.key_usages = ku;
        self
    }
    pub fn ekus(mut self, ekus: Vec<ExtendedKeyUsagePurpose>) -> Self {
        self.ekus = ekus;
        self
    }
    pub fn p384(mut self) -> Self {
        self.alg = &PKCS_ECDSA_P384_SHA384;
        self
    }

    /// Issues the certificate, self-signed when `issuer` is `None`.
    pub fn issue(&self, issuer: Option<&Ca>) -> Ca {
        let key = KeyPair::generate_for(self.alg).expect("generate key");
        self.issue_with_key(key, issuer)
    }

    /// Issues the certificate for an existing key (PKCS#8 DER), e.g. to re-issue a root.
    pub fn issue_for_key(&self, key_der: &[u8], issuer: Option<&Ca>) -> Ca {
        let key = KeyPair::try_from(key_der).expect("parse key");
        self.issue_with_key(key, issuer)
    }

    fn issue_with_key(&self, key: KeyPair, issuer: Option<&Ca>) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "cacerts-sync tests");
        params.distinguished_name.push(DnType::CommonName, self.cn.clone());
        let (y, m, d) = self.not_before;
        params.not_before = date_time_ymd(y, m, d);
        let (y, m, d) = self.not_after;
        params.not_after = date_time_ymd(y, m, d);
        params.is_ca = self.is_ca;
        params.key_usages = self.key_usages.clone();
        params.extended_key_usages = self.ekus.clone();
        let cert = match issuer {
            Some(ca) => params.signed_by(&key, &Issuer::from_params(&ca.params, &ca.key)),
            None => params.self_signed(&key),
        }
        .expect("sign certificate");
        Ca { der: cert.der().to_vec(), pem: cert.pem(), params, key }
    }
}

/// A root and an intermediate under it.
pub(crate) struct Pki {
    pub root: Ca,
    pub int: Ca,
}

impl Pki {
    pub fn new() -> Self {
        let root = Spec::ca("Test Root").issue(None);
        let int = Spec::ca("Test Intermediate").path_len(0).issue(Some(&root));
        Pki { root, int }
    }

    /// The consistent four-secret material: chain = intermediate + root.
    pub fn material(&self) -> RawMaterial {
        material(&self.root, &self.int)
    }
}

/// root-cert = root, ca-cert = int, ca-key = int's key, cert-chain = int + root.
pub(crate) fn material(root: &Ca, int: &Ca) -> RawMaterial {
    RawMaterial {
        root_cert: root.pem().as_bytes().to_vec(),
        ca_cert: int.pem().as_bytes().to_vec(),
        ca_key: int.key_pem().into_bytes(),
        cert_chain: format!("{}{}", int.pem(), root.pem()).into_bytes(),
    }
}
