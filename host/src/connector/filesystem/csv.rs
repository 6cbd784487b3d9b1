//! The csv format: one record per line, fields split by `'csv.field-delimiter'` and quoted with `"`,
//! decoded by Arrow's CSV decoder with the declared columns.
//!
//! Records are lines, as for json: a quoted field may not hold a line break (the sink refuses to
//! write one), which is what lets a large file be cut into byte ranges at newlines. Without
//! `'csv.null-literal'` an empty field is null; with it, only a field equal to the literal is.

use arrow::array::StringArray;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::csv::reader::{Format, ReaderBuilder};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::CsvOptions;
use super::json::message;
use super::lines::{LineDecoder, newlines};
use crate::connector::{ConnectorError, TableDef};

/// The longest value quoted in an error message.
const MAX_QUOTED: usize = 80;

#[derive(Debug)]
pub(crate) struct CsvLines {
    /// Every declared column: a line must have exactly this many fields.
    schema: SchemaRef,
    projection: Vec<usize>,
    /// The columns of the batches handed out.
    projected: SchemaRef,
    delimiter: u8,
    null_literal: Option<String>,
    null_regex: Option<regex::Regex>,
    batch_size: usize,
}

impl CsvLines {
    pub(crate) fn new(
        table: &TableDef,
        options: &CsvOptions,
        projection: &[usize],
        projected: SchemaRef,
        batch_size: usize,
    ) -> Result<Self, ConnectorError> {
        if let Some(field) = projected.fields().iter().find(|f| !readable(f.data_type())) {
            return Err(ConnectorError::option(
                table,
                format!(
                    "the csv format cannot read column '{}' of type {}",
                    field.name(),
                    field.data_type()
                ),
            ));
        }
        // Arrow's only hook for nulls is a regular expression: match the literal exactly.
        let null_regex = match &options.null_literal {
            Some(literal) => Some(
                regex::Regex::new(&format!("^{}$", regex::escape(literal))).map_err(|e| {
                    ConnectorError::option(
                        table,
                        format!("option 'csv.null-literal' cannot be used: {e}"),
                    )
                })?,
            ),
            None => None,
        };
        Ok(CsvLines {
            schema: table.schema.clone(),
            projection: projection.to_vec(),
            projected,
            delimiter: options.delimiter,
            null_literal: options.null_literal.clone(),
            null_regex,
            batch_size,
        })
    }

    fn decoder(&self) -> arrow::csv::reader::Decoder {
        let mut format = Format::default()
            .with_header(false)
            .with_delimiter(self.delimiter);
        if let Some(regex) = &self.null_regex {
            format = format.with_null_regex(regex.clone());
        }
        ReaderBuilder::new(self.schema.clone())
            .with_format(format)
            .with_projection(self.projection.clone())
            .with_batch_size(self.batch_size)
            .build_decoder()
    }

    fn flush(
        &self,
        decoder: &mut arrow::csv::reader::Decoder,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), String> {
        if let Some(batch) = decoder.flush().map_err(message)? {
            // Arrow builds a new, equal schema per batch: hand out the one schema.
            out.push(batch.with_schema(self.projected.clone()).map_err(message)?);
        }
        Ok(())
    }

    fn is_null(&self, value: &str) -> bool {
        match &self.null_literal {
            Some(literal) => value == literal,
            None => value.is_empty(),
        }
    }
}

/// The types Arrow's CSV decoder builds columns of.
fn readable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Time32(unit) => matches!(unit, TimeUnit::Second | TimeUnit::Millisecond),
        DataType::Time64(unit) => matches!(unit, TimeUnit::Microsecond | TimeUnit::Nanosecond),
        DataType::Dictionary(key, value) => {
            key.is_dictionary_key_type() && value.as_ref() == &DataType::Utf8
        }
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(..)
        | DataType::Utf8
        | DataType::Utf8View => true,
        _ => false,
    }
}

impl LineDecoder for CsvLines {
    fn decode(&mut self, lines: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), String> {
        // A fresh decoder per call: the CSV parser keeps its state (an open quote, say) across
        // calls, and a record must not run from one call into the next. Building one is cheap
        // next to decoding a chunk.
        let mut decoder = self.decoder();
        let mut start = 0;
        // Line by line, so that the records of each line can be counted: the parser itself would
        // let a quoted field run over a newline, or a bare carriage return end a record.
        for newline in newlines(lines) {
            let line = &lines[start..=newline];
            start = newline + 1;
            let mut rest = line;
            let mut records = 0;
            loop {
                let capacity = decoder.capacity();
                let read = decoder.decode(rest).map_err(message)?;
                records += capacity - decoder.capacity();
                rest = &rest[read..];
                if rest.is_empty() {
                    break;
                }
                if decoder.capacity() == 0 {
                    self.flush(&mut decoder, out)?;
                } else if read == 0 {
                    return Err("the csv decoder made no progress".into());
                }
            }
            match records {
                1 => {}
                // An empty line holds no record; the parser skips it.
                0 if matches!(line, b"\n" | b"\r\n") => {}
                0 => {
                    return Err(
                        "unterminated quoted field (a csv record must fit on one line)".into(),
                    );
                }
                n => return Err(format!("{n} records on one line")),
            }
            if decoder.capacity() == 0 {
                self.flush(&mut decoder, out)?;
            }
        }
        if start < lines.len() {
            return Err("a line without a newline".into());
        }
        self.flush(&mut decoder, out)
    }

    fn reset(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn explain(&self, line: &[u8], error: String) -> String {
        let Some(fields) = split_fields(line, self.delimiter) else {
            return error;
        };
        let expected = self.schema.fields().len();
        if fields.len() != expected {
            return format!("expected {expected} fields, found {}", fields.len());
        }
        for &column in &self.projection {
            let (Some(field), Some(raw)) = (self.schema.fields().get(column), fields.get(column))
            else {
                continue;
            };
            let Ok(value) = std::str::from_utf8(raw) else {
                return format!("column '{}': invalid UTF-8", field.name());
            };
            if self.is_null(value) {
                if !field.is_nullable() {
                    return format!(
                        "column '{}' is NOT NULL but the value is null",
                        field.name()
                    );
                }
                continue;
            }
            let text = StringArray::from(vec![value]);
            let options = CastOptions {
                safe: false,
                ..CastOptions::default()
            };
            if let Err(e) = cast_with_options(&text, field.data_type(), &options) {
                return format!(
                    "column '{}': cannot read '{}' as {} ({})",
                    field.name(),
                    shorten(value),
                    field.data_type(),
                    message(e)
                );
            }
        }
        // The fields looked fine one by one: Arrow's own words are the best there is.
        error
    }
}

/// Splits a line into fields as the CSV parser does: a field may be quoted with `"`, and `""` in
/// a quoted field is one quote. `None` if a quote is left open. For error messages only.
fn split_fields(line: &[u8], delimiter: u8) -> Option<Vec<Vec<u8>>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = Vec::new();
    let mut field = Vec::new();
    let mut quoted = false;
    let mut bytes = line.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if quoted {
            if b != b'"' {
                field.push(b);
            } else if bytes.next_if_eq(&b'"').is_some() {
                field.push(b'"');
            } else {
                quoted = false;
            }
        } else if b == b'"' && field.is_empty() {
            quoted = true;
        } else if b == delimiter {
            fields.push(std::mem::take(&mut field));
        } else {
            field.push(b);
        }
    }
    fields.push(field);
    (!quoted).then_some(fields)
}

/// `value`, cut to a length fit for a message.
fn shorten(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_string(),
    }
}
