//! The checkpoint coordinator: triggers checkpoints, collects the subtasks' acknowledgements,
//! writes the metadata of a complete one, tells the sinks to commit, and deletes what retention
//! no longer keeps. One checkpoint is in flight at a time.
//!
//! When the user asks to stop, the next checkpoint is a savepoint (kept apart, never deleted by
//! retention); once it is complete and the sinks have committed it, the job stops.
//!
//! A subtask that has finished (its input ended) takes part in every later checkpoint with its
//! last word ([`Report::Finished`]); when every subtask has finished, a last checkpoint marked
//! `finished` commits the job's final output.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::metadata::{
    CheckpointMetadata, FORMAT_VERSION, METADATA_FILE, OperatorSnapshot, SubtaskSnapshot,
};
use super::{
    CheckpointError, CheckpointSettings, CheckpointStats, CheckpointStorage, checkpoint_dir,
};
use crate::runtime::Barrier;

/// A subtask: (node, subtask index).
pub type TaskId = (usize, usize);

/// What a subtask tells the coordinator.
#[derive(Debug)]
pub enum Report {
    /// Its part of checkpoint `checkpoint` is saved.
    Ack {
        checkpoint: u64,
        task: TaskId,
        snapshot: SubtaskSnapshot,
        figures: AckFigures,
    },
    /// It has ended; `snapshot` stands for it in every later checkpoint.
    Finished {
        task: TaskId,
        snapshot: SubtaskSnapshot,
    },
    /// Its part of checkpoint `checkpoint` could not be saved (after it had gone on with its
    /// input: the upload runs in the background). The job fails, as Flink's does by default.
    Failed { checkpoint: u64, message: String },
}

#[derive(Debug, Default, Clone, Copy)]
pub struct AckFigures {
    pub alignment: Duration,
    pub bytes_written: u64,
    pub bytes_reused: u64,
    pub state_size: u64,
}

/// One node as the coordinator sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub operator_id: String,
    pub name: String,
    pub parallelism: usize,
}

/// The coordinator's channels to the tasks.
#[derive(Debug)]
pub struct Channels {
    /// The last checkpoint triggered (sources inject its barrier).
    pub triggers: watch::Receiver<Barrier>,
    /// The last checkpoint completed (sinks commit up to it).
    pub completed: watch::Receiver<Completed>,
    pub reports: mpsc::UnboundedSender<Report>,
}

/// The last checkpoint completed, and whether the job stops with it (a savepoint asked for):
/// sinks commit up to it, then, if so, end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub id: u64,
    pub stop: bool,
}

pub struct Coordinator {
    settings: CheckpointSettings,
    nodes: Vec<NodeInfo>,
    max_parallelism: usize,
    triggers: watch::Sender<Barrier>,
    completed: watch::Sender<Completed>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// The user asked to stop: the next checkpoint is a savepoint, and the last.
    stopping: bool,
    /// The user asked for a savepoint (the job goes on) while a checkpoint was in flight.
    savepoint_pending: bool,
    finished: HashMap<TaskId, SubtaskSnapshot>,
    in_flight: Option<InFlight>,
    last_id: u64,
    stats: Arc<Mutex<Vec<CheckpointStats>>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

struct InFlight {
    id: u64,
    savepoint: bool,
    /// The job ends once it completes (stop with a savepoint).
    stop: bool,
    started: Instant,
    acks: HashMap<TaskId, (SubtaskSnapshot, AckFigures)>,
}

impl Coordinator {
    /// A coordinator numbering checkpoints after `last_id`, and the tasks' ends of its channels.
    pub fn new(
        settings: CheckpointSettings,
        nodes: Vec<NodeInfo>,
        max_parallelism: usize,
        last_id: u64,
        stats: Arc<Mutex<Vec<CheckpointStats>>>,
    ) -> (Self, Channels) {
        let (triggers, trigger_rx) = watch::channel(Barrier {
            id: last_id,
            savepoint: false,
        });
        let (completed, completed_rx) = watch::channel(Completed {
            id: last_id,
            stop: false,
        });
        let (report_tx, reports) = mpsc::unbounded_channel();
        (
            Self {
                settings,
                nodes,
                max_parallelism,
                triggers,
                completed,
                reports,
                stopping: false,
                savepoint_pending: false,
                finished: HashMap::new(),
                in_flight: None,
                last_id,
                stats,
            },
            Channels {
                triggers: trigger_rx,
                completed: completed_rx,
                reports: report_tx,
            },
        )
    }

    fn task_count(&self) -> usize {
        self.nodes.iter().map(|n| n.parallelism).sum()
    }

    /// Runs until every task has finished and the last checkpoint is written, or the tasks are
    /// gone (the job failed or was cancelled), or a savepoint the user asked for is complete:
    /// then its location.
    ///
    /// # Errors
    /// Metadata that cannot be written: the job cannot promise exactly-once output any more.
    pub async fn run(mut self) -> Result<Option<String>, CheckpointError> {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.interval,
            self.settings.interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.settings.stop.clone();
        let mut savepoint_requests = self.settings.savepoint_requests.clone();
        loop {
            tokio::select! {
                report = self.reports.recv() => {
                    let Some(report) = report else { return Ok(None) };
                    if let Report::Failed { checkpoint, message } = report {
                        return Err(CheckpointError::Restore(format!(
                            "checkpoint {checkpoint} failed: {message}"
                        )));
                    }
                    self.on_report(report);
                }
                _ = ticker.tick() => {
                    if self.in_flight.is_none() && !self.stopping {
                        self.trigger(false, false);
                    }
                }
                Some(()) = stop_requested(&mut stop) => {
                    self.stopping = true;
                    stop = None;
                    if self.in_flight.is_none() {
                        self.trigger(true, true);
                    }
                }
                Some(()) = savepoint_requested(&mut savepoint_requests) => {
                    if self.in_flight.is_none() && !self.stopping {
                        self.trigger(true, false);
                    } else {
                        self.savepoint_pending = true;
                    }
                }
            }
            match self.try_complete().await? {
                Step::Running => {}
                Step::Finished => return Ok(None),
                Step::Stopped(location) => return Ok(Some(location)),
            }
        }
    }

    fn trigger(&mut self, savepoint: bool, stop: bool) {
        self.last_id += 1;
        self.in_flight = Some(InFlight {
            id: self.last_id,
            savepoint,
            stop,
            started: Instant::now(),
            acks: HashMap::new(),
        });
        self.triggers.send_replace(Barrier {
            id: self.last_id,
            savepoint,
        });
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Ack {
                checkpoint,
                task,
                snapshot,
                figures,
            } => {
                if let Some(in_flight) = &mut self.in_flight
                    && in_flight.id == checkpoint
                {
                    in_flight.acks.insert(task, (snapshot, figures));
                }
            }
            // The first word counts (a subtask's explicit one, before its guard's).
            Report::Finished { task, snapshot } => {
                self.finished.entry(task).or_insert(snapshot);
            }
            Report::Failed { .. } => {}
        }
    }

    /// Completes the checkpoint in flight if every task has answered for it, or writes the last
    /// one when every task has finished.
    async fn try_complete(&mut self) -> Result<Step, CheckpointError> {
        let all_finished = self.finished.len() == self.task_count();
        if all_finished && self.in_flight.is_none() {
            self.last_id += 1;
            self.in_flight = Some(InFlight {
                id: self.last_id,
                savepoint: self.stopping,
                stop: self.stopping,
                started: Instant::now(),
                acks: HashMap::new(),
            });
        }
        let Some(in_flight) = &self.in_flight else {
            return Ok(Step::Running);
        };
        let answered = in_flight.acks.len()
            + self
                .finished
                .keys()
                .filter(|task| !in_flight.acks.contains_key(task))
                .count();
        if answered < self.task_count() {
            return Ok(Step::Running);
        }
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(Step::Running);
        };
        let stop = in_flight.stop;
        let location = self.complete(in_flight, all_finished).await?;
        if stop {
            return Ok(Step::Stopped(location));
        }
        if all_finished {
            return Ok(Step::Finished);
        }
        // A stop or a savepoint was asked while a checkpoint was in flight: it comes next.
        if self.stopping {
            self.trigger(true, true);
        } else if std::mem::take(&mut self.savepoint_pending) {
            self.trigger(true, false);
        }
        Ok(Step::Running)
    }

    /// Writes the metadata of a complete checkpoint, then lets sinks commit; its location.
    async fn complete(
        &mut self,
        in_flight: InFlight,
        finished: bool,
    ) -> Result<String, CheckpointError> {
        let mut figures = CheckpointStats {
            id: in_flight.id,
            savepoint: in_flight.savepoint,
            finished,
            ..CheckpointStats::default()
        };
        let mut operators = Vec::with_capacity(self.nodes.len());
        for (node, info) in self.nodes.iter().enumerate() {
            let mut subtasks = Vec::with_capacity(info.parallelism);
            for subtask in 0..info.parallelism {
                let task = (node, subtask);
                let snapshot = match in_flight.acks.get(&task) {
                    Some((snapshot, ack)) => {
                        figures.alignment = figures.alignment.max(ack.alignment);
                        figures.bytes_written += ack.bytes_written;
                        figures.bytes_reused += ack.bytes_reused;
                        figures.state_size += ack.state_size;
                        snapshot.clone()
                    }
                    None => match self.finished.get(&task) {
                        Some(snapshot) => SubtaskSnapshot {
                            finished: true,
                            ..snapshot.clone()
                        },
                        None => {
                            return Err(CheckpointError::Restore(format!(
                                "internal error: no answer from {} subtask {subtask}",
                                info.name
                            )));
                        }
                    },
                };
                subtasks.push(SubtaskSnapshot {
                    subtask,
                    ..snapshot
                });
            }
            operators.push(OperatorSnapshot {
                operator_id: info.operator_id.clone(),
                name: info.name.clone(),
                parallelism: info.parallelism,
                subtasks,
            });
        }
        let metadata = CheckpointMetadata {
            format_version: FORMAT_VERSION,
            id: in_flight.id,
            savepoint: in_flight.savepoint,
            finished,
            job_tag: self.settings.job_tag.clone(),
            max_parallelism: self.max_parallelism,
            completed_millis: crate::runtime::now_millis(),
            operators,
        };
        let json = serde_json::to_vec_pretty(&metadata).map_err(|e| CheckpointError::Storage {
            location: self.settings.storage.location().to_string(),
            message: format!("cannot encode checkpoint metadata: {e}"),
        })?;
        let dir = checkpoint_dir(in_flight.id, in_flight.savepoint);
        self.settings
            .storage
            .put(&format!("{dir}/{METADATA_FILE}"), Bytes::from(json))
            .await?;
        let location = format!(
            "{}/{dir}",
            self.settings.storage.location().trim_end_matches('/')
        );
        figures.duration = in_flight.started.elapsed();
        figures.location = location.clone();
        if let Ok(mut stats) = self.stats.lock() {
            stats.push(figures);
        }
        // Only now may sinks make their output visible.
        self.completed.send_replace(Completed {
            id: in_flight.id,
            stop: in_flight.stop,
        });
        if !in_flight.savepoint {
            self.retain(&metadata).await?;
        }
        Ok(location)
    }
}

/// The `shared/` objects a checkpoint's RocksDB state refers to.
fn shared_objects(metadata: &CheckpointMetadata) -> HashSet<String> {
    metadata
        .operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| s.state.as_ref())
        .flat_map(|state| {
            state
                .objects()
                .into_iter()
                .filter(|(_, shared, _)| *shared)
                .map(|(object, _, _)| object.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

enum Step {
    Running,
    Finished,
    /// A savepoint the user asked for is complete, at this location.
    Stopped(String),
}

/// Resolves each time the savepoint request counter moves (never if there is none, or its
/// sender is gone).
async fn savepoint_requested(requests: &mut Option<watch::Receiver<u64>>) -> Option<()> {
    if let Some(receiver) = requests {
        if receiver.changed().await.is_ok() {
            return Some(());
        }
        *requests = None;
    }
    std::future::pending().await
}

/// Resolves once the stop flag turns true (never if there is none, or its sender is gone).
async fn stop_requested(stop: &mut Option<watch::Receiver<bool>>) -> Option<()> {
    if let Some(receiver) = stop
        && receiver.wait_for(|&stop| stop).await.is_ok()
    {
        return Some(());
    }
    std::future::pending().await
}

impl Coordinator {
    /// Deletes completed checkpoints beyond the newest `num_retained`, and abandoned ones.
    async fn retain(&self, newest: &CheckpointMetadata) -> Result<(), CheckpointError> {
        retain(&self.settings.storage, newest, self.settings.num_retained).await
    }
}

/// Deletes completed checkpoints beyond the newest `num_retained` (counting `newest`) and
/// abandoned ones, then every shared file no retained checkpoint refers to.
///
/// # Errors
/// The storage cannot be listed or written.
pub async fn retain(
    storage: &CheckpointStorage,
    newest: &CheckpointMetadata,
    num_retained: usize,
) -> Result<(), CheckpointError> {
    let (directories, _) = storage.list("").await?;
    let mut ids: Vec<u64> = directories
        .iter()
        .filter_map(|d| d.strip_prefix("chk-")?.parse().ok())
        .filter(|&id| id < newest.id)
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    // Shared files any retained checkpoint refers to: only the others may go.
    let mut referenced: HashSet<String> = shared_objects(newest);
    let mut kept = 1;
    for id in ids {
        let name = format!("{}/{METADATA_FILE}", checkpoint_dir(id, false));
        let metadata = match storage.get(&name).await? {
            Some(bytes) => CheckpointMetadata::parse(&bytes).ok(),
            None => None,
        };
        if let Some(metadata) = metadata
            && kept < num_retained
        {
            kept += 1;
            referenced.extend(shared_objects(&metadata));
            continue;
        }
        storage.delete_all(&checkpoint_dir(id, false)).await?;
    }
    let (owners, _) = storage.list("shared").await?;
    for owner in owners {
        let prefix = format!("shared/{owner}");
        let (_, objects) = storage.list(&prefix).await?;
        for object in objects {
            let object = format!("{prefix}/{object}");
            if !referenced.contains(&object) {
                storage.delete(&object).await?;
            }
        }
    }
    Ok(())
}
