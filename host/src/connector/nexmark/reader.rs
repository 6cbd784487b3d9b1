//! One subtask's reader: which events it reads next, their event times, and its throttle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::generator::Generator;
use super::{Column, Config, DEFAULT_RATE, EPOCH, NANOS_PER_SECOND};
use crate::connector::{ConnectorError, SourceReader, SourceRequest, Subtask, TableDef};

/// The most rows in one batch, whatever `batch_size` asks: with strings of at most 512 bytes it
/// keeps a column's i32 string offsets far from overflow.
const MAX_BATCH_ROWS: usize = 1 << 20;
/// A throttled source holds a batch back at most this long past its first row's due time to fill
/// it: few large batches at high rates, little latency at low ones.
const MAX_BATCH_DELAY: Duration = Duration::from_millis(10);

/// One subtask's reader.
#[derive(Debug)]
pub(super) struct NexmarkReader {
    generator: Generator,
    /// The projected columns, in output order.
    columns: Vec<Column>,
    schema: SchemaRef,
    cursor: Cursor,
    /// The first event index past the end (`u64::MAX`: unbounded).
    limit: u64,
    max_rows: usize,
    pub(super) throttle: Option<Throttle>,
    /// The event indexes of the batch being built; kept to reuse its allocation.
    rows: Vec<u64>,
    /// After a restore: the events read before the checkpoint, skipped until passed.
    done: Option<Done>,
}

/// The events a checkpoint says were read: those of epoch `e` below `next[e % next.len()]`
/// (each old subtask read its epochs in order, up to its position).
#[derive(Debug)]
struct Done {
    next: Vec<u64>,
    /// Past this index nothing is done.
    max: u64,
}

impl Done {
    fn contains(&self, index: u64) -> bool {
        let owner = (index / EPOCH % self.next.len() as u64) as usize;
        index < self.next[owner]
    }
}

impl NexmarkReader {
    pub(super) fn open(table: &TableDef, request: &SourceRequest) -> Result<Self, ConnectorError> {
        let config = Config::parse(table)?;
        let bug = |message: String| ConnectorError::Other {
            table: table.name.clone(),
            message,
        };
        let Subtask { index, count } = request.subtask;
        if index >= count {
            return Err(bug(format!("there is no subtask {index} of {count}")));
        }
        let projection = request
            .projection
            .clone()
            .unwrap_or_else(|| (0..config.columns.len()).collect());
        let columns = projection
            .iter()
            .map(|&i| {
                config.columns.get(i).cloned().ok_or_else(|| {
                    bug(format!(
                        "projected column {i} is not among the {} declared columns",
                        config.columns.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = table
            .schema
            .project(&projection)
            .map_err(|e| bug(format!("cannot project the declared schema: {e}")))?;
        let clock = Clock {
            rate: config.rate.unwrap_or(DEFAULT_RATE),
        };
        let (first_slot, slots) = config.kind.slots();
        Ok(Self {
            generator: Generator::new(
                table.name.clone(),
                config.kind,
                config.seed,
                clock,
                config.out_of_orderness_nanos,
                &columns,
            ),
            columns,
            schema: Arc::new(schema),
            cursor: Cursor {
                epoch: index as u64,
                slot: 0,
                step: count as u64,
                first_slot,
                slots,
            },
            limit: config.events.unwrap_or(u64::MAX),
            max_rows: request.batch_size.clamp(1, MAX_BATCH_ROWS),
            throttle: config
                .rate
                .filter(|_| config.throttle)
                .map(|_| Throttle { clock, start: None }),
            rows: Vec::new(),
            done: None,
        })
    }

    /// The next batch of events (empty when all were read before a restore); `None` at the end.
    fn next_rows(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        self.skip_done_epochs();
        let first = self.cursor.index();
        if first >= self.limit {
            return Ok(None);
        }
        let bound = match &mut self.throttle {
            None => self.limit,
            Some(throttle) => {
                let last = self
                    .cursor
                    .nth(self.max_rows as u64 - 1)
                    .min(self.limit - 1);
                throttle.wait(first, last).min(self.limit)
            }
        };
        self.rows.clear();
        self.cursor.take(self.max_rows, bound, &mut self.rows);
        if let Some(done) = &self.done {
            self.rows.retain(|&index| !done.contains(index));
        }
        let columns = self
            .columns
            .iter()
            .map(|column| self.generator.column(column, &self.rows))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map(Some)
            .map_err(|e| self.generator.bug(format!("cannot assemble a batch: {e}")))
    }

    /// Moves the cursor past epochs that a restored checkpoint read entirely.
    fn skip_done_epochs(&mut self) {
        let Some(done) = &self.done else {
            return;
        };
        while self.cursor.slot == 0 {
            let first = self.cursor.index();
            let last = self.cursor.nth(self.cursor.slots - 1);
            if first >= done.max || !done.contains(last) || first >= self.limit {
                break;
            }
            self.cursor.epoch = self.cursor.epoch.saturating_add(self.cursor.step);
        }
        if self.cursor.index() >= done.max {
            self.done = None;
        }
    }
}

impl SourceReader for NexmarkReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            let batch = self.next_rows()?;
            // After a restore, a stretch of events may all have been read already.
            if batch.as_ref().is_none_or(|b| b.num_rows() > 0) {
                return Ok(batch);
            }
        }
    }

    fn position(&self) -> Result<serde_json::Value, ConnectorError> {
        Ok(serde_json::json!({ "next": self.cursor.index().min(self.limit) }))
    }

    fn restore(&mut self, positions: &[Option<serde_json::Value>]) -> Result<(), ConnectorError> {
        let mut next = Vec::with_capacity(positions.len());
        for (old, position) in positions.iter().enumerate() {
            let index = match position {
                // That subtask had not reached a barrier: it had read nothing.
                None => 0,
                Some(p) => p
                    .get("next")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| {
                        self.generator.bug(format!(
                            "subtask {old}'s position is not a nexmark position: {p}"
                        ))
                    })?,
            };
            next.push(index);
        }
        if next.is_empty() {
            return Ok(());
        }
        let max = next.iter().copied().max().unwrap_or(0);
        let slowest = next.iter().copied().min().unwrap_or(0);
        // Paced as if it had run all along: the next event is due now, not after the time
        // the events before it took.
        if let Some(throttle) = &mut self.throttle {
            throttle.start =
                Instant::now().checked_sub(Duration::from_nanos(throttle.clock.nanos(slowest)));
        }
        self.done = Some(Done { next, max });
        Ok(())
    }
}

/// Where a subtask is in the sequence: at slot `slot` of its kind's events in epoch `epoch`.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    epoch: u64,
    slot: u64,
    /// Subtasks: this one's next epoch after `epoch` is `epoch + step`.
    step: u64,
    /// `Kind::slots`.
    first_slot: u64,
    slots: u64,
}

impl Cursor {
    /// The event index of the next row.
    fn index(&self) -> u64 {
        self.nth(0)
    }

    /// The event index of the row `k` rows after the next one.
    fn nth(&self, k: u64) -> u64 {
        let t = self.slot.saturating_add(k);
        let epoch = self
            .epoch
            .saturating_add((t / self.slots).saturating_mul(self.step));
        epoch
            .saturating_mul(EPOCH)
            .saturating_add(self.first_slot + t % self.slots)
    }

    /// Appends the next event indexes below `bound` to `rows`, until it holds `max_rows`.
    fn take(&mut self, max_rows: usize, bound: u64, rows: &mut Vec<u64>) {
        while rows.len() < max_rows {
            let base = self
                .epoch
                .saturating_mul(EPOCH)
                .saturating_add(self.first_slot);
            let start = base.saturating_add(self.slot);
            if start >= bound {
                break;
            }
            let room = (max_rows - rows.len()) as u64;
            let end = base
                .saturating_add(self.slots)
                .min(start.saturating_add(room))
                .min(bound);
            rows.extend(start..end);
            self.slot = end - base;
            if self.slot == self.slots {
                self.epoch = self.epoch.saturating_add(self.step);
                self.slot = 0;
            }
        }
    }
}

/// Event time: event `index` happens `index / rate` seconds after the base time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub(super) rate: u64,
}

impl Clock {
    /// Nanoseconds from the base time to event `index`, rounded down.
    pub(super) fn nanos(self, index: u64) -> u64 {
        // Split so that nothing overflows: the remainder times 1e9 is below 1e18 as rate <= 1e9.
        let whole = (index / self.rate).wrapping_mul(NANOS_PER_SECOND);
        whole.wrapping_add(index % self.rate * NANOS_PER_SECOND / self.rate)
    }

    /// Calls `emit(index, nanos(index))` for each row, stepping from one index to the next without
    /// a division (rows are mostly runs of consecutive indexes).
    #[inline]
    pub(super) fn for_each(self, rows: &[u64], mut emit: impl FnMut(u64, u64)) {
        let rate = self.rate;
        let (step, step_remainder) = (NANOS_PER_SECOND / rate, NANOS_PER_SECOND % rate);
        // nanos = floor(index * 1e9 / rate); remainder = index * 1e9 mod rate.
        let (mut nanos, mut remainder) = (0u64, 0u64);
        let mut next = None;
        for &index in rows {
            if next == Some(index) {
                nanos = nanos.wrapping_add(step);
                remainder += step_remainder;
                if remainder >= rate {
                    remainder -= rate;
                    nanos = nanos.wrapping_add(1);
                }
            } else {
                nanos = self.nanos(index);
                remainder = index % rate * NANOS_PER_SECOND % rate;
            }
            next = index.checked_add(1);
            emit(index, nanos);
        }
    }
}

/// Holds batches back so that event `i` leaves no earlier than `i / rate` seconds after the first
/// batch: the subtasks together emit at most `rate` events per second, in event-time order.
#[derive(Debug)]
pub(super) struct Throttle {
    clock: Clock,
    start: Option<Instant>,
}

impl Throttle {
    /// Sleeps until a batch from event `first` up to event `last` may leave (or until it has
    /// waited long enough), then returns the first event index that is not yet due.
    fn wait(&mut self, first: u64, last: u64) -> u64 {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = |index| Duration::from_nanos(self.clock.nanos(index));
        let wake = due(last).min(due(first) + MAX_BATCH_DELAY);
        if let Some(rest) = wake.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
        // Event i is due once floor(i * 1e9 / rate) <= elapsed, that is i * 1e9 < (elapsed + 1) *
        // rate: the due events are those below ceil((elapsed + 1) * rate / 1e9).
        let elapsed = start.elapsed().as_nanos();
        let ns = u128::from(NANOS_PER_SECOND);
        let due_count = ((elapsed + 1) * u128::from(self.clock.rate)).div_ceil(ns);
        u64::try_from(due_count)
            .unwrap_or(u64::MAX)
            .max(first.saturating_add(1))
    }
}
