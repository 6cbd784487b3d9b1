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
pub use storage::CheckpointStorage;

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
    /// The checkpoint to restore, if any.
    pub restore: Option<Arc<CheckpointMetadata>>,
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
}

/// The directory of checkpoint `id` in the storage.
pub fn checkpoint_dir(id: u64) -> String {
    format!("chk-{id}")
}

/// The completed checkpoints in `storage`, newest first, each read and checked; a checkpoint that
/// cannot be read is reported in the second list (id, why) and skipped.
///
/// # Errors
/// The storage cannot be listed.
pub async fn completed_checkpoints(
    storage: &CheckpointStorage,
) -> Result<(Vec<Arc<CheckpointMetadata>>, Vec<(u64, String)>), CheckpointError> {
    let (directories, _) = storage.list("").await?;
    let mut ids: Vec<u64> = directories
        .iter()
        .filter_map(|d| d.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for id in ids {
        let name = format!("{}/{}", checkpoint_dir(id), metadata::METADATA_FILE);
        match storage.get(&name).await? {
            // Never completed (the job stopped while taking it): not a checkpoint.
            None => {}
            Some(bytes) => match CheckpointMetadata::parse(&bytes) {
                Ok(metadata) if metadata.id == id => usable.push(Arc::new(metadata)),
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
pub async fn verify(
    storage: &CheckpointStorage,
    metadata: &CheckpointMetadata,
) -> Result<(), CheckpointError> {
    let unusable = |message: String| CheckpointError::Unusable {
        id: metadata.id,
        location: storage.location().to_string(),
        message,
    };
    for operator in &metadata.operators {
        for subtask in &operator.subtasks {
            let Some(state) = &subtask.state else {
                continue;
            };
            match storage.size(&state.file).await? {
                None => return Err(unusable(format!("state file '{}' is missing", state.file))),
                Some(size) if size != state.bytes => {
                    return Err(unusable(format!(
                        "state file '{}' has {size} bytes, not {} (truncated?)",
                        state.file, state.bytes
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
