//! A throwaway test CA and the HTTPS accept loop that both local servers use.
//!
//! The real services are only reached over TLS, and the official clients refuse anything else
//! (the Azure SDK rejects non-`https` vault and authority URLs), so the test servers serve HTTPS
//! with a leaf certificate signed by a separate CA. webpki rejects a self-signed CA certificate
//! used as a server certificate (`CaUsedAsEndEntity`), hence the two levels.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Subject alternative names every test server certificate carries.
///
/// `*.vault.test` and `login.test` let a client keep Key Vault challenge-resource verification on by
/// resolving those names to 127.0.0.1 itself.
pub const DEFAULT_SANS: &[&str] = &["127.0.0.1", "localhost", "*.vault.test", "login.test"];

/// A test certificate authority that signs server certificates for the local servers.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// Creates a fresh CA (ECDSA P-256). Every call gives a different key, so a client that trusts
    /// one instance does not trust another: that is how the untrusted-CA tests work.
    pub fn new(common_name: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, "cacerts-sync test ground");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-sign CA");
        let cert_pem = cert.pem();
        Self { cert_pem, issuer: Issuer::new(params, key) }
    }

    /// The CA certificate in PEM, for `SSL_CERT_FILE` or a kubeconfig's `certificate-authority-data`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, &self.cert_pem)
    }

    /// Issues a server leaf (CA:FALSE, EKU serverAuth) for `sans` (IP literals become IP SANs) and returns a
    /// rustls server configuration that presents it.
    pub fn server_config(&self, sans: &[&str]) -> Arc<rustls::ServerConfig> {
        let (cert_pem, key_pem) = self.issue_server_leaf(sans);
        let certs = rustls_pemfile_certs(&cert_pem);
        let key = rustls::pki_types::PrivateKeyDer::try_from(pem_block_der(&key_pem).expect("leaf key PEM"))
            .expect("leaf key DER");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server certificate");
        Arc::new(config)
    }

    /// Issues a server leaf and returns `(cert_pem, key_pem)`.
    pub fn issue_server_leaf(&self, sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("generate leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, sans.first().copied().unwrap_or("localhost"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().expect("DNS SAN")),
            })
            .collect();
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

fn pem_block_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let end = rest[start..].find(end_marker).expect("END CERTIFICATE") + start + end_marker.len();
        out.push(rustls::pki_types::CertificateDer::from(pem_block_der(&rest[start..end]).expect("certificate PEM")));
        rest = &rest[end..];
    }
    out
}

/// A running HTTPS server: its address and the task that accepts connections.
/// Dropping it does not stop the server; call [`Served::abort`].
pub struct Served {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

impl Served {
    /// Stops accepting connections (open connections finish on their own).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Serves `router` over HTTPS on `listener` until the returned task is aborted.
pub fn serve_https(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: axum::Router) -> Served {
    let addr = listener.local_addr().expect("listener address");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _peer)) = listener.accept().await else { continue };
            // Real front ends answer without Nagle's delay; without this, a response written in two segments
            // meets the client's delayed ACK and stalls for ~40 ms, which is not the service's behaviour.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                // A client that rejects our certificate (the untrusted-CA tests) ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let io = hyper_util::rt::TokioIo::new(tls);
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Served { addr, task }
}

/// Serves `router` over plain HTTP (the managed-identity endpoint may be `http://`, as on App Service).
pub fn serve_http(listener: TcpListener, router: axum::Router) -> Served {
    let addr = listener.local_addr().expect("listener address");
    let task = tokio::spawn(async move {
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, router).await;
    });
    Served { addr, task }
}
