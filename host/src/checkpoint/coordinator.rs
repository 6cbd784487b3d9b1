//! The checkpoint coordinator: triggers checkpoints, collects the subtasks' acknowledgements,
//! writes the metadata of a complete one, tells the sinks to commit, and deletes what retention
//! no longer keeps. One checkpoint is in flight at a time.
//!
//! A subtask that has finished (its input ended) takes part in every later checkpoint with its
//! last word ([`Report::Finished`]); when every subtask has finished, a last checkpoint marked
//! `finished` commits the job's final output.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::metadata::{
    CheckpointMetadata, FORMAT_VERSION, METADATA_FILE, OperatorSnapshot, SubtaskSnapshot,
};
use super::{CheckpointError, CheckpointSettings, CheckpointStats, checkpoint_dir};

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
    pub triggers: watch::Receiver<u64>,
    /// The last checkpoint completed (sinks commit up to it).
    pub completed: watch::Receiver<u64>,
    pub reports: mpsc::UnboundedSender<Report>,
}

pub struct Coordinator {
    settings: CheckpointSettings,
    nodes: Vec<NodeInfo>,
    max_parallelism: usize,
    triggers: watch::Sender<u64>,
    completed: watch::Sender<u64>,
    reports: mpsc::UnboundedReceiver<Report>,
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
        let (triggers, trigger_rx) = watch::channel(last_id);
        let (completed, completed_rx) = watch::channel(last_id);
        let (report_tx, reports) = mpsc::unbounded_channel();
        (
            Self {
                settings,
                nodes,
                max_parallelism,
                triggers,
                completed,
                reports,
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
    /// gone (the job failed or was cancelled).
    ///
    /// # Errors
    /// Metadata that cannot be written: the job cannot promise exactly-once output any more.
    pub async fn run(mut self) -> Result<(), CheckpointError> {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.interval,
            self.settings.interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                report = self.reports.recv() => {
                    let Some(report) = report else { return Ok(()) };
                    self.on_report(report);
                }
                _ = ticker.tick() => {
                    if self.in_flight.is_none() {
                        self.trigger();
                    }
                }
            }
            if self.try_complete().await? {
                return Ok(());
            }
        }
    }

    fn trigger(&mut self) {
        self.last_id += 1;
        self.in_flight = Some(InFlight {
            id: self.last_id,
            started: Instant::now(),
            acks: HashMap::new(),
        });
        self.triggers.send_replace(self.last_id);
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
        }
    }

    /// Completes the checkpoint in flight if every task has answered for it, or writes the last
    /// one when every task has finished. `true` when the job is over.
    async fn try_complete(&mut self) -> Result<bool, CheckpointError> {
        let all_finished = self.finished.len() == self.task_count();
        if all_finished && self.in_flight.is_none() {
            self.last_id += 1;
            self.in_flight = Some(InFlight {
                id: self.last_id,
                started: Instant::now(),
                acks: HashMap::new(),
            });
        }
        let Some(in_flight) = &self.in_flight else {
            return Ok(false);
        };
        let answered = in_flight.acks.len()
            + self
                .finished
                .keys()
                .filter(|task| !in_flight.acks.contains_key(task))
                .count();
        if answered < self.task_count() {
            return Ok(false);
        }
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(false);
        };
        self.complete(in_flight, all_finished).await?;
        Ok(all_finished)
    }

    async fn complete(
        &mut self,
        in_flight: InFlight,
        finished: bool,
    ) -> Result<(), CheckpointError> {
        let mut figures = CheckpointStats {
            id: in_flight.id,
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
            savepoint: false,
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
        let name = format!("{}/{METADATA_FILE}", checkpoint_dir(in_flight.id));
        self.settings.storage.put(&name, Bytes::from(json)).await?;
        figures.duration = in_flight.started.elapsed();
        if let Ok(mut stats) = self.stats.lock() {
            stats.push(figures);
        }
        // Only now may sinks make their output visible.
        self.completed.send_replace(in_flight.id);
        self.retain(in_flight.id).await
    }

    /// Deletes completed checkpoints beyond the newest `num_retained`, and abandoned ones.
    async fn retain(&self, newest: u64) -> Result<(), CheckpointError> {
        let storage = &self.settings.storage;
        let (directories, _) = storage.list("").await?;
        let mut ids: Vec<u64> = directories
            .iter()
            .filter_map(|d| d.strip_prefix("chk-")?.parse().ok())
            .filter(|&id| id < newest)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut kept = 1;
        for id in ids {
            let complete = storage
                .size(&format!("{}/{METADATA_FILE}", checkpoint_dir(id)))
                .await?
                .is_some();
            if complete && kept < self.settings.num_retained {
                kept += 1;
                continue;
            }
            storage.delete_all(&checkpoint_dir(id)).await?;
        }
        Ok(())
    }
}
