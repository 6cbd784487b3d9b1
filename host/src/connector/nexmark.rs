//! `nexmark`: a deterministic generator of Nexmark's Person, Auction and Bid events.

use super::{ConnectorError, SourceReader, SourceRequest, TableDef};

pub(crate) fn validate(_table: &TableDef) -> Result<(), ConnectorError> {
    todo!()
}

pub(crate) fn open_source(
    _table: &TableDef,
    _request: &SourceRequest,
) -> Result<Box<dyn SourceReader>, ConnectorError> {
    todo!()
}
