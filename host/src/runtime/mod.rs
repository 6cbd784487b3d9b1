//! The dataflow runtime: one tokio task per operator subtask, bounded channels between them.
//!
//! Every subtask owns one input channel (all its upstream subtasks hold a sender) and a
//! [`router::Router`] over its output edges. CPU work (reading and decoding input, evaluating
//! expressions, calling Wasm, hashing keys) runs per batch on tokio's blocking threads, so it
//! never holds up the I/O of another task; the async tasks only move batches. Back-pressure is the
//! channels' bound. The first failure stops the job and is the error reported.
//!
//! **Boundary:** runs a `plan::Graph`; reaches connectors through `connector`, UDFs through
//! `functions`, state through `state`. No SQL.

pub mod accumulators;
pub mod aggregate;
pub mod changelog;
pub mod checkpoint_bench;
pub(crate) mod checkpointing;
pub mod join;
pub mod operators;
pub mod router;
pub mod session;
pub mod top_n;
pub mod upsert;
pub mod watermark;
pub mod window;
pub mod window_aggregate;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::checkpoint::coordinator::{
    self as checkpoint_channels, AckFigures, Coordinator, NodeInfo,
};
use crate::checkpoint::metadata::SubtaskSnapshot;
use crate::checkpoint::{CheckpointSettings, CheckpointStats};
use crate::connector::{self, ConnectorError, SourceRequest, Subtask};
use crate::plan::{Graph, OperatorSpec, Partitioning};
use crate::state::BackendKind;
use checkpointing::{InputGate, Next, TaskCheckpointing};
use operators::Operator;
use router::Router;
use watermark::{InputWatermarks, SourceWatermarks};

/// Rows per batch that sources produce.
pub const BATCH_SIZE: usize = crate::plan::DEFAULT_BATCH_SIZE;
/// Batches in flight per channel before the sender waits.
const CHANNEL_CAPACITY: usize = 4;

/// What flows on an edge.
#[derive(Debug, Clone)]
pub enum Message {
    Batch(RecordBatch),
    /// Event time (ms since the epoch) below which no more rows will come from this sender.
    Watermark(i64),
    /// A checkpoint's barrier.
    Barrier(Barrier),
    /// The sender has had nothing to read for its idle timeout: hold no watermark back for it
    /// until it sends one again.
    Idle,
    EndOfInput,
}

/// Checkpoint `id`'s barrier; a savepoint's is kept apart from retention, where the user asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    pub id: u64,
    pub savepoint: bool,
}

/// A message, which of the receiver's inputs it came on, and which upstream subtask sent it
/// (numbered over all the receiver's inputs: for watermarks, alignment and end counting).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub input: usize,
    pub sender: usize,
    pub message: Message,
}

/// A job that failed while running.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{operator}: {source}")]
    Connector {
        operator: String,
        #[source]
        source: ConnectorError,
    },
    #[error("{operator}: {message}")]
    Operator { operator: String, message: String },
    #[error("{0}")]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Per-operator counters, shared by its subtasks and readable while the job runs.
#[derive(Debug, Default)]
pub struct OperatorStats {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    /// Time spent in the operator's own work (not waiting), over all subtasks.
    pub busy_nanos: AtomicU64,
    /// Rows a source skipped as unparsable.
    pub skipped_rows: AtomicU64,
    /// Rows that came after the watermark had passed their window: dropped, and counted here.
    pub late_rows: AtomicU64,
    /// Time spent waiting for room in downstream channels (back-pressure), over all subtasks.
    pub backpressure_nanos: AtomicU64,
    /// Each subtask's last watermark sent downstream (`i64::MIN`: none yet).
    pub watermarks: Vec<std::sync::atomic::AtomicI64>,
}

impl OperatorStats {
    fn with_parallelism(parallelism: usize) -> Self {
        Self {
            watermarks: (0..parallelism)
                .map(|_| std::sync::atomic::AtomicI64::new(i64::MIN))
                .collect(),
            ..Self::default()
        }
    }

    /// The operator's watermark: the least of its subtasks' (milliseconds since the epoch);
    /// `None` until every subtask has sent one.
    pub fn watermark(&self) -> Option<i64> {
        let least = self
            .watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()?;
        (least != i64::MIN).then_some(least)
    }
}

/// Counters of a running or finished job, one entry per graph node.
#[derive(Debug)]
pub struct JobStats {
    pub operators: Vec<(String, Arc<OperatorStats>)>,
    pub started: Instant,
    /// Completed checkpoints, oldest first.
    pub checkpoints: Arc<Mutex<Vec<CheckpointStats>>>,
    /// Where the savepoint the job stopped with is, if it stopped with one.
    pub savepoint: Arc<Mutex<Option<String>>>,
}

impl JobStats {
    fn new(graph: &Graph) -> Arc<Self> {
        Arc::new(Self {
            operators: graph
                .nodes
                .iter()
                .map(|n| {
                    (
                        format!("[{}] {}", n.id, n.operator.name()),
                        Arc::new(OperatorStats::with_parallelism(n.parallelism)),
                    )
                })
                .collect(),
            started: Instant::now(),
            checkpoints: Arc::default(),
            savepoint: Arc::default(),
        })
    }

    /// Rows read by sources and rows written by sinks, so far.
    pub fn rows_in_out(&self, graph: &Graph) -> (u64, u64) {
        let mut read = 0;
        let mut written = 0;
        for (node, (_, stats)) in graph.nodes.iter().zip(&self.operators) {
            match node.operator {
                OperatorSpec::Source { .. } | OperatorSpec::Values { .. } => {
                    read += stats.rows_out.load(Ordering::Relaxed);
                }
                OperatorSpec::Sink { .. } | OperatorSpec::Collect => {
                    written += stats.rows_in.load(Ordering::Relaxed);
                }
                _ => {}
            }
        }
        (read, written)
    }
}

/// A job in progress: its stats (for a progress display) and its completion.
pub struct RunningJob {
    pub stats: Arc<JobStats>,
    handle: tokio::task::JoinHandle<Result<Vec<RecordBatch>, RuntimeError>>,
}

impl std::fmt::Debug for RunningJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningJob").finish_non_exhaustive()
    }
}

impl RunningJob {
    /// Waits for the end; the rows of a `Collect` node (a bare `SELECT`), in arrival order.
    ///
    /// # Errors
    /// The first failure of any subtask.
    pub async fn finish(mut self) -> Result<Vec<RecordBatch>, RuntimeError> {
        (&mut self.handle)
            .await
            .map_err(|e| RuntimeError::Internal(format!("the job's task failed: {e}")))?
    }
}

/// Dropping a job cancels it: its task owns every subtask, which end with it.
impl Drop for RunningJob {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Starts every subtask of `graph` on the current tokio runtime, without checkpoints.
///
/// # Errors
/// An operator that cannot be built (an expression DataFusion cannot make physical).
pub fn start(graph: Arc<Graph>) -> Result<RunningJob, RuntimeError> {
    start_with(graph, None, &BackendKind::Memory)
}

/// Which upstream subtasks (numbered over all of a node's input edges, as routers number
/// themselves) send to subtask `subtask` of `node`.
fn senders_of(graph: &Graph, node: usize, subtask: usize) -> HashSet<usize> {
    let mut senders = HashSet::new();
    let mut first = 0;
    for edge in graph.inputs_of(node) {
        let count = graph.nodes[edge.from].parallelism;
        match edge.partitioning {
            Partitioning::Forward => {
                senders.insert(first + subtask);
            }
            _ => senders.extend(first..first + count),
        }
        first += count;
    }
    senders
}

/// Starts every subtask of `graph`; with `checkpoints`, a coordinator takes checkpoints and
/// every subtask starts from the checkpoint to restore, if any (whose sinks' output the caller
/// has settled first with [`recover_sinks`]).
///
/// # Errors
/// An operator that cannot be built.
pub fn start_with(
    graph: Arc<Graph>,
    checkpoints: Option<CheckpointSettings>,
    backend: &BackendKind,
) -> Result<RunningJob, RuntimeError> {
    // Unique to this attempt, even for two started in the same millisecond (a restart without
    // delay, or two jobs of one process): shared SST objects and working directories are named
    // by it, and must never be overwritten by another attempt's.
    static ATTEMPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let lineage = format!(
        "{:x}-{}",
        now_millis(),
        ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let stats = JobStats::new(&graph);
    let operator_ids = crate::checkpoint::operator_ids(&graph);
    // State directories and checkpointed state are keyed by these ids.
    let distinct: std::collections::HashSet<&String> = operator_ids.iter().collect();
    if distinct.len() != operator_ids.len() {
        return Err(RuntimeError::Internal(format!(
            "two operators share an id: {operator_ids:?}"
        )));
    }
    let mut coordinator = None;
    let mut task_checkpointing: Option<(CheckpointSettings, checkpoint_channels::Channels)> = None;
    if let Some(settings) = checkpoints {
        let nodes = graph
            .nodes
            .iter()
            .map(|n| NodeInfo {
                operator_id: operator_ids[n.id].clone(),
                name: format!("{} [{}]", n.operator.name(), n.id),
                parallelism: n.parallelism,
            })
            .collect();
        let last_id = settings.restore.as_ref().map_or(0, |r| r.metadata.id);
        let (c, channels) = Coordinator::new(
            settings.clone(),
            nodes,
            graph.max_parallelism,
            last_id,
            stats.checkpoints.clone(),
        );
        coordinator = Some(c);
        task_checkpointing = Some((settings, channels));
    }
    // One channel per subtask of every node that has inputs.
    let mut senders: Vec<Vec<mpsc::Sender<Envelope>>> = Vec::with_capacity(graph.nodes.len());
    let mut receivers: Vec<Vec<Option<mpsc::Receiver<Envelope>>>> = Vec::new();
    for node in &graph.nodes {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..node.parallelism)
            .map(|_| {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                (tx, Some(rx))
            })
            .unzip();
        senders.push(tx);
        receivers.push(rx);
    }
    let collected = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks: JoinSet<Result<(), RuntimeError>> = JoinSet::new();
    let mut sinks: JoinSet<Result<(), RuntimeError>> = JoinSet::new();
    for node in &graph.nodes {
        let node_stats = stats.operators[node.id].1.clone();
        let label = format!("{} [{}]", node.operator.name(), node.id);
        for (index, receiver) in receivers[node.id].iter_mut().enumerate() {
            let subtask = Subtask {
                index,
                count: node.parallelism,
            };
            let router = Router::new(&graph, node.id, index, &senders)?;
            let input = receiver
                .take()
                .map(|r| InputGate::new(r, senders_of(&graph, node.id, index)));
            let checkpointing =
                task_checkpointing
                    .as_ref()
                    .map(|(settings, channels)| TaskCheckpointing {
                        task: (node.id, index),
                        operator_id: operator_ids[node.id].clone(),
                        storage: settings.storage.clone(),
                        reports: channels.reports.clone(),
                        triggers: channels.triggers.clone(),
                        completed: channels.completed.clone(),
                        restore: settings.restore.clone(),
                        parallelism: node.parallelism,
                        max_parallelism: graph.max_parallelism,
                        uploaded: Arc::default(),
                        pending_upload: Arc::default(),
                        lineage: lineage.clone(),
                    });
            let task = SubtaskContext {
                subtask: index,
                node_label: label.clone(),
                stats: node_stats.clone(),
                router,
                checkpointing,
                rocksdb_dir: match backend {
                    BackendKind::Memory => None,
                    BackendKind::RocksDb(root) => {
                        // Per run: a restarted job never meets the last run's files.
                        Some(root.join(format!("{}-{index}-{lineage}", operator_ids[node.id])))
                    }
                },
            };
            match &node.operator {
                OperatorSpec::Source {
                    table,
                    projection,
                    watermark,
                } => {
                    let table = table.clone();
                    let request = SourceRequest {
                        subtask,
                        projection: projection.clone(),
                        batch_size: graph.batch_size,
                    };
                    let watermarks = watermark.map(SourceWatermarks::new);
                    tasks.spawn(run_source(task, table, request, watermarks));
                }
                OperatorSpec::Sink { table } => {
                    let job_tag = task_checkpointing
                        .as_ref()
                        .map(|(settings, _)| settings.job_tag.as_str());
                    let writer =
                        connector::open_sink(table, subtask, job_tag).map_err(|source| {
                            RuntimeError::Connector {
                                operator: label.clone(),
                                source,
                            }
                        })?;
                    let Some(input) = input else {
                        return Err(RuntimeError::Internal("sink without input".into()));
                    };
                    sinks.spawn(run_sink(task, writer, input));
                }
                OperatorSpec::Collect => {
                    let Some(input) = input else {
                        return Err(RuntimeError::Internal("collect without input".into()));
                    };
                    tasks.spawn(run_collect(task, collected.clone(), input));
                }
                spec => {
                    let operator = operators::create(spec, node, subtask, graph.max_parallelism)
                        .map_err(|message| RuntimeError::Operator {
                            operator: label.clone(),
                            message,
                        })?;
                    tasks.spawn(run_operator(task, operator, input));
                }
            }
        }
    }
    drop(senders);
    // The tasks hold the only report senders: the coordinator learns of their end that way.
    drop(task_checkpointing);
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(coordinator) = coordinator {
        let savepoint = stats.savepoint.clone();
        let stopped = stopped.clone();
        tasks.spawn(async move {
            if let Some(location) = coordinator.run().await? {
                if let Ok(mut slot) = savepoint.lock() {
                    *slot = Some(location);
                }
                stopped.store(true, Ordering::SeqCst);
            }
            Ok(())
        });
    }
    let handle = tokio::spawn(async move {
        loop {
            let joined = tokio::select! {
                Some(joined) = tasks.join_next() => joined,
                Some(joined) = sinks.join_next() => joined,
                else => break,
            };
            let result = joined
                .map_err(|e| RuntimeError::Internal(format!("a subtask panicked: {e}")))
                .and_then(|r| r);
            if let Err(error) = result {
                tasks.abort_all();
                sinks.abort_all();
                return Err(error);
            }
            // Stopped with a savepoint: once every sink has committed it, the rest stops.
            if stopped.load(Ordering::SeqCst) && sinks.is_empty() {
                tasks.abort_all();
                break;
            }
        }
        let rows = std::mem::take(
            &mut *collected
                .lock()
                .map_err(|_| RuntimeError::Internal("collected rows poisoned".into()))?,
        );
        Ok(rows)
    });
    Ok(RunningJob { stats, handle })
}

/// Before a job with checkpoints runs: every sink commits what it pre-committed for the
/// checkpoint restored, and discards what it wrote after it (or, on a first start, what an
/// earlier run with the same tag left).
///
/// # Errors
/// Output that cannot be committed or removed.
pub fn recover_sinks(graph: &Graph, settings: &CheckpointSettings) -> Result<(), RuntimeError> {
    let operator_ids = crate::checkpoint::operator_ids(graph);
    for node in &graph.nodes {
        let OperatorSpec::Sink { table } = &node.operator else {
            continue;
        };
        let pending: Vec<serde_json::Value> = settings
            .restore
            .as_ref()
            .and_then(|r| r.metadata.operator(&operator_ids[node.id]))
            .map(|o| o.subtasks.iter().filter_map(|s| s.sink.clone()).collect())
            .unwrap_or_default();
        connector::recover_sink(table, &pending, &settings.job_tag).map_err(|source| {
            RuntimeError::Connector {
                operator: format!("{} [{}]", node.operator.name(), node.id),
                source,
            }
        })?;
    }
    Ok(())
}

/// What every subtask task holds.
struct SubtaskContext {
    subtask: usize,
    /// `Project [1]`: for errors, which should not depend on which subtask failed first.
    node_label: String,
    stats: Arc<OperatorStats>,
    router: Router,
    /// Set when the job takes checkpoints.
    checkpointing: Option<TaskCheckpointing>,
    /// Where this subtask's RocksDB lives, when state is kept in RocksDB.
    rocksdb_dir: Option<std::path::PathBuf>,
}

impl SubtaskContext {
    fn count_in(&self, batch: &RecordBatch) {
        self.stats
            .rows_in
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
    }

    /// Sends the parts downstream, counting the time spent waiting for room.
    async fn send(&self, parts: Vec<router::Part>) -> bool {
        let started = Instant::now();
        let open = self.router.send(parts).await;
        self.stats
            .backpressure_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        open
    }

    /// Forwards a watermark downstream and shows it in the stats.
    async fn send_watermark(&self, watermark: i64) -> bool {
        if let Some(slot) = self.stats.watermarks.get(self.subtask) {
            slot.store(watermark, Ordering::Relaxed);
        }
        self.router.broadcast(Message::Watermark(watermark)).await
    }

    fn busy(&self, started: Instant) {
        self.stats
            .busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn operator_error(&self, message: String) -> RuntimeError {
        RuntimeError::Operator {
            operator: self.node_label.clone(),
            message,
        }
    }

    /// Whether the restored checkpoint says this subtask had already finished.
    fn restored_finished(&self) -> bool {
        self.checkpointing
            .as_ref()
            .is_some_and(TaskCheckpointing::restored_finished)
    }
}

async fn run_source(
    mut task: SubtaskContext,
    table: connector::TableDef,
    request: SourceRequest,
    mut watermarks: Option<SourceWatermarks>,
) -> Result<(), RuntimeError> {
    let connector_error = |source| RuntimeError::Connector {
        operator: format!("reading table '{}'", table.name),
        source,
    };
    let _finish = checkpointing::FinishGuard::new(&task.checkpointing);
    let source_finished = task.checkpointing.as_ref().is_some_and(|c| {
        c.restore
            .as_ref()
            .and_then(|r| r.metadata.operator(&c.operator_id))
            .is_some_and(|o| o.subtasks.iter().all(|s| s.finished))
    });
    if source_finished {
        task.router.end().await;
        return Ok(());
    }
    // Positions of every subtask of the restored checkpoint (several when rescaled).
    let restored = task.checkpointing.as_ref().and_then(|c| {
        let operator = c.restore.as_ref()?.metadata.operator(&c.operator_id)?;
        Some(operator.subtasks.clone())
    });
    let subtask = request.subtask;
    let opened = {
        let table = table.clone();
        let restored = restored.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = connector::open_source(&table, &request)?;
            if let Some(subtasks) = restored {
                let positions: Vec<Option<serde_json::Value>> =
                    subtasks.iter().map(|s| s.source.clone()).collect();
                reader.restore(&positions)?;
            }
            Ok(reader)
        })
        .await
        .map_err(join_error)?
    };
    let mut reader = opened.map_err(&connector_error)?;
    if let (Some(subtasks), Some(w)) = (&restored, &mut watermarks) {
        let own = subtasks.iter().find(|s| s.subtask == subtask.index);
        let seen = match own.filter(|_| subtasks.len() == subtask.count) {
            Some(own) => own.watermark,
            None => subtasks.iter().filter_map(|s| s.watermark).min(),
        };
        if let Some(seen) = seen {
            w.restore(seen);
        }
    }
    let mut last_barrier = task
        .checkpointing
        .as_ref()
        .map_or(0, |c| c.triggers.borrow().id);
    // Positions taken at barriers, until their checkpoints complete (the reader hears of each).
    let mut completions = task.checkpointing.as_ref().map(|c| c.completed.clone());
    let mut at_barriers: std::collections::VecDeque<(u64, serde_json::Value)> =
        std::collections::VecDeque::new();
    let idle_timeout = watermarks.as_ref().and_then(SourceWatermarks::idle_timeout);
    let mut idle = false;
    // A reader that waits with a timeout (kafka) returns an empty batch when nothing came:
    // it is not sent, and the idle timeout counts from the last rows.
    let mut last_rows = Instant::now();
    loop {
        // A checkpoint was triggered: the barrier goes after the last batch sent.
        if let Some(checkpointing) = &mut task.checkpointing {
            let barrier = *checkpointing.triggers.borrow_and_update();
            let id = barrier.id;
            if id > last_barrier {
                last_barrier = id;
                let position = reader.position().map_err(&connector_error)?;
                at_barriers.push_back((id, position.clone()));
                let snapshot = SubtaskSnapshot {
                    subtask: checkpointing.task.1,
                    source: Some(position),
                    watermark: watermarks.as_ref().and_then(SourceWatermarks::checkpointed),
                    ..SubtaskSnapshot::default()
                };
                if !task.router.broadcast(Message::Barrier(barrier)).await {
                    return Ok(());
                }
                checkpointing.ack(id, snapshot, AckFigures::default());
            }
        }
        let confirmed = newly_completed(&mut completions, &mut at_barriers);
        let mut router = task.router.clone();
        let mut handle = tokio::task::spawn_blocking(move || {
            if let Some(position) = confirmed {
                reader.checkpoint_completed(&position, false);
            }
            let started = Instant::now();
            let result = reader.next_batch().map(|batch| {
                batch.map(|batch| {
                    let parts = router.partition(&batch).and_then(|parts| {
                        // Empty batches too: a split gone idle may let the watermark on.
                        let watermark = match &mut watermarks {
                            Some(w) => match batch.columns().get(w.column()) {
                                Some(times) => w.observe(reader.split_rows(), times)?,
                                None => return Err("the event-time column is missing".into()),
                            },
                            None => None,
                        };
                        Ok((parts, watermark))
                    });
                    (batch.num_rows(), parts)
                })
            });
            (
                reader,
                router,
                watermarks,
                result.map(|r| (r, started.elapsed())),
            )
        });
        // Nothing to read for the idle timeout: downstream stops waiting for this subtask.
        let joined = match idle_timeout {
            None => handle.await,
            Some(timeout) => loop {
                match tokio::time::timeout(timeout, &mut handle).await {
                    Ok(joined) => break joined,
                    Err(_) if !idle => {
                        idle = true;
                        if !task.router.broadcast(Message::Idle).await {
                            return Ok(());
                        }
                    }
                    Err(_) => {}
                }
            },
        };
        let (back_reader, back_router, back_watermarks, result) = joined.map_err(join_error)?;
        reader = back_reader;
        task.router = back_router;
        watermarks = back_watermarks;
        task.stats
            .skipped_rows
            .store(reader.skipped_rows(), Ordering::Relaxed);
        let (outcome, busy) = result.map_err(&connector_error)?;
        task.stats
            .busy_nanos
            .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
        match outcome {
            Some((0, parts)) => {
                let (_, watermark) = parts.map_err(|message| RuntimeError::Operator {
                    operator: task.node_label.clone(),
                    message,
                })?;
                if let Some(watermark) = watermark
                    && !idle
                    && !task.send_watermark(watermark).await
                {
                    return Ok(());
                }
                if let Some(timeout) = idle_timeout
                    && !idle
                    && last_rows.elapsed() >= timeout
                {
                    idle = true;
                    if !task.router.broadcast(Message::Idle).await {
                        return Ok(());
                    }
                }
            }
            Some((rows, parts)) => {
                last_rows = Instant::now();
                task.stats
                    .rows_out
                    .fetch_add(rows as u64, Ordering::Relaxed);
                let (parts, watermark) = parts.map_err(|message| RuntimeError::Operator {
                    operator: task.node_label.clone(),
                    message,
                })?;
                if !task.send(parts).await {
                    return Ok(());
                }
                // Active again: downstream learns it from a watermark, advanced or not.
                let watermark = if std::mem::take(&mut idle) {
                    watermark.or_else(|| watermarks.as_ref().and_then(SourceWatermarks::emitted))
                } else {
                    watermark
                };
                if let Some(watermark) = watermark
                    && !task.send_watermark(watermark).await
                {
                    return Ok(());
                }
            }
            None => {
                // The end of input is the end of time: downstream treats it as such.
                task.router.end().await;
                if let Some(checkpointing) = &task.checkpointing {
                    let position = reader.position().ok();
                    checkpointing.finished(SubtaskSnapshot {
                        subtask: checkpointing.task.1,
                        source: position.clone(),
                        ..SubtaskSnapshot::default()
                    });
                    // The final checkpoint, numbered after the last barrier, holds the end.
                    let mut completed = checkpointing.completed.clone();
                    let done = completed.wait_for(|c| c.id > last_barrier).await.is_ok();
                    if let Some(position) = position.filter(|_| done) {
                        tokio::task::spawn_blocking(move || {
                            reader.checkpoint_completed(&position, true);
                        })
                        .await
                        .map_err(join_error)?;
                    }
                }
                return Ok(());
            }
        }
    }
}

/// The position of the latest checkpoint completed since the last call, if any (the positions
/// of earlier ones are dropped: the latest covers them).
fn newly_completed(
    completions: &mut Option<tokio::sync::watch::Receiver<checkpoint_channels::Completed>>,
    at_barriers: &mut std::collections::VecDeque<(u64, serde_json::Value)>,
) -> Option<serde_json::Value> {
    let receiver = completions.as_mut()?;
    if !receiver.has_changed().unwrap_or(false) {
        return None;
    }
    let id = receiver.borrow_and_update().id;
    let mut latest = None;
    while at_barriers.front().is_some_and(|(at, _)| *at <= id) {
        latest = at_barriers.pop_front().map(|(_, position)| position);
    }
    latest
}

/// What an operator subtask is asked to do next.
enum Step {
    /// A batch, and which input it came on.
    Batch(usize, RecordBatch),
    /// The wall clock (ms since the epoch), for processing-time timers.
    Timer(i64),
    Watermark(i64),
    End,
}

async fn run_operator(
    mut task: SubtaskContext,
    mut operator: Box<dyn Operator>,
    input: Option<InputGate>,
) -> Result<(), RuntimeError> {
    let _finish = checkpointing::FinishGuard::new(&task.checkpointing);
    // Restored as finished: its output is in the checkpoint already; it only ends again.
    let finished_before = task.restored_finished();
    if let Some(dir) = task.rocksdb_dir.clone()
        && operator.state_backend().is_some()
    {
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = crate::state::open_rocksdb(&dir).map(|db| {
                if let Some(slot) = operator.state_backend() {
                    *slot = db;
                }
            });
            (operator, result)
        })
        .await
        .map_err(join_error)?;
        operator = back;
        result.map_err(|e| task.operator_error(e.to_string()))?;
    }
    if let Some(checkpointing) = task.checkpointing.clone()
        && checkpointing.restore.is_some()
        && !finished_before
    {
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = checkpointing::restore_operator(operator.as_mut(), &checkpointing);
            (operator, result)
        })
        .await
        .map_err(join_error)?;
        operator = back;
        result.map_err(|message| task.operator_error(format!("restoring its state: {message}")))?;
    }
    let Some(mut input) = input.filter(|i| i.sender_count() > 0) else {
        // A node without inputs (VALUES) runs its end of input at once.
        if !finished_before {
            let (_, open) = run_step(&mut task, operator, Step::End).await?;
            if !open {
                return Ok(());
            }
        }
        task.router.end().await;
        return Ok(());
    };
    let expected_ends = input.sender_count();
    let mut ended = 0;
    let mut watermarks = InputWatermarks::new(expected_ends);
    let mut ticker = operator.timer_interval().map(tokio::time::interval);
    loop {
        let next = match &mut ticker {
            None => input.next().await,
            Some(ticker) => tokio::select! {
                next = input.next() => next,
                _ = ticker.tick() => {
                    if finished_before {
                        continue;
                    }
                    let (back, open) = run_step(&mut task, operator, Step::Timer(now_millis())).await?;
                    operator = back;
                    if !open {
                        task.router.end().await;
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        let envelope = match next {
            // Every sender went away without ending: one failed, and its error is the job's.
            Next::Closed => return Ok(()),
            Next::Barrier { barrier, alignment } => {
                if !finished_before {
                    operator = checkpoint_operator(&mut task, operator, barrier, alignment).await?;
                }
                continue;
            }
            Next::Envelope(envelope) => envelope,
        };
        if finished_before && !matches!(envelope.message, Message::EndOfInput) {
            continue;
        }
        let (step, last) = match envelope.message {
            Message::Batch(batch) => {
                task.count_in(&batch);
                (Step::Batch(envelope.input, batch), false)
            }
            Message::Watermark(watermark) => match watermarks.update(envelope.sender, watermark) {
                Some(combined) => (Step::Watermark(combined), false),
                None => continue,
            },
            Message::EndOfInput => {
                ended += 1;
                let last = ended >= expected_ends;
                if finished_before {
                    if last {
                        task.router.end().await;
                        return Ok(());
                    }
                    continue;
                }
                match watermarks.end(envelope.sender) {
                    Some(combined) if !last => (Step::Watermark(combined), false),
                    // The last end: the watermark reaches the end of time first.
                    Some(combined) => {
                        let (back, open) =
                            run_step(&mut task, operator, Step::Watermark(combined)).await?;
                        operator = back;
                        if !open {
                            task.router.end().await;
                            return Ok(());
                        }
                        (Step::End, true)
                    }
                    None => (Step::End, last),
                }
            }
            Message::Idle => match watermarks.idle(envelope.sender) {
                Some(combined) => (Step::Watermark(combined), false),
                None => {
                    // Every input idle: so is this subtask, downstream.
                    if watermarks.all_idle() && !task.router.broadcast(Message::Idle).await {
                        return Ok(());
                    }
                    continue;
                }
            },
            // The gate turns barriers into `Next::Barrier`.
            Message::Barrier(_) => continue,
        };
        if matches!(step, Step::End) && !last {
            continue;
        }
        let (back, open) = run_step(&mut task, operator, step).await?;
        operator = back;
        if last || !open || operator.is_finished() {
            task.router.end().await;
            return Ok(());
        }
    }
}

/// Snapshots the operator for checkpoint `id` (on a blocking thread), forwards the barrier and
/// acknowledges.
async fn checkpoint_operator(
    task: &mut SubtaskContext,
    mut operator: Box<dyn Operator>,
    barrier: Barrier,
    alignment: std::time::Duration,
) -> Result<Box<dyn Operator>, RuntimeError> {
    let id = barrier.id;
    let Some(checkpointing) = task.checkpointing.clone() else {
        return Ok(operator);
    };
    // The previous checkpoint's upload is over before this one is triggered (the coordinator
    // waits for every ack); waiting keeps the order certain all the same.
    if let Some(previous) = checkpointing.take_pending_upload() {
        let _ = previous.await;
    }
    let (back, result) = tokio::task::spawn_blocking(move || {
        let result = checkpointing::take_snapshot(operator.as_mut());
        (operator, result)
    })
    .await
    .map_err(join_error)?;
    let taken =
        result.map_err(|message| task.operator_error(format!("checkpoint {id}: {message}")))?;
    if !task.router.broadcast(Message::Barrier(barrier)).await {
        return Ok(back);
    }
    // The operator goes on with its input while the snapshot is written: the checkpoint
    // completes when every upload has acked, and sinks commit only then.
    let uploading = checkpointing.clone();
    let label = task.node_label.clone();
    let upload = tokio::task::spawn_blocking(move || {
        match checkpointing::upload_snapshot(&uploading, taken, barrier) {
            Ok((snapshot, mut figures)) => {
                figures.alignment = alignment;
                uploading.ack(id, snapshot, figures);
            }
            Err(message) => uploading.failed(id, format!("{label}: {message}")),
        }
    });
    if let Ok(mut pending) = checkpointing.pending_upload.lock() {
        *pending = Some(upload);
    }
    Ok(back)
}

/// Runs one step on a blocking thread and sends what it emits; `false` once downstream is gone.
async fn run_step(
    task: &mut SubtaskContext,
    mut operator: Box<dyn Operator>,
    step: Step,
) -> Result<(Box<dyn Operator>, bool), RuntimeError> {
    let watermark = match step {
        Step::Watermark(w) => Some(w),
        _ => None,
    };
    let mut router = std::mem::take(&mut task.router);
    let (back_operator, back_router, result) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut out = Vec::new();
        let result = match step {
            Step::Batch(input, batch) => operator.on_input(input, batch, &mut out),
            Step::Timer(now) => operator.on_timer(now, &mut out),
            Step::Watermark(w) => operator.on_watermark(w, &mut out),
            Step::End => operator.on_end(&mut out),
        }
        .map(|()| operator.take_late_rows())
        .and_then(|late| {
            let mut parts = Vec::new();
            for batch in out.into_iter().filter(|b| b.num_rows() > 0) {
                parts.extend(router.partition(&batch)?);
            }
            Ok((parts, late))
        });
        (operator, router, result.map(|parts| (parts, started)))
    })
    .await
    .map_err(join_error)?;
    task.router = back_router;
    let ((parts, late), started) = result.map_err(|message| RuntimeError::Operator {
        operator: task.node_label.clone(),
        message,
    })?;
    if late > 0 {
        task.stats.late_rows.fetch_add(late, Ordering::Relaxed);
    }
    task.busy(started);
    let rows: usize = parts.iter().map(|(_, _, b)| b.num_rows()).sum();
    task.stats
        .rows_out
        .fetch_add(rows as u64, Ordering::Relaxed);
    let mut open = task.send(parts).await;
    // Downstream learns of the end of time from the end of input itself.
    if let Some(w) = watermark.filter(|&w| open && w < watermark::END_OF_TIME) {
        open = task.send_watermark(w).await;
    }
    Ok((back_operator, open))
}

async fn run_sink(
    task: SubtaskContext,
    mut writer: Box<dyn connector::SinkWriter>,
    mut input: InputGate,
) -> Result<(), RuntimeError> {
    let expected_ends = input.sender_count();
    let mut ended = 0;
    let error = |source| RuntimeError::Connector {
        operator: task.node_label.clone(),
        source,
    };
    let mut completed = task.checkpointing.as_ref().map(|c| c.completed.clone());
    let mut last_barrier = task
        .checkpointing
        .as_ref()
        .map_or(0, |c| c.triggers.borrow().id);
    loop {
        let next = tokio::select! {
            next = input.next() => next,
            Some(done) = next_completed(&mut completed) => {
                let (back, result) = sink_call(writer, move |w| w.commit(done.id)).await?;
                writer = back;
                result.map_err(error)?;
                // Stopped with a savepoint: its output is committed; nothing after it is.
                if done.stop {
                    return Ok(());
                }
                continue;
            }
        };
        match next {
            // An upstream stopped without finishing: it failed, and its error is the job's.
            Next::Closed => return Ok(()),
            Next::Barrier { barrier, alignment } => {
                let id = barrier.id;
                let (back, result) = sink_call(writer, move |w| w.pre_commit(id)).await?;
                writer = back;
                let pending = result.map_err(error)?;
                last_barrier = id;
                if let Some(checkpointing) = &task.checkpointing {
                    checkpointing.ack(
                        id,
                        SubtaskSnapshot {
                            subtask: checkpointing.task.1,
                            sink: pending,
                            ..SubtaskSnapshot::default()
                        },
                        AckFigures {
                            alignment,
                            ..AckFigures::default()
                        },
                    );
                }
            }
            Next::Envelope(envelope) => match envelope.message {
                Message::Batch(batch) => {
                    task.count_in(&batch);
                    // Sinks see a changelog's row kinds as a leading `op` column.
                    let batch = changelog::for_display(batch)
                        .map_err(|message| task.operator_error(message))?;
                    let started = Instant::now();
                    let (back, result) = sink_call(writer, move |w| w.write(&batch)).await?;
                    writer = back;
                    result.map_err(error)?;
                    task.busy(started);
                }
                Message::EndOfInput => {
                    ended += 1;
                    if ended >= expected_ends {
                        break;
                    }
                }
                Message::Watermark(_) | Message::Barrier(_) | Message::Idle => {}
            },
        }
    }
    let Some(checkpointing) = &task.checkpointing else {
        return tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(join_error)?
            .map_err(error);
    };
    // The last output becomes visible with the first checkpoint completed from now on, which
    // is numbered after the last barrier this sink saw.
    let label = last_barrier + 1;
    let (back, result) = sink_call(writer, move |w| w.pre_commit(label)).await?;
    writer = back;
    checkpointing.finished(SubtaskSnapshot {
        subtask: checkpointing.task.1,
        sink: result.map_err(error)?,
        ..SubtaskSnapshot::default()
    });
    let mut completed = checkpointing.completed.clone();
    let Ok(id) = completed
        .wait_for(|done| done.id >= label)
        .await
        .map(|done| done.id)
    else {
        // The coordinator stopped first: the job failed, and its error is reported.
        return Ok(());
    };
    sink_call(writer, move |w| w.commit(id))
        .await?
        .1
        .map_err(error)
}

/// Runs a call on the sink's writer on a blocking thread.
async fn sink_call<T: Send + 'static>(
    mut writer: Box<dyn connector::SinkWriter>,
    call: impl FnOnce(&mut dyn connector::SinkWriter) -> T + Send + 'static,
) -> Result<(Box<dyn connector::SinkWriter>, T), RuntimeError> {
    tokio::task::spawn_blocking(move || {
        let result = call(writer.as_mut());
        (writer, result)
    })
    .await
    .map_err(join_error)
}

/// The next checkpoint completed, if the job takes checkpoints (else never).
async fn next_completed(
    completed: &mut Option<tokio::sync::watch::Receiver<checkpoint_channels::Completed>>,
) -> Option<checkpoint_channels::Completed> {
    if let Some(receiver) = completed
        && receiver.changed().await.is_ok()
    {
        return Some(*receiver.borrow_and_update());
    }
    std::future::pending().await
}

async fn run_collect(
    task: SubtaskContext,
    collected: Arc<std::sync::Mutex<Vec<RecordBatch>>>,
    mut input: InputGate,
) -> Result<(), RuntimeError> {
    let _finish = checkpointing::FinishGuard::new(&task.checkpointing);
    let expected_ends = input.sender_count();
    let mut ended = 0;
    loop {
        let envelope = match input.next().await {
            Next::Closed => break,
            // Rows go to the client as they come: nothing to save.
            Next::Barrier { barrier, alignment } => {
                if let Some(checkpointing) = &task.checkpointing {
                    checkpointing.ack(
                        barrier.id,
                        SubtaskSnapshot {
                            subtask: checkpointing.task.1,
                            ..SubtaskSnapshot::default()
                        },
                        AckFigures {
                            alignment,
                            ..AckFigures::default()
                        },
                    );
                }
                continue;
            }
            Next::Envelope(envelope) => envelope,
        };
        match envelope.message {
            Message::Batch(batch) => {
                task.count_in(&batch);
                let batch = changelog::for_display(batch)
                    .map_err(|message| task.operator_error(message))?;
                collected
                    .lock()
                    .map_err(|_| RuntimeError::Internal("collected rows poisoned".into()))?
                    .push(batch);
            }
            Message::EndOfInput => {
                ended += 1;
                if ended >= expected_ends {
                    break;
                }
            }
            Message::Watermark(_) | Message::Barrier(_) | Message::Idle => {}
        }
    }
    Ok(())
}

/// The wall clock in milliseconds since the epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn join_error(error: tokio::task::JoinError) -> RuntimeError {
    RuntimeError::Internal(format!("a blocking task failed: {error}"))
}
