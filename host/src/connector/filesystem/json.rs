//! The json format: one JSON object per line, decoded by Arrow's JSON decoder with the declared
//! columns.
//!
//! As in Flink: a missing field is null, a field not declared is ignored, and a number or boolean
//! read into a string column becomes its text. A line that is not one whole object, or a value that
//! does not fit its column, is a bad line.
//!
//! Blocks of flat objects go through [`super::json_flat`] (one pass, about twice as quick);
//! anything it refuses goes to Arrow's decoder, with timestamps decoded as text and parsed by
//! [`super::timestamp`] (quicker than Arrow's parser on the usual shapes); a block that fails
//! there is decoded line by line to say which line is bad and why.

use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::{Decoder, ReaderBuilder};
use arrow::record_batch::RecordBatch;

use super::json_flat::FlatDecoder;
use super::lines::{LineDecoder, newlines};
use crate::connector::{ConnectorError, TableDef};

pub(crate) struct JsonLines {
    /// The projected columns: only they are decoded, every other field is skipped.
    schema: SchemaRef,
    /// What the decoder produces: `schema` with text for its timestamp columns.
    decoded: SchemaRef,
    /// The quick path for flat objects, when the columns' types allow it.
    flat: Option<FlatDecoder>,
    batch_size: usize,
    decoder: Decoder,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("schema", &self.schema)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl JsonLines {
    pub(crate) fn new(
        table: &TableDef,
        schema: SchemaRef,
        batch_size: usize,
    ) -> Result<Self, ConnectorError> {
        let decoded = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Timestamp(..) => {
                        Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable()))
                    }
                    _ => f.clone(),
                })
                .collect::<Vec<_>>(),
        ));
        let decoder = build(&decoded, batch_size).map_err(|e| {
            ConnectorError::option(
                table,
                format!("the json format cannot read the columns: {e}"),
            )
        })?;
        Ok(JsonLines {
            flat: FlatDecoder::new(&schema, batch_size),
            schema,
            decoded,
            batch_size,
            decoder,
        })
    }
}

fn build(schema: &SchemaRef, batch_size: usize) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size)
        .with_coerce_primitive(true)
        .build_decoder()
}

/// Arrow's message without the `Json error: ` prefix that its `Display` adds.
pub(super) fn message(error: ArrowError) -> String {
    match error {
        ArrowError::JsonError(message)
        | ArrowError::ParseError(message)
        | ArrowError::CsvError(message) => message,
        other => other.to_string(),
    }
}

impl LineDecoder for JsonLines {
    fn decode(&mut self, lines: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let appended = out.len();
        if let Some(flat) = &mut self.flat {
            if flat.decode(lines, out).is_ok() {
                return Ok(());
            }
            out.truncate(appended);
        }
        if self.decode_block(lines, out).is_ok() {
            return Ok(());
        }
        // Something in the block is wrong: decode it again line by line, which says what.
        out.truncate(appended);
        self.reset()?;
        self.decode_by_line(lines, out)
    }

    fn reset(&mut self) -> Result<(), String> {
        self.decoder = build(&self.decoded, self.batch_size).map_err(message)?;
        Ok(())
    }

    fn explain(&self, _line: &[u8], error: String) -> String {
        error
    }
}

impl JsonLines {
    /// The whole block in one pass of Arrow's decoder (not one call per line), checked
    /// after the fact: every non-blank line must start with `{` and end with `}`, and there must be
    /// as many rows as such lines. A `}` followed by `{` is never valid inside one JSON value, so
    /// no value can then span two lines, and the count leaves exactly one object per line.
    fn decode_block(&mut self, lines: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), ()> {
        let mut objects = 0;
        let mut start = 0;
        for newline in newlines(lines) {
            let line = trim(&lines[start..newline]);
            start = newline + 1;
            match line {
                [] => {}
                [b'{', .., b'}'] => objects += 1,
                _ => return Err(()),
            }
        }
        if start < lines.len() {
            return Err(());
        }
        let appended = out.len();
        let mut rest = lines;
        while !rest.is_empty() {
            let read = self.decoder.decode(rest).map_err(drop)?;
            rest = &rest[read..];
            if self.decoder.len() >= self.batch_size {
                self.flush(out).map_err(drop)?;
            } else if !rest.is_empty() {
                // The decoder stops early only when its batch is full.
                return Err(());
            }
        }
        if self.decoder.has_partial_record() {
            return Err(());
        }
        self.flush(out).map_err(drop)?;
        let rows: usize = out[appended..].iter().map(RecordBatch::num_rows).sum();
        if rows == objects { Ok(()) } else { Err(()) }
    }

    fn decode_by_line(&mut self, lines: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), String> {
        // Line by line into one decoder, so that the rows a line added can be counted: the
        // decoder itself would take a line of two objects, or an object spread over lines,
        // without complaint.
        let mut start = 0;
        for newline in newlines(lines) {
            let line = &lines[start..=newline];
            start = newline + 1;
            if self.decoder.len() >= self.batch_size {
                self.flush(out)?;
            }
            let before = self.decoder.len();
            // The decoder stops early only when the batch is full: what is left of the line
            // must then be blank.
            let read = self.decoder.decode(line).map_err(message)?;
            if self.decoder.has_partial_record() {
                return Err("incomplete JSON value (each line must hold one whole object)".into());
            }
            let rows = self.decoder.len() - before;
            if rows > 1 || (read < line.len() && !is_blank(&line[read..])) {
                return Err("more than one JSON value on one line".into());
            }
        }
        if start < lines.len() {
            return Err("a line without a newline".into());
        }
        self.flush(out)
    }

    fn flush(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let Some(batch) = self.decoder.flush().map_err(message)? else {
            return Ok(());
        };
        if self.decoded == self.schema {
            out.push(batch);
            return Ok(());
        }
        let mut columns = batch.columns().to_vec();
        for (column, field) in columns.iter_mut().zip(self.schema.fields()) {
            if !matches!(field.data_type(), DataType::Timestamp(..)) {
                continue;
            }
            let Some(text) = column.as_any().downcast_ref::<StringArray>() else {
                return Err(format!("column '{}' was not decoded as text", field.name()));
            };
            *column = super::timestamp::parse_column(text, field.data_type())
                .map_err(|e| format!("whilst decoding field '{}': {e}", field.name()))?;
        }
        out.push(RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?);
        Ok(())
    }
}

/// `bytes` without the blanks at either end.
fn trim(bytes: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}
