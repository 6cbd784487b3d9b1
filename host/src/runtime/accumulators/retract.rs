//! Retraction: over an updating input (a changelog), `-U` and `-D` rows come back out of the
//! groups' states. DataFusion's groups accumulators cannot retract, so each touched group gets
//! a retractable (sliding) accumulator of its own, merged with its stored state; a Wasm
//! aggregate calls `retract`. Each state row ends with its group's row count, so that a group
//! whose rows are all taken back can be deleted.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, UInt32Array};
use arrow::compute::take;
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;

use super::super::changelog::{RowKind, row_kinds};
use super::super::operators::{evaluate, evaluation_error};
use super::{Accumulators, Aggregator, binary, initial_state, wasm_finish, wasm_update};

impl Accumulators {
    /// [`Self::update`] over an updating input: `+I`/`+U` rows go in, `-U`/`-D` rows come out
    /// (DataFusion's retractable accumulators, one per touched group; a Wasm aggregate's
    /// `retract`), and each group's row count moves with them.
    pub(super) fn update_retracting(
        &mut self,
        batch: &RecordBatch,
        row_groups: &[usize],
        stored: &[Option<Vec<u8>>],
    ) -> Result<Vec<Vec<u8>>, String> {
        let groups = stored.len();
        let rows = batch.num_rows();
        let negative: Vec<bool> = match row_kinds(batch) {
            Some(kinds) => kinds
                .values()
                .iter()
                .map(|&k| k == RowKind::UpdateBefore as i8 || k == RowKind::Delete as i8)
                .collect(),
            None => vec![false; rows],
        };
        let seen: Vec<usize> = (0..groups).filter(|&g| stored[g].is_some()).collect();
        let previous = self.decode_states(stored.iter().filter_map(|s| s.as_deref()))?;
        let mut slot_of_group = vec![None; groups];
        for (slot, &group) in seen.iter().enumerate() {
            slot_of_group[group] = Some(slot);
        }
        let mut states: Vec<ArrayRef> = Vec::with_capacity(self.state_converter.size());
        let mut next = 0;
        for aggregate in &mut self.aggregates {
            let keep: Vec<bool> = match &aggregate.filter {
                Some(f) => {
                    let mask = evaluate(f, batch)?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or("FILTER must be BOOLEAN")?;
                    (0..rows)
                        .map(|i| mask.is_valid(i) && mask.value(i))
                        .collect()
                }
                None => vec![true; rows],
            };
            match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    args,
                    function,
                    state_columns,
                } => {
                    let values = args
                        .iter()
                        .map(|a| evaluate(a, batch))
                        .collect::<Result<Vec<_>, _>>()?;
                    let mut added: Vec<Vec<u32>> = vec![Vec::new(); groups];
                    let mut taken: Vec<Vec<u32>> = vec![Vec::new(); groups];
                    for (row, &group) in row_groups.iter().enumerate() {
                        if keep[row] {
                            if negative[row] {
                                taken[group].push(row as u32);
                            } else {
                                added[group].push(row as u32);
                            }
                        }
                    }
                    let mut scalars: Vec<Vec<ScalarValue>> =
                        vec![Vec::with_capacity(groups); *state_columns];
                    for group in 0..groups {
                        let mut accumulator = function
                            .create_sliding_accumulator()
                            .map_err(|e| evaluation_error(&e))?;
                        if let (Some(previous), Some(slot)) = (&previous, slot_of_group[group]) {
                            let state: Vec<ArrayRef> = previous[next..next + *state_columns]
                                .iter()
                                .map(|c| c.slice(slot, 1))
                                .collect();
                            accumulator
                                .merge_batch(&state)
                                .map_err(|e| evaluation_error(&e))?;
                        }
                        if !added[group].is_empty() {
                            let rows = UInt32Array::from(std::mem::take(&mut added[group]));
                            accumulator
                                .update_batch(&take_all(&values, &rows)?)
                                .map_err(|e| evaluation_error(&e))?;
                        }
                        if !taken[group].is_empty() {
                            let rows = UInt32Array::from(std::mem::take(&mut taken[group]));
                            accumulator
                                .retract_batch(&take_all(&values, &rows)?)
                                .map_err(|e| evaluation_error(&e))?;
                        }
                        let state = accumulator.state().map_err(|e| evaluation_error(&e))?;
                        for (column, value) in scalars.iter_mut().zip(state) {
                            column.push(value);
                        }
                    }
                    next += *state_columns;
                    for column in scalars {
                        states.push(
                            ScalarValue::iter_to_array(column).map_err(|e| evaluation_error(&e))?,
                        );
                    }
                }
                Aggregator::Wasm {
                    function,
                    args,
                    initial,
                } => {
                    let stored = previous.as_ref().map(|p| binary(&p[next])).transpose()?;
                    next += 1;
                    let initial = initial_state(function, initial)?;
                    let before = BinaryArray::from_iter_values(slot_of_group.iter().map(|slot| {
                        match (slot, &stored) {
                            (Some(slot), Some(stored)) => stored.value(*slot),
                            _ => initial.as_slice(),
                        }
                    }));
                    let sign = |want_negative: bool| {
                        BooleanArray::from(
                            (0..rows)
                                .map(|r| keep[r] && negative[r] == want_negative)
                                .collect::<Vec<_>>(),
                        )
                    };
                    let added = wasm_update(
                        function,
                        args,
                        batch,
                        row_groups,
                        Some(sign(false)),
                        before,
                        false,
                    )?;
                    let after = wasm_update(
                        function,
                        args,
                        batch,
                        row_groups,
                        Some(sign(true)),
                        added,
                        true,
                    )?;
                    states.push(Arc::new(after));
                }
            }
        }
        // The groups' row counts, whatever the FILTERs.
        let before_counts = previous.as_ref().map(|p| p[next].clone());
        let mut counts: Vec<i64> = slot_of_group
            .iter()
            .map(|slot| match (slot, &before_counts) {
                (Some(slot), Some(c)) => c
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .map_or(0, |c| c.value(*slot)),
                _ => 0,
            })
            .collect();
        for (row, &group) in row_groups.iter().enumerate() {
            counts[group] += if negative[row] { -1 } else { 1 };
        }
        states.push(Arc::new(Int64Array::from(counts)));
        self.encode(&states, groups)
    }

    /// [`Self::finish`] for retractable states.
    pub(super) fn finish_retracting(
        &mut self,
        groups: usize,
        parts: &[(usize, &[u8])],
    ) -> Result<Vec<ArrayRef>, String> {
        let states = self
            .decode_states(parts.iter().map(|(_, state)| *state))?
            .unwrap_or_default();
        let part_groups: Vec<usize> = parts.iter().map(|(group, _)| *group).collect();
        let mut columns = Vec::with_capacity(self.aggregates.len());
        let mut next = 0;
        for aggregate in &mut self.aggregates {
            columns.push(match &mut aggregate.aggregator {
                Aggregator::BuiltIn {
                    function,
                    state_columns,
                    ..
                } => {
                    let mut results = Vec::with_capacity(groups);
                    for group in 0..groups {
                        let mut accumulator = function
                            .create_sliding_accumulator()
                            .map_err(|e| evaluation_error(&e))?;
                        for (part, _) in
                            part_groups.iter().enumerate().filter(|(_, g)| **g == group)
                        {
                            let state: Vec<ArrayRef> = states[next..next + *state_columns]
                                .iter()
                                .map(|c| c.slice(part, 1))
                                .collect();
                            accumulator
                                .merge_batch(&state)
                                .map_err(|e| evaluation_error(&e))?;
                        }
                        results.push(accumulator.evaluate().map_err(|e| evaluation_error(&e))?);
                    }
                    next += *state_columns;
                    if results.is_empty() {
                        // No groups: an empty column of the result's type.
                        function
                            .create_sliding_accumulator()
                            .and_then(|mut a| a.evaluate())
                            .and_then(|v| v.to_array_of_size(0))
                            .map_err(|e| evaluation_error(&e))?
                    } else {
                        ScalarValue::iter_to_array(results).map_err(|e| evaluation_error(&e))?
                    }
                }
                Aggregator::Wasm {
                    function, initial, ..
                } => {
                    let stored = (!parts.is_empty()).then(|| &states[next]);
                    next += 1;
                    wasm_finish(function, initial, groups, &part_groups, stored)?
                }
            });
        }
        Ok(columns)
    }

    /// The row count each retractable state row holds (how many rows its group has now).
    pub(crate) fn row_counts(&self, states: &[&[u8]]) -> Result<Vec<i64>, String> {
        if !self.retracting {
            return Err("internal error: rows are counted only over an updating input".into());
        }
        let Some(columns) = self.decode_states(states.iter().copied())? else {
            return Ok(Vec::new());
        };
        let counts = columns
            .last()
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or("a stored row count is corrupt")?;
        Ok(counts.values().to_vec())
    }
}

pub(super) fn refusal(name: &str) -> String {
    format!(
        "{name} cannot take rows back out of its state (retract), which an aggregate over an \
         updating input (the changes of a GROUP BY, Top-N or left join) needs: COUNT, SUM and \
         AVG can, and Wasm aggregates that implement retract; aggregate before the update, or \
         use a window"
    )
}

fn take_all(columns: &[ArrayRef], rows: &UInt32Array) -> Result<Vec<ArrayRef>, String> {
    columns
        .iter()
        .map(|c| take(c, rows, None))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}
