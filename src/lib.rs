//! cacerts-sync keeps an Istio mesh's plug-in CA in step with Azure Key Vault.
//!
//! ```text
//! Key Vault ─fetch─▶ bundle::validate ─▶ cacerts Secret ─root changed?─▶ istiod rollout restart
//! ```
//!
//! - [`cli`] parses flags (each also an env var) and [`config`] validates them into one configuration.
//! - [`source`] fetches the four values: Key Vault through the official SDK, or a directory.
//! - [`bundle`] is pure: it parses, validates and fingerprints the material against an injected "now".
//! - [`sink`] writes the `cacerts` Secret (or a directory) only when the content differs.
//! - [`restart`] rolls every istiod Deployment once per root fingerprint; [`istiod_roots`] reads which roots
//!   istiod serves (`istio-ca-root-cert`).
//! - [`fence`] stops a replica that may have lost its Lease from writing.
//! - [`rotation`] is pure too: the rotation history on `cacerts`, the time gates that refuse unsafe runbook
//!   steps, and the assessment `status` prints; [`observe`] reads a cluster into the view it assesses.
//! - [`sync`] is one pass; [`run`] runs it once or in a loop ([`run::watch`], with [`admin`]'s health and
//!   metrics).
//! - [`shell`] prints completions and man pages; [`plugin`] makes the binary a kubectl plugin.
//! - [`fleet`] reads many clusters at once: `fleet status` and the pre-upload `fleet check`.
//! - [`error`] classifies failures into the exit codes every subcommand shares.

pub mod admin;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod error;
pub mod fence;
pub mod fleet;
pub mod inspect;
pub mod istiod_roots;
pub mod k8s;
pub mod metrics;
pub mod observe;
pub mod plugin;
pub mod restart;
pub mod rotation;
pub mod run;
pub mod shell;
pub mod sink;
pub mod source;
pub mod status;
pub mod sync;
pub mod telemetry;
