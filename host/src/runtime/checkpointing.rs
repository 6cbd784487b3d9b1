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
    /// RocksDB files this subtask has stored under `shared/`: file name → (object, bytes).
    pub uploaded: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, u64)>>>,
    /// Names this run's shared files apart from an earlier run's of the same subtask.
    pub lineage: String,
    /// This subtask's checkpoint upload still running in the background, if any: its end
    /// report waits for it, so that the coordinator hears the ack first.
    pub pending_upload: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
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

    pub(crate) fn failed(&self, checkpoint: u64, message: String) {
        let _ = self.reports.send(Report::Failed {
            checkpoint,
            message,
        });
    }

    /// The upload running in the background, taken (to wait for it).
    pub(crate) fn take_pending_upload(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.pending_upload.lock().ok().and_then(|mut p| p.take())
    }

    /// The restored subtasks whose key groups overlap this one's (the same subtask, unless the
    /// job was rescaled), and this subtask's key groups.
    pub(crate) fn restored(&self) -> Option<(Vec<&SubtaskSnapshot>, Range<u16>)> {
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
        Some((overlapping, mine))
    }

    /// Whether this subtask had finished in the restored checkpoint (it then only ends).
    pub(crate) fn restored_finished(&self) -> bool {
        self.restored().is_some_and(|(subtasks, _)| {
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
            let snapshot = SubtaskSnapshot {
                subtask,
                ..SubtaskSnapshot::default()
            };
            // After the ack of a checkpoint still uploading: a finished subtask stands for
            // itself only in checkpoints taken after its last barrier's.
            match (
                checkpointing.take_pending_upload(),
                tokio::runtime::Handle::try_current(),
            ) {
                (Some(upload), Ok(runtime)) => {
                    runtime.spawn(async move {
                        let _ = upload.await;
                        checkpointing.finished(snapshot);
                    });
                }
                _ => checkpointing.finished(snapshot),
            }
        }
    }
}

/// Gives an operator back its state: every overlapping old subtask's snapshot, filtered to this
/// subtask's key groups, then its watermark (the smallest of theirs). Blocking.
pub(crate) fn restore_operator(
    operator: &mut dyn Operator,
    checkpointing: &TaskCheckpointing,
) -> Result<(), String> {
    let (Some((subtasks, key_groups)), Some(restore)) =
        (checkpointing.restored(), &checkpointing.restore)
    else {
        return Ok(());
    };
    // Whether the one restored subtask `old` had exactly this subtask's key groups.
    let same_key_groups = |restored: usize, old: usize| {
        let metadata = &restore.metadata;
        restored == 1
            && metadata
                .operator(&checkpointing.operator_id)
                .is_some_and(|operator| {
                    self::key_groups(old, operator.parallelism, metadata.max_parallelism)
                        == key_groups
                })
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
        let fetch = |object: &str, shared: bool| {
            let name = if shared {
                object.to_string()
            } else {
                restore.file(object)
            };
            block_on(restore.storage.get(&name))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("state file '{name}' is missing"))
        };
        match handle {
            StateHandle::Full { file, .. } => {
                let bytes = fetch(file, false)?;
                backend
                    .restore(&bytes, key_groups.clone())
                    .map_err(|e| format!("restoring '{file}': {e}"))?;
            }
            StateHandle::Rocksdb { files } => {
                // Unique per process, operator, old and new subtask: restores run side by side.
                let local = backend.restore_scratch(&format!(
                    "restore-{}-{}-{}-to-{}",
                    std::process::id(),
                    checkpointing.operator_id,
                    subtask.subtask,
                    checkpointing.task.1
                ));
                let _ = std::fs::remove_dir_all(&local);
                std::fs::create_dir_all(&local).map_err(|e| format!("{}: {e}", local.display()))?;
                let result = (|| {
                    for file in files {
                        let bytes = fetch(&file.object, file.shared)?;
                        std::fs::write(local.join(&file.name), &bytes)
                            .map_err(|e| format!("{}: {e}", local.display()))?;
                    }
                    // The same key groups as before (not rescaled): the copy becomes the
                    // working database as it is, and its SST files, already in `shared/`, are
                    // not uploaded again. Otherwise the entries of this subtask's key groups
                    // are copied into it (its first checkpoint then uploads them afresh).
                    if same_key_groups(subtasks.len(), subtask.subtask)
                        && backend.adopt_files(&local).map_err(|e| e.to_string())?
                    {
                        if !restore.metadata.savepoint
                            && let Ok(mut uploaded) = checkpointing.uploaded.lock()
                        {
                            for file in files.iter().filter(|f| f.shared) {
                                uploaded
                                    .insert(file.name.clone(), (file.object.clone(), file.bytes));
                            }
                        }
                        return Ok(());
                    }
                    backend
                        .restore_files(&local, key_groups.clone())
                        .map_err(|e| e.to_string())
                })();
                let _ = std::fs::remove_dir_all(&local);
                result?;
            }
        }
    }
    operator.on_restore(watermark)
}

/// Snapshots an operator's state into the storage for a checkpoint. Blocking.
pub(crate) fn snapshot_operator(
    operator: &mut dyn Operator,
    checkpointing: &TaskCheckpointing,
    barrier: Barrier,
) -> Result<(SubtaskSnapshot, AckFigures), String> {
    let local = take_snapshot(operator)?;
    upload_snapshot(checkpointing, local, barrier)
}

/// The synchronous part of a checkpoint: a local copy of the operator's state (a RocksDB
/// checkpoint of hard links, or the memory backend's entries serialised) and its watermark.
/// Blocking; the operator may go on once it returns.
pub(crate) fn take_snapshot(operator: &mut dyn Operator) -> Result<TakenSnapshot, String> {
    let watermark = operator.current_watermark();
    let state = match operator.state_backend() {
        None => None,
        Some(backend) => Some(backend.snapshot().map_err(|e| e.to_string())?),
    };
    Ok(TakenSnapshot { watermark, state })
}

/// See [`take_snapshot`].
#[derive(Debug)]
pub(crate) struct TakenSnapshot {
    watermark: Option<i64>,
    state: Option<LocalSnapshot>,
}

/// The asynchronous part: writes a taken snapshot to the checkpoint storage. Blocking.
pub(crate) fn upload_snapshot(
    checkpointing: &TaskCheckpointing,
    taken: TakenSnapshot,
    barrier: Barrier,
) -> Result<(SubtaskSnapshot, AckFigures), String> {
    let mut figures = AckFigures::default();
    let TakenSnapshot { watermark, state } = taken;
    let dir = checkpoint_dir(barrier.id, barrier.savepoint);
    let own = format!("{}-{}", checkpointing.operator_id, checkpointing.task.1);
    let put = |name: &str, bytes: Vec<u8>| {
        block_on(checkpointing.storage.put(name, Bytes::from(bytes))).map_err(|e| e.to_string())
    };
    let state = match state {
        None => None,
        Some(local) => match local {
            LocalSnapshot::Full(bytes) => {
                // Named relative to the checkpoint's directory, so that a savepoint can be moved.
                // The attempt's lineage in the name too: an upload of a failed attempt that
                // is still running can never overwrite a file of the restarted one.
                let file = format!("{own}-{}.state", checkpointing.lineage);
                let size = bytes.len() as u64;
                put(&format!("{dir}/{file}"), bytes)?;
                figures.bytes_written = size;
                figures.state_size = size;
                Some(StateHandle::Full { file, bytes: size })
            }
            LocalSnapshot::Files(local) => {
                let result = upload_files(checkpointing, &local, &dir, &own, barrier.savepoint);
                let _ = std::fs::remove_dir_all(&local);
                let (files, written, reused) = result?;
                figures.bytes_written = written;
                figures.bytes_reused = reused;
                figures.state_size = written + reused;
                Some(StateHandle::Rocksdb { files })
            }
        },
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

/// Uploads a RocksDB checkpoint: each SST file once, to `shared/` (a savepoint copies all of its
/// files into its own directory, so it stands alone); the rest into the checkpoint's directory.
/// The files, and the bytes written and reused.
fn upload_files(
    checkpointing: &TaskCheckpointing,
    local: &std::path::Path,
    dir: &str,
    own: &str,
    savepoint: bool,
) -> Result<(Vec<crate::checkpoint::metadata::StateFile>, u64, u64), String> {
    let io = |e: std::io::Error| format!("{}: {e}", local.display());
    let mut files = Vec::new();
    let (mut written, mut reused) = (0, 0);
    let mut names: Vec<String> = std::fs::read_dir(local)
        .map_err(io)?
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        let path = local.join(&name);
        let shared = !savepoint && name.ends_with(".sst");
        let known = if shared {
            checkpointing
                .uploaded
                .lock()
                .ok()
                .and_then(|u| u.get(&name).cloned())
        } else {
            None
        };
        let (object, bytes) = match known {
            Some(known) => {
                reused += known.1;
                known
            }
            None => {
                let bytes = std::fs::read(&path).map_err(io)?;
                let size = bytes.len() as u64;
                let object = if shared {
                    // SST numbers restart in a restored copy: the lineage keeps names apart.
                    format!("shared/{own}/{}-{name}", checkpointing.lineage)
                } else {
                    format!("{own}/{}-{name}", checkpointing.lineage)
                };
                let stored = if shared {
                    object.clone()
                } else {
                    format!("{dir}/{object}")
                };
                block_on(checkpointing.storage.put(&stored, Bytes::from(bytes)))
                    .map_err(|e| e.to_string())?;
                written += size;
                if shared && let Ok(mut uploaded) = checkpointing.uploaded.lock() {
                    uploaded.insert(name.clone(), (object.clone(), size));
                }
                (object, size)
            }
        };
        files.push(crate::checkpoint::metadata::StateFile {
            name,
            object,
            shared,
            bytes,
        });
    }
    Ok((files, written, reused))
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

    use super::super::checkpoint_bench::Holder;

    fn rows(from: u32, to: u32) -> Vec<(crate::state::StateKey, Vec<u8>)> {
        (from..to)
            .map(|i| {
                let key = crate::state::StateKey {
                    key_group: (i % 128) as u16,
                    key: i.to_be_bytes().to_vec(),
                    namespace: Vec::new(),
                };
                // Varied bytes, so that compression leaves most of them.
                let value: Vec<u8> = (0..100u32)
                    .map(|j| (i.wrapping_mul(2654435761).wrapping_add(j * 40503) >> 13) as u8)
                    .collect();
                (key, value)
            })
            .collect()
    }

    fn task(storage: CheckpointStorage) -> TaskCheckpointing {
        let (_, triggers) = watch::channel(barrier(0));
        let (_, completed) = watch::channel(Completed { id: 0, stop: false });
        let (reports, _) = mpsc::unbounded_channel();
        TaskCheckpointing {
            task: (0, 0),
            operator_id: "holder-1".into(),
            storage,
            reports,
            triggers,
            completed,
            restore: None,
            parallelism: 1,
            max_parallelism: 128,
            uploaded: Arc::default(),
            pending_upload: Arc::default(),
            lineage: "l1".into(),
        }
    }

    fn metadata(id: u64, snapshot: SubtaskSnapshot) -> crate::checkpoint::CheckpointMetadata {
        crate::checkpoint::CheckpointMetadata {
            format_version: crate::checkpoint::metadata::FORMAT_VERSION,
            id,
            savepoint: false,
            finished: false,
            job_tag: "t".into(),
            max_parallelism: 128,
            completed_millis: 0,
            operators: vec![crate::checkpoint::metadata::OperatorSnapshot {
                operator_id: "holder-1".into(),
                name: "Holder [0]".into(),
                parallelism: 1,
                subtasks: vec![snapshot],
            }],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rocksdb_checkpoints_upload_what_changed_and_keep_what_retained_ones_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = CheckpointStorage::open(
            &dir.path().join("chk").display().to_string(),
            &crate::checkpoint::StorageOptions::default(),
        )
        .await
        .expect("storage");
        incremental_checkpoints_and_retention(storage).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rocksdb_checkpoints_in_s3_upload_what_changed_and_keep_what_retained_ones_use() {
        let (location, options) = crate::checkpoint::storage::tests::test_s3("incremental");
        let storage = CheckpointStorage::open(&location, &options)
            .await
            .expect("storage");
        incremental_checkpoints_and_retention(storage).await;
    }

    async fn incremental_checkpoints_and_retention(storage: CheckpointStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db =
            crate::state::rocksdb::RocksDbStateBackend::open(&dir.path().join("db")).expect("open");
        let checkpointing = task(storage.clone());
        let cp = checkpointing.clone();
        let (first, second, all) = tokio::task::spawn_blocking(move || {
            let mut holder = Holder(Box::new(db));
            holder.0.put_many(1, rows(0, 200_000)).expect("put");
            let first = snapshot_operator(&mut holder, &cp, barrier(1)).expect("checkpoint 1");
            // A small change.
            holder.0.put_many(1, rows(200_000, 201_000)).expect("put");
            let second = snapshot_operator(&mut holder, &cp, barrier(2)).expect("checkpoint 2");
            let all = holder.0.entries(1).expect("entries");
            (first, second, all)
        })
        .await
        .expect("join");
        assert!(first.1.bytes_written > 5_000_000, "{:?}", first.1);
        assert_eq!(first.1.bytes_reused, 0);
        // The second writes about the change, and shares the rest.
        assert!(
            second.1.bytes_written * 20 < second.1.state_size,
            "checkpoint 2 wrote {} of {} bytes",
            second.1.bytes_written,
            second.1.state_size
        );
        assert!(
            second.1.bytes_reused >= first.1.bytes_written / 2,
            "{:?}",
            second.1
        );
        // Completing both (metadata), then keeping only the newest: checkpoint 1 goes, but
        // every file checkpoint 2 uses stays, and it restores whole.
        for (id, (snapshot, _)) in [(1, &first), (2, &second)] {
            let json = serde_json::to_vec(&metadata(id, snapshot.clone())).expect("json");
            storage
                .put(&format!("chk-{id}/_metadata"), Bytes::from(json))
                .await
                .expect("put");
        }
        let newest = metadata(2, second.0.clone());
        crate::checkpoint::coordinator::retain(&storage, &newest, 1)
            .await
            .expect("retain");
        assert_eq!(storage.size("chk-1/_metadata").await.expect("size"), None);
        let restore = Arc::new(Restore {
            storage: storage.clone(),
            dir: "chk-2".into(),
            metadata: newest,
        });
        crate::checkpoint::verify(&restore)
            .await
            .expect("checkpoint 2 is whole");
        let mut checkpointing = task(storage.clone());
        checkpointing.restore = Some(restore);
        let restored = tokio::task::spawn_blocking(move || {
            let db = crate::state::rocksdb::RocksDbStateBackend::open(&dir.path().join("again"))
                .expect("open");
            let mut holder = Holder(Box::new(db));
            restore_operator(&mut holder, &checkpointing).expect("restore");
            let entries = holder.0.entries(1).expect("entries");
            // Not rescaled: the restored copy is the working database, and the next checkpoint
            // shares the SST files the restored one uploaded instead of writing them again.
            checkpointing.lineage = "l2".into();
            let third = snapshot_operator(&mut holder, &checkpointing, barrier(3)).expect("3");
            (entries, third)
        })
        .await
        .expect("join");
        assert_eq!(restored.0.len(), 201_000);
        assert_eq!(restored.0, all);
        let third = restored.1.1;
        assert!(
            third.bytes_written * 20 < third.state_size,
            "checkpoint 3, the first after the restore, wrote {} of {} bytes",
            third.bytes_written,
            third.state_size
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
