//! Hash aggregation: `GROUP BY` with DataFusion's built-in aggregates and Wasm aggregates.
//!
//! Every group's accumulators live in the keyed state backend, as in Flink: one entry per group
//! key, addressed by (key group, key), whose value is one row (Arrow's row format) holding every
//! aggregate's state: a built-in's state fields, a Wasm aggregate's state bytes. Per batch, the
//! states of the keys the batch touches are read in one `get_many`, merged into fresh DataFusion
//! accumulators numbered 0.. for those keys, updated with the batch (one call per aggregate,
//! one Wasm call per Wasm aggregate), and written back in one `put_many`. The operator itself
//! keeps nothing between batches, so a backend that spills (RocksDB) bounds its memory.
//!
//! In batch mode (the only mode so far) results are emitted at end of input, in key order.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::{cast, take};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::DFSchemaRef;
use datafusion_common::hash_utils::{RandomState, create_hashes};
use datafusion_expr::Expr;
use datafusion_physical_expr::PhysicalExpr;
use foldhash::fast::FixedState;

use super::accumulators::Accumulators;
use super::changelog::{RowKind, row_kind_column, row_kinds, with_row_kinds};
use super::operators::{Operator, evaluate, make_batch, physical};
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};

/// The state holding each group's accumulators.
const ACCUMULATORS: StateName = 0;

/// How a hash aggregation runs (from its plan node and the job's mode).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AggregateMode {
    /// The input is a changelog.
    pub updating_input: bool,
    /// Streaming mode: emit each batch's changes.
    pub emit_changes: bool,
    /// `'table.exec.state.ttl'`.
    pub state_ttl_millis: Option<u64>,
}

pub(crate) struct HashAggregate {
    keys: GroupKeys,
    accumulators: Accumulators,
    backend: Box<dyn KeyedStateBackend>,
    schema: SchemaRef,
    /// Streaming mode: every batch's effect on the result goes out as a changelog (else the
    /// result goes out once, at the end of input).
    emit_changes: bool,
    /// The input is a changelog: groups count their rows, and one whose rows are all taken
    /// back is deleted (`-D`).
    updating_input: bool,
    /// `'table.exec.state.ttl'`: a group untouched this long (wall clock) leaves state, as in
    /// Flink without a retraction (a later row starts it afresh).
    state_ttl_millis: Option<u64>,
    /// With a TTL: when each group expires, and the groups by expiry. (Timers move into the
    /// state backend with checkpoints.)
    expiry_of: HashMap<StateKey, i64>,
    expiring: std::collections::BTreeMap<i64, Vec<StateKey>>,
}

/// The groups one batch touches: their state keys, and each row's index among them.
pub(crate) struct Touched {
    pub keys: Vec<StateKey>,
    pub row_groups: Vec<usize>,
}

/// An aggregation's group keys: evaluated per batch, encoded as the backend's keys (Arrow's row
/// format) in the key group the hash edge routed them by, and decoded back.
pub(crate) struct GroupKeys {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    max_parallelism: usize,
}

impl GroupKeys {
    pub(crate) fn new(
        exprs: &[Expr],
        input_schema: &DFSchemaRef,
        max_parallelism: usize,
    ) -> Result<Self, String> {
        let exprs = exprs
            .iter()
            .map(|e| physical(e, input_schema))
            .collect::<Result<Vec<_>, _>>()?;
        let types = exprs
            .iter()
            .map(|k| {
                k.data_type(input_schema.as_arrow())
                    .map(SortField::new)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            exprs,
            converter: RowConverter::new(types).map_err(|e| e.to_string())?,
            max_parallelism: max_parallelism.max(1),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// The distinct (key, namespace) pairs of `batch`, in order of first appearance; a row's
    /// namespace is `namespaces[row]` (empty without).
    pub(crate) fn touched(
        &self,
        batch: &RecordBatch,
        namespaces: Option<&[Vec<u8>]>,
    ) -> Result<Touched, String> {
        let rows = batch.num_rows();
        let namespace = |row: usize| namespaces.map_or(&[][..], |n| n[row].as_slice());
        if self.exprs.is_empty() && namespaces.is_none() {
            return Ok(Touched {
                keys: vec![state_key(0, &[], Vec::new())],
                row_groups: vec![0; rows],
            });
        }
        let columns = self
            .exprs
            .iter()
            .map(|k| evaluate(k, batch))
            .collect::<Result<Vec<_>, _>>()?;
        let encoded = if columns.is_empty() {
            None
        } else {
            Some(
                self.converter
                    .convert_columns(&columns)
                    .map_err(|e| e.to_string())?,
            )
        };
        // The same hash the hash edge used, so an entry's key group is the one that routed it.
        let mut hashes = vec![0u64; rows];
        if !columns.is_empty() {
            create_hashes(&columns, &RandomState::with_seed(0), &mut hashes)
                .map_err(|e| format!("cannot hash a key: {e}"))?;
        }
        let mut keys = Vec::new();
        let mut row_groups = Vec::with_capacity(rows);
        if let (Some(encoded), None) = (&encoded, namespaces) {
            // Keys alone (the common case): hash the key bytes only.
            let mut index_of: HashMap<&[u8], usize, FixedState> =
                HashMap::with_capacity_and_hasher(rows.min(1024), FixedState::default());
            for (row, hash) in encoded.iter().zip(&hashes) {
                let bytes = row.data();
                let index = *index_of.entry(bytes).or_insert_with(|| {
                    let key_group = (*hash % self.max_parallelism as u64) as u16;
                    keys.push(state_key(key_group, bytes, Vec::new()));
                    keys.len() - 1
                });
                row_groups.push(index);
            }
            return Ok(Touched { keys, row_groups });
        }
        let mut index_of: HashMap<(&[u8], &[u8]), usize, FixedState> =
            HashMap::with_capacity_and_hasher(rows.min(1024), FixedState::default());
        for (row, hash) in hashes.iter().enumerate() {
            let bytes = encoded.as_ref().map_or(&[][..], |e| e.row(row).data());
            let index = *index_of.entry((bytes, namespace(row))).or_insert_with(|| {
                let key_group = (*hash % self.max_parallelism as u64) as u16;
                keys.push(state_key(key_group, bytes, namespace(row).to_vec()));
                keys.len() - 1
            });
            row_groups.push(index);
        }
        Ok(Touched { keys, row_groups })
    }

    /// The key columns of encoded keys.
    pub(crate) fn decode<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>, String> {
        if self.exprs.is_empty() {
            return Ok(Vec::new());
        }
        let parser = self.converter.parser();
        let rows: Vec<_> = keys.map(|k| parser.parse(k)).collect();
        self.converter
            .convert_rows(rows)
            .map_err(|e| format!("a stored group key is corrupt: {e}"))
    }
}

impl HashAggregate {
    pub(crate) fn new(
        group_exprs: &[Expr],
        aggr_exprs: &[Expr],
        input_schema: &DFSchemaRef,
        schema: SchemaRef,
        max_parallelism: usize,
        mode: AggregateMode,
    ) -> Result<Self, String> {
        let AggregateMode {
            updating_input,
            emit_changes,
            state_ttl_millis,
        } = mode;
        Ok(Self {
            keys: GroupKeys::new(group_exprs, input_schema, max_parallelism)?,
            accumulators: if updating_input {
                Accumulators::retracting(aggr_exprs, input_schema)?
            } else {
                Accumulators::new(aggr_exprs, input_schema)?
            },
            updating_input,
            backend: Box::new(MemoryStateBackend::default()),
            schema,
            emit_changes,
            state_ttl_millis,
            expiry_of: HashMap::new(),
            expiring: std::collections::BTreeMap::new(),
        })
    }

    /// The result rows of the groups `keys` whose states are `states` (one part each).
    fn results(&mut self, keys: &[&StateKey], states: &[&[u8]]) -> Result<Vec<ArrayRef>, String> {
        let mut columns = self.keys.decode(keys.iter().map(|k| k.key.as_slice()))?;
        let parts: Vec<(usize, &[u8])> = states.iter().copied().enumerate().collect();
        columns.extend(self.accumulators.finish(keys.len(), &parts)?);
        Ok(columns)
    }

    /// The changelog of one batch: for each group it touched, `-U` (its result before) and
    /// `+U` (after) when the result changed, `+I` for a new group, `-D` for a group whose rows
    /// were all taken back (`gone`).
    fn changes(
        &mut self,
        keys: &[StateKey],
        before: &[Option<Vec<u8>>],
        after: &[Vec<u8>],
        gone: &[bool],
    ) -> Result<Option<RecordBatch>, String> {
        let old: Vec<usize> = (0..keys.len()).filter(|&g| before[g].is_some()).collect();
        let old_keys: Vec<&StateKey> = old.iter().map(|&g| &keys[g]).collect();
        let old_states: Vec<&[u8]> = old.iter().filter_map(|&g| before[g].as_deref()).collect();
        let old_rows = self.results(&old_keys, &old_states)?;
        let all_keys: Vec<&StateKey> = keys.iter().collect();
        let all_states: Vec<&[u8]> = after.iter().map(Vec::as_slice).collect();
        let new_rows = self.results(&all_keys, &all_states)?;
        // Which old groups' results changed (an unchanged result sends nothing, as in Flink).
        let new_of_old: Vec<ArrayRef> = new_rows
            .iter()
            .map(|c| {
                take(
                    c,
                    &UInt32Array::from_iter_values(old.iter().map(|&g| g as u32)),
                    None,
                )
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let mut changed = vec![false; old.len()];
        for (before, after) in old_rows.iter().zip(&new_of_old) {
            let differs = distinct(before, after).map_err(|e| e.to_string())?;
            for (slot, flag) in changed.iter_mut().enumerate() {
                *flag |= differs.value(slot);
            }
        }
        let mut is_old = vec![false; keys.len()];
        for &g in &old {
            is_old[g] = true;
        }
        // Old rows out: -D for groups gone, -U for groups changed.
        let mut retract = Vec::new();
        let mut retract_kinds = Vec::new();
        let mut emit = Vec::new();
        for (slot, &group) in old.iter().enumerate() {
            if gone[group] {
                retract.push(slot as u32);
                retract_kinds.push(RowKind::Delete);
            } else if changed[slot] {
                retract.push(slot as u32);
                retract_kinds.push(RowKind::UpdateBefore);
                emit.push(group as u32);
            }
        }
        let updates = emit.len();
        emit.extend((0..keys.len() as u32).filter(|&g| !is_old[g as usize] && !gone[g as usize]));
        if retract.is_empty() && emit.is_empty() {
            return Ok(None);
        }
        let inserted = emit.len() - updates;
        let retract = UInt32Array::from(retract);
        let emit = UInt32Array::from(emit);
        let mut columns = Vec::with_capacity(new_rows.len() + 1);
        for (before, after) in old_rows.iter().zip(&new_rows) {
            let before = take(before, &retract, None).map_err(|e| e.to_string())?;
            let after = take(after, &emit, None).map_err(|e| e.to_string())?;
            columns.push(
                arrow::compute::concat(&[before.as_ref(), after.as_ref()])
                    .map_err(|e| e.to_string())?,
            );
        }
        let rows = retract.len() + emit.len();
        let kinds = retract_kinds
            .into_iter()
            .chain(std::iter::repeat_n(RowKind::UpdateAfter, updates))
            .chain(std::iter::repeat_n(RowKind::Insert, inserted));
        let data = output_batch(&self.schema, columns, rows)?;
        let mut columns = data.columns().to_vec();
        columns.push(row_kind_column(kinds));
        make_batch(&with_row_kinds(&self.schema), columns, rows).map(Some)
    }

    /// Result columns for one chunk of stored groups.
    fn finish_chunk(&mut self, entries: &[(StateKey, Vec<u8>)]) -> Result<RecordBatch, String> {
        let groups = entries.len();
        let mut columns = self
            .keys
            .decode(entries.iter().map(|(k, _)| k.key.as_slice()))?;
        let parts: Vec<(usize, &[u8])> = entries
            .iter()
            .enumerate()
            .map(|(group, (_, state))| (group, state.as_slice()))
            .collect();
        columns.extend(self.accumulators.finish(groups, &parts)?);
        self.output(columns, groups)
    }

    fn output(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, String> {
        output_batch(&self.schema, columns, rows)
    }
}

impl Operator for HashAggregate {
    fn name(&self) -> &'static str {
        "Aggregate"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if row_kinds(&batch).is_some() && !self.updating_input {
            return Err("internal error: an updating input the plan did not expect".into());
        }
        let touched = self.keys.touched(&batch, None)?;
        let stored = self
            .backend
            .get_many(ACCUMULATORS, &touched.keys)
            .map_err(|e| e.to_string())?;
        let states = self
            .accumulators
            .update(&batch, &touched.row_groups, &stored)?;
        // Over an updating input, a group whose rows were all taken back is gone.
        let gone: Vec<bool> = if self.updating_input {
            let refs: Vec<&[u8]> = states.iter().map(Vec::as_slice).collect();
            self.accumulators
                .row_counts(&refs)?
                .into_iter()
                .map(|count| count <= 0)
                .collect()
        } else {
            vec![false; states.len()]
        };
        if self.emit_changes
            && let Some(changes) = self.changes(&touched.keys, &stored, &states, &gone)?
        {
            out.push(changes);
        }
        let mut deleted = Vec::new();
        let mut entries = Vec::with_capacity(states.len());
        for ((key, state), gone) in touched.keys.into_iter().zip(states).zip(gone) {
            if gone {
                deleted.push(key);
            } else {
                entries.push((key, state));
            }
        }
        if let Some(ttl) = self.state_ttl_millis {
            let at = super::now_millis().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
            for (key, _) in &entries {
                self.expiry_of.insert(key.clone(), at);
                self.expiring.entry(at).or_default().push(key.clone());
            }
        }
        self.backend
            .delete_many(ACCUMULATORS, &deleted)
            .map_err(|e| e.to_string())?;
        self.backend
            .put_many(ACCUMULATORS, entries)
            .map_err(|e| e.to_string())
    }

    fn timer_interval(&self) -> Option<std::time::Duration> {
        self.state_ttl_millis
            .map(|ttl| std::time::Duration::from_millis((ttl / 4).clamp(10, 1_000)))
    }

    fn on_timer(&mut self, now: i64, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let due: Vec<i64> = self.expiring.range(..=now).map(|(at, _)| *at).collect();
        let mut expired = Vec::new();
        for at in due {
            for key in self.expiring.remove(&at).unwrap_or_default() {
                // Only if not touched since (a later touch moved its expiry).
                if self.expiry_of.get(&key) == Some(&at) {
                    self.expiry_of.remove(&key);
                    expired.push(key);
                }
            }
        }
        self.backend
            .delete_many(ACCUMULATORS, &expired)
            .map_err(|e| e.to_string())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let entries = self
            .backend
            .entries(ACCUMULATORS)
            .map_err(|e| e.to_string())?;
        if entries.is_empty() {
            // A global aggregate over no rows still has its one row (COUNT(*) = 0); a grouped
            // one has none. A stream gives the same answer, as an insert.
            if self.keys.is_empty() {
                let columns = self.accumulators.finish_empty()?;
                let row = self.output(columns, 1)?;
                out.push(if self.emit_changes {
                    let mut columns = row.columns().to_vec();
                    columns.push(row_kind_column([RowKind::Insert]));
                    make_batch(&with_row_kinds(&self.schema), columns, 1)?
                } else {
                    row
                });
            }
            return Ok(());
        }
        if self.emit_changes {
            // Every change has gone out already.
            return Ok(());
        }
        for chunk in entries.chunks(super::BATCH_SIZE) {
            out.push(self.finish_chunk(chunk)?);
        }
        Ok(())
    }

    fn state_backend(&mut self) -> Option<&mut Box<dyn KeyedStateBackend>> {
        Some(&mut self.backend)
    }

    fn on_restore(&mut self, _watermark: Option<i64>) -> Result<(), String> {
        // A TTL counts from the restore for every restored group (the time of their last
        // access is not kept: at worst a group lives one TTL longer).
        if let Some(ttl) = self.state_ttl_millis {
            let at = super::now_millis().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
            let keys: Vec<StateKey> = self
                .backend
                .entries(ACCUMULATORS)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            for key in &keys {
                self.expiry_of.insert(key.clone(), at);
            }
            self.expiring.insert(at, keys);
        }
        Ok(())
    }
}

/// A batch of `schema` (casting where an aggregate's type differs from the plan's).
pub(crate) fn output_batch(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, String> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                cast(&c, f.data_type()).map_err(|e| e.to_string())
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    make_batch(schema, columns, rows)
}

fn state_key(key_group: u16, key: &[u8], namespace: Vec<u8>) -> StateKey {
    StateKey {
        key_group,
        key: key.to_vec(),
        namespace,
    }
}
