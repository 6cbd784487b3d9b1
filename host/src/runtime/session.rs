//! Session window aggregation: `GROUP BY SESSION(ts, gap), keys` (or its table-function form).
//!
//! Each row arrives with its own window `[ts, ts + gap)`. Per key, windows that overlap or touch
//! merge into a session, as in Flink's merging window operator. The state backend holds, per
//! key, the list of its open sessions (state `SESSIONS`), and per (key, session) the
//! accumulators (state `ACCUMULATORS`, the session as namespace). A batch is handled per key
//! at once: its rows' windows are merged among themselves and with the key's open sessions;
//! sessions that join have their states merged (built-ins merge their state fields, Wasm
//! aggregates call `merge`); then the rows are accumulated. A session is emitted when the
//! watermark passes its end, and its state deleted. Rows whose own window is already complete
//! are late: dropped and counted.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use foldhash::fast::FixedState;

use super::accumulators::Accumulators;
use super::aggregate::GroupKeys;
use super::operators::Operator;
use super::watermark::END_OF_TIME;
use super::window_aggregate::{
    GroupKey, OnTime, Span, WindowAggregateSpec, complete, group_key, namespace, on_time,
    state_key, window_rows,
};
use crate::plan::WindowGroup;
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};

/// Per (key, session): the accumulators.
const ACCUMULATORS: StateName = 0;
/// Per key: its open sessions, 16 bytes each (start, end; big-endian).
const SESSIONS: StateName = 1;

pub(crate) struct SessionAggregate {
    start_column: usize,
    end_column: usize,
    keys: GroupKeys,
    accumulators: Accumulators,
    backend: Box<dyn KeyedStateBackend>,
    groups: Vec<WindowGroup>,
    schema: SchemaRef,
    watermark: i64,
    /// Open sessions by (end, start) and the keys that have them: the timers.
    pending: BTreeMap<(i64, i64), HashSet<GroupKey, FixedState>>,
    late_rows: u64,
    /// Sessions over processing time: they close by the clock (timers), not the watermark.
    processing_time: bool,
}

fn encode_sessions(sessions: &[Span]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(sessions.len() * 16);
    for (start, end) in sessions {
        bytes.extend_from_slice(&start.to_be_bytes());
        bytes.extend_from_slice(&end.to_be_bytes());
    }
    bytes
}

fn decode_sessions(bytes: &[u8]) -> Result<Vec<Span>, String> {
    if !bytes.len().is_multiple_of(16) {
        return Err("a stored session list is corrupt".into());
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| {
            let mut start = [0u8; 8];
            let mut end = [0u8; 8];
            start.copy_from_slice(&c[..8]);
            end.copy_from_slice(&c[8..]);
            (i64::from_be_bytes(start), i64::from_be_bytes(end))
        })
        .collect())
}

/// Flink's rule: windows merge when they overlap or touch.
fn joins(a: Span, b: Span) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// One session after a batch: its span, the stored sessions it absorbed, and its new rows.
struct Merged {
    span: Span,
    absorbed: Vec<Span>,
    rows: Vec<usize>,
}

/// Merges a key's stored sessions with its rows' windows (`(window, row)`).
fn merge_key(stored: &[Span], mut windows: Vec<(Span, usize)>) -> Vec<Merged> {
    enum Item {
        Stored(Span),
        Row(usize),
    }
    let mut items: Vec<(Span, Item)> = stored.iter().map(|&s| (s, Item::Stored(s))).collect();
    windows.sort_unstable_by_key(|(span, _)| *span);
    items.extend(windows.into_iter().map(|(s, row)| (s, Item::Row(row))));
    items.sort_by_key(|(span, _)| *span);
    let mut merged: Vec<Merged> = Vec::new();
    for (span, item) in items {
        let extend = merged.last().is_some_and(|m| joins(m.span, span));
        if !extend {
            merged.push(Merged {
                span,
                absorbed: Vec::new(),
                rows: Vec::new(),
            });
        }
        let Some(current) = merged.last_mut() else {
            continue;
        };
        current.span = (current.span.0.min(span.0), current.span.1.max(span.1));
        match item {
            Item::Stored(s) => current.absorbed.push(s),
            Item::Row(row) => current.rows.push(row),
        }
    }
    merged
}

impl SessionAggregate {
    pub(crate) fn new(
        spec: &WindowAggregateSpec,
        schema: SchemaRef,
        max_parallelism: usize,
    ) -> Result<Self, String> {
        let accumulators = Accumulators::new(spec.aggr_exprs, spec.input_schema)?;
        accumulators.require_merge("a SESSION window (sessions merge when rows join them)")?;
        Ok(Self {
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

    fn unregister(&mut self, span: Span, key: &[u8]) {
        if let Some(keys) = self.pending.get_mut(&(span.1, span.0)) {
            keys.remove(key);
            if keys.is_empty() {
                self.pending.remove(&(span.1, span.0));
            }
        }
    }

    /// Emits every session complete at `watermark` and forgets it.
    fn fire(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let ready: Vec<(i64, i64)> = self
            .pending
            .keys()
            .take_while(|(end, _)| complete(*end, watermark))
            .copied()
            .collect();
        let mut items: Vec<(Span, GroupKey)> = Vec::new();
        for (end, start) in ready {
            if let Some(keys) = self.pending.remove(&(end, start)) {
                let mut keys: Vec<GroupKey> = keys.into_iter().collect();
                keys.sort_unstable();
                items.extend(keys.into_iter().map(|k| ((start, end), k)));
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        for chunk in items.chunks(super::BATCH_SIZE) {
            let state_keys: Vec<StateKey> = chunk
                .iter()
                .map(|(span, key)| state_key(key, namespace(*span)))
                .collect();
            let stored = self
                .backend
                .get_many(ACCUMULATORS, &state_keys)
                .map_err(|e| e.to_string())?;
            let mut parts = Vec::with_capacity(stored.len());
            for (group, state) in stored.iter().enumerate() {
                parts.push((
                    group,
                    state.as_deref().ok_or("a session's state is missing")?,
                ));
            }
            let results = self.accumulators.finish(chunk.len(), &parts)?;
            let keys = self.keys.decode(chunk.iter().map(|(_, k)| &k[2..]))?;
            let spans = chunk.iter().map(|(span, _)| *span).unzip();
            out.push(window_rows(
                &self.schema,
                &self.groups,
                spans,
                keys,
                results,
            )?);
            self.backend
                .delete_many(ACCUMULATORS, &state_keys)
                .map_err(|e| e.to_string())?;
        }
        // Take the emitted sessions off their keys' lists.
        let mut fired: HashMap<&[u8], Vec<Span>, FixedState> = HashMap::default();
        for (span, key) in &items {
            fired.entry(key.as_slice()).or_default().push(*span);
        }
        let list_keys: Vec<StateKey> = fired.keys().map(|k| state_key(k, Vec::new())).collect();
        let lists = self
            .backend
            .get_many(SESSIONS, &list_keys)
            .map_err(|e| e.to_string())?;
        let mut updated = Vec::new();
        let mut emptied = Vec::new();
        for ((list_key, list), spans) in list_keys.into_iter().zip(lists).zip(fired.values()) {
            let open: Vec<Span> = decode_sessions(list.as_deref().unwrap_or_default())?
                .into_iter()
                .filter(|s| !spans.contains(s))
                .collect();
            if open.is_empty() {
                emptied.push(list_key);
            } else {
                updated.push((list_key, encode_sessions(&open)));
            }
        }
        self.backend
            .delete_many(SESSIONS, &emptied)
            .map_err(|e| e.to_string())?;
        self.backend
            .put_many(SESSIONS, updated)
            .map_err(|e| e.to_string())
    }
}

impl Operator for SessionAggregate {
    fn name(&self) -> &'static str {
        "SessionAggregate"
    }

    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let OnTime {
            batch,
            starts,
            ends,
            late,
        } = on_time(batch, (self.start_column, self.end_column), self.watermark)?;
        self.late_rows += late;
        let spans: Vec<Span> = starts.into_iter().zip(ends).collect();
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let touched = self.keys.touched(&batch, None)?;
        let lists = self
            .backend
            .get_many(SESSIONS, &touched.keys)
            .map_err(|e| e.to_string())?;
        let mut windows_of_key: Vec<Vec<(Span, usize)>> = vec![Vec::new(); touched.keys.len()];
        for (row, &key) in touched.row_groups.iter().enumerate() {
            windows_of_key[key].push((spans[row], row));
        }
        // Every session the batch touches: its key, span, absorbed sessions and rows.
        let mut sessions: Vec<(usize, Merged)> = Vec::new();
        let mut lists_after = Vec::with_capacity(touched.keys.len());
        for (key, windows) in windows_of_key.into_iter().enumerate() {
            let stored = decode_sessions(lists[key].as_deref().unwrap_or_default())?;
            let merged = merge_key(&stored, windows);
            lists_after.push((
                touched.keys[key].clone(),
                encode_sessions(&merged.iter().map(|m| m.span).collect::<Vec<_>>()),
            ));
            sessions.extend(
                merged
                    .into_iter()
                    .filter(|m| !m.rows.is_empty())
                    .map(|m| (key, m)),
            );
        }
        // The stored states of every absorbed session, merged per new session.
        let mut absorbed_keys = Vec::new();
        let mut absorbed_groups = Vec::new();
        for (group, (key, session)) in sessions.iter().enumerate() {
            let key = &touched.keys[*key];
            for span in &session.absorbed {
                absorbed_groups.push(group);
                absorbed_keys.push(StateKey {
                    key_group: key.key_group,
                    key: key.key.clone(),
                    namespace: namespace(*span),
                });
            }
        }
        let absorbed_states = self
            .backend
            .get_many(ACCUMULATORS, &absorbed_keys)
            .map_err(|e| e.to_string())?;
        let mut parts = Vec::with_capacity(absorbed_states.len());
        for (group, state) in absorbed_groups.iter().zip(&absorbed_states) {
            parts.push((
                *group,
                state.as_deref().ok_or("a session's state is missing")?,
            ));
        }
        let mut before: Vec<Option<Vec<u8>>> = vec![None; sessions.len()];
        if !parts.is_empty() {
            let with_parts: Vec<usize> = {
                let mut g = absorbed_groups.clone();
                g.dedup();
                g
            };
            // Merge only the sessions that absorbed something; renumber them 0...
            let mut slot = vec![usize::MAX; sessions.len()];
            for (i, &g) in with_parts.iter().enumerate() {
                slot[g] = i;
            }
            let renumbered: Vec<(usize, &[u8])> =
                parts.iter().map(|(g, s)| (slot[*g], *s)).collect();
            let merged = self
                .accumulators
                .merge_states(with_parts.len(), &renumbered)?;
            for (state, &group) in merged.into_iter().zip(&with_parts) {
                before[group] = Some(state);
            }
        }
        // Accumulate the rows into their sessions.
        let mut row_groups = vec![0usize; batch.num_rows()];
        for (group, (_, session)) in sessions.iter().enumerate() {
            for &row in &session.rows {
                row_groups[row] = group;
            }
        }
        let states = self.accumulators.update(&batch, &row_groups, &before)?;
        let mut entries = Vec::with_capacity(sessions.len());
        let mut registrations = Vec::with_capacity(sessions.len());
        for ((key, session), state) in sessions.iter().zip(states) {
            let key = &touched.keys[*key];
            let timer_key = group_key(key.key_group, &key.key);
            for span in &session.absorbed {
                self.unregister(*span, &timer_key);
            }
            registrations.push((session.span, timer_key));
            entries.push((
                StateKey {
                    key_group: key.key_group,
                    key: key.key.clone(),
                    namespace: namespace(session.span),
                },
                state,
            ));
        }
        for (span, timer_key) in registrations {
            self.pending
                .entry((span.1, span.0))
                .or_default()
                .insert(timer_key);
        }
        // Absorbed sessions under another span are gone (`absorbed_keys` is in this order).
        let mut gone = Vec::new();
        let mut index = 0;
        for (_, session) in &sessions {
            for span in &session.absorbed {
                if *span != session.span {
                    gone.push(absorbed_keys[index].clone());
                }
                index += 1;
            }
        }
        self.backend
            .delete_many(ACCUMULATORS, &gone)
            .map_err(|e| e.to_string())?;
        self.backend
            .put_many(ACCUMULATORS, entries)
            .map_err(|e| e.to_string())?;
        self.backend
            .put_many(SESSIONS, lists_after)
            .map_err(|e| e.to_string())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
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
        self.processing_time
            .then_some(super::window_aggregate::PROCESSING_TIME_TICK)
    }

    fn on_timer(&mut self, now: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
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
        // Every open session of every key is pending.
        self.pending.clear();
        for (key, list) in self.backend.entries(SESSIONS).map_err(|e| e.to_string())? {
            for (start, end) in decode_sessions(&list)? {
                self.pending
                    .entry((end, start))
                    .or_default()
                    .insert(group_key(key.key_group, &key.key));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_that_touch_merge_with_each_other_and_with_stored_sessions() {
        let merged = merge_key(
            &[(0, 10), (50, 60)],
            vec![
                ((25, 35), 0),
                ((10, 20), 1),
                ((70, 80), 2),
                ((35, 45), 3),
                ((44, 52), 4),
            ],
        );
        let spans: Vec<Span> = merged.iter().map(|m| m.span).collect();
        assert_eq!(spans, [(0, 20), (25, 60), (70, 80)]);
        assert_eq!(merged[0].absorbed, [(0, 10)]);
        assert_eq!(merged[0].rows, [1]);
        assert_eq!(merged[1].absorbed, [(50, 60)]);
        assert_eq!(merged[1].rows, [0, 3, 4]);
        assert!(merged[2].absorbed.is_empty());
    }
}
