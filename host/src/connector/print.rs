//! `print`: rows as a table on stdout, one table per batch, prefixed with
//! `'print-identifier'` when given (Flink's option).

use std::io::Write;

use arrow::record_batch::RecordBatch;

use super::{ConnectorError, SinkWriter, Subtask, TableDef, check_known_options};

pub(crate) fn validate(table: &TableDef) -> Result<(), ConnectorError> {
    check_known_options(table, &["print-identifier"])
}

pub(crate) fn open_sink(
    table: &TableDef,
    _subtask: Subtask,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    Ok(Box::new(Print {
        table: table.name.clone(),
        identifier: table.options.get("print-identifier").cloned(),
    }))
}

struct Print {
    table: String,
    identifier: Option<String>,
}

impl SinkWriter for Print {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rendered = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
            .map_err(|e| ConnectorError::Other {
                table: self.table.clone(),
                message: format!("cannot print a batch: {e}"),
            })?;
        let mut text = String::new();
        if let Some(identifier) = &self.identifier {
            text.push_str(identifier);
            text.push('\n');
        }
        text.push_str(&rendered.to_string());
        text.push('\n');
        // One locked write per batch so that tables from parallel subtasks never interleave; a
        // closed stdout (a pipe into `head`) ends the output quietly, as for any CLI.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        let _ = std::io::stdout().lock().flush();
        Ok(())
    }
}
