//! An unbounded filesystem source (`'source.monitor-interval'`): after the files that were
//! there at the start, the directory is listed again every interval, and each new file is read
//! once, by one subtask (chosen by a hash of its path, so that subtasks need not agree on when
//! they saw it). The reader never ends; while it waits it returns nothing, and the runtime may
//! declare the split idle.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use super::{InputFile, Pieces, list_files};
use crate::connector::{ConnectorError, SourceReader, Subtask};

pub(super) struct Monitor {
    pieces: Pieces,
    current: Box<dyn SourceReader>,
    /// Every file seen so far (read, or another subtask's).
    known: HashSet<PathBuf>,
    subtask: Subtask,
    interval: Duration,
    /// Rows skipped by readers already done.
    skipped_before: u64,
}

impl Monitor {
    pub(super) fn new(
        pieces: Pieces,
        first: Box<dyn SourceReader>,
        files: &[InputFile],
        subtask: Subtask,
        interval: Duration,
    ) -> Self {
        Self {
            pieces,
            current: first,
            known: files.iter().map(|f| f.path.clone()).collect(),
            subtask,
            interval,
            skipped_before: 0,
        }
    }

    fn owns(&self, path: &PathBuf) -> bool {
        let mut hasher = std::hash::DefaultHasher::new();
        path.hash(&mut hasher);
        hasher.finish() % self.subtask.count as u64 == self.subtask.index as u64
    }
}

impl SourceReader for Monitor {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            if let Some(batch) = self.current.next_batch()? {
                return Ok(Some(batch));
            }
            std::thread::sleep(self.interval);
            let new: Vec<InputFile> = list_files(&self.pieces.config.path)?
                .into_iter()
                .filter(|f| !self.known.contains(&f.path))
                .collect();
            if new.is_empty() {
                continue;
            }
            let mine: Vec<InputFile> = new.iter().filter(|f| self.owns(&f.path)).cloned().collect();
            self.known.extend(new.into_iter().map(|f| f.path));
            if mine.is_empty() {
                continue;
            }
            self.skipped_before += self.current.skipped_rows();
            // Whole files: this subtask reads every piece of its own.
            self.current = self.pieces.open(&mine, Subtask { index: 0, count: 1 })?;
        }
    }

    fn skipped_rows(&self) -> u64 {
        self.skipped_before + self.current.skipped_rows()
    }

    fn position(&self) -> Result<serde_json::Value, ConnectorError> {
        Err(ConnectorError::Option {
            table: self.pieces.table.name.clone(),
            message: "a source that watches its directory ('source.monitor-interval') cannot \
                      resume from a checkpoint yet: run it without \
                      'execution.checkpointing.interval'"
                .into(),
        })
    }
}
