//! Top-N: per partition key, the first N rows in the `ROW_NUMBER()` order, kept in the state
//! backend as one entry per key (its top rows, encoded in Arrow's row format: the order key,
//! whose bytes compare as the ORDER BY does, and the whole row).
//!
//! Per batch, the keys it touches are read at once, their new rows merged in (a row that sorts
//! after a full list's last is dropped without copying), and written back. In streaming mode
//! the changes go out as a changelog, position by position: `+I` where a rank is new, `-U`/`+U`
//! where another row took it, `-D` where it emptied (never, without retractions). In batch
//! mode each key's top rows go out at the end. Equal order keys are ranked by the rows' bytes,
//! so the same rows win whatever order they arrive in.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::DFSchemaRef;
use datafusion_expr::{Expr, SortExpr};
use datafusion_physical_expr::PhysicalExpr;

use super::aggregate::GroupKeys;
use super::changelog::{RowKind, row_kind_column, row_kinds, with_row_kinds};
use super::operators::{Operator, evaluate, make_batch, physical};
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};

/// Per partition key: its top rows.
const TOP_ROWS: StateName = 0;

/// One kept row: its order key's bytes, then its own.
type Ranked = (Vec<u8>, Vec<u8>);

pub(crate) struct TopN {
    keys: GroupKeys,
    order: Vec<Arc<dyn PhysicalExpr>>,
    order_converter: RowConverter,
    row_converter: RowConverter,
    limit: usize,
    backend: Box<dyn KeyedStateBackend>,
    schema: SchemaRef,
    emit_changes: bool,
}

fn encode(rows: &[Ranked]) -> Vec<u8> {
    let size: usize = rows.iter().map(|(o, r)| 8 + o.len() + r.len()).sum();
    let mut bytes = Vec::with_capacity(size);
    for (order, row) in rows {
        bytes.extend_from_slice(&(order.len() as u32).to_le_bytes());
        bytes.extend_from_slice(order);
        bytes.extend_from_slice(&(row.len() as u32).to_le_bytes());
        bytes.extend_from_slice(row);
    }
    bytes
}

fn decode(mut bytes: &[u8]) -> Result<Vec<Ranked>, String> {
    let corrupt = || "a stored Top-N list is corrupt".to_string();
    let take = |bytes: &mut &[u8]| -> Result<Vec<u8>, String> {
        let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let length = u32::from_le_bytes(*length) as usize;
        let (value, rest) = rest.split_at_checked(length).ok_or_else(corrupt)?;
        *bytes = rest;
        Ok(value.to_vec())
    };
    let mut rows = Vec::new();
    while !bytes.is_empty() {
        let order = take(&mut bytes)?;
        let row = take(&mut bytes)?;
        rows.push((order, row));
    }
    Ok(rows)
}

impl TopN {
    pub(crate) fn new(
        partition_by: &[Expr],
        order_by: &[SortExpr],
        limit: usize,
        input_schema: &DFSchemaRef,
        schema: SchemaRef,
        max_parallelism: usize,
        emit_changes: bool,
    ) -> Result<Self, String> {
        let mut order = Vec::with_capacity(order_by.len());
        let mut order_fields = Vec::with_capacity(order_by.len());
        for sort in order_by {
            let expr = physical(&sort.expr, input_schema)?;
            let data_type = expr
                .data_type(input_schema.as_arrow())
                .map_err(|e| e.to_string())?;
            order_fields.push(SortField::new_with_options(
                data_type,
                arrow::compute::SortOptions {
                    descending: !sort.asc,
                    nulls_first: sort.nulls_first,
                },
            ));
            order.push(expr);
        }
        let row_fields = input_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            keys: GroupKeys::new(partition_by, input_schema, max_parallelism)?,
            order,
            order_converter: RowConverter::new(order_fields).map_err(|e| e.to_string())?,
            row_converter: RowConverter::new(row_fields)
                .map_err(|e| format!("cannot keep these rows for Top-N: {e}"))?,
            limit: limit.max(1),
            backend: Box::new(MemoryStateBackend::default()),
            schema,
            emit_changes,
        })
    }

    /// Output rows: each stored row, its row number, and (streaming) its row kind.
    fn output(&self, rows: &[(RowKind, usize, &[u8])]) -> Result<RecordBatch, String> {
        let parser = self.row_converter.parser();
        let parsed: Vec<_> = rows.iter().map(|(_, _, row)| parser.parse(row)).collect();
        let mut columns: Vec<ArrayRef> = self
            .row_converter
            .convert_rows(parsed)
            .map_err(|e| format!("a stored Top-N row is corrupt: {e}"))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, rank, _)| *rank as i64 + 1),
        )));
        if self.emit_changes {
            columns.push(row_kind_column(rows.iter().map(|(kind, _, _)| *kind)));
            make_batch(&with_row_kinds(&self.schema), columns, rows.len())
        } else {
            make_batch(&self.schema, columns, rows.len())
        }
    }
}

impl Operator for TopN {
    fn name(&self) -> &'static str {
        "TopN"
    }

    fn state_backend(&mut self) -> Option<&mut Box<dyn KeyedStateBackend>> {
        Some(&mut self.backend)
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if row_kinds(&batch).is_some() {
            return Err("Top-N over an updating input is not supported yet".into());
        }
        let touched = self.keys.touched(&batch, None)?;
        let stored = self
            .backend
            .get_many(TOP_ROWS, &touched.keys)
            .map_err(|e| e.to_string())?;
        let mut lists: Vec<Vec<Ranked>> = stored
            .iter()
            .map(|s| s.as_deref().map_or(Ok(Vec::new()), decode))
            .collect::<Result<_, _>>()?;
        let before: Vec<Vec<Ranked>> = if self.emit_changes {
            lists.clone()
        } else {
            Vec::new()
        };
        let order_columns = self
            .order
            .iter()
            .map(|e| evaluate(e, &batch))
            .collect::<Result<Vec<_>, _>>()?;
        let order_rows = self
            .order_converter
            .convert_columns(&order_columns)
            .map_err(|e| e.to_string())?;
        let data_rows = self
            .row_converter
            .convert_columns(batch.columns())
            .map_err(|e| e.to_string())?;
        // A full list's last order key bounds what can still get in (a stale bound still does:
        // the list only gets better).
        let mut bounds: Vec<Option<Vec<u8>>> = lists
            .iter()
            .map(|list| {
                (list.len() >= self.limit)
                    .then(|| list.last().map(|(order, _)| order.clone()))
                    .flatten()
            })
            .collect();
        for (row, &group) in touched.row_groups.iter().enumerate() {
            let order = order_rows.row(row);
            if bounds[group]
                .as_ref()
                .is_some_and(|bound| order.as_ref() > bound.as_slice())
            {
                continue;
            }
            let list = &mut lists[group];
            list.push((
                order.as_ref().to_vec(),
                data_rows.row(row).as_ref().to_vec(),
            ));
            if list.len() > 2 * self.limit {
                list.sort_unstable();
                list.truncate(self.limit);
                bounds[group] = list.last().map(|(order, _)| order.clone());
            }
        }
        for list in &mut lists {
            list.sort_unstable();
            list.truncate(self.limit);
        }
        if self.emit_changes {
            let mut changes: Vec<(RowKind, usize, &[u8])> = Vec::new();
            for (old, new) in before.iter().zip(&lists) {
                for rank in 0..old.len().max(new.len()) {
                    match (old.get(rank), new.get(rank)) {
                        (Some(o), Some(n)) if o != n => {
                            changes.push((RowKind::UpdateBefore, rank, &o.1));
                            changes.push((RowKind::UpdateAfter, rank, &n.1));
                        }
                        (None, Some(n)) => changes.push((RowKind::Insert, rank, &n.1)),
                        (Some(o), None) => changes.push((RowKind::Delete, rank, &o.1)),
                        _ => {}
                    }
                }
            }
            if !changes.is_empty() {
                out.push(self.output(&changes)?);
            }
        }
        let entries = touched
            .keys
            .into_iter()
            .zip(&lists)
            .map(|(key, list)| (key, encode(list)))
            .collect();
        self.backend
            .put_many(TOP_ROWS, entries)
            .map_err(|e| e.to_string())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.emit_changes {
            // Every change has gone out already.
            return Ok(());
        }
        let entries: Vec<(StateKey, Vec<u8>)> =
            self.backend.entries(TOP_ROWS).map_err(|e| e.to_string())?;
        let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
        for (_, list) in entries {
            pending.extend(
                decode(&list)?
                    .into_iter()
                    .enumerate()
                    .map(|(rank, (_, row))| (rank, row)),
            );
            if pending.len() >= super::BATCH_SIZE {
                let rows: Vec<_> = pending
                    .iter()
                    .map(|(rank, row)| (RowKind::Insert, *rank, row.as_slice()))
                    .collect();
                out.push(self.output(&rows)?);
                pending.clear();
            }
        }
        if !pending.is_empty() {
            let rows: Vec<_> = pending
                .iter()
                .map(|(rank, row)| (RowKind::Insert, *rank, row.as_slice()))
                .collect();
            out.push(self.output(&rows)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_survive_encoding() {
        let rows = vec![(vec![1, 2], vec![3]), (Vec::new(), vec![4, 5, 6])];
        assert_eq!(decode(&encode(&rows)).expect("decodes"), rows);
        assert!(decode(&[9, 0, 0, 0, 1]).is_err());
    }
}
