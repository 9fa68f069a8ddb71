//! A key store in a local folder, one file per key: for tests that kill the process.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{KeyStore, KeyStoreError};
use crate::Secret;

/// A key store in a folder, one file per key, each written to a temporary file, synced and
/// renamed into place, so that a process killed mid-write leaves the old value or the new
/// one. Files are readable by their owner only.
#[derive(Clone, Debug)]
pub struct FileKeyStore {
    folder: PathBuf,
}

impl FileKeyStore {
    /// A store in `folder`, created on first write.
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        Self {
            folder: folder.into(),
        }
    }

    fn error(&self, operation: &'static str, key: &str, error: std::io::Error) -> KeyStoreError {
        KeyStoreError::Backend {
            store: self.describe(),
            operation,
            key: key.to_string(),
            reason: error.to_string(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, KeyStoreError> {
        let valid = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !key.starts_with('.');
        if !valid {
            return Err(KeyStoreError::Backend {
                store: self.describe(),
                operation: "naming",
                key: key.to_string(),
                reason: "not a valid key name".to_string(),
            });
        }
        Ok(self.folder.join(key))
    }
}

fn write_atomically(folder: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(folder)?.sync_all()
}

#[async_trait]
impl KeyStore for FileKeyStore {
    fn describe(&self) -> String {
        format!("folder {}", self.folder.display())
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => crate::text_value(self, key, bytes).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(self.error("reading", key, error)),
        }
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let path = self.path(key)?;
        let folder = self.folder.clone();
        let bytes = zeroize::Zeroizing::new(value.expose().as_bytes().to_vec());
        let written =
            tokio::task::spawn_blocking(move || write_atomically(&folder, &path, &bytes)).await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.error("writing", key, error)),
            Err(error) => Err(self.error("writing", key, std::io::Error::other(error))),
        }
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let mut entries = match tokio::fs::read_dir(&self.folder).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(self.error("listing", "*", error)),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|error| self.error("listing", "*", error))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".tmp") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_survive_a_new_store_on_the_same_folder() -> Result<(), KeyStoreError> {
        let folder = std::env::temp_dir().join(format!("keystore-{}", std::process::id()));
        let store = FileKeyStore::new(&folder);
        assert!(store.list().await?.is_empty());
        store.set("vault-root", &Secret::from("token")).await?;
        store.set("vault-unseal-0", &Secret::from("k0")).await?;

        let again = FileKeyStore::new(&folder);
        assert_eq!(again.get("vault-root").await?, Some(Secret::from("token")));
        assert_eq!(again.list().await?, ["vault-root", "vault-unseal-0"]);
        assert!(again.get("../etc").await.is_err());
        let _ = std::fs::remove_dir_all(&folder);
        Ok(())
    }
}
