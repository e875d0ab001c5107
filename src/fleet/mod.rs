//! Many clusters that share one root: `fleet status` and the pre-upload `fleet check`.
//!
//! ```text
//! kubeconfig contexts ─concurrently─▶ observe::read ─▶ ClusterView ─rotation::assess─▶ Assessment ─┐
//!                                                                                                 ├─▶ verdict (pure)
//!                                         per-cluster rows ◀──────────────────────────────────────┘
//! material to upload ─bundle::validate─▶ CaFacts ─┬─ rotation::evaluate per cluster and across ─▶ check::gates (pure)
//! ```
//!
//! One read model: the per-cluster reading and assessment are `status`'s own ([`crate::observe`],
//! [`crate::rotation`]); this module adds only what needs several clusters at once.
//!
//! - [`cli`] and [`config`]: flags and their validation.
//! - [`clusters`]: the kubeconfig, a client per context, concurrent bounded reads (the I/O edge).
//! - [`verdict`]: the fleet verdict over the per-cluster assessments (pure).
//! - [`check`]: the rotation gates across clusters (pure).
//! - [`render`]: the text table of `fleet status`.
//! - [`run`]: the two commands, their output and exit codes.

pub mod check;
pub mod cli;
pub mod clusters;
pub mod config;
pub mod render;
pub mod run;
pub mod verdict;

#[cfg(test)]
mod tests;
