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
pub mod join;
pub mod operators;
pub mod router;
pub mod session;
pub mod top_n;
pub mod watermark;
pub mod window;
pub mod window_aggregate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::connector::{self, ConnectorError, SourceRequest, Subtask};
use crate::plan::{Graph, OperatorSpec};
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
    /// Checkpoint barrier `n`.
    Barrier(u64),
    /// The sender has had nothing to read for its idle timeout: hold no watermark back for it
    /// until it sends one again.
    Idle,
    EndOfInput,
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
}

/// Counters of a running or finished job, one entry per graph node.
#[derive(Debug)]
pub struct JobStats {
    pub operators: Vec<(String, Arc<OperatorStats>)>,
    pub started: Instant,
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
                        Arc::new(OperatorStats::default()),
                    )
                })
                .collect(),
            started: Instant::now(),
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
    pub async fn finish(self) -> Result<Vec<RecordBatch>, RuntimeError> {
        self.handle
            .await
            .map_err(|e| RuntimeError::Internal(format!("the job's task failed: {e}")))?
    }
}

/// Starts every subtask of `graph` on the current tokio runtime.
///
/// # Errors
/// An operator that cannot be built (an expression DataFusion cannot make physical).
pub fn start(graph: Arc<Graph>) -> Result<RunningJob, RuntimeError> {
    let stats = JobStats::new(&graph);
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
    for node in &graph.nodes {
        let node_stats = stats.operators[node.id].1.clone();
        let label = format!("{} [{}]", node.operator.name(), node.id);
        let expected_ends: usize = graph
            .inputs_of(node.id)
            .map(|edge| match edge.partitioning {
                crate::plan::Partitioning::Forward => 1,
                _ => graph.nodes[edge.from].parallelism,
            })
            .sum();
        for (index, receiver) in receivers[node.id].iter_mut().enumerate() {
            let subtask = Subtask {
                index,
                count: node.parallelism,
            };
            let router = Router::new(&graph, node.id, index, &senders)?;
            let receiver = receiver.take();
            let task = SubtaskContext {
                node_label: label.clone(),
                stats: node_stats.clone(),
                router,
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
                    let writer = connector::open_sink(table, subtask).map_err(|source| {
                        RuntimeError::Connector {
                            operator: label.clone(),
                            source,
                        }
                    })?;
                    let Some(receiver) = receiver else {
                        return Err(RuntimeError::Internal("sink without input".into()));
                    };
                    tasks.spawn(run_sink(task, writer, receiver, expected_ends));
                }
                OperatorSpec::Collect => {
                    let Some(receiver) = receiver else {
                        return Err(RuntimeError::Internal("collect without input".into()));
                    };
                    tasks.spawn(run_collect(
                        task,
                        collected.clone(),
                        receiver,
                        expected_ends,
                    ));
                }
                spec => {
                    let operator = operators::create(spec, node, subtask, graph.max_parallelism)
                        .map_err(|message| RuntimeError::Operator {
                            operator: label.clone(),
                            message,
                        })?;
                    tasks.spawn(run_operator(task, operator, receiver, expected_ends));
                }
            }
        }
    }
    drop(senders);
    let handle = tokio::spawn(async move {
        while let Some(joined) = tasks.join_next().await {
            let result = joined
                .map_err(|e| RuntimeError::Internal(format!("a subtask panicked: {e}")))
                .and_then(|r| r);
            if let Err(error) = result {
                tasks.abort_all();
                return Err(error);
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

/// What every subtask task holds.
struct SubtaskContext {
    /// `Project [1]`: for errors, which should not depend on which subtask failed first.
    node_label: String,
    stats: Arc<OperatorStats>,
    router: Router,
}

impl SubtaskContext {
    fn count_in(&self, batch: &RecordBatch) {
        self.stats
            .rows_in
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
    }

    fn busy(&self, started: Instant) {
        self.stats
            .busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
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
    let opened = {
        let table = table.clone();
        tokio::task::spawn_blocking(move || connector::open_source(&table, &request))
            .await
            .map_err(join_error)?
    };
    let mut reader = opened.map_err(&connector_error)?;
    let idle_timeout = watermarks.as_ref().and_then(SourceWatermarks::idle_timeout);
    let mut idle = false;
    loop {
        let mut router = task.router.clone();
        let mut handle = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = reader.next_batch().map(|batch| {
                batch.map(|batch| {
                    let parts = router.partition(&batch).and_then(|parts| {
                        let watermark = match &mut watermarks {
                            Some(w) => match batch.columns().get(w.column()) {
                                Some(times) => w.observe(times)?,
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
            Some((rows, parts)) => {
                task.stats
                    .rows_out
                    .fetch_add(rows as u64, Ordering::Relaxed);
                let (parts, watermark) = parts.map_err(|message| RuntimeError::Operator {
                    operator: task.node_label.clone(),
                    message,
                })?;
                if !task.router.send(parts).await {
                    return Ok(());
                }
                // Active again: downstream learns it from a watermark, advanced or not.
                let watermark = if std::mem::take(&mut idle) {
                    watermark.or_else(|| watermarks.as_ref().and_then(SourceWatermarks::emitted))
                } else {
                    watermark
                };
                if let Some(watermark) = watermark
                    && !task.router.broadcast(Message::Watermark(watermark)).await
                {
                    return Ok(());
                }
            }
            None => {
                // The end of input is the end of time: downstream treats it as such.
                task.router.end().await;
                return Ok(());
            }
        }
    }
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
    receiver: Option<mpsc::Receiver<Envelope>>,
    expected_ends: usize,
) -> Result<(), RuntimeError> {
    let mut ended = 0;
    let mut watermarks = InputWatermarks::new(expected_ends);
    let Some(mut receiver) = receiver.filter(|_| expected_ends > 0) else {
        // A node without inputs (VALUES) runs its end of input at once.
        let (_, open) = run_step(&mut task, operator, Step::End).await?;
        if open {
            task.router.end().await;
        }
        return Ok(());
    };
    let mut ticker = operator.timer_interval().map(tokio::time::interval);
    loop {
        let received = match &mut ticker {
            None => receiver.recv().await,
            Some(ticker) => tokio::select! {
                received = receiver.recv() => received,
                _ = ticker.tick() => {
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
        let Some(envelope) = received else {
            break;
        };
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
            // Barriers act with checkpoints (a later issue).
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
    // Every sender went away without ending: one failed, and its error is the job's.
    Ok(())
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
    let mut open = task.router.send(parts).await;
    // Downstream learns of the end of time from the end of input itself.
    if let Some(w) = watermark.filter(|&w| open && w < watermark::END_OF_TIME) {
        open = task.router.broadcast(Message::Watermark(w)).await;
    }
    Ok((back_operator, open))
}

async fn run_sink(
    task: SubtaskContext,
    mut writer: Box<dyn connector::SinkWriter>,
    mut receiver: mpsc::Receiver<Envelope>,
    expected_ends: usize,
) -> Result<(), RuntimeError> {
    let mut ended = 0;
    let error = |source| RuntimeError::Connector {
        operator: task.node_label.clone(),
        source,
    };
    while let Some(envelope) = receiver.recv().await {
        match envelope.message {
            Message::Batch(batch) => {
                task.count_in(&batch);
                // Sinks see a changelog's row kinds as a leading `op` column.
                let batch =
                    changelog::for_display(batch).map_err(|message| RuntimeError::Operator {
                        operator: task.node_label.clone(),
                        message,
                    })?;
                let (back, result) = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let result = writer.write(&batch);
                    (writer, result.map(|()| started))
                })
                .await
                .map_err(join_error)?;
                writer = back;
                task.busy(result.map_err(&error)?);
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
    if ended < expected_ends {
        // An upstream stopped without finishing: it failed, and its error is the job's.
        return Ok(());
    }
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(join_error)?
        .map_err(error)
}

async fn run_collect(
    task: SubtaskContext,
    collected: Arc<std::sync::Mutex<Vec<RecordBatch>>>,
    mut receiver: mpsc::Receiver<Envelope>,
    expected_ends: usize,
) -> Result<(), RuntimeError> {
    let mut ended = 0;
    while let Some(envelope) = receiver.recv().await {
        match envelope.message {
            Message::Batch(batch) => {
                task.count_in(&batch);
                let batch =
                    changelog::for_display(batch).map_err(|message| RuntimeError::Operator {
                        operator: task.node_label.clone(),
                        message,
                    })?;
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
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn join_error(error: tokio::task::JoinError) -> RuntimeError {
    RuntimeError::Internal(format!("a blocking task failed: {error}"))
}
