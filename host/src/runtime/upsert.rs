//! Upserts into a changelog, as Flink's ChangelogNormalize: each row of an `upsert-kafka`
//! source is the latest value of its primary key (`+U`) or the key's deletion (`-D`, a
//! tombstone, with only the key). Kept per key in the state backend (the last row, in Arrow's
//! row format), they become `+I` for a new key, `-U`/`+U` for a changed value and `-D` (with
//! the last value) for a deleted key; a value equal to the last one is no change, and deleting
//! an absent key is nothing. In batch mode each key's last value goes out at the end.

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::DFSchemaRef;
use datafusion_expr::Expr;

use super::aggregate::GroupKeys;
use super::changelog::{RowKind, row_kind_column, row_kinds, with_row_kinds};
use super::operators::{Operator, make_batch};
use crate::state::{KeyedStateBackend, MemoryStateBackend, StateKey, StateName};

/// Per key: its last row.
const LATEST: StateName = 0;

pub(crate) struct UpsertNormalize {
    keys: GroupKeys,
    rows: RowConverter,
    backend: Box<dyn KeyedStateBackend>,
    /// The rows' columns (without the row kind).
    schema: SchemaRef,
    /// Streaming mode: every change goes out as it happens (else the last values at the end).
    emit_changes: bool,
}

impl UpsertNormalize {
    pub(crate) fn new(
        key: &[Expr],
        input_schema: &DFSchemaRef,
        schema: SchemaRef,
        max_parallelism: usize,
        emit_changes: bool,
    ) -> Result<Self, String> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            keys: GroupKeys::new(key, input_schema, max_parallelism)?,
            rows: RowConverter::new(fields)
                .map_err(|e| format!("cannot keep these rows by key: {e}"))?,
            backend: Box::new(MemoryStateBackend::default()),
            schema,
            emit_changes,
        })
    }

    fn output(&self, changes: &[(RowKind, &[u8])]) -> Result<RecordBatch, String> {
        let parser = self.rows.parser();
        let parsed: Vec<_> = changes.iter().map(|(_, row)| parser.parse(row)).collect();
        let mut columns: Vec<ArrayRef> = self
            .rows
            .convert_rows(parsed)
            .map_err(|e| format!("a stored row is corrupt: {e}"))?;
        if !self.emit_changes {
            return make_batch(&self.schema, columns, changes.len());
        }
        columns.push(row_kind_column(changes.iter().map(|(kind, _)| *kind)));
        make_batch(&with_row_kinds(&self.schema), columns, changes.len())
    }
}

impl Operator for UpsertNormalize {
    fn name(&self) -> &'static str {
        "UpsertNormalize"
    }

    fn state_backend(&mut self) -> Option<&mut Box<dyn KeyedStateBackend>> {
        Some(&mut self.backend)
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(kinds) = row_kinds(&batch) else {
            return Err("an upsert source's rows carry no row kinds".into());
        };
        let deleted: Vec<bool> = kinds
            .values()
            .iter()
            .map(|&k| k == RowKind::Delete as i8 || k == RowKind::UpdateBefore as i8)
            .collect();
        let data = batch
            .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
            .map_err(|e| e.to_string())?;
        let touched = self.keys.touched(&data, None)?;
        let mut latest: Vec<Option<Vec<u8>>> = self
            .backend
            .get_many(LATEST, &touched.keys)
            .map_err(|e| e.to_string())?;
        let stored: Vec<bool> = latest.iter().map(Option::is_some).collect();
        let rows = self
            .rows
            .convert_columns(data.columns())
            .map_err(|e| e.to_string())?;
        // Applied in order: a batch may change one key several times.
        let mut changes: Vec<(RowKind, Vec<u8>)> = Vec::new();
        for (row, &group) in touched.row_groups.iter().enumerate() {
            if deleted[row] {
                if let Some(last) = latest[group].take() {
                    changes.push((RowKind::Delete, last));
                }
                continue;
            }
            let value = rows.row(row).as_ref().to_vec();
            match latest[group].replace(value.clone()) {
                Some(last) if last == value => {}
                Some(last) => {
                    changes.push((RowKind::UpdateBefore, last));
                    changes.push((RowKind::UpdateAfter, value));
                }
                None => changes.push((RowKind::Insert, value)),
            }
        }
        if self.emit_changes && !changes.is_empty() {
            let changes: Vec<(RowKind, &[u8])> = changes
                .iter()
                .map(|(kind, row)| (*kind, row.as_slice()))
                .collect();
            out.push(self.output(&changes)?);
        }
        let mut gone: Vec<StateKey> = Vec::new();
        let mut kept: Vec<(StateKey, Vec<u8>)> = Vec::new();
        for ((key, last), was_stored) in touched.keys.into_iter().zip(latest).zip(stored) {
            match last {
                Some(last) => kept.push((key, last)),
                None if was_stored => gone.push(key),
                None => {}
            }
        }
        self.backend
            .delete_many(LATEST, &gone)
            .map_err(|e| e.to_string())?;
        self.backend
            .put_many(LATEST, kept)
            .map_err(|e| e.to_string())
    }

    fn on_end(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.emit_changes {
            // Every change has gone out already.
            return Ok(());
        }
        let entries = self.backend.entries(LATEST).map_err(|e| e.to_string())?;
        for chunk in entries.chunks(super::BATCH_SIZE) {
            let rows: Vec<(RowKind, &[u8])> = chunk
                .iter()
                .map(|(_, row)| (RowKind::Insert, row.as_slice()))
                .collect();
            out.push(self.output(&rows)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion_common::DFSchema;

    use super::*;

    #[test]
    fn upserts_and_deletes_become_a_changelog() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let input_schema = Arc::new(DFSchema::try_from(schema.as_ref().clone()).expect("schema"));
        let mut normalize = UpsertNormalize::new(
            &[datafusion_expr::col("k")],
            &input_schema,
            schema.clone(),
            128,
            true,
        )
        .expect("operator");
        let batch = |rows: &[(&str, Option<i64>, RowKind)]| {
            RecordBatch::try_new(
                with_row_kinds(&schema),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
                    row_kind_column(rows.iter().map(|r| r.2)),
                ],
            )
            .expect("batch")
        };
        let changes = |out: &[RecordBatch]| -> Vec<String> {
            out.iter()
                .flat_map(|b| {
                    let kinds = row_kinds(b).expect("kinds").clone();
                    let keys = b.column(0).as_string::<i32>().clone();
                    let values = b.column(1).as_primitive::<Int64Type>().clone();
                    (0..b.num_rows())
                        .map(move |i| {
                            format!("{} {} {}", kinds.value(i), keys.value(i), values.value(i))
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let mut out = Vec::new();
        normalize
            .on_batch(
                batch(&[
                    ("a", Some(1), RowKind::UpdateAfter),
                    ("b", Some(2), RowKind::UpdateAfter),
                    ("a", Some(3), RowKind::UpdateAfter),
                    ("a", Some(3), RowKind::UpdateAfter),
                    ("c", None, RowKind::Delete),
                ]),
                &mut out,
            )
            .expect("first batch");
        assert_eq!(changes(&out), ["0 a 1", "0 b 2", "1 a 1", "2 a 3"]);
        out.clear();
        normalize
            .on_batch(
                batch(&[
                    ("b", None, RowKind::Delete),
                    ("b", Some(4), RowKind::UpdateAfter),
                ]),
                &mut out,
            )
            .expect("second batch");
        assert_eq!(changes(&out), ["3 b 2", "0 b 4"]);
        let stored = normalize.backend.entries(LATEST).expect("entries");
        assert_eq!(stored.len(), 2, "a and b");
    }
}
