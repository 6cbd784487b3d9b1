//! Where checkpoints live: a local directory, or (later) any S3-compatible store, behind
//! `object_store`. Every object is written whole by one put (the local backend writes a temporary
//! file and renames it), so a reader sees an object completely or not at all.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::CheckpointError;

/// A checkpoint directory: objects addressed by `/`-separated relative names.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    /// What the user wrote (`'execution.checkpointing.dir'`), for messages.
    location: String,
}

impl CheckpointStorage {
    /// Opens `location` (a local directory, created if missing) and checks that it can be
    /// written, so that a bad directory fails the job before it runs.
    ///
    /// # Errors
    /// A location that cannot be created or written, or a scheme Weir does not know.
    pub async fn open(location: &str) -> Result<Self, CheckpointError> {
        let storage = Self::local(location)?;
        let probe = ".weir-write-probe";
        storage
            .put(probe, Bytes::from_static(b"probe"))
            .await
            .map_err(|e| CheckpointError::Storage {
                location: location.to_string(),
                message: format!("cannot write there: {e}"),
            })?;
        storage.delete(probe).await?;
        Ok(storage)
    }

    /// Opens `location`, which must exist (a savepoint to read).
    ///
    /// # Errors
    /// It does not exist or is not a directory.
    pub async fn open_existing(location: &str) -> Result<Self, CheckpointError> {
        let path = location.strip_prefix("file://").unwrap_or(location);
        if !location.contains("://") && !std::path::Path::new(path).is_dir() {
            return Err(CheckpointError::Storage {
                location: location.to_string(),
                message: "no such directory".into(),
            });
        }
        Self::local(location)
    }

    fn local(location: &str) -> Result<Self, CheckpointError> {
        if let Some((scheme, _)) = location.split_once("://")
            && scheme != "file"
        {
            return Err(CheckpointError::Storage {
                location: location.to_string(),
                message: format!(
                    "unknown storage scheme '{scheme}://' (known: a local path, file://)"
                ),
            });
        }
        let path = location.strip_prefix("file://").unwrap_or(location);
        let error = |message: String| CheckpointError::Storage {
            location: location.to_string(),
            message,
        };
        std::fs::create_dir_all(path).map_err(|e| error(format!("cannot create it: {e}")))?;
        let absolute = std::fs::canonicalize(FsPath::new(path))
            .map_err(|e| error(format!("cannot resolve it: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(&absolute)
            .map_err(|e| error(e.to_string()))?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            location: location.to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn error(&self, name: &str, error: &object_store::Error) -> CheckpointError {
        CheckpointError::Storage {
            location: self.location.clone(),
            message: format!("{name}: {error}"),
        }
    }

    /// Writes `name` whole (replacing it).
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), CheckpointError> {
        self.store
            .put(&Path::from(name), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(name, &e))
    }

    /// Reads `name`; `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, CheckpointError> {
        match self.store.get(&Path::from(name)).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.error(name, &e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(name, &e)),
        }
    }

    /// The size of `name` in bytes; `None` when it does not exist.
    pub async fn size(&self, name: &str) -> Result<Option<u64>, CheckpointError> {
        match self.store.head(&Path::from(name)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(name, &e)),
        }
    }

    /// Deletes `name` (absent is fine).
    pub async fn delete(&self, name: &str) -> Result<(), CheckpointError> {
        match self.store.delete(&Path::from(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(name, &e)),
        }
    }

    /// The names directly under `prefix` (`""`: the top): (sub-directories, objects).
    pub async fn list(&self, prefix: &str) -> Result<(Vec<String>, Vec<String>), CheckpointError> {
        let path = (!prefix.is_empty()).then(|| Path::from(prefix));
        let listed = self
            .store
            .list_with_delimiter(path.as_ref())
            .await
            .map_err(|e| self.error(prefix, &e))?;
        let name = |p: &Path| p.filename().unwrap_or_default().to_string();
        Ok((
            listed.common_prefixes.iter().map(name).collect(),
            listed.objects.iter().map(|o| name(&o.location)).collect(),
        ))
    }

    /// Deletes every object under `prefix`.
    pub async fn delete_all(&self, prefix: &str) -> Result<(), CheckpointError> {
        let (directories, objects) = self.list(prefix).await?;
        for object in objects {
            self.delete(&format!("{prefix}/{object}")).await?;
        }
        for directory in directories {
            Box::pin(self.delete_all(&format!("{prefix}/{directory}"))).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_are_written_read_listed_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = dir.path().join("checkpoints");
        let storage = CheckpointStorage::open(&location.display().to_string())
            .await
            .expect("open");
        storage
            .put("chk-1/a", Bytes::from_static(b"one"))
            .await
            .expect("put");
        storage
            .put("chk-1/b", Bytes::from_static(b"two"))
            .await
            .expect("put");
        assert_eq!(
            storage.get("chk-1/a").await.expect("get").as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(storage.get("chk-1/missing").await.expect("get"), None);
        let (directories, objects) = storage.list("").await.expect("list");
        assert_eq!((directories, objects), (vec!["chk-1".to_string()], vec![]));
        storage.delete_all("chk-1").await.expect("delete");
        let (_, objects) = storage.list("chk-1").await.expect("list");
        assert!(objects.is_empty());
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused() {
        let error = CheckpointStorage::open("gopher://x")
            .await
            .expect_err("scheme");
        assert!(
            error.to_string().contains("unknown storage scheme"),
            "{error}"
        );
    }
}
