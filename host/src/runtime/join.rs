//! Regular equi-joins (inner and left), as Flink's streaming join: both inputs' rows stay in
//! the state backend under their join key, and every batch from one side probes the other
//! side's rows of the keys it touches (one `get_many`), then adds its own (one `put_many`).
//!
//! Rows are kept in Arrow's row format, one state entry per key holding the list. For a left
//! join each left row also keeps how many right rows matched it: a left row without a match
//! comes out padded with nulls (in batch mode at the end of input; in streaming mode at once,
//! and retracted with `-D` when its first match arrives). Rows whose key has a null never match
//! (unless the join says nulls are equal).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array, new_null_array};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::DFSchemaRef;
use datafusion_expr::Expr;
use datafusion_physical_expr::PhysicalExpr;

use super::aggregate::{GroupKeys, Touched};
use super::changelog::{RowKind, row_kind_column, row_kinds, with_row_kinds};
use super::operators::{Operator, evaluate, make_batch, physical};
use crate::plan::IntervalBounds;
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};

/// Per join key: the left rows (each with its match count).
const LEFT_ROWS: StateName = 0;
/// Per join key: the right rows.
const RIGHT_ROWS: StateName = 1;

/// What a join is made of (its plan node's fields).
pub(crate) struct JoinSpec<'a> {
    pub left_join: bool,
    pub semi: bool,
    pub left_keys: &'a [Expr],
    pub right_keys: &'a [Expr],
    pub nulls_equal: bool,
    pub filter: Option<&'a Expr>,
    pub interval: Option<IntervalBounds>,
    pub window_ends: Option<(usize, usize)>,
    pub state_ttl_millis: Option<u64>,
    pub left_schema: &'a DFSchemaRef,
    pub right_schema: &'a DFSchemaRef,
    pub output_schema: &'a DFSchemaRef,
}

/// One side of the join.
struct Side {
    keys: GroupKeys,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    rows: RowConverter,
    width: usize,
}

impl Side {
    fn new(keys: &[Expr], schema: &DFSchemaRef, max_parallelism: usize) -> Result<Self, String> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            keys: GroupKeys::new(keys, schema, max_parallelism)?,
            key_exprs: keys
                .iter()
                .map(|k| physical(k, schema))
                .collect::<Result<_, _>>()?,
            rows: RowConverter::new(fields).map_err(|e| format!("cannot keep these rows: {e}"))?,
            width: schema.fields().len(),
        })
    }

    /// Which rows of `batch` have a null in their key.
    fn null_keys(&self, batch: &RecordBatch) -> Result<Vec<bool>, String> {
        let mut nulls = vec![false; batch.num_rows()];
        for expr in &self.key_exprs {
            let column = evaluate(expr, batch)?;
            if column.null_count() > 0 {
                for (row, null) in nulls.iter_mut().enumerate() {
                    *null |= column.is_null(row);
                }
            }
        }
        Ok(nulls)
    }

    /// Stored rows back as columns.
    fn decode<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>, String> {
        let parser = self.rows.parser();
        let parsed: Vec<_> = rows.map(|r| parser.parse(r)).collect();
        self.rows
            .convert_rows(parsed)
            .map_err(|e| format!("a stored join row is corrupt: {e}"))
    }
}

/// A stored row: how many rows of the other side it matched (left rows of a left join only),
/// its bytes, and (interval joins) when it leaves state, in event time (ms).
type Kept = (u32, Vec<u8>, i64);

fn encode(rows: &[Kept]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(rows.iter().map(|(_, r, _)| 16 + r.len()).sum());
    for (matches, row, expiry) in rows {
        bytes.extend_from_slice(&matches.to_le_bytes());
        bytes.extend_from_slice(&expiry.to_le_bytes());
        bytes.extend_from_slice(&(row.len() as u32).to_le_bytes());
        bytes.extend_from_slice(row);
    }
    bytes
}

fn decode(mut bytes: &[u8]) -> Result<Vec<Kept>, String> {
    let corrupt = || "a stored join list is corrupt".to_string();
    let mut rows = Vec::new();
    while !bytes.is_empty() {
        let (matches, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let (expiry, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let (length, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let (row, rest) = rest
            .split_at_checked(u32::from_le_bytes(*length) as usize)
            .ok_or_else(corrupt)?;
        rows.push((
            u32::from_le_bytes(*matches),
            row.to_vec(),
            i64::from_le_bytes(*expiry),
        ));
        bytes = rest;
    }
    Ok(rows)
}

pub(crate) struct Join {
    left_join: bool,
    /// Left semi join: each left row once, at its first match, without the right columns.
    semi: bool,
    nulls_equal: bool,
    left: Side,
    right: Side,
    filter: Option<Arc<dyn PhysicalExpr>>,
    backend: Box<dyn KeyedStateBackend>,
    /// The output's schema (a semi join's is the left side's).
    schema: SchemaRef,
    /// Both sides' columns: what the filter reads.
    joined_schema: SchemaRef,
    emit_changes: bool,
    /// Interval and window joins: per side, the time column a row's expiry comes from and
    /// the shift to add (left, right).
    expiry: Option<[(usize, i64); 2]>,
    /// `'table.exec.state.ttl'` (regular joins): rows leave state this long after they came,
    /// by the wall clock.
    state_ttl_millis: Option<u64>,
    /// Interval and window joins (event time), or a TTL (processing time): when rows leave state (event time, ms), and the (side, key) lists that
    /// hold them. They move into the state backend with checkpoints.
    expiring: BTreeMap<i64, HashSet<(u8, StateKey)>>,
}

/// Joined rows on their way out: which left row (of the batch or of state) and which right row.
struct Pairs {
    left: Vec<ArrayRef>,
    right: Vec<ArrayRef>,
}

impl Join {
    pub(crate) fn new(
        spec: &JoinSpec,
        schema: SchemaRef,
        max_parallelism: usize,
        emit_changes: bool,
    ) -> Result<Self, String> {
        Ok(Self {
            left_join: spec.left_join,
            semi: spec.semi,
            nulls_equal: spec.nulls_equal,
            left: Side::new(spec.left_keys, spec.left_schema, max_parallelism)?,
            right: Side::new(spec.right_keys, spec.right_schema, max_parallelism)?,
            filter: match spec.filter {
                None => None,
                // The filter reads both sides, which a semi join's output lacks.
                Some(f) if spec.semi => {
                    let both = spec
                        .left_schema
                        .join(spec.right_schema)
                        .map_err(|e| e.to_string())?;
                    Some(physical(f, &Arc::new(both))?)
                }
                Some(f) => Some(physical(f, spec.output_schema)?),
            },
            backend: Box::new(MemoryStateBackend::default()),
            joined_schema: if spec.semi {
                let mut fields: Vec<_> = spec.left_schema.fields().iter().cloned().collect();
                fields.extend(spec.right_schema.fields().iter().cloned());
                Arc::new(arrow::datatypes::Schema::new(fields))
            } else {
                schema.clone()
            },
            schema,
            emit_changes,
            expiry: match (spec.interval, spec.window_ends) {
                // A left row once no on-time right row can match it (`t_l - lower`), a right
                // row once no left row can (`t_r + upper`).
                (Some(b), _) => Some([
                    (b.left_time, -b.lower_millis),
                    (b.right_time, b.upper_millis),
                ]),
                // A row once its window has fired.
                (None, Some((left, right))) => Some([(left, -1), (right, -1)]),
                (None, None) => None,
            },
            expiring: BTreeMap::new(),
            state_ttl_millis: spec.state_ttl_millis,
        })
    }

    /// When each row of `batch` (of `side`: 0 left, 1 right) leaves an interval or window
    /// join's state; `i64::MAX` (never) for other joins.
    fn expiries(&self, batch: &RecordBatch, side: u8) -> Result<Vec<i64>, String> {
        let Some(expiry) = self.expiry else {
            let at = match self.state_ttl_millis {
                Some(ttl) => {
                    super::now_millis().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))
                }
                None => i64::MAX,
            };
            return Ok(vec![at; batch.num_rows()]);
        };
        let (column, shift) = expiry[usize::from(side)];
        let times = batch
            .columns()
            .get(column)
            .ok_or("the join's time column is missing")?;
        let name = batch.schema().field(column).name().clone();
        Ok(super::window::millis(times, &name)?
            .into_iter()
            .map(|t| t.saturating_add(shift))
            .collect())
    }

    fn register(&mut self, side: u8, keys: &[StateKey], row_groups: &[usize], expiries: &[i64]) {
        if self.expiry.is_none() && self.state_ttl_millis.is_none() {
            return;
        }
        for (row, &group) in row_groups.iter().enumerate() {
            self.expiring
                .entry(expiries[row])
                .or_default()
                .insert((side, keys[group].clone()));
        }
    }

    /// Interval joins: drops the rows no future row can match; a left join's unmatched left
    /// rows among them come out padded.
    fn expire(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let due: Vec<i64> = self
            .expiring
            .range(..=watermark)
            .map(|(expiry, _)| *expiry)
            .collect();
        let mut lists: HashSet<(u8, StateKey)> = HashSet::new();
        for expiry in due {
            if let Some(keys) = self.expiring.remove(&expiry) {
                lists.extend(keys);
            }
        }
        let mut unmatched = Vec::new();
        for side in [0u8, 1] {
            let state = if side == 0 { LEFT_ROWS } else { RIGHT_ROWS };
            let keys: Vec<StateKey> = lists
                .iter()
                .filter(|(s, _)| *s == side)
                .map(|(_, key)| key.clone())
                .collect();
            if keys.is_empty() {
                continue;
            }
            let stored = self
                .backend
                .get_many(state, &keys)
                .map_err(|e| e.to_string())?;
            let mut kept = Vec::new();
            let mut emptied = Vec::new();
            for (key, list) in keys.into_iter().zip(stored) {
                let Some(list) = list else { continue };
                let (gone, stay): (Vec<Kept>, Vec<Kept>) = decode(&list)?
                    .into_iter()
                    .partition(|(_, _, expiry)| *expiry <= watermark);
                // (A TTL's expiry emits nothing: the padded row went out when the row came.)
                if side == 0 && self.left_join && self.expiry.is_some() {
                    unmatched.extend(
                        gone.into_iter()
                            .filter(|(matches, _, _)| *matches == 0)
                            .map(|(_, row, _)| row),
                    );
                }
                if stay.is_empty() {
                    emptied.push(key);
                } else {
                    kept.push((key, encode(&stay)));
                }
            }
            self.backend
                .delete_many(state, &emptied)
                .map_err(|e| e.to_string())?;
            self.backend
                .put_many(state, kept)
                .map_err(|e| e.to_string())?;
        }
        for chunk in unmatched.chunks(super::BATCH_SIZE) {
            let rows = self.left.decode(chunk.iter().map(Vec::as_slice))?;
            out.push(self.padded(rows, chunk.len())?);
        }
        Ok(())
    }

    /// The stored rows of `keys` in `state` (empty where none).
    fn lists(&self, state: StateName, keys: &[StateKey]) -> Result<Vec<Vec<Kept>>, String> {
        self.backend
            .get_many(state, keys)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|s| s.as_deref().map_or(Ok(Vec::new()), decode))
            .collect()
    }

    /// Adds a batch's rows to its side's state (`side` 0 left, 1 right), each with how many
    /// rows of the other side it matched so far.
    fn keep(
        &mut self,
        side: u8,
        batch: &RecordBatch,
        touched: Touched,
        matches: &[u32],
    ) -> Result<(), String> {
        let (rows, state) = if side == 0 {
            (&self.left.rows, LEFT_ROWS)
        } else {
            (&self.right.rows, RIGHT_ROWS)
        };
        let encoded = rows
            .convert_columns(batch.columns())
            .map_err(|e| e.to_string())?;
        let mut lists = self.lists(state, &touched.keys)?;
        let expiries = self.expiries(batch, side)?;
        for (row, &group) in touched.row_groups.iter().enumerate() {
            lists[group].push((
                matches.get(row).copied().unwrap_or(0),
                encoded.row(row).as_ref().to_vec(),
                expiries[row],
            ));
        }
        self.register(side, &touched.keys, &touched.row_groups, &expiries);
        let entries = touched
            .keys
            .into_iter()
            .zip(&lists)
            .map(|(key, list)| (key, encode(list)))
            .collect();
        self.backend
            .put_many(state, entries)
            .map_err(|e| e.to_string())
    }

    /// A semi join's output: the left rows at `indices` of `columns`.
    fn semi_rows(
        &self,
        columns: &[ArrayRef],
        indices: Vec<u32>,
    ) -> Result<Option<RecordBatch>, String> {
        if indices.is_empty() {
            return Ok(None);
        }
        let indices = UInt32Array::from(indices);
        let rows = indices.len();
        let batch = make_batch(&self.schema, take_all(columns, &indices)?, rows)?;
        self.with_kind(batch, RowKind::Insert).map(Some)
    }

    /// The joined rows of `pairs` that pass the join's filter, and which of them passed.
    fn joined(&self, pairs: Pairs, rows: usize) -> Result<(RecordBatch, Vec<bool>), String> {
        let mut columns = pairs.left;
        columns.extend(pairs.right);
        let batch = make_batch(&self.joined_schema, columns, rows)?;
        let Some(filter) = &self.filter else {
            return Ok((batch, vec![true; rows]));
        };
        let mask = evaluate(filter, &batch)?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or("the join condition is not BOOLEAN")?;
        let passed: Vec<bool> = (0..rows)
            .map(|i| mask.is_valid(i) && mask.value(i))
            .collect();
        let kept = filter_record_batch(&batch, &BooleanArray::from(passed.clone()))
            .map_err(|e| e.to_string())?;
        Ok((kept, passed))
    }

    /// Left rows padded with nulls for the right side.
    fn padded(&self, left: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, String> {
        let mut columns = left;
        for field in self.schema.fields().iter().skip(self.left.width) {
            columns.push(new_null_array(field.data_type(), rows));
        }
        make_batch(&self.schema, columns, rows)
    }

    /// `batch` with the row kind `kind` on every row (streaming), or as is.
    fn with_kind(&self, batch: RecordBatch, kind: RowKind) -> Result<RecordBatch, String> {
        if !self.emit_changes {
            return Ok(batch);
        }
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        columns.push(row_kind_column(std::iter::repeat_n(kind, rows)));
        make_batch(&with_row_kinds(&self.schema), columns, rows)
    }

    fn check_key(&self, nulls: &[bool], row: usize) -> bool {
        self.nulls_equal || !nulls[row]
    }

    /// A left batch: probe the right rows, emit matches (and, streaming, padded rows for the
    /// unmatched of a left join), keep the left rows.
    fn on_left(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let touched = self.left.keys.touched(&batch, None)?;
        let nulls = self.left.null_keys(&batch)?;
        let right_lists = self.lists(RIGHT_ROWS, &touched.keys)?;
        let mut left_rows = Vec::new();
        let mut right_rows: Vec<&[u8]> = Vec::new();
        for (row, &group) in touched.row_groups.iter().enumerate() {
            if !self.check_key(&nulls, row) {
                continue;
            }
            for (_, right, _) in &right_lists[group] {
                left_rows.push(row as u32);
                right_rows.push(right);
            }
        }
        let mut matches = vec![0u32; batch.num_rows()];
        if !left_rows.is_empty() {
            let indices = UInt32Array::from(left_rows.clone());
            let pairs = Pairs {
                left: take_all(batch.columns(), &indices)?,
                right: self.right.decode(right_rows.into_iter())?,
            };
            let (joined, passed) = self.joined(pairs, left_rows.len())?;
            for (row, passed) in left_rows.iter().zip(&passed) {
                matches[*row as usize] += u32::from(*passed);
            }
            if self.semi {
                let matched = (0..batch.num_rows() as u32)
                    .filter(|&r| matches[r as usize] > 0)
                    .collect();
                out.extend(self.semi_rows(batch.columns(), matched)?);
            } else {
                out.push(self.with_kind(joined, RowKind::Insert)?);
            }
        }
        if self.left_join && self.emit_changes && self.expiry.is_none() {
            let unmatched: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&r| matches[r as usize] == 0)
                .collect();
            if !unmatched.is_empty() {
                let indices = UInt32Array::from(unmatched);
                let padded = self.padded(take_all(batch.columns(), &indices)?, indices.len())?;
                out.push(self.with_kind(padded, RowKind::Insert)?);
            }
        }
        // Keep the rows (a null key never matches: a left join's is emitted, padded, at once
        // in streaming mode and at the end in batch mode, like any unmatched row).
        self.keep(0, &batch, touched, &matches)
    }

    /// A right batch: probe the left rows, emit matches (a left join's first match of a left
    /// row retracts its padded row first, in streaming mode), keep the right rows.
    fn on_right(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let touched = self.right.keys.touched(&batch, None)?;
        let nulls = self.right.null_keys(&batch)?;
        let mut left_lists = self.lists(LEFT_ROWS, &touched.keys)?;
        // (group, position in its left list, right row)
        let mut probes: Vec<(usize, usize, u32)> = Vec::new();
        for (row, &group) in touched.row_groups.iter().enumerate() {
            if !self.check_key(&nulls, row) {
                continue;
            }
            for position in 0..left_lists[group].len() {
                probes.push((group, position, row as u32));
            }
        }
        if !probes.is_empty() {
            let left_rows: Vec<&[u8]> = probes
                .iter()
                .map(|(g, p, _)| left_lists[*g][*p].1.as_slice())
                .collect();
            let right_indices = UInt32Array::from_iter_values(probes.iter().map(|(_, _, r)| *r));
            let pairs = Pairs {
                left: self.left.decode(left_rows.into_iter())?,
                right: take_all(batch.columns(), &right_indices)?,
            };
            let (joined, passed) = self.joined(pairs, probes.len())?;
            // Left rows that match for the first time lose their padded row.
            let mut first_matches: Vec<(usize, usize)> = Vec::new();
            for ((group, position, _), passed) in probes.iter().zip(&passed) {
                if !passed {
                    continue;
                }
                let kept = &mut left_lists[*group][*position];
                if kept.0 == 0 {
                    first_matches.push((*group, *position));
                }
                kept.0 = kept.0.saturating_add(1);
            }
            if self.semi {
                let rows = self.left.decode(
                    first_matches
                        .iter()
                        .map(|(g, p)| left_lists[*g][*p].1.as_slice()),
                )?;
                let all: Vec<u32> = (0..first_matches.len() as u32).collect();
                out.extend(self.semi_rows(&rows, all)?);
            } else if self.left_join && self.emit_changes && !first_matches.is_empty() {
                let rows = self.left.decode(
                    first_matches
                        .iter()
                        .map(|(g, p)| left_lists[*g][*p].1.as_slice()),
                )?;
                let padded = self.padded(rows, first_matches.len())?;
                out.push(self.with_kind(padded, RowKind::Delete)?);
            }
            if !self.semi {
                out.push(self.with_kind(joined, RowKind::Insert)?);
            }
            if self.left_join || self.semi {
                let entries = touched
                    .keys
                    .iter()
                    .zip(&left_lists)
                    .filter(|(_, list)| !list.is_empty())
                    .map(|(key, list)| (key.clone(), encode(list)))
                    .collect();
                self.backend
                    .put_many(LEFT_ROWS, entries)
                    .map_err(|e| e.to_string())?;
            }
        }
        self.keep(1, &batch, touched, &[])
    }
}

fn take_all(columns: &[ArrayRef], indices: &UInt32Array) -> Result<Vec<ArrayRef>, String> {
    columns
        .iter()
        .map(|c| take(c, indices, None))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

impl Operator for Join {
    fn name(&self) -> &'static str {
        "Join"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        self.on_input(0, batch, out)
    }

    fn on_input(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if row_kinds(&batch).is_some() {
            return Err("a join over an updating input is not supported yet".into());
        }
        if input == 0 {
            self.on_left(batch, out)
        } else {
            self.on_right(batch, out)
        }
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.expiry.is_some() {
            self.expire(watermark, out)?;
        }
        Ok(())
    }

    fn timer_interval(&self) -> Option<std::time::Duration> {
        // Look at the clock a few times per TTL (at most every second).
        self.state_ttl_millis
            .map(|ttl| std::time::Duration::from_millis((ttl / 4).clamp(10, 1_000)))
    }

    fn on_timer(&mut self, now: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.state_ttl_millis.is_some() {
            self.expire(now, out)?;
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.expiry.is_some() {
            // The end of time has expired every row already.
            return Ok(());
        }
        if !self.left_join || self.emit_changes {
            return Ok(());
        }
        // Batch mode: the left rows that never matched, padded.
        let entries = self.backend.entries(LEFT_ROWS).map_err(|e| e.to_string())?;
        let unmatched: Vec<Vec<u8>> = entries
            .iter()
            .map(|(_, list)| decode(list))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .filter(|(matches, _, _)| *matches == 0)
            .map(|(_, row, _)| row)
            .collect();
        for chunk in unmatched.chunks(super::BATCH_SIZE) {
            let rows = self.left.decode(chunk.iter().map(Vec::as_slice))?;
            out.push(self.padded(rows, chunk.len())?);
        }
        Ok(())
    }

    fn state_backend(&mut self) -> Option<&mut Box<dyn KeyedStateBackend>> {
        Some(&mut self.backend)
    }

    fn on_restore(&mut self, _watermark: Option<i64>) -> Result<(), String> {
        self.expiring.clear();
        if self.expiry.is_none() && self.state_ttl_millis.is_none() {
            return Ok(());
        }
        // Each stored row carries when it leaves state.
        for (side, state) in [(0u8, LEFT_ROWS), (1, RIGHT_ROWS)] {
            for (key, list) in self.backend.entries(state).map_err(|e| e.to_string())? {
                for (_, _, expiry) in decode(&list)? {
                    self.expiring
                        .entry(expiry)
                        .or_default()
                        .insert((side, key.clone()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_rows_survive_encoding() {
        let rows = vec![(0, vec![1, 2, 3], -5), (7, Vec::new(), i64::MAX)];
        assert_eq!(decode(&encode(&rows)).expect("decodes"), rows);
        assert!(decode(&[1, 0, 0, 0, 9, 0, 0, 0]).is_err());
    }
}
