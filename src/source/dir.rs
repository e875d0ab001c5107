//! Material from a directory: a Secrets Store CSI driver mount (object names, no extension) or Istio's
//! `cacerts` layout (`root-cert.pem`, …).

use std::path::{Path, PathBuf};

use crate::bundle::{MAX_SECRET_BYTES, RawMaterial, SecretRole};

use super::{Fetched, SourceError};

/// Reads `root-cert`, `ca-cert`, `ca-key` and `cert-chain` from a directory, each with or without `.pem`.
pub struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        let mut values: [Vec<u8>; 4] = Default::default();
        for (slot, role) in values.iter_mut().zip(SecretRole::ALL) {
            *slot = self.read(role).await?;
        }
        let [root_cert, ca_cert, ca_key, cert_chain] = values;
        Ok(Fetched { material: RawMaterial { root_cert, ca_cert, ca_key, cert_chain }, versions: None })
    }

    async fn read(&self, role: SecretRole) -> Result<Vec<u8>, SourceError> {
        // The CSI driver mounts object names as files without extension; Istio's layout has `.pem`.
        for candidate in [self.dir.join(role.file_name()), self.dir.join(role.name())] {
            match tokio::fs::metadata(&candidate).await {
                Ok(meta) if meta.is_file() => {
                    if meta.len() > MAX_SECRET_BYTES as u64 {
                        return Err(SourceError::TooLarge {
                            origin: self.describe(),
                            role,
                            size: meta.len(),
                            limit: MAX_SECRET_BYTES,
                        });
                    }
                    return tokio::fs::read(&candidate).await.map_err(|source| io(&candidate, source));
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(io(&candidate, source)),
            }
        }
        Err(SourceError::MissingFile { dir: self.dir.display().to_string(), role })
    }
}

fn io(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io { path: path.display().to_string(), source }
}
