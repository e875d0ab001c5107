//! Writes the `cacerts` Secret: only when the content differs, in one request, never half of it.
//!
//! An existing Secret is updated with a JSON merge patch that carries `metadata.resourceVersion`, which the API
//! server treats as a precondition (409 Conflict if someone else wrote in between). That keeps every key,
//! label and annotation we don't own, and two writers can't interleave. On a conflict the Secret is re-read
//! and the decision made again, a bounded number of times.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use crate::bundle::{RawMaterial, SecretRole};
use crate::error::{Classify, FailureClass};
use crate::k8s::{KubeError, MANAGED_BY_LABEL, MANAGER};

use super::WriteAction;

/// Write attempts when the Secret keeps changing under us.
const MAX_CONFLICT_RETRIES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(
        "secret {namespace}/{name} has type {found:?}, but istiod's cacerts must be Opaque; a Secret's type is immutable, so delete it (kubectl -n {namespace} delete secret {name}) and let cacerts-sync recreate it"
    )]
    WrongType { namespace: String, name: String, found: String },
    #[error(
        "secret {namespace}/{name} exists but is not managed by cacerts-sync, and --no-adopt is set; to let cacerts-sync take it over, drop --no-adopt, or label it: kubectl -n {namespace} label secret {name} {MANAGED_BY_LABEL}={MANAGER}"
    )]
    NotAdopted { namespace: String, name: String },
    #[error("failed to update secret {namespace}/{name}: it kept changing under us ({attempts} conflicting writes)")]
    Conflicts { namespace: String, name: String, attempts: u32 },
    #[error(
        "did not update secret {namespace}/{name}: someone else changed its data while we wrote it; the next pass decides again on what it holds now"
    )]
    ChangedUnderUs { namespace: String, name: String },
}

impl Classify for SecretError {
    fn class(&self) -> FailureClass {
        match self {
            SecretError::Kube(e) => e.class(),
            SecretError::WrongType { .. } | SecretError::NotAdopted { .. } => FailureClass::Usage,
            SecretError::Conflicts { .. } | SecretError::ChangedUnderUs { .. } => FailureClass::Transient,
        }
    }
}

/// The result of a write.
#[derive(Clone, Debug)]
pub struct Written {
    pub action: WriteAction,
    /// The Secret as the API server returned it after the write (or as read, when unchanged).
    pub secret: Option<Secret>,
    /// Whether the Secret existed before this write.
    pub existed: bool,
}

/// The `cacerts` Secret.
#[derive(Clone)]
pub struct SecretSink {
    api: Api<Secret>,
    namespace: String,
    name: String,
}

/// Whether the Secret carries our managed-by label.
pub fn is_managed(secret: &Secret) -> bool {
    secret.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGER)
}

/// The four values as they are in the Secret (missing keys read as empty).
pub fn material_of(secret: &Secret) -> RawMaterial {
    let data = secret.data.as_ref();
    RawMaterial::from_fn(|role| {
        data.and_then(|d| d.get(role.file_name()))
            .map(|b| b.0.clone())
            .or_else(|| {
                // stringData is write-only on a real API server, but an object from elsewhere may carry it.
                secret.string_data.as_ref().and_then(|d| d.get(role.file_name())).map(|s| s.clone().into_bytes())
            })
            .unwrap_or_default()
    })
}

/// Which of the four keys differ between the Secret and the material.
pub fn changed_keys(current: &Secret, material: &RawMaterial) -> Vec<SecretRole> {
    let have = material_of(current);
    SecretRole::ALL.into_iter().filter(|r| have.get(*r) != material.get(*r)).collect()
}

impl SecretSink {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), namespace: namespace.into(), name: name.into() }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the Secret (`None` if it does not exist).
    pub async fn get(&self) -> Result<Option<Secret>, KubeError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|e| KubeError::new(format!("get secret {}/{}", self.namespace, self.name), e))
    }

    /// What writing `material` over `current` would do, without writing: the type and adoption checks, then
    /// which keys differ. `write` acts on it; `--dry-run` reports it.
    pub fn plan(
        &self,
        current: Option<&Secret>,
        material: &RawMaterial,
        adopt: bool,
    ) -> Result<WriteAction, SecretError> {
        let Some(existing) = current else { return Ok(WriteAction::Created) };
        if let Some(found) = existing.type_.as_deref().filter(|t| *t != "Opaque") {
            return Err(SecretError::WrongType {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                found: found.into(),
            });
        }
        let adopted = !is_managed(existing);
        if adopted && !adopt {
            return Err(SecretError::NotAdopted { namespace: self.namespace.clone(), name: self.name.clone() });
        }
        let changed = changed_keys(existing, material);
        Ok(if changed.is_empty() { WriteAction::Unchanged } else { WriteAction::Updated { changed, adopted } })
    }

    /// Writes `material` plus our label and `annotations` if the four keys differ from `current`.
    ///
    /// `current` is what the caller read; on a conflict the Secret is read again here.
    pub async fn write(
        &self,
        mut current: Option<Secret>,
        material: &RawMaterial,
        annotations: &BTreeMap<String, String>,
        adopt: bool,
    ) -> Result<Written, SecretError> {
        let existed_at_start = current.is_some();
        // What the caller decided on (the rotation gates, the restart baseline): its data, not its metadata.
        let decided_on = current.as_ref().map(material_of);
        for attempt in 1..=MAX_CONFLICT_RETRIES {
            let result = match (self.plan(current.as_ref(), material, adopt)?, &current) {
                (WriteAction::Unchanged, _) => {
                    return Ok(Written { action: WriteAction::Unchanged, secret: current, existed: true });
                }
                // Another writer changed the data since the caller decided: its decision no longer holds.
                _ if attempt > 1 && current.as_ref().map(material_of) != decided_on => {
                    return Err(SecretError::ChangedUnderUs {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                    });
                }
                (action, Some(existing)) => self.patch(existing, material, annotations).await.map(|s| (action, s)),
                (action, None) => self.create(material, annotations).await.map(|s| (action, s)),
            };
            match result {
                Ok((action, secret)) => return Ok(Written { action, secret: Some(secret), existed: existed_at_start }),
                // 409: AlreadyExists on create (someone created it first) or Conflict on a stale resourceVersion.
                Err(e) if e.status() == Some(409) && attempt < MAX_CONFLICT_RETRIES => {
                    tracing::info!(attempt, error = %e, "cacerts changed while we wrote it; reading it again");
                    current = self.get().await?;
                }
                Err(e) if e.status() == Some(409) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SecretError::Conflicts {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            attempts: MAX_CONFLICT_RETRIES,
        })
    }

    async fn create(
        &self,
        material: &RawMaterial,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Secret, KubeError> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGER.to_string())])),
                annotations: Some(annotations.clone()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                SecretRole::ALL
                    .into_iter()
                    .map(|r| (r.file_name().to_string(), ByteString(material.get(r).to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        self.api
            .create(&params, &secret)
            .await
            .map_err(|e| KubeError::new(format!("create secret {}/{}", self.namespace, self.name), e))
    }

    async fn patch(
        &self,
        existing: &Secret,
        material: &RawMaterial,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Secret, KubeError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let data: serde_json::Map<String, serde_json::Value> = SecretRole::ALL
            .into_iter()
            .map(|r| (r.file_name().to_string(), b64.encode(material.get(r)).into()))
            .collect();
        let patch = serde_json::json!({
            "metadata": {
                // A resourceVersion in a patch is a precondition: 409 Conflict if the Secret changed since we read it.
                "resourceVersion": existing.metadata.resource_version,
                "labels": { MANAGED_BY_LABEL: MANAGER },
                "annotations": annotations,
            },
            "data": data,
        });
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        self.api
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::new(format!("patch secret {}/{}", self.namespace, self.name), e))
    }
}
