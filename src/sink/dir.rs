//! Writes the `cacerts` file layout into a directory, for an istiod that runs outside Kubernetes.
//!
//! The swap is atomic the way kubelet updates Secret volumes: the four files go into a fresh hidden
//! directory, then one `rename` of the `..data` symlink switches every file at once, so a reader never sees a
//! new `ca-cert.pem` next to an old `ca-key.pem`. `ca-key.pem` is created with mode 0600.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, symlink};
use std::path::{Path, PathBuf};

use crate::bundle::{RawMaterial, SecretRole};
use crate::error::{Classify, FailureClass};

use super::WriteAction;

/// A directory target.
pub struct DirSink {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {}", path.display())]
pub struct DirError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Classify for DirError {
    fn class(&self) -> FailureClass {
        match self.source.kind() {
            std::io::ErrorKind::PermissionDenied => FailureClass::Auth,
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ReadOnlyFilesystem => FailureClass::Usage,
            _ => FailureClass::Transient,
        }
    }
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DirError + 'a {
    move |source| DirError { action, path: path.to_path_buf(), source }
}

impl DirSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What is in the directory now (missing files read as empty).
    pub fn read(&self) -> RawMaterial {
        RawMaterial::from_fn(|role| std::fs::read(self.dir.join(role.file_name())).unwrap_or_default())
    }

    /// Writes the material if it differs from what is there.
    pub fn write(&self, material: &RawMaterial, dry_run: bool) -> Result<WriteAction, DirError> {
        let existed = SecretRole::ALL.iter().any(|r| self.dir.join(r.file_name()).exists());
        let current = self.read();
        let changed: Vec<SecretRole> =
            SecretRole::ALL.into_iter().filter(|r| current.get(*r) != material.get(*r)).collect();
        if changed.is_empty() {
            return Ok(WriteAction::Unchanged);
        }
        let action = if existed { WriteAction::Updated { changed, adopted: false } } else { WriteAction::Created };
        if dry_run {
            return Ok(action);
        }
        std::fs::create_dir_all(&self.dir).map_err(err("create", &self.dir))?;
        let stamp = format!("..{}_{}", std::process::id(), jiff::Timestamp::now().as_nanosecond());
        let staging = self.dir.join(&stamp);
        std::fs::create_dir(&staging).map_err(err("create", &staging))?;
        for role in SecretRole::ALL {
            let path = staging.join(role.file_name());
            let mode = if role == SecretRole::CaKey { 0o600 } else { 0o644 };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .map_err(err("create", &path))?;
            file.write_all(material.get(role)).map_err(err("write", &path))?;
            file.sync_all().map_err(err("sync", &path))?;
        }
        // Point ..data at the new directory in one rename.
        let data = self.dir.join("..data");
        let data_tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&data_tmp);
        symlink(&stamp, &data_tmp).map_err(err("link", &data_tmp))?;
        let previous = std::fs::read_link(&data).ok();
        std::fs::rename(&data_tmp, &data).map_err(err("switch", &data))?;
        for role in SecretRole::ALL {
            let link = self.dir.join(role.file_name());
            let target = Path::new("..data").join(role.file_name());
            if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                let tmp = self.dir.join(format!(".{}.tmp", role.file_name()));
                let _ = std::fs::remove_file(&tmp);
                symlink(&target, &tmp).map_err(err("link", &tmp))?;
                std::fs::rename(&tmp, &link).map_err(err("link", &link))?;
            }
        }
        if let Some(old) = previous.filter(|old| old.as_path() != Path::new(&stamp)) {
            let _ = std::fs::remove_dir_all(self.dir.join(old));
        }
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(tag: &str) -> RawMaterial {
        RawMaterial::from_fn(|role| format!("{tag}-{role}").into_bytes())
    }

    #[test]
    fn first_write_creates_the_layout_and_a_second_write_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = DirSink::new(tmp.path().join("cacerts"));
        assert_eq!(sink.write(&material("a"), false).unwrap(), WriteAction::Created);
        assert_eq!(sink.read(), material("a"));
        assert_eq!(sink.write(&material("a"), false).unwrap(), WriteAction::Unchanged);
    }

    #[test]
    fn an_update_switches_every_file_and_removes_the_old_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = DirSink::new(tmp.path());
        sink.write(&material("a"), false).unwrap();
        let action = sink.write(&material("b"), false).unwrap();
        assert_eq!(action, WriteAction::Updated { changed: SecretRole::ALL.to_vec(), adopted: false });
        assert_eq!(sink.read(), material("b"));
        let generations = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("..") && name != "..data"
            })
            .count();
        assert_eq!(generations, 1);
    }

    #[test]
    fn the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let sink = DirSink::new(tmp.path());
        sink.write(&material("a"), false).unwrap();
        let mode = std::fs::metadata(tmp.path().join("ca-key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn dry_run_reports_the_change_but_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = DirSink::new(tmp.path().join("out"));
        assert_eq!(sink.write(&material("a"), true).unwrap(), WriteAction::Created);
        assert!(!tmp.path().join("out").exists());
    }
}
