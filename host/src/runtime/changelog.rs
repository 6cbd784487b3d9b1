//! Changelogs: results that update (a GROUP BY without a window in streaming mode) flow as
//! rows with Flink's row kinds, `+I` (insert), `-U` / `+U` (the row before and after an update)
//! and `-D` (delete). Applying a changelog in order gives the result.
//!
//! Inside the dataflow a batch of an updating stream carries its row kinds as one extra, last
//! column, [`ROW_KIND_FIELD`] (Int8); plan schemas never show it. Row-preserving operators
//! carry it along; sinks and the client see it as a leading `op` column of `+I`, `-U`, `+U`,
//! `-D`, as Flink's SQL client shows a changelog.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array, StringArray};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

/// The internal row-kind column's name (not a name SQL can write unquoted).
pub const ROW_KIND_FIELD: &str = "$row_kind";
/// The row-kind column that sinks and clients see.
pub const OP_FIELD: &str = "op";

/// Flink's row kinds, as stored in the row-kind column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum RowKind {
    Insert = 0,
    UpdateBefore = 1,
    UpdateAfter = 2,
    Delete = 3,
}

impl RowKind {
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => RowKind::Insert,
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => return None,
        })
    }
}

/// `schema` with the row-kind column appended.
pub fn with_row_kinds(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(ROW_KIND_FIELD, DataType::Int8, false)));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The row kinds of `batch`, if it is part of a changelog.
pub fn row_kinds(batch: &RecordBatch) -> Option<&Int8Array> {
    let schema = batch.schema_ref();
    let last = schema.fields().last()?;
    if last.name() != ROW_KIND_FIELD {
        return None;
    }
    batch.columns().last()?.as_primitive_opt::<Int8Type>()
}

/// A row-kind column of `kinds`.
pub fn row_kind_column(kinds: impl IntoIterator<Item = RowKind>) -> ArrayRef {
    Arc::new(Int8Array::from_iter_values(
        kinds.into_iter().map(|k| k as i8),
    ))
}

/// `schema` as sinks and clients see a changelog of it: `op` first.
pub fn display_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new(OP_FIELD, DataType::Utf8, false))];
    fields.extend(schema.fields().iter().cloned());
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A changelog batch as sinks and clients see it (`op` first, as text); any other batch as is.
pub fn for_display(batch: RecordBatch) -> Result<RecordBatch, String> {
    let Some(kinds) = row_kinds(&batch) else {
        return Ok(batch);
    };
    let ops: StringArray = kinds
        .values()
        .iter()
        .map(|&code| RowKind::from_code(code).map(RowKind::short))
        .collect();
    if ops.null_count() > 0 {
        return Err("a batch carries an unknown row kind".into());
    }
    let data_columns = batch.num_columns() - 1;
    let mut fields = vec![Arc::new(Field::new(OP_FIELD, DataType::Utf8, false))];
    fields.extend(batch.schema().fields().iter().take(data_columns).cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ops)];
    columns.extend(batch.columns().iter().take(data_columns).cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("cannot show a changelog batch: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn a_changelog_batch_shows_its_row_kinds_first() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            with_row_kinds(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                row_kind_column([RowKind::UpdateBefore, RowKind::UpdateAfter]),
            ],
        )
        .expect("batch");
        assert!(row_kinds(&batch).is_some());
        let shown = for_display(batch).expect("display");
        assert_eq!(shown.schema().field(0).name(), "op");
        assert_eq!(
            shown
                .column(0)
                .as_string::<i32>()
                .iter()
                .collect::<Vec<_>>(),
            [Some("-U"), Some("+U")]
        );
        assert_eq!(shown.schema(), display_schema(&schema));
    }
}
