//! Checkpoints (aligned Chandy-Lamport barriers), as Flink takes them.
//!
//! The [`coordinator`] triggers checkpoint `n` at every source; each source records its position
//! and sends barrier `n` after its last batch before it; an operator with several senders waits for
//! barrier `n` from all of them (holding back what the faster ones send after theirs), snapshots
//! its keyed state into the storage, forwards the barrier and acknowledges; a sink pre-commits
//! what it wrote. When every subtask has acknowledged (or had already finished), the coordinator
//! writes the checkpoint's metadata in one put, and only then tells the sinks to commit. Restoring
//! a checkpoint gives every subtask back its state, every source its position, and commits the
//! sinks' pre-committed output once more (idempotently), discarding anything written after.
//!
//! **Boundary:** storage layout and metadata live here; the runtime moves barriers and calls
//! operators; connectors pre-commit and commit; `state` snapshots and restores keyed state.

pub mod coordinator;
pub mod metadata;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

pub use metadata::{CheckpointMetadata, operator_ids};
pub use storage::{CheckpointStorage, StorageOptions};

/// Checkpoint failures. Storage problems are external; a checkpoint that cannot be read says
/// which and why.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint storage '{location}': {message}")]
    Storage { location: String, message: String },
    #[error("checkpoint {id} in '{location}' cannot be used: {message}")]
    Unusable {
        id: u64,
        location: String,
        message: String,
    },
    #[error("{0}")]
    Restore(String),
}

/// How a job checkpoints (`'execution.checkpointing.*'`) and what it starts from.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub interval: Duration,
    pub storage: CheckpointStorage,
    /// Completed checkpoints kept (older ones are deleted).
    pub num_retained: usize,
    /// Names the job's in-progress output files; kept across restarts.
    pub job_tag: String,
    /// The checkpoint or savepoint to restore, if any.
    pub restore: Option<Arc<Restore>>,
    /// Turns true when the user asks the job to stop with a savepoint.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Moves each time the user asks for a savepoint while the job goes on.
    pub savepoint_requests: Option<tokio::sync::watch::Receiver<u64>>,
}

/// A completed checkpoint or savepoint to start from: its metadata, and where its files are
/// (state file names in the metadata are relative to `dir` in `storage`).
#[derive(Debug)]
pub struct Restore {
    pub storage: CheckpointStorage,
    pub dir: String,
    pub metadata: CheckpointMetadata,
}

impl Restore {
    /// The storage name of a file of this checkpoint.
    pub fn file(&self, name: &str) -> String {
        if self.dir.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    /// Where it is, for messages.
    pub fn location(&self) -> String {
        if self.dir.is_empty() {
            self.storage.location().to_string()
        } else {
            format!(
                "{}/{}",
                self.storage.location().trim_end_matches('/'),
                self.dir
            )
        }
    }
}

/// Figures of one completed checkpoint.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    pub id: u64,
    /// From trigger to metadata written.
    pub duration: Duration,
    /// The longest any subtask waited for barriers to align.
    pub alignment: Duration,
    /// State bytes this checkpoint wrote.
    pub bytes_written: u64,
    /// State bytes it shares with earlier checkpoints instead of writing them (incremental).
    pub bytes_reused: u64,
    /// The size of all state it refers to.
    pub state_size: u64,
    pub finished: bool,
    /// A savepoint (the user's, kept apart from retention) rather than a checkpoint.
    pub savepoint: bool,
    /// Where it was written.
    pub location: String,
}

/// The directory of checkpoint `id` (or savepoint) in the storage.
pub fn checkpoint_dir(id: u64, savepoint: bool) -> String {
    if savepoint {
        format!("savepoint-{id}")
    } else {
        format!("chk-{id}")
    }
}

/// Reads the savepoint (or checkpoint) directory `location` given by the user.
///
/// # Errors
/// Not a directory holding readable metadata of this format.
pub async fn load_savepoint(
    location: &str,
    options: &StorageOptions,
) -> Result<Restore, CheckpointError> {
    let storage = CheckpointStorage::open_existing(location, options).await?;
    let unusable = |message: String| {
        CheckpointError::Restore(format!("'{location}' is not a usable savepoint: {message}"))
    };
    let bytes = storage
        .get(metadata::METADATA_FILE)
        .await?
        .ok_or_else(|| unusable(format!("it has no {} file", metadata::METADATA_FILE)))?;
    let metadata = CheckpointMetadata::parse(&bytes).map_err(unusable)?;
    let restore = Restore {
        storage,
        dir: String::new(),
        metadata,
    };
    verify(&restore).await?;
    Ok(restore)
}

/// The completed checkpoints in `storage`, newest first, each read and checked; a checkpoint that
/// cannot be read is reported in the second list (id, why) and skipped.
///
/// # Errors
/// The storage cannot be listed.
pub async fn completed_checkpoints(
    storage: &CheckpointStorage,
) -> Result<(Vec<Restore>, Vec<(u64, String)>), CheckpointError> {
    let (directories, _) = storage.list("").await?;
    let mut ids: Vec<u64> = directories
        .iter()
        .filter_map(|d| d.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for id in ids {
        let dir = checkpoint_dir(id, false);
        let name = format!("{dir}/{}", metadata::METADATA_FILE);
        match storage.get(&name).await? {
            // Never completed (the job stopped while taking it): not a checkpoint.
            None => {}
            Some(bytes) => match CheckpointMetadata::parse(&bytes) {
                Ok(metadata) if metadata.id == id => usable.push(Restore {
                    storage: storage.clone(),
                    dir,
                    metadata,
                }),
                Ok(metadata) => {
                    unusable.push((id, format!("its metadata says checkpoint {}", metadata.id)))
                }
                Err(message) => unusable.push((id, message)),
            },
        }
    }
    Ok((usable, unusable))
}

/// Checks that every state file `metadata` refers to is present and whole (its size), so that a
/// damaged checkpoint is passed over before anything starts from it.
///
/// # Errors
/// Which file is missing or has the wrong size.
pub async fn verify(restore: &Restore) -> Result<(), CheckpointError> {
    let metadata = &restore.metadata;
    let unusable = |message: String| CheckpointError::Unusable {
        id: metadata.id,
        location: restore.location(),
        message,
    };
    for operator in &metadata.operators {
        for subtask in &operator.subtasks {
            let Some(state) = &subtask.state else {
                continue;
            };
            for (object, shared, bytes) in state.objects() {
                let name = if shared {
                    object.to_string()
                } else {
                    restore.file(object)
                };
                match restore.storage.size(&name).await? {
                    None => return Err(unusable(format!("state file '{name}' is missing"))),
                    Some(size) if size != bytes => {
                        return Err(unusable(format!(
                            "state file '{name}' has {size} bytes, not {bytes} (truncated?)"
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}
