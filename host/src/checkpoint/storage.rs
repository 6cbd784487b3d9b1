//! Where checkpoints live: a local directory, or any S3-compatible store (`s3://bucket/path`),
//! behind `object_store`. Every object is written whole by one put (the local backend writes a
//! temporary file and renames it; an S3 put is atomic), so a reader sees an object completely or
//! not at all.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::CheckpointError;

/// How to reach an S3-compatible store: Flink's `'s3.*'` options. What is unset comes from the
/// usual `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, ...).
#[derive(Clone, Default)]
pub struct StorageOptions {
    /// `'s3.endpoint'`, e.g. `http://127.0.0.1:9000` (plain HTTP is allowed when it says so).
    pub endpoint: Option<String>,
    /// `'s3.access-key'`.
    pub access_key: Option<String>,
    /// `'s3.secret-key'`.
    pub secret_key: Option<String>,
    /// `'s3.region'`.
    pub region: Option<String>,
    /// `'s3.path.style.access'`: `bucket` in the path, not the host name (most self-hosted
    /// stores want this; true by default when an endpoint is given).
    pub path_style: Option<bool>,
}

impl std::fmt::Debug for StorageOptions {
    // The secret key stays out of logs and messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageOptions")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<hidden>"))
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish()
    }
}

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
    pub async fn open(location: &str, options: &StorageOptions) -> Result<Self, CheckpointError> {
        let storage = Self::connect(location, options)?;
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
    /// A local directory that does not exist; a store that cannot be reached.
    pub async fn open_existing(
        location: &str,
        options: &StorageOptions,
    ) -> Result<Self, CheckpointError> {
        let path = location.strip_prefix("file://").unwrap_or(location);
        if !path.contains("://") && !std::path::Path::new(path).is_dir() {
            return Err(CheckpointError::Storage {
                location: location.to_string(),
                message: "no such directory".into(),
            });
        }
        Self::connect(location, options)
    }

    fn connect(location: &str, options: &StorageOptions) -> Result<Self, CheckpointError> {
        match location.split_once("://") {
            None => Self::local(location, location),
            Some(("file", path)) => Self::local(location, path),
            Some(("s3" | "s3a", rest)) => Self::s3(location, rest, options),
            Some((scheme, _)) => Err(CheckpointError::Storage {
                location: location.to_string(),
                message: format!(
                    "unknown storage scheme '{scheme}://' (known: a local path, file://, s3://)"
                ),
            }),
        }
    }

    /// `s3://bucket/prefix`: the bucket must exist; objects go under the prefix.
    fn s3(location: &str, rest: &str, options: &StorageOptions) -> Result<Self, CheckpointError> {
        let error = |message: String| CheckpointError::Storage {
            location: location.to_string(),
            message,
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(error("no bucket: write s3://bucket/path".into()));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            // Client options replace one another whole: this one before any `with_allow_http`.
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(!options.path_style.unwrap_or(true));
        } else if let Some(path_style) = options.path_style {
            builder = builder.with_virtual_hosted_style_request(!path_style);
        }
        if let Some(key) = &options.access_key {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        // A store that is down fails a checkpoint (the job goes on and tries the next one)
        // within seconds, not after object_store's default three minutes of retries.
        let store = builder
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: Duration::from_secs(20),
            })
            .build()
            .map_err(|e| error(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix.trim_matches('/')))
        };
        Ok(Self {
            store,
            location: location.trim_end_matches('/').to_string(),
        })
    }

    fn local(location: &str, path: &str) -> Result<Self, CheckpointError> {
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
        // The causes too: an HTTP client's "builder error" alone says nothing.
        let mut message = format!("{name}: {error}");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        CheckpointError::Storage {
            location: self.location.clone(),
            message,
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
pub(crate) mod tests {
    use super::*;

    /// The S3-compatible server that the test command starts (`scripts/servers.sh`): an
    /// `s3://` location of its own under the test bucket, and how to reach it.
    pub(crate) fn test_s3(name: &str) -> (String, StorageOptions) {
        let (Ok(endpoint), Ok(bucket)) = (
            std::env::var("WEIR_TEST_S3_ENDPOINT"),
            std::env::var("WEIR_TEST_S3_BUCKET"),
        ) else {
            panic!(
                "WEIR_TEST_S3_ENDPOINT and WEIR_TEST_S3_BUCKET are not set: run the tests with \
                 scripts/test.sh, which starts an S3 server, or start one with \
                 `source scripts/servers.sh`"
            );
        };
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let options = StorageOptions {
            endpoint: Some(endpoint),
            access_key: Some("weir".into()),
            secret_key: Some("weir".into()),
            region: Some("us-east-1".into()),
            path_style: None,
        };
        (format!("s3://{bucket}/{name}-{unique}"), options)
    }

    async fn write_read_list_delete(storage: CheckpointStorage) {
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
    async fn objects_are_written_read_listed_and_deleted_in_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = dir.path().join("checkpoints");
        let storage =
            CheckpointStorage::open(&location.display().to_string(), &StorageOptions::default())
                .await
                .expect("open");
        write_read_list_delete(storage).await;
    }

    #[tokio::test]
    async fn objects_are_written_read_listed_and_deleted_in_s3() {
        let (location, options) = test_s3("storage");
        let storage = CheckpointStorage::open(&location, &options)
            .await
            .expect("open");
        write_read_list_delete(storage).await;
        // What a prefix holds is its own: another location sees none of it.
        let (other, _) = test_s3("storage-other");
        let other = CheckpointStorage::open(&other, &options)
            .await
            .expect("open");
        other
            .put("chk-9/x", Bytes::from_static(b"x"))
            .await
            .expect("put");
        assert_eq!(
            other.get("chk-9/x").await.expect("get").as_deref(),
            Some(&b"x"[..])
        );
        let storage = CheckpointStorage::open_existing(&location, &options)
            .await
            .expect("open");
        assert_eq!(storage.get("chk-9/x").await.expect("get"), None);
    }

    #[tokio::test]
    async fn an_s3_store_that_cannot_be_reached_or_lacks_the_bucket_is_reported() {
        let (_, mut options) = test_s3("unreachable");
        let missing = format!("s3://no-such-bucket-{}/x", std::process::id());
        let error = CheckpointStorage::open(&missing, &options)
            .await
            .expect_err("no bucket");
        assert!(error.to_string().contains(&missing), "{error}");
        assert!(error.to_string().contains("cannot write there"), "{error}");
        // A port nobody listens on: retried briefly, then reported (not hung for minutes).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        options.endpoint = Some(format!("http://127.0.0.1:{port}"));
        let error = CheckpointStorage::open("s3://bucket/x", &options)
            .await
            .expect_err("unreachable");
        assert!(error.to_string().contains("s3://bucket/x"), "{error}");
        assert!(error.to_string().contains("cannot write there"), "{error}");
    }

    #[test]
    fn s3_locations_need_a_bucket() {
        let error =
            CheckpointStorage::connect("s3://", &StorageOptions::default()).expect_err("no bucket");
        assert!(error.to_string().contains("no bucket"), "{error}");
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused() {
        let error = CheckpointStorage::open("gopher://x", &StorageOptions::default())
            .await
            .expect_err("scheme");
        assert!(
            error.to_string().contains("unknown storage scheme"),
            "{error}"
        );
    }
}
