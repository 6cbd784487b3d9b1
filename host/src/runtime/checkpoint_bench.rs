//! `weir bench checkpoint`: what incremental RocksDB checkpoints cost at a large state. It drives
//! the code a job runs (snapshot and upload, the metadata, retention, verification, restore) on
//! one subtask's state directly, with no dataflow around it, so that a state of a chosen size can
//! be built quickly and then changed a little.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::Barrier;
use super::checkpointing::{TaskCheckpointing, restore_operator, snapshot_operator};
use super::operators::Operator;
use crate::checkpoint::coordinator::{Completed, retain};
use crate::checkpoint::metadata::{
    CheckpointMetadata, FORMAT_VERSION, METADATA_FILE, OperatorSnapshot, SubtaskSnapshot,
};
use crate::checkpoint::{CheckpointStorage, Restore, StorageOptions, checkpoint_dir, verify};
use crate::state::{KeyedStateBackend, StateKey};

/// Why the bench stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(String);

/// What to measure.
#[derive(Debug, Clone)]
pub struct IncrementalSettings {
    /// About how many bytes of entries to hold (keys plus values).
    pub state_bytes: u64,
    /// The size of each value.
    pub value_bytes: usize,
    /// The share of keys each small change rewrites.
    pub changed_fraction: f64,
    /// How many checkpoints to take (the first full, the others after a small change each).
    pub checkpoints: u64,
    /// The time between checkpoints, as in a job (RocksDB compacts meanwhile, in the
    /// background, which is what leaves older SST files to retention).
    pub interval: Duration,
    /// Where the working databases go (local disk).
    pub work_dir: PathBuf,
    /// Where checkpoints go: a directory or `s3://bucket/path`.
    pub location: String,
    pub storage: StorageOptions,
}

/// One checkpoint's figures.
#[derive(Debug, Clone)]
pub struct CheckpointFigures {
    pub id: u64,
    /// Keys written since the previous checkpoint.
    pub keys_changed: u64,
    pub duration: Duration,
    pub bytes_written: u64,
    pub bytes_reused: u64,
    pub state_size: u64,
}

/// What the run found.
#[derive(Debug, Clone)]
pub struct IncrementalReport {
    pub keys: u64,
    pub fill: Duration,
    pub checkpoints: Vec<CheckpointFigures>,
    /// Shared (SST) files uploaded over the run, and how many of them retention deleted (none
    /// that a retained checkpoint uses: the newest is verified whole after keeping only it).
    pub shared_files_uploaded: usize,
    pub shared_files_deleted: usize,
    /// Recovering the newest checkpoint at the same parallelism: download and open.
    pub restore: Duration,
    pub restored_entries: u64,
    /// Recovering half of its key groups (as one of two subtasks after rescaling to 2): download
    /// and copy the entries.
    pub rescaled_restore: Duration,
    pub rescaled_entries: u64,
}

/// The one state the bench keeps.
const STATE: crate::state::StateName = 1;
const MAX_PARALLELISM: usize = 128;

/// Builds the state, takes a full checkpoint, then checkpoints after small changes, keeps only
/// the newest, checks it is whole, and restores it. `progress` hears each step.
///
/// # Errors
/// Storage or RocksDB failures, or a restored state that differs from what was written.
pub async fn incremental(
    settings: IncrementalSettings,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<IncrementalReport, BenchError> {
    let failed = BenchError;
    let storage = CheckpointStorage::open(&settings.location, &settings.storage)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let entry_bytes = settings.value_bytes as u64 + 8;
    let keys = (settings.state_bytes / entry_bytes).max(1);
    let _ = std::fs::remove_dir_all(&settings.work_dir);
    std::fs::create_dir_all(&settings.work_dir)
        .map_err(|e| failed(format!("{}: {e}", settings.work_dir.display())))?;
    let db = crate::state::open_rocksdb(&settings.work_dir.join("db")).map_err(state_error)?;
    let mut holder = Holder(db);
    let checkpointing = task(storage.clone(), 1, 0, None);

    progress(format!(
        "writing {keys} keys of {} bytes",
        settings.value_bytes
    ));
    let started = Instant::now();
    let value_bytes = settings.value_bytes;
    let (mut holder, ()) = blocking(move || {
        let mut from = 0;
        while from < keys {
            let to = (from + 100_000).min(keys);
            holder
                .0
                .put_many(STATE, entries(from..to, 0, value_bytes))
                .map_err(state_error)?;
            from = to;
        }
        Ok((holder, ()))
    })
    .await?;
    let fill = started.elapsed();

    let mut figures = Vec::new();
    let mut uploaded = std::collections::HashSet::new();
    let mut newest = None;
    let changed = ((keys as f64 * settings.changed_fraction) as u64).max(1);
    for id in 1..=settings.checkpoints.max(2) {
        let keys_changed = if id == 1 {
            keys
        } else {
            tokio::time::sleep(settings.interval).await;
            // A small change: every n-th key gets a new value.
            let step = (keys / changed).max(1);
            let (back, ()) = blocking(move || {
                let picked = (0..keys).step_by(step as usize).take(changed as usize);
                let batch: Vec<_> = picked
                    .flat_map(|k| entries(k..k + 1, id, value_bytes))
                    .collect();
                holder.0.put_many(STATE, batch).map_err(state_error)?;
                Ok((holder, ()))
            })
            .await?;
            holder = back;
            changed
        };
        let started = Instant::now();
        let cp = checkpointing.clone();
        let (back, (snapshot, ack)) = blocking(move || {
            let result = snapshot_operator(&mut holder, &cp, barrier(id)).map_err(failed)?;
            Ok((holder, result))
        })
        .await?;
        holder = back;
        if let Some(state) = &snapshot.state {
            uploaded.extend(
                state
                    .objects()
                    .into_iter()
                    .filter(|(_, shared, _)| *shared)
                    .map(|(object, _, _)| object.to_string()),
            );
        }
        let metadata = metadata(id, 1, vec![snapshot]);
        let json = serde_json::to_vec(&metadata).map_err(|e| failed(e.to_string()))?;
        storage
            .put(
                &format!("{}/{METADATA_FILE}", checkpoint_dir(id, false)),
                Bytes::from(json),
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
        // As a job does with 'execution.checkpointing.num-retained' = 2.
        retain(&storage, &metadata, 2)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let figure = CheckpointFigures {
            id,
            keys_changed,
            duration: started.elapsed(),
            bytes_written: ack.bytes_written,
            bytes_reused: ack.bytes_reused,
            state_size: ack.state_size,
        };
        progress(format!(
            "checkpoint {id}: {} keys changed, {:.1?}, wrote {} of {} bytes",
            figure.keys_changed, figure.duration, figure.bytes_written, figure.state_size
        ));
        figures.push(figure);
        newest = Some(metadata);
    }
    let newest = newest.ok_or_else(|| failed("no checkpoint".into()))?;
    drop(holder);

    retain(&storage, &newest, 1)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut remaining = 0;
    for object in &uploaded {
        if storage
            .size(object)
            .await
            .map_err(|e| failed(e.to_string()))?
            .is_some()
        {
            remaining += 1;
        }
    }
    let deleted = uploaded.len() - remaining;
    let restore = Arc::new(Restore {
        storage: storage.clone(),
        dir: checkpoint_dir(newest.id, false),
        metadata: newest,
    });
    verify(&restore).await.map_err(|e| failed(e.to_string()))?;
    progress(format!(
        "kept only the newest checkpoint: {deleted} of {} shared files uploaded are gone; it \
         verifies",
        uploaded.len()
    ));

    let mut restored = Vec::new();
    for (parallelism, name) in [(1, "restored"), (2, "rescaled")] {
        let db = crate::state::open_rocksdb(&settings.work_dir.join(name)).map_err(state_error)?;
        let checkpointing = task(storage.clone(), parallelism, 0, Some(restore.clone()));
        let started = Instant::now();
        let (holder, ()) = blocking(move || {
            let mut holder = Holder(db);
            restore_operator(&mut holder, &checkpointing).map_err(failed)?;
            Ok((holder, ()))
        })
        .await?;
        let took = started.elapsed();
        let (_, count) = blocking(move || {
            let count = holder.0.entries(STATE).map_err(state_error)?.len() as u64;
            Ok((holder, count))
        })
        .await?;
        progress(format!("restored {count} entries ({name}) in {took:.1?}"));
        restored.push((took, count));
    }
    let _ = std::fs::remove_dir_all(&settings.work_dir);
    if restored[0].1 != keys {
        return Err(failed(format!(
            "restored {} entries, not {keys}",
            restored[0].1
        )));
    }
    Ok(IncrementalReport {
        keys,
        fill,
        checkpoints: figures,
        shared_files_uploaded: uploaded.len(),
        shared_files_deleted: deleted,
        restore: restored[0].0,
        restored_entries: restored[0].1,
        rescaled_restore: restored[1].0,
        rescaled_entries: restored[1].1,
    })
}

fn state_error(error: crate::state::StateError) -> BenchError {
    BenchError(error.to_string())
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static, R: Send + 'static>(
    work: impl FnOnce() -> Result<(T, R), BenchError> + Send + 'static,
) -> Result<(T, R), BenchError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BenchError(format!("the bench's worker failed: {e}")))?
}

/// Entries for keys `range`, their values varied by `version` (and hard to compress, as real
/// values mostly are).
fn entries(
    range: std::ops::Range<u64>,
    version: u64,
    value_bytes: usize,
) -> Vec<(StateKey, Vec<u8>)> {
    range
        .map(|k| {
            let key = StateKey {
                key_group: (k % MAX_PARALLELISM as u64) as u16,
                key: k.to_be_bytes().to_vec(),
                namespace: Vec::new(),
            };
            let mut x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version.wrapping_mul(0xBF58_476D);
            let value = (0..value_bytes)
                .map(|_| {
                    // xorshift
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (key, value)
        })
        .collect()
}

fn barrier(id: u64) -> Barrier {
    Barrier {
        id,
        savepoint: false,
    }
}

fn metadata(id: u64, parallelism: usize, subtasks: Vec<SubtaskSnapshot>) -> CheckpointMetadata {
    CheckpointMetadata {
        format_version: FORMAT_VERSION,
        id,
        savepoint: false,
        finished: false,
        job_tag: "bench".into(),
        max_parallelism: MAX_PARALLELISM,
        completed_millis: super::now_millis(),
        operators: vec![OperatorSnapshot {
            operator_id: OPERATOR.into(),
            name: "State [0]".into(),
            parallelism,
            subtasks,
        }],
    }
}

const OPERATOR: &str = "bench-state";

fn task(
    storage: CheckpointStorage,
    parallelism: usize,
    subtask: usize,
    restore: Option<Arc<Restore>>,
) -> TaskCheckpointing {
    let (_, triggers) = watch::channel(barrier(0));
    let (_, completed) = watch::channel(Completed { id: 0, stop: false });
    let (reports, _) = mpsc::unbounded_channel();
    TaskCheckpointing {
        task: (0, subtask),
        operator_id: OPERATOR.into(),
        storage,
        reports,
        triggers,
        completed,
        restore,
        parallelism,
        max_parallelism: MAX_PARALLELISM,
        uploaded: Arc::default(),
        pending_upload: Arc::default(),
        lineage: format!("bench{parallelism}"),
    }
}

/// An operator that is only its state (also for the checkpointing tests).
pub(crate) struct Holder(pub(crate) Box<dyn KeyedStateBackend>);

impl Operator for Holder {
    fn name(&self) -> &'static str {
        "State"
    }

    fn on_batch(
        &mut self,
        _batch: arrow::record_batch::RecordBatch,
        _out: &mut Vec<arrow::record_batch::RecordBatch>,
    ) -> Result<(), String> {
        Ok(())
    }

    fn state_backend(&mut self) -> Option<&mut Box<dyn KeyedStateBackend>> {
        Some(&mut self.0)
    }
}
