//! The I/O edge of `fleet`: the kubeconfig, one Kubernetes client per context, and every cluster read
//! concurrently into the same [`ClusterView`] that `status` reads (through [`crate::observe::read`]), each bounded
//! by `--timeout`. A cluster that can't be read becomes a [`ClusterError`] value, never a failed command.

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Classify, FailureClass, chain};
use crate::k8s::KubeError;
use crate::observe::{self, ClusterView, Target};

use super::config::{ClustersConfig, Selection};

/// One cluster of the fleet: its context (also its name) and the namespace of `cacerts` in it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterRef {
    /// The kubeconfig context, which names the cluster.
    pub name: String,
    pub namespace: String,
}

/// Why a cluster could not be read. Serialized as `{"class": "...", "message": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterError {
    /// `transient` (unreachable, timed out, 5xx), `auth` (credentials refused), `usage` (e.g. the kubeconfig
    /// entry is incomplete).
    pub class: FailureClass,
    /// One line: "failed to <verb> <object>: <cause>".
    pub message: String,
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A problem with the kubeconfig or the selection: exit 2 before any request.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("failed to read the kubeconfig {}", .path.as_deref().unwrap_or("(KUBECONFIG or ~/.kube/config)"))]
    Read {
        path: Option<String>,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("context {name:?} is not in the kubeconfig (it has: {known})")]
    UnknownContext { name: String, known: String },
    #[error("the kubeconfig has no contexts")]
    NoContexts,
}

/// Loads the kubeconfig: `--kubeconfig`, else `KUBECONFIG` (several files merged, as kubectl does), else
/// `~/.kube/config`.
pub fn load(path: Option<&std::path::Path>) -> Result<Kubeconfig, SelectionError> {
    let read = match path {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    };
    read.map_err(|source| SelectionError::Read { path: path.map(|p| p.display().to_string()), source })
}

/// The clusters the selection names, in the order given (`--all-contexts`: the kubeconfig's order).
pub fn select(kubeconfig: &Kubeconfig, config: &ClustersConfig) -> Result<Vec<ClusterRef>, SelectionError> {
    let known: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
    match &config.selection {
        Selection::All => {
            if known.is_empty() {
                return Err(SelectionError::NoContexts);
            }
            Ok(known.iter().map(|n| ClusterRef { name: n.to_string(), namespace: config.namespace.clone() }).collect())
        }
        Selection::Contexts(specs) => specs
            .iter()
            .map(|s| {
                if !known.contains(&s.name.as_str()) {
                    return Err(SelectionError::UnknownContext { name: s.name.clone(), known: known.join(", ") });
                }
                Ok(ClusterRef {
                    name: s.name.clone(),
                    namespace: s.namespace.clone().unwrap_or_else(|| config.namespace.clone()),
                })
            })
            .collect(),
    }
}

/// A client for one context. The timeouts bound connecting and each read, so a dead cluster can't hold the
/// fleet up longer than `--timeout`.
async fn client(kubeconfig: &Kubeconfig, context: &str, timeout: Duration) -> Result<kube::Client, KubeError> {
    let options = KubeConfigOptions { context: Some(context.to_owned()), ..Default::default() };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
        .await
        .map_err(|e| KubeError::new(format!("load context {context:?}"), kube::Error::InferKubeconfig(e)))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    kube::Client::try_from(config).map_err(|e| KubeError::new(format!("create a client for context {context:?}"), e))
}

/// Reads one cluster, bounded by `timeout`.
pub async fn read_one(
    kubeconfig: &Kubeconfig,
    cluster: &ClusterRef,
    config: &ClustersConfig,
) -> Result<ClusterView, ClusterError> {
    let target =
        Target { namespace: cluster.namespace.clone(), secret: config.secret.clone(), istiod: config.istiod.clone() };
    let read = async {
        let client = client(kubeconfig, &cluster.name, config.timeout).await?;
        observe::read(client, &target).await
    };
    match tokio::time::timeout(config.timeout, read).await {
        Ok(Ok(view)) => Ok(view),
        Ok(Err(e)) => Err(ClusterError { class: e.class(), message: chain(&e) }),
        Err(_) => Err(ClusterError {
            class: FailureClass::Transient,
            message: format!(
                "failed to read cluster {:?}: no answer within --timeout {}",
                cluster.name,
                humantime::format_duration(config.timeout)
            ),
        }),
    }
}

/// Reads every cluster concurrently; the results keep the clusters' order.
pub async fn read_all(
    kubeconfig: &Kubeconfig,
    clusters: &[ClusterRef],
    config: &ClustersConfig,
) -> Vec<Result<ClusterView, ClusterError>> {
    futures::future::join_all(clusters.iter().map(|c| read_one(kubeconfig, c, config))).await
}
