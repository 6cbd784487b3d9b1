//! `filesystem`: csv, json (one object per line) and parquet files or directories.

use super::{ConnectorError, SinkWriter, SourceReader, SourceRequest, Subtask, TableDef};

pub(crate) fn validate(_table: &TableDef) -> Result<(), ConnectorError> {
    todo!()
}

pub(crate) fn open_source(
    _table: &TableDef,
    _request: &SourceRequest,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    todo!()
}

pub(crate) fn open_sink(
    _table: &TableDef,
    _subtask: Subtask,
) -> Result<Box<dyn SinkWriter>, ConnectorError> {
    todo!()
}
