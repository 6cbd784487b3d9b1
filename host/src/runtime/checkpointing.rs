//! A subtask's part in checkpoints: aligning barriers from its senders, snapshotting and restoring
//! its state, and reporting to the coordinator.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::operators::Operator;
use super::{Barrier, Envelope, Message};
use crate::checkpoint::coordinator::{AckFigures, Completed, Report, TaskId};
use crate::checkpoint::metadata::{StateHandle, SubtaskSnapshot};
use crate::checkpoint::{CheckpointStorage, Restore, checkpoint_dir};
use crate::state::LocalSnapshot;

/// The key groups (of `max_parallelism`) that subtask `subtask` of `parallelism` owns:
/// those that [`super::router::subtask_of_key_group`] sends it.
pub(crate) fn key_groups(subtask: usize, parallelism: usize, max_parallelism: usize) -> Range<u16> {
    let first = |i: usize| (i * max_parallelism).div_ceil(parallelism.max(1));
    let clamp = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    clamp(first(subtask))..clamp(first(subtask + 1))
}

/// What a subtask needs to take part in checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct TaskCheckpointing {
    pub task: TaskId,
    pub operator_id: String,
    pub storage: CheckpointStorage,
    pub reports: mpsc::UnboundedSender<Report>,
    pub triggers: watch::Receiver<Barrier>,
    pub completed: watch::Receiver<Completed>,
    /// The checkpoint restored, if any.
    pub restore: Option<Arc<Restore>>,
    pub parallelism: usize,
    pub max_parallelism: usize,
}

impl TaskCheckpointing {
    pub(crate) fn ack(&self, checkpoint: u64, snapshot: SubtaskSnapshot, figures: AckFigures) {
        // The coordinator is gone only when the job is over.
        let _ = self.reports.send(Report::Ack {
            checkpoint,
            task: self.task,
            snapshot,
            figures,
        });
    }

    pub(crate) fn finished(&self, snapshot: SubtaskSnapshot) {
        let _ = self.reports.send(Report::Finished {
            task: self.task,
            snapshot,
        });
    }

    /// The restored subtasks whose key groups overlap this one's (the same subtask, unless the
    /// job was rescaled), and this subtask's key groups.
    pub(crate) fn restored(&self) -> Option<(Vec<&SubtaskSnapshot>, usize, Range<u16>)> {
        let metadata = &self.restore.as_ref()?.metadata;
        let operator = metadata.operator(&self.operator_id)?;
        let mine = key_groups(self.task.1, self.parallelism, self.max_parallelism);
        let overlapping = operator
            .subtasks
            .iter()
            .filter(|s| {
                let theirs = key_groups(s.subtask, operator.parallelism, metadata.max_parallelism);
                theirs.start < mine.end && mine.start < theirs.end
            })
            .collect();
        Some((overlapping, operator.parallelism, mine))
    }

    /// Whether this subtask had finished in the restored checkpoint (it then only ends).
    pub(crate) fn restored_finished(&self) -> bool {
        self.restored().is_some_and(|(subtasks, _, _)| {
            !subtasks.is_empty() && subtasks.iter().all(|s| s.finished)
        })
    }
}

/// Tells the coordinator that the subtask has ended, however it ends (a failed job's
/// coordinator is stopped with it, so a report from a failing subtask changes nothing).
pub(crate) struct FinishGuard(Option<TaskCheckpointing>);

impl FinishGuard {
    pub(crate) fn new(checkpointing: &Option<TaskCheckpointing>) -> Self {
        Self(checkpointing.clone())
    }
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if let Some(checkpointing) = self.0.take() {
            let subtask = checkpointing.task.1;
            checkpointing.finished(SubtaskSnapshot {
                subtask,
                ..SubtaskSnapshot::default()
            });
        }
    }
}

/// Gives an operator back its state: every overlapping old subtask's snapshot, filtered to this
/// subtask's key groups, then its watermark (the smallest of theirs). Blocking.
pub(crate) fn restore_operator(
    operator: &mut dyn Operator,
    checkpointing: &TaskCheckpointing,
) -> Result<(), String> {
    let (Some((subtasks, _, key_groups)), Some(restore)) =
        (checkpointing.restored(), &checkpointing.restore)
    else {
        return Ok(());
    };
    let mut watermark: Option<i64> = None;
    for subtask in &subtasks {
        if let Some(w) = subtask.watermark {
            watermark = Some(watermark.map_or(w, |m| m.min(w)));
        }
        let Some(handle) = &subtask.state else {
            continue;
        };
        let Some(backend) = operator.state_backend() else {
            return Err(format!(
                "the checkpoint holds state for operator {}, which keeps none in this query",
                checkpointing.operator_id
            ));
        };
        let file = restore.file(&handle.file);
        let bytes = block_on(restore.storage.get(&file))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("state file '{file}' is missing"))?;
        backend
            .restore(&bytes, key_groups.clone())
            .map_err(|e| format!("restoring '{}': {e}", handle.file))?;
    }
    operator.on_restore(watermark)
}

/// Snapshots an operator's state into the storage for checkpoint `checkpoint`. Blocking.
pub(crate) fn snapshot_operator(
    operator: &mut dyn Operator,
    checkpointing: &TaskCheckpointing,
    barrier: Barrier,
) -> Result<(SubtaskSnapshot, AckFigures), String> {
    let mut figures = AckFigures::default();
    let watermark = operator.current_watermark();
    let state = match operator.state_backend() {
        None => None,
        Some(backend) => {
            let LocalSnapshot::Full(bytes) = backend.snapshot().map_err(|e| e.to_string())?;
            // Named relative to the checkpoint's directory, so that a savepoint can be moved.
            let file = format!(
                "{}-{}.state",
                checkpointing.operator_id, checkpointing.task.1
            );
            let path = format!("{}/{file}", checkpoint_dir(barrier.id, barrier.savepoint));
            let size = bytes.len() as u64;
            block_on(checkpointing.storage.put(&path, Bytes::from(bytes)))
                .map_err(|e| e.to_string())?;
            figures.bytes_written = size;
            figures.state_size = size;
            Some(StateHandle { file, bytes: size })
        }
    };
    Ok((
        SubtaskSnapshot {
            subtask: checkpointing.task.1,
            watermark,
            state,
            ..SubtaskSnapshot::default()
        },
        figures,
    ))
}

/// Runs a storage call from a blocking thread.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}

/// What the input of a subtask yields next.
pub(crate) enum Next {
    Envelope(Envelope),
    /// The barrier has come from every sender still running: snapshot, then forward it.
    Barrier {
        barrier: Barrier,
        alignment: Duration,
    },
    /// Every sender is gone.
    Closed,
}

/// A subtask's input: one channel for all senders, with barrier alignment. Once a sender's
/// barrier has come, what it sends next is held back until every other sender's has come too,
/// so the snapshot holds exactly what came before the barrier on every input.
pub(crate) struct InputGate {
    receiver: mpsc::Receiver<Envelope>,
    senders: usize,
    /// Senders that have not ended.
    live: HashSet<usize>,
    aligning: Option<(Barrier, Instant, HashSet<usize>)>,
    held: VecDeque<Envelope>,
}

impl InputGate {
    pub(crate) fn new(receiver: mpsc::Receiver<Envelope>, senders: HashSet<usize>) -> Self {
        Self {
            receiver,
            senders: senders.len(),
            live: senders,
            aligning: None,
            held: VecDeque::new(),
        }
    }

    pub(crate) async fn next(&mut self) -> Next {
        loop {
            if let Some((barrier, started, arrived)) = &self.aligning
                && self.live.iter().all(|s| arrived.contains(s))
            {
                let next = Next::Barrier {
                    barrier: *barrier,
                    alignment: started.elapsed(),
                };
                self.aligning = None;
                return next;
            }
            let envelope = match self.aligning {
                None if !self.held.is_empty() => self.held.pop_front(),
                _ => self.receiver.recv().await,
            };
            let Some(envelope) = envelope else {
                return Next::Closed;
            };
            if let Some((_, _, arrived)) = &self.aligning
                && arrived.contains(&envelope.sender)
            {
                self.held.push_back(envelope);
                continue;
            }
            match envelope.message {
                Message::Barrier(barrier) => match &mut self.aligning {
                    Some((_, _, arrived)) => {
                        arrived.insert(envelope.sender);
                    }
                    None => {
                        self.aligning =
                            Some((barrier, Instant::now(), HashSet::from([envelope.sender])));
                    }
                },
                Message::EndOfInput => {
                    self.live.remove(&envelope.sender);
                    return Next::Envelope(envelope);
                }
                _ => return Next::Envelope(envelope),
            }
        }
    }

    /// How many upstream subtasks send to this one.
    pub(crate) fn sender_count(&self) -> usize {
        self.senders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_group_ranges_match_the_router() {
        for parallelism in 1..=7 {
            for subtask in 0..parallelism {
                let range = key_groups(subtask, parallelism, 128);
                for group in 0..128u16 {
                    let owner = super::super::router::subtask_of_key_group(
                        usize::from(group),
                        128,
                        parallelism,
                    );
                    assert_eq!(
                        range.contains(&group),
                        owner == subtask,
                        "{group} {parallelism}"
                    );
                }
            }
        }
    }

    fn barrier(id: u64) -> Barrier {
        Barrier {
            id,
            savepoint: false,
        }
    }

    fn envelope(sender: usize, message: Message) -> Envelope {
        Envelope {
            input: 0,
            sender,
            message,
        }
    }

    #[tokio::test]
    async fn messages_after_a_barrier_wait_for_the_other_senders_barrier() {
        let (tx, rx) = mpsc::channel(16);
        let mut gate = InputGate::new(rx, HashSet::from([0, 1]));
        for (sender, message) in [
            (0, Message::Watermark(1)),
            (0, Message::Barrier(barrier(7))),
            (0, Message::Watermark(2)),
            (1, Message::Watermark(3)),
            (1, Message::Barrier(barrier(7))),
            (1, Message::EndOfInput),
        ] {
            tx.send(envelope(sender, message)).await.expect("send");
        }
        drop(tx);
        let mut seen = Vec::new();
        loop {
            match gate.next().await {
                Next::Envelope(e) => seen.push(format!("{}:{:?}", e.sender, e.message)),
                Next::Barrier { barrier, .. } => seen.push(format!("barrier {}", barrier.id)),
                Next::Closed => break,
            }
        }
        assert_eq!(
            seen,
            [
                "0:Watermark(1)",
                "1:Watermark(3)",
                "barrier 7",
                "0:Watermark(2)",
                "1:EndOfInput"
            ]
        );
    }

    #[tokio::test]
    async fn an_ended_sender_counts_as_aligned() {
        let (tx, rx) = mpsc::channel(16);
        let mut gate = InputGate::new(rx, HashSet::from([0, 1]));
        tx.send(envelope(0, Message::Barrier(barrier(3))))
            .await
            .expect("send");
        tx.send(envelope(1, Message::EndOfInput))
            .await
            .expect("send");
        assert!(
            matches!(gate.next().await, Next::Envelope(e) if matches!(e.message, Message::EndOfInput))
        );
        assert!(matches!(gate.next().await, Next::Barrier { barrier, .. } if barrier.id == 3));
    }
}
