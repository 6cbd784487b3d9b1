//! `blackhole`: a sink that drops every row (for benchmarks), as Flink's.

use super::{ConnectorError, SinkWriter, Subtask, TableDef, check_known_options};
use arrow::record_batch::RecordBatch;

pub(crate) fn validate(table: &TableDef) -> Result<(), ConnectorError> {
    check_known_options(table, &[])
}

pub(crate) fn open_sink(
    _table: &TableDef,
    _subtask: Subtask,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    Ok(Box::new(Blackhole))
}

struct Blackhole;

impl SinkWriter for Blackhole {
    fn write(&mut self, _batch: &RecordBatch) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}
