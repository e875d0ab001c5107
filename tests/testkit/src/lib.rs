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
