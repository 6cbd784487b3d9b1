//! Running a streaming query with checkpoints: where they go, which one to resume from, and
//! restarting after a failure (`'restart-strategy.*'`).

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use tokio::sync::watch;

use super::{JobError, Observer};
use crate::checkpoint::{
    CheckpointMetadata, CheckpointSettings, CheckpointStorage, Restore, StorageOptions,
    completed_checkpoints, load_savepoint, operator_ids, verify,
};
use crate::plan::{Graph, OperatorSpec};
use crate::runtime::JobStats;

/// `'restart-strategy.type'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategy {
    None,
    FixedDelay { attempts: u32, delay: Duration },
}

/// The checkpoint settings of a session.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// `'execution.checkpointing.interval'`; `None`: no checkpoints.
    pub interval: Option<Duration>,
    /// `'execution.checkpointing.dir'`; by default under the state directory.
    pub dir: Option<String>,
    /// `'execution.checkpointing.num-retained'`.
    pub num_retained: usize,
    pub restart: RestartStrategy,
    /// `'s3.*'`: how to reach an S3-compatible checkpoint store.
    pub storage: StorageOptions,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: None,
            dir: None,
            // Two, so that a damaged newest checkpoint leaves one to fall back to.
            num_retained: 2,
            restart: RestartStrategy::FixedDelay {
                attempts: 3,
                delay: Duration::from_secs(1),
            },
            storage: StorageOptions::default(),
        }
    }
}

/// How a checkpointed run ended.
pub(super) enum Ended {
    /// The job ran to its end: the rows of a `SELECT`, and the stats of the last attempt.
    Ran(Vec<RecordBatch>, Arc<JobStats>),
    /// The newest checkpoint says the job had finished: nothing ran.
    AlreadyFinished { id: u64, location: String },
    /// The user stopped it; it took this savepoint first.
    Stopped { savepoint: String },
}

/// Where a run starts from and how it may be stopped.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// `--from-savepoint`.
    pub from_savepoint: Option<String>,
    /// Turns true when the user asks the job to stop with a savepoint.
    pub stop: Option<watch::Receiver<bool>>,
    /// Moves each time the user asks for a savepoint while the job goes on.
    pub savepoint_requests: Option<watch::Receiver<u64>>,
    /// A checkpoint taken after `from_savepoint` by a run that started from it (same job tag,
    /// higher id) wins over the savepoint: a server resuming a job after a crash.
    pub prefer_newer_checkpoints: bool,
}

/// Runs `graph` with checkpoints in `location`, resuming from the newest usable one there and
/// restarting after failures as `config.restart` allows.
pub(super) async fn run(
    graph: Arc<Graph>,
    location: &str,
    config: &CheckpointConfig,
    interval: Duration,
    backend: &crate::state::BackendKind,
    control: Control,
    observer: &mut dyn Observer,
) -> Result<Ended, JobError> {
    if let Some(node) = graph.nodes.iter().find(|n| {
        matches!(
            n.operator,
            OperatorSpec::Sort { .. } | OperatorSpec::Limit { .. }
        )
    }) {
        return Err(JobError::Checkpoint(format!(
            "{} [{}] (ORDER BY, LIMIT) cannot be checkpointed yet: run this query without \
             'execution.checkpointing.interval'",
            node.operator.name(),
            node.id
        )));
    }
    let storage = CheckpointStorage::open(location, &config.storage)
        .await
        .map_err(checkpoint_error)?;
    let savepoint = match &control.from_savepoint {
        Some(path) => Some(Arc::new(
            load_savepoint(path, &config.storage)
                .await
                .map_err(checkpoint_error)?,
        )),
        None => None,
    };
    let mut failures = 0;
    loop {
        let newest = newest_usable(&storage, observer).await?;
        // A savepoint given to start from wins over older checkpoints of this directory; a
        // restart after a failure takes the checkpoints taken since.
        let restore = match (newest, &savepoint) {
            (Some(newest), Some(savepoint))
                if (failures > 0 || control.prefer_newer_checkpoints)
                    && newest.metadata.id > savepoint.metadata.id
                    && newest.metadata.job_tag == savepoint.metadata.job_tag =>
            {
                Some(newest)
            }
            (_, Some(savepoint)) => Some(savepoint.clone()),
            (newest, None) => newest,
        };
        if let Some(restore) = &restore {
            check_fits(&graph, &restore.metadata, &restore.location())?;
        }
        let settings = CheckpointSettings {
            interval,
            storage: storage.clone(),
            num_retained: config.num_retained.max(1),
            job_tag: restore
                .as_ref()
                .map_or_else(new_job_tag, |r| r.metadata.job_tag.clone()),
            restore: restore.clone(),
            stop: control.stop.clone(),
            savepoint_requests: control.savepoint_requests.clone(),
        };
        // Commit the restored checkpoint's output (it may not all have been when the process
        // stopped) and discard what came after, before anything runs: file I/O, so off the
        // async workers.
        {
            let (graph, settings) = (graph.clone(), settings.clone());
            tokio::task::spawn_blocking(move || crate::runtime::recover_sinks(&graph, &settings))
                .await
                .map_err(|e| JobError::Checkpoint(format!("recovering the sinks failed: {e}")))??;
        }
        if let Some(metadata) = restore.as_ref().map(|r| &r.metadata).filter(|m| m.finished) {
            return Ok(Ended::AlreadyFinished {
                id: metadata.id,
                location: location.to_string(),
            });
        }
        if let Some(restore) = &restore {
            observer.notice(&format!(
                "resuming from {} {} in {}",
                if restore.metadata.savepoint {
                    "savepoint"
                } else {
                    "checkpoint"
                },
                restore.metadata.id,
                restore.location()
            ));
        }
        let job = crate::runtime::start_with(graph.clone(), Some(settings), backend)?;
        let stats = job.stats.clone();
        match super::wait(job, &graph, observer).await {
            Ok(rows) => {
                let stopped = stats.savepoint.lock().ok().and_then(|s| s.clone());
                return Ok(match stopped {
                    Some(savepoint) => Ended::Stopped { savepoint },
                    None => Ended::Ran(rows, stats),
                });
            }
            Err(error) => {
                let RestartStrategy::FixedDelay { attempts, delay } = config.restart else {
                    return Err(error.into());
                };
                if failures >= attempts {
                    return Err(JobError::Checkpoint(format!(
                        "{error} (after {failures} restart(s), 'restart-strategy.fixed-delay.attempts' = {attempts})"
                    )));
                }
                failures += 1;
                observer.notice(&format!(
                    "the job failed: {error}; restarting from its last completed checkpoint in \
                     {delay:?} (restart {failures} of {attempts})"
                ));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn checkpoint_error(error: crate::checkpoint::CheckpointError) -> JobError {
    JobError::Checkpoint(error.to_string())
}

/// The newest completed checkpoint that reads back whole; damaged ones are reported and passed
/// over. `None` when there is none at all (a first start).
///
/// # Errors
/// Checkpoints exist but none is usable: starting afresh would repeat output, so nothing starts.
async fn newest_usable(
    storage: &CheckpointStorage,
    observer: &mut dyn Observer,
) -> Result<Option<Arc<Restore>>, JobError> {
    let (usable, unusable) = completed_checkpoints(storage)
        .await
        .map_err(checkpoint_error)?;
    let mut problems: Vec<String> = unusable
        .iter()
        .map(|(id, why)| format!("checkpoint {id}: {why}"))
        .collect();
    for problem in &problems {
        observer.notice(&format!("{problem}; trying an older checkpoint"));
    }
    for restore in usable {
        match verify(&restore).await {
            Ok(()) => return Ok(Some(Arc::new(restore))),
            Err(error) => {
                observer.notice(&format!("{error}; trying an older checkpoint"));
                problems.push(error.to_string());
            }
        }
    }
    if problems.is_empty() {
        return Ok(None);
    }
    Err(JobError::Checkpoint(format!(
        "no usable checkpoint in '{}' ({}); nothing was started. Starting afresh would repeat \
         output already written: remove the directory to do so deliberately",
        storage.location(),
        problems.join("; ")
    )))
}

/// Refuses a checkpoint whose state does not belong to this query, naming the operator.
fn check_fits(
    graph: &Graph,
    metadata: &CheckpointMetadata,
    location: &str,
) -> Result<(), JobError> {
    if metadata.max_parallelism != graph.max_parallelism {
        return Err(JobError::Checkpoint(format!(
            "checkpoint {} in {location} was taken with 'pipeline.max-parallelism' = {}, not {}: \
             key groups cannot be reassigned",
            metadata.id, metadata.max_parallelism, graph.max_parallelism
        )));
    }
    let ids = operator_ids(graph);
    // Keyed state first: an operator whose state does not fit is the clearest message (ids of
    // everything downstream of a change change with it).
    let mut operators: Vec<_> = metadata.operators.iter().collect();
    operators.sort_by_key(|o| !o.subtasks.iter().any(|s| s.state.is_some()));
    for operator in operators {
        let holds = operator
            .subtasks
            .iter()
            .any(|s| s.state.is_some() || s.source.is_some() || s.sink.is_some());
        if holds && !ids.contains(&operator.operator_id) {
            return Err(JobError::Checkpoint(format!(
                "checkpoint {} in {location} holds the state of operator {} (id {}), which this \
                 query does not have: the query changed since the checkpoint was taken",
                metadata.id, operator.name, operator.operator_id
            )));
        }
    }
    Ok(())
}

/// A tag for a job's unfinished output files, unique enough across runs.
fn new_job_tag() -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        crate::runtime::now_millis(),
        std::time::Instant::now()
    );
    Sha256::digest(seed.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
