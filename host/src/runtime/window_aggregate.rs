//! Window aggregation: `GROUP BY window_start, window_end [, keys]` over a window table
//! function, emitting each window's rows once, when the watermark passes the window's end.
//!
//! As Flink's slicing window operator: the input carries each row's slice (or, when something
//! between the table function and the aggregation looks at the window columns, each row once
//! per window, and the window is its own slice). Every (key, slice) accumulates in the state
//! backend under the slice as namespace; when a window fires, the states of its slices are
//! merged per key and finished, so a HOP window costs a merge of a few slices, not a pass over
//! its rows. A slice is deleted once the last window it belongs to has fired. Rows whose slice
//! belongs to a window that has already fired are late: dropped and counted.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arrow::array::{ArrayRef, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion_common::DFSchemaRef;
use datafusion_expr::Expr;
use foldhash::fast::FixedState;

use super::accumulators::Accumulators;
use super::aggregate::{GroupKeys, output_batch};
use super::operators::Operator;
use super::watermark::END_OF_TIME;
use super::window::{Assigner, millis, time_column};
use crate::plan::WindowGroup;
use crate::sql::window::WindowKind;
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};

/// The state holding each (key, slice)'s accumulators.
const SLICES: StateName = 0;

/// A slice or window: `(start, end)` in milliseconds.
pub(crate) type Span = (i64, i64);

/// A group key as the timers hold it: its key group (2 bytes, big-endian), then its encoded
/// bytes.
pub(crate) type GroupKey = Vec<u8>;

pub(crate) fn group_key(key_group: u16, key: &[u8]) -> GroupKey {
    let mut bytes = Vec::with_capacity(2 + key.len());
    bytes.extend_from_slice(&key_group.to_be_bytes());
    bytes.extend_from_slice(key);
    bytes
}

pub(crate) fn state_key(group_key: &[u8], namespace: Vec<u8>) -> StateKey {
    StateKey {
        key_group: u16::from_be_bytes([group_key[0], group_key[1]]),
        key: group_key[2..].to_vec(),
        namespace,
    }
}

pub(crate) struct WindowAggregate {
    assigner: Assigner,
    /// Whether the input's window columns hold slices (else whole windows).
    sliced: bool,
    start_column: usize,
    end_column: usize,
    keys: GroupKeys,
    accumulators: Accumulators,
    backend: Box<dyn KeyedStateBackend>,
    groups: Vec<WindowGroup>,
    schema: SchemaRef,
    /// The last watermark acted on.
    watermark: i64,
    /// Every slice in state (by end, then start) and the keys with state in it: the timers
    /// that fire windows. They move into the state backend with checkpoints.
    pending: BTreeMap<(i64, i64), HashSet<GroupKey, FixedState>>,
    /// Late rows dropped since the runtime last asked.
    late_rows: u64,
    /// Windows over processing time: they fire by the clock (timers), not the watermark.
    processing_time: bool,
}

/// What a window aggregation is made of (its plan node's fields).
pub(crate) struct WindowAggregateSpec<'a> {
    pub window: WindowKind,
    pub processing_time: bool,
    pub sliced: bool,
    pub start_column: usize,
    pub end_column: usize,
    pub key_exprs: &'a [Expr],
    pub groups: &'a [WindowGroup],
    pub aggr_exprs: &'a [Expr],
    pub input_schema: &'a DFSchemaRef,
}

pub(crate) fn namespace((start, end): Span) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16);
    bytes.extend_from_slice(&end.to_be_bytes());
    bytes.extend_from_slice(&start.to_be_bytes());
    bytes
}

fn span_of(namespace: &[u8]) -> Option<Span> {
    let end = i64::from_be_bytes(namespace.get(..8)?.try_into().ok()?);
    let start = i64::from_be_bytes(namespace.get(8..16)?.try_into().ok()?);
    Some((start, end))
}

/// Whether a window or slice ending at `end` is complete at `watermark`: its last
/// millisecond, `end - 1`, is at or before it.
pub(crate) fn complete(end: i64, watermark: i64) -> bool {
    end.saturating_sub(1) <= watermark
}

impl WindowAggregate {
    pub(crate) fn new(
        spec: &WindowAggregateSpec,
        schema: SchemaRef,
        max_parallelism: usize,
    ) -> Result<Self, String> {
        let accumulators = Accumulators::new(spec.aggr_exprs, spec.input_schema)?;
        if spec.sliced && !matches!(spec.window, WindowKind::Tumble { .. }) {
            accumulators.require_merge(&format!(
                "a {} window (made of slices it shares)",
                spec.window.function_name()
            ))?;
        }
        Ok(Self {
            assigner: Assigner::new(spec.window),
            sliced: spec.sliced,
            start_column: spec.start_column,
            end_column: spec.end_column,
            keys: GroupKeys::new(spec.key_exprs, spec.input_schema, max_parallelism)?,
            accumulators,
            backend: Box::new(MemoryStateBackend::default()),
            groups: spec.groups.to_vec(),
            schema,
            watermark: i64::MIN,
            pending: BTreeMap::new(),
            late_rows: 0,
            processing_time: spec.processing_time,
        })
    }

    fn windows_of_slice(&self, slice: Span) -> Vec<Span> {
        if self.sliced {
            self.assigner.windows_of_slice(slice)
        } else {
            vec![slice]
        }
    }

    fn last_window_end(&self, slice: Span) -> i64 {
        if self.sliced {
            self.assigner.last_window_end(slice)
        } else {
            slice.1
        }
    }

    /// Emits every window complete at `watermark` that was not complete before, then drops the
    /// slices no later window needs.
    fn fire(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let before = self.watermark;
        let ready: Vec<Span> = self
            .pending
            .keys()
            .take_while(|(end, _)| complete(*end, watermark))
            .map(|&(end, start)| (start, end))
            .collect();
        let mut windows: BTreeMap<(i64, i64), Vec<Span>> = BTreeMap::new();
        for &slice in &ready {
            for (start, end) in self.windows_of_slice(slice) {
                if complete(end, watermark) && !complete(end, before) {
                    windows.entry((end, start)).or_default().push(slice);
                }
            }
        }
        for ((end, start), slices) in windows {
            self.emit((start, end), &slices, out)?;
        }
        for slice in ready {
            if !complete(self.last_window_end(slice), watermark) {
                continue;
            }
            let Some(keys) = self.pending.remove(&(slice.1, slice.0)) else {
                continue;
            };
            let namespace = namespace(slice);
            let keys: Vec<StateKey> = keys
                .iter()
                .map(|key| state_key(key, namespace.clone()))
                .collect();
            self.backend
                .delete_many(SLICES, &keys)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// One window's rows: every key with state in any of its slices, in key order.
    fn emit(
        &mut self,
        window: Span,
        slices: &[Span],
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), String> {
        let keys: BTreeSet<&GroupKey> = slices
            .iter()
            .filter_map(|s| self.pending.get(&(s.1, s.0)))
            .flatten()
            .collect();
        let keys: Vec<GroupKey> = keys.into_iter().cloned().collect();
        for chunk in keys.chunks(super::BATCH_SIZE) {
            let mut groups = Vec::new();
            let mut state_keys = Vec::new();
            for (group, key) in chunk.iter().enumerate() {
                for slice in slices {
                    let has_state = self
                        .pending
                        .get(&(slice.1, slice.0))
                        .is_some_and(|keys| keys.contains(key));
                    if has_state {
                        groups.push(group);
                        state_keys.push(state_key(key, namespace(*slice)));
                    }
                }
            }
            let stored = self
                .backend
                .get_many(SLICES, &state_keys)
                .map_err(|e| e.to_string())?;
            let mut parts = Vec::with_capacity(stored.len());
            for (group, state) in groups.iter().zip(&stored) {
                let state = state
                    .as_deref()
                    .ok_or("a window slice's state is missing")?;
                parts.push((*group, state));
            }
            let results = self.accumulators.finish(chunk.len(), &parts)?;
            let key_columns = self.keys.decode(chunk.iter().map(|k| &k[2..]))?;
            out.push(self.output(window, chunk.len(), key_columns, results)?);
        }
        Ok(())
    }

    fn output(
        &self,
        (start, end): Span,
        rows: usize,
        keys: Vec<ArrayRef>,
        results: Vec<ArrayRef>,
    ) -> Result<RecordBatch, String> {
        window_rows(
            &self.schema,
            &self.groups,
            (vec![start; rows], vec![end; rows]),
            keys,
            results,
        )
    }
}

/// A window aggregation's output rows: the GROUP BY items in their order (keys and window
/// columns from each row's `(starts, ends)`), then the aggregates.
pub(crate) fn window_rows(
    schema: &SchemaRef,
    groups: &[WindowGroup],
    (starts, ends): (Vec<i64>, Vec<i64>),
    keys: Vec<ArrayRef>,
    results: Vec<ArrayRef>,
) -> Result<RecordBatch, String> {
    let rows = starts.len();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (index, group) in groups.iter().enumerate() {
        let data_type = schema.field(index).data_type();
        columns.push(match group {
            WindowGroup::Key(k) => keys
                .get(*k)
                .cloned()
                .ok_or("a window key column is missing")?,
            WindowGroup::Start => time_column(starts.clone(), data_type),
            WindowGroup::End => time_column(ends.clone(), data_type),
            WindowGroup::Time => time_column(ends.iter().map(|e| e - 1).collect(), data_type),
        });
    }
    columns.extend(results);
    output_batch(schema, columns, rows)
}

/// A batch's rows whose window (or slice) is not complete at the watermark, with their windows;
/// the others are late.
pub(crate) struct OnTime {
    pub batch: RecordBatch,
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub late: u64,
}

/// Splits off the late rows of `batch`, whose window columns are `(start, end)`.
pub(crate) fn on_time(
    batch: RecordBatch,
    (start, end): (usize, usize),
    watermark: i64,
) -> Result<OnTime, String> {
    let column = |index: usize| {
        batch
            .columns()
            .get(index)
            .ok_or_else(|| "a window column is missing".to_string())
    };
    let starts = millis(column(start)?, "window_start")?;
    let ends = millis(column(end)?, "window_end")?;
    let keep: Vec<bool> = ends.iter().map(|&e| !complete(e, watermark)).collect();
    let late = keep.iter().filter(|&&k| !k).count();
    if late == 0 {
        return Ok(OnTime {
            batch,
            starts,
            ends,
            late: 0,
        });
    }
    let only_kept = |values: Vec<i64>| {
        values
            .into_iter()
            .zip(&keep)
            .filter_map(|(v, &k)| k.then_some(v))
            .collect::<Vec<_>>()
    };
    let batch = filter_record_batch(&batch, &BooleanArray::from(keep.clone()))
        .map_err(|e| e.to_string())?;
    Ok(OnTime {
        batch,
        starts: only_kept(starts),
        ends: only_kept(ends),
        late: late as u64,
    })
}

impl Operator for WindowAggregate {
    fn name(&self) -> &'static str {
        "WindowAggregate"
    }

    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // A slice whose first window has fired is late.
        let OnTime {
            batch,
            starts,
            ends,
            late,
        } = on_time(batch, (self.start_column, self.end_column), self.watermark)?;
        self.late_rows += late;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let namespaces: Vec<Vec<u8>> = starts
            .iter()
            .zip(&ends)
            .map(|(&start, &end)| namespace((start, end)))
            .collect();
        let touched = self.keys.touched(&batch, Some(&namespaces))?;
        let stored = self
            .backend
            .get_many(SLICES, &touched.keys)
            .map_err(|e| e.to_string())?;
        let states = self
            .accumulators
            .update(&batch, &touched.row_groups, &stored)?;
        for (key, state) in touched.keys.iter().zip(&stored) {
            if state.is_none() {
                let (start, end) = span_of(&key.namespace).ok_or("a slice key is corrupt")?;
                self.pending
                    .entry((end, start))
                    .or_default()
                    .insert(group_key(key.key_group, &key.key));
            }
        }
        let entries = touched.keys.into_iter().zip(states).collect();
        self.backend
            .put_many(SLICES, entries)
            .map_err(|e| e.to_string())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        // Processing-time windows heed only the end of input's end of time.
        if watermark <= self.watermark || (self.processing_time && watermark < END_OF_TIME) {
            return Ok(());
        }
        self.fire(watermark, out)?;
        self.watermark = watermark;
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        self.on_watermark(END_OF_TIME, out)
    }

    fn timer_interval(&self) -> Option<std::time::Duration> {
        self.processing_time.then_some(PROCESSING_TIME_TICK)
    }

    fn on_timer(&mut self, now: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        // A window [start, end) is complete once the clock reads `end`.
        let watermark = now.saturating_sub(1);
        if watermark > self.watermark {
            self.fire(watermark, out)?;
            self.watermark = watermark;
        }
        Ok(())
    }

    fn take_late_rows(&mut self) -> u64 {
        std::mem::take(&mut self.late_rows)
    }

    fn state_backend(&mut self) -> Option<&mut Box<dyn KeyedStateBackend>> {
        Some(&mut self.backend)
    }

    fn current_watermark(&self) -> Option<i64> {
        Some(self.watermark)
    }

    fn on_restore(&mut self, watermark: Option<i64>) -> Result<(), String> {
        self.watermark = watermark.unwrap_or(i64::MIN);
        // Every slice in state is pending.
        self.pending.clear();
        for (key, _) in self.backend.entries(SLICES).map_err(|e| e.to_string())? {
            let (start, end) = span_of(&key.namespace).ok_or("a slice key is corrupt")?;
            self.pending
                .entry((end, start))
                .or_default()
                .insert(group_key(key.key_group, &key.key));
        }
        Ok(())
    }
}

/// How often processing-time windows look at the clock.
pub(crate) const PROCESSING_TIME_TICK: std::time::Duration = std::time::Duration::from_millis(50);
