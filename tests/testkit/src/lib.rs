//! Test ground for cacerts-sync.
//!
//! Neither Azure Key Vault/Entra ID nor a Kubernetes API server can be reached from our machines, so every
//! test of those paths runs against the local servers in this crate. They speak the real wire protocols and are
//! driven by the real, unmodified clients (the official Azure SDK for Rust, kube-rs, kubectl).
//!
//! - [`tls`]: a test CA (rcgen) and an HTTPS server loop shared by both servers.
//! - [`pki`]: Istio plug-in CA material (roots, intermediates, chains, broken variants) at a fixed "now".
//! - [`keyvault`]: the Key Vault + Entra + managed-identity emulator.
//! - [`kube`]: the Kubernetes API test server.

pub mod keyvault;
pub mod kube;
pub mod pki;
pub mod tls;

/// A random (version 4) UUID, as the real services assign them (object uids, request and trace ids).
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
