//! Reads what a rotation assessment needs from one cluster into a plain [`ClusterView`].
//!
//! # API (stable: add, don't rename)
//! - [`read`]`(client, &Target) -> Result<ClusterView, KubeError>`: `cacerts`, the istiod Deployments (by label
//!   selector: one list; by names: concurrent gets) and the namespace's `istio-ca-root-cert` ConfigMap (one
//!   namespaced get), the three kinds concurrently: one round trip per object kind.
//! - [`ClusterView::from_objects`]: the same from objects already at hand (watch caches, tests). Pure.
//! - [`crate::rotation::assess`] turns the view into an [`Assessment`](crate::rotation::Assessment).
//!
//! The view holds the `cacerts` material including `ca-key.pem` (validation checks the key against `ca-cert`),
//! so it is deliberately neither `Debug`-printed whole nor serialized: serialize the assessment instead.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};

use crate::bundle::RawMaterial;
use crate::config::IstiodSelector;
use crate::istiod_roots;
use crate::k8s::{KubeError, RESTARTED_AT_ANNOTATION};
use crate::restart::{recorded_fingerprint, rollout_progress};
use crate::sink::secret::{is_managed, material_of};

/// The ConfigMap istiod writes into every namespace with the roots it serves ([`istiod_roots::CONFIGMAP`]).
pub const ROOT_CERT_CONFIGMAP: &str = istiod_roots::CONFIGMAP;
/// Its key.
pub const ROOT_CERT_CONFIGMAP_KEY: &str = istiod_roots::KEY;

/// Which objects to read.
#[derive(Clone, Debug)]
pub struct Target {
    pub namespace: String,
    /// The `cacerts` Secret's name.
    pub secret: String,
    pub istiod: IstiodSelector,
}

/// The `cacerts` Secret as the rules need it.
#[derive(Clone)]
pub struct CacertsObject {
    /// The four values (missing keys read as empty).
    pub material: RawMaterial,
    /// Its annotations (the rotation history among them).
    pub annotations: BTreeMap<String, String>,
    /// It carries cacerts-sync's managed-by label.
    pub managed: bool,
}

/// One istiod Deployment.
#[derive(Clone, Debug)]
pub struct IstiodDeployment {
    pub name: String,
    /// `cacerts-sync.io/root-fingerprint` on its metadata.
    pub recorded_root_fingerprint: Option<String>,
    /// `kubectl.kubernetes.io/restartedAt` on its pod template.
    pub restarted_at: Option<String>,
    pub generation: Option<i64>,
    /// `kubectl rollout status` would report it done.
    pub rollout_complete: bool,
}

/// What one cluster looks like, as far as the rotation is concerned.
#[derive(Clone)]
pub struct ClusterView {
    pub namespace: String,
    /// The `cacerts` Secret's name.
    pub secret: String,
    /// `None`: the Secret does not exist.
    pub cacerts: Option<CacertsObject>,
    /// The istiod Deployments the selector or names pick, by name.
    pub istiod: Vec<IstiodDeployment>,
    /// `root-cert.pem` of `istio-ca-root-cert` (`None`: no such ConfigMap or key, e.g. istiod never ran).
    pub served_roots_pem: Option<String>,
}

impl ClusterView {
    /// Builds the view from objects at hand. Pure.
    pub fn from_objects(
        namespace: &str,
        secret_name: &str,
        secret: Option<&Secret>,
        deployments: &[Deployment],
        root_cert: Option<&ConfigMap>,
    ) -> Self {
        let cacerts = secret.map(|s| CacertsObject {
            material: material_of(s),
            annotations: s.metadata.annotations.clone().unwrap_or_default(),
            managed: is_managed(s),
        });
        let mut istiod: Vec<IstiodDeployment> = deployments
            .iter()
            .map(|d| IstiodDeployment {
                name: d.metadata.name.clone().unwrap_or_default(),
                recorded_root_fingerprint: recorded_fingerprint(d).map(str::to_owned),
                restarted_at: d
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.annotations.as_ref())
                    .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
                    .cloned(),
                generation: d.metadata.generation,
                rollout_complete: rollout_progress(d).0,
            })
            .collect();
        istiod.sort_by(|a, b| a.name.cmp(&b.name));
        let served_roots_pem = root_cert.and_then(|c| c.data.as_ref()?.get(ROOT_CERT_CONFIGMAP_KEY).cloned());
        Self { namespace: namespace.into(), secret: secret_name.into(), cacerts, istiod, served_roots_pem }
    }
}

/// Reads `cacerts`, the istiod Deployments and `istio-ca-root-cert`, concurrently.
pub async fn read(client: kube::Client, target: &Target) -> Result<ClusterView, KubeError> {
    let ns = &target.namespace;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let secret = async {
        secrets
            .get_opt(&target.secret)
            .await
            .map_err(|e| KubeError::new(format!("get secret {ns}/{}", target.secret), e))
    };
    let configmap = istiod_roots::get(&client, ns);
    let istiod = async {
        match &target.istiod {
            IstiodSelector::Label(selector) => deployments
                .list(&ListParams::default().labels(selector))
                .await
                .map(|l| l.items)
                .map_err(|e| KubeError::new(format!("list deployments in {ns} with selector {selector:?}"), e)),
            IstiodSelector::Names(names) => {
                let deployments = &deployments;
                let gets = names.iter().map(|name| async move {
                    deployments
                        .get_opt(name)
                        .await
                        .map_err(|e| KubeError::new(format!("get deployment {ns}/{name}"), e))
                });
                let found = futures::future::try_join_all(gets).await?;
                Ok(found.into_iter().flatten().collect())
            }
        }
    };
    let (secret, configmap, istiod) = tokio::try_join!(secret, configmap, istiod)?;
    Ok(ClusterView::from_objects(ns, &target.secret, secret.as_ref(), &istiod, configmap.as_ref()))
}
