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
use zeroize::Zeroize as _;

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
    #[error(
        "refused to write secret {namespace}/{name}: it holds {keys}, the kubernetes.io/tls layout that istiod loads in preference to the *.pem keys cacerts-sync writes, so the synced CA would be ignored; nothing was written. Remove them (kubectl -n {namespace} patch secret {name} --type=json -p '{remove}') and run again"
    )]
    ForeignKeys { namespace: String, name: String, keys: String, remove: String },
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
            SecretError::ForeignKeys { .. } => FailureClass::Invalid,
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
    /// The data already matched, but the Secret was not ours: only our label and annotations were written.
    pub labeled: bool,
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

/// Keys of the `kubernetes.io/tls` layout that istiod reads instead of ours.
///
/// istiod (`pilot/pkg/bootstrap/istio_ca.go`, `detectSigningCABundle`) looks for `tls.crt` in the mounted
/// `cacerts` directory first; when it exists it signs with `tls.crt` + `tls.key`, trusts `ca.crt`, and never
/// reads `ca-cert.pem`, `ca-key.pem`, `cert-chain.pem` or `root-cert.pem`. A `cacerts` holding them would make
/// every sync silently ineffective. `tls.key` and `ca.crt` are refused along with `tls.crt`: without it they are
/// ignored by istiod, but a stray copy of a private key in `cacerts` is never what an operator meant.
pub const FOREIGN_KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// The [`FOREIGN_KEYS`] present in the Secret.
pub fn foreign_keys(secret: &Secret) -> Vec<&'static str> {
    let has = |k: &str| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(k))
            || secret.string_data.as_ref().is_some_and(|d| d.contains_key(k))
    };
    FOREIGN_KEYS.into_iter().filter(|k| has(k)).collect()
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
        let foreign = foreign_keys(existing);
        if !foreign.is_empty() {
            let remove: Vec<String> =
                foreign.iter().map(|k| format!(r#"{{"op":"remove","path":"/data/{k}"}}"#)).collect();
            return Err(SecretError::ForeignKeys {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                keys: foreign.join(", "),
                remove: format!("[{}]", remove.join(",")),
            });
        }
        let changed = changed_keys(existing, material);
        let adopted = !is_managed(existing);
        if changed.is_empty() {
            // Identical content is fine even under --no-adopt: there is nothing to write, so nothing to refuse.
            return Ok(WriteAction::Unchanged);
        }
        if adopted && !adopt {
            return Err(SecretError::NotAdopted { namespace: self.namespace.clone(), name: self.name.clone() });
        }
        Ok(WriteAction::Updated { changed, adopted })
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
                (WriteAction::Unchanged, Some(existing)) if adopt && !is_managed(existing) => {
                    // The first pass over a Secret we adopt whose data already matches: take it over (label and
                    // annotations only), so later passes, `status` and `kubectl get -l` see it as ours.
                    self.label(existing, annotations).await.map(|s| (WriteAction::Unchanged, s))
                }
                (WriteAction::Unchanged, _) => {
                    return Ok(Written {
                        action: WriteAction::Unchanged,
                        secret: current,
                        existed: true,
                        labeled: false,
                    });
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
                Ok((action, secret)) => {
                    let labeled = action == WriteAction::Unchanged;
                    return Ok(Written { action, secret: Some(secret), existed: existed_at_start, labeled });
                }
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
        let mut secret = Secret {
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
        let result = self
            .api
            .create(&params, &secret)
            .await
            .map_err(|e| KubeError::new(format!("create secret {}/{}", self.namespace, self.name), e));
        wipe_secret_data(&mut secret);
        result
    }

    /// Puts our label and `annotations` on a Secret whose data already matches (same precondition as `patch`).
    async fn label(&self, existing: &Secret, annotations: &BTreeMap<String, String>) -> Result<Secret, KubeError> {
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": existing.metadata.resource_version,
                "labels": { MANAGED_BY_LABEL: MANAGER },
                "annotations": annotations,
            },
        });
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        self.api
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::new(format!("label secret {}/{}", self.namespace, self.name), e))
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
        let mut patch = serde_json::json!({
            "metadata": {
                // A resourceVersion in a patch is a precondition: 409 Conflict if the Secret changed since we read it.
                "resourceVersion": existing.metadata.resource_version,
                "labels": { MANAGED_BY_LABEL: MANAGER },
                "annotations": annotations,
            },
            "data": data,
        });
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        let result = self
            .api
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::new(format!("patch secret {}/{}", self.namespace, self.name), e));
        wipe_patch_data(&mut patch);
        result
    }
}

/// Wipes the `data` values of a Secret we built (they hold the private key) once it has been sent.
pub(crate) fn wipe_secret_data(secret: &mut Secret) {
    for value in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
        value.0.zeroize();
    }
}

/// Wipes the base64 `data` strings of a patch we built once it has been sent.
pub(crate) fn wipe_patch_data(patch: &mut serde_json::Value) {
    if let Some(data) = patch.get_mut("data").and_then(serde_json::Value::as_object_mut) {
        for value in data.values_mut() {
            if let serde_json::Value::String(s) = value {
                s.zeroize();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn a_built_secret_and_patch_are_wiped_after_sending() {
        let mut built = secret(&[("ca-key.pem", "-----BEGIN PRIVATE KEY-----")]);
        wipe_secret_data(&mut built);
        assert!(built.data.unwrap()["ca-key.pem"].0.is_empty(), "zeroize wipes the bytes, then clears the Vec");
        let mut patch = serde_json::json!({"metadata": {"labels": {"a": "b"}}, "data": {"ca-key.pem": "TUlJRXZR"}});
        wipe_patch_data(&mut patch);
        assert_eq!(patch["data"]["ca-key.pem"], "", "the base64 key is wiped");
        assert_eq!(patch["metadata"]["labels"]["a"], "b", "metadata is left alone");
    }

    #[test]
    fn the_tls_layout_keys_istiod_prefers_are_found() {
        assert_eq!(
            foreign_keys(&secret(&[("ca-cert.pem", ""), ("ca.crt", ""), ("tls.crt", "")])),
            ["tls.crt", "ca.crt"]
        );
        assert!(foreign_keys(&secret(&[("ca-cert.pem", ""), ("extra.txt", "")])).is_empty());
    }
}
